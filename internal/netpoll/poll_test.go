package netpoll

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b = <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

const waitFor = 5 * time.Second

func supported(t *testing.T) *Poller {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("epoll is Linux only")
	}
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A watch wakes once per Arm when its connection becomes readable, at once
// when it already is, and never when it is not armed.
func TestWakeOncePerArm(t *testing.T) {
	p := supported(t)
	a, b := pair(t)
	wakes := make(chan struct{}, 10)
	w, err := p.Watch(a, func() { wakes <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Data before any Arm: no wake (registered disarmed).
	if _, err := b.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	// Arm while readable: reported at once.
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wakes:
	case <-time.After(waitFor):
		t.Fatal("no wake for data present at Arm")
	}
	// Still readable (nothing consumed) but not re-armed: no second wake.
	// Re-arming reports it again; the channel must hold exactly one.
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wakes:
	case <-time.After(waitFor):
		t.Fatal("no wake after re-Arm")
	}
	if len(wakes) != 0 {
		t.Fatalf("%d extra wakes", len(wakes))
	}
	// Consume, arm, and only then write: the write wakes it.
	buf := make([]byte, 8)
	if _, err := a.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wakes:
	case <-time.After(waitFor):
		t.Fatal("no wake for new data")
	}
}

// The end of the stream wakes an armed watch (the reader then sees EOF).
func TestWakeOnPeerClose(t *testing.T) {
	p := supported(t)
	a, b := pair(t)
	wakes := make(chan struct{}, 1)
	w, err := p.Watch(a, func() { wakes <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	select {
	case <-wakes:
	case <-time.After(waitFor):
		t.Fatal("no wake on peer close")
	}
}

// The poller's goroutine exists only while watches do (goleak checks the
// end of the test binary; this checks it ends after each last Close).
func TestLoopEndsWithLastWatch(t *testing.T) {
	p := supported(t)
	for range 3 {
		a, _ := pair(t)
		w, err := p.Watch(a, func() {})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Arm(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		if err := w.Arm(); !errors.Is(err, ErrClosed) {
			t.Fatalf("Arm after Close: %v, want ErrClosed", err)
		}
		deadline := time.Now().Add(waitFor)
		for {
			p.mu.Lock()
			running := p.running
			p.mu.Unlock()
			if !running {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("poller goroutine still running without watches")
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// A connection without a file descriptor cannot be parked.
func TestUnsupportedConn(t *testing.T) {
	p, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := p.Watch(a, func() {}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Watch(net.Pipe) = %v, want ErrUnsupported", err)
	}
}

// Many watches, each woken by its own data, each exactly once.
func TestManyWatches(t *testing.T) {
	p := supported(t)
	const n = 200
	wakes := make(chan int, n*2)
	var peers []net.Conn
	for i := range n {
		a, b := pair(t)
		w, err := p.Watch(a, func() { wakes <- i })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		if err := w.Arm(); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, b)
	}
	for _, b := range peers {
		if _, err := b.Write([]byte("z")); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[int]bool)
	for len(seen) < n {
		select {
		case i := <-wakes:
			if seen[i] {
				t.Fatalf("watch %d woke twice", i)
			}
			seen[i] = true
		case <-time.After(waitFor):
			t.Fatalf("%d of %d watches woke", len(seen), n)
		}
	}
}
