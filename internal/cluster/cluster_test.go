package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/gateway"
	"imip-transport/gateway/pgstore"
	"imip-transport/internal/cluster"
	"imip-transport/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a database with registered users and nodes on it.
type rig struct {
	t   *testing.T
	dsn string
	key string // the store's key file
}

func newRig(t *testing.T, users ...string) *rig {
	t.Helper()
	if err := testenv.PostgresAvailable(); err != nil {
		t.Skip(err)
	}
	pg := testenv.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	key := t.TempDir() + "/key"
	st, err := pgstore.Open(ctx, dsn, pgstore.Options{KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, u := range users {
		if err := st.PutRegistration(ctx, gateway.Registration{JID: u, Number: "1001001", Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	return &rig{t: t, dsn: dsn, key: key}
}

// node is a joined node running, with what its hooks saw.
type node struct {
	*cluster.Node
	mu        sync.Mutex
	slots     []int
	released  []string
	gave      int
	heldFrom  map[int]time.Time // when the Slots hook first told each slot held
	early     []int             // slots given less than giveAfter after they came
	gaveAt    []time.Time       // when each slot was given
	giveAfter time.Duration
	cancel    context.CancelFunc
	done      chan error
	once      sync.Once
	err       error // Run's, once stopped
}

// stop ends Run (if it has not ended) and returns its error.
func (nd *node) stop() error { return nd.stopAfter(0) }

// stopAfter waits up to d for Run to end by itself, then ends it, and
// returns its error.
func (nd *node) stopAfter(d time.Duration) error {
	nd.once.Do(func() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case nd.err = <-nd.done:
			return
		case <-t.C:
		}
		nd.cancel()
		nd.err = <-nd.done
	})
	return nd.err
}

func (r *rig) join(autoRelease bool) *node {
	r.t.Helper()
	return r.joinGiving(autoRelease, time.Millisecond)
}

// joinGiving joins a node whose slots are given away only once held for
// giveAfter.
func (r *rig) joinGiving(autoRelease bool, giveAfter time.Duration) *node {
	r.t.Helper()
	n, err := cluster.Join(context.Background(), cluster.Config{DSN: r.dsn, Slots: 3,
		CheckInterval: 20 * time.Millisecond, MinHold: time.Millisecond, GiveAfter: giveAfter, Logger: testLogger()})
	if err != nil {
		r.t.Fatal(err)
	}
	nd := &node{Node: n, done: make(chan error, 1), heldFrom: make(map[int]time.Time), giveAfter: giveAfter}
	n.SetHooks(cluster.Hooks{
		Slots: func(s []int) {
			nd.mu.Lock()
			nd.slots = slices.Clone(s)
			for k := range nd.heldFrom {
				if !slices.Contains(s, k) {
					delete(nd.heldFrom, k)
				}
			}
			for _, k := range s {
				if _, ok := nd.heldFrom[k]; !ok {
					nd.heldFrom[k] = time.Now()
				}
			}
			nd.mu.Unlock()
		},
		Give: func(eligible []int) (int, <-chan struct{}, bool) {
			nd.mu.Lock()
			defer nd.mu.Unlock()
			if len(nd.slots) < 2 {
				return 0, nil, false
			}
			// The highest eligible slot other than the first (which an
			// instance sends on).
			slot := 0
			for _, s := range nd.slots[1:] {
				if slices.Contains(eligible, s) {
					slot = s
				}
			}
			if slot == 0 {
				return 0, nil, false
			}
			nd.gave++
			if time.Since(nd.heldFrom[slot]) < nd.giveAfter*3/4 {
				nd.early = append(nd.early, slot)
			}
			nd.gaveAt = append(nd.gaveAt, time.Now())
			closed := make(chan struct{})
			close(closed) // no connection to close here
			return slot, closed, true
		},
		Release: func(jid string) {
			nd.mu.Lock()
			nd.released = append(nd.released, jid)
			nd.mu.Unlock()
			if autoRelease {
				go func() { _ = n.Release(context.Background(), jid) }()
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel = cancel
	go func() { nd.done <- n.Run(ctx) }()
	r.t.Cleanup(func() {
		_ = nd.stop()
		n.Close()
	})
	return nd
}

func (nd *node) held() []int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return slices.Clone(nd.slots)
}

// testLogger shows the nodes' notices with -v.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlotsGoToTheLiveInstances(t *testing.T) {
	r := newRig(t)
	a := r.join(false)
	waitFor(t, "a lone instance to hold every slot", func() bool { return slices.Equal(a.held(), []int{1, 2, 3}) })
	b := r.join(false)
	// a gives one slot (its highest) and keeps two: one more than b.
	waitFor(t, "a slot given to the instance that joined", func() bool {
		return slices.Equal(a.held(), []int{1, 2}) && slices.Equal(b.held(), []int{3})
	})

	// a dies (its connections end without Leave): b takes its slots.
	_ = a.stop()
	a.Close()
	waitFor(t, "the dead instance's slots to go to the survivor", func() bool { return slices.Equal(b.held(), []int{1, 2, 3}) })
}

// An instance that joins while another holds every slot gets slots given
// to it, one at a time, until none holds two more than another.
func TestSlotsSpreadToJoiners(t *testing.T) {
	r := newRig(t)
	a := r.join(false)
	waitFor(t, "a lone instance to hold every slot", func() bool { return len(a.held()) == 3 })
	b := r.join(false)
	c := r.join(false)
	waitFor(t, "one slot each", func() bool { return len(a.held()) == 1 && len(b.held()) == 1 && len(c.held()) == 1 })
	a.mu.Lock()
	gave := a.gave
	a.mu.Unlock()
	// Two at least; a third was seen once in CI under load (a slot given
	// back to a, which then gave it again), which the spread survives.
	if gave < 2 {
		t.Fatalf("a gave %d slots; want 2", gave)
	}
}

// A slot is given away only once held for GiveAfter: the users it brought
// are past their minimum hold by then (see cluster.Config.GiveAfter).
// Without that, the joiner here gets its slots some 20-40 ms after a
// took them (a check interval or two).
func TestSlotsGivenOnlyOnceHeldLongEnough(t *testing.T) {
	r := newRig(t)
	const giveAfter = 400 * time.Millisecond
	a := r.joinGiving(false, giveAfter)
	waitFor(t, "a lone instance to hold every slot", func() bool { return len(a.held()) == 3 })
	b := r.join(false)
	waitFor(t, "a slot given to the instance that joined", func() bool { return len(b.held()) == 1 })
	// b dies: its slot goes back to a, which holds the other two since
	// long; c joins at once, and the slot a just took is the only one it
	// may give (the first is the one it sends on), so c waits for it.
	_ = b.stop()
	b.Close()
	waitFor(t, "the dead instance's slot back with a", func() bool { return len(a.held()) == 3 })
	c := r.join(false)
	waitFor(t, "a slot given to the next joiner", func() bool { return len(c.held()) == 1 })
	a.mu.Lock()
	defer a.mu.Unlock()
	// c may also get its slot free rather than given (seen once in CI,
	// under load): then a gave only one. What matters is that none was
	// given early.
	if a.gave < 1 || len(a.early) != 0 {
		t.Fatalf("a gave %d slots, %v of them held less than %v; want some, none", a.gave, a.early, giveAfter)
	}
}

// A slot whose connection came up again counts its hold from then.
func TestSlotUpRestartsTheHold(t *testing.T) {
	r := newRig(t)
	const giveAfter = 400 * time.Millisecond
	a := r.joinGiving(false, giveAfter)
	waitFor(t, "a lone instance to hold every slot", func() bool { return len(a.held()) == 3 })
	time.Sleep(giveAfter) // held long enough by now
	up := time.Now()
	for _, s := range a.held() {
		a.SlotUp(s) // their connections came up again
	}
	b := r.join(false)
	waitFor(t, "a slot given to the instance that joined", func() bool { return len(b.held()) == 1 })
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.gaveAt) == 0 || a.gaveAt[0].Sub(up) < giveAfter*3/4 {
		t.Fatalf("given at %v after the connections came up again; want at least %v", a.gaveAt, giveAfter)
	}
}

func TestLeaveFreesAtOnce(t *testing.T) {
	r := newRig(t, "u@example.org")
	a := r.join(false)
	waitFor(t, "a to hold every slot", func() bool { return len(a.held()) == 3 })
	b := r.join(false)
	if _, err := a.Acquire(context.Background(), "u@example.org"); err != nil {
		t.Fatal(err)
	}
	if err := a.Stopping(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = a.stop()
	if err := a.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the slots of an instance that left", func() bool { return len(b.held()) == 3 })
	took, err := b.Acquire(context.Background(), "u@example.org")
	if err != nil || !took {
		t.Fatalf("Acquire after the owner left = %v, %v; want took", took, err)
	}
}

func TestAcquire(t *testing.T) {
	r := newRig(t, "u@example.org", "v@example.org")
	a := r.join(true)
	b := r.join(true)
	ctx := context.Background()
	took, err := a.Acquire(ctx, "u@example.org")
	if err != nil || !took {
		t.Fatalf("first Acquire = %v, %v; want took", took, err)
	}
	if took, err := a.Acquire(ctx, "u@example.org"); err != nil || took {
		t.Fatalf("Acquire by the owner = %v, %v; want owned already", took, err)
	}
	// b asks; a's hook releases it.
	took, err = b.Acquire(ctx, "u@example.org")
	if err != nil || !took {
		t.Fatalf("Acquire from a live owner = %v, %v; want took", took, err)
	}
	a.mu.Lock()
	rel := slices.Clone(a.released)
	a.mu.Unlock()
	if !slices.Equal(rel, []string{"u@example.org"}) {
		t.Fatalf("owner asked to release %v; want [u@example.org]", rel)
	}
	if _, err := a.Acquire(ctx, "nobody@example.org"); err == nil {
		t.Fatal("Acquire of an unregistered JID succeeded")
	}
}

func TestAcquireWaitsForALiveOwner(t *testing.T) {
	r := newRig(t, "u@example.org")
	a := r.join(false) // never releases
	b := r.join(false)
	if _, err := a.Acquire(context.Background(), "u@example.org"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Acquire(ctx, "u@example.org"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire from an owner that keeps it = %v; want the deadline", err)
	}
	// The owner dies: the user is free at once.
	_ = a.stop()
	a.Close()
	took, err := b.Acquire(context.Background(), "u@example.org")
	if err != nil || !took {
		t.Fatalf("Acquire from a dead owner = %v, %v; want took", took, err)
	}
}

func TestLostLockStopsRun(t *testing.T) {
	r := newRig(t)
	a := r.join(false)
	b := r.join(false)
	waitFor(t, "a to hold slots", func() bool { return len(a.held()) > 0 })
	// An admin (or a network fault) ends a's lock connection.
	conn, err := pgxConnect(r.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.classid::bigint = $1 AND l.objid::bigint = $2`, int64(cluster.LockSpace), int64(a.ID())); err != nil {
		t.Fatal(err)
	}
	// Run ends by itself.
	if err := a.stopAfter(10 * time.Second); !errors.Is(err, cluster.ErrLost) {
		t.Fatalf("Run = %v; want ErrLost", err)
	}
	waitFor(t, "the survivor to hold every slot", func() bool { return len(b.held()) == 3 })
}
