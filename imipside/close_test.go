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

func TestDisconnect(t *testing.T) {
	ts := login(t, nil)
	errc := async(func() error { return ts.s.Disconnect(context.Background()) })
	ts.f.expect("DISC\r\n12\r\nID: 1003\r\n\r\n")
	ts.f.send(ack(600, 1003))
	ts.f.conn.Close() // the server closes after its ACK
	if err := wait(t, errc); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	select {
	case <-ts.s.Done():
	default:
		t.Fatal("Done() not closed after Disconnect returned")
	}
	if err := ts.s.Err(); err != nil {
		t.Errorf("Err() = %v, want nil", err)
	}
	if ev, ok := ts.ev.next(t).(ClosedEvent); !ok || ev.Err != nil {
		t.Errorf("event %#v, want ClosedEvent{nil}", ev)
	}
	ts.ev.none(t)
	if err := ts.s.SetStatus(context.Background(), wire.StatusOnline, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("SetStatus after Disconnect = %v, want ErrClosed", err)
	}
	if _, err := ts.s.SendMessage(context.Background(), "1", "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("SendMessage after Disconnect = %v, want ErrClosed", err)
	}
	if err := ts.s.Close(); err != nil {
		t.Errorf("Close after Disconnect = %v", err)
	}
}

func TestDisconnectWithoutAck(t *testing.T) {
	tests := []struct {
		name   string
		server func(*fakeServer)
		ctx    time.Duration
		want   error
	}{
		0: {"server closes", func(f *fakeServer) { f.conn.Close() }, time.Second, nil},
		1: {"server silent", func(*fakeServer) {}, 50 * time.Millisecond, context.DeadlineExceeded},
		2: {"server refuses", func(f *fakeServer) { f.send(ack(812, 1003)) }, time.Second, &AckError{Code: 812}},
	}
	for i, tt := range tests {
		ts := login(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), tt.ctx)
		errc := async(func() error { return ts.s.Disconnect(ctx) })
		ts.f.expect("DISC\r\n12\r\nID: 1003\r\n\r\n")
		tt.server(ts.f)
		err := wait(t, errc)
		cancel()
		var ae *AckError
		switch want := tt.want.(type) {
		case nil:
			if err != nil {
				t.Errorf("%d %s: Disconnect = %v, want nil", i, tt.name, err)
			}
		case *AckError:
			if !errors.As(err, &ae) || ae.Code != want.Code {
				t.Errorf("%d %s: Disconnect = %v, want %v", i, tt.name, err, want)
			}
		default:
			if !errors.Is(err, want) {
				t.Errorf("%d %s: Disconnect = %v, want %v", i, tt.name, err, want)
			}
		}
		if err := ts.s.Err(); err != nil {
			t.Errorf("%d %s: Err() = %v, want nil after Disconnect", i, tt.name, err)
		}
		if ev, ok := ts.ev.next(t).(ClosedEvent); !ok || ev.Err != nil {
			t.Errorf("%d %s: event %#v, want ClosedEvent{nil}", i, tt.name, ev)
		}
	}
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
	ts.f.conn.Close()
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
