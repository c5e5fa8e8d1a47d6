package xmppside

import (
	"bytes"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		0: {`<query xmlns="jabber:iq:register"><username>1</username><password>hunter2</password></query>`,
			`<query xmlns="jabber:iq:register"><username>1</username><password>[redacted]</password></query>`},
		1: {`<password xmlns="jabber:iq:register">a&amp;b</password>`, `<password xmlns="jabber:iq:register">[redacted]</password>`},
		2: {`<reg:password>x</reg:password>`, `<reg:password>[redacted]</reg:password>`},
		3: {`<password><![CDATA[a<b]]></password>`, `<password>[redacted]</password>`},
		4: {`<password/><password></password>`, `<password/><password>[redacted]</password>`},
		5: {`<field type="text-private" var="password" label="Password"><required/><value>s3</value></field><field var="x"><value>1</value></field>`,
			`<field type="text-private" var="password" label="Password"><required/><value>[redacted]</value></field><field var="x"><value>1</value></field>`},
		6: {`<field var='password'><value>s3</value></field>`, `<field var='password'><value>[redacted]</value></field>`},
		7: {`<field var="password"/><field var="username"><value>777</value></field>`, `<field var="password"/><field var="username"><value>777</value></field>`},
		8: {`<message><body>password</body></message>`, `<message><body>password</body></message>`},
	}
	for i, tc := range tests {
		if got := string(redact([]byte(tc.in))); got != tc.want {
			t.Errorf("%d redact(%s)\n got %s\nwant %s", i, tc.in, got, tc.want)
		}
	}
}

// TestTraceRedactsPasswords registers through a traced component, with
// plain fields and with a data form: the trace must not show the password.
func TestTraceRedactsPasswords(t *testing.T) {
	var buf syncBuffer
	env := startEnv(t, func(c *Config) { c.Trace = &buf })
	queries := []string{
		0: `<username>12345</username><password>plainSecret1</password>`,
		1: `<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>jabber:iq:register</value></field><field var="username"><value>777</value></field><field type="text-private" var="password"><value>formSecret2</value></field></x>`,
	}
	for i, q := range queries {
		reply := env.fc.roundTrip(t, `<iq type="set" id="tp`+string(rune('0'+i))+`" from="juliet@localhost/b" to="imip.localhost"><query xmlns="jabber:iq:register">`+q+`</query></iq>`)
		if reply.attr("type") != "result" {
			t.Fatalf("%d register reply = %s", i, reply)
		}
	}
	calls := env.h.calls()
	if len(calls) != 2 || !strings.HasSuffix(calls[0], " plainSecret1") || !strings.HasSuffix(calls[1], " formSecret2") {
		t.Fatalf("Registrar got %q, want the real passwords", calls)
	}
	out := buf.String()
	if strings.Contains(out, "plainSecret1") || strings.Contains(out, "formSecret2") {
		t.Errorf("trace shows a password:\n%s", out)
	}
	if strings.Count(out, redacted) < 2 || !strings.Contains(out, "<username>12345</username>") {
		t.Errorf("trace lacks the (redacted) registrations:\n%s", out)
	}
}

// TestTraceRedactsPerStanza: a password split across reads (or writes) is
// redacted all the same, since the trace shows whole stanzas; the stream's
// own tags, comments and CDATA do not confuse the cut.
func TestTraceRedactsPerStanza(t *testing.T) {
	var buf bytes.Buffer
	tr := &tracer{w: &buf}
	stream := `<?xml version='1.0'?><stream:stream xmlns="jabber:component:accept" xmlns:stream="http://etherx.jabber.org/streams" id="x">` +
		`<iq type="set" id="1" a='q>x'><query xmlns="jabber:iq:register"><password>hunter2-split</password></query></iq>` +
		`<message><body><![CDATA[<password>]]> and > and <!-- x --> </body></message> ` +
		`<presence/></stream:stream>`
	// Every cut of the stream into two reads.
	for cut := 1; cut < len(stream); cut++ {
		buf.Reset()
		tr.dirs = nil
		tr.trace("RECV ", []byte(stream[:cut]))
		tr.trace("RECV ", []byte(stream[cut:]))
		out := buf.String()
		if strings.Contains(out, "hunter2") || strings.Contains(out, "split<") {
			t.Fatalf("cut %d: trace shows the password:\n%s", cut, out)
		}
		if !strings.Contains(out, "<password>[redacted]</password>") || !strings.Contains(out, "RECV <presence/>") {
			t.Fatalf("cut %d: trace lacks whole stanzas:\n%s", cut, out)
		}
	}
}
