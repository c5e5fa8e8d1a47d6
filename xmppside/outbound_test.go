package xmppside

import (
	"context"
	"errors"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

func TestSendMessage(t *testing.T) {
	env := startEnv(t, nil)
	ctx := context.Background()
	err := env.c.SendMessage(ctx, Message{
		ID: "out1", From: contact, To: juliet, Type: "chat", Body: "hi <there> & you", Subject: "s",
		Nick: "Alice", Delay: time.Date(2024, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), DelayFrom: jid.MustParse("imip.localhost"),
		ChatState: "active", ReceiptRequest: true,
	})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	n := env.fc.expect(t)
	checks := []struct{ what, got, want string }{
		0: {"from", n.attr("from"), "12345@imip.localhost"},
		1: {"to", n.attr("to"), "juliet@localhost/balcony"},
		2: {"id", n.attr("id"), "out1"},
		3: {"type", n.attr("type"), "chat"},
		4: {"body", n.path("body").Text, "hi <there> & you"},
		5: {"subject", n.path("subject").Text, "s"},
		6: {"nick", n.child(nsNick, "nick").Text, "Alice"},
		7: {"delay stamp", n.child(nsDelay, "delay").attr("stamp"), "2024-01-02T02:04:05Z"},
		8: {"delay from", n.child(nsDelay, "delay").attr("from"), "imip.localhost"},
		9: {"namespace", n.XMLName.Space, "jabber:component:accept"},
	}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("%d %s = %q, want %q in %s", i, c.what, c.got, c.want, n)
		}
	}
	if n.child(nsChatStates, "active") == nil || n.child(nsReceipts, "request") == nil {
		t.Errorf("chat state or receipt request missing: %s", n)
	}

	// Empty From is the domain; an error forces type error; ids are made up.
	err = env.c.SendMessage(ctx, Message{To: juliet, ReceiptReceived: "r1",
		Error: &stanza.Error{Condition: stanza.ServiceUnavailable, Text: map[string]string{"": "offline"}}})
	if err != nil {
		t.Fatalf("SendMessage error: %v", err)
	}
	n = env.fc.expect(t)
	if n.attr("from") != "imip.localhost" || n.attr("type") != "error" || n.attr("id") == "" {
		t.Errorf("error message attributes: %s", n)
	}
	if errCondition(n) != "service-unavailable" || errText(n) != "offline" || n.child("", "error").attr("type") != "cancel" {
		t.Errorf("error child: %s", n)
	}
	if n.child(nsReceipts, "received").attr("id") != "r1" {
		t.Errorf("receipt: %s", n)
	}
}

func TestSendPresence(t *testing.T) {
	env := startEnv(t, nil)
	ctx := context.Background()
	if err := env.c.SendPresence(ctx, Presence{From: contact, To: juliet.Bare(), Show: "dnd", Status: "busy", Priority: -1, Nick: "Alice"}); err != nil {
		t.Fatalf("SendPresence: %v", err)
	}
	n := env.fc.expect(t)
	if n.XMLName.Local != "presence" || n.attr("from") != "12345@imip.localhost" || n.attr("to") != "juliet@localhost" || n.attr("type") != "" {
		t.Errorf("presence attributes: %s", n)
	}
	if n.path("show").Text != "dnd" || n.path("status").Text != "busy" || n.path("priority").Text != "-1" || n.child(nsNick, "nick").Text != "Alice" {
		t.Errorf("presence children: %s", n)
	}
	if err := env.c.SendPresence(ctx, Presence{To: juliet.Bare(), Type: "subscribe"}); err != nil {
		t.Fatalf("SendPresence subscribe: %v", err)
	}
	if n := env.fc.expect(t); n.attr("type") != "subscribe" || n.attr("from") != "imip.localhost" {
		t.Errorf("subscribe: %s", n)
	}
	if err := env.c.SendPresence(ctx, Presence{From: contact, To: juliet, Error: &stanza.Error{Condition: stanza.RemoteServerTimeout}}); err != nil {
		t.Fatalf("SendPresence error: %v", err)
	}
	if n := env.fc.expect(t); n.attr("type") != "error" || errCondition(n) != "remote-server-timeout" || n.child("", "error").attr("type") != "wait" {
		t.Errorf("error presence: %s", n)
	}
}

func TestSendRefused(t *testing.T) {
	env := startEnv(t, nil)
	ctx := context.Background()
	tests := []struct {
		name string
		send func() error
		want error // nil means any error
	}{
		0: {"message from outside", func() error {
			return env.c.SendMessage(ctx, Message{From: jid.MustParse("romeo@localhost"), To: juliet, Body: "x"})
		}, ErrAddress},
		1: {"presence from outside", func() error {
			return env.c.SendPresence(ctx, Presence{From: jid.MustParse("evil.example"), To: juliet})
		}, ErrAddress},
		2: {"no to", func() error { return env.c.SendMessage(ctx, Message{Body: "x"}) }, ErrAddress},
		3: {"bad type", func() error { return env.c.SendMessage(ctx, Message{To: juliet, Type: "shout"}) }, ErrInvalidStanza},
		4: {"error type without error", func() error { return env.c.SendMessage(ctx, Message{To: juliet, Type: "error"}) }, ErrInvalidStanza},
		5: {"bad show", func() error { return env.c.SendPresence(ctx, Presence{To: juliet, Show: "busy"}) }, ErrInvalidStanza},
		6: {"bad presence type", func() error { return env.c.SendPresence(ctx, Presence{To: juliet, Type: "dance"}) }, ErrInvalidStanza},
		7: {"bad chat state", func() error { return env.c.SendMessage(ctx, Message{To: juliet, ChatState: "typing"}) }, ErrInvalidStanza},
		8: {"priority", func() error { return env.c.SendPresence(ctx, Presence{To: juliet, Priority: 300}) }, ErrInvalidStanza},
		9: {"presence error type without error", func() error { return env.c.SendPresence(ctx, Presence{To: juliet, Type: "error"}) }, ErrInvalidStanza},
		10: {"cancelled ctx", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			return env.c.SendMessage(cctx, Message{To: juliet, Body: "x"})
		}, context.Canceled},
	}
	for i, tc := range tests {
		err := tc.send()
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%d %s: error = %v, want %v", i, tc.name, err, tc.want)
		}
	}
	env.fc.expectNone(t, 50*time.Millisecond)
}

// TestSendConcurrent checks that concurrent sends never interleave.
func TestSendConcurrent(t *testing.T) {
	env := startEnv(t, nil)
	const n = 50
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- env.c.SendMessage(context.Background(), Message{To: juliet, Body: string(rune('a' + i%26))})
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("SendMessage: %v", err)
		}
	}
	for range n {
		if m := env.fc.expect(t); m.path("body") == nil || m.attr("from") != "imip.localhost" {
			t.Errorf("garbled message: %s", m)
		}
	}
}
