package gateway

// Regression tests (second review): failing tests of the hand-over between instances.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// flakyRegStore fails the n-th Registration read from when it is armed.
type flakyRegStore struct {
	*memStore
	mu     sync.Mutex
	failAt int // 0: never; counts down
}

func (s *flakyRegStore) Registration(ctx context.Context, bare string) (Registration, error) {
	s.mu.Lock()
	fail := false
	if s.failAt > 0 {
		s.failAt--
		fail = s.failAt == 0
	}
	s.mu.Unlock()
	if fail {
		return Registration{}, errors.New("flaky: connection reset")
	}
	return s.memStore.Registration(ctx, bare)
}

// Was a defect: a value that owns its user but is not loaded (load's second
// Registration read, after acquire, failed: "the next event tries
// again") handles the release request by loading first: load calls
// acquire, and the node's Acquire waits while a release of that user is
// being carried out (asked) until HandoverTimeout, then fails;
// refuseUnowned drops evRelease. Release is never called: the node's
// asked flag stays set, so every later request for the user is ignored
// and every later Acquire here waits and fails: the user is served by no
// instance until this one restarts. (Modelled here by an Ownership that
// refuses Acquire while the release is asked, as cluster.Node does.)
func TestHandoverBReleaseOfUnloadedOwnedUserLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		var fs *flakyRegStore
		h := newHarness(t, "", withOwners(&own), func(c *Config) {
			fs = &flakyRegStore{memStore: c.Store.(*memStore)}
			c.Store = fs
		})
		h.register(alice, "6340564")
		h.g.ReleaseUser(alice) // given up once: the next event loads anew
		h.settle()
		own.mu.Lock()
		delete(own.atRelease, alice)
		own.mu.Unlock()
		fs.mu.Lock()
		fs.failAt = 2 // load: the read before acquire works, the one after fails
		fs.mu.Unlock()
		h.chat("m1", aliceHW, cj("100"), "chat", "hello")
		synctest.Wait()
		h.settle()
		if !own.Owns(alice) {
			t.Fatal("setup: the user is not owned here")
		}
		// Another instance asks: the node marks the request as being
		// carried out (its Acquire waits for it) and calls the hook.
		own.mu.Lock()
		own.refuse = true
		own.mu.Unlock()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		h.settle()
		time.Sleep(time.Minute)
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("a release request reached a value that owned the user but was not loaded: it was dropped and the user never given up")
		}
	})
}

// Was a defect: while a hand-over drains the IMIP session (onRelease: a MESG
// waits for its answer, the session logs out), the user's timers still
// run (finishRelease stops them only later). When the registration's
// grace period ends meanwhile (the session that checked a new
// registration is kept RegisterGrace, 30 s by default, waiting for the
// user's presence), linkGraceDue logs the draining session out through
// actLogout: dropLive lets go of it, its ClosedEvent is dropped
// (c != u.conn), and finishRelease never runs: the user is never given up
// and the node's asked flag for it stays set. (The same root as the
// unavailable presence fixed in e6bcbba, through a timer.) Here the grace
// deadline is moved to the drain's moment, as a slow IMIP answer to the
// DISC would make it.
func TestHandoverBGraceEndDuringHandoverNeverReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own), func(c *Config) { c.RegisterGrace = 30 * time.Second })
		n := h.d.sessionCount()
		h.register(alice, "6340564") // the checking login stays, in grace
		s := h.d.waitSession(t, n)
		h.sendUnanswered(s, "sent in grace")
		u := h.userValue(alice)
		u.mu.Lock()
		if _, ok := u.timers.get(timerGrace); !ok {
			u.mu.Unlock()
			t.Fatal("setup: no grace deadline")
		}
		u.timers.set(timerGrace, time.Now()) // the grace ends during the drain
		u.enqueueLocked(evRelease{})
		u.timerQueued = true
		u.enqueueLocked(evTimer{})
		u.mu.Unlock()
		synctest.Wait()
		h.settle()
		time.Sleep(time.Minute)
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("the registration's grace ended during the hand-over's logout: the user was never given up")
		}
	})
}

// Was a defect: the hand-over logs the user's IMIP session out (finishRelease:
// linkStop, actLogout, dropLive) but, unlike a shutdown (offlineAll),
// never tells the user that the contacts it showed online are gone:
// dropLive only forgets them. The next owner knows nothing of what this
// instance sent, and its login sends only the contacts online then: a
// contact that went offline in between, or one the next owner never
// reaches (its login fails), stays online in the user's client until it
// comes and goes again.
func TestHandoverBHandoverLeavesContactsOnline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		s := h.login(aliceHW, "6340564")
		s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
		h.settle()
		h.x.waitPresence(t, 0, "the contact online", presenceFromTo(cj("100"), aliceJID, ""))
		mark := h.x.mark()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("setup: the user was not given up")
		}
		if ps := h.x.presences(mark, func(p xmppside.Presence) bool {
			return p.From.Bare().Equal(cj("100")) && p.Type == "unavailable"
		}); len(ps) == 0 {
			t.Fatal("the hand-over ended the IMIP session without telling the user that the contact it showed online is gone")
		}
	})
}

// Was a defect: the registered set is
// read again only when a slot's connection opens. A registration whose
// checking login was in flight on instance B when B gave the user's slot
// to A (the login takes up to LoginTimeout) is stored after A's refresh:
// A never learns of it, answers the user's messages "register first"
// (an auth error, for a registered user) and ignores its presence, while
// B owns the user (it claimed it after PutRegistration) and its checking
// session ends with the grace period, since the user's presence goes to
// A. Nothing heals it until A's next slot change or restart.
func TestHandoverBRegistrationCompletedAfterRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		var ownA, ownB *fakeOwners
		a := newHarness(t, "", sharedStore(st), withOwners(&ownA))
		b := newHarness(t, "", sharedStore(st), withOwners(&ownB))
		ownB.bus = []*Gateway{a.g} // B's announcements reach A (NOTIFY)
		// The user's slot opens on A: A reads the registered set.
		if err := a.g.RefreshRegistered(context.Background()); err != nil {
			t.Fatal(err)
		}
		// B's registration, started while B held the slot, completes now.
		b.register(alice, "6340564")
		mark := a.x.mark()
		a.chat("m1", aliceHW, cj("100"), "chat", "hello") // routed to A now
		synctest.Wait()
		a.settle()
		for _, m := range a.x.messages(mark, func(m xmppside.Message) bool { return m.ID == "m1" && m.Type == "error" }) {
			if m.Error != nil && m.Error.Condition == stanza.RegistrationRequired {
				t.Fatal("A told a registered user to register first: a registration completed on B after A's refresh is never seen")
			}
		}
	})
}

// simCluster is a small model of cluster.Node's ownership for two
// gateways: Acquire takes a free user, or asks its owner (ReleaseUser)
// once and waits until it is released or ctx ends.
type simCluster struct {
	mu    sync.Mutex
	owner map[string]*simNode
}

type simNode struct {
	c *simCluster
	g *Gateway // set once made
}

func (n *simNode) Acquire(ctx context.Context, bare string) (bool, error) {
	asked := false
	for {
		n.c.mu.Lock()
		o := n.c.owner[bare]
		if o == nil || o == n {
			n.c.owner[bare] = n
			n.c.mu.Unlock()
			return o == nil, nil
		}
		n.c.mu.Unlock()
		if !asked {
			asked = true
			o.g.ReleaseUser(bare)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("owned elsewhere: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (n *simNode) Registered(ctx context.Context, bare string) {}

func (n *simNode) Forget(bare string) {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.c.owner[bare] == n {
		delete(n.c.owner, bare)
	}
}

func (n *simNode) Release(ctx context.Context, bare string) error {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	if n.c.owner[bare] == n {
		delete(n.c.owner, bare)
	}
	return nil
}

func (n *simNode) Owns(bare string) bool {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	return n.c.owner[bare] == n
}

func (n *simNode) QueuedFree(ctx context.Context) ([]string, error) { return nil, nil }

// Was a defect: a hand-over that outlasts the asker's HandoverTimeout strands
// the user. The owner waits for a login in flight (up to LoginTimeout,
// 20 s by default, beside MinHold's 2 s and the logout's 5 s) while the
// asker's Acquire gives up after HandoverTimeout (10 s): the asker
// bounces the stanza and forgets the user (not loaded; only a next event
// asks again). The owner then ends its login and releases the user: nobody
// owns it, no IMIP session runs, nobody probes it. A user who stays online
// in XMPP without sending anything is offline on IMIP for good (its IMIP
// contacts' messages wait on the IMIP server).
func TestHandoverBHandoverOutlastingAskerStrandsUser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		c := &simCluster{owner: make(map[string]*simNode)}
		na, nb := &simNode{c: c}, &simNode{c: c}
		opt := func(n *simNode) func(*Config) {
			return func(cfg *Config) { cfg.Owners = n; cfg.HandoverTimeout = time.Second }
		}
		a := newHarness(t, "", sharedStore(st), opt(na))
		b := newHarness(t, "", sharedStore(st), opt(nb))
		na.g, nb.g = a.g, b.g
		s := a.login(aliceHW, "6340564") // A owns and serves the user
		gate := make(chan struct{})
		a.d.mu.Lock()
		a.d.gate = gate // the IMIP server is slow to answer logins
		a.d.mu.Unlock()
		n := a.d.attemptCount()
		s.drop(errors.New("connection reset")) // A logs in again: in flight
		a.d.waitAttempts(t, n+1)
		// The user's slot moved to B (B read the registered set as it
		// opened): the user's next stanza reaches B, which asks.
		if err := b.g.RefreshRegistered(context.Background()); err != nil {
			t.Fatal(err)
		}
		b.chat("m1", aliceHW, cj("100"), "chat", "hello")
		time.Sleep(2 * time.Second) // B's HandoverTimeout passes
		synctest.Wait()
		a.d.mu.Lock()
		a.d.gate = nil
		a.d.mu.Unlock()
		mark := a.x.mark()
		close(gate) // A's login comes back; A ends it and gives the user up
		synctest.Wait()
		a.settle()
		// A probes the user once it gave it up; the server routes the
		// answer to the instance that holds the user's slot: B, which
		// takes the user then.
		_ = mark
		b.available(aliceHW, "", "")
		synctest.Wait()
		b.settle()
		time.Sleep(time.Minute)
		synctest.Wait()
		a.settle()
		b.settle()
		a.d.mu.Lock()
		liveA := a.d.live["6340564"]
		a.d.mu.Unlock()
		b.d.mu.Lock()
		liveB := b.d.live["6340564"]
		b.d.mu.Unlock()
		c.mu.Lock()
		t.Logf("liveA %d liveB %d owner A %v B %v; attempts A %v B %v", liveA, liveB, c.owner[alice] == na, c.owner[alice] == nb, a.d.attempts, b.d.attempts)
		c.mu.Unlock()
		if liveA+liveB == 0 {
			c.mu.Lock()
			o := c.owner[alice]
			c.mu.Unlock()
			t.Fatalf("a minute after the hand-over the online user has no IMIP session on any instance (owner %v)", o)
		}
	})
}

// slowReleaseOwners is fakeOwners whose Release waits for its context (a
// database that does not answer).
type slowReleaseOwners struct{ *fakeOwners }

func (s slowReleaseOwners) Release(ctx context.Context, bare string) error {
	<-ctx.Done()
	return ctx.Err()
}

// Was a defect: the goroutines that release users (onReleaseBarrier, and
// ReleaseUser for a user with no value) run on context.Background with
// OpTimeout (15 s by default), and Stop waits for them (g.spawn): with a
// database that hangs, a stop that begins just after a hand-over waits
// OpTimeout, past the app's grace (ShutdownGrace 5 s). The gateway's other
// waits on another instance end with g.ctx at Stop; these do not, though
// Leave frees every user of the instance anyway.
func TestHandoverBStopWaitsForRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own), func(c *Config) {
			c.Owners = slowReleaseOwners{own}
			c.OpTimeout = 15 * time.Second
		})
		h.g.ReleaseUser(alice) // a user with no value here: released at once
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		err := h.g.Stop(ctx)
		time.Sleep(15 * time.Second) // the release gives up: nothing is left running
		synctest.Wait()
		if err != nil {
			t.Fatalf("Stop within the grace: %v (it waits for a release blocked on the database)", err)
		}
	})
}
