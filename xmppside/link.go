package xmppside

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"
)

// link is one connection to the server, from handshake to drop.
// Its HandleXMPP is the top-level handler of mellium's read loop: it decodes
// message and presence stanzas whole (so each reaches the Handler exactly
// once, whatever its children) and routes IQs through a mux.ServeMux on the
// component namespace.
// It never returns an error for a stanza-level problem: only a broken stream
// (read or write failure) ends the link.
type link struct {
	seq  uint64 // which link of the Component this is: 1, 2, ...
	c    *Component
	sess *xmpp.Session
	conn *linkConn
	ctx  context.Context // ends when the link goes down
	mux  *mux.ServeMux
	wg   sync.WaitGroup // IQ goroutines (registration)
	sem  chan struct{}  // bounds them

	pendMu  sync.Mutex
	pending map[string]chan []xml.Token // SendIQ waiters by IQ id
}

func newLink(c *Component, sess *xmpp.Session, conn *linkConn, ctx context.Context) *link {
	l := &link{
		c:    c,
		sess: sess,
		conn: conn,
		ctx:  ctx,
		sem:  make(chan struct{}, c.cfg.MaxRegistrations),
	}
	q := func(space string) xml.Name { return xml.Name{Space: space, Local: "query"} }
	l.mux = mux.New(component.NSAccept,
		mux.IQFunc(stanza.GetIQ, q(nsDiscoInfo), l.discoInfo),
		mux.IQFunc(stanza.GetIQ, q(nsDiscoItems), l.discoItems),
		mux.IQFunc(stanza.GetIQ, xml.Name{Space: nsVCardTemp, Local: "vCard"}, l.vcardGet),
		mux.IQFunc(stanza.GetIQ, xml.Name{Space: nsPubSub, Local: "pubsub"}, l.pubsubGet),
		mux.IQFunc(stanza.GetIQ, q(nsVersion), l.version),
		mux.IQFunc(stanza.GetIQ, xml.Name{Space: nsPing, Local: "ping"}, l.ping),
		mux.IQFunc(stanza.GetIQ, q(nsRegister), l.registerGet),
		mux.IQFunc(stanza.SetIQ, q(nsRegister), l.registerSet),
		mux.IQFunc(stanza.GetIQ, q(nsGateway), l.gatewayGet),
		mux.IQFunc(stanza.SetIQ, q(nsGateway), l.gatewaySet),
		mux.IQFunc(stanza.SetIQ, xml.Name{Space: nsCommands, Local: "command"}, l.commandSet),
		mux.IQFunc(stanza.SetIQ, q(nsMUCOwner), l.mucOwnerSet),
	)
	return l
}

// HandleXMPP implements xmpp.Handler.
func (l *link) HandleXMPP(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	if start.Name.Space != component.NSAccept {
		l.c.log.Debug("xmpp ignoring top-level element", "name", start.Name.Local, "ns", start.Name.Space)
		return nil
	}
	switch start.Name.Local {
	case "message":
		return l.handleMessage(t, *start)
	case "presence":
		return l.handlePresence(t, *start)
	case "iq":
		return l.handleIQ(t, *start)
	}
	return nil
}

// addrs parses from and to of an inbound message or presence.
// ok is false (and the stanza is dropped) when from is missing or either is
// malformed; a missing to means the component itself.
func (l *link) addrs(start xml.StartElement) (from, to jid.JID, ok bool) {
	f, t := attrValue(start.Attr, "from"), attrValue(start.Attr, "to")
	var err error
	if f == "" {
		l.c.log.Debug("xmpp dropping stanza without from", "stanza", start.Name.Local)
		return from, to, false
	}
	if from, err = l.c.jids.parse(f); err != nil {
		l.c.log.Debug("xmpp dropping stanza with malformed from", "stanza", start.Name.Local, "err", err)
		return from, to, false
	}
	to = l.c.domain
	if t != "" {
		if to, err = l.c.jids.parse(t); err != nil {
			l.c.log.Debug("xmpp dropping stanza with malformed to", "stanza", start.Name.Local, "err", err)
			return from, to, false
		}
	}
	return from, to, true
}

func (l *link) handleMessage(t xml.TokenReader, start xml.StartElement) error {
	m, priv, err := decodeMessage(t, start)
	if err != nil {
		return fmt.Errorf("xmppside: read message: %w", err)
	}
	var ok bool
	if m.From, m.To, ok = l.addrs(start); !ok {
		return nil
	}
	if priv != nil {
		l.c.grantPrivileges(m.From, priv)
		return nil
	}
	if l.c.slotCheckMessage(m) {
		return nil
	}
	l.c.h.HandleMessage(m)
	return nil
}

func (l *link) handlePresence(t xml.TokenReader, start xml.StartElement) error {
	p, err := decodePresence(t, start)
	if err != nil {
		return fmt.Errorf("xmppside: read presence: %w", err)
	}
	if !validPresenceType(p.Type) {
		l.c.log.Debug("xmpp dropping presence of unknown type", "type", p.Type)
		return nil
	}
	var ok bool
	if p.From, p.To, ok = l.addrs(start); !ok {
		return nil
	}
	l.c.h.HandlePresence(p)
	return nil
}

func (l *link) handleIQ(t xmlstream.TokenReadEncoder, start xml.StartElement) error {
	typ := stanza.IQType(attrValue(start.Attr, "type"))
	if typ == stanza.ResultIQ || typ == stanza.ErrorIQ {
		return l.deliverReply(t, start)
	}
	f := attrValue(start.Attr, "from")
	from, err := parseJID(f)
	if f == "" || err != nil {
		l.c.log.Debug("xmpp dropping IQ without a valid from", "from", f)
		return nil
	}
	iq := stanza.IQ{ID: attrValue(start.Attr, "id"), From: from, To: l.c.domain, Type: typ}
	if to := attrValue(start.Attr, "to"); to != "" {
		j, err := parseJID(to)
		switch {
		case err != nil:
			return l.replyError(t, iq, newStanzaError(stanza.JIDMalformed))
		case j.Domainpart() != l.c.domain.Domainpart():
			return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
		}
		iq.To = j
	}
	if typ != stanza.GetIQ && typ != stanza.SetIQ {
		return l.replyError(t, iq, newStanzaError(stanza.BadRequest))
	}
	payload, err := firstChild(t)
	if err != nil {
		return fmt.Errorf("xmppside: read iq: %w", err)
	}
	if payload == nil {
		return l.replyError(t, iq, newStanzaError(stanza.BadRequest))
	}
	h, ok := l.mux.IQHandler(typ, payload.Name)
	if !ok {
		return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
	}
	return h.HandleIQ(iq, t, payload)
}

// firstChild returns the first child element, or nil at the end of the
// enclosing element.
func firstChild(r xml.TokenReader) (*xml.StartElement, error) {
	for {
		tok, err := r.Token()
		if tok == nil && err != nil {
			if err == io.EOF {
				return nil, nil
			}
			return nil, err
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			se := tk.Copy()
			return &se, nil
		case xml.EndElement:
			return nil, nil
		}
		if err != nil {
			if err == io.EOF {
				return nil, nil
			}
			return nil, err
		}
	}
}

// replyError answers iq with an error on the read loop.
func (l *link) replyError(w xmlstream.TokenWriter, iq stanza.IQ, se stanza.Error) error {
	return l.reply(w, iq, iq.Error(se))
}

// replyResult answers iq with a result on the read loop.
func (l *link) replyResult(w xmlstream.TokenWriter, iq stanza.IQ, payload xml.TokenReader) error {
	return l.reply(w, iq, iq.Result(payload))
}

// reply writes the answer r to iq on the read loop, or, when r would be
// larger than MaxStanzaSize, internal-server-error instead.
func (l *link) reply(w xmlstream.TokenWriter, iq stanza.IQ, r xml.TokenReader) error {
	toks, err := l.c.answerTokens(iq, r)
	if err != nil || toks == nil {
		return err
	}
	_, err = xmlstream.Copy(w, &tokenSlice{toks: toks})
	return err
}

// answerTokens returns the IQ answer r as tokens when it fits in
// MaxStanzaSize; otherwise the tokens of an internal-server-error answer
// to iq, or nil (nothing to send, logged) when even that does not fit.
func (c *Component) answerTokens(iq stanza.IQ, r xml.TokenReader) ([]xml.Token, error) {
	toks, err := readTokens(r)
	if err != nil {
		return nil, err
	}
	err = c.checkTokens("iq answer", toks)
	if err == nil {
		return toks, nil
	}
	if !errors.Is(err, ErrStanzaTooLarge) {
		return nil, err
	}
	c.log.Warn("xmpp IQ answer too large; answering with an error instead", "to", iq.From.String(), "id", iq.ID, "err", err)
	toks, err = readTokens(iq.Error(Error{Condition: stanza.InternalServerError, Text: "the answer is too large"}.StanzaError()))
	if err != nil {
		return nil, err
	}
	if err := c.checkTokens("iq error", toks); err != nil {
		c.log.Warn("xmpp IQ left unanswered: even an error answer is too large", "to", iq.From.String(), "id", iq.ID, "err", err)
		return nil, nil
	}
	return toks, nil
}

// async runs f in its own goroutine (bounded per link) and sends the IQ
// answer it produces. Blocking work such as a Registrar call goes here,
// never on the read loop.
func (l *link) async(w xmlstream.TokenWriter, iq stanza.IQ, what string, f func(ctx context.Context) (xml.TokenReader, error)) error {
	return l.asyncOr(w, iq, what, nil, f)
}

// asyncOr is async, calling refused (if not nil) when f is not run because
// too many requests are in progress.
func (l *link) asyncOr(w xmlstream.TokenWriter, iq stanza.IQ, what string, refused func(), f func(ctx context.Context) (xml.TokenReader, error)) error {
	select {
	case l.sem <- struct{}{}:
	default:
		if refused != nil {
			refused()
		}
		return l.replyError(w, iq, Error{Condition: stanza.ResourceConstraint, Text: "too many requests in progress, retry later"}.StanzaError())
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.sem }()
		ctx, cancel := context.WithTimeout(l.ctx, l.c.cfg.RegisterTimeout)
		defer cancel()
		payload, err := f(ctx)
		var reply xml.TokenReader
		if err != nil {
			se, ok := asStanzaError(err, stanza.InternalServerError)
			if !ok {
				if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) && l.ctx.Err() == nil {
					se = newStanzaError(stanza.RemoteServerTimeout)
				}
				l.c.log.Warn("xmpp request failed", "op", what, "user", iq.From.Bare().String(), "err", err)
			}
			reply = iq.Error(se)
		} else {
			reply = iq.Result(payload)
		}
		toks, err := l.c.answerTokens(iq, reply)
		if err == nil && toks != nil {
			err = l.write(&tokenSlice{toks: toks})
		}
		if err != nil {
			l.c.log.Debug("xmpp could not answer IQ", "op", what, "err", err)
		}
	}()
	return nil
}

// write sends one stanza on the link. mellium gets a context that never
// ends: the write is bounded by linkConn's per-write deadline, and a
// cancelled context must not cut a stanza in half. Any error tears the link
// down, as the stream may hold part of the stanza.
func (l *link) write(r xml.TokenReader) error {
	if err := l.sess.Send(context.Background(), r); err != nil {
		l.conn.expire(time.Now())
		return err
	}
	return nil
}

// send writes one stanza on the link once it is known to fit in
// MaxStanzaSize: bound is an upper bound of its encoded size and build
// makes it (see checkSize). what names it in errors.
// The size is checked first, then the caller's ctx; the write itself is
// bounded by writeTimeout and the link, never cut by the caller (a
// half-written stanza would break the stream). A failed write tears the
// link down.
func (c *Component) send(ctx context.Context, what string, bound int, build func() xml.TokenReader) error {
	if err := c.checkSize(what, bound, build); err != nil {
		return err
	}
	return c.sendChecked(ctx, build())
}

// sendChecked writes a stanza whose size was checked.
func (c *Component) sendChecked(ctx context.Context, r xml.TokenReader) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("xmppside: send: %w", err)
	}
	l := c.current()
	if l == nil {
		return ErrNotConnected
	}
	if err := l.write(r); err != nil {
		return fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	return nil
}
