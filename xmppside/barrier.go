package xmppside

import (
	"context"
	"encoding/xml"
	"fmt"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// LinkSeq identifies the live link: 1 for the first link of the
// Component, 2 for the next, and so on; 0 while the link is down. A
// stanza written while LinkSeq returned n went on link n (or failed).
func (c *Component) LinkSeq() uint64 {
	l := c.current()
	if l == nil {
		return 0
	}
	return l.seq
}

// Barrier sends a XEP-0199 ping to to (the domain of a server the
// component's server hosts) on link seq and waits for the answer. Any
// answer, an error included, proves that the server has taken every stanza
// written before the ping on that link: it handles a stream's stanzas in
// order. It returns ErrNotConnected when link seq is not the live link (it
// dropped: what was written on it may be lost) or drops before the answer,
// and ctx's error when ctx ends first.
// Safe for concurrent use; not from a Handler method on the read loop.
func (c *Component) Barrier(ctx context.Context, to jid.JID, seq uint64) error {
	l := c.current()
	if l == nil || l.seq != seq {
		return ErrNotConnected
	}
	iq := stanza.IQ{ID: randomID(), Type: stanza.GetIQ, From: c.domain, To: to}
	out, err := readTokens(iq.Wrap(elem(nsPing, "ping", nil)))
	if err != nil {
		return err
	}
	ch := make(chan []xml.Token, 1)
	if !l.addPending(iq.ID, ch) {
		return fmt.Errorf("xmppside: barrier to %s: id %q already in use", to, iq.ID)
	}
	defer l.removePending(iq.ID, ch)
	if err := l.write(&tokenSlice{toks: out}); err != nil {
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("xmppside: barrier to %s: %w", to, ctx.Err())
	case <-l.ctx.Done():
		return fmt.Errorf("%w: link dropped before the barrier's answer from %s", ErrNotConnected, to)
	}
}
