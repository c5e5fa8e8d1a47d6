package gateway

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
)

// holdDiscDialer is the fake dialer whose later sessions (once holdNext
// set a channel) answer DISC only when that channel is closed.
type holdDiscDialer struct {
	*fakeDialer
	mu   sync.Mutex
	hold chan struct{}
}

func (d *holdDiscDialer) Dial(ctx context.Context, n wire.Number, pw string, h imipside.Handler) (IMIPSession, error) {
	s, err := d.fakeDialer.Dial(ctx, n, pw, h)
	if err == nil {
		d.mu.Lock()
		hold := d.hold
		d.mu.Unlock()
		fs := s.(*fakeSession)
		fs.mu.Lock()
		fs.discHold = hold
		fs.mu.Unlock()
	}
	return s, err
}

func (d *holdDiscDialer) holdNext(c chan struct{}) {
	d.mu.Lock()
	d.hold = c
	d.mu.Unlock()
}

func withHoldDisc(p **holdDiscDialer) func(*Config) {
	return func(c *Config) {
		*p = &holdDiscDialer{fakeDialer: c.Dialer.(*fakeDialer)}
		c.Dialer = *p
	}
}

func (s *fakeSession) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Was a defect: a Stop that comes while a hand-over's logout waits for the IMIP server's
// answer to DISC (drain): onShutdown -> shutdownLogout -> drain() reports
// false (draining is set already) -> finishShutdown at once: endDrain, then
// linkStop logs the draining session out again (dropLive lets it go, so its
// ClosedEvent is dropped). Stop returns while the session is still logged
// in, and the instance's leave frees the user: the next owner's login meets
// it (the case the change is about), and the MESG's answer never comes in.
func TestReview2StopDuringHandoverDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		s := h.login(aliceHW, "6340564")
		h.sendUnanswered(s, "to imip")
		hold := make(chan struct{})
		s.mu.Lock()
		s.discHold = hold
		s.mu.Unlock()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		if len(s.callsWith("DISC")) != 1 {
			t.Fatalf("setup: not draining: %q", s.callList())
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- h.g.Stop(ctx) }()
		synctest.Wait()
		select {
		case err := <-stopped:
			close(hold)
			t.Fatalf("Stop returned (err %v) while the hand-over's IMIP session was still logging out (closed %v): %q",
				err, s.isClosed(), s.callList())
		default:
		}
		close(hold)
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
	})
}

// Was a defect: a login in flight when the hand-over starts: the link stops (abandon),
// the hand-over waits for the job, and when the login comes back its
// session is ended with endConn (DISC) and not kept until it closed: the
// user is given up while that session is still logged in.
func TestReview2HandoverLoginInFlightNotDrained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		var hd *holdDiscDialer
		h := newHarness(t, "", withOwners(&own), withHoldDisc(&hd))
		h.register(alice, "6340564")
		n, i, open := h.gateNextLogin(hd)
		h.available(aliceHW, "", "")
		h.d.waitAttempts(t, n+1) // the login is in flight
		h.g.ReleaseUser(alice)
		synctest.Wait()
		open() // the login succeeds
		s := h.d.waitSession(t, i)
		time.Sleep(time.Second)
		synctest.Wait()
		if _, ok := own.released(alice); ok && !s.isClosed() {
			t.Fatalf("the user was given up while the session of the login that was in flight was still logging out: %q", s.callList())
		}
	})
}

// Was a defect: the same with a registration's checking login in flight.
func TestReview2HandoverRegistrationLoginNotDrained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		var hd *holdDiscDialer
		h := newHarness(t, "", withOwners(&own), withHoldDisc(&hd))
		h.register(alice, "6340564")
		n, i, open := h.gateNextLogin(hd)
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			done <- h.g.Register(ctx, aliceJID, "6340564", "pw2")
		}()
		h.d.waitAttempts(t, n+1) // the checking login is in flight
		h.g.ReleaseUser(alice)
		synctest.Wait()
		open()
		s := h.d.waitSession(t, i)
		<-done
		time.Sleep(time.Second)
		synctest.Wait()
		if _, ok := own.released(alice); ok && !s.isClosed() {
			t.Fatalf("the user was given up while the registration's checking session was still logging out: %q", s.callList())
		}
	})
}

// Was a defect: a component link that comes up just as Stop starts: HandleConnected
// checked g.closing before Stop set it, and posts evLinkUp (postAlways)
// after the evShutdown. onLinkUp arms timerConfirm after onShutdown stopped
// the timers; when it fires during the logout's wait (drain),
// dropUnconfirmed -> linkWant{false} -> actLogout -> dropLive lets the
// draining session go: its ClosedEvent is dropped by the handler, the
// drain's count in g.runs is never done, and Stop waits until its context
// ends. (ProbeTimeout below the drain's length: 1 s here; the default 10 s
// is above settleBound + the 5 s logout bound.)
func TestReview2LinkUpDuringShutdownDrainLeaks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, "", func(c *Config) { c.ProbeTimeout = time.Second })
		s := h.login(aliceHW, "6340564")
		hold := make(chan struct{})
		s.mu.Lock()
		s.discHold = hold // the server answers DISC after 3 s (below the 5 s logout bound)
		s.mu.Unlock()
		u := h.userValue(alice)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped := make(chan error, 1)
		go func() { stopped <- h.g.Stop(ctx) }()
		synctest.Wait()
		// HandleConnected's post, after Stop's postShutdown.
		u.postAlways(evLinkUp{link: h.g.link.Add(1)})
		time.AfterFunc(3*time.Second, func() { close(hold) })
		if err := <-stopped; err != nil {
			u.mu.Lock()
			u.stopped = true // let the bubble end
			u.mu.Unlock()
			t.Fatalf("Stop: %v (draining %v, calls %q)", err, u.draining != nil, s.callList())
		}
	})
}

// gateNextLogin holds the next login at the dialer until open is called,
// and the answer to that session's DISC until the test ends; it returns
// the dialer's attempt and session counts before it.
func (h *harness) gateNextLogin(hd *holdDiscDialer) (attempts, sessions int, open func()) {
	hold := make(chan struct{})
	h.t.Cleanup(func() { close(hold) })
	hd.holdNext(hold)
	gate := make(chan struct{})
	h.d.mu.Lock()
	h.d.gate = gate
	h.d.mu.Unlock()
	return h.d.attemptCount(), h.d.sessionCount(), func() {
		h.d.mu.Lock()
		h.d.gate = nil
		h.d.mu.Unlock()
		close(gate)
	}
}
