package xmppside

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// linkConn is the net.Conn mellium's session runs on.
//
// Until the handshake is done it passes everything through, so mellium's
// context-driven deadlines bound the handshake. After up is set it owns the
// deadlines: mellium's SetDeadline and SetWriteDeadline calls are ignored
// (mellium sets a past write deadline from a goroutine when the context of a
// Send ends, which can land on the next, unrelated write), and each Write
// gets its own deadline of now + timeout on the raw connection. A failed
// write expires the connection, which ends the read loop and so the link.
//
// It also copies the traffic to the trace writer, if any, once up.
type linkConn struct {
	net.Conn // the raw TCP connection
	timeout  time.Duration
	tr       *tracer // nil: no trace
	up       atomic.Bool

	mu      sync.Mutex
	final   bool      // expire was called: Write no longer moves the deadline
	finalAt time.Time // the deadline expire set
}

func newLinkConn(raw net.Conn, timeout time.Duration, tr *tracer) *linkConn {
	return &linkConn{Conn: raw, timeout: timeout, tr: tr}
}

// start switches to managed deadlines (and tracing) once the handshake is
// done, clearing whatever deadline the handshake left.
func (c *linkConn) start() {
	c.up.Store(true)
	c.mu.Lock()
	if !c.final {
		_ = c.Conn.SetDeadline(time.Time{})
	}
	c.mu.Unlock()
}

// expire sets a final read and write deadline t on the raw connection: no
// later Write moves it, and a later expire can only bring it forward.
// expire(time.Now()) tears the link down.
func (c *linkConn) expire(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.final && !t.Before(c.finalAt) {
		return
	}
	c.final, c.finalAt = true, t
	_ = c.Conn.SetDeadline(t)
}

func (c *linkConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.tr != nil && c.up.Load() {
		c.tr.trace("RECV ", p[:n])
	}
	return n, err
}

func (c *linkConn) Write(p []byte) (int, error) {
	if !c.up.Load() {
		return c.Conn.Write(p)
	}
	c.mu.Lock()
	if !c.final {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	c.mu.Unlock()
	if c.tr != nil {
		c.tr.trace("SEND ", p)
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		// A stanza may be half written: the stream is unusable.
		c.expire(time.Now())
	}
	return n, err
}

// SetDeadline passes through during the handshake and is ignored after.
func (c *linkConn) SetDeadline(t time.Time) error {
	if c.up.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline passes through during the handshake and is ignored after.
func (c *linkConn) SetWriteDeadline(t time.Time) error {
	if c.up.Load() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}
