package gateway

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// indexOf returns the index of the first call with prefix in calls, -1 if
// none.
func indexOf(calls []string, prefix string) int {
	return slices.IndexFunc(calls, func(c string) bool { return len(c) >= len(prefix) && c[:len(prefix)] == prefix })
}

// pushUnconfirmed has IMIP push a message that goes to the user but that
// neither the barrier (held) nor a write (held by HoldWrites) confirms.
func (h *harness) pushUnconfirmed(s *fakeSession, block uint64, text string) {
	h.t.Helper()
	mark := h.x.mark()
	s.push(imipside.MessageEvent{BlockID: block, MessageID: text, From: "100", To: "6340564", Text: text})
	synctest.Wait()
	h.x.waitMessage(h.t, mark, "the message", func(m xmppside.Message) bool { return m.Body == text })
	if len(s.callsWith("ACK")) != 0 {
		h.t.Fatalf("setup: confirmed to IMIP already: %v", s.callList())
	}
}

// A hand-over writes the messages from IMIP that the live session has not
// confirmed, confirms them to IMIP, and only then logs out: the next owner
// sends them from the store, and IMIP does not push them again. Before,
// the logout came first: the store and IMIP both kept each such message,
// and the user got it twice more. One that comes meanwhile is written and
// confirmed too, but not sent from here: the next owner sends it.
func TestSettleBeforeHandover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.confirming()
		s := h.login(aliceHW, "6340564")
		defer h.holdBarriers()() // the answers go to the instance that asks
		h.pushUnconfirmed(s, 71, "moving")
		releaseWrites := h.holdWrites()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		mark := h.x.mark()
		s.push(imipside.MessageEvent{BlockID: 74, MessageID: "m74", From: "100", To: "6340564", Text: "meanwhile"})
		synctest.Wait()
		releaseWrites()
		synctest.Wait()
		h.settle()
		if got := h.x.messages(mark, func(m xmppside.Message) bool { return m.Body == "meanwhile" }); len(got) != 0 {
			t.Errorf("a message that came during the hand-over was sent from here: the next owner sends it again")
		}
		calls := s.callList()
		disc := indexOf(calls, "DISC")
		for _, ack := range []string{"ACK 71", "ACK 74"} {
			if i := indexOf(calls, ack); i < 0 || disc < 0 || i > disc {
				t.Fatalf("want %s before the DISC: %v", ack, calls)
			}
		}
		qs, ok := own.released(alice)
		if !ok {
			t.Fatal("the user was never given up")
		}
		var bodies []string
		for _, q := range qs {
			if q.Dir == ToXMPP {
				bodies = append(bodies, q.Body)
			}
		}
		if !slices.Equal(bodies, []string{"moving", "meanwhile"}) {
			t.Fatalf("left for the next owner: %v; want both messages, in order", bodies)
		}
	})
}

// The same at a shutdown: after the restart the message comes from the
// store only.
func TestSettleBeforeShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "")
		h.confirming()
		s := h.login(aliceHW, "6340564")
		release := h.holdBarriers()
		h.pushUnconfirmed(s, 72, "stopping")
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- h.g.Stop(ctx) }()
		synctest.Wait()
		release()
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		calls := s.callList()
		ack, disc := indexOf(calls, "ACK 72"), indexOf(calls, "DISC")
		if ack < 0 || disc < 0 || ack > disc {
			t.Fatalf("want the ACK before the DISC: %v", calls)
		}
		synctest.Wait()
		if qs := h.queued(); len(qs) != 1 || qs[0].Body != "stopping" {
			t.Fatalf("stored for after the restart: %+v; want the message", qs)
		}
	})
}

// A store that does not write in time does not hold the logout up beyond
// settleBound: the message is not confirmed, and IMIP pushes it again. A
// contact's STAT that comes meanwhile is not shown: the user was told its
// contacts went offline.
func TestSettleBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.confirming()
		s := h.login(aliceHW, "6340564")
		defer h.holdBarriers()()
		h.pushUnconfirmed(s, 73, "slow store")
		releaseWrites := h.holdWrites()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		if len(s.callsWith("DISC")) != 0 {
			t.Fatalf("logged out before the write: %v", s.callList())
		}
		mark := h.x.mark()
		s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
		synctest.Wait()
		if ps := h.x.presences(mark, presenceFromTo(cj("100"), aliceJID, "")); len(ps) != 0 {
			t.Errorf("a contact shown online during the hand-over: %v", ps)
		}
		time.Sleep(settleBound)
		synctest.Wait()
		if len(s.callsWith("DISC")) != 1 || len(s.callsWith("ACK 73")) != 0 {
			t.Fatalf("at the bound: want the DISC and no ACK: %v", s.callList())
		}
		releaseWrites()
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("the user was never given up")
		}
	})
}

// A hand-over gives the user up only once its IMIP session ended (the
// server answered the DISC, or the session's logout bound passed): until
// then the server may still count the number logged in here, and the next
// owner's login would make it end one of the two sessions. The same holds
// at a shutdown: Stop returns only then, so that the instance's leave never
// frees a user whose session is still up.
func TestLogoutAnsweredBeforeRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		s := h.login(aliceHW, "6340564")
		hold := make(chan struct{})
		s.mu.Lock()
		s.discHold = hold
		s.mu.Unlock()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		if len(s.callsWith("DISC")) != 1 {
			t.Fatalf("not logged out: %v", s.callList())
		}
		if _, ok := own.released(alice); ok {
			t.Fatal("the user was given up before its IMIP session ended")
		}
		close(hold)
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("the user was never given up")
		}

		bob := "bob@localhost"
		s2 := h.login(bob+"/hw", "7001001")
		hold2 := make(chan struct{})
		s2.mu.Lock()
		s2.discHold = hold2
		s2.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- h.g.Stop(ctx) }()
		synctest.Wait()
		select {
		case err := <-stopped:
			t.Fatalf("Stop returned (%v) before the IMIP session ended", err)
		default:
		}
		close(hold2)
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
	})
}
