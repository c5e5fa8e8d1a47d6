package xmppside

import (
	"encoding/xml"
	"runtime"
	"slices"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// isDomain reports whether j addresses the component itself (any resource).
func isDomain(j jid.JID) bool { return j.Localpart() == "" }

// domainFeatures are what the component domain advertises: only what this
// package implements.
var domainFeatures = []string{
	nsDiscoInfo, nsDiscoItems, nsRegister, nsGateway, nsVersion, nsPing, nsNick,
}

// discoInfo answers disco#info: a gateway identity for the domain, a client
// identity for contacts (node@domain).
func (l *link) discoInfo(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload *xml.StartElement) error {
	node := attrValue(payload.Attr, "node")
	if node != "" && isDomain(iq.To) {
		return l.commandInfo(iq, t, node)
	}
	if node != "" {
		return l.replyError(t, iq, newStanzaError(stanza.ItemNotFound))
	}
	var ident []xml.Attr
	var feats []string
	if isDomain(iq.To) {
		ident = attrs("category", "gateway", "type", "imip", "name", l.c.identityName())
		feats = domainFeatures
		if _, ok := l.c.commander(); ok {
			feats = append(slices.Clip(feats), nsCommands)
		}
	} else {
		ident = attrs("category", "client", "type", "pc")
		feats = append([]string{nsDiscoInfo, nsPing}, l.c.cfg.ContactFeatures...)
	}
	feats = l.c.withCardFeatures(feats)
	children := make([]xml.TokenReader, 0, 1+len(feats))
	children = append(children, elem("", "identity", ident))
	for _, f := range feats {
		children = append(children, elem("", "feature", attrs("var", f)))
	}
	return l.replyResult(t, iq, elem(nsDiscoInfo, "query", nil, children...))
}

// discoItems answers disco#items: the command list on the commands node
// of the domain, else an empty list.
func (l *link) discoItems(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload *xml.StartElement) error {
	if attrValue(payload.Attr, "node") == nsCommands {
		return l.commandItems(iq, t)
	}
	return l.replyResult(t, iq, elem(nsDiscoItems, "query", attrs("node", attrValue(payload.Attr, "node"))))
}

// version answers XEP-0092 for the component domain.
func (l *link) version(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
	if !isDomain(iq.To) {
		return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
	}
	return l.replyResult(t, iq, elem(nsVersion, "query", nil,
		textElem("", "name", l.c.cfg.Name),
		textElem("", "version", l.c.cfg.Version),
		textElem("", "os", runtime.GOOS),
	))
}

// ping answers XEP-0199 for the domain and contacts.
func (l *link) ping(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
	return l.replyResult(t, iq, nil)
}

// gatewayGet answers the XEP-0100 prompt request.
func (l *link) gatewayGet(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
	if !isDomain(iq.To) {
		return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
	}
	desc, prompt := l.c.h.Prompt()
	return l.replyResult(t, iq, elem(nsGateway, "query", nil,
		textElem("", "desc", desc),
		textElem("", "prompt", prompt),
	))
}

// gatewaySet translates a XEP-0100 prompt into a contact JID.
func (l *link) gatewaySet(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload *xml.StartElement) error {
	var q struct {
		Prompt *string `xml:"prompt"`
	}
	if err := decodeElem(t, *payload, &q); err != nil {
		return err
	}
	if !isDomain(iq.To) {
		return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
	}
	if q.Prompt == nil || *q.Prompt == "" {
		return l.replyError(t, iq, Error{Condition: stanza.BadRequest, Text: "missing prompt"}.StanzaError())
	}
	j, err := l.c.h.Translate(*q.Prompt)
	if err != nil {
		se, _ := asStanzaError(err, stanza.NotAcceptable)
		return l.replyError(t, iq, se)
	}
	if j.String() == "" {
		return l.replyError(t, iq, newStanzaError(stanza.JIDMalformed))
	}
	return l.replyResult(t, iq, elem(nsGateway, "query", nil, textElem("", "jid", j.String())))
}
