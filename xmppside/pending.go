package xmppside

import (
	"encoding/xml"
	"fmt"

	"mellium.im/xmlstream"
)

// addPending registers a SendIQ waiter for the reply with id; it reports
// false if another request with that id is in flight.
func (l *link) addPending(id string, ch chan []xml.Token) bool {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	if _, dup := l.pending[id]; dup {
		return false
	}
	if l.pending == nil {
		l.pending = make(map[string]chan []xml.Token)
	}
	l.pending[id] = ch
	return true
}

// removePending forgets the waiter ch for id (if still there).
func (l *link) removePending(id string, ch chan []xml.Token) {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	if l.pending[id] == ch {
		delete(l.pending, id)
	}
}

// takePending removes and returns the waiter for id, nil if none.
func (l *link) takePending(id string) chan []xml.Token {
	l.pendMu.Lock()
	defer l.pendMu.Unlock()
	ch := l.pending[id]
	if ch != nil {
		delete(l.pending, id)
	}
	return ch
}

// TakeReply returns the waiter of the live link for the reply with id, and
// forgets it; nil when none waits. Another Component of the same process
// uses it (see SetReplies) when the server routes a reply to it.
func (c *Component) TakeReply(id string) chan []xml.Token {
	l := c.current()
	if l == nil {
		return nil
	}
	return l.takePending(id)
}

// SetReplies makes the replies nobody waits for on this Component's links
// go to the waiter take returns (another Component's TakeReply): a server
// that spreads a domain over several connections (ejabberd's
// domain_balancing) routes a reply by its sender's address, to any of
// them.
func (c *Component) SetReplies(take func(id string) chan []xml.Token) { c.replies.Store(&take) }

// deliverReply hands an IQ result or error to the SendIQ waiting for its
// id, read whole; a reply nobody waits for is dropped.
func (l *link) deliverReply(t xml.TokenReader, start xml.StartElement) error {
	id := attrValue(start.Attr, "id")
	ch := l.takePending(id)
	if ch == nil {
		if f := l.c.replies.Load(); f != nil {
			ch = (*f)(id)
		}
	}
	if ch == nil {
		return nil
	}
	toks, err := xmlstream.ReadAll(xmlstream.Wrap(xmlstream.Inner(t), start.Copy()))
	if err != nil {
		return fmt.Errorf("xmppside: read iq reply: %w", err)
	}
	ch <- toks // buffered, and only one sender per waiter
	return nil
}
