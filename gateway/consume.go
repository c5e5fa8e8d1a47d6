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
// implements it.
type IMIPSession interface {
	Contacts() []wire.Buddy
	SetStatus(ctx context.Context, st wire.Status, text string) error
	SendMessage(ctx context.Context, to wire.Number, text string) (uint64, error)
	ListAdd(ctx context.Context, n wire.Number, text string) error
	ListAccept(ctx context.Context, n wire.Number, nick string) error
	ListReject(ctx context.Context, n wire.Number) error
	ListRemove(ctx context.Context, n wire.Number) error
	Disconnect(ctx context.Context) error
	Close() error
}

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

var _ IMIPSession = (*imipside.Session)(nil)
