//go:build !race

package imipside

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestIdleSessionMemory measures what an idle logged-in session costs: heap
// and goroutine stack, the server's end of the loopback connection included.
// (Skipped under -race, which inflates both.) "after a request": each
// session has sent a STAT and had its ACK, so what a request leaves behind
// (the confirmation barrier's timer) is counted too.
func TestIdleSessionMemory(t *testing.T) {
	t.Run("fresh", func(t *testing.T) { idleSessionMemory(t, false) })
	t.Run("after a request", func(t *testing.T) { idleSessionMemory(t, true) })
}

func idleSessionMemory(t *testing.T, request bool) {
	const n = 200
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn, n+1)
	go func() {
		defer close(conns)
		for range n + 1 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f := newFakeServer(t, c)
			replies := []string{serverHELO("60", testSalt), serverLOGN(`7744387 "mawis76"`)}
			if request {
				replies = append(replies, ack(600, 1003))
			}
			for _, reply := range replies {
				if _, err := f.readRaw(5 * time.Second); err != nil {
					c.Close()
					return
				}
				c.Write([]byte(reply))
			}
			conns <- c // the server keeps only the conn: no goroutine, no buffer
		}
	}()
	ctx := context.Background()
	cfg := Config{Addr: ln.Addr().String(), Number: testNumber, Password: testPassword, KeepAlive: time.Hour, ParkAfter: time.Millisecond}
	dial := func() *Session {
		s, err := Dial(ctx, cfg)
		if err != nil {
			t.Fatalf("Dial: %v", err)
		}
		if request {
			if err := s.SetStatus(ctx, "ONLINE", ""); err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
		}
		return s
	}
	warm := dial() // first-use allocations (netpoll, timers) are not per session
	defer warm.Close()
	before := liveBytes()
	sessions := make([]*Session, 0, n)
	for range n {
		sessions = append(sessions, dial())
	}
	for _, s := range sessions {
		waitParked(t, s) // no reader goroutine, no read buffer
	}
	after := liveBytes()
	per := (after - before) / n
	t.Logf("idle session: %d bytes each (heap + stack, both ends of the connection)", per)
	if per > 4<<10 {
		t.Errorf("idle session costs %d bytes, want <= 4 KiB with the server's end (parked: no reader goroutine, no read buffer)", per)
	}
	for _, s := range sessions {
		s.Close()
	}
	for c := range conns {
		c.Close()
	}
}

func liveBytes() int64 {
	var ms runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc) + int64(ms.StackInuse)
}
