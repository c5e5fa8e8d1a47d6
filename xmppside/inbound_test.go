package xmppside

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

var (
	juliet  = jid.MustParse("juliet@localhost/balcony")
	contact = jid.MustParse("12345@imip.localhost")
	stamp   = time.Date(2002, 9, 10, 23, 8, 25, 0, time.UTC)
)

// sentinel is sent after each case: whatever arrives before it is what the
// case delivered.
const sentinelPresence = `<presence from="end@localhost/x" to="imip.localhost" id="end"/>`

func TestPresenceDelivered(t *testing.T) {
	env := startEnv(t, nil)
	tests := []struct {
		name string
		raw  string
		want Presence
	}{
		0: {"no children", `<presence from="juliet@localhost/balcony" to="12345@imip.localhost"/>`,
			Presence{From: juliet, To: contact}},
		1: {"everything", `<presence id="p1" from="juliet@localhost/balcony" to="12345@imip.localhost">
			<show>away</show><status>out</status><status xml:lang="de">weg</status><priority>5</priority>
			<nick xmlns="http://jabber.org/protocol/nick">Jules</nick>
			<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="http://x" ver="abc="/>
			<delay xmlns="urn:xmpp:delay" stamp="2002-09-10T23:08:25Z"/>
			<x xmlns="vcard-temp:x:update"><photo/></x></presence>`,
			Presence{ID: "p1", From: juliet, To: contact, Show: "away", Status: "out", Priority: 5, Nick: "Jules",
				CapsNode: "http://x", CapsVer: "abc=", CapsHash: "sha-1", Delay: stamp}},
		2: {"unavailable", `<presence type="unavailable" from="juliet@localhost/balcony" to="12345@imip.localhost"><status>bye</status></presence>`,
			Presence{From: juliet, To: contact, Type: "unavailable", Status: "bye"}},
		3: {"subscribe bare", `<presence type="subscribe" from="juliet@localhost" to="12345@imip.localhost"/>`,
			Presence{From: juliet.Bare(), To: contact, Type: "subscribe"}},
		4: {"probe to domain", `<presence type="probe" from="juliet@localhost" to="imip.localhost"/>`,
			Presence{From: juliet.Bare(), To: jid.MustParse("imip.localhost"), Type: "probe"}},
		5: {"error", `<presence type="error" from="juliet@localhost" to="12345@imip.localhost"><error type="cancel" by="localhost"><remote-server-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">gone</text></error></presence>`,
			Presence{From: juliet.Bare(), To: contact, Type: "error", Error: &stanza.Error{
				Type: stanza.Cancel, By: jid.MustParse("localhost"), Condition: stanza.RemoteServerNotFound, Text: map[string]string{"": "gone"}}}},
		6: {"bad show and priority ignored", `<presence from="juliet@localhost/balcony" to="12345@imip.localhost"><show>sleeping</show><priority>999</priority></presence>`,
			Presence{From: juliet, To: contact}},
	}
	for i, tc := range tests {
		env.fc.send(t, tc.raw)
		env.fc.send(t, sentinelPresence)
		got := env.h.nextPresence(t)
		if diff := cmp.Diff(tc.want, got, cmpJID); diff != "" {
			t.Errorf("%d %s: delivered presence (-want +got):\n%s", i, tc.name, diff)
		}
		if p := env.h.nextPresence(t); p.ID != "end" {
			t.Errorf("%d %s: delivered more than once; then %+v", i, tc.name, p)
		}
	}
}

// cmpJID compares JIDs by value.
var cmpJID = cmp.Comparer(func(a, b jid.JID) bool { return a.Equal(b) })

func TestMessageDelivered(t *testing.T) {
	env := startEnv(t, nil)
	tests := []struct {
		name string
		raw  string
		want Message
	}{
		0: {"body chatstate receipt once", `<message id="m1" type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost">
			<body>hello</body><active xmlns="http://jabber.org/protocol/chatstates"/><request xmlns="urn:xmpp:receipts"/>
			<origin-id xmlns="urn:xmpp:sid:0" id="o1"/></message>`,
			Message{ID: "m1", Type: "chat", From: juliet, To: contact, Body: "hello", ChatState: "active", ReceiptRequest: true}},
		1: {"no type is normal", `<message from="juliet@localhost/balcony" to="12345@imip.localhost"><subject>s</subject><body>b</body><thread>t1</thread></message>`,
			Message{Type: "normal", From: juliet, To: contact, Body: "b", Subject: "s", Thread: "t1"}},
		2: {"unknown type is normal", `<message type="shout" from="juliet@localhost/balcony" to="12345@imip.localhost"><body>b</body></message>`,
			Message{Type: "normal", From: juliet, To: contact, Body: "b"}},
		3: {"chat state only", `<message type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`,
			Message{Type: "chat", From: juliet, To: contact, ChatState: "composing"}},
		4: {"receipt", `<message from="juliet@localhost/balcony" to="12345@imip.localhost"><received xmlns="urn:xmpp:receipts" id="abc"/></message>`,
			Message{Type: "normal", From: juliet, To: contact, ReceiptReceived: "abc"}},
		5: {"nick and delay", `<message type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost"><body>b</body>
			<nick xmlns="http://jabber.org/protocol/nick">Jules</nick><delay xmlns="urn:xmpp:delay" from="localhost" stamp="2002-09-10T23:08:25.000Z"/></message>`,
			Message{Type: "chat", From: juliet, To: contact, Body: "b", Nick: "Jules", Delay: stamp, DelayFrom: jid.MustParse("localhost")}},
		6: {"legacy delay", `<message from="juliet@localhost/balcony" to="12345@imip.localhost"><body>b</body><x xmlns="jabber:x:delay" stamp="20020910T23:08:25"/></message>`,
			Message{Type: "normal", From: juliet, To: contact, Body: "b", Delay: stamp}},
		7: {"error", `<message type="error" id="m2" from="12345@imip.localhost" to="imip.localhost"><body>b</body><error type="wait"><resource-constraint xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></message>`,
			Message{ID: "m2", Type: "error", From: contact, To: jid.MustParse("imip.localhost"), Body: "b",
				Error: &stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint}}},
		8: {"langs", `<message type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost"><body xml:lang="de">hallo</body><body>hi</body></message>`,
			Message{Type: "chat", From: juliet, To: contact, Body: "hi"}},
		9: {"headline", `<message type="headline" from="juliet@localhost/balcony" to="12345@imip.localhost"><body>news</body></message>`,
			Message{Type: "headline", From: juliet, To: contact, Body: "news"}},
		10: {"empty message", `<message from="juliet@localhost/balcony" to="12345@imip.localhost"/>`,
			Message{Type: "normal", From: juliet, To: contact}},
		11: {"escaped text", `<message type="chat" from="juliet@localhost/balcony" to="12345@imip.localhost"><body>a &lt;b&gt; &amp; c</body></message>`,
			Message{Type: "chat", From: juliet, To: contact, Body: "a <b> & c"}},
	}
	for i, tc := range tests {
		env.fc.send(t, tc.raw)
		env.fc.send(t, `<message id="end" from="end@localhost/x" to="imip.localhost"/>`)
		got := env.h.nextMessage(t)
		if diff := cmp.Diff(tc.want, got, cmpJID); diff != "" {
			t.Errorf("%d %s: delivered message (-want +got):\n%s", i, tc.name, diff)
		}
		if m := env.h.nextMessage(t); m.ID != "end" {
			t.Errorf("%d %s: delivered more than once; then %+v", i, tc.name, m)
		}
	}
}

// TestHostileStanzas checks that nothing a peer sends ends the link.
func TestHostileStanzas(t *testing.T) {
	env := startEnv(t, nil)
	huge := strings.Repeat("x", 1<<20)
	hostile := []string{
		0:  `<message from="juliet@localhost/x" to="1@imip.localhost"><body>` + huge + `</body></message>`,
		1:  `<message to="1@imip.localhost"><body>no from</body></message>`,
		2:  `<presence/>`,
		3:  `<message from="a@b@c" to="1@imip.localhost"><body>bad from</body></message>`,
		4:  `<message from="juliet@localhost/x" to="@@"><body>bad to</body></message>`,
		5:  `<presence type="dance" from="juliet@localhost/x" to="1@imip.localhost"/>`,
		6:  `<iq type="get" id="h1" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`,
		7:  `<iq type="result" id="nobody-asked" from="juliet@localhost/x" to="imip.localhost"/>`,
		8:  `<iq type="error" id="nobody-asked2" from="juliet@localhost/x" to="imip.localhost"><error type="cancel"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`,
		9:  `<unknown xmlns="urn:example:top">stuff<deep><deeper/></deep></unknown>`,
		10: `<message from="juliet@localhost/x" to="1@imip.localhost"><a xmlns="urn:x"><b><c><d>deep</d></c></b></a><error by="a@b@c"><x/></error></message>`,
		11: `<presence from="juliet@localhost/x" to="1@imip.localhost"><priority>lots</priority><delay xmlns="urn:xmpp:delay" stamp="yesterday"/></presence>`,
		12: `<message from="juliet@localhost/x" to="1@imip.localhost"><privilege xmlns="urn:xmpp:privilege:2"><perm access="roster" type="both"/></privilege></message>`,
		13: `<iq type="set" id="h2" from="a@b@c" to="imip.localhost"><query xmlns="jabber:iq:register"/></iq>`,
		14: `<iq type="set" id="h3" from="juliet@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit"><field><value/></field><unexpected/></x></query></iq>`,
		15: `<message from="juliet@.." to="1@imip.localhost"><body>from an address that does not read back</body></message>`,
		16: `<presence from="0.." to="1@imip.localhost"/>`,
		17: `<iq type="get" id="h4" from="juliet@../x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`,
	}
	for _, raw := range hostile {
		env.fc.send(t, raw)
	}
	// Exactly these reach the Handler: the huge body, the message with
	// junk children and the presence with a bad priority.
	if m := env.h.nextMessage(t); len(m.Body) != 1<<20 {
		t.Errorf("huge body delivered with %d bytes", len(m.Body))
	}
	if m := env.h.nextMessage(t); m.Body != "" || m.Error == nil || m.Error.Condition != stanza.UndefinedCondition {
		t.Errorf("junk message = %+v", m)
	}
	if p := env.h.nextPresence(t); p.Priority != 0 || !p.Delay.IsZero() {
		t.Errorf("junk presence = %+v", p)
	}
	// The bad register form is answered; the rest got no reply.
	if n := env.fc.expect(t); n.attr("id") != "h3" || errCondition(n) != "not-acceptable" {
		t.Errorf("reply to the junk register form = %s", n)
	}
	reply := env.fc.roundTrip(t, `<iq type="get" id="alive" from="juliet@localhost/x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	if reply.attr("type") != "result" {
		t.Fatalf("link dead after hostile stanzas: %s", reply)
	}
	select {
	case m := <-env.h.messages:
		t.Errorf("extra message delivered: %+v", m)
	case p := <-env.h.presences:
		t.Errorf("extra presence delivered: %+v", p)
	case err := <-env.h.disconnected:
		t.Errorf("link dropped: %v", err)
	default:
	}
	if env.c.Privileges().Namespace != "" {
		t.Errorf("a user granted privileges: %+v", env.c.Privileges())
	}
}

// TestNamespacedAttributesIgnored: an attribute is in no namespace unless
// prefixed, so only unprefixed from, to, type and id are the stanza's. An
// attribute named from in the stream's namespace by a prefix (which a
// server passes through beside the from it stamps) must not stand for the
// stanza's own: it let one user send as another.
func TestNamespacedAttributesIgnored(t *testing.T) {
	env := startEnv(t, nil)
	const ns = `xmlns:c="jabber:component:accept" xmlns:f="urn:evil"`
	// The forged attributes come first, where a lookup by local name
	// finds them first.
	env.fc.send(t, `<message `+ns+` c:from="romeo@localhost/r" from="juliet@localhost/balcony" c:to="999@imip.localhost" to="12345@imip.localhost" c:type="error" f:type="error" type="chat" c:id="forged" id="m1"><body>hi</body></message>`)
	if got, want := env.h.nextMessage(t), (Message{ID: "m1", Type: "chat", From: juliet, To: contact, Body: "hi"}); !cmp.Equal(want, got, cmpJID) {
		t.Errorf("message with namespaced attributes delivered as %+v, want %+v", got, want)
	}
	env.fc.send(t, `<presence `+ns+` c:from="romeo@localhost/r" from="juliet@localhost/balcony" to="12345@imip.localhost" c:type="unavailable"/>`)
	if got, want := env.h.nextPresence(t), (Presence{From: juliet, To: contact}); !cmp.Equal(want, got, cmpJID) {
		t.Errorf("presence with namespaced attributes delivered as %+v, want %+v", got, want)
	}
	// With only a namespaced from, the stanza has no sender: dropped.
	env.fc.send(t, `<message `+ns+` c:from="romeo@localhost/r" to="12345@imip.localhost" type="chat"><body>nobody</body></message>`)
	env.fc.send(t, `<presence `+ns+` c:from="romeo@localhost/r" to="12345@imip.localhost"/>`)
	env.fc.send(t, `<iq `+ns+` c:from="romeo@localhost/r" type="get" id="i1" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	// An IQ's type in a namespace is no type: a get is answered as a get.
	if reply := env.fc.roundTrip(t, `<iq `+ns+` c:type="result" type="get" id="i2" from="juliet@localhost/balcony" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`); reply.attr("type") != "result" || reply.attr("id") != "i2" {
		t.Errorf("ping with a namespaced type answered %s", reply)
	}
	env.fc.send(t, sentinelPresence)
	if p := env.h.nextPresence(t); p.ID != "end" {
		t.Errorf("a stanza with only a namespaced from was delivered: %+v", p)
	}
	select {
	case m := <-env.h.messages:
		t.Errorf("a message with only a namespaced from was delivered: %+v", m)
	default:
	}
}

// The address cache answers as parseJID does, keeps only accepted
// addresses, and stays within its bound.
func TestJIDCache(t *testing.T) {
	var c jidCache
	for _, s := range []string{"alice@example.org/r", "6340564@imip.example.org", "example.org"} {
		want, _ := parseJID(s)
		for range 2 { // parsed, then cached
			got, err := c.parse(s)
			if err != nil || !got.Equal(want) || got.String() != want.String() {
				t.Errorf("parse(%q) = %v, %v; want %v", s, got, err, want)
			}
		}
	}
	for _, bad := range []string{"@example.org", "a@b@c", "x@."} {
		if _, err := c.parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
		if _, ok := c.m[bad]; ok {
			t.Errorf("%q cached", bad)
		}
	}
	for i := range 3 * jidCacheMax {
		if _, err := c.parse(fmt.Sprintf("u%d@example.org", i)); err != nil {
			t.Fatal(err)
		}
		if len(c.m) > jidCacheMax {
			t.Fatalf("%d addresses cached, bound %d", len(c.m), jidCacheMax)
		}
	}
}
