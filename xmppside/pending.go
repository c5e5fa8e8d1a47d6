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

// deliverReply hands an IQ result or error to the SendIQ waiting for its
// id, read whole; a reply nobody waits for is dropped.
func (l *link) deliverReply(t xml.TokenReader, start xml.StartElement) error {
	ch := l.takePending(attrValue(start.Attr, "id"))
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
