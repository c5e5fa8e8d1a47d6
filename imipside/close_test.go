package imipside

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/wire"
)

func TestLogout(t *testing.T) {
	ts := login(t, nil)
	if _, err := ts.s.SendMessage("7744387", "bye"); err != nil {
		t.Fatal(err)
	}
	if err := ts.s.Logout(); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if err := ts.s.Logout(); err != nil {
		t.Errorf("second Logout: %v", err)
	}
	if _, err := ts.s.SendMessage("1", "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("SendMessage after Logout = %v, want ErrClosed", err)
	}
	ts.f.expect("MESG\r\n43\r\nID: 1003\r\nTo: 7744387\r\nFrom: 6340564\r\n\r\nbye")
	ts.f.expect("DISC\r\n12\r\nID: 1004\r\n\r\n")
	ts.f.send(ack(600, 1004))
	// The ACK to DISC settles the MESG (implicitly) and ends the session.
	if r := ts.ev.reply(t); r.ID != 1003 || !r.Implicit || !r.OK() {
		t.Errorf("ReplyEvent %+v, want an implicit success for 1003", r)
	}
	if ev := ts.ev.closed(t); ev.Err != nil {
		t.Errorf("ClosedEvent %v, want nil", ev.Err)
	}
	wait(t, ts.s.Done())
	ts.ev.none(t)
	ts.f.expectEOF()
	if err := ts.s.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
	if err := ts.s.Logout(); !errors.Is(err, ErrClosed) {
		t.Errorf("Logout after the end = %v, want ErrClosed", err)
	}
	if _, err := ts.s.SendStatus(wire.StatusOnline, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("SendStatus after the end = %v, want ErrClosed", err)
	}
	if err := ts.s.Close(); err != nil {
		t.Errorf("Close after the end = %v", err)
	}
}

// TestLogoutWithoutAck: whatever the server does after DISC, the session
// ends, with a nil Err, within LogoutTimeout.
func TestLogoutWithoutAck(t *testing.T) {
	const bound = 100 * time.Millisecond
	tests := []struct {
		name   string
		server func(*fakeServer)
	}{
		0: {"server closes", func(f *fakeServer) { f.conn.Close() }},
		1: {"server silent", func(*fakeServer) {}},
		2: {"server refuses", func(f *fakeServer) { f.send(ack(812, 1003)) }},
		3: {"server garbles", func(f *fakeServer) { f.send("ACK 600\r\nxx\r\n") }},
	}
	for i, tt := range tests {
		ts := login(t, func(c *Config) { c.LogoutTimeout = bound })
		start := time.Now()
		if err := ts.s.Logout(); err != nil {
			t.Fatal(err)
		}
		ts.f.expect("DISC\r\n12\r\nID: 1003\r\n\r\n")
		tt.server(ts.f)
		if ev := ts.ev.closed(t); ev.Err != nil {
			t.Errorf("%d %s: ClosedEvent %v, want nil", i, tt.name, ev.Err)
		}
		wait(t, ts.s.Done())
		if el := time.Since(start); i == 1 && el < bound {
			t.Errorf("%d %s: ended after %v, before the bound %v", i, tt.name, el, bound)
		}
		if err := ts.s.Err(); err != nil {
			t.Errorf("%d %s: Err() = %v, want nil", i, tt.name, err)
		}
	}
}

// TestDisconnectWrapper: Disconnect waits for the end; with a silent server
// its ctx ends the wait (and the session).
func TestDisconnectWrapper(t *testing.T) {
	ts := login(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	errc := async(func() error { return ts.s.Disconnect(ctx) })
	ts.f.expect("DISC\r\n12\r\nID: 1003\r\n\r\n")
	if err := wait(t, errc); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Disconnect = %v, want DeadlineExceeded", err)
	}
	select {
	case <-ts.s.Done():
	default:
		t.Fatal("Done() not closed after Disconnect returned")
	}
	if ev := ts.ev.closed(t); ev.Err != nil {
		t.Errorf("ClosedEvent %v, want nil", ev.Err)
	}
}

// TestKillWhileHandlerBlocked: Kill returns at once while the Handler
// blocks; the ClosedEvent follows when it returns.
func TestKillWhileHandlerBlocked(t *testing.T) {
	f, dial := pipe(t)
	release := make(chan struct{})
	got := make(chan Event, 8)
	cfg := baseConfig(dial, nil)
	cfg.Handler = HandlerFunc(func(ev Event) {
		got <- ev
		if _, ok := ev.(MessageEvent); ok {
			<-release
		}
	})
	res := dialAsync(context.Background(), cfg)
	f.expect(goldenHELO)
	f.send(serverHELO("60", testSalt))
	f.expect(goldenLOGN)
	f.send(serverLOGN(""))
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.s
	defer s.Close()
	f.send(frame("MESG", "From: 1\r\nID: 5\r\n\r\nhold on"))
	if _, ok := wait(t, got).(MessageEvent); !ok {
		t.Fatal("first event is not the MESG")
	}
	// The Handler holds the reader. Sends and Kill do not wait for it.
	if _, err := s.SendStatus(wire.StatusAway, ""); err != nil {
		t.Fatal(err)
	}
	f.expect("STAT AWAY\r\n12\r\nID: 1003\r\n\r\n")
	wait(t, async(func() error { s.Kill(); return nil }))
	f.expectEOF()
	select {
	case ev := <-got:
		t.Fatalf("event %#v while the Handler still runs", ev)
	case <-s.Done():
		t.Fatal("Done() closed while the Handler still runs")
	default:
	}
	close(release)
	if ev, ok := wait(t, got).(ClosedEvent); !ok || ev.Err != nil {
		t.Errorf("event %#v, want ClosedEvent{nil}", ev)
	}
	wait(t, s.Done())
}

func TestClose(t *testing.T) {
	ts := login(t, nil)
	errc := async(func() error { return ts.s.Ping(context.Background()) })
	ts.f.expect("PING\r\n12\r\nID: 1003\r\n\r\n")
	for range 2 {
		if err := ts.s.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	}
	select {
	case <-ts.s.Done():
	default:
		t.Fatal("Done() not closed after Close returned")
	}
	if err := wait(t, errc); !errors.Is(err, ErrClosed) {
		t.Errorf("pending Ping = %v, want ErrClosed", err)
	}
	if err := ts.s.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
	if ev, ok := ts.ev.next(t).(ClosedEvent); !ok || ev.Err != nil {
		t.Errorf("event %#v, want ClosedEvent{nil}", ev)
	}
	ts.ev.none(t)
	ts.f.expectEOF()
}

func TestServerClosesConnection(t *testing.T) {
	ts := login(t, nil)
	errc := async(func() error { return ts.s.SetStatus(context.Background(), wire.StatusOnline, "") })
	ts.f.next()
	if _, err := ts.s.SendMessage("1", "x"); err != nil {
		t.Fatal(err)
	}
	ts.f.next()
	ts.f.conn.Close()
	// No ReplyEvent for the MESG: the ClosedEvent says it failed.
	ev, ok := ts.ev.next(t).(ClosedEvent)
	if !ok || !errors.Is(ev.Err, io.EOF) {
		t.Fatalf("event %#v, want ClosedEvent wrapping io.EOF", ev)
	}
	if err := wait(t, errc); !errors.Is(err, ErrClosed) || !errors.Is(err, io.EOF) {
		t.Errorf("pending SetStatus = %v, want ErrClosed wrapping EOF", err)
	}
	wait(t, ts.s.Done())
	if err := ts.s.Err(); !errors.Is(err, io.EOF) {
		t.Errorf("Err() = %v, want EOF", err)
	}
}

// TestCloseFromHandler: a Handler may call Close without deadlocking.
func TestCloseFromHandler(t *testing.T) {
	f, dial := pipe(t)
	var s *Session
	ready := make(chan struct{})
	got := make(chan Event, 8)
	cfg := baseConfig(dial, nil)
	cfg.Handler = HandlerFunc(func(ev Event) {
		got <- ev
		if _, ok := ev.(MessageEvent); ok {
			<-ready
			s.Close()
		}
	})
	res := dialAsync(context.Background(), cfg)
	f.expect(goldenHELO)
	f.send(serverHELO("60", testSalt))
	f.expect(goldenLOGN)
	f.send(serverLOGN("") + frame("MESG", "From: 1\r\n\r\nbye"))
	r := wait(t, res)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s = r.s
	close(ready)
	wait(t, s.Done())
	if _, ok := (<-got).(MessageEvent); !ok {
		t.Error("first event is not the MESG")
	}
	if ev, ok := (<-got).(ClosedEvent); !ok || ev.Err != nil {
		t.Errorf("event %#v, want ClosedEvent{nil}", ev)
	}
}

// TestSecretsNotLogged checks the trace and the debug log of a whole session
// for the password and its digest.
func TestSecretsNotLogged(t *testing.T) {
	var trace, logs syncWriter
	ts := login(t, func(c *Config) {
		c.Trace = &trace
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ts.f.send(frame("WHAT", "ID: 1\r\n") + "STAT ONLINE\r\nbad\r\n")
	wait(t, ts.s.Done())
	tr := trace.String()
	for _, want := range []string{
		`C: "HELO\r\n32\r\nID: 1001\r\nProtocol: IMIP/1.0\r\n\r\n"`,
		`C: "LOGN 6340564\r\n71\r\nID: 1002\r\nClient: Yahoo! IMIP Client\r\nAuth-Type: imip-md5\r\n\r\n[redacted]"`,
		`S: "HELO\r\n`,
		`S: "LOGN 6340564\r\n`,
		`S: "WHAT\r\n7\r\nID: 1\r\n"`,
	} {
		if !strings.Contains(tr, want) {
			t.Errorf("trace lacks %s:\n%s", want, tr)
		}
	}
	if n := strings.Count(tr, "\n"); n != 5 {
		t.Errorf("trace has %d lines, want 5 (one per block):\n%s", n, tr)
	}
	lg := logs.String()
	if !strings.Contains(lg, "WHAT") || !strings.Contains(lg, "malformed") {
		t.Errorf("debug log lacks the ignored block or the end cause:\n%s", lg)
	}
	for _, secret := range []string{testPassword, testDigest} {
		if strings.Contains(tr, secret) || strings.Contains(lg, secret) {
			t.Errorf("%q leaked:\ntrace:\n%s\nlog:\n%s", secret, tr, lg)
		}
	}
}
