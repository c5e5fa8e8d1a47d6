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
	"imip-transport/internal/netpoll"
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

	// Reader state, handed from one reader goroutine to the next across
	// parks (the watch wakes once per arm, so one runs at a time).
	rd       *wire.Reader
	loginBy  time.Time
	lastRead atomic.Int64 // Unix ns of the last block read (the janitor reads it)
	watch    *netpoll.Watch
	parked   atomic.Bool
	logp     atomic.Pointer[slog.Logger] // gains the number at login

	// Owned by the reader goroutine. num and confirms are set once, before
	// the conn is published in Server.online, and only read after.
	salt      string
	num       wire.Number
	nick      string
	confirms  bool    // mesg-ack: both sides announced it
	confirmed []int64 // confirmed message IDs not yet deleted from the Store
	// confirmedKeys are the Keys of those that were pushed before they
	// were stored (see early).
	confirmedKeys []string

	// Delivery of stored messages (see deliver), guarded by dmu. Lock
	// order: dmu before qmu.
	dmu         sync.Mutex
	flight      map[uint64]inflight // pushed MESG block ID -> message, unconfirmed
	flightBytes int                 // bytes of the blocks in flight
	last        int64               // highest message ID pushed on this connection
	pulling     bool                // a goroutine runs deliver's loop
	dirty       bool                // the Store may hold messages above last
	// early holds the Keys of held messages pushed on this connection
	// that may be in the Store (or get there) before their confirmation
	// is deleted: deliver skips them, so none is pushed twice.
	early   map[string]struct{}
	forgets uint64 // counts forget calls (see deliver)
	// storeMu orders the writes of held messages pushed on this
	// connection, and of the messages stored for its user meanwhile (see
	// storeHeld).
	//
	// Lock order, for one connection and across connections:
	// storeMu (of the new login, then of the connection it replaces) before
	// srv.mu (taken briefly by store, which then releases it) before any
	// connection's dmu; dmu before the sender's amu (pushHeld reserves the
	// sender's answer); amu before qmu. No goroutine holds two dmu or two
	// amu at once.
	storeMu sync.Mutex

	// Answers waiting behind a held ACK (see answer), guarded by amu.
	// Lock order: amu before qmu.
	amu     sync.Mutex
	answers []*answerSlot
	// answerBytes counts the ready answers waiting in answers;
	// closeAnswered: DISC was answered, close once answers are out.
	answerBytes   int
	closeAnswered bool

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
	buf   []byte
	delay time.Duration // wait this long before writing (Faults.DelayACK)
	done  func()        // called after buf was written
	// dropped is called instead of done when the connection ends with
	// buf not written (a live message: its sender is still owed an
	// answer).
	dropped func()
	pushed  uint64 // block ID of a pushed stored message, else 0
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, dead: make(chan struct{})}
	// A connection must log in within LoginTimeout of its accept, whatever
	// it sends meanwhile. Set before the conn is published: the janitor
	// reads them.
	now := time.Now()
	c.loginBy = now.Add(s.cfg.Abuse.LoginTimeout)
	c.lastRead.Store(now.UnixNano())
	c.logp.Store(s.log.With("remote", nc.RemoteAddr().String()))
	return c
}

// log returns the connection's logger; safe from any goroutine.
func (c *conn) log() *slog.Logger { return c.logp.Load() }

// serve starts the connection's reader: it reads and handles blocks, and
// parks while the client is silent (see readLoop).
func (c *conn) serve() {
	c.log().Debug("imipserver: connected")
	c.rd = wire.NewReader(c.nc, c.srv.cfg.Limits)
	if p, err := netpoll.Default(); err == nil && !c.srv.cfg.NoPark {
		if w, err := p.Watch(c.nc, c.wake); err == nil {
			c.watch = w
		}
	}
	c.readLoop(false)
}

// wake starts a reader for a parked connection (on the poller's goroutine
// when the client sent something, or from kill).
func (c *conn) wake() {
	if c.parked.CompareAndSwap(true, false) {
		go c.readLoop(true)
	}
}

// readLoop is the connection's reader. The connection counts in the
// server's WaitGroup from its accept until finish, parked or not. After
// ParkAfter without a block it parks: it drops its read buffers, arms the
// watch and returns; the watch starts a new readLoop when bytes (or the
// end) arrive, and kill starts one so that a parked connection ends too.
// The keep-alive and login deadlines of a parked connection are kept by
// the server's janitor. woken: there is something to read before parking.
func (c *conn) readLoop(woken bool) {
	rd := c.rd
	var b wire.Block
	idle := 2 * c.srv.cfg.KeepAlive
	for {
		if len(c.confirmed) > 0 && rd.Buffered() == 0 {
			// Confirms that arrive together share one Store delete.
			c.flushConfirmed(c.srv.ctx, true)
		}
		last := time.Unix(0, c.lastRead.Load())
		deadline := last.Add(idle)
		if c.num == "" && deadline.After(c.loginBy) {
			deadline = c.loginBy
		}
		if c.watch != nil && !woken && rd.Buffered() == 0 {
			wait := time.Now().Add(c.srv.cfg.ParkAfter)
			if wait.Before(deadline) {
				if err := c.nc.SetReadDeadline(wait); err != nil {
					break
				}
				err := rd.Wait()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					if c.park() {
						return
					}
					continue
				}
			}
		}
		woken = false
		if err := c.nc.SetReadDeadline(deadline); err != nil {
			break
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
			break
		}
		c.lastRead.Store(time.Now().UnixNano())
		if !c.handle(&b) {
			break
		}
	}
	if c.watch != nil {
		c.watch.Close()
	}
	c.finish()
	c.srv.wg.Done()
}

// park drops the read buffers and arms the watch; it reports whether the
// reader must return (a new one starts when the client sends, or was
// started by kill meanwhile); false: arming failed, the connection is
// ending, and this reader goes on to see it.
func (c *conn) park() bool {
	if err := c.nc.SetReadDeadline(time.Time{}); err != nil {
		return false
	}
	c.rd.Release()
	c.parked.Store(true)
	if err := c.watch.Arm(); err != nil {
		return !c.parked.CompareAndSwap(true, false)
	}
	return true
}

// expired reports whether a parked connection is past its keep-alive or
// login deadline (the janitor kills it).
func (c *conn) expired(now time.Time, idle time.Duration) bool {
	if !c.parked.Load() {
		return false // its reader keeps its own deadlines
	}
	if now.Sub(time.Unix(0, c.lastRead.Load())) > idle {
		return true
	}
	return c.num == "" && now.After(c.loginBy)
}

// finish runs when the reader goroutine ends: it takes the user offline
// and closes the connection (after the queue is written if closeAfterFlush
// was called).
func (c *conn) finish() {
	s := c.srv
	c.finalFlush()
	c.endHeld()
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
	c.amu.Lock()
	closing = closing || c.closeAnswered // after DISC, the answers go first
	c.amu.Unlock()
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
				dropItems(batch[i:])
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
	unsent := c.q
	c.q = nil
	c.qbytes = 0
	close(c.dead)
	c.qmu.Unlock()
	c.nc.Close()
	c.wake() // a parked reader must see the end too
	dropItems(unsent)
}

// dropItems calls the dropped of the items never written.
func dropItems(items []outItem) {
	for i := range items {
		if items[i].dropped != nil {
			items[i].dropped()
		}
	}
}
