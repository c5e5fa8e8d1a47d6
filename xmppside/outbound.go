package xmppside

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

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
// empty). It returns ErrNotConnected while the link is down, ErrAddress
// for a From outside the domain or an empty To, and ErrInvalidStanza for
// an unknown type or chat state or type error without Error.
//
// A message larger than MaxStanzaSize as encoded is sent as several
// messages, in order, each within the limit: the body is cut on character
// boundaries (at a newline or space near the cut when there is one), the
// parts put together are the body, and their ids are m.ID, m.ID-2,
// m.ID-3... The first part carries the subject, the last the chat state
// and the receipt elements; each carries the rest (type, thread, nick,
// delay, error). If a part cannot be sent (the link drops), the parts
// before it have been. A message that would be too large even without its
// body returns ErrStanzaTooLarge and nothing is sent.
//
// Safe for concurrent use; it does not wait for any reply.
// ctx is checked before the write; a started write is bounded by an internal
// timeout instead, since cutting it would break the stream.
func (c *Component) SendMessage(ctx context.Context, m Message) error {
	m, err := c.prepareMessage(m)
	if err != nil {
		return err
	}
	build := func() xml.TokenReader { return messageElem(m) }
	err = c.checkSize("message", messageBound(m), build)
	if errors.Is(err, ErrStanzaTooLarge) && m.Body != "" {
		return c.refused(c.sendMessageParts(ctx, m))
	}
	if err != nil {
		return c.refused(err)
	}
	return c.sendChecked(ctx, build())
}

// prepareMessage checks m for SendMessage and returns it as it goes on the
// wire: addresses set, type error when Error is set, an id. An error is an
// ErrAddress or an ErrInvalidStanza.
func (c *Component) prepareMessage(m Message) (Message, error) {
	from, to, err := c.addresses(m.From, m.To)
	if err != nil {
		return m, err
	}
	m.From, m.To = from, to
	if m.Error != nil {
		m.Type = "error"
	}
	switch m.Type {
	case "", "chat", "normal", "headline", "groupchat":
	case "error":
		if m.Error == nil {
			return m, fmt.Errorf("%w: message of type error without Error", ErrInvalidStanza)
		}
	default:
		return m, fmt.Errorf("%w: message type %q", ErrInvalidStanza, m.Type)
	}
	switch m.ChatState {
	case "", "active", "composing", "paused", "inactive", "gone":
	default:
		return m, fmt.Errorf("%w: chat state %q", ErrInvalidStanza, m.ChatState)
	}
	if m.ID == "" {
		m.ID = randomID()
	}
	return m, nil
}

// messageElem builds the stanza of m, whose addresses, type and id are
// final.
func messageElem(m Message) xml.TokenReader {
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
	start := stanzaStart("message", m.Type, m.ID, m.From, m.To)
	return xmlstream.Wrap(xmlstream.MultiReader(ch...), start)
}

// messageOverhead bounds the markup of a message with every optional
// child: the element and attribute names, namespaces and the delay stamp.
const messageOverhead = 1024

// messageBound bounds the encoded size of messageElem(m).
func messageBound(m Message) int {
	n := messageOverhead + textBound(m.Type, m.ID, m.From.String(), m.To.String(),
		m.Subject, m.Body, m.Thread, m.Nick, m.DelayFrom.String(), m.ChatState, m.ReceiptReceived)
	if m.Error != nil {
		n += errorBound(m.Error)
	}
	return n
}

// presenceOverhead is messageOverhead for presence.
const presenceOverhead = 1024

// presenceBound bounds the encoded size of a presence with the fields of
// p and the given type and id.
func presenceBound(p Presence, from, to jid.JID, typ, id string) int {
	n := presenceOverhead + textBound(typ, id, from.String(), to.String(), p.Show, p.Status,
		p.Nick, p.CapsNode, p.CapsVer, p.CapsHash) + 4*len("-128")
	if p.Error != nil {
		n += errorBound(p.Error)
	}
	return n
}

// errorBound bounds the encoded size of errorElem(se).
func errorBound(se *stanza.Error) int {
	n := 256 + 2*textBound(string(se.Condition)) + textBound(string(se.Type), se.By.String())
	for lang, text := range se.Text {
		n += 128 + textBound(lang, text)
	}
	return n
}

// minPartText is the least room for body text a message part must leave;
// below it a message is refused rather than cut into slivers.
const minPartText = 1024

// sendMessageParts sends m, too large as one stanza, as several (see
// SendMessage). Every part is built and measured before the first is sent.
func (c *Component) sendMessageParts(ctx context.Context, m Message) error {
	// The markup of the largest part: every optional child, the longest
	// id suffix (there are at most len(m.Body) parts), and an empty body
	// element.
	frame := m
	frame.Body = ""
	frame.ID = m.ID + "-" + strconv.Itoa(len(m.Body))
	overhead, err := encodedSize(messageElem(frame))
	if err != nil {
		return err
	}
	overhead += len("<body></body>")
	room := c.cfg.MaxStanzaSize - overhead
	if room < minPartText {
		return tooLarge("message without its body", overhead, c.cfg.MaxStanzaSize)
	}
	bodies := splitText(m.Body, room)
	parts := make([]Message, len(bodies))
	for i, b := range bodies {
		p := m
		p.Body = b
		if i > 0 {
			p.ID = m.ID + "-" + strconv.Itoa(i+1)
			p.Subject = ""
		}
		if i < len(bodies)-1 {
			p.ChatState, p.ReceiptRequest, p.ReceiptReceived = "", false, ""
		}
		size, err := encodedSize(messageElem(p))
		if err != nil {
			return err
		}
		if size > c.cfg.MaxStanzaSize {
			// splitText kept each body within room: this is a bug.
			return tooLarge(fmt.Sprintf("part %d of %d of a message", i+1, len(bodies)), size, c.cfg.MaxStanzaSize)
		}
		parts[i] = p
	}
	for i, p := range parts {
		if err := c.sendChecked(ctx, messageElem(p)); err != nil {
			return fmt.Errorf("xmppside: message part %d of %d: %w", i+1, len(parts), err)
		}
	}
	return nil
}

// splitText cuts s into pieces whose encoded size as character data is
// at most room bytes each (room must fit the widest character, 5 bytes).
// It cuts between characters, after the last newline, else the last
// space, in the final quarter of a piece when there is one there.
// Joined, the pieces are s.
func splitText(s string, room int) []string {
	var out []string
	for s != "" {
		end, size := 0, 0 // bytes of s taken, their encoded size
		for end < len(s) {
			r, w := utf8.DecodeRuneInString(s[end:])
			n := escapedRuneLen(r, w)
			if size+n > room {
				break
			}
			size += n
			end += w
		}
		if end == 0 {
			_, end = utf8.DecodeRuneInString(s) // room below one character
		} else if end < len(s) {
			floor := end - end/4
			if i := strings.LastIndexByte(s[floor:end], '\n'); i >= 0 {
				end = floor + i + 1
			} else if i := strings.LastIndexByte(s[floor:end], ' '); i >= 0 {
				end = floor + i + 1
			}
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

// SendPresence sends p with from set (the component domain when p.From is
// empty); errors and concurrency as SendMessage (ErrInvalidStanza for an
// unknown type or show, a priority outside -128..127, or type error
// without Error), except that a presence
// larger than MaxStanzaSize is never cut: it returns ErrStanzaTooLarge and
// nothing is sent.
func (c *Component) SendPresence(ctx context.Context, p Presence) error {
	p, err := c.preparePresence(p)
	if err != nil {
		return err
	}
	build := func() xml.TokenReader { return presenceElem(p, p.From, p.To, p.Type, p.ID) }
	return c.refused(c.send(ctx, "presence", presenceBound(p, p.From, p.To, p.Type, p.ID), build))
}

// preparePresence checks p for SendPresence and returns it as it goes on
// the wire: addresses set, type error when Error is set, an id. An error is
// an ErrAddress or an ErrInvalidStanza.
func (c *Component) preparePresence(p Presence) (Presence, error) {
	from, to, err := c.addresses(p.From, p.To)
	if err != nil {
		return p, err
	}
	p.From, p.To = from, to
	if p.Error != nil {
		p.Type = "error"
	}
	if !validPresenceType(p.Type) {
		return p, fmt.Errorf("%w: presence type %q", ErrInvalidStanza, p.Type)
	}
	if p.Type == "error" && p.Error == nil {
		return p, fmt.Errorf("%w: presence of type error without Error", ErrInvalidStanza)
	}
	switch p.Show {
	case "", "away", "chat", "dnd", "xa":
	default:
		return p, fmt.Errorf("%w: show %q", ErrInvalidStanza, p.Show)
	}
	if p.Priority < -128 || p.Priority > 127 {
		return p, fmt.Errorf("%w: priority %d out of range", ErrInvalidStanza, p.Priority)
	}
	if p.ID == "" {
		p.ID = randomID()
	}
	return p, nil
}

// presenceElem builds the stanza of p with the given addresses, type and
// id.
func presenceElem(p Presence, from, to jid.JID, typ, id string) xml.TokenReader {
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
	start := stanzaStart("presence", typ, id, from, to)
	return xmlstream.Wrap(xmlstream.MultiReader(ch...), start)
}
