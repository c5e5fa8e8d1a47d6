package gateway

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// A refused login (810 or 811) is told to the user once, by a message and an
// error presence from the gateway, and not retried until the user registers
// again.
func TestLoginRefusedNoRetry(t *testing.T) {
	for i, code := range []wire.Code{wire.CodeWrongPassword, wire.CodeIllegalUser} {
		h := newHarness(t, "")
		h.register(alice, "6340564")
		h.d.setFail(&imipside.LoginError{Code: code})
		mark := h.x.mark()
		h.available(aliceHW, "", "")
		msg := h.x.waitMessage(t, mark, "login failure message", func(m xmppside.Message) bool { return m.From.Equal(gw) })
		if !msg.To.Equal(aliceJID) || msg.Body == "" {
			t.Errorf("%d: message to=%s body=%q, want a text to %s", i, msg.To, msg.Body, aliceJID)
		}
		p := h.x.waitPresence(t, mark, "error presence", presenceFromTo(gw, aliceJID, "error"))
		if p.Error == nil || p.Error.Condition != stanza.NotAuthorized {
			t.Errorf("%d: error presence %+v, want not-authorized", i, p.Error)
		}
		// Neither time, nor more presence, nor a second resource retries.
		h.available(aliceHW, "away", "")
		h.available(alicePh, "", "")
		time.Sleep(10 * h.g.cfg.RetryMax / 4)
		h.settle()
		if n := h.d.attemptCount(); n != 2 {
			t.Errorf("%d: %d Dial calls after an ACK %d, want 2 (register, one login)", i, n, code)
		}
		if n := len(h.x.messages(mark, func(m xmppside.Message) bool { return m.From.Equal(gw) })); n != 1 {
			t.Errorf("%d: %d failure messages, want 1", i, n)
		}
		// Registering again with good credentials logs the online user in.
		h.d.setFail(nil)
		h.register(alice, "6340564")
		s := h.d.waitSession(t, 1)
		s.waitCall(t, "STAT ONLINE")
		h.settle()
		if got := s.callsWith("DISC"); len(got) != 0 {
			t.Errorf("%d: the new session of an online user was ended: %q", i, s.callList())
		}
	}
}

// A network failure is retried after RetryMin, and the user is told the
// gateway is unavailable meanwhile.
func TestNetworkFailureRetries(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "6340564")
	refused := errors.New("dial tcp 127.0.0.1:11319: connection refused")
	h.d.setFail(nil, refused, refused)
	mark := h.x.mark()
	start := time.Now()
	h.available(aliceHW, "dnd", "")
	p := h.x.waitPresence(t, mark, "gateway unavailable", presenceFromTo(gw, aliceJID, "unavailable"))
	if p.Status == "" {
		t.Errorf("unavailable presence without a status text")
	}
	s := h.d.waitSession(t, 1)
	if got := s.waitCall(t, "STAT "); got != "STAT BUSY" {
		t.Errorf("STAT after retry = %q, want STAT BUSY", got)
	}
	if n := h.d.attemptCount(); n != 4 {
		t.Errorf("%d Dial calls, want 4 (register, 2 failures, success)", n)
	}
	// Two delays of at least 3/4 RetryMin each (the jitter is 25%).
	if d := time.Since(start); d < 3*h.g.cfg.RetryMin/2 {
		t.Errorf("logged in after %v: retries came too fast", d)
	}
	h.x.waitPresence(t, mark, "gateway available", presenceFromTo(gw, aliceJID, ""))
}

// Going offline while a retry is pending cancels it.
func TestRetryCancelledByLogout(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.RetryMin, c.RetryMax = 100*time.Millisecond, 100*time.Millisecond })
	h.register(alice, "6340564")
	h.d.setFail(nil, errors.New("connection refused"))
	h.available(aliceHW, "", "")
	h.d.waitAttempts(t, 2)
	h.presence(aliceHW, gw, "unavailable", "", "")
	h.settle()
	time.Sleep(250 * time.Millisecond)
	h.settle()
	if n := h.d.attemptCount(); n != 2 {
		t.Errorf("%d Dial calls, want 2: the retry of an offline user must not happen", n)
	}
}

// A session dropped by the network: contacts and the gateway go unavailable
// and the gateway logs in again.
func TestSessionDropRelogin(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
	s.push(imipside.StatEvent{From: "200", Status: wire.StatusAway})
	h.settle()
	mark := h.x.mark()
	s.drop(io.ErrUnexpectedEOF)
	for _, from := range []jid.JID{cj("100"), cj("200"), gw} {
		h.x.waitPresence(t, mark, "unavailable from "+from.String(), presenceFromTo(from, aliceJID, "unavailable"))
	}
	s2 := h.d.waitSession(t, 2)
	s2.waitCall(t, "STAT ONLINE")
	h.x.waitPresence(t, mark, "gateway available again", presenceFromTo(gw, aliceJID, ""))
	// Events of the dead session are ignored.
	m2 := h.x.mark()
	s.push(imipside.StatEvent{From: "300", Status: wire.StatusOnline})
	h.settle()
	if got := h.x.presences(m2, func(p xmppside.Presence) bool { return p.From.Equal(cj("300")) }); len(got) != 0 {
		t.Errorf("event of an ended session forwarded:\n%s", dump(toAny(got)))
	}
	// The cache was emptied: a probe for 100 says unavailable until it is
	// seen again.
	m3 := h.x.mark()
	h.presence(alice, cj("100"), "probe", "", "")
	p := h.x.waitPresence(t, m3, "probe answer", func(p xmppside.Presence) bool { return p.From.Equal(cj("100")) })
	if p.Type != "unavailable" {
		t.Errorf("probe after the drop answered %q, want unavailable", p.Type)
	}
}

// HandleConnected probes every registered user.
func TestConnectedProbesUsers(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "1")
	h.register(bob, "2")
	mark := h.x.mark()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.g.HandleConnected(ctx)
	for _, u := range []string{alice, bob} {
		h.x.waitPresence(t, mark, "probe to "+u, presenceFromTo(gw, jid.MustParse(u), "probe"))
	}
	h.settle()
}

// After the component link comes back, each logged-in user gets the
// gateway's and the online contacts' presence again: what was sent while
// the link was down is lost, and the user's answer to the probe is a
// duplicate that changes nothing.
func TestReconnectResendsPresence(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusAway, Text: "afk"})
	h.settle()
	h.g.HandleDisconnected(errors.New("EOF"))
	s.push(imipside.StatEvent{From: "200", Status: wire.StatusOnline}) // lost on the way
	h.settle()
	mark := h.x.mark()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.g.HandleConnected(ctx)
	h.available(aliceHW, "", "") // the user's server answers the probe
	for _, from := range []jid.JID{gw, cj("100"), cj("200")} {
		p := h.x.waitPresence(t, mark, "presence from "+from.String(), presenceFromTo(from, aliceJID, ""))
		if from.Equal(cj("100")) && (p.Show != "away" || p.Status != "afk") {
			t.Errorf("100 resent show=%q status=%q, want away/afk", p.Show, p.Status)
		}
	}
	h.settle()
	if got := s.callsWith("STAT"); len(got) != 1 {
		t.Errorf("STATs %q, want the first one only", got)
	}
}

// After the component link comes back, resources known from before must
// answer the gateway's probe within ProbeTimeout: one that does keeps the
// session; when none does, the user is logged out (ejabberd answers a probe
// of an offline user with nothing).
func TestLinkUpDropsSilentResources(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.ProbeTimeout = 50 * time.Millisecond })
	s := h.login(aliceHW, "6340564")
	h.available(alicePh, "", "")
	h.settle()

	// First reconnect: the laptop answers the probe, the phone is gone.
	h.g.HandleConnected(context.Background())
	h.available(aliceHW, "", "")
	time.Sleep(150 * time.Millisecond)
	h.settle()
	if got := s.callsWith("DISC"); len(got) != 0 {
		t.Fatalf("logged out although a resource answered the probe: %q", s.callList())
	}
	// Second reconnect: nobody answers.
	h.g.HandleConnected(context.Background())
	s.waitCall(t, "DISC")
}
