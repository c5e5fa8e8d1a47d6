package xmppside

// The slot check: whether the server routes anything to this connection.
// ejabberd spreads a component domain over a fixed number of connections
// (domain_balancing with component_number): a connection made while every
// slot is held gets none, is not told, and receives nothing. The check
// sends messages from random JIDs of the component's own domain to the
// domain itself, on this connection; the server routes each to the slot
// its sender hashes to. A connection that holds one slot of n receives at
// least one of 16*n of them but for a chance of about e^-16; one that holds
// none receives none. What arrives on other connections (of this process
// or of another instance) is dropped there.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
)

// slotCheckPrefix starts the id of the slot check's messages.
const slotCheckPrefix = "imip-slotcheck-"

// slotChecks are the checks in progress of a Component, by nonce.
type slotChecks struct {
	mu   sync.Mutex
	seen map[string]chan struct{} // closed when one of its messages came back
}

// CheckSlot reports whether the server routes to this connection: it
// sends n messages from random JIDs of the domain to the domain, and waits
// until one of them comes back on this connection (true) or ctx ends
// (false). An error means the link is down or a send failed.
func (c *Component) CheckSlot(ctx context.Context, n int) (bool, error) {
	if c.current() == nil {
		return false, ErrNotConnected
	}
	nonce := randomID()
	ch := make(chan struct{})
	c.slots.mu.Lock()
	if c.slots.seen == nil {
		c.slots.seen = make(map[string]chan struct{})
	}
	c.slots.seen[nonce] = ch
	c.slots.mu.Unlock()
	defer func() {
		c.slots.mu.Lock()
		delete(c.slots.seen, nonce)
		c.slots.mu.Unlock()
	}()
	for i := range n {
		from, err := jid.New("slot-"+randomID(), c.domain.Domainpart(), "")
		if err != nil {
			return false, fmt.Errorf("xmppside: slot check: %w", err)
		}
		m := Message{From: from, To: c.domain, Type: "normal", ID: fmt.Sprintf("%s%s-%d", slotCheckPrefix, nonce, i)}
		if err := c.SendMessage(ctx, m); err != nil {
			return false, fmt.Errorf("xmppside: slot check: %w", err)
		}
	}
	select {
	case <-ch:
		return true, nil
	case <-ctx.Done():
		return false, nil
	}
}

// slotCheckMessage reports whether m is a slot check's message (sent by
// this process or another instance of the domain), and notes its arrival.
func (c *Component) slotCheckMessage(m Message) bool {
	if !strings.HasPrefix(m.ID, slotCheckPrefix) || m.From.Domainpart() != c.domain.Domainpart() || m.From.Localpart() == "" {
		return false
	}
	nonce, _, _ := strings.Cut(strings.TrimPrefix(m.ID, slotCheckPrefix), "-")
	c.slots.mu.Lock()
	if ch := c.slots.seen[nonce]; ch != nil {
		close(ch)
		delete(c.slots.seen, nonce)
	}
	c.slots.mu.Unlock()
	return true
}

// Reconnect drops the live link, if any: Run connects again after its
// backoff (a connection the server routes nothing to, say).
func (c *Component) Reconnect() {
	if l := c.current(); l != nil {
		l.conn.expire(time.Now())
	}
}
