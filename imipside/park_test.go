package imipside

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// readers counts the goroutines running a session's readLoop.
func readers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "imipside.(*Session).readLoop")
}

// waitParked waits until s has no reader goroutine (it waits on the
// poller); a session that cannot park (no poller here) has nothing to wait
// for.
func waitParked(t *testing.T, s *Session) {
	t.Helper()
	if s.watch == nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for !s.parked.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the session's reader never parked")
		}
		time.Sleep(time.Millisecond)
	}
}

// tcpLogin dials a session over loopback TCP to a fake server and returns
// both ends, logged in.
func tcpLogin(t testing.TB, cfg Config) (*Session, *fakeServer, *events) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan *fakeServer, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- nil
			return
		}
		f := newFakeServer(t, c)
		for _, reply := range []string{serverHELO("60", testSalt), serverLOGN(`1 "one"`)} {
			if _, err := f.readRaw(5 * time.Second); err != nil {
				c.Close()
				srv <- nil
				return
			}
			c.Write([]byte(reply))
		}
		srv <- f
	}()
	ev := newEvents()
	cfg.Addr, cfg.Number, cfg.Password = ln.Addr().String(), testNumber, testPassword
	if cfg.Handler == nil {
		cfg.Handler = ev
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	f := <-srv
	if f == nil {
		t.Fatal("fake server failed")
	}
	t.Cleanup(func() { s.Close(); f.conn.Close() })
	return s, f, ev
}

// An idle session over TCP has no reader goroutine; a pushed block starts
// one, which handles it (also when it comes in pieces) and parks again;
// the end of the connection, and Close, end a parked session.
func TestParkedReader(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	s, f, ev := tcpLogin(t, Config{KeepAlive: time.Hour, ParkAfter: time.Millisecond})
	if s.watch == nil {
		t.Fatal("a TCP session on Linux has no watch")
	}
	waitParked(t, s)
	if n := readers(); n != 0 {
		t.Fatalf("%d reader goroutines for an idle session, want 0", n)
	}
	stat := frame("STAT ONLINE", "From: 77\r\nID: 5\r\n")
	f.send(stat)
	if got, ok := ev.next(t).(StatEvent); !ok || got.From != "77" {
		t.Fatalf("event %#v, want STAT from 77", got)
	}
	waitParked(t, s)
	// A block in two writes: the reader started by the first part waits
	// for the rest (a block is never left half read).
	f.send(stat[:10])
	f.send(stat[10:])
	if _, ok := ev.next(t).(StatEvent); !ok {
		t.Fatal("no event for a block written in two parts")
	}
	// Two blocks in one write: both handled.
	f.send(stat + stat)
	for range 2 {
		if _, ok := ev.next(t).(StatEvent); !ok {
			t.Fatal("no event for back-to-back blocks")
		}
	}
	waitParked(t, s)
	// The server's end: the parked session wakes and ends.
	f.conn.Close()
	if c := ev.closed(t); c.Err == nil {
		t.Fatal("ClosedEvent without the cause")
	}
}

// Close of a parked session ends it (the poller would never wake it).
func TestCloseParked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking needs epoll")
	}
	s, _, ev := tcpLogin(t, Config{KeepAlive: time.Hour, ParkAfter: time.Millisecond})
	waitParked(t, s)
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close of a parked session did not return")
	}
	if _, ok := ev.next(t).(ClosedEvent); !ok {
		t.Fatal("no ClosedEvent")
	}
}

// NoPark keeps the blocking reader.
func TestNoPark(t *testing.T) {
	s, f, ev := tcpLogin(t, Config{KeepAlive: time.Hour, NoPark: true})
	f.send(frame("STAT ONLINE", "From: 77\r\nID: 5\r\n"))
	ev.next(t)
	if s.watch != nil || s.parked.Load() || readers() != 1 {
		t.Fatalf("NoPark session: watch %v, parked %v, %d readers; want a blocking reader", s.watch, s.parked.Load(), readers())
	}
}

// BenchmarkPingPong pushes one MESG at a time and waits for its event: the
// worst case for parking, where every block finds the reader parked (a
// wake-up through the poller and a new goroutine each), against a reader
// blocked in Read.
func BenchmarkPingPong(b *testing.B) {
	block := frame("MESG", "From: 7744387 \"mawis76\"\r\nID: 19220\r\nTo: 6340564\r\n\r\nHi there!")
	for _, tc := range []struct {
		name      string
		noPark    bool
		parkAfter time.Duration
	}{
		{"park-each-block", false, time.Nanosecond},
		{"park-after-1s", false, 0},
		{"blocking", true, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			got := make(chan struct{}, 1)
			s, f, _ := tcpLogin(b, Config{KeepAlive: time.Hour, NoPark: tc.noPark, ParkAfter: tc.parkAfter,
				Handler: HandlerFunc(func(ev Event) {
					if _, ok := ev.(MessageEvent); ok {
						got <- struct{}{}
					}
				})})
			_ = s
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.conn.Write([]byte(block)); err != nil {
					b.Fatal(err)
				}
				<-got
			}
		})
	}
}
