package gateway

import (
	"context"
	"errors"
	"testing"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// card asks the gateway's Card as the component does.
func (h *harness) card(asker string, about jid.JID) (xmppside.Card, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return h.g.Card(ctx, jid.MustParse(asker), about)
}

// TestCardContact: a registered user sees a contact's IMIP nickname (from
// the Buddy list, or from the contact's own request) and number; any other
// number, and anyone not registered, gets the number only.
func TestCardContact(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"}, wire.Buddy{Number: "200"})
	s := h.login(aliceHW, "6340564")
	s.push(imipside.ListAddEvent{From: "300", Nick: "carl", Text: "hello"})
	h.idle(alice)
	h.register(bob, "1002002")

	tests := []struct {
		asker string
		about string
		want  xmppside.Card
	}{
		0: {aliceHW, "100", xmppside.Card{FullName: "ann", Nickname: "ann", Note: "IMIP number 100"}},
		1: {alice, "100", xmppside.Card{FullName: "ann", Nickname: "ann", Note: "IMIP number 100"}},
		// On the list without a nickname.
		2: {aliceHW, "200", xmppside.Card{FullName: "200", Note: "IMIP number 200"}},
		// A request from the contact: its own nickname.
		3: {aliceHW, "300", xmppside.Card{FullName: "carl", Nickname: "carl", Note: "IMIP number 300"}},
		// Not a contact of alice's.
		4: {aliceHW, "999", xmppside.Card{FullName: "999", Note: "IMIP number 999"}},
		// Another registered user, a stranger and a server never see
		// alice's contacts.
		5: {bobHW, "100", xmppside.Card{FullName: "100", Note: "IMIP number 100"}},
		6: {"eve@localhost/x", "100", xmppside.Card{FullName: "100", Note: "IMIP number 100"}},
		7: {"localhost", "100", xmppside.Card{FullName: "100", Note: "IMIP number 100"}},
	}
	for i, tc := range tests {
		got, err := h.card(tc.asker, cj(tc.about))
		if err != nil || got != tc.want {
			t.Errorf("%d: Card(%s, %s) = %+v, %v; want %+v", i, tc.asker, tc.about, got, err, tc.want)
		}
	}
	if h.g.loadedUser(jid.MustParse("eve@localhost")) != nil {
		t.Error("a stranger's vCard request made a user")
	}

	_, err := h.card(aliceHW, jid.MustParse("abc@imip.localhost"))
	var xe *xmppside.Error
	if !errors.As(err, &xe) || xe.Condition != stanza.ItemNotFound {
		t.Errorf("Card of a JID that is no number: %v, want item-not-found", err)
	}
}

// TestCardAfterUnregister: once the user is gone, the vCard shows the
// number only.
func TestCardAfterUnregister(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"})
	h.login(aliceHW, "6340564")
	if c, err := h.card(aliceHW, cj("100")); err != nil || c.Nickname != "ann" {
		t.Fatalf("before: %+v, %v", c, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.Unregister(ctx, aliceJID); err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	h.settle()
	if c, err := h.card(aliceHW, cj("100")); err != nil || c.Nickname != "" || c.FullName != "100" {
		t.Errorf("after unregistering: %+v, %v; want the number only", c, err)
	}
}

// TestCardWaitsForItsContext: a run loop that cannot answer (here, busy in
// a store call) makes Card return with its context, not hang.
func TestCardWaitsForItsContext(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "6340564")
	release := h.holdStore(alice)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		done <- h.g.Register(ctx, aliceJID, "6340564", "pw")
	}()
	h.waitHeld()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.g.Card(ctx, jid.MustParse(aliceHW), cj("100")); !errors.Is(err, context.Canceled) {
		t.Errorf("Card while the run loop is held: %v, want context.Canceled", err)
	}
	release()
	if err := <-done; err != nil {
		t.Errorf("Register: %v", err)
	}
}

// namedDialer makes every session tell the HELO service name of name.
type namedDialer struct {
	d    Dialer
	name func() string
}

type namedSession struct {
	IMIPSession
	name string
}

func (s namedSession) ServiceDisplayName() string { return s.name }

func (d *namedDialer) Dial(ctx context.Context, n wire.Number, password string, h imipside.Handler) (IMIPSession, error) {
	s, err := d.d.Dial(ctx, n, password, h)
	if err != nil {
		return nil, err
	}
	return namedSession{IMIPSession: s, name: d.name()}, nil
}

// TestServiceName: the gateway's name is the newest login's HELO
// ServiceDisplayName; before any, empty (the component then uses its
// configured name); a session without one changes nothing.
func TestServiceName(t *testing.T) {
	name := "Odigo"
	nd := &namedDialer{name: func() string { return name }}
	h := newHarness(t, "", func(c *Config) { nd.d = c.Dialer; c.Dialer = nd })
	if n := h.g.ServiceName(); n != "" {
		t.Errorf("before any login: %q", n)
	}
	if c, err := h.card(aliceHW, gw); err != nil || c.FullName != "" || c.Note == "" {
		t.Errorf("gateway card before any login: %+v, %v", c, err)
	}
	h.login(aliceHW, "6340564")
	if n := h.g.ServiceName(); n != "Odigo" {
		t.Errorf("after a login: %q, want Odigo", n)
	}
	if c, err := h.card(bobHW, gw); err != nil || c.FullName != "Odigo" {
		t.Errorf("gateway card after a login: %+v, %v", c, err)
	}
	name = "" // the next server's HELO has none: the name stays
	h.login(bobHW, "1002002")
	if n := h.g.ServiceName(); n != "Odigo" {
		t.Errorf("after a login without a name: %q, want Odigo", n)
	}
}

// TestCardNow: a stranger is answered at once; a registered user's first
// request goes through the run loop, which leaves a copy of the nicknames
// for the next ones; a change of the list drops the copy, so a vCard never
// shows a nickname older than the event that changed it.
func TestCardNow(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"})
	s := h.login(aliceHW, "6340564")
	now := func(asker, n string) (xmppside.Card, bool) {
		t.Helper()
		c, ok, err := h.g.CardNow(jid.MustParse(asker), cj(n))
		if err != nil {
			t.Fatalf("CardNow(%s, %s): %v", asker, n, err)
		}
		return c, ok
	}
	if c, ok := now("eve@localhost/x", "100"); !ok || c.Nickname != "" {
		t.Errorf("stranger: %+v, %v; want the number at once", c, ok)
	}
	if _, ok := now(aliceHW, "100"); ok {
		t.Errorf("alice's first request answered without the run loop")
	}
	if c, err := h.card(aliceHW, cj("100")); err != nil || c.Nickname != "ann" {
		t.Fatalf("alice's first request: %+v, %v", c, err)
	}
	if c, ok := now(alicePh, "100"); !ok || c.Nickname != "ann" {
		t.Errorf("alice's next request: %+v, %v; want ann at once", c, ok)
	}

	s.push(imipside.ListAddEvent{From: "300", Nick: "carl"})
	h.idle(alice)
	if c, ok := now(aliceHW, "300"); ok {
		t.Errorf("after a change of the list, answered from the old copy: %+v", c)
	}
	if c, err := h.card(aliceHW, cj("300")); err != nil || c.Nickname != "carl" {
		t.Errorf("after a change of the list: %+v, %v; want carl", c, err)
	}
	// Events that leave the list alone keep the copy.
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusAway})
	h.idle(alice)
	if c, ok := now(aliceHW, "300"); !ok || c.Nickname != "carl" {
		t.Errorf("after a status: %+v, %v; want carl at once", c, ok)
	}
}
