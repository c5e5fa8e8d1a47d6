package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/xmppside"
)

// The outbox: every stanza the gateway sends goes through one queue,
// drained by one goroutine that exists only while the queue holds work.
// No run loop and no read loop ever waits on the component's write side;
// stanzas keep the order in which they were queued (per user and overall).
// A caller that needs the outcome of a send gives a done function: it runs
// on the outbox goroutine after the send and must not block (it posts an
// event to a user's inbox).

// DefaultOutboxSize bounds the stanzas waiting for the component link.
const DefaultOutboxSize = 65536

// outItem is one stanza to send: a presence or a message.
type outItem struct {
	p    *xmppside.Presence
	m    *xmppside.Message
	done func(error) // nil: the outcome is only logged
	// barrier: done reports the server's confirmation, not the write: it
	// runs once a barrier sent after the stanza was answered.
	barrier bool
	// since, when set, is when the message came from IMIP: the relay
	// latency is measured once it is written.
	since time.Time
	// run, when set, is not a stanza: the outbox calls it once every item
	// queued before it has been written (it must not block), so that work
	// with writes of its own (a roster job's IQs) comes after them.
	run func()
}

// Barrier is what the gateway needs to confirm stanzas: an IQ (a XEP-0199
// ping) to the server of domain to, waited for. Any answer, an error
// included, proves that the server took every stanza sent before it on the
// same stream. Without it (a component that cannot ask), a stanza counts
// as confirmed once written.
type Barrier interface {
	// LinkSeq identifies the live link (0: down).
	LinkSeq() uint64
	// Barrier asks the server of to for a barrier on link seq.
	Barrier(ctx context.Context, to jid.JID, seq uint64) error
}

// errBarrier wraps the failure of a barrier: what it covered is sent again.
var errBarrier = errors.New("gateway: barrier not answered")

type outbox struct {
	g *Gateway

	mu      sync.Mutex
	q       []outItem
	running bool
	dropped uint64 // stanzas refused because the queue was full
	// pend are the confirmations waiting for a barrier that has not been
	// asked yet: one barrier covers every stanza sent before it, so the
	// stanzas written within barrierDelay share one (see addBarriers).
	pend map[barrierKey]*pendBarrier
	// confirming counts the confirmations handed to barriers (waiting in
	// pend or asked) whose dones have not run yet.
	confirming int
}

// errOutboxFull is the outcome of a stanza refused by a full outbox.
var errOutboxFull = errors.New("gateway: outbox full")

// push queues it. It never blocks; beyond the bound the stanza is refused
// (its done runs with errOutboxFull, on the caller's goroutine) and logged.
func (o *outbox) push(it outItem) {
	o.mu.Lock()
	if len(o.q) >= o.g.cfg.OutboxSize && it.run == nil { // a run item is never refused
		o.dropped++
		n := o.dropped
		o.mu.Unlock()
		if n == 1 || n%1000 == 0 {
			o.g.log.Warn("outbox full: stanza dropped (the component link is stuck)", "dropped", n)
		}
		if it.done != nil {
			it.done(errOutboxFull)
		}
		return
	}
	o.q = append(o.q, it)
	if !o.running {
		o.running = true
		o.g.spawn(o.drain)
	}
	o.mu.Unlock()
}

// drain sends what is queued, then exits.
func (o *outbox) drain() {
	for {
		o.mu.Lock()
		if len(o.q) == 0 {
			o.running = false
			o.q = nil // an idle gateway keeps no queue storage
			o.mu.Unlock()
			return
		}
		batch := o.q
		o.q = nil
		o.mu.Unlock()
		var confirm map[barrierKey]*pendBarrier // by the server's domain and link
		bx, _ := o.g.xmpp.(Barrier)
		for i := range batch {
			it := batch[i]
			batch[i] = outItem{}
			if it.run != nil {
				it.run()
				continue
			}
			var seq uint64
			if it.barrier && bx != nil {
				seq = bx.LinkSeq() // the link this write goes on
			}
			err := o.g.sendNow(it)
			if err == nil && !it.since.IsZero() {
				o.g.stats.relayToXMPP.observe(time.Since(it.since))
			}
			switch {
			case it.done == nil:
				if err != nil {
					o.g.log.Debug("stanza not sent", "err", err)
				}
			case it.barrier && err == nil:
				if confirm == nil {
					confirm = make(map[barrierKey]*pendBarrier)
				}
				k := barrierKey{it.m.To.Domainpart(), seq}
				to := it.m.To.Domain() // no new PRECIS pass per barrier
				if o.g.cfg.Owners != nil {
					// Several instances: the server routes the answer by
					// the address it comes from, to the instance that
					// holds that address's slot. From the user's own
					// address it comes back here, where the user is
					// served; from the server's domain it would go to
					// one instance for every user.
					to = it.m.To.Bare()
					k.domain = to.String()
				}
				pb := confirm[k]
				if pb == nil {
					pb = &pendBarrier{to: to}
					confirm[k] = pb
				}
				pb.dones = append(pb.dones, it.done)
			default:
				it.done(err)
			}
		}
		o.addBarriers(confirm)
	}
}

// barrierDelay is how long the stanzas that need a barrier wait for others
// to share it. It delays only their confirmation to the IMIP server (the
// stanzas are written at once), well within the 50 ms that the IMIP server
// and the transport hold their writes for, and spares the user's server a
// ping and its answer per message, and the transport the system calls and
// goroutines of each (10 ms instead of 2: 0.3 system calls and 0.4
// goroutine starts fewer per message at a steady 2,000 a second).
const barrierDelay = 10 * time.Millisecond

// barrierKey is a barrier's server domain (with a cluster, the user's bare
// JID) and component link.
type barrierKey struct {
	domain string
	seq    uint64
}

// pendBarrier are the confirmations of stanzas to one domain on one link.
type pendBarrier struct {
	to    jid.JID
	dones []func(error)
}

// addBarriers adds confirmations to those waiting for a barrier, and makes
// the barriers go within barrierDelay. Close waits for them (the pending
// barriers count as one run).
func (o *outbox) addBarriers(confirm map[barrierKey]*pendBarrier) {
	if len(confirm) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pend == nil {
		o.pend = make(map[barrierKey]*pendBarrier, len(confirm))
		o.g.runs.add() // done by flushBarriers
		time.AfterFunc(barrierDelay, o.flushBarriers)
	}
	for k, pb := range confirm {
		o.confirming += len(pb.dones)
		if have := o.pend[k]; have != nil {
			have.dones = append(have.dones, pb.dones...)
		} else {
			o.pend[k] = pb
		}
	}
}

// flushBarriers asks the barriers that wait.
func (o *outbox) flushBarriers() {
	defer o.g.runs.done()
	o.mu.Lock()
	pend := o.pend
	o.pend = nil
	o.mu.Unlock()
	i := 0
	for k, pb := range pend {
		ask := func() {
			o.g.barrier(pb.to, k.seq, pb.dones)
			o.mu.Lock()
			o.confirming -= len(pb.dones)
			o.mu.Unlock()
		}
		if i++; i == len(pend) {
			ask() // the last (usually the only one) on this goroutine: one start fewer per barrier
		} else {
			o.g.spawn(ask)
		}
	}
}

// barrier confirms the stanzas whose dones are given, all sent to users of
// domain to on link seq: it asks the server for a barrier on that link and
// passes the outcome on.
func (g *Gateway) barrier(to jid.JID, seq uint64, dones []func(error)) {
	var err error
	if b, ok := g.xmpp.(Barrier); ok {
		parent := context.Background()
		if g.cfg.Owners != nil {
			// With a cluster the answer may never come here (the user's
			// slot went to another instance): a stop does not wait for
			// it; what it covered is sent again by the next owner.
			parent = g.ctx
		}
		ctx, cancel := context.WithTimeout(parent, g.cfg.OpTimeout)
		if berr := b.Barrier(ctx, to, seq); berr != nil {
			err = fmt.Errorf("%w: %w", errBarrier, berr)
			if g.cfg.Owners != nil && errors.Is(berr, context.DeadlineExceeded) {
				// The server routes the user's answers to another
				// instance now: a probe makes that one take the user
				// (and what the barrier covered goes again from there).
				g.sendPresence(xmppside.Presence{From: g.cfg.Domain, To: to, Type: "probe"})
			}
		}
		cancel()
	}
	for _, done := range dones {
		done(err)
	}
}

// sendNow sends one stanza, bounded by the op timeout.
func (g *Gateway) sendNow(it outItem) error {
	if g.xmpp == nil {
		return errors.New("gateway: no component attached")
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
	defer cancel()
	var err error
	if it.p != nil {
		err = g.xmpp.SendPresence(ctx, *it.p)
	} else {
		err = g.xmpp.SendMessage(ctx, *it.m)
	}
	if err == nil {
		g.stats.stanzaOut.Add(1)
	}
	return err
}
