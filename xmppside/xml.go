package xmppside

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"

	"mellium.im/xmlstream"
)

// elem builds <name attrs...>children...</name>.
func elem(space, local string, attrs []xml.Attr, children ...xml.TokenReader) xml.TokenReader {
	return xmlstream.Wrap(
		xmlstream.MultiReader(children...),
		xml.StartElement{Name: xml.Name{Space: space, Local: local}, Attr: attrs},
	)
}

// textElem builds <name>text</name>; an empty text gives an empty element.
func textElem(space, local, text string) xml.TokenReader {
	var inner xml.TokenReader
	if text != "" {
		inner = xmlstream.Token(xml.CharData(text))
	}
	return xmlstream.Wrap(inner, xml.StartElement{Name: xml.Name{Space: space, Local: local}})
}

// attrs builds attributes from name/value pairs, leaving out empty values.
func attrs(kv ...string) []xml.Attr {
	out := make([]xml.Attr, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		out = append(out, xml.Attr{Name: xml.Name{Local: kv[i]}, Value: kv[i+1]})
	}
	return out
}

// attrValue returns the value of the unqualified attribute local.
// Only an attribute without a prefix counts: an unprefixed attribute is in
// no namespace (the default namespace does not apply to attributes), and
// one bound to a namespace by a prefix, even the stream's own
// (xmlns:c="jabber:component:accept" c:from="..."), is another attribute
// that a server passes through beside the from it stamps. Taking it for
// the stanza's own let a user send as another.
func attrValue(a []xml.Attr, local string) string {
	for _, at := range a {
		if at.Name.Local == local && at.Name.Space == "" {
			return at.Value
		}
	}
	return ""
}

// langText is an element whose text may carry xml:lang (body, status...).
type langText struct {
	Lang string `xml:"http://www.w3.org/XML/1998/namespace lang,attr"`
	Text string `xml:",chardata"`
}

// pickText prefers the text without xml:lang, else the first.
func pickText(all []langText) string {
	for _, t := range all {
		if t.Lang == "" {
			return t.Text
		}
	}
	if len(all) > 0 {
		return all[0].Text
	}
	return ""
}

// randomID returns a random stanza id.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// decodeElem decodes into v the element that start opened; r is positioned
// just after start (as in a mux handler) and is left just after its end.
func decodeElem(r xml.TokenReader, start xml.StartElement, v any) error {
	return xml.NewTokenDecoder(xmlstream.Wrap(xmlstream.Inner(r), start)).Decode(v)
}
