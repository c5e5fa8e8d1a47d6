package gateway

// Regression tests of the hand-over between instances (found by a review) of the cluster support
// (gateway/owners.go and its hooks). Each test states the defect it shows.

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// sharedStore makes the harness use st (two instances on one database).
func sharedStore(st *memStore) func(*Config) {
	return func(c *Config) { c.Store = st }
}

// Was a defect: Gateway.registered is loaded once, in New, and only changed by
// the instance's own registrations. In a cluster a user who registered on
// instance A after instance B started is unknown to B: when the user's
// slot moves to B (B joined and was given it, A stopped or died), B
// answers the user's messages "register first" and ignores its presence,
// although the user is registered in the shared store.
func TestHandoverRegisteredOnAnotherInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		var ownA, ownB *fakeOwners
		a := newHarness(t, "", sharedStore(st), withOwners(&ownA))
		b := newHarness(t, "", sharedStore(st), withOwners(&ownB))
		a.register(alice, "6340564") // on A, after B started
		if _, ok := st.reg(alice); !ok {
			t.Fatal("registration not stored")
		}
		// The user's slot is now B's: before its connection opens, B reads
		// who registered meanwhile (as the app does for every slot).
		if err := b.g.RefreshRegistered(context.Background()); err != nil {
			t.Fatal(err)
		}
		mark := b.x.mark()
		b.chat("m1", aliceHW, cj("100"), "chat", "hello")
		synctest.Wait()
		b.settle()
		for _, m := range b.x.messages(mark, func(m xmppside.Message) bool { return m.ID == "m1" && m.Type == "error" }) {
			if m.Error != nil && m.Error.Condition == stanza.RegistrationRequired {
				t.Fatalf("instance B bounced a registered user's message with %q: its registered set does not see A.s registrations", m.Error.Condition)
			}
		}
	})
}

// Was a defect: onRelease/finishRelease do not wait for a login in flight (the
// link machine abandons it, but the dial goroutine goes on). The user is
// released at once; the new owner logs in; then the old instance's login
// completes, and the IMIP server, which keeps only the newest login of a
// number, ends the NEW owner's session. For a moment two instances held a
// session of the user, and the wrong one survives (the old instance then
// logs its own out: the user is offline until the new owner's retry).
func TestHandoverReleaseDuringLoginKicksNewOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.register(alice, "6340564")
		gate := make(chan struct{})
		h.d.mu.Lock()
		h.d.gate = gate // the next login waits for the IMIP server
		h.d.mu.Unlock()
		n := h.d.attemptCount()
		h.available(aliceHW, "", "")
		h.d.waitAttempts(t, n+1) // the login is in flight
		h.g.ReleaseUser(alice)   // another instance asks for the user
		waitUntil(t, "the user released", func() bool { _, ok := own.released(alice); return ok })

		// The new owner (another instance) logs the number in.
		h.d.mu.Lock()
		h.d.gate = nil
		h.d.mu.Unlock()
		newOwner, err := h.d.Dial(context.Background(), "6340564", "pw", imipside.HandlerFunc(func(imipside.Event) {}))
		if err != nil {
			t.Fatal(err)
		}
		// The old instance's login reaches the server only now.
		close(gate)
		synctest.Wait()
		h.settle()
		if err := newOwner.(*fakeSession).alive(); err != nil {
			t.Fatalf("the new owner's IMIP session was ended by the login the old instance had in flight when it released the user (calls %q)",
				newOwner.(*fakeSession).callList())
		}
	})
}

// DEFECT (same root as above, through a registration): a release while a
// registration's checking login is in flight (reqBusy) answers only the
// queued requests; the login goes on and, reaching the IMIP server after
// the new owner's, ends the new owner's session.
func TestHandoverReleaseDuringRegistrationKicksNewOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.register(alice, "6340564")
		gate := make(chan struct{})
		h.d.mu.Lock()
		h.d.gate = gate
		h.d.mu.Unlock()
		n := h.d.attemptCount()
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done <- h.g.Register(ctx, aliceJID, "6340564", "pw2")
		}()
		h.d.waitAttempts(t, n+1) // the checking login is in flight
		h.g.ReleaseUser(alice)
		waitUntil(t, "the user released", func() bool { _, ok := own.released(alice); return ok })
		h.d.mu.Lock()
		h.d.gate = nil
		h.d.mu.Unlock()
		newOwner, err := h.d.Dial(context.Background(), "6340564", "pw", imipside.HandlerFunc(func(imipside.Event) {}))
		if err != nil {
			t.Fatal(err)
		}
		close(gate)
		<-done
		synctest.Wait()
		if err := newOwner.(*fakeSession).alive(); err != nil {
			t.Fatalf("the new owner's IMIP session was ended by the registration login the old instance had in flight when it released the user")
		}
	})
}

// Was a defect: a message for IMIP whose held write was already taken (the hold
// ended, the commit is slow) when IMIP confirms it during the hand-over's
// logout is deleted only by onStoredOut, on the user's value; but that
// value was given up meanwhile (dropUser: the result is dropped). The
// store keeps a message IMIP confirmed, and the new owner, which reads
// what the old one left, sends it again: a duplicate on every hand-over
// under a slow store.
func TestHandoverConfirmedMessageLeftForNewOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		s := h.login(aliceHW, "6340564")
		h.sendUnanswered(s, "once only") // IMIP answers later
		s.mu.Lock()
		id := s.nextID
		// IMIP's ACK comes just before the logout's end.
		s.burst = []imipside.Event{imipside.ReplyEvent{ID: id, Type: imipside.RequestMESG, Number: "100", Code: wire.CodeOK}}
		s.mu.Unlock()
		releaseWrites := h.holdWrites() // a slow commit
		time.Sleep(2 * DefaultHoldWrites)
		synctest.Wait() // the held write is taken, and waits in the store
		h.g.ReleaseUser(alice)
		synctest.Wait()
		releaseWrites()
		synctest.Wait()
		h.settle()
		qs, ok := own.released(alice)
		if !ok {
			t.Fatal("the user was never given up")
		}
		for _, q := range qs {
			if q.Body == "once only" {
				t.Fatalf("the store still held a message IMIP had confirmed when the user was given up: the new owner sends it again")
			}
		}
	})
}

// Was a defect: onRegisterDialed ignores acquire's result. When the claim fails
// (the database is unreachable, or another instance registered and holds
// the JID meanwhile and keeps it past HandoverTimeout) the registration
// still completes here and the user value stays loaded, so its presence
// logs it in to IMIP on an instance that does not own it: nothing stops
// the owner (or any instance, the row being free) from running a session
// of the same user at the same time.
func TestHandoverRegistrationWithoutOwnership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		own.mu.Lock()
		own.refuse = true // the claim fails
		own.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		err := h.g.Register(ctx, aliceJID, "6340564", "pw")
		h.idle(alice)
		sessions := h.d.sessionCount()
		h.available(aliceHW, "", "")
		synctest.Wait()
		h.idle(alice)
		if h.d.sessionCount() > sessions {
			t.Fatalf("registration answered %v although the claim failed, and the user was logged in to IMIP by an instance that does not own it", err)
		}
	})
}

// Was a defect: when the claim fails on an evAvailability, handle returns at
// once (refuseUnowned does nothing for it) without taking the pending
// presences: availQueued stays true, so no later presence of the user
// ever queues an evAvailability on this value again. Once the other
// instance gives the user up, the user's presences are still never
// handled here: it is not logged in to IMIP until the value is dropped.
func TestHandoverPresenceStuckAfterFailedClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.register(alice, "6340564")
		h.g.ReleaseUser(alice) // given up: the next event loads anew
		h.settle()
		own.mu.Lock()
		own.refuse = true // another instance keeps the user for now
		own.mu.Unlock()
		h.available(aliceHW, "", "")
		synctest.Wait()
		h.settle()
		own.mu.Lock()
		own.refuse = false // it gave the user up
		own.mu.Unlock()
		sessions := h.d.sessionCount()
		h.available(aliceHW, "away", "back")
		synctest.Wait()
		h.settle()
		time.Sleep(time.Minute)
		synctest.Wait()
		if h.d.sessionCount() == sessions {
			t.Fatal("the user's presence after the owner gave it up was never handled: no IMIP login")
		}
	})
}

// Was a defect: a message that reaches an instance while it stops is kept for
// after the restart (holdForRestart) whatever instance owns the user; the
// store then holds a message for IMIP of a user that a live instance has
// loaded. That instance reads the user's queue only when it loads the
// user, and QueuedFree lists only users nobody owns: the message waits
// until the user's next hand-over, indefinitely.
func TestHandoverHeldForRestartWhileAnotherOwns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		var ownA, ownB *fakeOwners
		b := newHarness(t, "", sharedStore(st), withOwners(&ownB))
		s := b.login(aliceHW, "6340564") // B owns and serves the user
		a := newHarness(t, "", sharedStore(st), withOwners(&ownA))
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		if err := a.g.Stop(ctx); err != nil { // A stops
			t.Fatal(err)
		}
		mark := a.x.mark()
		a.chat("m1", aliceHW, cj("100"), "chat", "sent while A stopped") // still routed to A
		synctest.Wait()
		waitUntil(t, "A's writes", a.g.commit.idle)
		// A does not own the user: B would not read the message from the
		// store before the user's next hand-over, so A tells the sender.
		if qs, _ := st.Messages(ctx, alice); len(qs) != 0 {
			t.Fatalf("store: %+v; want nothing kept for a user another instance owns", qs)
		}
		b2 := a.x.waitMessage(t, mark, "the bounce", func(m xmppside.Message) bool { return m.ID == "m1" && m.Type == "error" })
		if b2.Error == nil || b2.Error.Type != stanza.Wait {
			t.Fatalf("bounce %+v; want a wait error", b2.Error)
		}
		_ = s
	})
}

// Was a defect: finishRelease gives the user up once its barrier's done runs,
// whatever the error: when the commit of the expedited writes fails (the
// database hiccups past the committer's one retry), the user is released
// although what it held was not written, and the held messages' results
// go to a value that was dropped. The new owner reads a store without
// them: messages accepted from the user are lost.
func TestHandoverReleaseAfterFailedWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		s := h.login(aliceHW, "6340564")
		h.sendUnanswered(s, "must survive")
		mark := h.x.mark()
		h.st.setApplyErr(errors.New("database unreachable"))
		h.g.ReleaseUser(alice)
		synctest.Wait()
		h.settle()
		h.st.setApplyErr(nil)
		time.Sleep(2 * time.Second) // the hand-over tries the store again each second
		synctest.Wait()
		h.settle()
		qs, ok := own.released(alice)
		bounced := len(h.x.messages(mark, func(m xmppside.Message) bool { return m.ID == "m1" && m.Type == "error" })) > 0
		if ok && len(qs) == 0 && !bounced {
			t.Fatal("the user was given up without the message it held written, and its sender was not told")
		}
	})
}

// Was a defect: while a hand-over drains the IMIP session (onRelease: MESGs
// wait for their answers), the value still takes the user's XMPP events
// (unlike a shutdown, which sets closing). An unavailable presence of the
// last resource then makes the link machine log the draining session out
// (actLogout: dropLive lets go of it), so its ClosedEvent is dropped and
// finishRelease never runs: the user is never given up, and the node's
// asked flag for it stays set, so no later request is ever carried out.
func TestHandoverOfflineDuringHandoverNeverReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		s := h.login(aliceHW, "6340564")
		h.sendUnanswered(s, "in flight")
		u := h.userValue(alice)
		// The release request, then the user's unavailable presence, both
		// in the inbox before the logout's end comes back.
		u.mu.Lock()
		u.enqueueLocked(evRelease{})
		if u.avail == nil {
			u.avail = make(map[string]pendingAvail)
		}
		u.availSeq++
		u.avail["laptop"] = pendingAvail{p: xmppside.Presence{From: jid.MustParse(aliceHW), To: gw, Type: "unavailable"},
			toGateway: true, seq: u.availSeq, link: h.g.link.Load()}
		u.availQueued = true
		u.enqueueLocked(evAvailability{})
		u.mu.Unlock()
		synctest.Wait()
		h.settle()
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, ok := own.released(alice); !ok {
			t.Fatal("the user went offline during the hand-over's logout and was never given up")
		}
	})
}

// Was a defect: finishRelease ignores Submit's result: when the committer's
// queue is full (a slow database under load), the barrier is refused and
// its done never runs, so Ownership.Release is never called. The value is
// dropped, the user stays owned by this instance for good (and the node's
// asked flag stays set: no later request is carried out), long after the
// overload ended.
func TestHandoverReleaseWithFullCommitQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.register(alice, "6340564")
		releaseWrites := h.holdWrites()
		h.g.commit.Submit([]Op{OpSetOnline{JID: alice, Online: false}}, nil) // held in the store
		synctest.Wait()
		for h.g.commit.Submit(nil, nil) { // the queue fills
		}
		h.g.ReleaseUser(alice)
		synctest.Wait()
		releaseWrites() // the overload ends
		synctest.Wait()
		h.settle()
		time.Sleep(time.Second) // the hand-over asks the group commit again shortly
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("the user was dropped but never given up: the barrier was refused by a full commit queue")
		}
	})
}
