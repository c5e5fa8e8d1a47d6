package xmppside

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// features lists the feature vars of a disco#info reply.
func features(n *node) []string {
	var out []string
	for _, c := range n.child(nsDiscoInfo, "query").Nodes {
		if c.XMLName.Local == "feature" {
			out = append(out, c.attr("var"))
		}
	}
	return out
}

func TestIQAnswers(t *testing.T) {
	env := startEnv(t, func(c *Config) { c.ContactFeatures = []string{nsReceipts} })
	const user = `from="juliet@localhost/balcony"`
	tests := []struct {
		name  string
		iq    string // {id} and {from} are filled in
		typ   string // result or error
		cond  string // error condition
		check func(*node) error
	}{
		0: {"disco#info domain", `<iq type="get" id="{id}" {from} to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`, "result", "",
			func(n *node) error {
				id := n.path("query", "identity")
				if id.attr("category") != "gateway" || id.attr("type") != "imip" || id.attr("name") != "IMIP Transport" {
					return fmt.Errorf("identity = %s", id)
				}
				for _, f := range []string{nsDiscoInfo, nsDiscoItems, nsRegister, nsGateway, nsVersion, nsPing, nsNick} {
					if !slices.Contains(features(n), f) {
						return fmt.Errorf("feature %s missing in %v", f, features(n))
					}
				}
				return nil
			}},
		1: {"disco#info contact", `<iq type="get" id="{id}" {from} to="12345@imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`, "result", "",
			func(n *node) error {
				id := n.path("query", "identity")
				if id.attr("category") != "client" || id.attr("type") != "pc" {
					return fmt.Errorf("identity = %s", id)
				}
				if f := features(n); !slices.Contains(f, nsDiscoInfo) || !slices.Contains(f, nsReceipts) || slices.Contains(f, nsRegister) {
					return fmt.Errorf("contact features = %v", f)
				}
				if n.attr("from") != "12345@imip.localhost" {
					return fmt.Errorf("from = %q", n.attr("from"))
				}
				return nil
			}},
		2: {"disco#info unknown node", `<iq type="get" id="{id}" {from} to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info" node="x"/></iq>`, "error", "item-not-found", nil},
		3: {"disco#items", `<iq type="get" id="{id}" {from} to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#items"/></iq>`, "result", "",
			func(n *node) error {
				if q := n.child(nsDiscoItems, "query"); q == nil || len(q.Nodes) != 0 {
					return fmt.Errorf("items = %s", q)
				}
				return nil
			}},
		4: {"version", `<iq type="get" id="{id}" {from} to="imip.localhost"><query xmlns="jabber:iq:version"/></iq>`, "result", "",
			func(n *node) error {
				q := n.child(nsVersion, "query")
				if q.path("name").Text != "imip-transport" || q.path("version").Text != "1.2.3" || q.path("os").Text != runtime.GOOS {
					return fmt.Errorf("version = %s", q)
				}
				return nil
			}},
		5:  {"version to contact", `<iq type="get" id="{id}" {from} to="1@imip.localhost"><query xmlns="jabber:iq:version"/></iq>`, "error", "service-unavailable", nil},
		6:  {"ping domain", `<iq type="get" id="{id}" {from} to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, "result", "", nil},
		7:  {"ping contact", `<iq type="get" id="{id}" {from} to="1@imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, "result", "", nil},
		8:  {"unknown get", `<iq type="get" id="{id}" {from} to="imip.localhost"><query xmlns="urn:example:nothing"/></iq>`, "error", "service-unavailable", nil},
		9:  {"unknown set", `<iq type="set" id="{id}" {from} to="1@imip.localhost"><command xmlns="http://jabber.org/protocol/commands"/></iq>`, "error", "service-unavailable", nil},
		10: {"disco#info set", `<iq type="set" id="{id}" {from} to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`, "error", "service-unavailable", nil},
		11: {"no payload", `<iq type="get" id="{id}" {from} to="imip.localhost"/>`, "error", "bad-request", nil},
		12: {"text payload", `<iq type="get" id="{id}" {from} to="imip.localhost">hello</iq>`, "error", "bad-request", nil},
		13: {"bad type", `<iq type="fetch" id="{id}" {from} to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, "error", "bad-request", nil},
		14: {"malformed to", `<iq type="get" id="{id}" {from} to="a@b@imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`, "error", "jid-malformed", nil},
		15: {"to another domain", `<iq type="get" id="{id}" {from} to="other.example"><ping xmlns="urn:xmpp:ping"/></iq>`, "error", "service-unavailable", nil},
		16: {"gateway get", `<iq type="get" id="{id}" {from} to="imip.localhost"><query xmlns="jabber:iq:gateway"/></iq>`, "result", "",
			func(n *node) error {
				q := n.child(nsGateway, "query")
				if q.path("desc").Text != "Enter the IMIP number" || q.path("prompt").Text != "IMIP number" {
					return fmt.Errorf("gateway = %s", q)
				}
				return nil
			}},
		17: {"gateway set", `<iq type="set" id="{id}" {from} to="imip.localhost"><query xmlns="jabber:iq:gateway"><prompt>12345</prompt></query></iq>`, "result", "",
			func(n *node) error {
				if j := n.path("query", "jid").Text; j != "12345@imip.localhost" {
					return fmt.Errorf("jid = %q", j)
				}
				return nil
			}},
		18: {"gateway set invalid", `<iq type="set" id="{id}" {from} to="imip.localhost"><query xmlns="jabber:iq:gateway"><prompt>abc</prompt></query></iq>`, "error", "not-acceptable",
			func(n *node) error {
				if txt := errText(n); txt != "" {
					return fmt.Errorf("untyped Translate error leaked text %q", txt)
				}
				return nil
			}},
		19: {"gateway set typed error", `<iq type="set" id="{id}" {from} to="imip.localhost"><query xmlns="jabber:iq:gateway"><prompt>0</prompt></query></iq>`, "error", "item-not-found",
			func(n *node) error {
				if txt := errText(n); txt != "no such number" {
					return fmt.Errorf("text = %q", txt)
				}
				return nil
			}},
		20: {"gateway set empty", `<iq type="set" id="{id}" {from} to="imip.localhost"><query xmlns="jabber:iq:gateway"/></iq>`, "error", "bad-request", nil},
		21: {"gateway to contact", `<iq type="get" id="{id}" {from} to="1@imip.localhost"><query xmlns="jabber:iq:gateway"/></iq>`, "error", "service-unavailable", nil},
		22: {"register to contact", `<iq type="get" id="{id}" {from} to="1@imip.localhost"><query xmlns="jabber:iq:register"/></iq>`, "error", "service-unavailable", nil},
		23: {"register from a server", `<iq type="get" id="{id}" from="localhost" to="imip.localhost"><query xmlns="jabber:iq:register"/></iq>`, "error", "not-allowed", nil},
	}
	for i, tc := range tests {
		id := fmt.Sprintf("q%d", i)
		raw := strings.NewReplacer("{id}", id, "{from}", user).Replace(tc.iq)
		reply := env.fc.roundTrip(t, raw)
		if got := reply.attr("type"); got != tc.typ {
			t.Errorf("%d %s: reply type = %q, want %q: %s", i, tc.name, got, tc.typ, reply)
			continue
		}
		if got := errCondition(reply); got != tc.cond {
			t.Errorf("%d %s: condition = %q, want %q: %s", i, tc.name, got, tc.cond, reply)
		}
		if reply.attr("from") == "" {
			t.Errorf("%d %s: reply without from: %s", i, tc.name, reply)
		}
		if tc.check != nil {
			if err := tc.check(reply); err != nil {
				t.Errorf("%d %s: %v: %s", i, tc.name, err, reply)
			}
		}
	}
}
