package imipside

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"imip-transport/imipside/wire"
)

// TestStalledServer: a server that reads nothing never blocks a caller.
// The queue fills up to MaxQueue (the write in progress included), then
// ErrBusy refuses blocks without using an ID; once the server reads again
// everything queued arrives in order.
func TestStalledServer(t *testing.T) {
	const maxQueue = 1 << 10
	ts := login(t, func(c *Config) { c.MaxQueue = maxQueue })
	text := strings.Repeat("x", 100)
	sent := 0
	busy := wait(t, async(func() error { // a caller that blocked would hang here
		for range 100 {
			_, err := ts.s.SendMessage("7744387", text)
			if err != nil {
				return err
			}
			sent++
		}
		return nil
	}))
	if !errors.Is(busy, ErrBusy) || !strings.HasPrefix(busy.Error(), "imipside: ") {
		t.Fatalf("after %d messages: %v, want ErrBusy", sent, busy)
	}
	block := len("MESG\r\n140\r\n") + 140 // ID: 10xx, To: 7744387, From, empty line, text
	if want := maxQueue / block; sent != want {
		t.Errorf("%d messages queued before ErrBusy, want %d (%d bytes each, limit %d)", sent, want, block, maxQueue)
	}
	// Other requests that do not fit are refused too, the blocking
	// wrappers included (at once: they do not wait for room).
	if _, err := ts.s.SendStatus(wire.StatusAway, strings.Repeat("y", 200)); !errors.Is(err, ErrBusy) {
		t.Errorf("SendStatus on a full queue = %v, want ErrBusy", err)
	}
	if err := ts.s.SetStatus(context.Background(), wire.StatusAway, strings.Repeat("y", 200)); !errors.Is(err, ErrBusy) {
		t.Errorf("SetStatus on a full queue = %v, want ErrBusy", err)
	}
	if err := ts.s.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
	for i := range sent {
		_, b := ts.f.next()
		if id, _ := b.ID(); id != uint64(1003+i) || b.Type != wire.TypeMESG {
			t.Fatalf("block %d: %s %d, want MESG %d", i, b.Type, id, 1003+i)
		}
	}
	id, err := ts.s.SendStatus(wire.StatusAway, "")
	if err != nil || id != uint64(1003+sent) {
		t.Fatalf("SendStatus after the server read = %d, %v; want ID %d", id, err, 1003+sent)
	}
	ts.f.expect("STAT AWAY\r\n12\r\nID: " + itoa(id) + "\r\n\r\n")
}

// TestBigBlockFitsEmptyQueue: a block larger than MaxQueue goes out when
// the queue is empty.
func TestBigBlockFitsEmptyQueue(t *testing.T) {
	ts := login(t, func(c *Config) { c.MaxQueue = 100 })
	text := strings.Repeat("z", 1000)
	if _, err := ts.s.SendMessage("1", text); err != nil {
		t.Fatalf("big MESG into an empty queue: %v", err)
	}
	if _, err := ts.s.SendMessage("1", "x"); !errors.Is(err, ErrBusy) {
		t.Errorf("second MESG behind it = %v, want ErrBusy", err)
	}
	if _, b := ts.f.next(); string(b.Body) != text {
		t.Errorf("body of %d bytes, want %d", len(b.Body), len(text))
	}
}

// TestWriteTimeout: a write that the server does not take within
// WriteTimeout ends the session.
func TestWriteTimeout(t *testing.T) {
	ts := login(t, func(c *Config) { c.WriteTimeout = 50 * time.Millisecond })
	start := time.Now()
	if _, err := ts.s.SendMessage("7744387", "never read"); err != nil {
		t.Fatal(err)
	}
	ev := ts.ev.closed(t)
	if !errors.Is(ev.Err, os.ErrDeadlineExceeded) || !strings.HasPrefix(ev.Err.Error(), "imipside: write") {
		t.Errorf("ClosedEvent %v, want a write timeout", ev.Err)
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Errorf("ended after %v, before the write timeout", el)
	}
	if _, err := ts.s.SendMessage("7744387", "x"); !errors.Is(err, ErrClosed) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("SendMessage after = %v, want ErrClosed wrapping the timeout", err)
	}
}

// countConn counts Write calls. While gate is set, the next Write closes
// held and waits for gate.
type countConn struct {
	net.Conn
	mu     sync.Mutex
	writes []int
	gate   chan struct{}
	held   chan struct{}
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, len(p))
	gate, held := c.gate, c.held
	c.gate = nil
	c.mu.Unlock()
	if gate != nil {
		close(held)
		<-gate
	}
	return c.Conn.Write(p)
}

// loginCounting logs a session in over a pipe whose writes are counted.
func loginCounting(t *testing.T) (*testSession, *countConn) {
	var cc *countConn
	ts := login(t, func(c *Config) {
		dial := c.Dial
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			cc = &countConn{Conn: conn}
			return cc, err
		}
	})
	return ts, cc
}

func (c *countConn) count() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.writes...)
}

// TestWritesCoalesced: blocks queued while a write is in progress go out
// together in the next single Write.
func TestWritesCoalesced(t *testing.T) {
	ts, cc := loginCounting(t)
	gate, held := make(chan struct{}), make(chan struct{})
	cc.mu.Lock()
	cc.gate, cc.held = gate, held
	login := len(cc.writes)
	cc.mu.Unlock()
	for i := range 5 {
		if _, err := ts.s.SendStatus(wire.StatusAway, ""); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			wait(t, held) // the writer has taken the first block
		}
	}
	close(gate)
	for i := range 5 {
		ts.f.expect("STAT AWAY\r\n12\r\nID: " + itoa(uint64(1003+i)) + "\r\n\r\n")
	}
	if got := cc.count()[login:]; len(got) != 2 || got[0] != 27 || got[1] != 4*27 {
		t.Errorf("writes of %v bytes, want [27 108]: the first block, then the 4 queued meanwhile", got)
	}
}

// TestWriterOnlyWhileQueued: an idle session has no writer goroutine; one
// runs while blocks wait to be written and exits when the queue is empty.
func TestWriterOnlyWhileQueued(t *testing.T) {
	ts := login(t, nil)
	// The count is the whole process's: a writer of an earlier test's
	// session may still be on its way out (seen in CI under load); one of
	// this idle session would never go.
	waitFor(t, "no writer goroutine in an idle session", func() bool { return writers() == 0 })
	if _, err := ts.s.SendStatus(wire.StatusAway, ""); err != nil {
		t.Fatal(err)
	}
	// net.Pipe: the write waits for the server to read.
	waitFor(t, "a writer goroutine", func() bool { return writers() == 1 })
	ts.f.next()
	waitFor(t, "the writer to exit", func() bool { return writers() == 0 })
	ts.s.mu.Lock()
	out, writing := ts.s.out, ts.s.writing
	ts.s.mu.Unlock()
	if out != nil || writing {
		t.Errorf("idle session keeps a queue buffer (%v) or a writer (%v)", out != nil, writing)
	}
}

// writers counts the goroutines running writeLoop.
func writers() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "imipside.(*Session).writeLoop")
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 5 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// writerState reports whether a writer goroutine is due and whether
// anything waits in the queue.
func writerState(s *Session) (writing, queued bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writing, s.out != nil && len(s.out.b) > 0
}

// TestDirectWrite: over TCP, a block the socket takes at once is written
// by the caller, before the call returns: no writer goroutine is due and
// nothing stays queued.
func TestDirectWrite(t *testing.T) {
	s, f, _ := tcpLogin(t, Config{KeepAlive: time.Hour})
	if s.raw == nil {
		t.Skip("no raw connection here")
	}
	for i := range 20 {
		id, err := s.SendMessage("7744387", "hello "+itoa(uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		if writing, queued := writerState(s); writing || queued {
			t.Fatalf("message %d: writer due %v, bytes queued %v; want it written by the caller", i, writing, queued)
		}
		_, b := f.next()
		if got, _ := b.ID(); got != id || string(b.Body) != "hello "+itoa(uint64(i)) {
			t.Fatalf("server read %d %q, want %d", got, b.Body, id)
		}
	}
}

// TestDirectWriteFullSocket: when the socket's send buffer is full (the
// server stopped reading), what the direct write could not hand over (part
// of a block included) goes to the writer goroutine, and every block
// arrives whole and in order once the server reads again.
func TestDirectWriteFullSocket(t *testing.T) {
	s, f, _ := tcpLogin(t, Config{KeepAlive: time.Hour, MaxQueue: 1 << 20, WriteTimeout: time.Minute})
	if s.raw == nil {
		t.Skip("no raw connection here")
	}
	text := strings.Repeat("z", 60<<10)
	var ids []uint64
	for len(ids) < 4000 { // the loopback send and receive buffers hold a few MiB at most
		id, err := s.SendMessage("7744387", text+itoa(uint64(len(ids))))
		if err != nil {
			t.Fatalf("message %d: %v", len(ids), err)
		}
		ids = append(ids, id)
		if writing, _ := writerState(s); writing {
			break
		}
	}
	if writing, _ := writerState(s); !writing {
		t.Fatalf("%d messages of 60 KiB written at once into a socket nobody reads", len(ids))
	}
	// A few more behind the partial block.
	for range 3 {
		id, err := s.SendMessage("7744387", text+itoa(uint64(len(ids))))
		if err != nil {
			t.Fatalf("message %d: %v", len(ids), err)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		raw, err := f.readRaw(10 * time.Second)
		if err != nil {
			t.Fatalf("block %d of %d: %v", i, len(ids), err)
		}
		b := parseBlock(t, raw)
		if got, _ := b.ID(); got != id || string(b.Body) != text+itoa(uint64(i)) {
			t.Fatalf("block %d: ID %d (want %d), body of %d bytes", i, got, id, len(b.Body))
		}
	}
	waitFor(t, "the writer to exit", func() bool { w, q := writerState(s); return !w && !q })
	if err := s.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
}

// TestCork: blocks queued between Cork and Uncork go out in one write at
// Uncork; a corked queue that reaches 16 KiB is written without waiting.
func TestCork(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		var s *Session
		var f *fakeServer
		var cc *countConn
		if tcp {
			s, f, _ = tcpLogin(t, Config{KeepAlive: time.Hour})
		} else {
			var ts *testSession
			ts, cc = loginCounting(t)
			s, f = ts.s, ts.f
		}
		before := 0
		if cc != nil {
			before = len(cc.count())
		}
		s.Cork()
		var ids []uint64
		for i := range 5 {
			id, err := s.SendMessage("7744387", "corked "+itoa(uint64(i)))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if writing, queued := writerState(s); writing || !queued {
			t.Fatalf("tcp %v: corked session: writer due %v, bytes queued %v; want the blocks held", tcp, writing, queued)
		}
		if cc != nil && len(cc.count()) != before {
			t.Fatalf("writes while corked: %v", cc.count()[before:])
		}
		go s.Uncork() // over a pipe the write waits for the reader below
		for i, id := range ids {
			_, b := f.next()
			if got, _ := b.ID(); got != id || string(b.Body) != "corked "+itoa(uint64(i)) {
				t.Fatalf("tcp %v: block %d: ID %d %q, want %d", tcp, i, got, b.Body, id)
			}
		}
		if cc != nil {
			if got := cc.count()[before:]; len(got) != 1 {
				t.Errorf("writes of %v bytes after Uncork, want the 5 blocks in one", got)
			}
		}
		waitFor(t, "the queue to empty", func() bool { w, q := writerState(s); return !w && !q })

		// 16 KiB queued while corked: written without Uncork.
		s.Cork()
		text := strings.Repeat("x", 6<<10)
		for i := range 3 {
			if _, err := s.SendMessage("7744387", text); err != nil {
				t.Fatalf("big message %d: %v", i, err)
			}
		}
		for i := range 3 {
			if _, b := f.next(); len(b.Body) != len(text) {
				t.Fatalf("tcp %v: big message %d: %d bytes", tcp, i, len(b.Body))
			}
		}
		s.Uncork()
	}
}
