package gateway

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"imip-transport/imipside"
	"imip-transport/xmppside"
)

// Was a defect: the settle of a shutdown is not tracked by g.runs: the user's run
// loop goes idle while the expedited write is in flight, and nothing else
// Stop waits for holds it (with a cluster the barriers end with g.ctx at
// Stop). Stop returns while the user is still logged in to IMIP, its
// message neither confirmed (ACK) nor the session logged out (DISC); the
// app then closes the component and the store writes, and the ACK and the
// DISC come (if at all) from a run loop nobody waits for.
func TestSettleReviewStopReturnsEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.confirming()
		s := h.login(aliceHW, "6340564")
		releaseBarriers := h.holdBarriers() // the answers go to the instance holding the slot
		defer releaseBarriers()
		h.pushUnconfirmed(s, 81, "stopping")
		releaseWrites := h.holdWrites() // a store slower than the run loops
		// The barriers, asked after barrierDelay, end with g.ctx.
		h.stopOnlyAfterDISC(s, releaseWrites)
	})
}

// The same without a cluster: the barrier is answered while the expedited
// write is under way (orphanWrites), and nothing Stop waits for is left.
func TestSettleReviewStopReturnsEarlyNoCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "")
		h.confirming()
		s := h.login(aliceHW, "6340564")
		releaseWrites := h.holdWrites()
		s.push(imipside.MessageEvent{BlockID: 84, MessageID: "m84", From: "100", To: "6340564", Text: "just before the stop"})
		synctest.Wait() // sent; its barrier goes after barrierDelay
		// The barrier is answered meanwhile.
		h.stopOnlyAfterDISC(s, releaseWrites)
	})
}

// Was a defect: a Stop that comes while a hand-over settles only swaps the
// settle's continuation (then = shutdownLogout); u.releasing stays set. With
// a MESG to IMIP unanswered, shutdownLogout drains, and the ClosedEvent of
// the drain then runs finishRelease (onIMIPEvent: "if u.releasing"), not
// finishShutdown: the user is never stopped, and the hand-over's barrier
// Submit goes to a committer that Close has closed meanwhile (Stop did not
// wait for the settle, see above): releaseStep is refused and polls again
// every releasePoll, for ever.
func TestSettleReviewStopDuringRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.confirming()
		s := h.login(aliceHW, "6340564")
		h.sendUnanswered(s, "to imip") // a MESG waits for IMIP: the logout drains
		releaseBarriers := h.holdBarriers()
		defer releaseBarriers()
		h.pushUnconfirmed(s, 82, "moving")
		releaseWrites := h.holdWrites()
		h.g.ReleaseUser(alice) // settles: the write of "moving" is held
		synctest.Wait()
		u := h.userValue(alice)
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := h.g.Stop(ctx); err != nil { // returns at once (see above)
			t.Fatal(err)
		}
		closed := make(chan error, 1)
		go func() { closed <- h.g.Close(ctx) }()
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		releaseWrites() // the store answers: the settle ends after Close closed the committer
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		u.mu.Lock()
		stopped := u.stopped
		u.mu.Unlock()
		if !stopped {
			calls := s.callList()
			// Let the loop end so that the bubble can: mark it stopped.
			u.mu.Lock()
			u.stopped = true
			u.mu.Unlock()
			t.Fatalf("10 s after Close the user is still not stopped (releasing %v, releaseWriting %v, released %v): its hand-over polls a closed committer; calls %q",
				u.releasing, u.releaseWriting, u.released, calls)
		}
	})
}

// Was a defect: flushIn sends nothing while the session is left (releasing,
// draining, settling). A message from IMIP whose store write fails is kept
// in memory only; onStoredIn says "Not durable: it still goes to the user,
// but is not confirmed to the IMIP server, which (with mesg-ack) sends it
// again later". Without mesg-ack the IMIP server never sends it again: the
// transport's send is its only delivery. During a hand-over's logout it is
// now neither sent nor stored, and releaseDone drops it with inq: lost.
// (Before the change flushIn sent it.)
func TestSettleReviewFailedWriteLostAtHandover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own)) // no mesg-ack
		s := h.login(aliceHW, "6340564")
		h.sendUnanswered(s, "to imip") // the logout waits for IMIP's answer (drains)
		s.mu.Lock()
		// IMIP pushes a message to the user just before the logout's end.
		s.burst = []imipside.Event{imipside.MessageEvent{BlockID: 83, MessageID: "m83", From: "100", To: "6340564", Text: "last words"}}
		s.mu.Unlock()
		h.st.setApplyErr(errors.New("disk full")) // its write fails
		mark := h.x.mark()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		h.st.setApplyErr(nil) // the store is back: the hand-over ends
		time.Sleep(2 * time.Second)
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("the user was never given up")
		}
		sent := h.x.messages(mark, func(m xmppside.Message) bool { return m.Body == "last words" })
		stored := slices.ContainsFunc(h.queued(), func(q QueuedMessage) bool { return q.Body == "last words" })
		if len(sent) == 0 && !stored {
			t.Fatalf("a message from IMIP (no mesg-ack: never pushed again) was neither sent to the user nor stored: lost (calls %q)", s.callList())
		}
	})
}

// stopOnlyAfterDISC stops the gateway while the store holds the user's
// writes, lets 100 ms pass (the barriers are asked and end, or answered),
// and fails if Stop returned without s having sent DISC; then it releases
// the writes and waits for Stop.
func (h *harness) stopOnlyAfterDISC(s *fakeSession, releaseWrites func()) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- h.g.Stop(ctx) }()
	time.Sleep(100 * time.Millisecond) // virtual time (synctest)
	synctest.Wait()
	select {
	case err := <-stopped:
		calls := s.callList()
		releaseWrites()
		if indexOf(calls, "DISC") < 0 {
			h.t.Fatalf("Stop returned (err %v) while the user was still settling, logged in to IMIP (no DISC): %q", err, calls)
		}
	default:
		releaseWrites()
		if err := <-stopped; err != nil {
			h.t.Fatal(err)
		}
	}
}
