package gateway

// The group commit: one goroutine writes the ops of every user to the Store,
// all that are waiting in one transaction, so that under load one fsync
// serves many messages and at low load an op commits at once.
//
// A deferred Submit (SubmitDeferred) waits a while before it joins a batch,
// and its caller may take it back (Cancel) while it waits: a message that
// the other side confirms within that while is never written at all.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// The committer's defaults, used for zero (or negative) fields of
// commitConfig.
const (
	defaultMaxBatch      = 512
	defaultMaxQueue      = 65536
	defaultCommitTimeout = 30 * time.Second
)

// commitConfig holds the committer's limits.
type commitConfig struct {
	// MaxBatch is the most ops in one transaction (default 512). The ops of
	// one Submit are never split: a Submit with more ops than MaxBatch is
	// committed alone, in a transaction of its own.
	MaxBatch int
	// MaxQueue is the most ops waiting to be committed (default 65536),
	// not counting the batch being committed. A Submit that would go beyond
	// it is refused; an empty or invalid Submit counts as one op.
	MaxQueue int
	// Timeout bounds each Store.Apply (default 30 s).
	Timeout time.Duration
	// latency, when set, receives the time of each store write.
	latency *histogram
}

// commitStats are the committer's counters, for metrics.
type commitStats struct {
	// Batches is the number of transactions committed, Ops the number of
	// ops in them.
	Batches, Ops uint64
	// Retries counts the batches whose first Apply failed; Failed, those
	// whose retry failed too (their Submits' dones got the error).
	Retries, Failed uint64
	// LastBatch is the number of ops of the last batch tried.
	LastBatch int
	// Queued is the number of ops waiting now.
	Queued int
}

// commitReq is one Submit.
type commitReq struct {
	ops  []Op
	done func(error)
	err  error // set when ops failed CheckOps: done gets it, Apply never sees ops
	cost int   // what it counts against MaxQueue
}

// Deferred is a deferred Submit (see SubmitDeferred), to Cancel.
type Deferred struct {
	req commitReq
	due time.Time
	// taken: it left the waiting list, committed or about to be (true), or
	// canceled (false, canceled set). Guarded by the committer's mu.
	taken, canceled bool
}

// committer is the group commit: Submit queues ops without blocking, and one
// goroutine commits everything waiting (up to MaxBatch ops) with one
// Store.Apply, then calls the Submits' dones, and repeats. While a
// transaction runs, new Submits accumulate, so batches grow with the load by
// themselves; no timer delays a commit.
// Its methods are safe for concurrent use.
type committer struct {
	store Store
	log   *slog.Logger
	cfg   commitConfig

	ctx     context.Context // of every Apply; canceled when Close gives up
	cancel  context.CancelFunc
	wake    chan struct{} // capacity 1: work was queued, or Close was called
	stopped chan struct{} // closed when the goroutine has ended

	mu     sync.Mutex
	queue  []commitReq // waiting: queue[head:]
	head   int
	queued int // the cost of queue[head:] and of later
	// later holds the deferred Submits still waiting, in the order they
	// were made (their delays may differ: take looks at them all), and
	// the canceled ones until take drops them.
	later    []*Deferred
	timer    *time.Timer // wakes the goroutine when the first of later is due
	armedFor time.Time   // when the timer fires
	// inFlight: a batch taken from the queue is being committed.
	inFlight bool
	closed   bool
	stats    commitStats
}

// newCommitter returns a committer writing to store, and starts its
// goroutine; Close stops it. A nil log discards.
func newCommitter(store Store, log *slog.Logger, cfg commitConfig) *committer {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = defaultMaxBatch
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = defaultMaxQueue
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultCommitTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &committer{
		store:   store,
		log:     log,
		cfg:     cfg,
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
	}
	go c.run()
	return c
}

// Submit queues ops to be committed in one transaction, and returns at
// once. It returns false, and queues nothing, when the queue is full (see
// commitConfig.MaxQueue) or the committer is closed; then done is never
// called.
// Otherwise done (when not nil) is called exactly once, from the committer's
// goroutine, after the transaction holding all of ops committed (nil) or
// failed (the error): ops that fail CheckOps fail with it, alone, without
// reaching the Store. done must not block: it holds up every later commit.
// The caller must not change ops, nor the messages they point to, until
// done is called.
func (c *committer) Submit(ops []Op, done func(error)) bool {
	r := commitReq{ops: ops, done: done, err: CheckOps(ops), cost: max(len(ops), 1)}
	if r.err != nil {
		r.ops, r.cost = nil, 1
	}
	c.mu.Lock()
	if c.closed || c.queued+r.cost > c.cfg.MaxQueue {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, r)
	c.queued += r.cost
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
	return true
}

// SubmitDeferred is Submit, except that ops join a batch only after delay
// (or at once when the committer closes), and that Cancel takes them back
// while they wait. It returns nil where Submit returns false.
// The same rules hold for done and for ops: done is called exactly once
// unless Cancel returns true, and then never.
func (c *committer) SubmitDeferred(ops []Op, done func(error), delay time.Duration) *Deferred {
	if delay <= 0 {
		if !c.Submit(ops, done) {
			return nil
		}
		return &Deferred{taken: true}
	}
	d := &Deferred{req: commitReq{ops: ops, done: done, err: CheckOps(ops), cost: max(len(ops), 1)}, due: time.Now().Add(delay)}
	if d.req.err != nil {
		d.req.ops, d.req.cost = nil, 1
	}
	c.mu.Lock()
	if c.closed || c.queued+d.req.cost > c.cfg.MaxQueue {
		c.mu.Unlock()
		return nil
	}
	c.later = append(c.later, d)
	c.queued += d.req.cost
	if len(c.later) == 1 || d.due.Before(c.armedFor) {
		c.armLocked(delay)
	}
	c.mu.Unlock()
	return d
}

// Cancel takes back a deferred Submit that has not joined a batch yet and
// reports whether it did; then its done is never called. When it returns
// false, done is called (or was) as for any Submit. A nil d reports false.
func (c *committer) Cancel(d *Deferred) bool {
	if d == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.taken || d.canceled {
		return false
	}
	d.canceled = true // promoteLocked drops it: no search per Cancel
	c.queued -= d.req.cost
	return true
}

// Expedite makes a deferred Submit that still waits join the queue now,
// behind the Submits already queued: a Submit after Expedite commits after
// it. A nil, taken or canceled d is left alone.
func (c *committer) Expedite(d *Deferred) {
	if d == nil {
		return
	}
	c.mu.Lock()
	if d.taken || d.canceled {
		c.mu.Unlock()
		return
	}
	d.taken = true
	d.canceled = true // promoteLocked drops it from the waiting list
	c.queue = append(c.queue, d.req)
	c.mu.Unlock()
	c.poke()
}

// armLocked makes the goroutine look at later within after. c.mu held.
func (c *committer) armLocked(after time.Duration) {
	c.armedFor = time.Now().Add(after)
	if c.timer == nil {
		c.timer = time.AfterFunc(after, c.poke)
		return
	}
	c.timer.Reset(after)
}

// poke wakes the goroutine.
func (c *committer) poke() {
	select {
	case c.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// Close stops taking Submits, commits what is queued and waits for the
// committer's goroutine to end. When ctx ends first, Close cancels the
// Apply in progress, returns ctx's error and does not wait: the goroutine
// then fails what is left (each done gets an error) and ends as soon as
// that Apply returns.
func (c *committer) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true // the deferred Submits are due now
	c.mu.Unlock()
	c.poke()
	select {
	case <-c.stopped:
		return nil
	case <-ctx.Done():
		c.cancel()
		return fmt.Errorf("gateway: closing the committer: %w", ctx.Err())
	}
}

// idle reports whether nothing is queued or being committed.
func (c *committer) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued == 0 && c.head == len(c.queue) && !c.inFlight // queued counts the deferred Submits waiting
}

// Stats returns the counters. It does not block on a commit.
func (c *committer) Stats() commitStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Queued = c.queued
	return s
}

// run is the committer's goroutine.
func (c *committer) run() {
	defer close(c.stopped)
	defer c.cancel()
	var (
		batch []commitReq
		ops   []Op
	)
	for {
		var ok bool
		batch, ops, ok = c.take(batch[:0], ops[:0])
		if !ok {
			return
		}
		c.commit(batch, ops)
		c.mu.Lock()
		c.inFlight = false
		c.mu.Unlock()
		clear(batch) // drop the references to ops and dones
		clear(ops)
		if cap(ops) > 2*c.cfg.MaxBatch { // a big Submit went through
			ops = nil
		}
	}
}

// take waits for work and moves the Submits that fit in one batch from the
// queue to batch, their ops to ops. It returns false when the committer is
// closed and nothing is left.
func (c *committer) take(batch []commitReq, ops []Op) ([]commitReq, []Op, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.promoteLocked()
	for c.head == len(c.queue) {
		if c.closed {
			if c.timer != nil {
				c.timer.Stop()
			}
			return batch, ops, false
		}
		c.mu.Unlock()
		<-c.wake
		c.mu.Lock()
		c.promoteLocked()
	}
	for c.head < len(c.queue) {
		r := c.queue[c.head]
		if len(ops) > 0 && len(ops)+len(r.ops) > c.cfg.MaxBatch {
			break
		}
		batch = append(batch, r)
		ops = append(ops, r.ops...)
		c.queued -= r.cost
		c.queue[c.head] = commitReq{}
		c.head++
	}
	// Reuse the queue's array: rewind when it is empty, move the waiting
	// Submits to the front when more than half of it is taken.
	switch rest := len(c.queue) - c.head; {
	case rest == 0:
		c.queue, c.head = c.queue[:0], 0
	case c.head > cap(c.queue)/2:
		copy(c.queue, c.queue[c.head:])
		clear(c.queue[rest:])
		c.queue, c.head = c.queue[:rest], 0
	}
	c.inFlight = true
	return batch, ops, true
}

// promoteLocked moves the deferred Submits that are due (all of them once
// the committer is closed) to the queue, and arms the timer for the next
// one. c.mu held.
func (c *committer) promoteLocked() {
	if len(c.later) == 0 {
		return
	}
	now := time.Now()
	var next time.Time
	kept := c.later[:0]
	for _, d := range c.later {
		if d.canceled {
			continue
		}
		if c.closed || !d.due.After(now) {
			d.taken = true
			c.queue = append(c.queue, d.req)
			continue
		}
		if next.IsZero() || d.due.Before(next) {
			next = d.due
		}
		kept = append(kept, d)
	}
	clear(c.later[len(kept):])
	c.later = kept
	if !next.IsZero() {
		c.armLocked(next.Sub(now))
	}
}

// commit applies ops, retrying once, and calls the dones of batch.
func (c *committer) commit(batch []commitReq, ops []Op) {
	var err error
	if len(ops) > 0 {
		err = c.apply(ops)
		if err != nil && c.ctx.Err() == nil {
			c.log.Warn("commit failed, retrying", "ops", len(ops), "err", err)
			c.count(func(s *commitStats) { s.Retries++ })
			err = c.apply(ops)
		}
		if err != nil {
			c.log.Error("commit failed", "ops", len(ops), "submits", len(batch), "err", err)
			err = fmt.Errorf("gateway: committing %d ops: %w", len(ops), err)
		}
		c.count(func(s *commitStats) {
			s.LastBatch = len(ops)
			if err != nil {
				s.Failed++
			} else {
				s.Batches++
				s.Ops += uint64(len(ops))
			}
		})
	}
	for _, r := range batch {
		if r.done == nil {
			continue
		}
		if r.err != nil {
			r.done(r.err)
		} else {
			r.done(err)
		}
	}
}

// apply runs one Store.Apply under the committer's context and timeout.
func (c *committer) apply(ops []Op) error {
	if err := c.ctx.Err(); err != nil {
		return fmt.Errorf("committer closed: %w", err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Timeout)
	defer cancel()
	start := time.Now()
	err := c.store.Apply(ctx, ops)
	if c.cfg.latency != nil {
		c.cfg.latency.observe(time.Since(start))
	}
	return err
}

func (c *committer) count(f func(*commitStats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}
