package gateway

import (
	"context"

	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// XMPP is what the gateway needs of the component: sending stanzas.
// Implementations must be safe for concurrent use; a send may block while
// the link is busy and returns an error while it is down.
type XMPP interface {
	SendPresence(ctx context.Context, p xmppside.Presence) error
	SendMessage(ctx context.Context, m xmppside.Message) error
}

// RosterAccess is what the gateway needs to edit a user's roster. The
// component implements it; a sender without it makes the gateway fall back to
// subscription presences.
type RosterAccess interface {
	// PrivilegesFor returns the XEP-0356 grant of the server of user's
	// domain (the zero value when it granted nothing).
	PrivilegesFor(user jid.JID) xmppside.Privileges
	RosterGet(ctx context.Context, user jid.JID) ([]xmppside.RosterItem, error)
	RosterSet(ctx context.Context, user jid.JID, items []xmppside.RosterItem) error
	DiscoFeatures(ctx context.Context, to jid.JID) ([]string, error)
	SendRosterExchange(ctx context.Context, to jid.JID, items []xmppside.RosterItem) error
}

// IMIPSession is one user's logged-in IMIP session. *imipside.Session
// implements it. No method waits for the server: requests return their
// block ID at once, and their outcome arrives as an imipside.ReplyEvent (or
// the session's end).
type IMIPSession interface {
	Contacts() []wire.Buddy
	// ConfirmsMessages reports whether the server takes confirmations of
	// the messages it pushes (the mesg-ack extension).
	ConfirmsMessages() bool
	SendStatus(st wire.Status, text string) (uint64, error)
	SendMessage(to wire.Number, text string) (uint64, error)
	SendListAdd(n wire.Number, text string) (uint64, error)
	SendListAccept(n wire.Number, nick string) (uint64, error)
	SendListReject(n wire.Number) (uint64, error)
	SendListRemove(n wire.Number) (uint64, error)
	ConfirmMessage(blockID uint64) error
	// Logout sends DISC; the session ends by itself soon after.
	Logout() error
	// Kill ends the session at once.
	Kill()
}

// The sessions of imipside tell when they have ended (see trackEnd).
var _ doner = (*imipside.Session)(nil)

// Dialer logs a number into IMIP. The session delivers its events to h, on
// its own goroutine, until it ends.
type Dialer interface {
	Dial(ctx context.Context, number wire.Number, password string, h imipside.Handler) (IMIPSession, error)
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context, number wire.Number, password string, h imipside.Handler) (IMIPSession, error)

// Dial calls f.
func (f DialerFunc) Dial(ctx context.Context, number wire.Number, password string, h imipside.Handler) (IMIPSession, error) {
	return f(ctx, number, password, h)
}

var (
	_ IMIPSession  = (*imipside.Session)(nil)
	_ Barrier      = (*xmppside.Component)(nil)
	_ RosterAccess = (*xmppside.Component)(nil)
)
