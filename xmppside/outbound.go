package xmppside

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// addresses checks the from and to of an outbound stanza: an empty from is
// the component domain, a from outside the domain and an empty to are
// refused (servers close the stream for both).
func (c *Component) addresses(from, to jid.JID) (jid.JID, jid.JID, error) {
	if to.String() == "" {
		return from, to, fmt.Errorf("%w: empty to", ErrAddress)
	}
	if from.String() == "" {
		return c.domain, to, nil
	}
	if from.Domainpart() != c.domain.Domainpart() {
		return from, to, fmt.Errorf("%w: from %s is outside %s", ErrAddress, from, c.domain)
	}
	return from, to, nil
}

// stanzaStart builds the start element of an outbound stanza.
func stanzaStart(local, typ, id string, from, to jid.JID) xml.StartElement {
	return xml.StartElement{
		Name: xml.Name{Local: local},
		Attr: attrs("type", typ, "id", id, "from", from.String(), "to", to.String()),
	}
}

func errorElem(se *stanza.Error) xml.TokenReader {
	e := *se
	if e.Condition == "" {
		e.Condition = stanza.UndefinedCondition
	}
	if e.Type == "" {
		e.Type = defaultErrorType(e.Condition)
	}
	return e.TokenReader()
}

func delayElem(t time.Time, from jid.JID) xml.TokenReader {
	return elem(nsDelay, "delay", attrs("stamp", t.UTC().Format(time.RFC3339Nano), "from", from.String()))
}

// SendMessage sends m with from set (the component domain when m.From is
// empty). It returns ErrNotConnected while the link is down and ErrAddress
// for a From outside the domain or an empty To.
// Safe for concurrent use; it does not wait for any reply.
// ctx is checked before the write; a started write is bounded by an internal
// timeout instead, since cutting it would break the stream.
func (c *Component) SendMessage(ctx context.Context, m Message) error {
	from, to, err := c.addresses(m.From, m.To)
	if err != nil {
		return err
	}
	typ := m.Type
	if m.Error != nil {
		typ = "error"
	}
	switch typ {
	case "", "chat", "normal", "headline", "groupchat":
	case "error":
		if m.Error == nil {
			return errors.New("xmppside: message of type error without Error")
		}
	default:
		return fmt.Errorf("xmppside: invalid message type %q", typ)
	}
	switch m.ChatState {
	case "", "active", "composing", "paused", "inactive", "gone":
	default:
		return fmt.Errorf("xmppside: invalid chat state %q", m.ChatState)
	}
	id := m.ID
	if id == "" {
		id = randomID()
	}
	var ch []xml.TokenReader
	if m.Subject != "" {
		ch = append(ch, textElem("", "subject", m.Subject))
	}
	if m.Body != "" {
		ch = append(ch, textElem("", "body", m.Body))
	}
	if m.Thread != "" {
		ch = append(ch, textElem("", "thread", m.Thread))
	}
	if m.Nick != "" {
		ch = append(ch, textElem(nsNick, "nick", m.Nick))
	}
	if !m.Delay.IsZero() {
		ch = append(ch, delayElem(m.Delay, m.DelayFrom))
	}
	if m.ChatState != "" {
		ch = append(ch, elem(nsChatStates, m.ChatState, nil))
	}
	if m.ReceiptRequest {
		ch = append(ch, elem(nsReceipts, "request", nil))
	}
	if m.ReceiptReceived != "" {
		ch = append(ch, elem(nsReceipts, "received", attrs("id", m.ReceiptReceived)))
	}
	if m.Error != nil {
		ch = append(ch, errorElem(m.Error))
	}
	start := stanzaStart("message", typ, id, from, to)
	return c.send(ctx, xmlstream.Wrap(xmlstream.MultiReader(ch...), start))
}

// SendPresence sends p with from set (the component domain when p.From is
// empty); errors and concurrency as SendMessage.
func (c *Component) SendPresence(ctx context.Context, p Presence) error {
	from, to, err := c.addresses(p.From, p.To)
	if err != nil {
		return err
	}
	typ := p.Type
	if p.Error != nil {
		typ = "error"
	}
	if !validPresenceType(typ) {
		return fmt.Errorf("xmppside: invalid presence type %q", typ)
	}
	if typ == "error" && p.Error == nil {
		return errors.New("xmppside: presence of type error without Error")
	}
	switch p.Show {
	case "", "away", "chat", "dnd", "xa":
	default:
		return fmt.Errorf("xmppside: invalid show %q", p.Show)
	}
	if p.Priority < -128 || p.Priority > 127 {
		return fmt.Errorf("xmppside: priority %d out of range", p.Priority)
	}
	var ch []xml.TokenReader
	if p.Show != "" {
		ch = append(ch, textElem("", "show", p.Show))
	}
	if p.Status != "" {
		ch = append(ch, textElem("", "status", p.Status))
	}
	if p.Priority != 0 {
		ch = append(ch, textElem("", "priority", strconv.Itoa(p.Priority)))
	}
	if p.Nick != "" {
		ch = append(ch, textElem(nsNick, "nick", p.Nick))
	}
	if p.CapsVer != "" {
		hash := p.CapsHash
		if hash == "" {
			hash = "sha-1"
		}
		ch = append(ch, elem(nsCaps, "c", attrs("hash", hash, "node", p.CapsNode, "ver", p.CapsVer)))
	}
	if !p.Delay.IsZero() {
		ch = append(ch, delayElem(p.Delay, jid.JID{}))
	}
	if p.Error != nil {
		ch = append(ch, errorElem(p.Error))
	}
	id := p.ID
	if id == "" {
		id = randomID()
	}
	start := stanzaStart("presence", typ, id, from, to)
	return c.send(ctx, xmlstream.Wrap(xmlstream.MultiReader(ch...), start))
}
