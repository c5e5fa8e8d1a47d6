package gateway

import (
	"context"
	"errors"
	"sync"

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
}

type outbox struct {
	g *Gateway

	mu      sync.Mutex
	q       []outItem
	running bool
	dropped uint64 // stanzas refused because the queue was full
}

// errOutboxFull is the outcome of a stanza refused by a full outbox.
var errOutboxFull = errors.New("gateway: outbox full")

// push queues it. It never blocks; beyond the bound the stanza is refused
// (its done runs with errOutboxFull, on the caller's goroutine) and logged.
func (o *outbox) push(it outItem) {
	o.mu.Lock()
	if len(o.q) >= o.g.cfg.OutboxSize {
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
		for i := range batch {
			err := o.g.sendNow(batch[i])
			if done := batch[i].done; done != nil {
				done(err)
			} else if err != nil {
				o.g.log.Debug("stanza not sent", "err", err)
			}
			batch[i] = outItem{}
		}
	}
}

// sendNow sends one stanza, bounded by the op timeout.
func (g *Gateway) sendNow(it outItem) error {
	if g.xmpp == nil {
		return errors.New("gateway: no component attached")
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
	defer cancel()
	if it.p != nil {
		return g.xmpp.SendPresence(ctx, *it.p)
	}
	return g.xmpp.SendMessage(ctx, *it.m)
}
