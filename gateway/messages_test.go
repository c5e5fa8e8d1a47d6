package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// Chat and normal messages with a body go out as MESG.
func TestMessageToIMIP(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.chat("a1", aliceHW, cj("7744387"), "chat", "hello")
	h.chat("a2", aliceHW, cj("100"), "normal", "second line\nhere")
	h.chat("a3", aliceHW, jid.MustParse("100@imip.localhost/res"), "", "typeless")
	h.settle()
	want := []string{"MESG 7744387 hello", "MESG 100 second line\nhere", "MESG 100 typeless"}
	if got := s.callsWith("MESG "); !slices.Equal(got, want) {
		t.Errorf("MESGs = %q, want %q", got, want)
	}
	if errs := h.x.messages(0, func(m xmppside.Message) bool { return m.Error != nil }); len(errs) != 0 {
		t.Errorf("unexpected errors:\n%s", dump(toAny(errs)))
	}
}

// An IMIP MESG becomes a chat message from number@gateway with the nick; a
// XEP-0203 delay only when Timo is over a minute old or before the login.
func TestIMIPMessage(t *testing.T) {
	h := newHarness(t, "")
	before := time.Now()
	s := h.login(aliceHW, "6340564")
	tests := []struct {
		name  string
		at    time.Time
		delay bool
	}{
		0: {"no Timo", time.Time{}, false},
		1: {"fresh", time.Now().Add(time.Second).UTC().Truncate(time.Second), false},
		2: {"two minutes old", time.Now().Add(-2 * time.Minute).UTC().Truncate(time.Second), true},
		3: {"stored before login", before.Add(-20 * time.Second).UTC().Truncate(time.Second), true},
	}
	for i, tc := range tests {
		mark := h.x.mark()
		s.push(imipside.MessageEvent{BlockID: uint64(i + 1), From: "7744387", Nick: "mawis76", To: "6340564", Time: tc.at, Text: tc.name})
		m := h.x.waitMessage(t, mark, "message from IMIP", func(m xmppside.Message) bool { return m.Body == tc.name })
		if !m.From.Equal(cj("7744387")) || !m.To.Bare().Equal(aliceJID) || m.Type != "chat" || m.Nick != "mawis76" {
			t.Errorf("%d %s: from=%s to=%s type=%q nick=%q; want from 7744387@%s, to %s, chat, nick mawis76",
				i, tc.name, m.From, m.To, m.Type, m.Nick, gw, aliceJID)
		}
		if got := !m.Delay.IsZero(); got != tc.delay {
			t.Errorf("%d %s: delay %v (%v), want delay %v", i, tc.name, got, m.Delay, tc.delay)
		}
		if tc.delay && (!m.Delay.Equal(tc.at) || !m.DelayFrom.Equal(gw)) {
			t.Errorf("%d %s: delay %v from %s, want %v from %s", i, tc.name, m.Delay, m.DelayFrom, tc.at, gw)
		}
	}
}

// An ACK 811 to a MESG comes back to the sender as a message error with the
// original id and item-not-found; the others are confirmed, and a late
// answer to a settled MESG reports nothing.
func TestMessageFailed(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	s.setReply(func(kind string, n wire.Number) (wire.Code, bool) {
		if kind == imipside.RequestMESG && n == "999" {
			return wire.CodeIllegalUser, true
		}
		return wire.CodeOK, true
	})
	mark := h.x.mark()
	h.chat("first", aliceHW, cj("100"), "chat", "ok")
	h.chat("orig-id", aliceHW, cj("999"), "chat", "to nobody")
	h.chat("third", aliceHW, cj("100"), "chat", "ok too")
	m := h.x.waitMessage(t, mark, "message error", func(m xmppside.Message) bool { return m.Type == "error" })
	if m.ID != "orig-id" || !m.To.Equal(jid.MustParse(aliceHW)) || !m.From.Equal(cj("999")) {
		t.Errorf("error id=%q from=%s to=%s; want id orig-id from 999@%s to %s", m.ID, m.From, m.To, gw, aliceHW)
	}
	if m.Error == nil || m.Error.Condition != stanza.ItemNotFound {
		t.Errorf("error = %+v, want item-not-found", m.Error)
	}
	h.settle()
	// Late failures for every request ever sent change nothing.
	for id := uint64(wire.FirstClientBlockID); id < wire.FirstClientBlockID+10; id++ {
		s.push(imipside.ReplyEvent{ID: id, Type: imipside.RequestMESG, Number: "999", Code: wire.CodeIllegalUser})
	}
	h.settle()
	if errs := h.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "error" }); len(errs) != 1 {
		t.Errorf("%d message errors, want 1:\n%s", len(errs), dump(toAny(errs)))
	}
	if qs, _ := h.st.Messages(context.Background(), alice); len(qs) != 0 {
		t.Errorf("%d messages still queued after their answers: %+v", len(qs), qs)
	}
}

// Messages the gateway cannot send are answered with an error, never
// silence, and make no IMIP call.
func TestMessageErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(h *harness)
		from    string
		to      jid.JID
		cond    stanza.Condition
		typ     stanza.ErrorType
		errFrom jid.JID
	}{
		0: {name: "non-numeric contact", setup: func(h *harness) { h.login(aliceHW, "6340564") },
			from: aliceHW, to: jid.MustParse("bob@imip.localhost"), cond: stanza.JIDMalformed, typ: stanza.Modify},
		1: {name: "unregistered", setup: func(h *harness) {},
			from: bobHW, to: cj("100"), cond: stanza.RegistrationRequired, typ: stanza.Auth},
		2: {name: "registered, not online", setup: func(h *harness) { h.register(alice, "6340564") },
			from: aliceHW, to: cj("100"), cond: stanza.RecipientUnavailable, typ: stanza.Wait},
		3: {name: "IMIP unreachable", setup: func(h *harness) {
			h.register(alice, "6340564")
			h.d.setFail(errors.New("connection refused"))
			h.available(aliceHW, "", "")
			h.d.waitAttempts(h.t, 2)
		}, from: aliceHW, to: cj("100"), cond: stanza.RemoteServerTimeout, typ: stanza.Wait},
		4: {name: "login refused", setup: func(h *harness) {
			h.register(alice, "6340564")
			h.d.setFail(&imipside.LoginError{Code: wire.CodeWrongPassword})
			h.available(aliceHW, "", "")
			h.d.waitAttempts(h.t, 2)
		}, from: aliceHW, to: cj("100"), cond: stanza.NotAuthorized, typ: stanza.Auth},
		5: {name: "to the gateway itself", setup: func(h *harness) { h.login(aliceHW, "6340564") },
			from: aliceHW, to: gw, cond: stanza.ServiceUnavailable, typ: stanza.Cancel, errFrom: gw},
		6: {name: "session refuses MESG", setup: func(h *harness) {
			s := h.login(aliceHW, "6340564")
			s.mu.Lock()
			s.sendErr = imipside.ErrClosed
			s.mu.Unlock()
		}, from: aliceHW, to: cj("100"), cond: stanza.RemoteServerTimeout, typ: stanza.Wait},
	}
	for i, tc := range tests {
		// Messages taken while IMIP is out of reach wait for it this long.
		h := newHarness(t, "", func(c *Config) { c.DeliveryTimeout = 300 * time.Millisecond })
		tc.setup(h)
		h.settle()
		mark := h.x.mark()
		h.chat("m1", tc.from, tc.to, "chat", "hi")
		m := h.x.waitMessage(t, mark, "message error", func(m xmppside.Message) bool { return m.Type == "error" })
		want := tc.errFrom
		if want.String() == "" {
			want = tc.to.Bare()
		}
		if m.ID != "m1" || !m.To.Equal(jid.MustParse(tc.from)) || !m.From.Bare().Equal(want) {
			t.Errorf("%d %s: error id=%q from=%s to=%s; want id m1 from %s to %s", i, tc.name, m.ID, m.From, m.To, want, tc.from)
		}
		if m.Error == nil || m.Error.Condition != tc.cond || m.Error.Type != tc.typ {
			t.Errorf("%d %s: error %+v, want %s/%s", i, tc.name, m.Error, tc.typ, tc.cond)
		}
		h.settle()
		for j := range h.d.sessionCount() {
			if got := h.d.waitSession(t, j).callsWith("MESG"); len(got) > 0 && tc.name != "session refuses MESG" {
				t.Errorf("%d %s: IMIP calls %q", i, tc.name, got)
			}
		}
	}
}

// Body-less messages (chat states, receipts) are neither sent nor answered.
func TestBodylessMessageIgnored(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	mark := h.x.mark()
	h.g.HandleMessage(xmppside.Message{ID: "cs", From: jid.MustParse(aliceHW), To: cj("100"), Type: "chat", ChatState: "composing"})
	h.g.HandleMessage(xmppside.Message{ID: "rr", From: jid.MustParse(aliceHW), To: cj("100"), Type: "chat", ReceiptReceived: "x"})
	h.g.HandleMessage(xmppside.Message{ID: "u", From: jid.MustParse(bobHW), To: cj("100"), Type: "chat", ChatState: "active"})
	h.settle()
	if got := h.x.since(mark); len(got) != 0 {
		t.Errorf("body-less messages answered:\n%s", dump(got))
	}
	if got := s.callsWith("MESG"); len(got) != 0 {
		t.Errorf("body-less messages sent to IMIP: %q", got)
	}
}

// Errors and groupchat messages are never answered (no error loops).
func TestErrorMessageNotAnswered(t *testing.T) {
	h := newHarness(t, "")
	mark := h.x.mark()
	for _, typ := range []string{"error", "groupchat", "headline"} {
		h.chat("e", bobHW, cj("100"), typ, "x")
	}
	h.settle()
	if got := h.x.since(mark); len(got) != 0 {
		t.Errorf("answered:\n%s", dump(got))
	}
}

// IMIP messages that arrive while the component link is down are held and
// sent, in order and marked as delayed, once the link is back.
func TestMessagesHeldWhileLinkDown(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.x.setDown(true)
	for _, text := range []string{"one", "two"} {
		s.push(imipside.MessageEvent{From: "100", Nick: "ann", To: "6340564", Text: text})
	}
	h.settle()
	h.x.setDown(false)
	mark := h.x.mark()
	h.g.HandleConnected(context.Background())
	h.settle()
	var got []string
	for _, m := range h.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "chat" }) {
		got = append(got, m.Body)
		if m.Delay.IsZero() || !m.From.Equal(cj("100")) {
			t.Errorf("held message %q: from %s, delay %v (want 100@gateway and a delay)", m.Body, m.From, m.Delay)
		}
	}
	if fmt.Sprint(got) != "[one two]" {
		t.Errorf("after the link came back: %q, want [one two]", got)
	}
}

// A message from IMIP is stored before it goes, confirmed to the IMIP
// server once stored, and leaves the store only when the barrier after it
// was answered; a failed barrier sends it again, with the same id, once
// the link is back.
func TestIMIPMessageDurable(t *testing.T) {
	h := newHarness(t, "")
	h.d.mu.Lock()
	h.d.confirm = true
	h.d.mu.Unlock()
	s := h.login(aliceHW, "6340564")
	hold := make(chan struct{})
	h.x.mu.Lock()
	h.x.barrierHold, h.x.barrierErr = hold, xmppside.ErrNotConnected
	h.x.mu.Unlock()
	mark := h.x.mark()
	s.push(imipside.MessageEvent{BlockID: 77, MessageID: "m5", From: "100", To: "6340564", Text: "keep me"})
	first := h.x.waitMessage(t, mark, "the message", func(m xmppside.Message) bool { return m.Body == "keep me" })
	if first.ID != "imip-6340564-m5" {
		t.Errorf("id %q, want the stable imip-6340564-m5", first.ID)
	}
	s.waitCall(t, "ACK 77") // confirmed to IMIP: it is on disk
	qs, _ := h.st.Messages(context.Background(), alice)
	if len(qs) != 1 || qs[0].Dir != ToXMPP || qs[0].Body != "keep me" {
		t.Fatalf("queued %+v while the barrier waits, want the message", qs)
	}
	close(hold) // the barrier fails: the link dropped
	h.settle()
	if qs, _ := h.st.Messages(context.Background(), alice); len(qs) != 1 {
		t.Fatalf("queued %d after a failed barrier, want 1", len(qs))
	}
	h.x.mu.Lock()
	h.x.barrierHold, h.x.barrierErr = nil, nil
	h.x.mu.Unlock()
	mark = h.x.mark()
	h.g.HandleDisconnected(errors.New("test"))
	h.g.HandleConnected(context.Background())
	again := h.x.waitMessage(t, mark, "the message again", func(m xmppside.Message) bool { return m.Body == "keep me" })
	if again.ID != first.ID || again.Delay.IsZero() {
		t.Errorf("sent again with id %q delay %v, want id %q and a delay", again.ID, again.Delay, first.ID)
	}
	h.settle()
	if qs, _ := h.st.Messages(context.Background(), alice); len(qs) != 0 {
		t.Errorf("queued %+v after the barrier was answered, want none", qs)
	}
}

// A message for IMIP is stored before it goes and leaves the store on
// IMIP's ACK; one sent on a session that ended unconfirmed goes again on the
// next session; a XEP-0184 receipt follows IMIP's ACK only.
func TestMessageToIMIPDurable(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	s.setReply(func(string, wire.Number) (wire.Code, bool) { return 0, false }) // IMIP says nothing
	mark := h.x.mark()
	h.g.HandleMessage(xmppside.Message{ID: "r1", From: jid.MustParse(aliceHW), To: cj("100"), Type: "chat", Body: "hello", ReceiptRequest: true})
	s.waitCall(t, "MESG 100 hello")
	h.settle()
	if qs, _ := h.st.Messages(context.Background(), alice); len(qs) != 1 || qs[0].Dir != ToIMIP || !qs[0].Receipt {
		t.Fatalf("queued %+v while IMIP has not answered, want the message", qs)
	}
	if rs := h.x.messages(mark, func(m xmppside.Message) bool { return m.ReceiptReceived != "" }); len(rs) != 0 {
		t.Fatalf("receipt before IMIP confirmed: %v", rs)
	}
	// The session drops; the next one sends the message again.
	s.drop(errors.New("connection reset"))
	s2 := h.d.waitSession(t, h.d.sessionCount()-1)
	if s2 == s {
		s2 = h.d.waitSession(t, h.d.sessionCount())
	}
	s2.waitCall(t, "MESG 100 hello")
	r := h.x.waitMessage(t, mark, "receipt", func(m xmppside.Message) bool { return m.ReceiptReceived == "r1" })
	if !r.From.Equal(cj("100")) || !r.To.Equal(jid.MustParse(aliceHW)) {
		t.Errorf("receipt from %s to %s, want from 100@gateway to %s", r.From, r.To, aliceHW)
	}
	h.settle()
	if qs, _ := h.st.Messages(context.Background(), alice); len(qs) != 0 {
		t.Errorf("queued %+v after IMIP's ACK, want none", qs)
	}
	if errs := h.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "error" }); len(errs) != 0 {
		t.Errorf("errors: %s", dump(toAny(errs)))
	}
}

// Messages from IMIP beyond what memory keeps wait in the store only and
// come back from it a page at a time: all of them reach the user, once
// each and in order, and the store ends empty.
func TestIMIPMessagesSpillInOrder(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.x.setDown(true)
	const n = 3*maxInMemory + 7
	for i := range n {
		s.push(imipside.MessageEvent{MessageID: fmt.Sprint("m", i), From: "100", To: "6340564", Text: fmt.Sprint("msg ", i)})
	}
	h.settle()
	if qs, _ := h.st.Messages(context.Background(), alice); len(qs) != n {
		t.Fatalf("%d queued while the link is down, want %d", len(qs), n)
	}
	h.x.setDown(false)
	mark := h.x.mark()
	h.g.HandleConnected(context.Background())
	chat := func(m xmppside.Message) bool { return m.Type == "chat" }
	waitUntil(t, "every message delivered", func() bool { return len(h.x.messages(mark, chat)) >= n })
	waitUntil(t, "the store empty", func() bool {
		qs, _ := h.st.Messages(context.Background(), alice)
		return len(qs) == 0
	})
	got := h.x.messages(mark, chat)
	if len(got) != n {
		t.Fatalf("%d messages delivered, want %d", len(got), n)
	}
	for i, m := range got {
		if want := fmt.Sprint("msg ", i); m.Body != want {
			t.Fatalf("message %d is %q, want %q (order or duplicates)", i, m.Body, want)
		}
	}
}

// A message that went to the store only because memory was full, and whose
// write ends after every message in memory was delivered, is read back and
// delivered all the same (nothing else would read it back).
func TestSpilledMessageNotStranded(t *testing.T) {
	h := newHarness(t, "", writeFirst)
	s := h.login(aliceHW, "6340564")
	barrier := make(chan struct{})
	h.x.mu.Lock()
	h.x.barrierHold = barrier // the first ones stay in memory, unconfirmed
	h.x.mu.Unlock()
	mark := h.x.mark()
	chat := func(m xmppside.Message) bool { return m.Type == "chat" }
	for i := range maxInMemory {
		s.push(imipside.MessageEvent{MessageID: fmt.Sprint("m", i), From: "100", To: "6340564", Text: fmt.Sprint("msg ", i)})
	}
	waitUntil(t, "the first ones sent", func() bool { return len(h.x.messages(mark, chat)) == maxInMemory })
	apply := make(chan struct{})
	h.st.mu.Lock()
	h.st.applyHold = apply // the next write waits
	h.st.mu.Unlock()
	s.push(imipside.MessageEvent{MessageID: "late", From: "100", To: "6340564", Text: "late"})
	waitUntil(t, "the late message's write under way", func() bool {
		h.st.mu.Lock()
		defer h.st.mu.Unlock()
		return h.st.applyHeld == 1
	})
	h.x.mu.Lock()
	h.x.barrierHold = nil
	h.x.mu.Unlock()
	close(barrier) // the ones in memory are confirmed meanwhile
	// Delivered: their deletes queue behind the late message's write.
	waitUntil(t, "the ones in memory delivered", func() bool { return h.g.commit.Stats().Queued >= maxInMemory })
	h.st.mu.Lock()
	h.st.applyHold = nil
	h.st.mu.Unlock()
	close(apply)
	h.x.waitMessage(t, mark, "the late message", func(m xmppside.Message) bool { return m.Body == "late" })
}

// A barrier that fails while the component link stays up (not answered in
// time; or the user's server cannot reach their domain, so what it covered
// bounced) is not the end: the messages stay in the store and go again,
// with the same id, after a delay that suits the failure.
func TestBarrierFailureWhileLinkUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		delay time.Duration
	}{
		{"not answered in time", context.DeadlineExceeded, barrierRetry},
		{"domain unreachable", fmt.Errorf("test: %w", xmppside.ErrRemoteUnreachable), unreachableRetry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, "")
				s := h.login(aliceHW, "6340564")
				h.x.mu.Lock()
				h.x.barrierErr = tc.err
				h.x.mu.Unlock()
				mark := h.x.mark()
				body := func(m xmppside.Message) bool { return m.Body == "again" }
				s.push(imipside.MessageEvent{MessageID: "m1", From: "100", To: "6340564", Text: "again"})
				synctest.Wait()
				h.idle(alice)
				if n := len(h.x.messages(mark, body)); n != 1 {
					t.Fatalf("sent %d times, want 1", n)
				}
				h.x.mu.Lock()
				h.x.barrierErr = nil
				h.x.mu.Unlock()
				time.Sleep(tc.delay - time.Second) // fake time
				synctest.Wait()
				h.idle(alice)
				if n := len(h.x.messages(mark, body)); n != 1 {
					t.Fatalf("sent %d times before the retry delay, want 1", n)
				}
				time.Sleep(2 * time.Second)
				synctest.Wait()
				h.idle(alice)
				got := h.x.messages(mark, body)
				if len(got) != 2 || got[1].ID != got[0].ID {
					t.Fatalf("sent %d times after the delay (ids %v), want 2 with one id", len(got), got)
				}
				h.settle()
				if qs, _ := h.st.Messages(context.Background(), alice); len(qs) != 0 {
					t.Errorf("queued %+v after the second barrier was answered, want none", qs)
				}
			})
		})
	}
}

// A message from a listed contact carries no XEP-0172 nick (the roster has
// it) unless the nick changed; a stranger's always does.
func TestIMIPMessageNick(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"})
	s := h.login(aliceHW, "6340564")
	mark := h.x.mark()
	for _, ev := range []imipside.MessageEvent{
		{From: "100", Nick: "ann", Text: "listed, same nick"},
		{From: "100", Nick: "annie", Text: "listed, new nick"},
		{From: "200", Nick: "zed", Text: "stranger"},
	} {
		ev.To = "6340564"
		s.push(ev)
	}
	want := map[string]string{"listed, same nick": "", "listed, new nick": "annie", "stranger": "zed"}
	waitUntil(t, "three messages", func() bool {
		return len(h.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "chat" })) == 3
	})
	for _, m := range h.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "chat" }) {
		if m.Nick != want[m.Body] {
			t.Errorf("%q: nick %q, want %q", m.Body, m.Nick, want[m.Body])
		}
	}
}

// A message from IMIP that the user's server bounces back (an error with
// the gateway's imip- id) is logged with its id and condition, and not
// answered.
func TestBouncedIMIPMessageLogged(t *testing.T) {
	var buf syncBuffer
	h := newHarness(t, "", func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&buf, nil)) })
	mark := h.x.mark()
	h.g.HandleMessage(xmppside.Message{ID: "imip-6340564-m9", From: jid.MustParse(aliceHW), To: cj("100"), Type: "error",
		Error: &stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable}})
	h.g.HandleMessage(xmppside.Message{ID: "other", From: jid.MustParse(aliceHW), To: cj("100"), Type: "error"})
	h.settle()
	if got := h.x.since(mark); len(got) != 0 {
		t.Errorf("answered:\n%s", dump(got))
	}
	log := buf.String()
	if !strings.Contains(log, "bounced by the user's server") || !strings.Contains(log, "imip-6340564-m9") || !strings.Contains(log, "service-unavailable") {
		t.Errorf("log %q, want the bounce with its id and condition", log)
	}
	if strings.Count(log, "bounced by the user's server") != 1 {
		t.Errorf("log %q: an error without an imip- id is not a bounce of ours", log)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
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

// A message from XMPP that arrives while the gateway stops (the XMPP server
// wrote it before it saw the component's stream close) is stored for IMIP
// after the restart, not dropped; one from a JID that is not registered is
// not kept. After Close nothing more is taken.
func TestMessageWhileStoppingKept(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	mark := h.x.mark()
	h.chat("late", aliceHW, cj("100"), "chat", "written before the close")
	h.chat("stranger", "eve@localhost/x", cj("100"), "chat", "not registered")
	var got []QueuedMessage
	waitUntil(t, "the late message stored", func() bool {
		got, _ = h.st.Messages(context.Background(), alice)
		return len(got) == 1
	})
	if m := got[0]; m.Dir != ToIMIP || m.Peer != "100" || m.StanzaID != "late" || m.Body != "written before the close" || m.Resource != jid.MustParse(aliceHW).Resourcepart() {
		t.Errorf("stored %+v", m)
	}
	if n := len(s.callsWith("MESG")); n != 0 {
		t.Errorf("%d MESG sent while stopping", n)
	}
	if ms := h.x.messages(mark, func(xmppside.Message) bool { return true }); len(ms) != 0 {
		t.Errorf("answers while stopping (the stream is closing): %+v", ms)
	}
}

// imipd's caps (ACK 814: the contact holds too many) and rate (ACK 815: too
// fast) come back to the sender as wait / resource-constraint with the
// original id: a reason to try later, not a dead contact.
func TestMessageRefusedByIMIPLimits(t *testing.T) {
	for _, code := range []wire.Code{wire.CodeRecipientFull, wire.CodeTooFast} {
		h := newHarness(t, "")
		s := h.login(aliceHW, "6340564")
		s.setReply(func(kind string, n wire.Number) (wire.Code, bool) {
			if kind == imipside.RequestMESG {
				return code, true
			}
			return wire.CodeOK, true
		})
		mark := h.x.mark()
		h.chat("refused", aliceHW, cj("100"), "chat", "hi")
		m := h.x.waitMessage(t, mark, "message error", func(m xmppside.Message) bool { return m.Type == "error" })
		if m.ID != "refused" || m.Error == nil || m.Error.Condition != stanza.ResourceConstraint || m.Error.Type != stanza.Wait {
			t.Errorf("ACK %d: error %+v id %q, want wait/resource-constraint for id refused", code, m.Error, m.ID)
		}
	}
}
