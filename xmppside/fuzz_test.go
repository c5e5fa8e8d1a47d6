package xmppside

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// streamOpen is the stream header a component reads top-level stanzas in:
// unprefixed elements are in jabber:component:accept, as on a real link.
const streamOpen = `<stream:stream xmlns="jabber:component:accept" xmlns:stream="http://etherx.jabber.org/streams" from="localhost" id="s1">`

// fuzzDomain is the component the fuzzed stanzas reach.
var fuzzDomain = jid.MustParse("imip.localhost")

// stanzaSeeds are stanzas of the inbound tests and a few hostile ones.
var stanzaSeeds = []string{
	`<message id="m1" type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost"><body>hello</body><active xmlns="http://jabber.org/protocol/chatstates"/><request xmlns="urn:xmpp:receipts"/></message>`,
	`<message from="juliet@localhost/balcony" to="12345@imip.localhost"><subject>s</subject><body>b</body><thread>t1</thread></message>`,
	`<message type="shout" from="juliet@localhost/balcony" to="12345@imip.localhost"><body>b</body></message>`,
	`<message from="juliet@localhost/balcony" to="12345@imip.localhost"><received xmlns="urn:xmpp:receipts" id="abc"/></message>`,
	`<message type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost"><body>b</body><nick xmlns="http://jabber.org/protocol/nick">Jules</nick><delay xmlns="urn:xmpp:delay" from="localhost" stamp="2002-09-10T23:08:25.000Z"/></message>`,
	`<message from="juliet@localhost/balcony" to="12345@imip.localhost"><body>b</body><x xmlns="jabber:x:delay" stamp="20020910T23:08:25"/></message>`,
	`<message type="error" id="m2" from="12345@imip.localhost" to="imip.localhost"><body>b</body><error type="wait"><resource-constraint xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas" xml:lang="en">full</text></error></message>`,
	`<message type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost"><body xml:lang="de">hallo</body><body>hi &lt;b&gt; &amp; &#xD;&#x10FFFF;</body></message>`,
	`<message from="juliet@localhost/x" to="1@imip.localhost"><a xmlns="urn:x"><b><c><d>deep</d></c></b></a><error by="a@b@c"><x/></error></message>`,
	`<message from="juliet@localhost/x" to="1@imip.localhost"><privilege xmlns="urn:xmpp:privilege:2"><perm access="roster" type="both"/></privilege></message>`,
	`<message type="chat" from="juliet@localhost/x" to="1@imip.localhost"><body>` + strings.Repeat("long text ", 1000) + `</body></message>`,
	`<presence id="p1" from="juliet@localhost/balcony" to="12345@imip.localhost"><show>away</show><status>out</status><status xml:lang="de">weg</status><priority>5</priority><nick xmlns="http://jabber.org/protocol/nick">Jules</nick><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="http://x" ver="abc="/><delay xmlns="urn:xmpp:delay" stamp="2002-09-10T23:08:25Z"/></presence>`,
	`<presence type="unavailable" from="juliet@localhost/balcony" to="12345@imip.localhost"><status>bye</status></presence>`,
	`<presence type="subscribe" from="juliet@localhost" to="12345@imip.localhost"/>`,
	`<presence type="error" from="juliet@localhost" to="12345@imip.localhost"><error type="cancel" by="localhost"><remote-server-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></presence>`,
	`<presence from="juliet@localhost/x" to="1@imip.localhost"><priority>lots</priority><show>sleeping</show><delay xmlns="urn:xmpp:delay" stamp="yesterday"/></presence>`,
	`<presence type="dance" from="juliet@localhost/x" to="1@imip.localhost"/>`,
	`<iq type="get" id="h1" from="juliet@localhost/x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`,
	`<message from="juliet@localhost/x" to="1@imip.localhost"><body>unclosed</message>`,
}

// FuzzDecodeStanza feeds arbitrary bytes, as a top-level element of the
// component stream, through the decoding the link uses (decodeMessage,
// decodePresence and the address checks of handleMessage and
// handlePresence; for an iq, the search for its payload). It checks that
// nothing panics, that decoding allocates in proportion to the input, that
// decoding fails only for XML that is not well-formed, and that every
// decoded value, sent back the other way (from its to, to its from), goes
// through the outbound path (SendMessage, SendPresence) or is refused with
// a typed error; one that goes re-encodes into a stanza that decodes back to
// the same value.
func FuzzDecodeStanza(f *testing.F) {
	for _, s := range stanzaSeeds {
		f.Add([]byte(s))
	}
	// A component without a link: the send methods check, build and measure
	// the stanza (every part of a split message) and return ErrNotConnected
	// where they would write. The smallest allowed stanza size, so that
	// splitting is reached by inputs of a few KiB.
	c := New(Config{Domain: fuzzDomain, MaxStanzaSize: MinMaxStanzaSize}, nil)
	l := &link{c: c}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, start, ok := fuzzStart(data)
		if !ok {
			return
		}
		switch start.Name.Local {
		case "message":
			var m Message
			var priv *wirePrivilege
			var err error
			allocated := allocs(func() { m, priv, err = decodeMessage(d, start) })
			checkDecoded(t, data, err, allocated)
			if err != nil {
				return
			}
			checkLen(t, data, m.ID, m.Type, m.Body, m.Subject, m.Thread, m.Nick, m.ChatState, m.ReceiptReceived)
			if m.From, m.To, ok = l.addrs(start); !ok || priv != nil {
				return // dropped, or a privilege grant: no Message
			}
			checkMessageOut(t, c, m)
		case "presence":
			var p Presence
			var err error
			allocated := allocs(func() { p, err = decodePresence(d, start) })
			checkDecoded(t, data, err, allocated)
			if err != nil {
				return
			}
			checkLen(t, data, p.ID, p.Type, p.Show, p.Status, p.Nick, p.CapsNode, p.CapsVer, p.CapsHash)
			if !validPresenceType(p.Type) {
				return // dropped by handlePresence
			}
			if p.From, p.To, ok = l.addrs(start); !ok {
				return
			}
			checkPresenceOut(t, c, p)
		case "iq":
			if _, err := firstChild(d); err != nil {
				checkDecoded(t, data, err, 0)
			}
		}
	})
}

// fuzzStart opens a decoder on the stream header followed by data and
// returns it positioned after the first top-level element's start, as
// mellium hands it to link.HandleXMPP. ok is false when data holds no
// start element in the component namespace.
func fuzzStart(data []byte) (*xml.Decoder, xml.StartElement, bool) {
	d := xml.NewDecoder(io.MultiReader(strings.NewReader(streamOpen), bytes.NewReader(data)))
	if _, err := d.Token(); err != nil { // the stream header
		return nil, xml.StartElement{}, false
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, xml.StartElement{}, false
		}
		if se, ok := tok.(xml.StartElement); ok {
			return d, se.Copy(), se.Name.Space == component.NSAccept
		}
	}
}

// allocs returns the bytes allocated while f runs.
func allocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocPerByte and allocBase bound what decoding one stanza may allocate:
// Go's XML decoder allocates a few times the input per token (names,
// attributes, namespace bindings), never from a number in the input.
const (
	allocPerByte = 256
	allocBase    = 256 << 10
)

// checkDecoded checks the outcome of a decode of the first element of data:
// an error only when that element is not well-formed XML (the link then
// drops the stream, as for any broken stream), and an allocation bounded by
// the size of data.
func checkDecoded(t *testing.T, data []byte, err error, allocated uint64) {
	t.Helper()
	if limit := uint64(allocPerByte*len(data) + allocBase); allocated > limit {
		t.Fatalf("decoding %d bytes allocated %d bytes, above %d", len(data), allocated, limit)
	}
	if err == nil {
		return
	}
	d, _, ok := fuzzStart(data)
	if !ok {
		t.Fatalf("decode error %v for input without a start element", err)
	}
	if serr := d.Skip(); serr == nil {
		t.Fatalf("decode error %v for a well-formed element: %q", err, data)
	}
}

// checkLen checks that the decoded strings together are no longer than the
// input: nothing is decoded from a size in the input.
func checkLen(t *testing.T, data []byte, ss ...string) {
	t.Helper()
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	// The type and show strings may be defaults ("normal") not in data.
	if n > len(data)+len("normal") {
		t.Fatalf("decoded %d bytes of text from %d bytes of input", n, len(data))
	}
}

// checkSendErr checks that a send either passed every check and built its
// stanza (ErrNotConnected: it would have been written) or was refused with
// one of the documented typed errors.
func checkSendErr(t *testing.T, what string, err error, v any) bool {
	t.Helper()
	switch {
	case errors.Is(err, ErrNotConnected):
		return true
	case errors.Is(err, ErrAddress), errors.Is(err, ErrStanzaTooLarge), errors.Is(err, ErrInvalidStanza):
		return false
	}
	t.Fatalf("%s of %+v: %v (%T), want ErrNotConnected or a typed refusal", what, v, err, err)
	return false
}

// checkMessageOut sends m back the other way and, when it goes, decodes
// what would be written.
func checkMessageOut(t *testing.T, c *Component, m Message) {
	t.Helper()
	out := m
	out.From, out.To = m.To, m.From
	if !checkSendErr(t, "SendMessage", c.SendMessage(context.Background(), out), out) {
		return
	}
	pm, err := c.prepareMessage(out)
	if err != nil {
		t.Fatalf("SendMessage accepted %+v, prepareMessage refuses it: %v", out, err)
	}
	if c.checkSize("message", messageBound(pm), func() xml.TokenReader { return messageElem(pm) }) != nil {
		return // sent in parts, each checked by SendMessage
	}
	var buf bytes.Buffer
	if err := encodeAsMellium(&buf, messageElem(pm)); err != nil {
		t.Fatalf("encoding %+v: %v", pm, err)
	}
	d, start, ok := fuzzStart(buf.Bytes())
	if !ok || start.Name.Local != "message" {
		t.Fatalf("re-encoded message has no message element: %q", buf.Bytes())
	}
	back, _, err := decodeMessage(d, start)
	if err != nil {
		t.Fatalf("re-encoded message %q does not decode: %v", buf.Bytes(), err)
	}
	if back.From, back.To, ok = (&link{c: c}).addrs(start); !ok {
		t.Fatalf("re-encoded message %q has bad addresses", buf.Bytes())
	}
	want := pm
	if want.Type == "" {
		want.Type = "normal"
	}
	if diff := cmp.Diff(want, back, cmpJID, cmpStanzaErr); diff != "" {
		t.Fatalf("message changed through encode and decode (-sent +read):\n%s\nwire %q", diff, buf.Bytes())
	}
}

// checkPresenceOut is checkMessageOut for a presence.
func checkPresenceOut(t *testing.T, c *Component, p Presence) {
	t.Helper()
	out := p
	out.From, out.To = p.To, p.From
	if !checkSendErr(t, "SendPresence", c.SendPresence(context.Background(), out), out) {
		return
	}
	pp, err := c.preparePresence(out)
	if err != nil {
		t.Fatalf("SendPresence accepted %+v, preparePresence refuses it: %v", out, err)
	}
	var buf bytes.Buffer
	if err := encodeAsMellium(&buf, presenceElem(pp, pp.From, pp.To, pp.Type, pp.ID)); err != nil {
		t.Fatalf("encoding %+v: %v", pp, err)
	}
	d, start, ok := fuzzStart(buf.Bytes())
	if !ok || start.Name.Local != "presence" {
		t.Fatalf("re-encoded presence has no presence element: %q", buf.Bytes())
	}
	back, err := decodePresence(d, start)
	if err != nil {
		t.Fatalf("re-encoded presence %q does not decode: %v", buf.Bytes(), err)
	}
	if back.From, back.To, ok = (&link{c: c}).addrs(start); !ok {
		t.Fatalf("re-encoded presence %q has bad addresses", buf.Bytes())
	}
	want := pp
	// <c/> is written only with a ver, and its hash defaults to sha-1.
	if want.CapsVer == "" {
		want.CapsNode, want.CapsHash = "", ""
	} else if want.CapsHash == "" {
		want.CapsHash = "sha-1"
	}
	if diff := cmp.Diff(want, back, cmpJID, cmpStanzaErr); diff != "" {
		t.Fatalf("presence changed through encode and decode (-sent +read):\n%s\nwire %q", diff, buf.Bytes())
	}
}

// cmpStanzaErr compares stanza errors by what goes on the wire: errorElem
// writes a missing condition as undefined-condition and a missing type as
// the condition's usual type.
var cmpStanzaErr = cmp.Comparer(func(a, b *stanza.Error) bool {
	if a == nil || b == nil {
		return a == b
	}
	onWire := func(e stanza.Error) stanza.Error {
		if e.Condition == "" {
			e.Condition = stanza.UndefinedCondition
		}
		if e.Type == "" {
			e.Type = defaultErrorType(e.Condition)
		}
		return e
	}
	x, y := onWire(*a), onWire(*b)
	return x.Type == y.Type && x.Condition == y.Condition && x.By.Equal(y.By) && cmp.Equal(x.Text, y.Text)
})
