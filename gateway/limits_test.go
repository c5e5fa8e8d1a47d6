package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// A flood of messages from one user: every message is either sent to IMIP
// or answered with an error, never dropped in silence, and another user's
// chat goes on.
func TestMessageFloodNeverSilent(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.Limits.MessageRate, c.Limits.MessageBurst = 100, 100 })
	s := h.login(aliceHW, "1111")
	bobS := h.login(bobHW, "2222")
	mark := h.x.mark()
	const n = 3000
	start := time.Now()
	for i := range n {
		h.chat(fmt.Sprintf("f%d", i), aliceHW, cj("100"), "chat", "flood")
	}
	h.chat("b1", bobHW, cj("100"), "chat", "from bob")
	bobS.waitCall(t, "MESG 100 from bob")
	h.settle()
	elapsed := time.Since(start)
	sent := len(s.callsWith("MESG"))
	errs := h.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "error" && m.To.Equal(jid.MustParse(aliceHW)) })
	if sent+len(errs) != n {
		t.Fatalf("%d sent + %d errors = %d, want %d: some messages had neither", sent, len(errs), sent+len(errs), n)
	}
	// The bucket grants its burst and then its rate, never more. Messages
	// refused before it (the user's inbox full) never reach it; a granted
	// one may still be refused after it (the store's write queue full).
	slow, early := 0, 0
	for _, m := range errs {
		switch txt := m.Error.Text[""]; {
		case strings.Contains(txt, "faster than"):
			slow++
		case strings.Contains(txt, "Too many messages queued"):
			early++
		}
	}
	granted := n - slow - early
	if most := 100 + int(100*elapsed.Seconds()) + 1; granted < min(100, n-early) || granted > most || sent > granted {
		t.Errorf("%d messages granted by the bucket (%d went to IMIP, %d refused before it) in %v, want the burst of 100 and at most %d", granted, sent, early, elapsed, most)
	}
	for _, m := range errs {
		if m.Error.Condition != stanza.ResourceConstraint || m.Error.Type != stanza.Wait {
			t.Fatalf("error %s/%s, want wait/resource-constraint", m.Error.Type, m.Error.Condition)
		}
	}
}

// Subscription changes beyond the user's bucket are answered with an error
// presence; those within go to IMIP.
func TestSubscriptionFloodRefused(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.Limits.SubscriptionRate, c.Limits.SubscriptionBurst = 0.01, 5 })
	s := h.login(aliceHW, "1111")
	mark := h.x.mark()
	for i := range 12 {
		h.g.HandlePresence(xmppside.Presence{ID: fmt.Sprintf("s%d", i), From: aliceJID, To: cj(fmt.Sprint(500 + i)), Type: "subscribe"})
	}
	h.settle()
	if got := len(s.callsWith("LIST ADD")); got != 5 {
		t.Errorf("%d LIST ADD, want the burst of 5", got)
	}
	errs := h.x.presences(mark, func(p xmppside.Presence) bool { return p.Type == "error" })
	if len(errs) != 7 {
		t.Fatalf("%d error presences, want 7", len(errs))
	}
	for _, p := range errs {
		if p.Error.Condition != stanza.ResourceConstraint || !p.To.Equal(aliceJID) || p.From.Localpart() == "" {
			t.Errorf("error presence %+v, want resource-constraint from the contact to the user", p)
		}
	}
}

// Status changes beyond the user's bucket are delayed, not lost: the newest
// one goes once the bucket allows.
func TestStatusChangesPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "", func(c *Config) { c.Limits.StatusRate, c.Limits.StatusBurst = 1, 2 })
		s := h.login(aliceHW, "1111") // STAT ONLINE takes one token
		shows := []string{"away", "dnd", "xa", "away", "dnd"}
		for i, show := range shows {
			h.available(aliceHW, show, fmt.Sprint("s", i))
			h.idle(alice)
		}
		before := len(s.callsWith("STAT"))
		if before != 2 {
			t.Errorf("%d STATs at once, want 2 (the burst)", before)
		}
		time.Sleep(2 * time.Second) // fake time: the bucket refills
		synctest.Wait()
		h.idle(alice)
		got := s.callsWith("STAT")
		if len(got) != before+1 || got[len(got)-1] != "STAT BUSY s4" {
			t.Errorf("STATs %q, want one more: the newest, STAT BUSY s4", got)
		}
	})
}

// A large sync is paced by the gateway-wide roster bucket, and an IMIP
// contact list longer than MaxRosterItems is synced in part, with a word
// to the user.
func TestRosterSyncPacedAndCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "", func(c *Config) {
			c.Limits.RosterRate, c.Limits.RosterBurst = 10, 10
			c.Limits.MaxRosterItems = 40
		})
		var buddies []wire.Buddy
		for i := range 60 {
			buddies = append(buddies, wire.Buddy{Number: wire.Number(fmt.Sprint(1000 + i))})
		}
		h.d.setBuddies("1111", buddies...)
		mark := h.x.mark()
		// Not h.register: it waits for the user to be idle, which lets
		// the fake clock run the whole pacing.
		if err := h.g.Register(context.Background(), aliceJID, "1111", "pw"); err != nil {
			t.Fatal(err)
		}
		isSub := func(p xmppside.Presence) bool { return p.Type == "subscribe" && p.From.Localpart() != "" }
		synctest.Wait()
		if got := len(h.x.presences(mark, isSub)); got > 10 {
			t.Fatalf("%d subscription presences at once, want at most the burst of 10", got)
		}
		time.Sleep(5 * time.Second) // fake time: 3 s of pacing for 30 more
		synctest.Wait()
		if got := len(h.x.presences(mark, isSub)); got != 40 {
			t.Errorf("%d subscription presences, want 40 (MaxRosterItems)", got)
		}
		told := h.x.messages(mark, func(m xmppside.Message) bool { return m.From.Equal(gw) && m.Type == "normal" })
		if len(told) == 0 {
			t.Error("the user was not told the list was synced in part")
		}
	})
}
