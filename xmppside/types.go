package xmppside

import (
	"context"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Handler is implemented by the gateway.
//
// HandlePresence, HandleMessage (and HandlePrivileges, if implemented) are
// called on the component's read loop, one stanza at a time: they must not
// block and must not call SendIQ or anything built on it.
// The Registrar methods run in their own goroutine and may block.
type Handler interface {
	// HandlePresence receives every inbound presence exactly once, whatever
	// its type and children.
	HandlePresence(Presence)
	// HandleMessage receives every inbound message exactly once (including
	// type error), except XEP-0356 privilege announcements.
	HandleMessage(Message)
	// HandleConnected is called after each successful handshake; ctx ends
	// when that link goes down.
	// It runs on Run's goroutine while the read loop already serves, so it
	// may send and may call SendIQ, but it must return when ctx is done.
	HandleConnected(ctx context.Context)
	// HandleDisconnected is called once after each link that
	// HandleConnected announced is gone, with the cause.
	HandleDisconnected(err error)
	Registrar
	Gateway
}

// Registrar backs XEP-0077 in-band registration.
// Its methods may block (the gateway may log into IMIP to check the
// credentials); they are called in their own goroutine with a context that
// ends at RegisterTimeout or when the link goes down.
//
// Errors of type [Error] or [stanza.Error] are sent to the requester as they
// are; any other error becomes internal-server-error without its text.
type Registrar interface {
	// Registration reports whether user (a bare JID) is registered and under
	// which username. It must never return the password.
	Registration(ctx context.Context, user jid.JID) (username string, registered bool, err error)
	// Register stores (or replaces) the credentials of user.
	Register(ctx context.Context, user jid.JID, username, password string) error
	// Unregister removes the registration of user.
	Unregister(ctx context.Context, user jid.JID) error
}

// RegisterOption is a boolean field that the registration data form offers
// besides the username and password, with the user's current value.
type RegisterOption struct {
	Var   string
	Label string
	Value bool
}

// OptionRegistrar is an optional extension of Registrar. A Handler that
// implements it offers its options as boolean fields of the XEP-0077 data
// form, and receives registrations through RegisterWithOptions instead of
// Register. Both may block; they run in their own goroutine.
type OptionRegistrar interface {
	// RegisterOptions returns the options and user's current values.
	RegisterOptions(ctx context.Context, user jid.JID) ([]RegisterOption, error)
	// RegisterWithOptions is Register with the boolean fields the user
	// submitted, by var; an option the user did not submit is absent
	// (registration with plain fields submits none).
	RegisterWithOptions(ctx context.Context, user jid.JID, username, password string, options map[string]bool) error
}

// Gateway backs XEP-0100 jabber:iq:gateway.
// Its methods are called on the read loop and must not block.
type Gateway interface {
	// Prompt returns the description and the prompt label, e.g.
	// ("Enter the IMIP number of the contact", "IMIP number").
	Prompt() (desc, prompt string)
	// Translate turns what a user typed into a contact JID.
	// An [Error] is returned as is; any other error becomes not-acceptable.
	Translate(input string) (jid.JID, error)
}

// PrivilegeHandler may be implemented by a Handler to hear about XEP-0356
// grants when they arrive. It is called on the read loop and must not block.
type PrivilegeHandler interface {
	HandlePrivileges(Privileges)
}

// Presence is a presence stanza as plain data.
type Presence struct {
	ID       string
	From, To jid.JID
	// Type is "" (available), unavailable, subscribe, subscribed,
	// unsubscribe, unsubscribed, probe or error.
	Type string
	// Show is "", away, chat, dnd or xa.
	Show     string
	Status   string
	Priority int
	// Nick is the XEP-0172 user nickname.
	Nick string
	// Delay is the XEP-0203 timestamp; zero means none.
	Delay time.Time
	// Error is set on presence of type error. Sending a Presence with Error
	// set forces type error.
	Error *stanza.Error
	// CapsNode, CapsVer and CapsHash are the XEP-0115 <c/> attributes.
	// Outbound, <c/> is written only when CapsVer is set (hash defaults to
	// sha-1).
	CapsNode, CapsVer, CapsHash string
}

// Message is a message stanza as plain data.
type Message struct {
	ID       string
	From, To jid.JID
	// Type is chat, normal, headline, groupchat or error.
	// Inbound a missing or unknown type reads as normal; outbound "" omits
	// the attribute (normal).
	Type    string
	Body    string
	Subject string
	Thread  string
	// Nick is the XEP-0172 user nickname.
	Nick string
	// Delay is the XEP-0203 timestamp (legacy XEP-0091 is read too); zero
	// means none. DelayFrom is its optional from attribute.
	Delay     time.Time
	DelayFrom jid.JID
	// ChatState is the XEP-0085 state: active, composing, paused, inactive,
	// gone or "".
	ChatState string
	// ReceiptRequest is a XEP-0184 <request/>; outbound it needs an ID.
	ReceiptRequest bool
	// ReceiptReceived is the id of a XEP-0184 <received/>.
	ReceiptReceived string
	// Error is set on messages of type error. Sending a Message with Error
	// set forces type error.
	Error *stanza.Error
}

// RosterItem is one jabber:iq:roster or XEP-0144 item.
type RosterItem struct {
	JID  jid.JID
	Name string
	// Subscription is none, to, from or both (roster only).
	Subscription string
	Groups       []string
	// Remove deletes the item (subscription="remove" in a roster set,
	// action="delete" in a roster exchange).
	Remove bool
	// Action overrides the XEP-0144 action: add, modify or delete.
	// "" means add, or delete when Remove is set.
	Action string
}

// Privileges is what a server granted the component under XEP-0356.
type Privileges struct {
	// Server is the host that sent the grant.
	Server jid.JID
	// Namespace is NSPrivilege2 or NSPrivilege1; "" means no grant.
	Namespace string
	// Roster is none, get, set or both.
	Roster string
	// Message is none or outgoing.
	Message string
	// Presence is none, managed_entity or roster.
	Presence string
}

// CanGetRoster reports whether the grant allows reading users' rosters.
func (p Privileges) CanGetRoster() bool { return p.Roster == "get" || p.Roster == "both" }

// CanSetRoster reports whether the grant allows changing users' rosters.
func (p Privileges) CanSetRoster() bool { return p.Roster == "set" || p.Roster == "both" }
