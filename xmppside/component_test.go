package xmppside

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

func TestHandshakeOK(t *testing.T) {
	env := startEnv(t, nil)
	if !env.c.Connected() {
		t.Error("Connected() = false after handshake, want true")
	}
	if env.fc.to != "imip.localhost" {
		t.Errorf("stream to = %q, want imip.localhost", env.fc.to)
	}
	if err := env.stop(); err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
	if env.c.Connected() {
		t.Error("Connected() = true after Run returned")
	}
	if err := env.h.waitDisconnected(t); err == nil {
		t.Error("HandleDisconnected(nil), want the cause")
	}
	env.fc.waitClosed(t)
}

func TestHandshakeBadSecret(t *testing.T) {
	srv := newFakeServer(t, "s3cret")
	h := newFakeHandler()
	cfg := testConfig(srv.addr())
	cfg.Secret = "wrong"
	c := New(cfg, h)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err := c.Run(ctx)
	var se stream.Error
	if !errors.As(err, &se) || se.Err != "not-authorized" {
		t.Fatalf("Run with a bad secret = %v, want a not-authorized stream error", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q leaks the secret", err)
	}
	select {
	case <-h.connected:
		t.Error("HandleConnected called after a refused handshake")
	default:
	}
}

func TestRunConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		0: {"no domain", func(c *Config) { c.Domain = jid.JID{} }},
		1: {"domain with localpart", func(c *Config) { c.Domain = jid.MustParse("a@imip.localhost") }},
		2: {"no server", func(c *Config) { c.Server = "" }},
		3: {"no secret", func(c *Config) { c.Secret = "" }},
		4: {"negative max stanza size", func(c *Config) { c.MaxStanzaSize = -1 }},
		5: {"max stanza size too small", func(c *Config) { c.MaxStanzaSize = MinMaxStanzaSize - 1 }},
	}
	for i, tc := range tests {
		cfg := testConfig("127.0.0.1:1")
		tc.mod(&cfg)
		err := New(cfg, newFakeHandler()).Run(context.Background())
		if err == nil || !strings.HasPrefix(err.Error(), "xmppside: ") {
			t.Errorf("%d %s: Run = %v, want a config error", i, tc.name, err)
		}
	}
}

func TestSendWhileDisconnected(t *testing.T) {
	c := New(testConfig("127.0.0.1:1"), newFakeHandler())
	ctx := context.Background()
	to := jid.MustParse("juliet@localhost")
	if err := c.SendMessage(ctx, Message{To: to, Body: "hi"}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("SendMessage = %v, want ErrNotConnected", err)
	}
	if err := c.SendPresence(ctx, Presence{To: to}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("SendPresence = %v, want ErrNotConnected", err)
	}
	if _, err := c.DiscoFeatures(ctx, to); !errors.Is(err, ErrNotConnected) {
		t.Errorf("DiscoFeatures = %v, want ErrNotConnected", err)
	}
	if err := c.SendRosterExchange(ctx, to, []RosterItem{{JID: jid.MustParse("1@imip.localhost")}}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("SendRosterExchange = %v, want ErrNotConnected", err)
	}
	if c.Connected() {
		t.Error("Connected() = true before Run")
	}
}

func TestReconnect(t *testing.T) {
	env := startEnv(t, nil)
	firstCtx := env.ctx
	_ = env.fc.conn.Close() // the server drops the link

	if err := env.h.waitDisconnected(t); err == nil {
		t.Error("HandleDisconnected(nil), want the cause")
	}
	select {
	case <-firstCtx.Done():
	case <-time.After(waitFor):
		t.Fatal("HandleConnected's ctx not done after the drop")
	}
	// While the link is down sends fail fast (the reconnect may already be
	// under way, so only check errors that do happen).
	if err := env.c.SendMessage(context.Background(), Message{To: jid.MustParse("a@localhost"), Body: "x"}); err != nil && !errors.Is(err, ErrNotConnected) {
		t.Errorf("SendMessage while down = %v, want nil or ErrNotConnected", err)
	}

	fc2 := env.srv.accept(t)
	env.h.waitConnected(t)
	if !env.c.Connected() {
		t.Error("Connected() = false after reconnect")
	}
	reply := fc2.roundTrip(t, `<iq type="get" id="p1" from="juliet@localhost/x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	if reply.attr("type") != "result" {
		t.Errorf("ping after reconnect = %s, want result", reply)
	}

	// A second drop: the component comes back again.
	_ = fc2.conn.Close()
	env.h.waitDisconnected(t)
	env.srv.accept(t)
	env.h.waitConnected(t)
}

func TestReconnectAfterRefusedDial(t *testing.T) {
	env := startEnv(t, nil)
	// Stop accepting: the component must back off and keep trying.
	_ = env.srv.ln.Close()
	_ = env.fc.conn.Close()
	env.h.waitDisconnected(t)
	time.Sleep(100 * time.Millisecond) // several backoff rounds
	if env.c.Connected() {
		t.Error("Connected() = true with no server")
	}
	if err := env.stop(); err != nil {
		t.Errorf("Run = %v, want nil after cancel while reconnecting", err)
	}
}

func TestRunCancelClosesStream(t *testing.T) {
	env := startEnv(t, nil)
	if err := env.stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	env.fc.waitClosed(t)
	select {
	case <-env.ctx.Done():
	default:
		t.Error("HandleConnected's ctx still live after Run returned")
	}
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTrace(t *testing.T) {
	var buf syncBuffer
	env := startEnv(t, func(c *Config) { c.Trace = &buf })
	env.fc.roundTrip(t, `<iq type="get" id="tr1" from="juliet@localhost/x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	out := buf.String()
	if !strings.Contains(out, `RECV <iq type="get" id="tr1"`) || !strings.Contains(out, `SEND <iq`) {
		t.Errorf("trace lacks the ping exchange:\n%s", out)
	}
	if strings.Contains(out, "handshake") || strings.Contains(out, "s3cret") {
		t.Errorf("trace shows the handshake:\n%s", out)
	}
}

// TestBackoff checks that failed attempts are spaced out: a server that
// accepts TCP and hangs up at once sees a handful of dials, not a storm.
func TestBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			_ = c.Close()
		}
	}()
	cfg := testConfig(ln.Addr().String())
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 80*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if err := New(cfg, newFakeHandler()).Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil when ctx ends", err)
	}
	_ = ln.Close()
	wg.Wait()
	// Delays of 20, 40, 80, 80... (+-50%) within 400ms: about 4 to 12 dials.
	if n := dials.Load(); n < 3 || n > 15 {
		t.Errorf("%d dials in 400ms with 20ms..80ms backoff, want 3..15", n)
	}
}

// TestBackoffAfterStableLink: the reconnect delay grows while the server
// closes each link right after the handshake, and starts again from the
// minimum after a link that stayed up.
func TestBackoffAfterStableLink(t *testing.T) {
	const (
		minB   = 10 * time.Millisecond
		maxB   = 800 * time.Millisecond
		stable = 300 * time.Millisecond
	)
	env := startEnvWith(t, func(c *Config) {
		c.MinBackoff, c.MaxBackoff, c.stableAfter = minB, maxB, stable
	}, func(h *fakeHandler) Handler { return nonBlocking{h} })

	// The server closes every new link at once, 7 times: the delays go
	// 10, 20, 40 ... 640 ms (each +-50%). Links are up for far less than
	// stable.
	fc := env.fc
	var gaps []time.Duration
	for range 7 {
		closed := time.Now()
		_ = fc.conn.Close()
		fc = env.srv.accept(t)
		gaps = append(gaps, time.Since(closed))
	}
	if last := gaps[len(gaps)-1]; last < 160*time.Millisecond {
		t.Errorf("delays after links closed at once: %v; the last is %v, want it grown to 160ms or more", gaps, last)
	}

	// A link that stays up, and works: the next outage starts from the
	// minimum.
	up := time.Now()
	for i := 0; time.Since(up) < stable+50*time.Millisecond; i++ {
		r := fc.roundTrip(t, fmt.Sprintf(`<iq type="get" id="up%d" from="juliet@localhost/x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, i))
		if r.attr("type") != "result" {
			t.Fatalf("ping on the stable link: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	closed := time.Now()
	_ = fc.conn.Close()
	fc = env.srv.accept(t)
	if gap := time.Since(closed); gap > 200*time.Millisecond {
		t.Errorf("reconnect after a stable link took %v, want about %v (not the grown delay)", gap, minB)
	}

	// And a quick drop right after that grows again from the minimum.
	closed = time.Now()
	_ = fc.conn.Close()
	env.srv.accept(t)
	if gap := time.Since(closed); gap > 200*time.Millisecond {
		t.Errorf("second reconnect after a stable link took %v, want about %v", gap, 2*minB)
	}
}

// nonBlocking is a handler whose link notifications never block (the
// backoff test connects more often than fakeHandler's channels hold).
type nonBlocking struct{ *fakeHandler }

func (h nonBlocking) HandleConnected(ctx context.Context) {
	select {
	case h.connected <- ctx:
	default:
	}
}

func (h nonBlocking) HandleDisconnected(err error) {
	select {
	case h.disconnected <- err:
	default:
	}
}
