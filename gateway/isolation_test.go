package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// quick is how long a method that must not block may take, generously.
const quick = time.Second

// One user whose run loop is stuck (here in a store write) neither stalls
// another user nor the read loop: its own full inbox answers
// resource-constraint at once, and what it queued goes out in order once it
// is unstuck.
func TestBlockedUserDoesNotStallOthers(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.InboxSize = 4 })
	bobS := h.login(bobHW, "2222")
	h.login(aliceHW, "1111")
	release := h.holdStore(alice)
	regErr := make(chan error, 1)
	go func() { regErr <- h.g.Register(context.Background(), aliceJID, "1111", "pw2") }()
	h.waitHeld() // alice's run loop is now stuck storing the registration

	mark := h.x.mark()
	start := time.Now()
	const n = 10
	for i := range n {
		h.chat(fmt.Sprintf("a%d", i), aliceHW, cj("100"), "chat", "from alice")
	}
	if d := time.Since(start); d > quick {
		t.Errorf("%d messages to a stuck user took %v on the read loop", n, d)
	}
	// Bob is served meanwhile, both ways.
	h.chat("b1", bobHW, cj("100"), "chat", "from bob")
	bobS.waitCall(t, "MESG 100 from bob")
	bobS.push(imipside.StatEvent{From: "300", Status: wire.StatusOnline})
	h.x.waitPresence(t, mark, "bob's contact", presenceFromTo(cj("300"), jid.MustParse(bob), ""))
	// Alice's overflow was refused with resource-constraint.
	isErr := func(m xmppside.Message) bool { return m.Type == "error" }
	waitUntil(t, "the refusals", func() bool { return len(h.x.messages(mark, isErr)) >= n-4 })
	errs := h.x.messages(mark, isErr)
	if len(errs) != n-4 {
		t.Errorf("%d errors for %d messages to a full inbox of 4, want %d:\n%s", len(errs), n, n-4, dump(toAny(errs)))
	}
	for _, m := range errs {
		if m.Error.Condition != stanza.ResourceConstraint || m.Error.Type != stanza.Wait || !m.To.Equal(jid.MustParse(aliceHW)) {
			t.Errorf("error %s/%s to %s, want wait/resource-constraint to %s", m.Error.Type, m.Error.Condition, m.To, aliceHW)
		}
	}
	// Once unstuck, the queued messages go out in order, on the session
	// the registration checked.
	release()
	if err := <-regErr; err != nil {
		t.Fatalf("Register: %v", err)
	}
	sa := h.d.waitSession(t, h.d.sessionCount()-1)
	h.settle()
	want := []string{"MESG 100 from alice", "MESG 100 from alice", "MESG 100 from alice", "MESG 100 from alice"}
	if got := sa.callsWith("MESG"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after release: %q, want %q", got, want)
	}
}

// The read-loop methods never wait on the component: even while every send
// blocks, answers to unregistered users and to full inboxes are left to
// other goroutines.
func TestReadLoopNeverBlocksOnSend(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.InboxSize = 1; c.OpTimeout = 30 * time.Second })
	h.register(alice, "1111")
	h.x.setBlocked(true)
	t.Cleanup(func() { h.x.setBlocked(false) })
	mark := h.x.mark()
	start := time.Now()
	h.chat("u1", bobHW, cj("100"), "chat", "unregistered")
	h.presence(bobHW, cj("100"), "subscribe", "", "")
	h.presence(bobHW, gw, "probe", "", "")
	for i := range 5 { // alice is not logged in: her run loop blocks sending errors, her inbox fills
		h.chat(fmt.Sprintf("a%d", i), aliceHW, cj("100"), "chat", "x")
	}
	if d := time.Since(start); d > quick {
		t.Fatalf("read-loop methods took %v while the component was blocked", d)
	}
	h.x.setBlocked(false)
	m := h.x.waitMessage(t, mark, "registration-required", func(m xmppside.Message) bool { return m.ID == "u1" })
	if m.Error == nil || m.Error.Condition != stanza.RegistrationRequired {
		t.Errorf("error to the unregistered user: %+v, want registration-required", m.Error)
	}
	h.x.waitPresence(t, mark, "unsubscribed", presenceFromTo(cj("100"), jid.MustParse(bob), "unsubscribed"))
	for i := range 5 {
		id := fmt.Sprintf("a%d", i)
		h.x.waitMessage(t, mark, "error for "+id, func(m xmppside.Message) bool { return m.ID == id && m.Type == "error" })
	}
}

// A timer that fires while the user's inbox is full is not lost: its event
// never counts against the bound (here the login retry's, while a
// registration's store write holds the run loop).
func TestRetryNotLostOnFullInbox(t *testing.T) {
	h := newHarness(t, "", func(c *Config) {
		c.InboxSize = 1
		c.RetryMin, c.RetryMax = 300*time.Millisecond, 300*time.Millisecond
	})
	h.register(alice, "1111")
	h.d.setFail(nil, errors.New("connection refused"))
	mark := h.x.mark()
	h.available(aliceHW, "", "")
	h.x.waitPresence(t, mark, "gateway unavailable", presenceFromTo(gw, aliceJID, "unavailable"))
	h.idle(alice) // the retry timer is armed
	h.g.mu.Lock()
	u := h.g.users[alice]
	h.g.mu.Unlock()
	// A registration's store write blocks the run loop.
	release := make(chan struct{})
	h.st.mu.Lock()
	h.st.hold = release
	h.st.mu.Unlock()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	h.d.setFail(nil)
	regErr := make(chan error, 1)
	go func() { regErr <- h.g.Register(context.Background(), aliceJID, "1111", "pw") }()
	waitUntil(t, "run loop held in the store", func() bool {
		h.st.mu.Lock()
		defer h.st.mu.Unlock()
		return h.st.held > 0
	})
	h.chat("m2", aliceHW, cj("100"), "chat", "x") // fills the inbox
	h.chat("m3", aliceHW, cj("100"), "chat", "x") // refused: the inbox is full
	h.x.waitMessage(t, mark, "m3 refused", func(m xmppside.Message) bool {
		return m.ID == "m3" && m.Error != nil && m.Error.Condition == stanza.ResourceConstraint
	})
	waitUntil(t, "retry queued past the bound", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.timerQueued && len(u.inbox) == 2
	})
	h.st.mu.Lock()
	h.st.hold = nil
	h.st.mu.Unlock()
	unblock()
	if err := <-regErr; err != nil {
		t.Fatalf("Register: %v", err)
	}
	h.d.waitSession(t, 1).waitCall(t, "STAT ONLINE")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %v", what, waitFor)
		}
		time.Sleep(time.Millisecond)
	}
}

// The run loop never waits for IMIP: a server that answers nothing does
// not keep it from handling the session's events, and a request without an
// answer times out (a STAT is then sent again at the next change).
func TestRunLoopNeverWaitsForIMIP(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.OpTimeout = 300 * time.Millisecond })
	h.d.setReply(func(string, wire.Number) (wire.Code, bool) { return 0, false }) // silence
	s := h.login(aliceHW, "1111")
	pushed := make(chan struct{})
	go func() {
		defer close(pushed)
		for i := range 100 { // far more than 2 x InboxSize (16)
			s.push(imipside.StatEvent{From: wire.Number(fmt.Sprintf("%d", 1000+i)), Status: wire.StatusOnline})
		}
	}()
	select {
	case <-pushed:
	case <-time.After(waitFor):
		t.Fatal("the reader blocked while the server did not answer")
	}
	h.idle(alice)
	mark := h.x.mark()
	h.presence(aliceHW, cj("1099"), "probe", "", "")
	h.x.waitPresence(t, mark, "presence of the last pushed contact", presenceFromTo(cj("1099"), jid.MustParse(aliceHW), ""))
	// The unanswered STAT expires; the same presence again sends it again.
	// Before that, the same presence sends nothing.
	n := len(s.callsWith("STAT"))
	h.available(aliceHW, "", "")
	h.idle(alice)
	if got := len(s.callsWith("STAT")); got != n {
		t.Fatalf("STAT sent again before the first one expired: %q", s.callsWith("STAT"))
	}
	deadline := time.Now().Add(waitFor)
	for len(s.callsWith("STAT")) == n {
		if time.Now().After(deadline) {
			t.Fatalf("no STAT again within %v after the first one had no answer", waitFor)
		}
		h.available(aliceHW, "", "")
		h.idle(alice)
		time.Sleep(20 * time.Millisecond) // poll: the expiry is on the user's timer
	}
}
