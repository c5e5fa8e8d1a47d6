package xmppside

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

const registerGet = `<iq type="get" id="%s" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="jabber:iq:register"/></iq>`

// formFields maps var to the field node of the data form in a register
// reply.
func formFields(n *node) map[string]*node {
	out := map[string]*node{}
	x := n.child(nsRegister, "query").child(nsData, "x")
	for _, f := range x.Nodes {
		if f.XMLName.Local == "field" {
			out[f.attr("var")] = f
		}
	}
	return out
}

func TestRegisterGet(t *testing.T) {
	env := startEnv(t, nil)

	reply := env.fc.roundTrip(t, fmt.Sprintf(registerGet, "g1"))
	if reply.attr("type") != "result" {
		t.Fatalf("register get = %s, want result", reply)
	}
	q := reply.child(nsRegister, "query")
	if q.child("", "instructions") == nil || q.child("", "username") == nil || q.child("", "password") == nil {
		t.Errorf("register form lacks instructions/username/password: %s", q)
	}
	if q.child("", "registered") != nil {
		t.Errorf("unregistered user sees <registered/>: %s", q)
	}
	f := formFields(reply)
	if v := f["FORM_TYPE"].path("value").Text; f["FORM_TYPE"].attr("type") != "hidden" || v != nsRegister {
		t.Errorf("FORM_TYPE = %s", f["FORM_TYPE"])
	}
	if u := f["username"]; u.attr("type") != "text-single" || u.attr("label") != "IMIP number" || u.child("", "required") == nil {
		t.Errorf("username field = %s", u)
	}
	if p := f["password"]; p.attr("type") != "text-private" || p.child("", "required") == nil {
		t.Errorf("password field = %s", p)
	}
	if x := q.child(nsData, "x"); x.attr("type") != "form" {
		t.Errorf("data form type = %q, want form", x.attr("type"))
	}

	// Registered: <registered/> and the username, never the password.
	env.h.mu.Lock()
	env.h.users["juliet@localhost"] = "12345"
	env.h.mu.Unlock()
	reply = env.fc.roundTrip(t, fmt.Sprintf(registerGet, "g2"))
	q = reply.child(nsRegister, "query")
	if q.child("", "registered") == nil || q.path("username").Text != "12345" {
		t.Errorf("registered user's form = %s", q)
	}
	if q.path("password").Text != "" || formFields(reply)["password"].child("", "value") != nil {
		t.Errorf("form shows a password: %s", q)
	}
	if v := formFields(reply)["username"].path("value").Text; v != "12345" {
		t.Errorf("form username value = %q, want 12345", v)
	}

	// A Registrar failure is internal-server-error without its text.
	reply = env.fc.roundTrip(t, `<iq type="get" id="g3" from="broken@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:register"/></iq>`)
	if errCondition(reply) != "internal-server-error" || strings.Contains(reply.String(), "hunter2") {
		t.Errorf("Registration failure reply = %s", reply)
	}
}

func TestRegisterSet(t *testing.T) {
	env := startEnv(t, nil)
	tests := []struct {
		name  string
		query string
		cond  string // "" for result
		call  string // the Registrar call it must make, "" for none
	}{
		0: {"plain fields", `<username>12345</username><password>pw 1</password>`, "", "juliet@localhost 12345 pw 1"},
		1: {"data form", `<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>jabber:iq:register</value></field><field var="username"><value>777</value></field><field var="password"><value>s</value></field></x>`, "", "juliet@localhost 777 s"},
		2: {"missing password", `<username>12345</username>`, "not-acceptable", ""},
		3: {"empty fields", `<username/><password/>`, "not-acceptable", ""},
		4: {"form missing username", `<x xmlns="jabber:x:data" type="submit"><field var="password"><value>s</value></field></x>`, "not-acceptable", ""},
		5: {"form cancel", `<x xmlns="jabber:x:data" type="cancel"/>`, "", ""},
		6: {"remove", `<remove/>`, "", "remove juliet@localhost"},
		7: {"remove again", `<remove/>`, "registration-required", ""},
		8: {"missing username", `<password>pw</password>`, "not-acceptable", ""},
		9: {"form missing password", `<x xmlns="jabber:x:data" type="submit"><field var="username"><value>777</value></field></x>`, "not-acceptable", ""},
	}
	for i, tc := range tests {
		before := len(env.h.calls())
		raw := fmt.Sprintf(`<iq type="set" id="s%d" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="jabber:iq:register">%s</query></iq>`, i, tc.query)
		reply := env.fc.roundTrip(t, raw)
		wantType := "result"
		if tc.cond != "" {
			wantType = "error"
		}
		if reply.attr("type") != wantType || errCondition(reply) != tc.cond {
			t.Errorf("%d %s: reply = %s, want %s %s", i, tc.name, reply, wantType, tc.cond)
		}
		if tc.cond == "not-acceptable" && reply.child("", "error").attr("type") != "modify" {
			t.Errorf("%d %s: error type = %q, want modify", i, tc.name, reply.child("", "error").attr("type"))
		}
		if reply.attr("from") != "imip.localhost" || reply.attr("to") != "juliet@localhost/balcony" {
			t.Errorf("%d %s: reply addressed from %q to %q", i, tc.name, reply.attr("from"), reply.attr("to"))
		}
		calls := env.h.calls()[before:]
		switch {
		case tc.call == "" && len(calls) != 0:
			t.Errorf("%d %s: Registrar calls %q, want none", i, tc.name, calls)
		case tc.call != "" && !slices.Equal(calls, []string{tc.call}):
			t.Errorf("%d %s: Registrar calls %q, want %q", i, tc.name, calls, tc.call)
		}
	}
}

func TestRegisterErrorsMapped(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.RegisterTimeout = 200 * time.Millisecond })
	tests := []struct {
		name     string
		err      error
		cond     string
		typ      string
		text     string
		noLeakOf string
	}{
		0: {"typed value", Error{Condition: stanza.NotAuthorized, Text: "wrong password"}, "not-authorized", "auth", "wrong password", ""},
		1: {"typed pointer", &Error{Condition: stanza.NotAcceptable, Text: "bad number"}, "not-acceptable", "modify", "bad number", ""},
		2: {"wrapped typed", fmt.Errorf("gateway: login: %w", Error{Condition: stanza.RemoteServerTimeout}), "remote-server-timeout", "wait", "", ""},
		3: {"stanza.Error", stanza.Error{Condition: stanza.Conflict, Type: stanza.Cancel}, "conflict", "cancel", "", ""},
		4: {"untyped", fmt.Errorf("sql: password=hunter2 rejected"), "internal-server-error", "cancel", "", "hunter2"},
		5: {"timeout", nil, "remote-server-timeout", "wait", "", ""},
	}
	for i, tc := range tests {
		env.h.setRegister(func(ctx context.Context, _ jid.JID, _, _ string) error {
			if tc.err == nil { // block until RegisterTimeout
				<-ctx.Done()
				return fmt.Errorf("gateway: %w", ctx.Err())
			}
			return tc.err
		})
		raw := fmt.Sprintf(`<iq type="set" id="e%d" from="romeo@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:register"><username>1</username><password>p</password></query></iq>`, i)
		reply := env.fc.roundTrip(t, raw)
		if errCondition(reply) != tc.cond || reply.child("", "error").attr("type") != tc.typ {
			t.Errorf("%d %s: reply = %s, want %s/%s", i, tc.name, reply, tc.typ, tc.cond)
		}
		if got := errText(reply); got != tc.text {
			t.Errorf("%d %s: text = %q, want %q", i, tc.name, got, tc.text)
		}
		if tc.noLeakOf != "" && strings.Contains(reply.String(), tc.noLeakOf) {
			t.Errorf("%d %s: reply leaks %q: %s", i, tc.name, tc.noLeakOf, reply)
		}
	}
}

// TestRegisterOffReadLoop checks that a blocking Registrar does not stop the
// component from serving other stanzas.
func TestRegisterOffReadLoop(t *testing.T) {
	env := startEnv(t, nil)
	release := make(chan struct{})
	env.h.setRegister(func(ctx context.Context, _ jid.JID, _, _ string) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	env.fc.send(t, `<iq type="set" id="slow" from="juliet@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:register"><username>1</username><password>p</password></query></iq>`)
	ping := env.fc.roundTrip(t, `<iq type="get" id="fast" from="juliet@localhost/x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	if ping.attr("type") != "result" {
		t.Errorf("ping while registering = %s", ping)
	}
	env.fc.send(t, `<message from="juliet@localhost/x" to="1@imip.localhost"><body>still here</body></message>`)
	if m := env.h.nextMessage(t); m.Body != "still here" {
		t.Errorf("message while registering = %+v", m)
	}
	close(release)
	if n := env.fc.expect(t); n.attr("id") != "slow" || n.attr("type") != "result" {
		t.Errorf("register reply = %s, want result for slow", n)
	}
}

// TestRegisterBounded checks that registrations in flight are bounded.
func TestRegisterBounded(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.MaxRegistrations = 1 })
	release := make(chan struct{})
	env.h.setRegister(func(ctx context.Context, _ jid.JID, _, _ string) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	})
	env.fc.send(t, `<iq type="set" id="r1" from="a@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:register"><username>1</username><password>p</password></query></iq>`)
	reply := env.fc.roundTrip(t, `<iq type="set" id="r2" from="b@localhost/x" to="imip.localhost"><query xmlns="jabber:iq:register"><username>2</username><password>p</password></query></iq>`)
	if errCondition(reply) != "resource-constraint" {
		t.Errorf("second registration = %s, want resource-constraint", reply)
	}
	close(release)
	if n := env.fc.expect(t); n.attr("id") != "r1" || n.attr("type") != "result" {
		t.Errorf("first registration = %s, want result", n)
	}
}
