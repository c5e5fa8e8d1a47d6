package xmppside

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"
)

// optionHandler adds OptionRegistrar to the fake handler.
type optionHandler struct {
	*fakeHandler
	mu      sync.Mutex
	value   bool
	got     []map[string]bool
	plainOK bool // Register (without options) was called
}

func (h *optionHandler) RegisterOptions(ctx context.Context, user jid.JID) ([]RegisterOption, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return []RegisterOption{{Var: "allow_remove", Label: "Allow removal", Value: h.value}}, nil
}

func (h *optionHandler) RegisterWithOptions(ctx context.Context, user jid.JID, username, password string, options map[string]bool) error {
	h.mu.Lock()
	h.got = append(h.got, options)
	if v, ok := options["allow_remove"]; ok {
		h.value = v
	}
	h.mu.Unlock()
	return nil
}

func (h *optionHandler) Register(ctx context.Context, user jid.JID, username, password string) error {
	h.mu.Lock()
	h.plainOK = true
	h.mu.Unlock()
	return nil
}

func TestRegisterOptions(t *testing.T) {
	var oh *optionHandler
	env := startEnvWith(t, nil, func(h *fakeHandler) Handler {
		oh = &optionHandler{fakeHandler: h}
		return oh
	})
	field := func(id string) *node {
		t.Helper()
		reply := env.fc.roundTrip(t, fmt.Sprintf(registerGet, id))
		f := formFields(reply)["allow_remove"]
		if f == nil || f.attr("type") != "boolean" || f.attr("label") != "Allow removal" {
			t.Fatalf("form lacks the boolean allow_remove field: %s", reply)
		}
		return f
	}
	if v := field("o1").path("value").Text; v != "0" {
		t.Errorf("allow_remove before = %q, want 0", v)
	}
	submit := `<iq type="set" id="%s" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="jabber:iq:register">` +
		`<x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>jabber:iq:register</value></field>` +
		`<field var="username"><value>123</value></field><field var="password"><value>pw</value></field>` +
		`<field var="allow_remove"><value>%s</value></field></x></query></iq>`
	cases := []struct {
		value string
		want  map[string]bool
	}{
		0: {"1", map[string]bool{"allow_remove": true}},
		1: {"false", map[string]bool{"allow_remove": false}},
		2: {"maybe", nil}, // not a boolean: not passed on
	}
	for i, c := range cases {
		reply := env.fc.roundTrip(t, fmt.Sprintf(submit, fmt.Sprintf("s%d", i), c.value))
		if reply.attr("type") != "result" {
			t.Fatalf("%d: submit = %s", i, reply)
		}
		oh.mu.Lock()
		got := oh.got[len(oh.got)-1]
		oh.mu.Unlock()
		if len(got) != len(c.want) || got["allow_remove"] != c.want["allow_remove"] {
			t.Errorf("%d: options %v, want %v", i, got, c.want)
		}
	}
	oh.mu.Lock()
	oh.value = true
	oh.mu.Unlock()
	if v := field("o2").path("value").Text; v != "1" {
		t.Errorf("allow_remove after = %q, want 1", v)
	}
	// Plain fields go through RegisterWithOptions too, with no options.
	reply := env.fc.roundTrip(t, `<iq type="set" id="p1" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="jabber:iq:register"><username>123</username><password>pw</password></query></iq>`)
	oh.mu.Lock()
	defer oh.mu.Unlock()
	if reply.attr("type") != "result" || oh.plainOK || len(oh.got[len(oh.got)-1]) != 0 {
		t.Errorf("plain registration: reply %s, Register called %v, options %v", reply, oh.plainOK, oh.got[len(oh.got)-1])
	}
}
