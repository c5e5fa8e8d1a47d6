package gateway

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
	"mellium.im/xmpp/jid"

	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// gw is the gateway's domain in every test.
var gw = jid.MustParse("imip.localhost")

// cj returns the JID of contact n.
func cj(n string) jid.JID { return jid.MustParse(n + "@imip.localhost") }

// harness is a Gateway wired to fakes.
type harness struct {
	t  *testing.T
	g  *Gateway
	x  *fakeXMPP
	rx *fakeRosterXMPP // nil unless the harness offers RosterAccess
	d  *fakeDialer
	st *memStore
}

// newHarness returns a gateway on fakes. privMode "" attaches a plain
// fakeXMPP; privNone, privBoth or privSetFail attach one with RosterAccess.
func newHarness(t *testing.T, privMode string, opts ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, x: newFakeXMPP(), d: newFakeDialer(), st: newMemStore()}
	cfg := Config{
		Domain:       gw,
		Store:        h.st,
		Dialer:       h.d,
		InboxSize:    16,
		LoginTimeout: 2 * time.Second,
		OpTimeout:    2 * time.Second,
		RetryMin:     20 * time.Millisecond,
		RetryMax:     80 * time.Millisecond,
		// The checking login ends at once, so that the first available
		// presence dials a new session; TestRegisterGrace covers the grace.
		RegisterGrace: -1,
	}
	if testing.Verbose() && os.Getenv("GATEWAY_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.g = g
	if privMode != "" {
		h.rx = &fakeRosterXMPP{fakeXMPP: h.x, mode: privMode}
		g.SetXMPP(h.rx)
	} else {
		g.SetXMPP(h.x)
	}
	g.HandleConnected(context.Background()) // the component link is up
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := g.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h
}

// register registers bare with number n and password "pw"; it must succeed.
func (h *harness) register(bare string, n wire.Number) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.Register(ctx, jid.MustParse(bare), string(n), "pw"); err != nil {
		h.t.Fatalf("Register(%s, %s): %v", bare, n, err)
	}
	h.idle(bare) // what the registration sends has gone out
}

// presence hands the gateway a presence from -> to.
func (h *harness) presence(from string, to jid.JID, typ, show, status string) {
	h.g.HandlePresence(xmppside.Presence{From: jid.MustParse(from), To: to, Type: typ, Show: show, Status: status})
}

// available sends an available presence of full to the gateway.
func (h *harness) available(full, show, status string) { h.presence(full, gw, "", show, status) }

// login registers the bare JID of full with n, sends its available presence
// and returns the live session once it has sent its first STAT.
func (h *harness) login(full string, n wire.Number) *fakeSession {
	h.t.Helper()
	h.register(jid.MustParse(full).Bare().String(), n)
	i := h.d.sessionCount()
	h.available(full, "", "")
	s := h.d.waitSession(h.t, i)
	s.waitCall(h.t, "STAT ")
	h.idle(jid.MustParse(full).Bare().String())
	return s
}

// idle waits until the run loop of user bare has nothing left to do. Unlike
// settle it ignores other users.
func (h *harness) idle(bare string) {
	h.t.Helper()
	h.g.mu.Lock()
	u := h.g.users[bare]
	h.g.mu.Unlock()
	if u == nil {
		return
	}
	waitUntil(h.t, bare+" idle", func() bool {
		h.g.out.mu.Lock()
		out := h.g.out.running || h.g.out.confirming > 0 // barriers waiting or asked count as work
		h.g.out.mu.Unlock()
		u.mu.Lock()
		defer u.mu.Unlock()
		return !u.running && len(u.inbox) == 0 && u.jobs.Load() == 0 && !out && h.g.commit.idle()
	})
}

// chat hands the gateway a message from -> to.
func (h *harness) chat(id, from string, to jid.JID, typ, body string) {
	h.g.HandleMessage(xmppside.Message{ID: id, From: jid.MustParse(from), To: to, Type: typ, Body: body})
}

// settle waits until every run loop and helper goroutine is done.
func (h *harness) settle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.runs.wait(ctx); err != nil {
		h.t.Fatalf("gateway not idle within %v", waitFor)
	}
	waitUntil(h.t, "store writes committed", h.g.commit.idle)
	if err := h.g.runs.wait(ctx); err != nil { // the commits' outcomes may have woken a loop
		h.t.Fatalf("gateway not idle within %v", waitFor)
	}
}

// isFrom and friends build stanza predicates.
func presenceFromTo(from, to jid.JID, typ string) func(xmppside.Presence) bool {
	return func(p xmppside.Presence) bool { return p.From.Equal(from) && p.To.Equal(to) && p.Type == typ }
}
