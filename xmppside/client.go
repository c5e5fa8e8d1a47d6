package xmppside

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// SendIQ sends an IQ of type get or set from the component (iq.From empty
// means the component domain) and waits for the reply.
// ctx is checked before the write and bounds the wait for the reply; it
// never interrupts the write itself (bounded by the link's write timeout; a
// failed write tears the link down).
// The reply is read whole before SendIQ returns, so the returned reader
// (the complete <iq/> element) holds no lock on the stream; closing it is
// optional. A reply of type error is returned as a stanza.Error (use
// errors.As), with a nil reader.
// It returns ErrNotConnected while the link is down or if it drops before
// the reply, and ErrUnexpectedResponse if the reply comes from another
// address than iq.To.
// Safe for concurrent use, but it must not be called from a Handler method
// running on the read loop (it would wait for itself).
func (c *Component) SendIQ(ctx context.Context, iq stanza.IQ, payload xml.TokenReader) (xmlstream.TokenReadCloser, error) {
	from, to, err := c.addresses(iq.From, iq.To)
	if err != nil {
		return nil, err
	}
	if iq.Type != stanza.GetIQ && iq.Type != stanza.SetIQ {
		return nil, fmt.Errorf("xmppside: SendIQ needs type get or set, not %q", iq.Type)
	}
	l := c.current()
	if l == nil {
		return nil, ErrNotConnected
	}
	iq.From, iq.To, iq.XMLName = from, to, xml.Name{}
	if iq.ID == "" {
		iq.ID = randomID()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("xmppside: iq to %s: %w", to, err)
	}
	ch := make(chan []xml.Token, 1)
	if !l.addPending(iq.ID, ch) {
		return nil, fmt.Errorf("xmppside: iq to %s: id %q already in use", to, iq.ID)
	}
	defer l.removePending(iq.ID, ch)
	if err := l.write(iq.Wrap(payload)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	var toks []xml.Token
	select {
	case toks = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("xmppside: iq to %s: %w", to, ctx.Err())
	case <-l.ctx.Done():
		return nil, fmt.Errorf("%w: link dropped before the reply from %s", ErrNotConnected, to)
	}
	if len(toks) == 0 {
		return nil, ErrUnexpectedResponse
	}
	start, ok := toks[0].(xml.StartElement)
	if !ok {
		return nil, ErrUnexpectedResponse
	}
	if f := attrValue(start.Attr, "from"); !replyFromOK(f, to) {
		return nil, fmt.Errorf("%w: reply from %q to an iq sent to %s", ErrUnexpectedResponse, f, to)
	}
	if attrValue(start.Attr, "type") == string(stanza.ErrorIQ) {
		se, err := stanza.UnmarshalError(&tokenSlice{toks: toks[1:]})
		if err != nil {
			se = newStanzaError(stanza.UndefinedCondition)
		}
		return nil, fmt.Errorf("xmppside: iq to %s: %w", to, se)
	}
	return xmlstream.NopCloser(&tokenSlice{toks: toks}), nil
}

// replyFromOK reports whether an IQ reply from f answers a request to to.
// A server may answer for a bare JID without from (RFC 6120 8.1.2.1).
func replyFromOK(f string, to jid.JID) bool {
	if f == "" {
		return to.Resourcepart() == ""
	}
	j, err := jid.Parse(f)
	return err == nil && j.Equal(to)
}

// UnmarshalIQ is SendIQ that decodes the reply's payload (the first child of
// the result) into v; an empty result leaves v untouched.
func (c *Component) UnmarshalIQ(ctx context.Context, iq stanza.IQ, payload xml.TokenReader, v any) error {
	resp, err := c.SendIQ(ctx, iq, payload)
	if err != nil {
		return err
	}
	d := xml.NewTokenDecoder(resp)
	if _, err := d.Token(); err != nil { // <iq>
		return fmt.Errorf("xmppside: decode iq reply: %w", err)
	}
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("xmppside: decode iq reply: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if v == nil {
				return nil
			}
			if err := d.DecodeElement(v, &t); err != nil {
				return fmt.Errorf("xmppside: decode iq reply: %w", err)
			}
			return nil
		case xml.EndElement:
			return nil
		}
	}
}

// tokenSlice replays buffered tokens.
type tokenSlice struct {
	toks []xml.Token
	i    int
}

func (s *tokenSlice) Token() (xml.Token, error) {
	if s.i >= len(s.toks) {
		return nil, io.EOF
	}
	t := s.toks[s.i]
	s.i++
	return t, nil
}

// DiscoFeatures asks to (typically a user's full JID) for its disco#info
// features. Same rules as SendIQ.
func (c *Component) DiscoFeatures(ctx context.Context, to jid.JID) ([]string, error) {
	var q struct {
		Features []struct {
			Var string `xml:"var,attr"`
		} `xml:"feature"`
	}
	iq := stanza.IQ{Type: stanza.GetIQ, To: to}
	if err := c.UnmarshalIQ(ctx, iq, elem(nsDiscoInfo, "query", nil), &q); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(q.Features))
	for _, f := range q.Features {
		if f.Var != "" {
			out = append(out, f.Var)
		}
	}
	return out, nil
}

// SendRosterExchange sends a XEP-0144 roster item exchange message from the
// component domain to to. Same rules as SendMessage.
func (c *Component) SendRosterExchange(ctx context.Context, to jid.JID, items []RosterItem) error {
	if len(items) == 0 {
		return errors.New("xmppside: roster exchange without items")
	}
	from, to, err := c.addresses(jid.JID{}, to)
	if err != nil {
		return err
	}
	ch := make([]xml.TokenReader, 0, len(items))
	for _, it := range items {
		if it.JID.String() == "" {
			return errors.New("xmppside: roster exchange item without jid")
		}
		action := it.Action
		switch {
		case action == "" && it.Remove:
			action = "delete"
		case action == "":
			action = "add"
		case action != "add" && action != "modify" && action != "delete":
			return fmt.Errorf("xmppside: invalid roster exchange action %q", action)
		}
		ch = append(ch, itemElem(it, "action", action))
	}
	start := stanzaStart("message", "", randomID(), from, to)
	return c.send(ctx, xmlstream.Wrap(elem(nsRosterX, "x", nil, ch...), start))
}

// itemElem builds a roster or roster exchange <item/>.
func itemElem(it RosterItem, kv ...string) xml.TokenReader {
	groups := make([]xml.TokenReader, 0, len(it.Groups))
	for _, g := range it.Groups {
		if g != "" {
			groups = append(groups, textElem("", "group", g))
		}
	}
	a := attrs(append([]string{"jid", it.JID.String(), "name", it.Name}, kv...)...)
	return elem("", "item", a, groups...)
}
