package xmppside

import (
	"encoding/xml"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// parseJID parses an address received from the server. It refuses, besides
// what jid.Parse refuses, an address that jid.Parse accepts but does not
// read back the same from its own string form: "x@.." reads as domainpart
// ".", written "x@." and then refused; "0.." reads as "0.", written back
// as "0." and read as "0". An answer to such an address would go to
// another one or to none.
func parseJID(s string) (jid.JID, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, err
	}
	if back, err := jid.Parse(j.String()); err != nil || !back.Equal(j) {
		return jid.JID{}, fmt.Errorf("xmppside: address %q does not read back the same", s)
	}
	return j, nil
}

// jidCacheMax bounds the addresses a jidCache keeps; beyond, it starts
// afresh.
const jidCacheMax = 4096

// jidCache remembers the addresses parseJID accepted lately: parsing one
// (PRECIS, and again to check it reads back the same) cost about a tenth of
// a message's CPU in the transport, and the same users and contacts write
// again and again. Only accepted addresses are kept. Safe for concurrent
// use; its zero value is ready.
type jidCache struct {
	mu sync.Mutex
	m  map[string]jid.JID
}

// parse is parseJID, cached.
func (c *jidCache) parse(s string) (jid.JID, error) {
	c.mu.Lock()
	j, ok := c.m[s]
	c.mu.Unlock()
	if ok {
		return j, nil
	}
	j, err := parseJID(s)
	if err != nil {
		return j, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= jidCacheMax {
		c.m = make(map[string]jid.JID)
	}
	c.m[s] = j
	c.mu.Unlock()
	return j, nil
}

// inStanzaNS reports whether a child element is in the stanza namespace.
func inStanzaNS(space string) bool {
	return space == component.NSAccept || space == ""
}

// wireError is a stanza <error/> as received; JIDs stay strings so that a
// malformed attribute cannot fail the decoding.
type wireError struct {
	Type     string `xml:"type,attr"`
	By       string `xml:"by,attr"`
	Children []struct {
		XMLName xml.Name
		Lang    string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
		Text    string `xml:",chardata"`
	} `xml:",any"`
}

func (w wireError) stanzaError() *stanza.Error {
	se := &stanza.Error{Type: stanza.ErrorType(w.Type)}
	if by, err := parseJID(w.By); err == nil && w.By != "" {
		se.By = by
	}
	for _, ch := range w.Children {
		if ch.XMLName.Space != nsStanzaErr {
			continue
		}
		if ch.XMLName.Local == "text" {
			if ch.Text != "" {
				if se.Text == nil {
					se.Text = make(map[string]string, 1)
				}
				se.Text[ch.Lang] = ch.Text
			}
			continue
		}
		if se.Condition == "" {
			se.Condition = stanza.Condition(ch.XMLName.Local)
		}
	}
	if se.Condition == "" {
		se.Condition = stanza.UndefinedCondition
	}
	return se
}

// wireDelay is XEP-0203 <delay/> or XEP-0091 <x xmlns="jabber:x:delay"/>.
type wireDelay struct {
	From  string `xml:"from,attr"`
	Stamp string `xml:"stamp,attr"`
}

func (w wireDelay) parse(legacy bool) (time.Time, jid.JID) {
	var t time.Time
	var err error
	if legacy {
		t, err = time.Parse("20060102T15:04:05", w.Stamp)
	} else {
		t, err = time.Parse(time.RFC3339Nano, w.Stamp)
	}
	if err != nil {
		return time.Time{}, jid.JID{}
	}
	t = t.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		// An offset moved it out of the years a XEP-0082 stamp can
		// hold: written back, it would not parse.
		return time.Time{}, jid.JID{}
	}
	from, _ := parseJID(w.From)
	return t, from
}

// wirePrivilege is a XEP-0356 <privilege/> announcement.
type wirePrivilege struct {
	Space string `xml:"-"`
	Perms []struct {
		Access string `xml:"access,attr"`
		Type   string `xml:"type,attr"`
	} `xml:"perm"`
}

// eachChild calls fn with each child element of the stanza that r reads
// (r is positioned after the start element). fn must consume the child,
// with DecodeElement or Skip. Only a broken token stream, or fn, fails it.
func eachChild(r xml.TokenReader, fn func(d *xml.Decoder, se xml.StartElement) error) error {
	d := xml.NewTokenDecoder(xmlstream.Inner(r))
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if err := fn(d, tok); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

// decodeMessage reads a whole <message/> once, children in any order.
// Only a broken token stream returns an error; unknown children are skipped.
func decodeMessage(r xml.TokenReader, start xml.StartElement) (m Message, priv *wirePrivilege, err error) {
	m.ID = attrValue(start.Attr, "id")
	m.Type = attrValue(start.Attr, "type")
	switch m.Type {
	case "chat", "normal", "headline", "groupchat", "error":
	default:
		m.Type = "normal" // RFC 6121 section 5.2.2
	}
	var bodies, subjects []langText
	err = eachChild(r, func(d *xml.Decoder, se xml.StartElement) (err error) {
		n := se.Name
		switch {
		case inStanzaNS(n.Space) && n.Local == "body":
			var t langText
			err = d.DecodeElement(&t, &se)
			bodies = append(bodies, t)
		case inStanzaNS(n.Space) && n.Local == "subject":
			var t langText
			err = d.DecodeElement(&t, &se)
			subjects = append(subjects, t)
		case inStanzaNS(n.Space) && n.Local == "thread":
			err = d.DecodeElement(&m.Thread, &se)
		case inStanzaNS(n.Space) && n.Local == "error":
			var w wireError
			err = d.DecodeElement(&w, &se)
			m.Error = w.stanzaError()
		case n.Space == nsNick && n.Local == "nick":
			err = d.DecodeElement(&m.Nick, &se)
		case n.Space == nsDelay && n.Local == "delay", n.Space == nsLegacyDel && n.Local == "x":
			var w wireDelay
			err = d.DecodeElement(&w, &se)
			if m.Delay.IsZero() || n.Space == nsDelay {
				m.Delay, m.DelayFrom = w.parse(n.Space == nsLegacyDel)
			}
		case n.Space == nsChatStates:
			switch n.Local {
			case "active", "composing", "paused", "inactive", "gone":
				m.ChatState = n.Local
			}
			err = d.Skip()
		case n.Space == nsReceipts && n.Local == "request":
			m.ReceiptRequest = true
			err = d.Skip()
		case n.Space == nsReceipts && n.Local == "received":
			m.ReceiptReceived = attrValue(se.Attr, "id")
			err = d.Skip()
		case (n.Space == NSPrivilege2 || n.Space == NSPrivilege1) && n.Local == "privilege":
			priv = &wirePrivilege{Space: n.Space}
			err = d.DecodeElement(priv, &se)
		default:
			err = d.Skip()
		}
		return err
	})
	if err != nil {
		return m, nil, err
	}
	m.Body = pickText(bodies)
	m.Subject = pickText(subjects)
	return m, priv, nil
}

// validPresenceType reports whether t is a presence type of RFC 6121.
func validPresenceType(t string) bool {
	switch t {
	case "", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error":
		return true
	}
	return false
}

// decodePresence reads a whole <presence/> once.
// Only a broken token stream returns an error.
func decodePresence(r xml.TokenReader, start xml.StartElement) (p Presence, err error) {
	p.ID = attrValue(start.Attr, "id")
	p.Type = attrValue(start.Attr, "type")
	var statuses []langText
	err = eachChild(r, func(d *xml.Decoder, se xml.StartElement) (err error) {
		n := se.Name
		switch {
		case inStanzaNS(n.Space) && n.Local == "show":
			var s string
			err = d.DecodeElement(&s, &se)
			switch s = strings.TrimSpace(s); s {
			case "away", "chat", "dnd", "xa":
				p.Show = s
			}
		case inStanzaNS(n.Space) && n.Local == "status":
			var t langText
			err = d.DecodeElement(&t, &se)
			statuses = append(statuses, t)
		case inStanzaNS(n.Space) && n.Local == "priority":
			var s string
			err = d.DecodeElement(&s, &se)
			if v, e := strconv.Atoi(strings.TrimSpace(s)); e == nil && v >= -128 && v <= 127 {
				p.Priority = v
			}
		case inStanzaNS(n.Space) && n.Local == "error":
			var w wireError
			err = d.DecodeElement(&w, &se)
			p.Error = w.stanzaError()
		case n.Space == nsNick && n.Local == "nick":
			err = d.DecodeElement(&p.Nick, &se)
		case n.Space == nsDelay && n.Local == "delay":
			var w wireDelay
			err = d.DecodeElement(&w, &se)
			p.Delay, _ = w.parse(false)
		case n.Space == nsCaps && n.Local == "c":
			p.CapsNode = attrValue(se.Attr, "node")
			p.CapsVer = attrValue(se.Attr, "ver")
			p.CapsHash = attrValue(se.Attr, "hash")
			err = d.Skip()
		default:
			err = d.Skip()
		}
		return err
	})
	if err != nil {
		return p, err
	}
	p.Status = pickText(statuses)
	return p, nil
}
