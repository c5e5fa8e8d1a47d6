package e2e

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"imip-transport/imipside/wire"
	"imip-transport/internal/app"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// restartBudget bounds one server restart (ejabberd needs about 8 s).
const restartBudget = 60 * time.Second

// handshakeCounter is a slog.Handler that counts the component's
// "xmpp component connected" lines and passes every record on.
type handshakeCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h handshakeCounter) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "xmpp component connected" {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h handshakeCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return handshakeCounter{h.Handler.WithAttrs(as), h.n}
}

func (h handshakeCounter) WithGroup(name string) slog.Handler {
	return handshakeCounter{h.Handler.WithGroup(name), h.n}
}

// countHandshakes is a tweak for startTransportWith that counts the
// component's completed handshakes in n.
func countHandshakes(n *atomic.Int64) func(*app.Options) {
	return func(o *app.Options) {
		o.Logger = slog.New(handshakeCounter{o.Logger.Handler(), n})
	}
}

// waitCount waits until n reaches want.
func waitCount(t *testing.T, what string, n *atomic.Int64, want int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for n.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: count %d, want %d within %v", what, n.Load(), want, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// onlineAndChatting registers a new user as alice, brings her online with
// bob (on IMIP) as a contact, and checks one message each way.
func onlineAndChatting(t *testing.T, tr *transport, srv xmppserver.Server, bob *imipUser, base string) *client {
	t.Helper()
	c := newUser(t, srv, base)
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	c.expect("presence of the gateway", isPresence(tr.domain.String(), ""))
	c.expect("bob's presence", isPresence(tr.contact(acctBob.Number), ""))
	chatBothWays(t, tr, c, bob, "before")
	return c
}

// chatBothWays sends one message from c to bob and one back.
func chatBothWays(t *testing.T, tr *transport, c *client, bob *imipUser, tag string) {
	t.Helper()
	bobJID := tr.contact(acctBob.Number)
	c.send(`<message type="chat" to=%q id=%q><body>%s from xmpp</body></message>`, bobJID, tag, tag)
	bob.expectMessage(acctAlice.Number, tag+" from xmpp")
	bob.send(acctAlice.Number, tag+" from imip")
	// Delivery is at least once: a message of before a crash that the
	// server never confirmed comes again (same id) and may come first.
	want := isMessage(bobJID)
	m := c.expect(tag+" message from bob", func(g got) bool { return want(g) && g.Body == tag+" from imip" })
	if m.Type != "chat" {
		t.Errorf("%s: message from bob of type %q", tag, m.Type)
	}
}

// TestComponentSurvivesServerRestart restarts the XMPP server under a
// connected transport with a user online: the component reconnects by
// itself, the user (whose session died with the server) is taken offline on
// IMIP, and once she logs in again presence and messages flow both ways.
// The shared servers are restarted in place (same ports and data); the
// package's tests run one at a time, so no other test sees the outage.
func TestComponentSurvivesServerRestart(t *testing.T) {
	t.Run("prosody", func(t *testing.T) { testServerRestart(t, prosodyPriv.Get(t), nil) })
	t.Run("ejabberd", func(t *testing.T) { testServerRestart(t, ejabberd.Get(t), nil) })
	// A crash: SIGKILL, so the server announces nothing to the component;
	// a Prosody of its own, as killing the shared one would be rude.
	t.Run("prosody-crash", func(t *testing.T) {
		srv := testenv.Prosody(t, xmppserver.ProsodyOptions{Privilege: true})
		testServerRestart(t, srv, func() { crash(t, srv) })
	})
}

// crash kills srv's process with SIGKILL and waits until it is gone.
func crash(t *testing.T, srv *xmppserver.Prosody) {
	t.Helper()
	pid := srv.PID()
	if pid == 0 {
		t.Fatal("prosody is not running")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	deadline := time.Now().Add(waitFor)
	for srv.PID() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("prosody %d still running after SIGKILL", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testServerRestart restarts srv (after calling before, when set) under a
// transport with a user online.
func testServerRestart(t *testing.T, srv xmppserver.Server, before func()) {
	var handshakes atomic.Int64
	tr := startTransportWith(t, srv, countHandshakes(&handshakes), acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	c := onlineAndChatting(t, tr, srv, bob, "srvrestart")
	user := c.jid.Localpart()
	if n := handshakes.Load(); n != 1 {
		t.Fatalf("%d handshakes before the restart, want 1", n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), restartBudget)
	defer cancel()
	began := time.Now()
	if before != nil {
		before()
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatalf("restarting %s: %v", srv.Kind(), err)
	}
	restarted := time.Now()
	t.Logf("%s restart took %v", srv.Kind(), restarted.Sub(began).Round(time.Millisecond))

	// The component reconnects on its own (backoff 100 ms .. 1 s).
	waitCount(t, "component handshakes after the restart", &handshakes, 2, waitFor)
	tr.waitConnected()
	t.Logf("component reconnected %v after the server was back", time.Since(restarted).Round(time.Millisecond))

	// Her session died with the server: after the reconnect the gateway's
	// probe finds her offline and logs her out of IMIP.
	bob.expectStat(acctAlice.Number, wire.StatusOffline, "")
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Fatal("alice still on IMIP although her only session ended with the server")
	}

	// She logs in again (a new session): her presence comes back on IMIP and
	// the gateway and bob come back for her.
	c2 := login(t, srv, user, "pw-"+user)
	c2.rosterItems()
	c2.send(`<presence><show>dnd</show><status>back again</status></presence>`)
	bob.expectStat(acctAlice.Number, wire.StatusBusy, "back again")
	c2.expect("presence of the gateway after the restart", isPresence(tr.domain.String(), ""))
	c2.expect("bob's presence after the restart", isPresence(tr.contact(acctBob.Number), ""))
	chatBothWays(t, tr, c2, bob, "after")

	// Still registered, with the same number.
	form := c2.iq("get", tr.domain.String(), `<query xmlns="jabber:iq:register"/>`)
	if !strings.Contains(form.Raw, "<registered") || !strings.Contains(form.Raw, string(acctAlice.Number)) {
		t.Errorf("registration after the server restart: %s", form.Raw)
	}
	// Her new session is her only one: when it leaves she is offline on IMIP
	// (nothing of the session that died with the server lingers).
	c2.send(`<presence type="unavailable"/>`)
	bob.expectStat(acctAlice.Number, wire.StatusOffline, "")
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Error("alice still on IMIP after her new session left")
	}
}

// TestTransportRestartKeepsRegistration restarts the transport with a user
// online: the shutdown logs her out of IMIP and tells her the gateway and
// bob left; the new process finds her registration in its store, probes
// her, logs her in again, and messages flow both ways.
// (roster_test's assertNoResync also restarts the transport, but checks
// only that no roster change is sent again.)
func TestTransportRestartKeepsRegistration(t *testing.T) {
	t.Run("prosody", func(t *testing.T) { testTransportRestart(t, prosodyPriv.Get(t)) })
	t.Run("ejabberd", func(t *testing.T) { testTransportRestart(t, ejabberd.Get(t)) })
}

func testTransportRestart(t *testing.T, srv xmppserver.Server) {
	tr := startTransport(t, srv, acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	c := onlineAndChatting(t, tr, srv, bob, "trrestart")

	began := time.Now()
	tr.restart()
	t.Logf("transport restart took %v", time.Since(began).Round(time.Millisecond))
	bob.expectStat(acctAlice.Number, wire.StatusOffline, "")
	for _, from := range []string{tr.contact(acctBob.Number), tr.domain.String()} {
		c.expect("unavailable from "+from+" at shutdown", isPresence(from, "unavailable"))
	}
	// Back: logged in again without the user doing anything.
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	c.expect("presence of the gateway after the restart", isPresence(tr.domain.String(), ""))
	c.expect("bob's presence after the restart", isPresence(tr.contact(acctBob.Number), ""))
	chatBothWays(t, tr, c, bob, "after")
	form := c.iq("get", tr.domain.String(), `<query xmlns="jabber:iq:register"/>`)
	if !strings.Contains(form.Raw, "<registered") || !strings.Contains(form.Raw, string(acctAlice.Number)) {
		t.Errorf("registration after the transport restart: %s", form.Raw)
	}
}
