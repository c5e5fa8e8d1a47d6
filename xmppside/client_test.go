package xmppside

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// asyncCall runs f in a goroutine and returns a channel with its error.
func asyncCall(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func waitErr(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(waitFor):
		t.Fatal("call did not return")
		return nil
	}
}

func grant(t *testing.T, env *testEnv, ns, roster string) {
	t.Helper()
	env.fc.send(t, fmt.Sprintf(`<message from="localhost" to="imip.localhost" id="pr"><privilege xmlns="%s"><perm access="roster" type="%s"/><perm access="message" type="outgoing"/></privilege></message>`, ns, roster))
	select {
	case p := <-env.h.privileges:
		if p.Namespace != ns || p.Roster != roster {
			t.Fatalf("privileges = %+v", p)
		}
	case <-time.After(waitFor):
		t.Fatal("privileges not announced")
	}
}

func TestPrivilegesAndRoster(t *testing.T) {
	for i, ns := range []string{NSPrivilege2, NSPrivilege1} {
		t.Run(ns, func(t *testing.T) {
			env := startEnv(t, nil)
			ctx := context.Background()
			user := jid.MustParse("juliet@localhost/balcony")

			if _, err := env.c.RosterGet(ctx, user); !errors.Is(err, ErrNoPrivilege) {
				t.Fatalf("%d RosterGet before grant = %v, want ErrNoPrivilege", i, err)
			}
			grant(t, env, ns, "both")
			p := env.c.Privileges()
			if !p.CanGetRoster() || !p.CanSetRoster() || p.Message != "outgoing" || p.Server.String() != "localhost" {
				t.Errorf("%d Privileges() = %+v", i, p)
			}
			if p := env.c.PrivilegesFor(jid.MustParse("romeo@other.example")); p.Namespace != "" || p.CanGetRoster() {
				t.Errorf("%d privileges granted for another host", i)
			}
			select {
			case m := <-env.h.messages:
				t.Errorf("%d privilege message delivered to HandleMessage: %+v", i, m)
			default:
			}

			// Roster get: an IQ from the domain to the bare JID.
			got := make(chan []RosterItem, 1)
			errc := asyncCall(func() error {
				items, err := env.c.RosterGet(ctx, user)
				got <- items
				return err
			})
			req := env.fc.expect(t)
			if req.attr("type") != "get" || req.attr("from") != "imip.localhost" || req.attr("to") != "juliet@localhost" || req.child(nsRoster, "query") == nil {
				t.Fatalf("%d roster get request = %s", i, req)
			}
			env.fc.send(t, fmt.Sprintf(`<iq type="result" id="%s" from="juliet@localhost" to="imip.localhost"><query xmlns="jabber:iq:roster">
				<item jid="1@imip.localhost" name="One" subscription="both"><group>IMIP</group><group>Friends</group></item>
				<item jid="romeo@localhost" subscription="to"/><item jid="a@b@c"/></query></iq>`, req.attr("id")))
			if err := waitErr(t, errc); err != nil {
				t.Fatalf("%d RosterGet: %v", i, err)
			}
			want := []RosterItem{
				{JID: jid.MustParse("1@imip.localhost"), Name: "One", Subscription: "both", Groups: []string{"IMIP", "Friends"}},
				{JID: jid.MustParse("romeo@localhost"), Subscription: "to"},
			}
			if diff := cmp.Diff(want, <-got, cmpJID); diff != "" {
				t.Errorf("%d RosterGet items (-want +got):\n%s", i, diff)
			}

			// Roster set: one IQ per item.
			errc = asyncCall(func() error {
				return env.c.RosterSet(ctx, user, []RosterItem{
					{JID: jid.MustParse("2@imip.localhost"), Name: "Two", Subscription: "both", Groups: []string{"IMIP"}},
					{JID: jid.MustParse("3@imip.localhost"), Remove: true},
				})
			})
			for j, wantSub := range []string{"both", "remove"} {
				req := env.fc.expect(t)
				item := req.path("query", "item")
				if req.attr("type") != "set" || req.attr("to") != "juliet@localhost" || item.attr("subscription") != wantSub {
					t.Errorf("%d roster set %d = %s", i, j, req)
				}
				env.fc.send(t, fmt.Sprintf(`<iq type="result" id="%s" from="juliet@localhost" to="imip.localhost"/>`, req.attr("id")))
			}
			if err := waitErr(t, errc); err != nil {
				t.Errorf("%d RosterSet: %v", i, err)
			}

			// A refused roster set comes back as a stanza.Error.
			errc = asyncCall(func() error {
				return env.c.RosterSet(ctx, user, []RosterItem{{JID: jid.MustParse("2@imip.localhost")}})
			})
			req = env.fc.expect(t)
			env.fc.send(t, fmt.Sprintf(`<iq type="error" id="%s" from="juliet@localhost" to="imip.localhost"><error type="cancel"><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`, req.attr("id")))
			err := waitErr(t, errc)
			var se stanza.Error
			if !errors.As(err, &se) || se.Condition != stanza.InternalServerError {
				t.Errorf("%d refused RosterSet = %v, want internal-server-error stanza.Error", i, err)
			}
		})
	}
}

func TestPrivilegeGetOnly(t *testing.T) {
	env := startEnv(t, nil)
	grant(t, env, NSPrivilege2, "get")
	err := env.c.RosterSet(context.Background(), juliet, []RosterItem{{JID: contact}})
	if !errors.Is(err, ErrNoPrivilege) {
		t.Errorf("RosterSet with get-only privilege = %v, want ErrNoPrivilege", err)
	}
	// A new link forgets the grant.
	_ = env.fc.conn.Close()
	env.h.waitDisconnected(t)
	env.srv.accept(t)
	env.h.waitConnected(t)
	if p := env.c.Privileges(); p.Namespace != "" {
		t.Errorf("privileges survive a reconnect: %+v", p)
	}
}

func TestDiscoFeatures(t *testing.T) {
	env := startEnv(t, nil)
	var feats []string
	errc := asyncCall(func() error {
		var err error
		feats, err = env.c.DiscoFeatures(context.Background(), juliet)
		return err
	})
	req := env.fc.expect(t)
	if req.attr("from") != "imip.localhost" || req.attr("to") != juliet.String() || req.child(nsDiscoInfo, "query") == nil {
		t.Fatalf("disco request = %s", req)
	}
	env.fc.send(t, fmt.Sprintf(`<iq type="result" id="%s" from="%s" to="imip.localhost"><query xmlns="%s"><identity category="client" type="pc"/><feature var="a"/><feature var="http://jabber.org/protocol/rosterx"/></query></iq>`, req.attr("id"), juliet, nsDiscoInfo))
	if err := waitErr(t, errc); err != nil {
		t.Fatalf("DiscoFeatures: %v", err)
	}
	if !slices.Equal(feats, []string{"a", nsRosterX}) {
		t.Errorf("features = %q", feats)
	}
}

func TestSendIQErrors(t *testing.T) {
	env := startEnv(t, nil)
	ctx := context.Background()

	// A reply from another address is refused.
	errc := asyncCall(func() error { _, err := env.c.DiscoFeatures(ctx, juliet); return err })
	req := env.fc.expect(t)
	env.fc.send(t, fmt.Sprintf(`<iq type="result" id="%s" from="mallory@localhost/x" to="imip.localhost"/>`, req.attr("id")))
	if err := waitErr(t, errc); !errors.Is(err, ErrUnexpectedResponse) {
		t.Errorf("reply from elsewhere = %v, want ErrUnexpectedResponse", err)
	}

	// The caller's deadline.
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	errc = asyncCall(func() error { _, err := env.c.DiscoFeatures(tctx, juliet); return err })
	env.fc.expect(t)
	if err := waitErr(t, errc); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered IQ = %v, want DeadlineExceeded", err)
	}

	// The link dropping while waiting.
	errc = asyncCall(func() error { _, err := env.c.DiscoFeatures(ctx, juliet); return err })
	env.fc.expect(t)
	_ = env.fc.conn.Close()
	if err := waitErr(t, errc); !errors.Is(err, ErrNotConnected) {
		t.Errorf("IQ across a drop = %v, want ErrNotConnected", err)
	}

	if _, err := env.c.SendIQ(ctx, stanza.IQ{Type: stanza.ResultIQ, To: juliet}, nil); err == nil {
		t.Error("SendIQ of type result accepted")
	}
	if _, err := env.c.SendIQ(ctx, stanza.IQ{Type: stanza.GetIQ, From: jid.MustParse("localhost"), To: juliet}, nil); !errors.Is(err, ErrAddress) {
		t.Errorf("SendIQ from outside = %v, want ErrAddress", err)
	}
}

func TestSendRosterExchange(t *testing.T) {
	env := startEnv(t, nil)
	err := env.c.SendRosterExchange(context.Background(), juliet.Bare(), []RosterItem{
		{JID: jid.MustParse("1@imip.localhost"), Name: "One", Groups: []string{"IMIP"}},
		{JID: jid.MustParse("2@imip.localhost"), Remove: true},
		{JID: jid.MustParse("3@imip.localhost"), Action: "modify", Name: "Three"},
	})
	if err != nil {
		t.Fatalf("SendRosterExchange: %v", err)
	}
	n := env.fc.expect(t)
	if n.XMLName.Local != "message" || n.attr("from") != "imip.localhost" || n.attr("to") != "juliet@localhost" {
		t.Fatalf("roster exchange = %s", n)
	}
	x := n.child(nsRosterX, "x")
	var got []string
	for _, it := range x.Nodes {
		got = append(got, it.attr("action")+" "+it.attr("jid")+" "+it.attr("name")+" "+it.path("group").text())
	}
	want := []string{"add 1@imip.localhost One IMIP", "delete 2@imip.localhost  ", "modify 3@imip.localhost Three "}
	if !slices.Equal(got, want) {
		t.Errorf("items = %q, want %q", got, want)
	}
	if err := env.c.SendRosterExchange(context.Background(), juliet, []RosterItem{{JID: contact, Action: "rename"}}); err == nil {
		t.Error("invalid action accepted")
	}
}
