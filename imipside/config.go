package imipside

import (
	"context"
	"io"
	"log/slog"
	"net"
	"time"

	"imip-transport/imipside/wire"
)

// Defaults used where a Config field is zero.
const (
	// DefaultClientName is the Client header of LOGN.
	DefaultClientName = "imip-transport"
	// DefaultKeepAlive is used when the server's HELO has no Keep-Alive.
	DefaultKeepAlive = wire.DefaultKeepAlive * time.Second
	// DefaultLoginTimeout bounds Dial when its ctx has no deadline.
	DefaultLoginTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds one write of the queued bytes.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultMaxQueue bounds the bytes queued for the server.
	DefaultMaxQueue = 256 << 10
	// DefaultMaxOutstanding bounds the requests without an outcome.
	DefaultMaxOutstanding = 1024
	// DefaultConfirmInterval is how long requests may wait for a reply
	// before the session sends a PING to have them confirmed.
	DefaultConfirmInterval = 2 * time.Second
	// DefaultParkAfter is how long an idle reader waits before parking.
	DefaultParkAfter = time.Second
	// DefaultLogoutTimeout bounds Logout.
	DefaultLogoutTimeout = 5 * time.Second
	// maxKeepAlive caps a server's Keep-Alive value.
	maxKeepAlive = 24 * time.Hour
	// maxEarlyEvents bounds the pushed blocks kept while logging in.
	maxEarlyEvents = 32
)

// Config describes one user's session.
type Config struct {
	Addr     string      // host:port of the IMIP server
	Number   wire.Number // the user's number
	Password string      // never logged, never traced (the LOGN body is redacted in Trace)
	// ClientName is the Client header of LOGN (default "imip-transport").
	ClientName string
	// Dial opens the connection (default: a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Limits bounds the blocks accepted from the server (zero: wire defaults).
	Limits wire.Limits
	// KeepAlive overrides the server HELO's Keep-Alive (0: use the server's,
	// 60 s when it sends none). A PING goes out after KeepAlive without a
	// block written; a PING with no ACK within KeepAlive, while nothing else
	// was read and the Handler did not hold the reader, ends the session
	// with ErrTimeout.
	KeepAlive time.Duration
	// WriteTimeout bounds one write of the queued bytes (default 30 s). A
	// write that does not complete in time ends the session.
	WriteTimeout time.Duration
	// MaxQueue bounds the bytes queued for the server, the write in progress
	// included (default 256 KiB). A block that does not fit is refused with
	// ErrBusy and nothing is queued; a block always fits an empty queue.
	MaxQueue int
	// MaxOutstanding bounds the requests sent without an outcome yet
	// (default 1024). A request beyond it is refused with ErrBusy.
	MaxOutstanding int
	// ConfirmInterval: when requests are outstanding and no reply was read
	// for this long, the session sends a PING, whose ACK confirms every
	// earlier block (default 2 s).
	ConfirmInterval time.Duration
	// LogoutTimeout bounds Logout: the session ends this long after it at
	// the latest, ACK to DISC or not (default 5 s).
	LogoutTimeout time.Duration
	// AutoConfirm confirms every message the server pushes (mesg-ack) as
	// soon as the Handler has taken it, for clients that keep nothing of
	// their own to lose (a person reading, a test). A gateway leaves it off
	// and calls ConfirmMessage once it has stored the message.
	AutoConfirm bool
	// NoPark keeps a reader goroutine blocked in Read while the server is
	// silent. By default a session idle for ParkAfter has no reader
	// goroutine and no read buffer: it waits on the process's poller
	// (internal/netpoll, Linux epoll) and a reader starts when bytes
	// arrive. Connections the poller cannot watch (no file descriptor)
	// always keep their reader.
	NoPark bool
	// ParkAfter is how long the reader waits for the next block before it
	// parks (default 1 s): a busy session keeps its reader, since a
	// wake-up through the poller costs more than a read.
	ParkAfter time.Duration
	// Handler receives the session's events on its reader goroutine; see
	// Handler for what it may do. Nil drops them.
	Handler Handler
	// Logger gets debug records (ignored blocks, why the session ended).
	// Nil discards them.
	Logger *slog.Logger
	// Trace, when set, gets every block in and out, one line each, as a Go
	// quoted string prefixed by "C: " (client to server, traced when queued)
	// or "S: ". The LOGN body is replaced by "[redacted]".
	Trace io.Writer
}

// orDefault returns v, or def when v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
