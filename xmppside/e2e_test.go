package xmppside

import (
	"context"
	"slices"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// discoInfo is a disco#info reply as a real client decodes it.
type discoInfo struct {
	Identities []struct {
		Category string `xml:"category,attr"`
		Type     string `xml:"type,attr"`
	} `xml:"identity"`
	Features []struct {
		Var string `xml:"var,attr"`
	} `xml:"feature"`
}

// TestEndToEnd runs the Component against real servers from
// internal/testenv and talks to it with a real client (skipped when the
// servers are not installed, failed under IMIP_REQUIRE_SERVERS=1).
func TestEndToEnd(t *testing.T) {
	users := map[string]string{"juliet": "pw-juliet"}
	servers := []struct {
		name    string
		start   func(t *testing.T) xmppserver.Server
		privNS  string
		rosterQ bool // the roster get through the privilege works
	}{
		0: {"prosody", func(t *testing.T) xmppserver.Server {
			return testenv.Prosody(t, xmppserver.ProsodyOptions{Privilege: true, Users: users})
		}, NSPrivilege2, true},
		1: {"ejabberd", func(t *testing.T) xmppserver.Server {
			return testenv.Ejabberd(t, xmppserver.EjabberdOptions{Privilege: true, Users: users})
		}, NSPrivilege1, true},
	}
	for i, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			srv := s.start(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			h := newFakeHandler()
			cfg := testConfig(srv.ComponentAddr())
			cfg.Domain = jid.MustParse(srv.ComponentName())
			cfg.Secret = srv.Secret()
			c := New(cfg, h)
			runCtx, stopRun := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(runCtx) }()
			defer func() {
				stopRun()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%d Run: %v", i, err)
					}
				case <-time.After(waitFor):
					t.Errorf("%d Run did not return", i)
				}
			}()
			h.waitConnected(t)

			select {
			case p := <-h.privileges:
				if p.Namespace != s.privNS || !p.CanGetRoster() {
					t.Errorf("%d privileges = %+v, want %s with roster", i, p, s.privNS)
				}
			case <-time.After(waitFor):
				t.Errorf("%d no XEP-0356 privileges announced", i)
			}

			sess := testenv.DialClient(ctx, t, srv, "juliet", users["juliet"], "e2e")
			msgs := testenv.ServeMessages(t, sess)
			user := sess.LocalAddr()
			comp := c.Domain()
			contactJID := jid.MustParse("12345@" + comp.String())

			// disco#info from a real client, to the domain and to a contact.
			var info discoInfo
			query := elem(nsDiscoInfo, "query", nil)
			if err := sess.UnmarshalIQElement(ctx, query, stanza.IQ{Type: stanza.GetIQ, To: comp}, &info); err != nil {
				t.Fatalf("%d disco#info to %s: %v", i, comp, err)
			}
			if len(info.Identities) != 1 || info.Identities[0].Category != "gateway" || info.Identities[0].Type != "imip" {
				t.Errorf("%d domain identities = %+v", i, info.Identities)
			}
			if !slices.ContainsFunc(info.Features, func(f struct {
				Var string `xml:"var,attr"`
			}) bool {
				return f.Var == nsRegister
			}) {
				t.Errorf("%d domain features lack %s: %+v", i, nsRegister, info.Features)
			}
			info = discoInfo{}
			if err := sess.UnmarshalIQElement(ctx, elem(nsDiscoInfo, "query", nil), stanza.IQ{Type: stanza.GetIQ, To: contactJID}, &info); err != nil {
				t.Fatalf("%d disco#info to %s: %v", i, contactJID, err)
			}
			if len(info.Identities) != 1 || info.Identities[0].Category != "client" {
				t.Errorf("%d contact identities = %+v", i, info.Identities)
			}

			// XEP-0077 registration from the client reaches the Registrar.
			reg := elem(nsRegister, "query", nil, textElem("", "username", "12345"), textElem("", "password", "secret"))
			if err := sess.UnmarshalIQElement(ctx, reg, stanza.IQ{Type: stanza.SetIQ, To: comp}, nil); err != nil {
				t.Fatalf("%d register: %v", i, err)
			}
			if calls := h.calls(); !slices.Contains(calls, "juliet@"+srv.Domain()+" 12345 secret") {
				t.Errorf("%d Registrar calls = %q", i, calls)
			}

			// A message from the client arrives once; one from a contact
			// reaches the client.
			if err := testenv.SendChat(ctx, sess, jid.JID{}, contactJID, "hello gateway"); err != nil {
				t.Fatalf("%d SendChat: %v", i, err)
			}
			m := h.nextMessage(t)
			if m.Body != "hello gateway" || !m.From.Equal(user) || !m.To.Equal(contactJID) {
				t.Errorf("%d delivered message = %+v", i, m)
			}
			if err := c.SendMessage(ctx, Message{From: contactJID, To: user, Type: "chat", Body: "hello juliet"}); err != nil {
				t.Fatalf("%d SendMessage: %v", i, err)
			}
			got := testenv.Receive(t, msgs, waitFor)
			if got.Body != "hello juliet" || got.From != contactJID.String() {
				t.Errorf("%d client received %+v", i, got)
			}

			// The privileged roster read.
			if s.rosterQ {
				if _, err := c.RosterGet(ctx, user); err != nil {
					t.Errorf("%d RosterGet: %v", i, err)
				}
			}
			// The link is still up: nothing we sent made the server close it.
			if !c.Connected() {
				t.Errorf("%d component disconnected during the exchange", i)
			}
		})
	}
}
