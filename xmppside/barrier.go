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

// Barrier sends a XEP-0199 ping to to (a domain: the component's server's
// own, or a remote one it reaches over s2s) on link seq and waits for the
// answer. An answer from that domain, an error included, proves that it has
// taken every stanza written before the ping on that link to it: streams
// keep their stanzas in order, and so does the s2s link. An error saying the
// server cannot reach the domain (remote-server-not-found, -timeout) proves
// the opposite: it returns an error matching ErrRemoteUnreachable. It
// returns ErrNotConnected when link seq is not the live link (it dropped:
// what was written on it may be lost) or drops before the answer, and ctx's
// error when ctx ends first.
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
	case toks := <-ch:
		return barrierAnswer(to, toks)
	case <-ctx.Done():
		return fmt.Errorf("xmppside: barrier to %s: %w", to, ctx.Err())
	case <-l.ctx.Done():
		return fmt.Errorf("%w: link dropped before the barrier's answer from %s", ErrNotConnected, to)
	}
}

// barrierAnswer reads a barrier's answer: nil, or an error matching
// ErrRemoteUnreachable when the server could not reach to.
func barrierAnswer(to jid.JID, toks []xml.Token) error {
	if len(toks) == 0 {
		return nil
	}
	start, ok := toks[0].(xml.StartElement)
	if !ok || attrValue(start.Attr, "type") != string(stanza.ErrorIQ) {
		return nil
	}
	se, err := stanza.UnmarshalError(&tokenSlice{toks: toks[1:]})
	if err != nil {
		return nil // an error of some kind: the server took what came before
	}
	switch se.Condition {
	case stanza.RemoteServerNotFound, stanza.RemoteServerTimeout:
		return fmt.Errorf("xmppside: barrier to %s: %w: %w", to, ErrRemoteUnreachable, se)
	}
	return nil
}
