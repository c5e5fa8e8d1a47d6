package imipside

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReviewDirectWriteAfterWriteDeadline: once the writer goroutine has
// written (it sets a write deadline of now+WriteTimeout), that deadline
// stays on the connection. When it has passed, the direct write's
// RawConn.Write fails at once with the expired deadline, so every block
// from then on starts a writer goroutine: the direct path is lost for the
// rest of the session.
func TestReviewDirectWriteAfterWriteDeadline(t *testing.T) {
	const wt = 200 * time.Millisecond
	s, f, _ := tcpLogin(t, Config{KeepAlive: time.Hour, MaxQueue: 1 << 20, WriteTimeout: wt})
	if s.raw == nil {
		t.Skip("no raw connection here")
	}
	// Fill the socket (the server does not read) until the writer
	// goroutine takes over, as under load.
	text := strings.Repeat("z", 60<<10)
	n := 0
	for ; n < 4000; n++ {
		if _, err := s.SendMessage("7744387", text); err != nil {
			t.Fatalf("message %d: %v", n, err)
		}
		if w, _ := writerState(s); w {
			n++
			break
		}
	}
	for i := range n {
		if _, err := f.readRaw(10 * time.Second); err != nil {
			t.Fatalf("block %d of %d: %v", i, n, err)
		}
	}
	waitFor(t, "the writer to exit", func() bool { w, q := writerState(s); return !w && !q })
	exited := time.Now()
	// The writer's last deadline (set before its last write) passes; the
	// connection is idle and fine.
	waitFor(t, "the writer's write deadline to pass", func() bool { return time.Since(exited) > wt })

	if err := s.raw.Write(func(uintptr) bool { return true }); err != nil {
		t.Logf("RawConn.Write on the idle connection: %v (expired deadline: %v)", err, errors.Is(err, os.ErrDeadlineExceeded))
	}
	for i := range 20 {
		id, err := s.SendMessage("7744387", "hello "+itoa(uint64(i)))
		if err != nil {
			t.Fatal(err)
		}
		if writing, queued := writerState(s); writing || queued {
			t.Fatalf("message %d, after the last writer-goroutine write's deadline: writer due %v, bytes queued %v; want it written by the caller", i, writing, queued)
		}
		_, b := f.next()
		if got, _ := b.ID(); got != id {
			t.Fatalf("server read %d, want %d", got, id)
		}
	}
}

// TestReviewCorkMaxQueue: a corked session writes once 16 KiB are queued,
// but MaxQueue is checked first: with a MaxQueue under 16 KiB, a corked
// session refuses blocks with ErrBusy while nothing at all is being written
// (the connection is idle and keeping up).
func TestReviewCorkMaxQueue(t *testing.T) {
	s, f, _ := tcpLogin(t, Config{KeepAlive: time.Hour, MaxQueue: 4 << 10})
	s.Cork()
	text := strings.Repeat("y", 1<<10)
	for i := range 8 {
		if _, err := s.SendMessage("7744387", text); err != nil {
			w, q := writerState(s)
			t.Fatalf("corked message %d (%d KiB queued in all): %v (writer due %v, bytes queued %v)", i, i+1, err, w, q)
		}
	}
	s.Uncork()
	for range 8 {
		f.next()
	}
}

// wrapTCP is a connection from Config.Dial that embeds *net.TCPConn (and
// so its SyscallConn) and does its own work in Write: here it counts, as
// a metering, throttling or fault-injecting wrapper would.
type wrapTCP struct {
	*net.TCPConn
	writes atomic.Int64
}

func (w *wrapTCP) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.TCPConn.Write(p)
}

// TestReviewDialWrapperBypassed: the direct write goes to the descriptor
// of any connection that has a SyscallConn, so a Config.Dial wrapper that
// embeds *net.TCPConn has its Write skipped for every block after login.
func TestReviewDialWrapperBypassed(t *testing.T) {
	var w *wrapTCP
	s, f, _ := tcpLogin(t, Config{KeepAlive: time.Hour, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w = &wrapTCP{TCPConn: c.(*net.TCPConn)}
		return w, nil
	}})
	before := w.writes.Load() // HELO, LOGN
	for i := range 5 {
		if _, err := s.SendMessage("7744387", "hello "+itoa(uint64(i))); err != nil {
			t.Fatal(err)
		}
		f.next()
	}
	if got := w.writes.Load() - before; got == 0 {
		t.Fatalf("5 blocks reached the server, none through the Dial connection's Write")
	}
}
