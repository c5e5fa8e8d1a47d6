package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// applyStore is a Store of which the committer may call only Apply.
type applyStore struct {
	Store // nil: any other method panics

	// gate, when not nil, holds every Apply until it is closed or the
	// Apply's context ends.
	gate chan struct{}

	mu    sync.Mutex
	calls [][]Op // every Apply's ops, in order
	fails int    // so many next calls fail with errApply
}

var errApply = errors.New("fake apply failure")

func (s *applyStore) Apply(ctx context.Context, ops []Op) error {
	s.mu.Lock()
	s.calls = append(s.calls, slices.Clone(ops))
	fail := s.fails > 0
	if fail {
		s.fails--
	}
	s.mu.Unlock()
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail {
		return errApply
	}
	return nil
}

func (s *applyStore) applied() [][]Op {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// opsOf returns n ops that name submit i: OpDeleteMessage{i*1000 + k + 1}.
func opsOf(i, n int) []Op {
	ops := make([]Op, n)
	for k := range ops {
		ops[k] = OpDeleteMessage{ID: int64(i*1000 + k + 1)}
	}
	return ops
}

// submitOf returns which submit op belongs to (see opsOf).
func submitOf(op Op) int { return int(op.(OpDeleteMessage).ID-1) / 1000 }

// dones records the calls of the done functions it hands out.
type dones struct {
	mu    sync.Mutex
	calls map[int][]error
	seen  map[int]int // submit -> Apply calls the store had when done ran
	store *applyStore
}

func newDones(s *applyStore) *dones {
	return &dones{calls: map[int][]error{}, seen: map[int]int{}, store: s}
}

// fn returns the done of submit i.
func (d *dones) fn(i int) func(error) {
	return func(err error) {
		n := len(d.store.applied())
		d.mu.Lock()
		defer d.mu.Unlock()
		d.calls[i] = append(d.calls[i], err)
		d.seen[i] = n
	}
}

// check fails t unless each of submits 0..n-1 had its done called exactly
// once, and returns their errors.
func (d *dones) check(t *testing.T, n int) []error {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	errs := make([]error, n)
	for i := range n {
		if len(d.calls[i]) != 1 {
			t.Errorf("submit %d: done called %d times, want once", i, len(d.calls[i]))
			continue
		}
		errs[i] = d.calls[i][0]
	}
	if len(d.calls) != n {
		t.Errorf("dones of %d submits called, want %d", len(d.calls), n)
	}
	return errs
}

func closeCommitter(t *testing.T, c *committer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// checkWhole fails t unless every Apply holds each submit's ops entirely or
// not at all, in order, and every submit of 0..n-1 with ops appears in
// exactly one Apply; sizes[i] is the number of ops of submit i.
func checkWhole(t *testing.T, calls [][]Op, sizes []int) {
	t.Helper()
	where := map[int]int{}
	for b, ops := range calls {
		for k := 0; k < len(ops); {
			i := submitOf(ops[k])
			if prev, ok := where[i]; ok {
				t.Errorf("submit %d in Apply %d and %d", i, prev, b)
			}
			where[i] = b
			if want := opsOf(i, sizes[i]); k+len(want) > len(ops) || !slices.Equal(ops[k:k+len(want)], want) {
				t.Errorf("Apply %d: submit %d not whole and in order: %v", b, i, ops)
				break
			}
			k += sizes[i]
		}
	}
	for i, n := range sizes {
		if _, ok := where[i]; !ok && n > 0 {
			t.Errorf("submit %d never applied", i)
		}
	}
}

func TestCommitterDoneOnceOpsWhole(t *testing.T) {
	st := &applyStore{}
	c := newCommitter(st, nil, commitConfig{MaxBatch: 8})
	d := newDones(st)
	sizes := []int{1, 3, 8, 0, 12, 2, 5, 1}
	for i, n := range sizes {
		if !c.Submit(opsOf(i, n), d.fn(i)) {
			t.Fatalf("Submit %d refused", i)
		}
	}
	closeCommitter(t, c)
	for i, err := range d.check(t, len(sizes)) {
		if err != nil {
			t.Errorf("submit %d: done(%v), want nil", i, err)
		}
	}
	calls := st.applied()
	checkWhole(t, calls, sizes)
	for b, ops := range calls {
		// Only the 12-op submit may exceed MaxBatch, and then alone.
		if len(ops) > 8 && (len(ops) != 12 || submitOf(ops[0]) != 4) {
			t.Errorf("Apply %d has %d ops, more than MaxBatch 8", b, len(ops))
		}
	}
	// A done runs after the Apply holding its ops returned.
	for i, n := range sizes {
		if n == 0 {
			continue
		}
		b := slices.IndexFunc(calls, func(ops []Op) bool { return slices.ContainsFunc(ops, func(op Op) bool { return submitOf(op) == i }) })
		if d.seen[i] < b+1 {
			t.Errorf("submit %d: done ran when %d Applys had started, before its Apply %d", i, d.seen[i], b)
		}
	}
	if c.Submit(opsOf(9, 1), d.fn(9)) {
		t.Errorf("Submit after Close = true, want false")
	}
	s := c.Stats()
	if s.Batches != uint64(len(calls)) || s.Ops != 32 || s.Queued != 0 || s.Failed != 0 || s.Retries != 0 {
		t.Errorf("Stats = %+v, want %d batches, 32 ops, none queued or failed", s, len(calls))
	}
}

// While an Apply runs, Submits accumulate and go in the next transaction:
// 1 + 100 submits take 2 transactions; with MaxBatch 30, 5; never a submit
// split.
func TestCommitterGroupsWhileApplyRuns(t *testing.T) {
	for i, tc := range []struct {
		maxBatch, perSubmit int
		wantBatches         []int // ops per Apply
	}{
		0: {512, 1, []int{1, 100}},
		1: {30, 1, []int{1, 30, 30, 30, 10}},
		2: {30, 7, append([]int{7}, slices.Repeat([]int{28}, 25)...)}, // 4 submits of 7 fit in 30
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := &applyStore{gate: make(chan struct{})}
				c := newCommitter(st, nil, commitConfig{MaxBatch: tc.maxBatch})
				d := newDones(st)
				const submitters = 100
				sizes := make([]int, submitters+1)
				for k := range sizes {
					sizes[k] = tc.perSubmit
				}
				c.Submit(opsOf(0, tc.perSubmit), d.fn(0))
				synctest.Wait() // the first Apply waits at the gate
				var wg sync.WaitGroup
				for k := 1; k <= submitters; k++ {
					wg.Go(func() {
						if !c.Submit(opsOf(k, tc.perSubmit), d.fn(k)) {
							t.Errorf("Submit %d refused", k)
						}
					})
				}
				wg.Wait()
				close(st.gate)
				closeCommitter(t, c)

				d.check(t, submitters+1)
				calls := st.applied()
				checkWhole(t, calls, sizes)
				var got []int
				for _, ops := range calls {
					got = append(got, len(ops))
				}
				if !slices.Equal(got, tc.wantBatches) {
					t.Errorf("ops per Apply = %v, want %v", got, tc.wantBatches)
				}
				if s := c.Stats(); s.Batches != uint64(len(tc.wantBatches)) || s.LastBatch != tc.wantBatches[len(tc.wantBatches)-1] {
					t.Errorf("Stats = %+v, want %d batches, last of %d", s, len(tc.wantBatches), tc.wantBatches[len(tc.wantBatches)-1])
				}
			})
		})
	}
}

func TestCommitterQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{gate: make(chan struct{})}
		c := newCommitter(st, nil, commitConfig{MaxQueue: 10})
		d := newDones(st)
		if !c.Submit(opsOf(0, 10), d.fn(0)) {
			t.Fatalf("Submit of MaxQueue ops to an empty queue refused")
		}
		synctest.Wait() // taken: the queue is empty again while it commits
		if c.Submit(opsOf(99, 11), d.fn(99)) {
			t.Errorf("Submit of more than MaxQueue ops = true, want false")
		}
		if !c.Submit(opsOf(1, 6), d.fn(1)) || !c.Submit(nil, d.fn(2)) || !c.Submit(opsOf(3, 3), d.fn(3)) {
			t.Fatalf("Submits up to MaxQueue refused")
		}
		if got := c.Stats().Queued; got != 10 {
			t.Errorf("Stats().Queued = %d, want 10 (an empty submit counts 1)", got)
		}
		if c.Submit(opsOf(98, 1), d.fn(98)) {
			t.Errorf("Submit into a full queue = true, want false")
		}
		close(st.gate)
		synctest.Wait() // drained
		if !c.Submit(opsOf(4, 10), d.fn(4)) {
			t.Errorf("Submit after the queue drained refused")
		}
		closeCommitter(t, c)
		for i, err := range d.check(t, 5) { // 98 and 99 never called
			if err != nil {
				t.Errorf("submit %d: done(%v), want nil", i, err)
			}
		}
	})
}

// Close commits what is queued before it returns, and refuses new work.
func TestCommitterCloseCommitsQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{gate: make(chan struct{})}
		c := newCommitter(st, nil, commitConfig{})
		d := newDones(st)
		c.Submit(opsOf(0, 1), d.fn(0))
		synctest.Wait()
		c.Submit(opsOf(1, 2), d.fn(1))
		c.Submit(opsOf(2, 1), d.fn(2))
		closed := make(chan error, 1)
		go func() { closed <- c.Close(context.Background()) }()
		synctest.Wait() // Close waits for the goroutine
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) while a commit was held", err)
		default:
		}
		if c.Submit(opsOf(3, 1), d.fn(3)) {
			t.Errorf("Submit during Close = true, want false")
		}
		close(st.gate)
		if err := <-closed; err != nil {
			t.Errorf("Close: %v", err)
		}
		for i, err := range d.check(t, 3) {
			if err != nil {
				t.Errorf("submit %d: done(%v), want nil", i, err)
			}
		}
		checkWhole(t, st.applied(), []int{1, 2, 1})
		if err := c.Close(context.Background()); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
}

// When Close's context ends first, the commit in progress is canceled and
// every waiting done gets an error.
func TestCommitterCloseTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{gate: make(chan struct{})} // never opened
		c := newCommitter(st, nil, commitConfig{MaxBatch: 1})
		d := newDones(st)
		for i := range 3 {
			c.Submit(opsOf(i, 1), d.fn(i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close with a stuck Apply = %v, want deadline exceeded", err)
		}
		<-c.stopped
		for i, err := range d.check(t, 3) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("submit %d: done(%v), want context canceled", i, err)
			}
		}
		if n := len(st.applied()); n != 1 {
			t.Errorf("%d Applys, want 1 (no retry, no Apply after the abort)", n)
		}
	})
}

// A failed Apply is retried once; a second failure fails every done of the
// batch, and the committer goes on.
func TestCommitterRetry(t *testing.T) {
	for _, fails := range []int{1, 2} {
		t.Run(fmt.Sprint(fails), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := &applyStore{gate: make(chan struct{})}
				c := newCommitter(st, nil, commitConfig{})
				d := newDones(st)
				c.Submit(opsOf(0, 1), d.fn(0))
				synctest.Wait()
				st.mu.Lock()
				st.fails = fails
				st.mu.Unlock()
				c.Submit(opsOf(1, 2), d.fn(1))
				c.Submit(opsOf(2, 1), d.fn(2))
				close(st.gate)
				synctest.Wait()
				c.Submit(opsOf(3, 1), d.fn(3)) // after the failure
				closeCommitter(t, c)

				errs := d.check(t, 4)
				for i, err := range errs {
					failed := fails == 2 && (i == 1 || i == 2)
					if failed != (err != nil) || (failed && !errors.Is(err, errApply)) {
						t.Errorf("submit %d: done(%v), want failed %v (wrapping errApply)", i, err, failed)
					}
				}
				calls := st.applied()
				if len(calls) != 4 || !slices.Equal(calls[1], calls[2]) || len(calls[1]) != 3 {
					t.Errorf("Applys = %v, want the first, the failed batch twice, the last", calls)
				}
				s := c.Stats()
				if s.Retries != 1 || s.Failed != uint64(fails-1) || s.Batches != uint64(4-fails) {
					t.Errorf("Stats = %+v, want 1 retry, %d failed, %d batches", s, fails-1, 4-fails)
				}
			})
		})
	}
}

// An invalid submit fails alone, without reaching the Store; an empty one
// succeeds without a transaction.
func TestCommitterBadAndEmptySubmits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{gate: make(chan struct{})}
		c := newCommitter(st, nil, commitConfig{})
		d := newDones(st)
		c.Submit(opsOf(0, 1), d.fn(0))
		synctest.Wait()
		c.Submit([]Op{OpDeleteMessage{ID: 1001}, nil}, d.fn(1))
		c.Submit(opsOf(2, 1), d.fn(2))
		c.Submit(nil, d.fn(3))
		c.Submit(opsOf(4, 1), nil) // no done: fine
		close(st.gate)
		closeCommitter(t, c)
		errs := d.check(t, 4)
		for i, err := range errs {
			if bad := i == 1; bad != errors.Is(err, ErrBadOp) || (!bad && err != nil) {
				t.Errorf("submit %d: done(%v)", i, err)
			}
		}
		checkWhole(t, st.applied(), []int{1, 0, 1, 0, 1})
		if n := len(st.applied()); n != 2 {
			t.Errorf("%d Applys, want 2", n)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{}
		c := newCommitter(st, nil, commitConfig{})
		d := newDones(st)
		c.Submit(nil, d.fn(0))
		closeCommitter(t, c)
		if errs := d.check(t, 1); errs[0] != nil || len(st.applied()) != 0 {
			t.Errorf("empty submit: done(%v) after %d Applys, want nil after none", errs[0], len(st.applied()))
		}
	})
}

// Many goroutines submitting at once, for the race detector: every done
// once, every op applied once, fewer transactions than submits.
func TestCommitterConcurrentSubmitters(t *testing.T) {
	st := &applyStore{}
	c := newCommitter(st, nil, commitConfig{MaxBatch: 64})
	d := newDones(st)
	const workers, each = 8, 100
	sizes := make([]int, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range each {
				i := w*each + k
				sizes[i] = 1 + i%3
				if !c.Submit(opsOf(i, sizes[i]), d.fn(i)) {
					t.Errorf("Submit %d refused", i)
					return
				}
			}
		})
	}
	wg.Wait()
	closeCommitter(t, c)
	d.check(t, workers*each)
	calls := st.applied()
	checkWhole(t, calls, sizes)
	var total uint64
	for _, n := range sizes {
		total += uint64(n)
	}
	if s := c.Stats(); s.Batches != uint64(len(calls)) || s.Ops != total {
		t.Errorf("Stats = %+v, want %d batches and %d ops", s, len(calls), total)
	}
}

// A deferred Submit joins a batch only once its delay has passed; one
// canceled while it waits never reaches the store and its done is never
// called; Cancel after it joined a batch reports false and done runs.
func TestCommitterDeferred(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{}
		c := newCommitter(st, nil, commitConfig{})
		d := newDones(st)
		d0 := c.SubmitDeferred(opsOf(0, 1), d.fn(0), 50*time.Millisecond)
		d1 := c.SubmitDeferred(opsOf(1, 1), d.fn(1), 50*time.Millisecond)
		if d0 == nil || d1 == nil {
			t.Fatal("SubmitDeferred refused")
		}
		c.Submit(opsOf(2, 1), d.fn(2)) // not deferred: commits at once, alone
		synctest.Wait()
		if got := st.applied(); len(got) != 1 || !slices.Equal(got[0], opsOf(2, 1)) {
			t.Fatalf("before the delay: applied %v, want only submit 2", got)
		}
		if c.idle() {
			t.Error("idle() with deferred Submits waiting")
		}
		time.Sleep(10 * time.Millisecond)
		if !c.Cancel(d0) {
			t.Error("Cancel of a waiting deferred Submit = false")
		}
		if c.Cancel(d0) {
			t.Error("second Cancel = true")
		}
		time.Sleep(40 * time.Millisecond) // d1 is due now
		synctest.Wait()
		got := st.applied()
		if len(got) != 2 || !slices.Equal(got[1], opsOf(1, 1)) {
			t.Fatalf("after the delay: applied %v, want submit 2 then submit 1", got)
		}
		if c.Cancel(d1) {
			t.Error("Cancel after the commit = true")
		}
		d.mu.Lock()
		_, called := d.calls[0]
		d.mu.Unlock()
		if called {
			t.Error("the canceled Submit's done was called")
		}
		if !c.idle() {
			t.Error("not idle once everything committed")
		}
		closeCommitter(t, c)
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.calls[1]) != 1 || len(d.calls[2]) != 1 {
			t.Errorf("dones: %v, want submits 1 and 2 once each", d.calls)
		}
	})
}

// Deferred Submits count against MaxQueue while they wait, and a Cancel
// gives their room back.
func TestCommitterDeferredQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{}
		c := newCommitter(st, nil, commitConfig{MaxQueue: 2})
		a := c.SubmitDeferred(opsOf(0, 1), nil, time.Second)
		b := c.SubmitDeferred(opsOf(1, 1), nil, time.Second)
		if a == nil || b == nil {
			t.Fatal("SubmitDeferred refused below the bound")
		}
		if c.SubmitDeferred(opsOf(2, 1), nil, time.Second) != nil || c.Submit(opsOf(3, 1), nil) {
			t.Error("a Submit beyond MaxQueue was taken")
		}
		c.Cancel(a)
		if !c.Submit(opsOf(4, 1), nil) {
			t.Error("Submit refused after a Cancel freed room")
		}
		closeCommitter(t, c)
		checkWhole(t, st.applied(), []int{0, 1, 0, 0, 1})
	})
}

// Close commits the deferred Submits still waiting, without waiting for
// their delay, and calls their dones.
func TestCommitterCloseCommitsDeferred(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{}
		c := newCommitter(st, nil, commitConfig{})
		d := newDones(st)
		c.SubmitDeferred(opsOf(0, 1), d.fn(0), time.Hour)
		began := time.Now()
		closeCommitter(t, c)
		if waited := time.Since(began); waited >= time.Hour {
			t.Errorf("Close waited %v for the delay", waited)
		}
		if errs := d.check(t, 1); errs[0] != nil {
			t.Errorf("done(%v), want nil", errs[0])
		}
		checkWhole(t, st.applied(), []int{1})
	})
}

// A deferred Submit with a shorter delay than one already waiting joins a
// batch after its own delay, not the other's.
func TestCommitterDeferredShorterDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &applyStore{}
		c := newCommitter(st, nil, commitConfig{})
		c.SubmitDeferred(opsOf(0, 1), nil, time.Hour)
		c.SubmitDeferred(opsOf(1, 1), nil, 10*time.Millisecond)
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		if got := st.applied(); len(got) != 1 || !slices.Equal(got[0], opsOf(1, 1)) {
			t.Errorf("20 ms later: applied %v, want the 10 ms Submit alone", got)
		}
		closeCommitter(t, c)
	})
}
