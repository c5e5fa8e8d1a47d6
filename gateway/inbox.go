package gateway

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"imip-transport/xmppside"
)

// post queues ev for u without blocking. It reports false when the inbox is
// full or the user has stopped.
func (u *user) post(ev event) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped || u.closing || len(u.inbox) >= u.g.cfg.InboxSize {
		return false
	}
	u.enqueueLocked(ev)
	return true
}

// postWait queues ev, waiting while the inbox is full until there is room,
// the user stops, or the channel done returns is closed (asked for only
// when it must wait). IMIP sessions use it: a user whose run
// loop is behind slows down only their own IMIP connection. Session events
// may run past the bound by one inbox's worth before the wait starts, so
// replies a login waits for are never stuck behind a full inbox.
func (u *user) postWait(ev event, done func() <-chan struct{}) bool {
	for {
		u.mu.Lock()
		if u.stopped {
			u.mu.Unlock()
			return false
		}
		if len(u.inbox) < 2*u.g.cfg.InboxSize {
			u.enqueueLocked(ev)
			u.mu.Unlock()
			return true
		}
		if u.space == nil {
			u.space = make(chan struct{})
		}
		space := u.space
		u.mu.Unlock()
		select {
		case <-space:
		case <-done():
			return false
		}
	}
}

// postAlways queues ev whatever the inbox holds, unless the user has
// stopped. It is for events of which at most one per user or per session
// is ever in flight (a login retry, a session's ClosedEvent): dropping them
// would strand the user, and waiting for room could wedge the run loop.
func (u *user) postAlways(ev event) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped {
		return false
	}
	u.enqueueLocked(ev)
	return true
}

// pendingAvail is the newest availability presence of one resource that the
// run loop has not handled yet. toGateway records whether the presence (or
// an identical copy of it) was addressed to the gateway's own JID.
type pendingAvail struct {
	p         xmppside.Presence
	toGateway bool
	seq       uint64 // arrival order of the newest copy
	link      uint64 // the component link it came on
}

// postAvailability hands an available or unavailable presence to the run
// loop without ever dropping it: the newest presence of each resource is
// kept beside the inbox, and one evAvailability in the inbox stands for all
// of them. The user's server sends each presence to the gateway and to
// every contact JID with a subscription, so a user with many contacts sends
// many identical copies; they take one slot, not one each.
func (u *user) postAvailability(p xmppside.Presence) {
	toGateway := p.To.Localpart() == ""
	res := p.From.Resourcepart()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped || u.closing {
		return
	}
	if u.avail == nil {
		u.avail = make(map[string]pendingAvail, 1)
	}
	u.availSeq++
	link := u.g.link.Load()
	old, ok := u.avail[res]
	switch {
	case ok && samePresence(old.p, p):
		old.toGateway = old.toGateway || toGateway
		old.seq, old.link = u.availSeq, link
		u.avail[res] = old
	case ok && old.p.Type == "" && old.toGateway && p.Type == "unavailable" && !toGateway:
		// A directed unavailable ("invisible to one contact") right after
		// the broadcast available: the resource is still online.
	default:
		u.avail[res] = pendingAvail{p: p, toGateway: toGateway, seq: u.availSeq, link: link}
	}
	if !u.availQueued {
		u.availQueued = true
		u.enqueueLocked(evAvailability{})
	}
}

// takeAvailability returns the pending availability presences in the order
// they arrived, and clears them.
func (u *user) takeAvailability() []pendingAvail {
	u.mu.Lock()
	m := u.avail
	u.avail = nil
	u.availQueued = false
	u.mu.Unlock()
	out := make([]pendingAvail, 0, len(m))
	for _, pa := range m {
		out = append(out, pa)
	}
	slices.SortFunc(out, func(a, b pendingAvail) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

func samePresence(a, b xmppside.Presence) bool {
	return a.Type == b.Type && a.Show == b.Show && a.Status == b.Status && a.Priority == b.Priority
}

// postShutdown queues the shutdown event whatever the inbox holds. From
// then on the user takes nothing from the XMPP side (post and
// postAvailability refuse); its IMIP session's events, its jobs' results
// and its timer still come in until onShutdown has finished (stopped).
func (u *user) postShutdown() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped || u.closing {
		return
	}
	u.enqueueLocked(evShutdown{})
	u.closing = true
}

func (u *user) enqueueLocked(ev event) {
	u.inbox = append(u.inbox, ev)
	if !u.running {
		u.running = true
		u.g.runs.add()
		go u.run()
	}
}

// run handles the inbox until it is empty, then exits: no goroutine idles
// per user.
func (u *user) run() {
	defer u.g.runs.done()
	n := 0 // events handled since u.corked was corked
	for {
		u.mu.Lock()
		if len(u.inbox) == 0 || (u.corked != nil && n >= corkEvents) {
			if u.corked != nil {
				// Write what the events queued, then look again: more
				// may have come meanwhile.
				u.mu.Unlock()
				u.uncork()
				continue
			}
			u.running = false
			u.inbox = nil // an idle user keeps no queue storage
			u.mu.Unlock()
			return
		}
		ev := u.inbox[0]
		u.inbox[0] = nil
		u.inbox = u.inbox[1:]
		if u.space != nil {
			close(u.space)
			u.space = nil
		}
		u.mu.Unlock()
		if u.corked == nil {
			if c, ok := u.sess.(corker); ok {
				c.Cork()
				u.corked, n = c, 0
			}
		}
		n++
		u.handle(ev)
	}
}

// uncork writes what the run loop's cork holds, and ends it; the next
// event corks again. A handler that waits for something (a store call,
// see opCtx) calls it first: the blocks queued before must not wait too.
func (u *user) uncork() {
	if u.corked != nil {
		u.corked.Uncork()
		u.corked = nil
	}
}

// corker is an IMIP session that can hold the blocks queued on it and
// write them together (*imipside.Session): the run loop corks its session
// while it handles the events in its inbox, so that what they queue (a
// burst of messages, the confirmations of several messages from IMIP)
// goes out in one write instead of one each.
type corker interface {
	Cork()
	Uncork()
}

// corkEvents bounds the events handled while the session is corked, so
// that a long burst does not hold a block back for long.
const corkEvents = 64

// tracker counts goroutines that Close waits for. Unlike sync.WaitGroup it
// may go from zero to one while a waiter waits.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{}
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
	t.mu.Unlock()
}

func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
