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
// the reply, ErrUnexpectedResponse if the reply comes from another address
// than iq.To, and ErrStanzaTooLarge (nothing sent) if the IQ would be
// larger than MaxStanzaSize.
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
	iq.From, iq.To, iq.XMLName = from, to, xml.Name{}
	if iq.ID == "" {
		iq.ID = randomID()
	}
	out, err := readTokens(iq.Wrap(payload))
	if err != nil {
		return nil, err
	}
	if err := c.checkTokens("iq", out); err != nil {
		return nil, c.refused(fmt.Errorf("xmppside: iq to %s: %w", to, err))
	}
	l := c.current()
	if l == nil {
		return nil, ErrNotConnected
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("xmppside: iq to %s: %w", to, err)
	}
	ch := make(chan []xml.Token, 1)
	if !l.addPending(iq.ID, ch) {
		return nil, fmt.Errorf("xmppside: iq to %s: id %q already in use", to, iq.ID)
	}
	defer l.removePending(iq.ID, ch)
	if err := l.write(&tokenSlice{toks: out}); err != nil {
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
// component domain to to. Same rules as SendMessage, except for the size:
// items that do not fit in one stanza of MaxStanzaSize are sent in several
// messages, in order, each a complete exchange of some of the items. An
// item too large for a stanza of its own returns ErrStanzaTooLarge before
// anything is sent. If a message cannot be sent (the link drops), those
// before it have been.
func (c *Component) SendRosterExchange(ctx context.Context, to jid.JID, items []RosterItem) error {
	if len(items) == 0 {
		return errors.New("xmppside: roster exchange without items")
	}
	from, to, err := c.addresses(jid.JID{}, to)
	if err != nil {
		return err
	}
	actions := make([]string, len(items))
	bound := rosterxOverhead + textBound(from.String(), to.String(), randomID())
	for i, it := range items {
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
		actions[i] = action
		bound += itemBound(it, "action", action)
	}
	build := func(lo, hi int) func() xml.TokenReader {
		return func() xml.TokenReader {
			ch := make([]xml.TokenReader, 0, hi-lo)
			for i := lo; i < hi; i++ {
				ch = append(ch, itemElem(items[i], "action", actions[i]))
			}
			return xmlstream.Wrap(elem(nsRosterX, "x", nil, ch...), stanzaStart("message", "", randomID(), from, to))
		}
	}
	if bound <= c.cfg.MaxStanzaSize {
		return c.sendChecked(ctx, build(0, len(items))())
	}
	// Too large for one message, maybe: pack the items by their exact
	// encoded sizes.
	overhead, err := encodedSize(build(0, 0)())
	if err != nil {
		return err
	}
	sizes, err := itemSizes(items, "action", actions)
	if err != nil {
		return err
	}
	var cuts []int // end of each message's items
	size := overhead
	for i, n := range sizes {
		if overhead+n > c.cfg.MaxStanzaSize {
			return c.refused(tooLarge(fmt.Sprintf("roster exchange item %s", items[i].JID), overhead+n, c.cfg.MaxStanzaSize))
		}
		if size+n > c.cfg.MaxStanzaSize {
			cuts = append(cuts, i)
			size = overhead
		}
		size += n
	}
	cuts = append(cuts, len(items))
	lo := 0
	for k, hi := range cuts {
		// Measured above: the size is exact, so no bound needs checking.
		if err := c.sendChecked(ctx, build(lo, hi)()); err != nil {
			return fmt.Errorf("xmppside: roster exchange message %d of %d: %w", k+1, len(cuts), err)
		}
		lo = hi
	}
	return nil
}

// rosterxOverhead bounds the markup of a roster exchange message without
// its items.
const rosterxOverhead = 256

// itemBound bounds the encoded size of itemElem(it, kv...).
func itemBound(it RosterItem, kv ...string) int {
	n := 64 + textBound(it.JID.String(), it.Name) + textBound(kv...) + 8*len(kv)
	for _, g := range it.Groups {
		n += len("<group></group>") + textBound(g)
	}
	return n
}

// itemSizes returns the exact encoded size of each item as a child of an
// exchange, the value of attribute name taken from values.
func itemSizes(items []RosterItem, name string, values []string) ([]int, error) {
	var cw countingWriter
	e := xml.NewEncoder(&cw)
	sizes := make([]int, len(items))
	for i, it := range items {
		before := cw.n
		if _, err := xmlstream.Copy(e, itemElem(it, name, values[i])); err != nil {
			return nil, fmt.Errorf("xmppside: measure roster item: %w", err)
		}
		if err := e.Flush(); err != nil {
			return nil, fmt.Errorf("xmppside: measure roster item: %w", err)
		}
		sizes[i] = cw.n - before
	}
	return sizes, nil
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
