package imipserver

import (
	"log/slog"
	"time"

	"imip-transport/imipside/wire"
)

// Defaults used where a Config field is zero.
const (
	DefaultKeepAlive     = 60 * time.Second
	DefaultService       = "imip.localhost"
	DefaultDisplayName   = "imipd"
	DefaultOutQueueBytes = 256 << 10
	DefaultWriteTimeout  = 30 * time.Second
	// DefaultDeliveryWindow is the default of Config.DeliveryWindow.
	DefaultDeliveryWindow = 32
	// DefaultHoldWrites is the default of Config.HoldWrites.
	DefaultHoldWrites = 50 * time.Millisecond
)

// Config configures a Server. Only Store is required.
type Config struct {
	// Store holds accounts, lists, pending requests and held messages.
	Store Store
	// KeepAlive is announced in the HELO reply (rounded up to whole
	// seconds). A connection that sends nothing for 2 × KeepAlive is
	// closed. Default 60 s.
	KeepAlive time.Duration
	// Limits bounds what the server reads, and the largest block it writes
	// (Limits.MaxSize). Zero fields mean the wire defaults.
	Limits wire.Limits
	// Service, DisplayName and RegistrationURL fill the HELO reply's
	// Service, ServiceDisplayName and Registration headers.
	Service, DisplayName, RegistrationURL string
	// Logger receives the server's logs; nil discards them. Passwords and
	// message texts are never logged.
	Logger *slog.Logger
	// OutQueueBytes bounds the bytes queued for one connection; a client
	// that lets its queue overflow is disconnected. Default 256 KiB.
	OutQueueBytes int
	// WriteTimeout bounds one write to a client; a client that does not
	// read for that long is disconnected. Default 30 s.
	WriteTimeout time.Duration
	// DeliveryWindow bounds the stored messages pushed to one connection
	// and not yet confirmed: by the client's ACK 600 with the mesg-ack
	// extension, by being written to the socket without it. No further
	// message is pushed either while the unconfirmed ones hold half of
	// OutQueueBytes or more (one always goes). Further messages wait in the
	// Store and are pushed, in order, as earlier ones are confirmed.
	// Default 32.
	DeliveryWindow int
	// HoldWrites: a message to a recipient online with mesg-ack, when no
	// stored message waits for it and its window has room, is pushed at
	// once, before it is stored, and the sender's ACK 600 waits up to
	// HoldWrites for the recipient's confirmation: confirmed, the message
	// is never stored; not confirmed in time (or the recipient's
	// connection ended), it is stored, and the sender's ACK follows the
	// write. Either way the sender's ACK means the message is safe, and
	// the sender's later blocks are answered after it (they wait behind it;
	// the sender's reader goes on reading). Default DefaultHoldWrites;
	// negative:
	// every such message is stored before it is pushed.
	HoldWrites time.Duration
	// ParkAfter is how long a connection's reader waits for the next
	// block before it parks (default 1 s): a parked connection has no
	// goroutine and no read buffer, and waits on the process's poller
	// (internal/netpoll, Linux epoll). NoPark keeps a reader blocked in
	// Read instead.
	ParkAfter time.Duration
	NoPark    bool
	// Abuse bounds what one client can do to the others and to the server
	// (see AbuseLimits). Zero fields take the defaults.
	Abuse AbuseLimits
	// Faults makes the server deviate from the protocol on purpose, for
	// client tests. The zero value is a faithful server.
	Faults Faults
}

// Faults are deliberate deviations, for testing clients.
type Faults struct {
	// OmitEmptyLine never writes the empty line on a block without a body.
	// That is already the server's default (Odigo style); the knob exists
	// to say so explicitly. AlwaysEmptyLine wins when both are set.
	OmitEmptyLine bool
	// AlwaysEmptyLine writes the empty line on every block (Yahoo style).
	AlwaysEmptyLine bool
	// DropAfterLogin closes the connection right after the LOGN reply.
	DropAfterLogin bool
	// DelayACK holds every ACK block (and what is queued behind it) for
	// this long before writing it.
	DelayACK time.Duration
	// NoOurs never sends the [ours] rows of docs/PROTOCOL.md: no STAT push of
	// contacts at login, no S LIST REJECT / LIST REMOVE, no ACK for a MESG
	// without ACK-Type.
	NoOurs bool
	// ShuffleHeaders writes headers in random order instead of sorted.
	ShuffleHeaders bool
	// IDLast writes the ID header last.
	IDLast bool
	// NoMesgAck turns the mesg-ack extension off: the HELO reply does not
	// offer it and a LOGN Capabilities header is ignored, so every client
	// gets plain IMIP delivery (best effort, no Message-ID).
	NoMesgAck bool
	// SilentMESG never answers a client MESG with ACK 600, whatever its
	// ACK-Type, as Odigo does for errors-only: success is always silent.
	// Errors (ACK 811, 813) are still sent.
	SilentMESG bool
}

func (c Config) withDefaults() Config {
	if c.KeepAlive <= 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.Service == "" {
		c.Service = DefaultService
	}
	if c.DisplayName == "" {
		c.DisplayName = DefaultDisplayName
	}
	if c.OutQueueBytes <= 0 {
		c.OutQueueBytes = DefaultOutQueueBytes
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	switch {
	case c.HoldWrites == 0:
		c.HoldWrites = DefaultHoldWrites
	case c.HoldWrites < 0:
		c.HoldWrites = 0
	}
	if c.DeliveryWindow <= 0 {
		c.DeliveryWindow = DefaultDeliveryWindow
	}
	if c.Limits.MaxSize <= 0 {
		c.Limits.MaxSize = wire.DefaultMaxSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Abuse = c.Abuse.withDefaults()
	if c.ParkAfter <= 0 {
		c.ParkAfter = time.Second
	}
	return c
}
