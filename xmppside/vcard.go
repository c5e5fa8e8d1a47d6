package xmppside

import (
	"context"
	"encoding/xml"
	"slices"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Namespaces of the vCards the component answers.
const (
	nsVCardTemp  = "vcard-temp"                       // XEP-0054
	nsVCard4     = "urn:ietf:params:xml:ns:vcard-4.0" // RFC 6351, in XEP-0292
	nsVCard4Node = "urn:xmpp:vcard4"                  // XEP-0292's PEP node and disco feature
	nsPubSub     = "http://jabber.org/protocol/pubsub"
)

// pepItemID is the item id of the single item of the PEP nodes the
// component answers (vCard4 and nickname).
const pepItemID = "current"

// Card is what the component tells about an entity (itself or a contact):
// each empty field is left out of the answer.
type Card struct {
	// FullName is the name to show (vCard FN). For the component domain an
	// empty FullName is the disco identity name (see ServiceNamer).
	FullName string
	// Nickname is the entity's nickname (vCard NICKNAME; the XEP-0172
	// nickname on the PEP nick node).
	Nickname string
	// Note is free text about the entity (vcard-temp NOTE and DESC,
	// vCard4 note).
	Note string
}

// CardProvider may be implemented by a Handler to answer vCard requests
// about the component domain and contact JIDs: XEP-0054 (vcard-temp IQ
// get), and over the PEP protocol (a XEP-0060 items get) XEP-0292 vCard4
// (node urn:xmpp:vcard4) and the XEP-0172 nickname (node
// http://jabber.org/protocol/nick). The component then advertises
// vcard-temp and urn:xmpp:vcard4 in disco#info of both.
//
// about is a bare JID: the component domain or a contact; asker is the full
// JID of the requester. Errors are as for Registrar.
type CardProvider interface {
	// CardNow is called first, on the read loop, and must not block: ok
	// reports that it answered (with a Card or an error) from what it has
	// at hand; otherwise the component asks Card.
	CardNow(asker, about jid.JID) (c Card, ok bool, err error)
	// Card is called in its own goroutine, bounded together with the
	// registration IQs (Config.MaxRegistrations), with a context that ends
	// at RegisterTimeout or when the link goes down.
	Card(ctx context.Context, asker, about jid.JID) (Card, error)
}

// ServiceNamer may be implemented by a Handler to name the component: the
// disco#info identity name of the component domain, and the FullName of
// its Card when the CardProvider leaves it empty. An empty name means
// Config.IdentityName. It is called on the read loop and must not block.
type ServiceNamer interface {
	ServiceName() string
}

// identityName is the component's name: the Handler's ServiceName if it
// has one, else Config.IdentityName.
func (c *Component) identityName() string {
	if sn, ok := c.h.(ServiceNamer); ok {
		if n := sn.ServiceName(); n != "" {
			return n
		}
	}
	return c.cfg.IdentityName
}

// cards returns the Handler's CardProvider, if it is one.
func (c *Component) cards() (CardProvider, bool) {
	cp, ok := c.h.(CardProvider)
	return cp, ok
}

// withCardFeatures adds the vCard features to feats when they are
// answered. feats is not modified.
func (c *Component) withCardFeatures(feats []string) []string {
	if _, ok := c.cards(); !ok {
		return feats
	}
	return append(slices.Clip(feats), nsVCardTemp, nsVCard4Node)
}

// card answers iq with what build makes of the Card about iq.To (bare):
// at once when CardNow has it, else from Card in a goroutine of its own.
func (l *link) card(t xmlstream.TokenWriter, iq stanza.IQ, build func(Card) (xml.TokenReader, error)) error {
	cp, ok := l.c.cards()
	if !ok {
		return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
	}
	asker, about := iq.From, iq.To.Bare()
	named := func(c Card) Card {
		if isDomain(about) && c.FullName == "" {
			c.FullName = l.c.identityName()
		}
		return c
	}
	if c, ok, err := cp.CardNow(asker, about); ok {
		if err != nil {
			se, typed := asStanzaError(err, stanza.InternalServerError)
			if !typed {
				l.c.log.Warn("xmpp request failed", "op", "vcard", "user", asker.Bare().String(), "err", err)
			}
			return l.replyError(t, iq, se)
		}
		payload, err := build(named(c))
		if err != nil {
			return err
		}
		return l.replyResult(t, iq, payload)
	}
	return l.async(t, iq, "vcard", func(ctx context.Context) (xml.TokenReader, error) {
		c, err := cp.Card(ctx, asker, about)
		if err != nil {
			return nil, err
		}
		return build(named(c))
	})
}

// vcardGet answers a XEP-0054 vCard request.
func (l *link) vcardGet(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
	return l.card(t, iq, func(c Card) (xml.TokenReader, error) { return vcardTemp(c), nil })
}

// vcardTemp builds the vcard-temp form of c.
func vcardTemp(c Card) xml.TokenReader {
	var kids []xml.TokenReader
	add := func(name, v string) {
		if v != "" {
			kids = append(kids, textElem("", name, v))
		}
	}
	add("FN", c.FullName)
	add("NICKNAME", c.Nickname)
	add("NOTE", c.Note)
	add("DESC", c.Note)
	return elem(nsVCardTemp, "vCard", nil, kids...)
}

// vcard4 builds the vCard4 (RFC 6351) form of c.
func vcard4(c Card) xml.TokenReader {
	var kids []xml.TokenReader
	add := func(name, v string) {
		if v != "" {
			kids = append(kids, elem("", name, nil, textElem("", "text", v)))
		}
	}
	add("fn", c.FullName)
	add("nickname", c.Nickname)
	add("note", c.Note)
	return elem(nsVCard4, "vcard", nil, kids...)
}

// wirePubSub is a XEP-0060 <pubsub/> get as far as the component reads it.
type wirePubSub struct {
	Items *struct {
		Node string `xml:"node,attr"`
	} `xml:"items"`
}

// pubsubGet answers a PEP items request for the vCard4 and nickname nodes
// of the component domain or a contact; any other node is item-not-found,
// any other pubsub request feature-not-implemented.
func (l *link) pubsubGet(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload *xml.StartElement) error {
	var q wirePubSub
	if err := decodeElem(t, *payload, &q); err != nil {
		return err
	}
	if q.Items == nil {
		return l.replyError(t, iq, newStanzaError(stanza.FeatureNotImplemented))
	}
	node := q.Items.Node
	var item func(Card) xml.TokenReader
	switch node {
	case nsVCard4Node:
		item = vcard4
	case nsNick:
		item = func(c Card) xml.TokenReader {
			if c.Nickname == "" {
				return nil
			}
			return textElem(nsNick, "nick", c.Nickname)
		}
	default:
		return l.replyError(t, iq, newStanzaError(stanza.ItemNotFound))
	}
	return l.card(t, iq, func(c Card) (xml.TokenReader, error) {
		var items []xml.TokenReader
		if v := item(c); v != nil {
			items = append(items, elem("", "item", attrs("id", pepItemID), v))
		}
		return elem(nsPubSub, "pubsub", nil, elem("", "items", attrs("node", node), items...)), nil
	})
}
