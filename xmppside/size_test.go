package xmppside

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// smallLimit is the MaxStanzaSize of the tests that need stanzas to be
// refused or cut.
const smallLimit = MinMaxStanzaSize

// hostileTexts are texts whose encoded size is far from their length.
var hostileTexts = []string{
	0:  "",
	1:  "plain ascii",
	2:  strings.Repeat("\t", 100),
	3:  strings.Repeat("&", 100),
	4:  strings.Repeat(`"`, 50) + strings.Repeat("'", 50),
	5:  "<b>bold</b> & \"quoted\" 'single'",
	6:  "line one\nline two\r\nline three",
	7:  "caf\u00e9 \u65e5\u672c \U0001F600",
	8:  "bad utf8: \xff\xfe\xc3",
	9:  "controls: \x00\x01\x1f\x7f",
	10: "\uFFFD real replacement, \uFFFE noncharacter, \xef\xbf\xbd",
	11: "\xed\xa0\x80 surrogate",
}

// randomText returns n bytes mixing the characters that escape the most,
// multi-byte characters and invalid bytes.
func randomText(rng *rand.Rand, n int) string {
	pieces := []string{"\t", "&", `"`, "'", "<", ">", "\n", "\r", " ", "a", "\u00e9", "\U0001F600", "\xff", "\x01", "\uFFFD"}
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// encodeCharData returns what Go's encoder writes for s as character data.
func encodeCharData(t *testing.T, s string) string {
	t.Helper()
	var buf bytes.Buffer
	e := xml.NewEncoder(&buf)
	if err := e.EncodeToken(xml.CharData(s)); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestEscapedTextLen(t *testing.T) {
	texts := append([]string(nil), hostileTexts...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		texts = append(texts, randomText(rng, rng.IntN(300)))
	}
	for b := range 256 {
		texts = append(texts, string([]byte{byte(b)}))
	}
	for i, s := range texts {
		want := len(encodeCharData(t, s))
		if got := escapedTextLen(s); got != want {
			t.Errorf("%d escapedTextLen(%q) = %d, want %d", i, s, got, want)
		}
		if want > escapeBound*len(s) {
			t.Errorf("%d %q encodes to %d bytes, above the bound %d", i, s, want, escapeBound*len(s))
		}
	}
}

// TestBoundsCoverExact checks that the cheap bounds are upper bounds of the
// exact size, for stanzas full of characters that escape to 4 or 5 bytes.
func TestBoundsCoverExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	texts := append([]string(nil), hostileTexts...)
	for range 50 {
		texts = append(texts, randomText(rng, 1+rng.IntN(2000)))
	}
	from := jid.MustParse(`12345@imip.localhost/r&"'<>`)
	to := jid.MustParse(`juliet@localhost/a&"<x>`)
	for i, s := range texts {
		m := Message{ID: s, From: from, To: to, Type: "chat", Body: s, Subject: s, Thread: s, Nick: s,
			Delay: stamp, DelayFrom: from, ChatState: "composing", ReceiptRequest: true, ReceiptReceived: s,
			Error: &stanza.Error{Type: stanza.Cancel, By: to, Condition: stanza.UndefinedCondition, Text: map[string]string{"": s, "en": s}}}
		exact, err := encodedSize(messageElem(m))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if b := messageBound(m); b < exact {
			t.Errorf("%d messageBound = %d < exact %d", i, b, exact)
		}
		p := Presence{Show: "away", Status: s, Priority: -128, Nick: s, CapsNode: s, CapsVer: s, CapsHash: s, Delay: stamp,
			Error: &stanza.Error{Condition: stanza.Gone, Text: map[string]string{"": s}}}
		exact, err = encodedSize(presenceElem(p, from, to, "error", s))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if b := presenceBound(p, from, to, "error", s); b < exact {
			t.Errorf("%d presenceBound = %d < exact %d", i, b, exact)
		}
		iq := stanza.IQ{ID: s, From: from, To: to, Type: stanza.SetIQ, Lang: "en"}
		toks, err := readTokens(iq.Wrap(elem("urn:example:"+s, "query", attrs("a", s, "b", s),
			textElem("", "x", s), elem("", "y", []xml.Attr{{Name: xml.Name{Space: "urn:other", Local: "z"}, Value: s}}))))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		exact, err = encodedSize(&tokenSlice{toks: toks})
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if b := tokensBound(toks); b < exact {
			t.Errorf("%d tokensBound = %d < exact %d", i, b, exact)
		}
		it := RosterItem{JID: from, Name: s, Groups: []string{s, "IMIP"}}
		sizes, err := itemSizes([]RosterItem{it}, "action", []string{"modify"})
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if b := itemBound(it, "action", "modify"); b < sizes[0] {
			t.Errorf("%d itemBound = %d < exact %d", i, b, sizes[0])
		}
	}
}

// TestMeasureMatchesWire checks that encodedSize is exactly what the server
// reads, for each kind of stanza, with texts that escape to several bytes.
func TestMeasureMatchesWire(t *testing.T) {
	env := startEnv(t, nil)
	ctx := context.Background()
	body := "tabs\t\t& amps && \"quotes\" 'apos' <tags>\nnewline \r\xff caf\u00e9"
	m := Message{ID: "w1", From: contact, To: juliet, Type: "chat", Body: body, Nick: body, Delay: stamp, ChatState: "active", ReceiptRequest: true}
	if err := env.c.SendMessage(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Type = "chat"
	want, err := encodedSize(messageElem(m))
	if err != nil {
		t.Fatal(err)
	}
	if n := env.fc.expect(t); n.wire != want {
		t.Errorf("message: %d bytes on the wire, measured %d: %s", n.wire, want, n)
	}

	p := Presence{ID: "p1", From: contact, To: juliet, Show: "dnd", Status: body, Priority: 5, Nick: body}
	if err := env.c.SendPresence(ctx, p); err != nil {
		t.Fatal(err)
	}
	want, err = encodedSize(presenceElem(p, contact, juliet, "", "p1"))
	if err != nil {
		t.Fatal(err)
	}
	if n := env.fc.expect(t); n.wire != want {
		t.Errorf("presence: %d bytes on the wire, measured %d: %s", n.wire, want, n)
	}

	iq := stanza.IQ{ID: "iq1", From: env.c.Domain(), To: juliet, Type: stanza.SetIQ}
	payload := func() xml.TokenReader { return elem(nsRoster, "query", nil, textElem("", "x", body)) }
	errc := asyncCall(func() error { _, err := env.c.SendIQ(ctx, iq, payload()); return err })
	n := env.fc.expect(t)
	env.fc.send(t, `<iq type="result" id="iq1" from="juliet@localhost/balcony" to="imip.localhost"/>`)
	if err := waitErr(t, errc); err != nil {
		t.Fatal(err)
	}
	want, err = encodedSize(iq.Wrap(payload()))
	if err != nil {
		t.Fatal(err)
	}
	if n.wire != want {
		t.Errorf("iq: %d bytes on the wire, measured %d: %s", n.wire, want, n)
	}

	// An IQ answer the component writes itself, on the read loop.
	reply := env.fc.roundTrip(t, `<iq type="get" id="v1" from="juliet@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:version"/></iq>`)
	req := stanza.IQ{ID: "v1", From: jid.MustParse("juliet@localhost/x"), To: env.c.Domain(), Type: stanza.GetIQ}
	want, err = encodedSize(req.Result(elem(nsVersion, "query", nil,
		textElem("", "name", DefaultName), textElem("", "version", "1.2.3"), textElem("", "os", reply.path("query", "os").text()))))
	if err != nil {
		t.Fatal(err)
	}
	if reply.wire != want {
		t.Errorf("version answer: %d bytes on the wire, measured %d: %s", reply.wire, want, reply)
	}
}

// assertLinkUp checks that the component never dropped the link and that
// the next stanza the server reads is a fresh presence: nothing of a
// refused stanza was written before it.
func assertLinkUp(t *testing.T, env *testEnv, what string) {
	t.Helper()
	if err := env.c.SendPresence(context.Background(), Presence{ID: "alive", To: juliet}); err != nil {
		t.Fatalf("after %s: SendPresence: %v", what, err)
	}
	if n := env.fc.expect(t); n.XMLName.Local != "presence" || n.attr("id") != "alive" {
		t.Errorf("after %s the server read %s, want the presence alive", what, clip(n))
	}
	select {
	case err := <-env.h.disconnected:
		t.Errorf("after %s the link dropped: %v", what, err)
	default:
	}
	if !env.c.Connected() {
		t.Errorf("after %s: Connected() = false", what)
	}
}

func TestOversizedRefused(t *testing.T) {
	var logs syncBuffer
	env := startEnv(t, func(c *Config) {
		c.MaxStanzaSize = smallLimit
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	// Bounded: a roster set or IQ that were sent would wait for a reply.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	tabs := strings.Repeat("\t", smallLimit/5) // 8 KiB of &#x9;
	tests := []struct {
		name string
		send func() error
	}{
		0: {"presence status", func() error { return env.c.SendPresence(ctx, Presence{From: contact, To: juliet, Status: tabs}) }},
		1: {"presence nick", func() error { return env.c.SendPresence(ctx, Presence{To: juliet, Nick: tabs}) }},
		2: {"message subject", func() error { return env.c.SendMessage(ctx, Message{To: juliet, Subject: tabs, Body: "x"}) }},
		3: {"message error text", func() error {
			return env.c.SendMessage(ctx, Message{To: juliet, Error: &stanza.Error{Condition: stanza.Gone, Text: map[string]string{"": tabs}}})
		}},
		4: {"iq", func() error {
			_, err := env.c.SendIQ(ctx, stanza.IQ{Type: stanza.GetIQ, To: juliet}, textElem(nsPing, "ping", tabs))
			return err
		}},
		5: {"roster set item", func() error {
			return env.c.RosterSet(ctx, juliet, []RosterItem{{JID: contact, Name: tabs}})
		}},
		6: {"roster exchange item", func() error {
			return env.c.SendRosterExchange(ctx, juliet, []RosterItem{{JID: contact}, {JID: contact, Name: tabs}})
		}},
	}
	grant(t, env, NSPrivilege2, "both")
	for i, tc := range tests {
		err := tc.send()
		if !errors.Is(err, ErrStanzaTooLarge) {
			t.Errorf("%d %s: error = %v, want ErrStanzaTooLarge", i, tc.name, err)
		}
		assertLinkUp(t, env, tc.name)
	}
	if n := strings.Count(logs.String(), `msg="xmpp stanza too large, not sent"`); n != len(tests) {
		t.Errorf("%d refusals logged, want %d:\n%s", n, len(tests), logs.String())
	}
}

// clip returns n as XML, cut to a readable length.
func clip(n *node) string {
	s := n.String()
	if len(s) > 400 {
		return s[:400] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// TestBoundThenExact: a stanza whose cheap bound is above the limit but
// whose exact size is below it is sent; one just above the limit is not.
func TestBoundThenExact(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.MaxStanzaSize = smallLimit })
	ctx := context.Background()
	// Plain letters: the bound (6 per byte) is far above the limit, the
	// exact size is not.
	status := strings.Repeat("a", smallLimit/3)
	if b := presenceBound(Presence{Status: status}, contact, juliet, "", "x"); b <= smallLimit {
		t.Fatalf("test setup: bound %d is not above the limit", b)
	}
	if err := env.c.SendPresence(ctx, Presence{ID: "x", From: contact, To: juliet, Status: status}); err != nil {
		t.Fatalf("SendPresence within the limit: %v", err)
	}
	if n := env.fc.expect(t); n.path("status").text() != status || n.wire > smallLimit {
		t.Errorf("presence read: %d bytes, status of %d", n.wire, len(n.path("status").text()))
	}

	// The exact limit, for tabs, ampersands and quotes: fill the status up
	// to the limit, then one character more.
	for _, ch := range []string{"\t", "&", `"`} {
		p := Presence{ID: "x", From: contact, To: juliet}
		base, err := encodedSize(presenceElem(p, contact, juliet, "", "x"))
		if err != nil {
			t.Fatal(err)
		}
		base += len("<status></status>")
		fill := (smallLimit - base) / 5
		p.Status = strings.Repeat(ch, fill) + strings.Repeat("a", smallLimit-base-5*fill)
		if err := env.c.SendPresence(ctx, p); err != nil {
			t.Errorf("%q: a presence of exactly the limit: %v", ch, err)
		} else if n := env.fc.expect(t); n.wire != smallLimit || n.path("status").text() != p.Status {
			t.Errorf("%q: presence of %d bytes read, want %d", ch, n.wire, smallLimit)
		}
		p.Status += "a"
		if err := env.c.SendPresence(ctx, p); !errors.Is(err, ErrStanzaTooLarge) {
			t.Errorf("%q: a presence of the limit + 1 byte: %v, want ErrStanzaTooLarge", ch, err)
		}
		assertLinkUp(t, env, "a presence one byte too large")
	}
}

// TestIQAnswerTooLarge: an answer the component would write above the
// limit, on the read loop or from a registration goroutine, becomes
// internal-server-error.
func TestIQAnswerTooLarge(t *testing.T) {
	feats := make([]string, 0, 300)
	for i := range cap(feats) {
		feats = append(feats, fmt.Sprintf("urn:example:feature:%d:%s", i, strings.Repeat("&", 10)))
	}
	env := startEnv(t, func(c *Config) {
		c.MaxStanzaSize = smallLimit
		c.ContactFeatures = feats
	})
	reply := env.fc.roundTrip(t, `<iq type="get" id="d1" from="juliet@localhost/x" to="12345@imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`)
	if reply.attr("type") != "error" || errCondition(reply) != "internal-server-error" || reply.wire > smallLimit {
		t.Errorf("disco#info answer above the limit = %s (%d bytes), want internal-server-error", clip(reply), reply.wire)
	}
	// The domain's own answer is small and unaffected.
	if r := env.fc.roundTrip(t, `<iq type="get" id="d2" from="juliet@localhost/x" to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`); r.attr("type") != "result" {
		t.Errorf("domain disco#info = %s", r)
	}

	env.h.setRegister(func(context.Context, jid.JID, string, string) error {
		return Error{Condition: stanza.NotAcceptable, Text: strings.Repeat("\t", smallLimit)}
	})
	reply = env.fc.roundTrip(t, `<iq type="set" id="r1" from="juliet@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:register"><username>1</username><password>p</password></query></iq>`)
	if reply.attr("type") != "error" || errCondition(reply) != "internal-server-error" || reply.wire > smallLimit {
		t.Errorf("registration error above the limit = %s (%d bytes), want internal-server-error", clip(reply), reply.wire)
	}
	assertLinkUp(t, env, "answers too large")
}

func TestSplitText(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	texts := []string{
		strings.Repeat("\t", 1000),
		strings.Repeat("word ", 400),
		strings.Repeat("line of text\n", 200),
		strings.Repeat("\u65e5\u672c\U0001F600", 300),
		strings.Repeat("\xff&", 500),
		randomText(rng, 5000),
	}
	for i, s := range texts {
		for _, room := range []int{5, 7, 64, 1000, 4096} {
			parts := splitText(s, room)
			if got := strings.Join(parts, ""); got != s {
				t.Errorf("%d room %d: parts do not join to the text", i, room)
			}
			for j, p := range parts {
				if p == "" {
					t.Errorf("%d room %d: part %d is empty", i, room, j)
				}
				if n := escapedTextLen(p); n > room {
					t.Errorf("%d room %d: part %d encodes to %d bytes", i, room, j, n)
				}
				if utf8.ValidString(s) && !utf8.ValidString(p) {
					t.Errorf("%d room %d: part %d cuts a character: %q", i, room, j, p)
				}
			}
			if total := escapedTextLen(s); len(parts) > 1 && total < room*(len(parts)-1)/2 {
				t.Errorf("%d room %d: %d parts for %d bytes: cuts too small", i, room, len(parts), total)
			}
		}
	}
	// A cut prefers the last newline, else the last space, in the last
	// quarter of the part.
	if got := splitText("aaaa bbbb\nc dd eeee", 12); got[0] != "aaaa bbbb\n" {
		t.Errorf("split at a newline: %q", got)
	}
	if got := splitText("aaaa bbbb cccc dddd", 17); got[0] != "aaaa bbbb cccc " {
		t.Errorf("split at a space: %q", got)
	}
	if got := splitText("abcdefghijklmnopqrstuvwxyz", 10); got[0] != "abcdefghij" {
		t.Errorf("split without a break: %q", got)
	}
}

// TestMessageSplit: a message too large as one stanza arrives as several,
// in order, each within the limit, ids derived from the original, the body
// whole when put together.
func TestMessageSplit(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.MaxStanzaSize = smallLimit })
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	bodies := []string{
		strings.Repeat("\t", 5000),
		strings.Repeat(`"quoted" & 'apos' `, 600),
		strings.Repeat("caf\u00e9 \U0001F600\n", 2000),
		randomText(rng, 20000),
	}
	for i, body := range bodies {
		id := fmt.Sprintf("big%d", i)
		m := Message{ID: id, From: contact, To: juliet, Type: "chat", Body: body, Subject: "subj", Nick: "Alice",
			Delay: stamp, ChatState: "active", ReceiptRequest: true}
		if err := env.c.SendMessage(ctx, m); err != nil {
			t.Fatalf("%d SendMessage: %v", i, err)
		}
		var got strings.Builder
		want := escapeForCompare(body)
		for k := 1; got.Len() < len(want); k++ {
			n := env.fc.expect(t)
			wantID := id
			if k > 1 {
				wantID = fmt.Sprintf("%s-%d", id, k)
			}
			if n.attr("id") != wantID || n.attr("type") != "chat" || n.child(nsNick, "nick").text() != "Alice" || n.child(nsDelay, "delay") == nil {
				t.Fatalf("%d part %d: %s", i, k, clip(n))
			}
			if n.wire > smallLimit {
				t.Errorf("%d part %d: %d bytes, above the limit %d", i, k, n.wire, smallLimit)
			}
			if (n.path("subject") != nil) != (k == 1) {
				t.Errorf("%d part %d: subject %v", i, k, n.path("subject"))
			}
			last := got.Len()+len(n.path("body").text()) >= len(want)
			if (n.child(nsChatStates, "active") != nil) != last || (n.child(nsReceipts, "request") != nil) != last {
				t.Errorf("%d part %d (last %v): chat state or receipt request misplaced: %s", i, k, last, clip(n))
			}
			got.WriteString(n.path("body").text())
		}
		if got.String() != want {
			t.Errorf("%d: the parts do not put together the body", i)
		}
	}
	assertLinkUp(t, env, "split messages")

	// A message whose other fields alone are too large is refused whole.
	err := env.c.SendMessage(ctx, Message{To: juliet, Body: "hi", Nick: strings.Repeat("&", smallLimit)})
	if !errors.Is(err, ErrStanzaTooLarge) {
		t.Errorf("SendMessage with a huge nick = %v, want ErrStanzaTooLarge", err)
	}
	assertLinkUp(t, env, "a message refused whole")
}

// escapeForCompare returns s as the server reads it back: invalid UTF-8 and
// characters outside XML's range become U+FFFD, and an end of line is
// normalised (CR LF and a lone CR are read as LF, but the encoder writes
// CR as &#xD;, which is kept).
func escapeForCompare(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		if !inCharRange(r) || (r == utf8.RuneError && w == 1) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
		i += w
	}
	return b.String()
}

// TestRosterExchangeSplit: a roster exchange too large for one stanza is
// sent as several, each within the limit, every item once and in order.
func TestRosterExchangeSplit(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.MaxStanzaSize = smallLimit })
	ctx := context.Background()
	const n = 400
	items := make([]RosterItem, n)
	for i := range items {
		items[i] = RosterItem{JID: jid.MustParse(fmt.Sprintf("%d@imip.localhost", 100000+i)), Name: fmt.Sprintf("Nick \"%d\" & co", i),
			Groups: []string{"IMIP"}, Remove: i%7 == 0}
	}
	if err := env.c.SendRosterExchange(ctx, juliet, items); err != nil {
		t.Fatalf("SendRosterExchange: %v", err)
	}
	next := 0
	msgs := 0
	for next < n {
		m := env.fc.expect(t)
		msgs++
		if m.XMLName.Local != "message" || m.attr("from") != "imip.localhost" || m.attr("to") != juliet.String() {
			t.Fatalf("message %d: %s", msgs, clip(m))
		}
		if m.wire > smallLimit {
			t.Errorf("message %d: %d bytes, above the limit %d", msgs, m.wire, smallLimit)
		}
		x := m.child(nsRosterX, "x")
		if x == nil || len(x.Nodes) == 0 {
			t.Fatalf("message %d without items: %s", msgs, clip(m))
		}
		for _, it := range x.Nodes {
			want := items[next]
			action := "add"
			if want.Remove {
				action = "delete"
			}
			if it.attr("jid") != want.JID.String() || it.attr("name") != want.Name || it.attr("action") != action || it.path("group").text() != "IMIP" {
				t.Fatalf("message %d: item %s, want #%d %+v", msgs, it, next, want)
			}
			next++
		}
	}
	if msgs < 2 {
		t.Errorf("%d items in %d message, want several", n, msgs)
	}
	assertLinkUp(t, env, "a split roster exchange")

	// A small exchange stays one message.
	if err := env.c.SendRosterExchange(ctx, juliet, items[:3]); err != nil {
		t.Fatal(err)
	}
	if m := env.fc.expect(t); len(m.child(nsRosterX, "x").Nodes) != 3 {
		t.Errorf("small exchange: %s", clip(m))
	}
}
