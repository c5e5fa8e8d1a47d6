package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

func TestRegisterErrors(t *testing.T) {
	tests := []struct {
		name       string
		who        string
		number, pw string
		dialErr    error
		cond       stanza.Condition
		dials      int
	}{
		0: {name: "letters", who: alice, number: "alice", pw: "pw", cond: stanza.NotAcceptable},
		1: {name: "sign", who: alice, number: "+123", pw: "pw", cond: stanza.NotAcceptable},
		2: {name: "empty", who: alice, number: "", pw: "pw", cond: stanza.NotAcceptable},
		3: {name: "no password", who: alice, number: "123", pw: "", cond: stanza.NotAcceptable},
		4: {name: "wrong password", who: alice, number: "123", pw: "bad", dialErr: &imipside.LoginError{Code: wire.CodeWrongPassword},
			cond: stanza.NotAuthorized, dials: 1},
		5: {name: "unknown number", who: alice, number: "123", pw: "pw", dialErr: &imipside.LoginError{Code: wire.CodeIllegalUser},
			cond: stanza.NotAcceptable, dials: 1},
		6: {name: "unreachable", who: alice, number: "123", pw: "pw", dialErr: errors.New("connection refused"),
			cond: stanza.RemoteServerNotFound, dials: 1},
		7: {name: "server JID", who: "localhost", number: "123", pw: "pw", cond: stanza.NotAllowed},
	}
	for i, tc := range tests {
		h := newHarness(t, "")
		h.d.setFail(tc.dialErr)
		err := h.g.Register(context.Background(), jid.MustParse(tc.who), tc.number, tc.pw)
		var xe *xmppside.Error
		if !errors.As(err, &xe) || xe.Condition != tc.cond {
			t.Errorf("%d %s: Register = %v, want *xmppside.Error %s", i, tc.name, err, tc.cond)
		}
		if n := h.d.attemptCount(); n != tc.dials {
			t.Errorf("%d %s: %d Dial calls, want %d", i, tc.name, n, tc.dials)
		}
		if _, ok := h.st.reg(jid.MustParse(tc.who).Bare().String()); ok {
			t.Errorf("%d %s: registration stored after a failure", i, tc.name)
		}
		if _, ok, _ := h.g.Registration(context.Background(), jid.MustParse(tc.who)); ok {
			t.Errorf("%d %s: Registration reports a failed registration", i, tc.name)
		}
		// Still unregistered: messages are refused.
		mark := h.x.mark()
		h.chat("x", aliceHW, cj("1"), "chat", "hi")
		m := h.x.waitMessage(t, mark, "error", func(m xmppside.Message) bool { return m.Type == "error" })
		if m.Error.Condition != stanza.RegistrationRequired {
			t.Errorf("%d %s: message after failed Register: %s, want registration-required", i, tc.name, m.Error.Condition)
		}
	}
}

// A successful registration is stored, checked by one IMIP login that is
// ended again (the user is not online), and the gateway asks for the user's
// presence.
func TestRegisterStores(t *testing.T) {
	h := newHarness(t, "")
	mark := h.x.mark()
	if err := h.g.Register(context.Background(), jid.MustParse(aliceHW), "6340564", "secret"); err != nil {
		t.Fatalf("Register: %v", err)
	}
	r, ok := h.st.reg(alice)
	if !ok || r.Number != "6340564" || r.Password != "secret" {
		t.Fatalf("stored %+v (%v), want 6340564/secret under %s", r, ok, alice)
	}
	h.x.waitPresence(t, mark, "subscribe from the gateway", presenceFromTo(gw, aliceJID, "subscribe"))
	s := h.d.waitSession(t, 0)
	h.settle()
	if got := s.callsWith("DISC"); len(got) != 1 {
		t.Errorf("credential check session calls %q, want one DISC", s.callList())
	}
	if got := s.callsWith("STAT"); len(got) != 0 {
		t.Errorf("credential check of an offline user sent STAT: %q", got)
	}
	name, ok, err := h.g.Registration(context.Background(), jid.MustParse(alicePh))
	if name != "6340564" || !ok || err != nil {
		t.Errorf("Registration = %q, %v, %v; want 6340564, true, nil", name, ok, err)
	}
	// A new Gateway on the same store knows the user.
	g2, err := New(context.Background(), Config{Domain: gw, Store: h.st, Dialer: h.d})
	if err != nil {
		t.Fatal(err)
	}
	if !g2.isRegistered(alice) {
		t.Errorf("a new Gateway does not load the registration")
	}
	if err := g2.Close(context.Background()); err != nil {
		t.Error(err)
	}
}

// Registering again while online: the new credentials are checked by a
// login beside the live one; the IMIP server keeps only the newest login of
// a number, so the old session ends (never two live sessions for a number),
// and the new credentials are stored and used.
func TestReRegisterOnline(t *testing.T) {
	h := newHarness(t, "")
	old := h.login(aliceHW, "6340564")
	old.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
	h.settle()
	mark := h.x.mark()
	if err := h.g.Register(context.Background(), aliceJID, "6340564", "newpw"); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if old.alive() == nil {
		t.Errorf("old session still live after the new login: calls %q", old.callList())
	}
	s := h.d.waitSession(t, 2)
	if s.password != "newpw" {
		t.Errorf("new session password %q, want newpw", s.password)
	}
	s.waitCall(t, "STAT ONLINE")
	if r, _ := h.st.reg(alice); r.Password != "newpw" {
		t.Errorf("stored password %q, want newpw", r.Password)
	}
	h.x.waitPresence(t, mark, "contact unavailable", presenceFromTo(cj("100"), aliceJID, "unavailable"))
	h.d.mu.Lock()
	most := h.d.maxLive
	h.d.mu.Unlock()
	if most != 1 {
		t.Errorf("up to %d IMIP sessions at once for one number, want 1", most)
	}
	// The new session is the live one.
	h.chat("m", aliceHW, cj("100"), "chat", "hi")
	s.waitCall(t, "MESG 100 hi")
	if got := old.callsWith("MESG"); len(got) != 0 {
		t.Errorf("message sent on the old session")
	}

	// A failed re-registration keeps the old credentials...
	h.d.setFail(nil, &imipside.LoginError{Code: wire.CodeWrongPassword})
	err := h.g.Register(context.Background(), aliceJID, "6340564", "typo")
	var xe *xmppside.Error
	if !errors.As(err, &xe) || xe.Condition != stanza.NotAuthorized {
		t.Errorf("Register with a bad password = %v, want not-authorized", err)
	}
	if r, _ := h.st.reg(alice); r.Password != "newpw" {
		t.Errorf("stored password %q after a failed Register, want newpw", r.Password)
	}
	// ... and the live session stays (TestFailedReRegistrationKeepsSession).
	h.chat("m2", aliceHW, cj("100"), "chat", "again")
	s.waitCall(t, "MESG 100 again")
}

// Unregister: the session ends, every contact and the gateway unsubscribe
// and go unavailable, and the store forgets the user.
func TestUnregister(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"}, wire.Buddy{Number: "200", Nick: "bo"})
	s := h.login(aliceHW, "6340564")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
	h.settle()
	mark := h.x.mark()
	if err := h.g.Unregister(context.Background(), jid.MustParse(aliceHW)); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	if got := s.callsWith("DISC"); len(got) != 1 {
		t.Errorf("session calls %q, want one DISC", s.callList())
	}
	for _, from := range []jid.JID{cj("100"), cj("200"), gw} {
		for _, typ := range []string{"unsubscribe", "unsubscribed", "unavailable"} {
			h.x.waitPresence(t, mark, typ+" from "+from.String(), presenceFromTo(from, aliceJID, typ))
		}
	}
	if _, ok := h.st.reg(alice); ok {
		t.Errorf("registration still stored")
	}
	if cs := h.st.savedContacts(alice); len(cs) != 0 {
		t.Errorf("contacts still stored: %+v", cs)
	}
	if _, ok, _ := h.g.Registration(context.Background(), aliceJID); ok {
		t.Errorf("Registration still reports the user")
	}
	// Now unregistered: messages are refused, presence does not log in.
	m2 := h.x.mark()
	h.available(aliceHW, "", "")
	h.chat("x", aliceHW, cj("100"), "chat", "hi")
	m := h.x.waitMessage(t, m2, "error", func(m xmppside.Message) bool { return m.Type == "error" })
	if m.Error.Condition != stanza.RegistrationRequired {
		t.Errorf("message after Unregister: %s, want registration-required", m.Error.Condition)
	}
	h.settle()
	if n := h.d.attemptCount(); n != 2 {
		t.Errorf("%d Dial calls, want 2 (register, login)", n)
	}
	var xe *xmppside.Error
	if err := h.g.Unregister(context.Background(), aliceJID); !errors.As(err, &xe) || xe.Condition != stanza.RegistrationRequired {
		t.Errorf("second Unregister = %v, want registration-required", err)
	}
}

// The login that checked a registration is kept for RegisterGrace, so the
// user's presence that follows the approval of the gateway's subscription
// reuses it (contacts see no flap); without a presence it ends after the
// grace.
func TestRegisterGrace(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.RegisterGrace = time.Minute })
	h.register(alice, "6340564")
	s := h.d.waitSession(t, 0)
	h.settle()
	if got := s.callList(); len(s.callsWith("DISC")) != 0 || len(s.callsWith("STAT")) != 0 {
		t.Errorf("checking session during the grace: calls %q, want no DISC and no STAT", got)
	}
	h.available(aliceHW, "away", "")
	if got := s.waitCall(t, "STAT "); got != "STAT AWAY" {
		t.Errorf("STAT on the kept session = %q, want STAT AWAY", got)
	}
	h.settle()
	if n := h.d.sessionCount(); n != 1 {
		t.Errorf("%d sessions, want 1: the presence must reuse the checking login", n)
	}

	h2 := newHarness(t, "", func(c *Config) { c.RegisterGrace = 50 * time.Millisecond })
	h2.register(bob, "2222")
	s2 := h2.d.waitSession(t, 0)
	s2.waitCall(t, "DISC")
	if got := s2.callsWith("STAT"); len(got) != 0 {
		t.Errorf("checking session sent %q before ending", got)
	}
	h2.available(bobHW, "", "")
	h2.d.waitSession(t, 1).waitCall(t, "STAT ONLINE")
}

// inboxHas reports whether an event matching f waits in bare's inbox.
func (h *harness) inboxHas(bare string, f func(event) bool) bool {
	h.g.mu.Lock()
	u := h.g.users[bare]
	h.g.mu.Unlock()
	if u == nil {
		return false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.ContainsFunc(u.inbox, f)
}

// An unregistration and a registration queued behind each other on the same
// user end consistently: the registration is carried out by the JID's new
// user value, no IMIP session is orphaned, and one number never has two.
func TestUnregisterThenRegisterQueued(t *testing.T) {
	h := newHarness(t, "")
	h.login(aliceHW, "1111")
	release := h.holdStore(alice)
	ctx := context.Background()
	errs := make(chan error, 3)
	go func() { errs <- h.g.Register(ctx, aliceJID, "1111", "pw") }() // the run loop blocks storing it
	h.waitHeld()
	go func() { errs <- h.g.Unregister(ctx, aliceJID) }()
	waitUntil(t, "unregister queued", func() bool { return h.inboxHas(alice, func(ev event) bool { _, ok := ev.(evUnregister); return ok }) })
	go func() { errs <- h.g.Register(ctx, aliceJID, "1111", "pw") }()
	waitUntil(t, "register queued", func() bool { return h.inboxHas(alice, func(ev event) bool { _, ok := ev.(evRegister); return ok }) })
	release()
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("request failed: %v", err)
		}
	}
	h.settle()
	if _, ok := h.st.reg(alice); !ok {
		t.Fatalf("not registered after the last request, a registration")
	}
	h.d.mu.Lock()
	live, maxLive := h.d.live["1111"], h.d.maxLive
	h.d.mu.Unlock()
	if live != 0 || maxLive > 1 {
		t.Errorf("live sessions %d (want 0: nobody is online), most at once %d (want 1)", live, maxLive)
	}
	n := h.d.sessionCount()
	h.available(aliceHW, "", "")
	h.d.waitSession(t, n).waitCall(t, "STAT ONLINE")
}

// A re-registration whose login fails keeps the old credentials, and the
// live session stays live: the check logs in beside it, so a typo costs
// the user nothing (no flap, no new login).
func TestFailedReRegistrationKeepsSession(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "1111")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
	h.settle()
	mark := h.x.mark()
	for _, fail := range []error{errors.New("dial tcp: connection refused"), &imipside.LoginError{Code: wire.CodeWrongPassword}} {
		h.d.setFail(nil, fail)
		if err := h.g.Register(context.Background(), aliceJID, "1111", "new-pw"); err == nil {
			t.Fatal("Register succeeded although the login failed")
		}
	}
	if r, _ := h.st.reg(alice); r.Password != "pw" {
		t.Errorf("stored password %q after failed registrations, want the old one", r.Password)
	}
	h.chat("m1", aliceHW, cj("100"), "chat", "still here")
	s.waitCall(t, "MESG 100 still here")
	if got := s.callsWith("DISC"); len(got) != 0 {
		t.Errorf("live session ended by a failed registration: %q", s.callList())
	}
	if n := h.d.sessionCount(); n != 2 {
		t.Errorf("%d sessions dialed, want 2 (registration, login): no new login", n)
	}
	if ps := h.x.presences(mark, presenceFromTo(cj("100"), aliceJID, "unavailable")); len(ps) != 0 {
		t.Errorf("contact went unavailable after a failed registration: %v", ps)
	}
}

// Each registration logs into IMIP: a JID cannot use the gateway to guess
// IMIP passwords at speed. Other JIDs are not affected.
func TestRegisterRateLimited(t *testing.T) {
	h := newHarness(t, "")
	h.d.setFail(&imipside.LoginError{Code: wire.CodeWrongPassword})
	ctx := context.Background()
	var limited int
	for range registerBurst + 3 {
		err := h.g.Register(ctx, aliceJID, "1111", "guess")
		var xe *xmppside.Error
		if errors.As(err, &xe) && xe.Condition == stanza.PolicyViolation {
			limited++
		}
	}
	if limited != 3 {
		t.Errorf("%d of %d attempts refused by the limit, want 3", limited, registerBurst+3)
	}
	if n := h.d.attemptCount(); n != registerBurst {
		t.Errorf("%d IMIP logins, want %d", n, registerBurst)
	}
	h.d.setFail(nil)
	if err := h.g.Register(ctx, jid.MustParse(bob), "2222", "pw"); err != nil {
		t.Errorf("another JID: %v", err)
	}
}

// A stranger guessing the password of a number does not lock its owner out
// of registering it again, but other strangers are: only refused logins
// count against a number, and its owner is exempt.
func TestRegisterStrangerCannotLockOutOwner(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "1111") // alice owns 1111
	h.d.setFail(&imipside.LoginError{Code: wire.CodeWrongPassword})
	ctx := context.Background()
	mallory := jid.MustParse("mallory@evil.example/x")
	for range registerBurst {
		if err := h.g.Register(ctx, mallory, "1111", "guess"); err == nil {
			t.Fatal("a wrong password registered")
		}
	}
	// 1111's budget is spent: another stranger is refused without a login.
	n := h.d.attemptCount()
	var xe *xmppside.Error
	if err := h.g.Register(ctx, jid.MustParse("eve@evil.example/y"), "1111", "guess"); !errors.As(err, &xe) || xe.Condition != stanza.PolicyViolation {
		t.Errorf("another stranger on a worn-out number: %v, want policy-violation", err)
	}
	if h.d.attemptCount() != n {
		t.Errorf("a refused attempt logged into IMIP")
	}
	// The owner registers again (a new password) at once.
	h.d.setFail(nil)
	if err := h.g.Register(ctx, aliceJID, "1111", "new-pw"); err != nil {
		t.Fatalf("the owner was locked out: %v", err)
	}
	// A stranger's own budget: spent already (every attempt counts).
	if err := h.g.Register(ctx, mallory, "2222", "pw"); !errors.As(err, &xe) || xe.Condition != stanza.PolicyViolation {
		t.Errorf("the guessing JID again: %v, want policy-violation", err)
	}
}

// Strangers guessing a number's password all at once, each from its own
// JID and within its own budget, get no more logins into IMIP than the
// number's budget: an attempt in flight holds one of the number's tokens
// until its login ends (the refusals are only counted then). Found by the
// hostile-stanza suite: ten JIDs guessing at once all reached IMIP.
func TestRegisterConcurrentStrangersShareNumberBudget(t *testing.T) {
	h := newHarness(t, "")
	h.d.setFail(&imipside.LoginError{Code: wire.CodeWrongPassword})
	gate := make(chan struct{})
	h.d.mu.Lock()
	h.d.gate = gate
	h.d.mu.Unlock()
	const jids, each = 10, 1
	ctx := context.Background()
	var limited, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range jids {
		for range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := h.g.Register(ctx, jid.MustParse(fmt.Sprintf("guesser%d@evil.example/g", i)), "1111", "guess")
				var xe *xmppside.Error
				switch {
				case errors.As(err, &xe) && xe.Condition == stanza.PolicyViolation:
					limited.Add(1)
				case errors.As(err, &xe) && xe.Condition == stanza.NotAuthorized:
					refused.Add(1)
				default:
					t.Errorf("guess: %v", err)
				}
			}()
		}
	}
	// The logins allowed are held at the gate while the others are
	// refused: all are in flight at once.
	waitUntil(t, fmt.Sprintf("%d guesses limited or at the gate", jids*each), func() bool {
		return int(limited.Load())+h.d.attemptCount() >= jids*each
	})
	close(gate)
	wg.Wait()
	if n := h.d.attemptCount(); n > registerBurst {
		t.Errorf("%d IMIP logins for one number from %d strangers at once, want at most %d", n, jids, registerBurst)
	}
	if int(refused.Load()) != h.d.attemptCount() || int(limited.Load()+refused.Load()) != jids*each {
		t.Errorf("%d refused by IMIP, %d limited, %d logins", refused.Load(), limited.Load(), h.d.attemptCount())
	}
	// The budget is spent: one more stranger is refused without a login.
	var xe *xmppside.Error
	if err := h.g.Register(ctx, jid.MustParse("late@evil.example/x"), "1111", "guess"); !errors.As(err, &xe) || xe.Condition != stanza.PolicyViolation {
		t.Errorf("a stranger after the burst: %v, want policy-violation", err)
	}
}

// A login answer too large for the gateway is not reported as a server
// out of reach.
func TestRegisterHugeLoginReply(t *testing.T) {
	h := newHarness(t, "")
	h.d.setFail(fmt.Errorf("imipside: login: waiting for LOGN reply: %w", &wire.Error{Err: wire.ErrSizeTooLarge, Detail: "1000000 bytes"}))
	err := h.g.Register(context.Background(), aliceJID, "1111", "pw")
	var xe *xmppside.Error
	if !errors.As(err, &xe) || xe.Condition != stanza.NotAcceptable || !strings.Contains(xe.Text, "larger") {
		t.Errorf("Register = %v, want not-acceptable saying the answer was too large", err)
	}
}

// A bare unavailable while no resource is known (servers send one in answer
// to presence from a JID the user has not approved yet) does not end the
// registration's grace session; the resource that follows reuses it.
func TestGraceSurvivesBareUnavailable(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.RegisterGrace = time.Minute })
	h.register(alice, "6340564")
	s := h.d.waitSession(t, 0)
	h.presence(alice, gw, "unavailable", "", "")
	h.settle()
	if got := s.callsWith("DISC"); len(got) != 0 {
		t.Fatalf("grace session ended by a bare unavailable: %q", s.callList())
	}
	h.available(aliceHW, "", "")
	s.waitCall(t, "STAT ONLINE")
	if n := h.d.sessionCount(); n != 1 {
		t.Errorf("%d sessions, want the grace session reused", n)
	}
	// Once a resource is known, the last unavailable logs out.
	h.presence(aliceHW, gw, "unavailable", "", "")
	s.waitCall(t, "DISC")
}

// A shutdown ends a registration's login in flight: the request is
// answered at once, not when its own deadline ends, and no session is left
// behind.
func TestShutdownEndsRegistrationLogin(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.LoginTimeout = time.Hour })
	h.d.mu.Lock()
	h.d.stall = true
	h.d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- h.g.Register(ctx, jid.MustParse(aliceHW), "6340564", "secret") }()
	h.d.waitAttempts(t, 1)
	cctx, ccancel := context.WithTimeout(context.Background(), waitFor)
	defer ccancel()
	if err := h.g.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("Register succeeded across a shutdown")
		}
	case <-time.After(waitFor):
		t.Fatal("Register not answered after the gateway closed")
	}
	h.d.mu.Lock()
	defer h.d.mu.Unlock()
	if len(h.d.sessions) != 0 {
		t.Errorf("%d sessions made, want none", len(h.d.sessions))
	}
}

// TestUnregisterRemovesGatewayItem: with roster privileges, unregistering
// removes the gateway's own roster item with the contacts' (the
// unsubscribe presences alone would leave it with subscription none);
// a change of number keeps it.
func TestUnregisterRemovesGatewayItem(t *testing.T) {
	h := newHarness(t, privBoth)
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"})
	h.login(aliceHW, "6340564")
	h.settle()
	if err := h.g.Unregister(context.Background(), jid.MustParse(aliceHW)); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	removed := func(j jid.JID) bool {
		sets, _ := h.rx.rosterSets()
		return slices.ContainsFunc(sets, func(it xmppside.RosterItem) bool { return it.Remove && it.JID.Equal(j) })
	}
	waitUntil(t, "gateway and contact removed from the roster", func() bool { return removed(gw) && removed(cj("100")) })
}
