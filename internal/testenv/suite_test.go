package testenv

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"imip-transport/internal/xmppserver"
)

// servers returns the shared servers to run the common suite against.
func servers() []struct {
	name string
	get  func(testing.TB) xmppserver.Server
} {
	return []struct {
		name string
		get  func(testing.TB) xmppserver.Server
	}{
		{"prosody", func(t testing.TB) xmppserver.Server { return sharedProsody.Get(t) }},
		{"ejabberd", func(t testing.TB) xmppserver.Server { return sharedEjabberd.Get(t) }},
	}
}

func TestServers(t *testing.T) {
	for i, s := range servers() {
		t.Run(s.name, func(t *testing.T) {
			began := time.Now()
			srv := s.get(t)
			t.Logf("case %d: %s ready (first Get: %v); c2s %s component %s", i, srv.Kind(), time.Since(began), srv.C2SAddr(), srv.ComponentAddr())
			t.Run("ClientMessage", func(t *testing.T) { testClientMessage(t, srv) })
			t.Run("WrongPassword", func(t *testing.T) { testWrongPassword(t, srv) })
			t.Run("Component", func(t *testing.T) { testComponent(t, srv) })
			t.Run("ComponentWrongSecret", func(t *testing.T) { testComponentWrongSecret(t, srv) })
		})
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uniqueUser returns a user name not used by other tests on a shared server.
func uniqueUser(t *testing.T, base string) string {
	return fmt.Sprintf("%s.%d", base, time.Now().UnixNano()%1_000_000_000)
}

func testClientMessage(t *testing.T, srv xmppserver.Server) {
	ctx := testCtx(t)
	alice, bob := uniqueUser(t, "alice"), uniqueUser(t, "bob")
	for _, u := range []string{alice, bob} {
		if err := srv.AddUser(ctx, u, "pw-"+u); err != nil {
			t.Fatal(err)
		}
	}
	a := DialClient(ctx, t, srv, alice, "pw-"+alice, "test")
	b := DialClient(ctx, t, srv, bob, "pw-"+bob, "test")
	inbox := ServeMessages(t, b)
	ServeMessages(t, a)
	if err := SendPresence(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := SendPresence(ctx, a); err != nil {
		t.Fatal(err)
	}
	to := jid.MustParse(bob + "@" + srv.Domain())
	// Bob's presence may still be in flight: send until one arrives.
	const body = "hello from alice"
	var got Message
	for attempt := 0; ; attempt++ {
		if err := SendChat(ctx, a, jid.JID{}, to, body); err != nil {
			t.Fatal(err)
		}
		select {
		case got = <-inbox:
		case <-time.After(500 * time.Millisecond):
			if attempt < 10 {
				continue
			}
			t.Fatalf("%s: bob received nothing", srv.Kind())
		}
		break
	}
	if got.Body != body || !strings.HasPrefix(got.From, alice+"@"+srv.Domain()+"/") || got.Type != "chat" {
		t.Errorf("%s: bob got %+v, want chat %q from %s@%s/...", srv.Kind(), got, body, alice, srv.Domain())
	}
}

func testWrongPassword(t *testing.T, srv xmppserver.Server) {
	ctx := testCtx(t)
	u := uniqueUser(t, "carol")
	if err := srv.AddUser(ctx, u, "right"); err != nil {
		t.Fatal(err)
	}
	sess, err := TryDialClient(ctx, srv, u, "wrong", "")
	if err == nil {
		closeSession(sess)
		t.Fatalf("%s: login with a wrong password succeeded", srv.Kind())
	}
	// Overwriting the password takes effect.
	if err := srv.AddUser(ctx, u, "wrong"); err != nil {
		t.Fatal(err)
	}
	DialClient(ctx, t, srv, u, "wrong", "")
}

// privilegeNS is what each server's mod_privilege speaks.
var privilegeNS = map[string]string{"prosody": "urn:xmpp:privilege:2", "ejabberd": "urn:xmpp:privilege:1"}

// componentEvent is a stanza a component session received.
type componentEvent struct {
	msg       Message
	privilege []string // "access=type" pairs of a <privilege/> advertisement
}

// serveComponent decodes messages and privilege advertisements.
func serveComponent(t *testing.T, sess *xmpp.Session) <-chan componentEvent {
	out := make(chan componentEvent, 16)
	Serve(t, sess, xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		if start.Name.Local != "message" {
			return nil
		}
		var m struct {
			wireMessage
			Privilege *struct {
				XMLName xml.Name
				Perms   []struct {
					Access string `xml:"access,attr"`
					Type   string `xml:"type,attr"`
				} `xml:"perm"`
			} `xml:"privilege"`
		}
		if err := decodeStanza(r, start, &m); err != nil {
			return err
		}
		ev := componentEvent{msg: Message(m.wireMessage)}
		if p := m.Privilege; p != nil {
			ev.privilege = append(ev.privilege, "ns="+p.XMLName.Space)
			for _, perm := range p.Perms {
				ev.privilege = append(ev.privilege, perm.Access+"="+perm.Type)
			}
		}
		select {
		case out <- ev:
		default:
		}
		return nil
	}))
	return out
}

func testComponent(t *testing.T, srv xmppserver.Server) {
	ctx := testCtx(t)
	comp := DialComponent(ctx, t, srv)
	events := serveComponent(t, comp)

	user := uniqueUser(t, "dave")
	if err := srv.AddUser(ctx, user, "pw"); err != nil {
		t.Fatal(err)
	}
	c := DialClient(ctx, t, srv, user, "pw", "r1")
	inbox := ServeMessages(t, c)
	if err := SendPresence(ctx, c); err != nil {
		t.Fatal(err)
	}

	// Client -> component contact.
	contact := jid.MustParse("4711@" + srv.ComponentName())
	if err := SendChat(ctx, c, jid.JID{}, contact, "to the gateway"); err != nil {
		t.Fatal(err)
	}
	var privilege []string
	deadline := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-events:
			if ev.privilege != nil {
				privilege = ev.privilege
				continue
			}
			if ev.msg.Body != "to the gateway" || ev.msg.To != contact.String() ||
				ev.msg.From != c.LocalAddr().String() {
				t.Errorf("%s: component got %+v", srv.Kind(), ev.msg)
			}
			got = true
		case <-deadline:
			t.Fatalf("%s: component received nothing", srv.Kind())
		}
	}
	// The privilege advertisement comes right after the handshake.
	wantPriv := []string{"message=outgoing", "ns=" + privilegeNS[srv.Kind()], "presence=roster", "roster=both"}
	slices.Sort(privilege)
	if !slices.Equal(privilege, wantPriv) {
		t.Errorf("%s: privilege advertisement = %q, want %q", srv.Kind(), privilege, wantPriv)
	}

	// Component contact -> client (full JID: no presence subscription).
	// mellium v0.22.0 sends an empty <resource/> on bind, so the server
	// chose the resource: use the bound address.
	to := c.LocalAddr()
	if err := SendChat(ctx, comp, contact, to, "from the gateway"); err != nil {
		t.Fatal(err)
	}
	got := Receive(t, inbox, 5*time.Second)
	if got.Body != "from the gateway" || got.From != contact.String() {
		t.Errorf("%s: client got %+v, want %q from %s", srv.Kind(), got, "from the gateway", contact)
	}
}

func testComponentWrongSecret(t *testing.T, srv xmppserver.Server) {
	ctx := testCtx(t)
	sess, err := TryDialComponent(ctx, srv, "not-"+srv.Secret())
	if err == nil {
		closeSession(sess)
		t.Fatalf("%s: component handshake with a wrong secret succeeded", srv.Kind())
	}
	if !errors.Is(err, stream.NotAuthorized) {
		t.Errorf("%s: wrong secret: got %v, want a not-authorized stream error", srv.Kind(), err)
	}
}
