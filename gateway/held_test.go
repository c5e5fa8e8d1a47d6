package gateway

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// writeFirst makes every message written before it goes on.
func writeFirst(c *Config) { c.HoldWrites = -1 }

// queued returns alice's messages in the store.
func (h *harness) queued() []QueuedMessage {
	h.t.Helper()
	qs, err := h.st.Messages(context.Background(), alice)
	if err != nil {
		h.t.Fatalf("Messages: %v", err)
	}
	return qs
}

// A message for IMIP that IMIP confirms within HoldWrites goes out before
// any write and is never written; one confirmed later is written once the
// hold ends and deleted at the confirmation.
func TestHeldMessageToIMIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "")
		s := h.login(aliceHW, "6340564")
		puts := h.st.putCount()
		h.chat("q1", aliceHW, cj("100"), "chat", "quick")
		synctest.Wait()
		h.idle(alice)
		if n := len(s.callsWith("MESG 100 quick")); n != 1 {
			t.Fatalf("MESG sent %d times, want 1", n)
		}
		if got := h.st.putCount() - puts; got != 0 {
			t.Errorf("a message confirmed within the hold was written %d times", got)
		}
		if st := h.g.Stats(); st.MessagesUnwritten != 1 || st.MessagesToIMIP != 1 {
			t.Errorf("stats: unwritten %d, to IMIP %d; want 1 and 1", st.MessagesUnwritten, st.MessagesToIMIP)
		}

		// IMIP says nothing: written once the hold ends.
		s.setReply(func(kind string, n wire.Number) (wire.Code, bool) { return 0, false })
		h.chat("q2", aliceHW, cj("100"), "chat", "slow")
		synctest.Wait()
		if len(s.callsWith("MESG 100 slow")) != 1 {
			t.Fatal("MESG not sent before its write")
		}
		if len(h.queued()) != 0 {
			t.Fatal("written before the hold ended")
		}
		time.Sleep(DefaultHoldWrites)
		synctest.Wait()
		if qs := h.queued(); len(qs) != 1 || qs[0].Body != "slow" {
			t.Fatalf("after the hold: queued %+v, want the message", qs)
		}
		// IMIP's answer comes late: deleted.
		s.mu.Lock()
		id := s.nextID
		s.mu.Unlock()
		s.enqueue(imipside.ReplyEvent{ID: id, Type: imipside.RequestMESG, Number: "100", Code: wire.CodeOK})
		synctest.Wait()
		h.idle(alice)
		if qs := h.queued(); len(qs) != 0 {
			t.Errorf("after the confirmation: queued %+v, want none", qs)
		}
	})
}

// A message from IMIP goes to the user before any write; the barrier's
// answer within HoldWrites confirms it to IMIP, and it is never written.
// A barrier answered only after the hold: the message is written and
// confirmed to IMIP then, and deleted at the barrier's answer.
func TestHeldMessageFromIMIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "")
		h.confirming()
		s := h.login(aliceHW, "6340564")
		puts := h.st.putCount()
		mark := h.x.mark()
		s.push(imipside.MessageEvent{BlockID: 70, MessageID: "m1", From: "100", To: "6340564", Text: "quick"})
		synctest.Wait()
		h.idle(alice)
		h.x.waitMessage(t, mark, "the message", func(m xmppside.Message) bool { return m.Body == "quick" })
		if len(s.callsWith("ACK 70")) != 1 {
			t.Errorf("confirmed to IMIP %d times, want once (at the barrier)", len(s.callsWith("ACK 70")))
		}
		if got := h.st.putCount() - puts; got != 0 {
			t.Errorf("a message delivered within the hold was written %d times", got)
		}

		releaseBarrier := h.holdBarriers()
		s.push(imipside.MessageEvent{BlockID: 71, MessageID: "m2", From: "100", To: "6340564", Text: "slow"})
		synctest.Wait()
		h.x.waitMessage(t, mark, "the second message", func(m xmppside.Message) bool { return m.Body == "slow" })
		if len(s.callsWith("ACK 71")) != 0 {
			t.Fatal("confirmed to IMIP before the barrier or the write")
		}
		time.Sleep(DefaultHoldWrites)
		synctest.Wait()
		if qs := h.queued(); len(qs) != 1 || qs[0].Body != "slow" {
			t.Fatalf("after the hold: queued %+v, want the message", qs)
		}
		if len(s.callsWith("ACK 71")) != 1 {
			t.Error("not confirmed to IMIP once written")
		}
		releaseBarrier()
		synctest.Wait()
		h.idle(alice)
		if qs := h.queued(); len(qs) != 0 {
			t.Errorf("after the barrier: queued %+v, want none", qs)
		}
		if got := h.x.messages(mark, func(m xmppside.Message) bool { return m.Body == "slow" }); len(got) != 1 {
			t.Errorf("sent %d times, want once", len(got))
		}
	})
}

// The barrier answers while the held write is being done: the message is
// confirmed to IMIP and deleted once the write ends, never left behind.
func TestHeldMessageDeliveredDuringWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "")
		h.confirming()
		s := h.login(aliceHW, "6340564")
		releaseBarrier := h.holdBarriers()
		releaseWrites := h.holdWrites()
		mark := h.x.mark()
		s.push(imipside.MessageEvent{BlockID: 80, MessageID: "m1", From: "100", To: "6340564", Text: "race"})
		time.Sleep(DefaultHoldWrites) // the write starts, and waits in the store
		synctest.Wait()
		h.st.mu.Lock()
		held := h.st.applyHeld
		h.st.mu.Unlock()
		if held != 1 {
			t.Fatalf("%d writes under way, want 1", held)
		}
		releaseBarrier() // delivered while the write runs
		synctest.Wait()
		if len(s.callsWith("ACK 80")) != 0 {
			t.Fatal("confirmed to IMIP before the write ended")
		}
		releaseWrites()
		synctest.Wait()
		h.idle(alice)
		if len(s.callsWith("ACK 80")) != 1 {
			t.Error("not confirmed to IMIP after the write")
		}
		if qs := h.queued(); len(qs) != 0 {
			t.Errorf("queued %+v, want none", qs)
		}
		if got := h.x.messages(mark, func(m xmppside.Message) bool { return m.Body == "race" }); len(got) != 1 {
			t.Errorf("sent %d times, want once", len(got))
		}
	})
}

// Without the hold, a message is written before it goes either way.
func TestWriteFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "", writeFirst)
		h.confirming()
		s := h.login(aliceHW, "6340564")
		releaseWrites := h.holdWrites()
		mark := h.x.mark()
		h.chat("q1", aliceHW, cj("100"), "chat", "up")
		s.push(imipside.MessageEvent{BlockID: 90, MessageID: "m1", From: "100", To: "6340564", Text: "down"})
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(s.callsWith("MESG 100 up")); n != 0 {
			t.Error("MESG sent before its write")
		}
		if got := h.x.messages(mark, func(m xmppside.Message) bool { return m.Body == "down" }); len(got) != 0 {
			t.Error("message from IMIP sent before its write")
		}
		releaseWrites()
		synctest.Wait()
		h.idle(alice)
		if len(s.callsWith("MESG 100 up")) != 1 || len(s.callsWith("ACK 90")) != 1 {
			t.Errorf("after the write: calls %v, want the MESG and the ACK", s.callList())
		}
		if h.g.Stats().MessagesUnwritten != 0 {
			t.Error("messages counted unwritten without the hold")
		}
	})
}

// Without mesg-ack the IMIP server never sends a message again, so the
// store is its only copy: a message from IMIP is written before it goes,
// hold or not.
func TestNoHoldWithoutMesgAck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "") // the fake sessions do not confirm messages
		s := h.login(aliceHW, "6340564")
		releaseWrites := h.holdWrites()
		mark := h.x.mark()
		s.push(imipside.MessageEvent{BlockID: 95, From: "100", To: "6340564", Text: "only copy"})
		time.Sleep(time.Second)
		synctest.Wait()
		if got := h.x.messages(mark, func(m xmppside.Message) bool { return m.Body == "only copy" }); len(got) != 0 {
			t.Error("sent before its write, with a server that would not send it again")
		}
		releaseWrites()
		synctest.Wait()
		h.idle(alice)
		h.x.waitMessage(t, mark, "the message", func(m xmppside.Message) bool { return m.Body == "only copy" })
	})
}

// confirming makes the sessions dialed from now on offer mesg-ack.
func (h *harness) confirming() {
	h.d.mu.Lock()
	h.d.confirm = true
	h.d.mu.Unlock()
}

// holdWrites makes every store write wait until release is called.
func (h *harness) holdWrites() (release func()) {
	hold := make(chan struct{})
	h.st.mu.Lock()
	h.st.applyHold = hold
	h.st.mu.Unlock()
	return func() {
		h.st.mu.Lock()
		h.st.applyHold = nil
		h.st.mu.Unlock()
		close(hold)
	}
}

// holdBarriers makes every barrier wait until release is called.
func (h *harness) holdBarriers() (release func()) {
	hold := make(chan struct{})
	h.x.mu.Lock()
	h.x.barrierHold = hold
	h.x.mu.Unlock()
	return func() {
		h.x.mu.Lock()
		h.x.barrierHold = nil
		h.x.mu.Unlock()
		close(hold)
	}
}
