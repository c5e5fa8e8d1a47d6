package gateway

// The storage the gateway consumes: registrations, contact lists, the
// durable message queues and the "was online" flag.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"imip-transport/imipside/wire"
	"imip-transport/roster"
)

// ErrNotFound is returned, wrapped, when a [Store] holds no registration for
// a JID. Test for it with errors.Is.
var ErrNotFound = errors.New("gateway: not found")

// MaxGroupLen bounds Registration.Group, in bytes.
const MaxGroupLen = 64

// Registration is one XMPP user's IMIP account.
type Registration struct {
	// JID is the user's bare JID, the key of the registration.
	JID string
	// Number is the user's IMIP number.
	Number wire.Number
	// Password is the IMIP password in clear: the imip-md5 login hashes the
	// server's salt with the password, so a hash cannot be stored instead.
	Password string
	// AllowRemove lets the user's unsubscribe remove contacts from the IMIP
	// list (see roster.Options).
	AllowRemove bool
	// Group is the roster group of the user's new IMIP contacts, as the
	// user chose it (the settings command); "" means the gateway's
	// Config.RosterGroup. At most MaxGroupLen bytes.
	Group string
	// Created and Updated are set by the Store: when the registration was
	// first stored, and when it was last written.
	Created, Updated time.Time
	// LastLogin is set by the Store: when an [OpSetOnline] last set the
	// online flag (the gateway sets it at each IMIP login); zero when never,
	// or when the Store does not record it. PutRegistration ignores it.
	LastLogin time.Time
}

// Store persists registrations, contact lists, queued messages and which
// users were online.
// Every method blocks until the storage answers or ctx is done, and is safe
// for concurrent use.
// Writes are durable when the method returns nil.
type Store interface {
	// Registration returns the registration of bareJID, or an error wrapping
	// ErrNotFound when there is none.
	Registration(ctx context.Context, bareJID string) (Registration, error)

	// PutRegistration inserts r, or updates the number, password and
	// options of the registration with the same JID.
	// A change of number drops the saved contact list, which belonged to
	// the other IMIP account.
	// The Store sets Created on insert and Updated on every write; the
	// values in r are ignored.
	// A change of number keeps the queued messages: the gateway decides
	// what becomes of them (see [QueuedMessage]).
	// Neither insert nor update changes the online flag (see [OpSetOnline]);
	// a new registration starts offline.
	PutRegistration(ctx context.Context, r Registration) error

	// DeleteRegistration deletes the registration of bareJID, all its
	// contacts, its queued messages and its online flag.
	// Deleting an absent registration returns an error wrapping ErrNotFound.
	DeleteRegistration(ctx context.Context, bareJID string) error

	// Registrations returns every registration, ordered by JID.
	Registrations(ctx context.Context) ([]Registration, error)

	// Contacts returns the contact list last saved for bareJID, pending
	// requests included, ordered by number. It is empty (and the error nil)
	// when nothing was saved.
	Contacts(ctx context.Context, bareJID string) ([]roster.Contact, error)

	// SaveContacts replaces the whole contact list of bareJID with cs, all at
	// once: a reader sees the old list or the new one, never a mix.
	// Only the contacts that differ from the stored list are written, so a
	// sync that changes little costs little; for a single change, use
	// [OpPutContact] or [OpDeleteContact].
	// It returns an error wrapping ErrNotFound when bareJID is not
	// registered.
	SaveContacts(ctx context.Context, bareJID string, cs []roster.Contact) error

	// Apply performs ops in one transaction, in order: all of them are
	// durable when it returns nil, none of them when it returns an error.
	// An op on a JID that has no registration (the user unregistered
	// meanwhile) is skipped, not an error: an OpPutMessage so skipped leaves
	// Msg.ID zero. Deleting or touching an absent message is skipped too.
	// Ops that fail [CheckOps] fail the whole call.
	// Apply sets Msg.ID and Msg.Accepted of each stored OpPutMessage, and
	// only when it returns nil.
	Apply(ctx context.Context, ops []Op) error

	// Messages returns the queued messages of bareJID, both directions,
	// ordered by ID. It is empty (and the error nil) when none is queued.
	Messages(ctx context.Context, bareJID string) ([]QueuedMessage, error)

	// MessagesPage returns at most limit (every one if limit <= 0) of
	// bareJID's queued messages in direction dir whose ID is above after,
	// ordered by ID: the gateway reads a long queue a page at a time.
	MessagesPage(ctx context.Context, bareJID string, dir Direction, after int64, limit int) ([]QueuedMessage, error)

	// QueuedJIDs returns the JIDs that have queued messages, ordered by JID.
	QueuedJIDs(ctx context.Context) ([]string, error)

	// OnlineJIDs returns the JIDs whose online flag is set (see
	// [OpSetOnline]), ordered by JID.
	OnlineJIDs(ctx context.Context) ([]string, error)

	// Close releases the storage. It does not wait for calls in progress to
	// finish; no method may be called after it.
	Close() error
}

// Direction says which network a [QueuedMessage] waits for.
type Direction uint8

const (
	// ToIMIP is a Jabber user's message waiting for IMIP to confirm it.
	ToIMIP Direction = 1
	// ToXMPP is an IMIP message waiting for the XMPP server to confirm it.
	ToXMPP Direction = 2
)

// String returns "to-imip", "to-xmpp" or "direction(n)".
func (d Direction) String() string {
	switch d {
	case ToIMIP:
		return "to-imip"
	case ToXMPP:
		return "to-xmpp"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// QueuedMessage is a message the gateway has accepted and not yet seen
// delivered or bounced. It stays in the [Store] until an [OpDeleteMessage]
// removes it, whatever happens to the user's registration in between, except
// that unregistering deletes it.
type QueuedMessage struct {
	// ID is set by the Store on insert: unique and ascending, never reused
	// (not even after the message with the highest ID was deleted).
	ID int64
	// JID is the user's bare JID.
	JID string
	// Dir is the network the message waits for.
	Dir Direction
	// Peer is the IMIP contact: the recipient (ToIMIP) or the sender
	// (ToXMPP).
	Peer wire.Number
	// StanzaID is, for ToIMIP, the sender's XMPP message id (for the bounce
	// or the receipt); for ToXMPP, the stable id the gateway sends on XMPP.
	StanzaID string
	// Resource is, for ToIMIP, the sender's resource, so that a bounce goes
	// to the full JID.
	Resource string
	// Nick is, for ToXMPP, the sender's nickname.
	Nick string
	// Body is the message text.
	Body string
	// Stamp is, for ToXMPP, the IMIP Timo; zero when there is none.
	// Stores keep it to the microsecond.
	Stamp time.Time
	// Accepted is set by the Store on insert: when the message was stored.
	Accepted time.Time
	// Receipt is, for ToIMIP, whether the sender asked for a XEP-0184
	// receipt.
	Receipt bool
	// Tries is how many times the message was sent so far.
	Tries int
}

// Op is one write of a batch given to [Store.Apply]: one of [OpPutMessage],
// [OpDeleteMessage], [OpTouchMessage], [OpPutContact], [OpDeleteContact] and
// [OpSetOnline].
type Op interface{ isOp() }

// OpPutMessage inserts Msg. On success the Store sets Msg.ID and
// Msg.Accepted; the values given are ignored. Msg must not be read or
// written by anyone else until Apply has returned.
type OpPutMessage struct{ Msg *QueuedMessage }

// OpDeleteMessage deletes the queued message ID: it was delivered or
// bounced.
type OpDeleteMessage struct{ ID int64 }

// OpTouchMessage records that message ID was sent again: its Tries become
// Tries.
type OpTouchMessage struct {
	ID    int64
	Tries int
}

// OpPutContact inserts or replaces the one contact of JID with
// Contact.Number.
type OpPutContact struct {
	JID     string
	Contact roster.Contact
}

// OpDeleteContact deletes the contact Number of JID.
type OpDeleteContact struct {
	JID    string
	Number wire.Number
}

// OpSetOnline sets the "was online" flag of JID's registration: a restart
// logs the users whose flag is set back in (see [Store.OnlineJIDs]).
type OpSetOnline struct {
	JID    string
	Online bool
}

func (OpPutMessage) isOp()    {}
func (OpDeleteMessage) isOp() {}
func (OpTouchMessage) isOp()  {}
func (OpPutContact) isOp()    {}
func (OpDeleteContact) isOp() {}
func (OpSetOnline) isOp()     {}

// ErrBadOp is returned, wrapped, by [CheckOps] and by [Store.Apply] for an op
// that can never be stored. Test for it with errors.Is.
var ErrBadOp = errors.New("gateway: invalid op")

// CheckOps reports the first op that can never be stored, with an error
// wrapping ErrBadOp: a nil op or message, an empty JID, peer or contact
// number, a direction other than ToIMIP or ToXMPP, an ID below 1, negative
// tries. It does not look at the storage: an op on an unregistered JID
// passes. Stores call it before they write; the group commit calls it when
// ops are submitted, so that a bad op fails only its own submitter.
func CheckOps(ops []Op) error {
	for i, op := range ops {
		if why := badOp(op); why != "" {
			return fmt.Errorf("%w %d (%T): %s", ErrBadOp, i, op, why)
		}
	}
	return nil
}

// badOp says what is wrong with op, or "".
func badOp(op Op) string {
	switch op := op.(type) {
	case OpPutMessage:
		m := op.Msg
		switch {
		case m == nil:
			return "no message"
		case m.JID == "":
			return "no JID"
		case m.Dir != ToIMIP && m.Dir != ToXMPP:
			return "direction " + m.Dir.String()
		case m.Peer == "":
			return "no peer"
		case m.Tries < 0:
			return "negative tries"
		}
	case OpDeleteMessage:
		if op.ID < 1 {
			return "ID below 1"
		}
	case OpTouchMessage:
		if op.ID < 1 {
			return "ID below 1"
		}
		if op.Tries < 0 {
			return "negative tries"
		}
	case OpPutContact:
		if op.JID == "" {
			return "no JID"
		}
		if op.Contact.Number == "" {
			return "contact without a number"
		}
	case OpDeleteContact:
		if op.JID == "" {
			return "no JID"
		}
		if op.Number == "" {
			return "no number"
		}
	case OpSetOnline:
		if op.JID == "" {
			return "no JID"
		}
	case nil:
		return "nil op"
	default:
		return "unknown op type (ops are values, not pointers)"
	}
	return ""
}
