package imipside

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"imip-transport/imipside/wire"
)

func TestLoginGolden(t *testing.T) {
	ts := login(t, nil)
	if got := ts.s.Number(); got != testNumber {
		t.Errorf("Number() = %q, want %q", got, testNumber)
	}
	want := []wire.Buddy{{Number: "7744387", Nick: "mawis76"}}
	if diff := cmp.Diff(want, ts.s.Contacts()); diff != "" {
		t.Errorf("Contacts() mismatch (-want +got):\n%s", diff)
	}
	c := ts.s.Contacts()
	c[0].Nick = "changed"
	if got := ts.s.Contacts()[0].Nick; got != "mawis76" {
		t.Errorf("Contacts() is not a copy: nick now %q", got)
	}
	if got := ts.s.KeepAlive(); got != time.Hour {
		t.Errorf("KeepAlive() = %v, want the override 1h", got)
	}
}

// TestLoginStreamBackToBack plays the server stream of docs/PROTOCOL.md: the HELO
// body (salt 97841749) is followed at once by the LOGN reply and a STAT push,
// all in one write, before the client has even sent LOGN.
func TestLoginStreamBackToBack(t *testing.T) {
	f, dial := pipe(t)
	ev := newEvents()
	cfg := baseConfig(dial, ev)
	cfg.KeepAlive = 0
	res := dialAsync(context.Background(), cfg)
	f.expect(goldenHELO)
	stream := serverHELO("", "97841749") + // no Keep-Alive header: 60 s
		"LOGN 6340564\r\n28\r\nID: 19194\r\nReference: 1002\r\n" +
		"STAT ONLINE\r\n26\r\nFrom: 7744387\r\nID: 19196\r\n"
	if !strings.Contains(stream, "ServiceDisplayName: Odigo\r\n\r\n97841749LOGN 6340564\r\n28\r\n") {
		t.Fatalf("test stream does not have the docs/PROTOCOL.md shape: %q", stream)
	}
	f.send(stream)
	sum := md5.Sum([]byte("97841749" + testPassword))
	f.expect("LOGN 6340564\r\n93\r\nID: 1002\r\nClient: Yahoo! IMIP Client\r\nAuth-Type: imip-md5\r\n\r\n" + hex.EncodeToString(sum[:]))
	r := wait(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	defer r.s.Close()
	if got := r.s.KeepAlive(); got != 60*time.Second {
		t.Errorf("KeepAlive() = %v, want 60s for a HELO without Keep-Alive", got)
	}
	if got := r.s.Contacts(); got != nil {
		t.Errorf("Contacts() = %v, want none (no Buddy header)", got)
	}
	want := StatEvent{From: "7744387", Status: wire.StatusOnline}
	if diff := cmp.Diff(Event(want), ev.next(t)); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}
}

func TestLoginReplyStyles(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		want  []wire.Buddy
	}{
		0: {"odigo sorted, no empty line", serverLOGN(`7744387 "mawis76",1234567 "other"`),
			[]wire.Buddy{{Number: "7744387", Nick: "mawis76"}, {Number: "1234567", Nick: "other"}}},
		1: {"ID last, empty line", frame("LOGN 6340564", "Reference: 1002\r\nBuddy: 7744387 \"a, b\"\r\nID: 19194\r\n\r\n"),
			[]wire.Buddy{{Number: "7744387", Nick: "a, b"}}},
		2: {"lower-case names, spaces, no nick", frame("LOGN 6340564", "buddy: 7744387 \"x\", 1234567\r\nreference: 1002\r\nid: 5\r\n"),
			[]wire.Buddy{{Number: "7744387", Nick: "x"}, {Number: "1234567"}}},
		3: {"no Buddy header", frame("LOGN 6340564", "ID: 19194\r\nReference: 1002\r\n"), nil},
		4: {"no Reference", frame("LOGN 6340564", "Buddy: 1\r\nID: 19194\r\n"), []wire.Buddy{{Number: "1"}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, dial := pipe(t)
			res := dialAsync(context.Background(), baseConfig(dial, nil))
			f.expect(goldenHELO)
			f.send(serverHELO("60", testSalt))
			f.expect(goldenLOGN)
			f.send(tt.reply)
			r := wait(t, res)
			if r.err != nil {
				t.Fatalf("%d: Dial: %v", i, r.err)
			}
			defer r.s.Close()
			if diff := cmp.Diff(tt.want, r.s.Contacts()); diff != "" {
				t.Errorf("%d: Contacts() mismatch (-want +got):\n%s", i, diff)
			}
		})
	}
}

func TestLoginKeepAlive(t *testing.T) {
	tests := []struct {
		server   string // Keep-Alive header value, "" for none
		override time.Duration
		want     time.Duration
	}{
		0: {"60", 0, 60 * time.Second},
		1: {"30", 0, 30 * time.Second},
		2: {"", 0, 60 * time.Second},
		3: {"abc", 0, 60 * time.Second},
		4: {"0", 0, 60 * time.Second},
		5: {"30", 5 * time.Second, 5 * time.Second},
		6: {"99999999999", 0, 24 * time.Hour},
	}
	for i, tt := range tests {
		f, dial := pipe(t)
		cfg := baseConfig(dial, nil)
		cfg.KeepAlive = tt.override
		res := dialAsync(context.Background(), cfg)
		f.expect(goldenHELO)
		f.send(serverHELO(tt.server, testSalt))
		f.expect(goldenLOGN)
		f.send(serverLOGN(""))
		r := wait(t, res)
		if r.err != nil {
			t.Fatalf("%d: Dial: %v", i, r.err)
		}
		if got := r.s.KeepAlive(); got != tt.want {
			t.Errorf("%d: Keep-Alive %q, override %v: KeepAlive() = %v, want %v", i, tt.server, tt.override, got, tt.want)
		}
		r.s.Close()
	}
}

func TestLoginRefused(t *testing.T) {
	tests := []struct {
		reply     string
		code      wire.Code
		sentinel  error // the sentinel it must match, nil for none
		notSentry error // a sentinel it must not match
	}{
		0: {ack(810, 1002), 810, ErrWrongPassword, ErrIllegalUser},
		1: {ack(811, 1002), 811, ErrIllegalUser, ErrWrongPassword},
		2: {ack(813, 1002), 813, nil, ErrWrongPassword},
		3: {frame("ACK 810", "ID: 3\r\n"), 810, ErrWrongPassword, ErrIllegalUser}, // no Reference
		4: {ack(899, 1002), 899, nil, ErrIllegalUser},
	}
	for i, tt := range tests {
		f, dial := pipe(t)
		res := dialAsync(context.Background(), baseConfig(dial, nil))
		f.expect(goldenHELO)
		f.send(serverHELO("60", testSalt))
		f.expect(goldenLOGN)
		f.send(tt.reply)
		r := wait(t, res)
		if r.s != nil || r.err == nil {
			t.Fatalf("%d: Dial = %v, %v; want a *LoginError", i, r.s, r.err)
		}
		var le *LoginError
		if !errors.As(r.err, &le) || le.Code != tt.code {
			t.Errorf("%d: Dial error %v, want *LoginError with code %d", i, r.err, tt.code)
		}
		if tt.sentinel != nil && !errors.Is(r.err, tt.sentinel) {
			t.Errorf("%d: errors.Is(%v, %v) = false", i, r.err, tt.sentinel)
		}
		if errors.Is(r.err, tt.notSentry) {
			t.Errorf("%d: errors.Is(%v, %v) = true", i, r.err, tt.notSentry)
		}
		if msg := r.err.Error(); strings.Contains(msg, testDigest) {
			t.Errorf("%d: error %q leaks the password", i, msg)
		}
		f.expectEOF()
	}
}

func TestLoginHELORefused(t *testing.T) {
	f, dial := pipe(t)
	res := dialAsync(context.Background(), baseConfig(dial, nil))
	f.expect(goldenHELO)
	f.send(ack(812, 1001))
	r := wait(t, res)
	var le *LoginError
	if !errors.As(r.err, &le) || le.Code != wire.CodeNotAllowed {
		t.Fatalf("Dial error %v, want *LoginError 812", r.err)
	}
	f.expectEOF()
}

func TestLoginContext(t *testing.T) {
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		silent bool // server silent after HELO (else silent after LOGN)
		want   error
	}{
		0: {"deadline during HELO", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, true, context.DeadlineExceeded},
		1: {"deadline during LOGN", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, false, context.DeadlineExceeded},
		2: {"cancel without deadline", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, true, context.Canceled},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, dial := pipe(t)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			res := dialAsync(ctx, baseConfig(dial, nil))
			f.expect(goldenHELO)
			if !tt.silent {
				f.send(serverHELO("60", testSalt))
				f.expect(goldenLOGN)
			}
			r := wait(t, res)
			if !errors.Is(r.err, tt.want) {
				t.Fatalf("%d: Dial error %v, want %v", i, r.err, tt.want)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("%d: Dial took %v after its ctx ended", i, el)
			}
			f.expectEOF()
		})
	}
}

func TestLoginProtocolFailures(t *testing.T) {
	tests := []struct {
		name  string
		helo  string
		wantS string // substring of the error
	}{
		0: {"no salt", frame("HELO", "ID: 1\r\nKeep-Alive: 60\r\n"), "no salt"},
		1: {"other auth type", frame("HELO", "Auth-Type: plain\r\nID: 1\r\n\r\n123"), "Auth-Type"},
		2: {"malformed block", "HELO\r\nxyz\r\n", "waiting for HELO reply"},
		3: {"connection closed", "", "EOF"},
	}
	for i, tt := range tests {
		f, dial := pipe(t)
		res := dialAsync(context.Background(), baseConfig(dial, nil))
		f.expect(goldenHELO)
		if tt.helo == "" {
			f.conn.Close()
		} else {
			f.send(tt.helo)
		}
		r := wait(t, res)
		if r.err == nil || !strings.Contains(r.err.Error(), tt.wantS) || !strings.HasPrefix(r.err.Error(), "imipside: ") {
			t.Errorf("%d %s: Dial error %v, want one containing %q", i, tt.name, r.err, tt.wantS)
		}
		if i == 2 && !errors.Is(r.err, wire.ErrBadSize) {
			t.Errorf("%d %s: Dial error %v, want wire.ErrBadSize", i, tt.name, r.err)
		}
		if tt.helo != "" {
			f.expectEOF()
		}
	}
}

func TestDialBadConfig(t *testing.T) {
	called := false
	dial := func(context.Context, string, string) (net.Conn, error) {
		called = true
		return nil, errors.New("dial refused")
	}
	tests := []struct {
		cfg   Config
		wantS string
	}{
		0: {Config{Addr: "x:1", Number: "12a", Dial: dial}, "invalid number"},
		1: {Config{Number: "123"}, "no server address"},
	}
	for i, tt := range tests {
		if _, err := Dial(context.Background(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.wantS) {
			t.Errorf("%d: Dial error %v, want %q", i, err, tt.wantS)
		}
	}
	if called {
		t.Error("Dial dialled with an invalid config")
	}
	_, err := Dial(context.Background(), Config{Addr: "x:1", Number: "123", Dial: dial})
	if err == nil || !strings.Contains(err.Error(), "dial refused") || !strings.HasPrefix(err.Error(), "imipside: dial x:1") {
		t.Errorf("Dial error %v, want the wrapped dial error", err)
	}
}

// TestDialTCP logs in over a real loopback socket with the default dialer.
func TestDialTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer conn.Close()
		f := newFakeServer(t, conn)
		for i, want := range []string{goldenHELO, goldenLOGN, "DISC\r\n12\r\nID: 1003\r\n\r\n"} {
			raw, err := f.readRaw(5 * time.Second)
			if err != nil || raw != want {
				srvErr <- errors.New("server: got " + raw + ", want " + want)
				return
			}
			reply := []string{serverHELO("60", testSalt), serverLOGN("1 \"one\""), ack(600, 1003)}[i]
			if _, err := conn.Write([]byte(reply)); err != nil {
				srvErr <- err
				return
			}
		}
		srvErr <- nil
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Dial(ctx, Config{Addr: ln.Addr().String(), Number: testNumber, Password: testPassword, ClientName: testClient})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := s.Disconnect(ctx); err != nil {
		t.Errorf("Disconnect: %v", err)
	}
	if err := wait(t, srvErr); err != nil {
		t.Error(err)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err() after Disconnect = %v, want nil", err)
	}
}
