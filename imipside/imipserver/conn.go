package imipserver

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"imip-transport/imipside/wire"
)

// conn is one client connection.
//
// Its reader goroutine (serve) reads and handles blocks. Writes go through
// a bounded queue; a writer goroutine (drain) is started only while the
// queue is not empty, so an idle connection costs one goroutine. Nothing
// ever blocks on another client's socket: enqueue never waits, and a
// client whose queue overflows is disconnected.
type conn struct {
	srv  *Server
	nc   net.Conn
	addr string // the client's IP, for the abuse limits
	// pace limits the MESG and LIST ADD blocks of a logged-in user (made
	// at login; used by the reader goroutine only).
	pace *rate.Limiter
	logp atomic.Pointer[slog.Logger] // gains the number at login

	// Owned by the reader goroutine. num and confirms are set once, before
	// the conn is published in Server.online, and only read after.
	salt      string
	num       wire.Number
	nick      string
	confirms  bool    // mesg-ack: both sides announced it
	confirmed []int64 // confirmed message IDs not yet deleted from the Store

	// Delivery of stored messages (see deliver), guarded by dmu. Lock
	// order: dmu before qmu.
	dmu         sync.Mutex
	flight      map[uint64]inflight // pushed MESG block ID -> message, unconfirmed
	flightBytes int                 // bytes of the blocks in flight
	last        int64               // highest message ID pushed on this connection
	pulling     bool                // a goroutine runs deliver's loop
	dirty       bool                // the Store may hold messages above last

	// Guarded by srv.mu.
	status wire.Status // OFFLINE while logged in means invisible
	text   string

	// Outbound queue, guarded by qmu.
	qmu     sync.Mutex
	q       []outItem
	qbytes  int  // bytes queued and not yet written
	writing bool // a drain goroutine is running
	closing bool // close once the queue is written
	closed  bool
	dead    chan struct{} // closed by kill
}

// outItem is one queued write.
type outItem struct {
	buf    []byte
	delay  time.Duration // wait this long before writing (Faults.DelayACK)
	done   func()        // called after buf was written
	pushed uint64        // block ID of a pushed stored message, else 0
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, dead: make(chan struct{})}
	c.logp.Store(s.log.With("remote", nc.RemoteAddr().String()))
	return c
}

// log returns the connection's logger; safe from any goroutine.
func (c *conn) log() *slog.Logger { return c.logp.Load() }

// serve is the reader goroutine.
func (c *conn) serve() {
	defer c.srv.wg.Done()
	defer c.finish()
	c.log().Debug("imipserver: connected")
	rd := wire.NewReader(c.nc, c.srv.cfg.Limits)
	var b wire.Block
	idle := 2 * c.srv.cfg.KeepAlive
	// A connection must log in within LoginTimeout of its accept, whatever
	// it sends meanwhile.
	loginBy := time.Now().Add(c.srv.cfg.Abuse.LoginTimeout)
	for {
		if len(c.confirmed) > 0 && rd.Buffered() == 0 {
			// Confirms that arrive together share one Store delete.
			c.flushConfirmed(c.srv.ctx, true)
		}
		deadline := time.Now().Add(idle)
		if c.num == "" && deadline.After(loginBy) {
			deadline = loginBy
		}
		if err := c.nc.SetReadDeadline(deadline); err != nil {
			return
		}
		err := rd.ReadBlock(&b)
		if err != nil {
			var we *wire.Error
			switch {
			case errors.As(err, &we):
				c.log().Info("imipserver: malformed block, closing", "err", err)
				c.sendACK(nil, wire.CodeMalformedBlock)
				c.closeAfterFlush()
			case errors.Is(err, os.ErrDeadlineExceeded) && c.num == "":
				c.log().Info("imipserver: no login in time, closing", "within", c.srv.cfg.Abuse.LoginTimeout)
			case errors.Is(err, os.ErrDeadlineExceeded):
				c.log().Info("imipserver: keep-alive timeout, closing", "idle", idle)
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
				c.log().Debug("imipserver: connection closed")
			default:
				c.log().Info("imipserver: read", "err", err)
			}
			return
		}
		if !c.handle(&b) {
			return
		}
	}
}

// finish runs when the reader goroutine ends: it takes the user offline
// and closes the connection (after the queue is written if closeAfterFlush
// was called).
func (c *conn) finish() {
	s := c.srv
	c.finalFlush()
	s.guard.closed(c.addr, c.num == "")
	s.mu.Lock()
	delete(s.conns, c)
	if c.num != "" && s.online[c.num] == c {
		delete(s.online, c.num)
		// At shutdown everyone goes; no fan-out to connections being closed.
		if c.status != wire.StatusOffline && !s.closed {
			s.announce(c.num, wire.StatusOffline, "")
		}
		c.log().Info("imipserver: logged out")
	}
	s.mu.Unlock()
	c.qmu.Lock()
	closing := c.closing
	c.qmu.Unlock()
	if !closing {
		c.kill()
	}
}

// enqueue queues it without blocking. It returns false when the
// connection is closed or closing, or when the queue overflowed (the
// connection is then killed).
func (c *conn) enqueue(it outItem) bool { return c.enqueueMax(it, 0) }

// enqueueMax is enqueue, except that with soft > 0 it does not queue it
// when the queue would then hold more than soft bytes (and is not empty),
// and reports false: a full queue is then no reason to disconnect, since
// the caller has another way (the Store, the next login).
func (c *conn) enqueueMax(it outItem, soft int) bool {
	c.qmu.Lock()
	if c.closed || c.closing {
		c.qmu.Unlock()
		return false
	}
	if soft > 0 && c.qbytes > 0 && c.qbytes+len(it.buf) > soft {
		c.qmu.Unlock()
		return false
	}
	if c.qbytes+len(it.buf) > c.srv.cfg.OutQueueBytes {
		c.qmu.Unlock()
		c.log().Warn("imipserver: outbound queue full, disconnecting slow client", "queued", c.qbytes)
		c.kill()
		return false
	}
	c.q = append(c.q, it)
	c.qbytes += len(it.buf)
	if !c.writing {
		c.writing = true
		c.srv.wg.Add(1)
		go c.drain()
	}
	c.qmu.Unlock()
	return true
}

// closeAfterFlush closes the connection once everything queued is written.
func (c *conn) closeAfterFlush() {
	c.qmu.Lock()
	if c.closed || c.closing {
		c.qmu.Unlock()
		return
	}
	c.closing = true
	writing := c.writing
	c.qmu.Unlock()
	if !writing {
		c.kill()
	}
}

// drain is the writer goroutine; it exits when the queue is empty.
func (c *conn) drain() {
	defer c.srv.wg.Done()
	var batch []outItem
	var pushed []uint64 // block IDs of pushed messages written in this batch
	for {
		c.qmu.Lock()
		if c.closed {
			c.writing = false
			c.qmu.Unlock()
			return
		}
		if len(c.q) == 0 {
			c.writing = false
			closing := c.closing
			c.q = nil // drop the grown backing array while idle
			c.qmu.Unlock()
			if closing {
				c.kill()
			}
			return
		}
		batch, c.q = c.q, batch[:0]
		c.qmu.Unlock()
		pushed = pushed[:0]
		for i := range batch {
			if !c.write(&batch[i]) {
				c.kill()
				c.qmu.Lock()
				c.writing = false
				c.qmu.Unlock()
				if len(pushed) > 0 {
					c.pushedWritten(pushed)
				}
				return
			}
			if batch[i].pushed != 0 {
				pushed = append(pushed, batch[i].pushed)
			}
			batch[i] = outItem{}
		}
		if len(pushed) > 0 {
			c.pushedWritten(pushed)
		}
	}
}

func (c *conn) write(it *outItem) bool {
	if it.delay > 0 {
		t := time.NewTimer(it.delay)
		select {
		case <-c.dead:
			t.Stop()
			return false
		case <-t.C:
		}
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
		return false
	}
	if _, err := c.nc.Write(it.buf); err != nil {
		c.log().Info("imipserver: write failed, disconnecting", "err", err)
		return false
	}
	c.qmu.Lock()
	c.qbytes -= len(it.buf)
	c.qmu.Unlock()
	if it.done != nil {
		it.done()
	}
	return true
}

// isClosed reports whether the connection is closed or closing.
func (c *conn) isClosed() bool {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return c.closed || c.closing
}

// kill closes the connection at once and drops the queue. Idempotent.
func (c *conn) kill() {
	c.qmu.Lock()
	if c.closed {
		c.qmu.Unlock()
		return
	}
	c.closed = true
	c.q = nil
	c.qbytes = 0
	close(c.dead)
	c.qmu.Unlock()
	c.nc.Close()
}
