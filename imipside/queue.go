package imipside

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"imip-transport/imipside/wire"
)

// The outgoing queue: callers encode their blocks into s.out under s.mu and
// return; a writer goroutine, started when the queue becomes non-empty and
// gone when it is empty again, hands everything queued to one Write.

// wbuf is a queue buffer. Buffers come from a pool shared by all sessions,
// so an idle session holds none.
type wbuf struct{ b []byte }

const (
	wbufSize     = 1 << 10         // capacity of a new buffer
	maxPooledBuf = DefaultMaxQueue // a buffer grown larger is dropped, not pooled
)

var wbufs = sync.Pool{New: func() any { return &wbuf{b: make([]byte, 0, wbufSize)} }}

func getBuf() *wbuf { return wbufs.Get().(*wbuf) }

func putBuf(w *wbuf) {
	if cap(w.b) > maxPooledBuf {
		return
	}
	w.b = w.b[:0]
	wbufs.Put(w)
}

// qopts says what to remember about a block being queued.
type qopts struct {
	typ   string      // the block's type for errors (not b.Type: that would move b to the heap)
	op    op          // a request awaiting its outcome; opNone: not tracked
	num   wire.Number // the number its ReplyEvent names
	w     *waiter     // a blocking wrapper waits for the outcome
	force bool        // queue even beyond MaxQueue (DISC)
}

// queue checks b, numbers it (its first header must be ID), queues its bytes
// and returns its ID. It never blocks on the network.
func (s *Session) queue(b *wire.Block, o qopts) (uint64, error) {
	if err := checkBlock(b, o.typ); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queueLocked(b, o)
}

// checkBlock refuses a block that the server's reader would refuse (and
// close the connection for), before it takes an ID.
func checkBlock(b *wire.Block, typ string) error {
	if err := wire.Check(b); err != nil {
		return fmt.Errorf("imipside: %s: %w", typ, err)
	}
	if n := typeLineLen(b); n > wire.DefaultMaxLine {
		return fmt.Errorf("imipside: %s: %w", typ, &wire.Error{Err: wire.ErrLineTooLong, Detail: "type line of " + strconv.Itoa(n) + " bytes"})
	}
	// The ID header's value is set later: count the longest one.
	if n := wire.ContentSize(b) + 20; n > wire.DefaultMaxSize {
		return fmt.Errorf("imipside: %s: %w", typ, &wire.Error{Err: wire.ErrSizeTooLarge, Detail: strconv.Itoa(n) + " bytes"})
	}
	return nil
}

// queueLocked is queue for a block already checked; s.mu is held.
func (s *Session) queueLocked(b *wire.Block, o qopts) (uint64, error) {
	if s.closed || s.discID != 0 {
		return 0, s.closedErrLocked()
	}
	if o.op != opNone && s.reqs.len() >= s.maxReqs {
		return 0, fmt.Errorf("%w: %s: %d requests without an outcome (limit %d)", ErrBusy, o.typ, s.reqs.len(), s.maxReqs)
	}
	id := s.nextID
	b.Headers[0] = wire.Header{Name: wire.HdrID, Value: strconv.FormatUint(id, 10)}
	queued := s.inflight
	if s.out != nil {
		queued += len(s.out.b)
	}
	if queued > 0 && queued+encodedLen(b) > s.maxQueue && s.corked && !s.writing {
		// What Cork holds is not a backlog: hand it to the socket first,
		// and refuse only what the socket does not take.
		s.startWriteLocked()
		queued = s.inflight
		if s.out != nil {
			queued += len(s.out.b)
		}
	}
	if !o.force && queued > 0 && queued+encodedLen(b) > s.maxQueue {
		return 0, fmt.Errorf("%w: %s: %d bytes queued for the server (limit %d)", ErrBusy, o.typ, queued, s.maxQueue)
	}
	if s.out == nil {
		s.out = getBuf()
	}
	out, err := wire.AppendBlock(s.out.b, b)
	if err != nil { // checked before: not reached
		return 0, fmt.Errorf("imipside: %s: %w", o.typ, err)
	}
	s.out.b = out
	s.nextID++
	if o.op != opNone {
		s.reqs.push(request{id: id, num: o.num, op: o.op, w: o.w})
		s.armBarrierLocked()
	}
	if b.Type == wire.TypePING {
		s.lastPing = id
	}
	s.traceBlock('C', b)
	if s.corked && len(s.out.b) < corkMax {
		return id, nil // Uncork writes it, with what follows
	}
	if !s.writing {
		s.startWriteLocked()
	}
	return id, nil
}

// startWriteLocked writes what is queued at once if the socket takes it,
// else starts the writer goroutine; s.mu is held, s.writing false.
func (s *Session) startWriteLocked() {
	if s.tryWriteLocked() {
		return
	}
	s.writing = true
	s.bg.Add(1)
	go s.writeLoop()
}

func typeLineLen(b *wire.Block) int {
	if b.Arg == "" {
		return len(b.Type)
	}
	return len(b.Type) + 1 + len(b.Arg)
}

// encodedLen returns the number of bytes b is written with.
func encodedLen(b *wire.Block) int {
	size := wire.ContentSize(b)
	digits := 1
	for n := size; n >= 10; n /= 10 {
		digits++
	}
	return typeLineLen(b) + 2 + digits + 2 + size
}

// corkMax is how many bytes a corked session queues before it writes
// anyway.
const corkMax = 16 << 10

// Cork makes the blocks queued from now on wait for Uncork (or for 16 KiB
// to be queued), so that the blocks a caller queues in a row go out in one
// write. A caller that corks must uncork soon, and must not wait for
// anything the server sends in between.
func (s *Session) Cork() {
	s.mu.Lock()
	s.corked = true
	s.mu.Unlock()
}

// Uncork writes what Cork held, and ends it.
func (s *Session) Uncork() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.corked = false
	if s.writing || s.closed || s.out == nil || len(s.out.b) == 0 {
		return
	}
	s.startWriteLocked()
}

// tryWriteLocked writes what is queued at once, without blocking, when
// nothing else is being written (s.mu held, s.writing false): one write(2)
// on the non-blocking socket, on the caller's goroutine. What the socket
// does not take at once (a full send buffer), or an error, stays queued for
// the writer goroutine, which waits for the socket or reports the error.
// This spares a goroutine start and a wake-up per block when the
// connection keeps up, which is nearly always.
func (s *Session) tryWriteLocked() bool {
	if s.raw == nil || s.closed || s.out == nil || len(s.out.b) == 0 {
		return false
	}
	p := s.out.b
	var n int
	var werr error
	err := s.raw.Write(func(fd uintptr) bool {
		n, werr = rawWrite(fd, p)
		return true // one attempt: never wait here
	})
	if err != nil || werr != nil || n <= 0 {
		return false
	}
	if n < len(p) {
		s.out.b = s.out.b[:copy(s.out.b, p[n:])]
		return false
	}
	putBuf(s.out)
	s.out = nil
	if s.pingOut == 0 && s.ka != nil {
		s.ka.Reset(s.kaDur) // a block was written: the connection is not idle
	}
	return true
}

// writeLoop is the writer goroutine: it writes what is queued, all of it in
// one Write, until the queue is empty, then exits. While it runs the queue
// is double-buffered: callers fill one buffer while the other is written.
// A failed or timed-out write ends the session: the stream may hold half a
// block.
func (s *Session) writeLoop() {
	defer s.bg.Done()
	var cur *wbuf // the buffer being written
	s.mu.Lock()
	for {
		if cur != nil {
			s.inflight = 0
			if !s.closed && s.pingOut == 0 && s.ka != nil {
				s.ka.Reset(s.kaDur) // a block was written: the connection is not idle
			}
		}
		if s.closed || s.out == nil || len(s.out.b) == 0 {
			if cur != nil {
				putBuf(cur)
				if !s.closed && s.raw != nil {
					// The deadline set for that write would otherwise
					// stay and, once passed, fail every direct write
					// (RawConn.Write checks it) until the next writer.
					s.conn.SetWriteDeadline(time.Time{})
				}
			}
			if s.out != nil {
				putBuf(s.out)
				s.out = nil
			}
			s.writing = false
			s.mu.Unlock()
			return
		}
		if cur != nil {
			cur.b = cur.b[:0]
		}
		cur, s.out = s.out, cur
		s.inflight = len(cur.b)
		s.mu.Unlock()
		if err := s.write(cur.b); err != nil {
			s.closeWith(err)
		}
		s.mu.Lock()
	}
}

// write writes p within the write timeout.
func (s *Session) write(p []byte) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil {
		return fmt.Errorf("imipside: write: %w", err)
	}
	n, err := s.conn.Write(p)
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("imipside: write: %d of %d bytes written within %v: %w", n, len(p), s.writeTimeout, err)
	}
	return fmt.Errorf("imipside: write: %w", err)
}
