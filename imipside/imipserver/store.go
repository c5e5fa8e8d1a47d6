package imipserver

import (
	"context"
	"errors"
	"time"

	"imip-transport/imipside/wire"
)

// ErrNotFound is returned by a Store when an account does not exist.
var ErrNotFound = errors.New("imipserver: not found")

// Account is one user of the server.
//
// The password is kept as plain text: the imip-md5 login hashes the
// connection's salt with the password, so the server must know it.
type Account struct {
	Number   wire.Number
	Password string
	Nick     string
}

// Request is a pending contact request: From asked to add To to its list.
type Request struct {
	From wire.Number
	To   wire.Number
	Text string
	Time time.Time
}

// Message is a message held for its recipient: one that was offline when
// it was sent, or one pushed to a mesg-ack connection and not yet
// confirmed. ID is assigned by the Store; "m" + ID is the message's
// Message-ID in the mesg-ack extension, unless Key is set (a message pushed
// before it was stored keeps the Message-ID it was pushed with).
type Message struct {
	ID   int64
	From wire.Number
	To   wire.Number
	Time time.Time
	Text string
	Key  string
}

// Store is the server's state: accounts, one-directional contact lists,
// pending contact requests and messages held for offline users.
//
// Every method may block on I/O and honours ctx; all are safe for
// concurrent use. A method that returns nil has made its change durable
// (for the durable implementation).
type Store interface {
	// Account returns the account, or an error wrapping ErrNotFound.
	Account(ctx context.Context, n wire.Number) (Account, error)
	// PutAccount creates the account or replaces its password and nick.
	PutAccount(ctx context.Context, a Account) error

	// Contacts returns owner's list: every number it may see, with that
	// account's nick, ordered by number.
	Contacts(ctx context.Context, owner wire.Number) ([]wire.Buddy, error)
	// Watchers returns every owner whose list holds contact.
	Watchers(ctx context.Context, contact wire.Number) ([]wire.Number, error)
	// HasContact reports whether owner's list holds contact.
	HasContact(ctx context.Context, owner, contact wire.Number) (bool, error)
	// AddContact puts contact on owner's list (no error when already there).
	AddContact(ctx context.Context, owner, contact wire.Number) error
	// RemoveContact takes contact off owner's list and reports whether it
	// was there.
	RemoveContact(ctx context.Context, owner, contact wire.Number) (bool, error)

	// PutRequest records a pending request, replacing an earlier one with
	// the same From and To.
	PutRequest(ctx context.Context, r Request) error
	// DeleteRequest removes the request from -> to and reports whether
	// there was one.
	DeleteRequest(ctx context.Context, from, to wire.Number) (bool, error)
	// Requests returns the requests addressed to to, oldest first.
	Requests(ctx context.Context, to wire.Number) ([]Request, error)

	// PutMessage holds a message for its recipient and returns its ID.
	// IDs are positive and never reused, also after a delete. They grow in
	// the order messages are stored: once PutMessage returned n, every
	// stored message with an ID below n is visible to Messages, and no
	// message stored later gets an ID below n. The server pushes stored
	// messages in ID order and relies on this.
	PutMessage(ctx context.Context, m Message) (int64, error)
	// Messages returns at most limit (> 0) of the messages held for to
	// whose ID is above after, lowest ID first.
	Messages(ctx context.Context, to wire.Number, after int64, limit int) ([]Message, error)
	// CountHeld returns how many messages are held for to, from from and
	// from anyone (for the caps of AbuseLimits).
	CountHeld(ctx context.Context, to, from wire.Number) (fromSender, total int, err error)
	// DeleteMessages removes held messages (no error for IDs already gone).
	DeleteMessages(ctx context.Context, ids ...int64) error

	// Close releases the store's resources.
	Close() error
}
