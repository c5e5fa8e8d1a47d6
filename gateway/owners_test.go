package gateway

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mellium.im/xmpp/stanza"

	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// fakeOwners is an Ownership that records its calls; refuse makes Acquire
// fail (another instance keeps the user).
type fakeOwners struct {
	st *memStore

	mu       sync.Mutex
	owned    map[string]bool
	acquires []string
	refuse   bool
	// atRelease is what the store held for each user when it was given
	// up: the hand-over must have written everything before.
	atRelease map[string][]QueuedMessage
	// bus are the other instances' gateways, told of new registrations.
	bus []*Gateway
}

func newFakeOwners(st *memStore) *fakeOwners {
	return &fakeOwners{st: st, owned: make(map[string]bool), atRelease: make(map[string][]QueuedMessage)}
}

func (f *fakeOwners) Acquire(ctx context.Context, bare string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acquires = append(f.acquires, bare)
	if f.refuse {
		return false, errors.New("owned by instance 2, which did not release it")
	}
	took := !f.owned[bare]
	f.owned[bare] = true
	return took, nil
}

func (f *fakeOwners) Release(ctx context.Context, bare string) error {
	qs, _ := f.st.Messages(ctx, bare)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.owned[bare] = false
	f.atRelease[bare] = qs
	return nil
}

func (f *fakeOwners) Registered(ctx context.Context, bare string) {
	f.mu.Lock()
	bus := f.bus
	f.mu.Unlock()
	for _, g := range bus {
		g.AddRegistered(bare)
	}
}

func (f *fakeOwners) Forget(bare string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.owned, bare)
}

func (f *fakeOwners) Owns(bare string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.owned[bare]
}
func (f *fakeOwners) QueuedFree(ctx context.Context) ([]string, error) { return nil, nil }

func (f *fakeOwners) released(bare string) ([]QueuedMessage, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	qs, ok := f.atRelease[bare]
	return qs, ok
}

// sendUnanswered makes IMIP answer nothing on s, then has alice send m1
// with body to contact 100: its MESG goes out and waits for IMIP.
func (h *harness) sendUnanswered(s *fakeSession, body string) {
	h.t.Helper()
	s.setReply(func(kind string, n wire.Number) (wire.Code, bool) { return 0, false })
	h.chat("m1", aliceHW, cj("100"), "chat", body)
	synctest.Wait()
	h.idle(alice)
	if got := len(s.callsWith("MESG 100 " + body)); got != 1 {
		h.t.Fatalf("setup: MESG sent %d times, want 1: %q", got, s.callList())
	}
}

// userValue returns the user value of bare in the registry (nil if none).
func (h *harness) userValue(bare string) *user {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	return h.g.users[bare]
}

func withOwners(f **fakeOwners) func(*Config) {
	return func(c *Config) {
		*f = newFakeOwners(c.Store.(*memStore))
		c.Owners = *f
		c.HandoverTimeout = time.Second
	}
}

// Asked for a user, the instance logs it out of IMIP, writes the message
// it held (sent, not yet confirmed) and only then gives the user up; what
// the user sends afterwards goes to a new value, which asks for the user
// again.
func TestReleaseHandsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		s := h.login(aliceHW, "6340564")
		if !slices.Contains(own.acquires, alice) {
			t.Fatalf("registration and login did not acquire the user: %v", own.acquires)
		}
		h.sendUnanswered(s, "in flight")
		before := len(own.acquires)
		h.g.ReleaseUser(alice)
		synctest.Wait()
		h.settle()
		if len(s.callsWith("DISC")) != 1 {
			t.Errorf("the session was not logged out: %v", s.callList())
		}
		qs, ok := own.released(alice)
		if !ok {
			t.Fatal("the user was never given up")
		}
		if len(qs) != 1 || qs[0].Body != "in flight" {
			t.Fatalf("store at the release: %+v; want the unconfirmed message written", qs)
		}
		// The next stanza of the user loads a new value, which acquires.
		h.chat("m2", aliceHW, cj("100"), "chat", "later")
		synctest.Wait()
		h.settle()
		if len(own.acquires) != before+1 {
			t.Errorf("acquires after the hand-over: %v; want one more", own.acquires[before:])
		}
	})
}

// A user another instance keeps is not loaded: its message is bounced
// with a wait error, and the next event asks again.
func TestUnownedUserRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.register(alice, "6340564")
		h.g.ReleaseUser(alice) // given up: the next event loads anew
		h.settle()
		own.mu.Lock()
		own.refuse = true
		n := len(own.acquires)
		own.mu.Unlock()
		sessions := h.d.sessionCount()
		mark := h.x.mark()
		h.chat("m1", aliceHW, cj("100"), "chat", "hello")
		synctest.Wait()
		h.settle()
		b := h.x.waitMessage(t, mark, "the bounce", func(m xmppside.Message) bool { return m.ID == "m1" && m.Type == "error" })
		if b.Error == nil || b.Error.Condition != stanza.ResourceConstraint || b.Error.Type != stanza.Wait {
			t.Fatalf("bounce %+v; want wait/resource-constraint", b.Error)
		}
		h.chat("m2", aliceHW, cj("100"), "chat", "again")
		synctest.Wait()
		h.settle()
		own.mu.Lock()
		got := len(own.acquires) - n
		own.mu.Unlock()
		if got != 2 {
			t.Fatalf("Acquire called %d times for two messages; want 2", got)
		}
		if h.d.sessionCount() != sessions {
			t.Fatal("a session was opened for a user another instance keeps")
		}
	})
}

// A user given up is probed: the instance that holds the user's slot gets
// the answer and takes the user, even if the user sends nothing more (the
// asker may have stopped waiting).
func TestReleaseProbesTheUser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var own *fakeOwners
		h := newHarness(t, "", withOwners(&own))
		h.login(aliceHW, "6340564")
		mark := h.x.mark()
		h.g.ReleaseUser(alice)
		synctest.Wait()
		h.settle()
		if _, ok := own.released(alice); !ok {
			t.Fatal("the user was not given up")
		}
		h.x.waitPresence(t, mark, "the probe after the release", func(p xmppside.Presence) bool {
			return p.Type == "probe" && p.To.Equal(aliceJID)
		})
	})
}
