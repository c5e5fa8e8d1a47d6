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
	// DefaultWriteTimeout bounds one block write when the ctx of the call
	// has no earlier deadline.
	DefaultWriteTimeout = 30 * time.Second
	// maxKeepAlive caps a server's Keep-Alive value.
	maxKeepAlive = 24 * time.Hour
	// maxTrackedMessages bounds the blocks sent without waiting (errors-only
	// MESG, LIST REJECT) remembered while no reply confirms them.
	maxTrackedMessages = 128
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
	// block written; no ACK within KeepAlive ends the session with ErrTimeout.
	KeepAlive time.Duration
	// Handler receives server-pushed events on the reader goroutine; it must
	// not block. Nil drops them.
	Handler Handler
	// Logger gets debug records (ignored blocks, why the session ended).
	// Nil discards them.
	Logger *slog.Logger
	// Trace, when set, gets every block in and out, one line each, as a Go
	// quoted string prefixed by "C: " (client to server) or "S: ". The LOGN
	// body is replaced by "[redacted]".
	Trace io.Writer
}
