package hostile

import (
	"fmt"
	"testing"
)

// TestIllFormedXMLFromServer: XML that is not well-formed (a control
// character, an undefined entity, bytes that are not UTF-8, a noncharacter)
// cannot come from a real server, which parses what its users send; a
// stream that carries it cannot be read past it (RFC 6120 4.9.3.13). The
// component ends that link and connects again, and the users' chat flows
// once more. So for what XMPP's restricted XML forbids though it is
// well-formed (comments, processing instructions, a DTD: RFC 6120 11.1),
// which mellium refuses likewise.
func TestIllFormedXMLFromServer(t *testing.T) {
	r := newRig(t)
	r.chatFlows("start")
	body := func(inner string) string {
		return fmt.Sprintf(`<message type="chat" id="bad" from=%q to=%q><body>%s</body></message>`, eve, bobJID, inner)
	}
	for i, c := range []struct {
		name, raw string
	}{
		{"a comment between stanzas", `<!-- hello -->`},
		{"a processing instruction between stanzas", `<?evil data?>`},
		{"a DTD with an entity between stanzas", `<!DOCTYPE x [<!ENTITY a "aaaaaaaa">]>`},
		{"a control character as a reference", body("ctl&#x1;")},
		{"a raw control character", body("ctl\x01")},
		{"an undefined entity", body("&nbsp;")},
		{"an entity from a DTD", body("&a;")},
		{"bytes that are not UTF-8", body("bad\xff\xfe")},
		{"an encoded surrogate", body("bad\xed\xa0\x80")},
		{"a noncharacter reference", body("&#xFFFE;")},
	} {
		tag := fmt.Sprintf("%d %s", i, c.name)
		before := r.srv.handshakes.Load()
		r.srv.sendRaw(c.raw)
		r.handshakes = before + 1
		waitCond(t, tag+": the component connected again", func() bool { return r.srv.handshakes.Load() >= r.handshakes })
		r.chatFlows(tag)
	}
}
