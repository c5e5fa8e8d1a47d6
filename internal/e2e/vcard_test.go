package e2e

import (
	"context"
	_ "embed"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
	"imip-transport/xmppside"
)

// wireVCard is the part of a vcard-temp answer the tests read.
type wireVCard struct {
	VCard struct {
		FN       string `xml:"FN"`
		Nickname string `xml:"NICKNAME"`
		Note     string `xml:"NOTE"`
	} `xml:"vcard-temp vCard"`
}

func vcardOf(t *testing.T, g got) wireVCard {
	t.Helper()
	if g.Type != "result" {
		t.Fatalf("vCard request answered %s", g.Raw)
	}
	var v wireVCard
	if err := xml.Unmarshal([]byte(g.Raw), &v); err != nil {
		t.Fatalf("decoding %s: %v", g.Raw, err)
	}
	return v
}

// identityName returns the name of the first identity of a disco#info
// answer.
func identityName(t *testing.T, g got) string {
	t.Helper()
	var d struct {
		Identity struct {
			Name string `xml:"name,attr"`
		} `xml:"http://jabber.org/protocol/disco#info query>identity"`
	}
	if err := xml.Unmarshal([]byte(g.Raw), &d); err != nil {
		t.Fatalf("decoding %s: %v", g.Raw, err)
	}
	return d.Identity.Name
}

// TestVCard: through Prosody, a registered user asks a contact's vCard and
// gets the IMIP nickname and number; a stranger asking the same JID gets
// the number only; the gateway's own vCard and disco identity take the
// IMIP service's name from the server's HELO once a login saw it.
func TestVCard(t *testing.T) { testVCard(t, prosodyPriv.Get(t)) }

// TestVCardEjabberd is TestVCard on ejabberd.
func TestVCardEjabberd(t *testing.T) { testVCard(t, ejabberd.Get(t)) }

func testVCard(t *testing.T, srv xmppserver.Server) {
	tr := startTransport(t, srv, acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	gw := tr.domain.String()
	const vcardGet = `<vCard xmlns="vcard-temp"/>`
	const discoGet = `<query xmlns="http://jabber.org/protocol/disco#info"/>`

	c := newUser(t, srv, "vcard")
	c.autoApprove = gw
	if n := identityName(t, c.iq("get", gw, discoGet)); n != xmppside.DefaultIdentityName {
		t.Errorf("disco name before any IMIP login = %q, want %q", n, xmppside.DefaultIdentityName)
	}
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	c.expect("roster push of bob", func(g got) bool {
		return isRosterPush(g) && g.Items[0].JID == tr.contact(acctBob.Number)
	})

	bob := vcardOf(t, c.iq("get", tr.contact(acctBob.Number), vcardGet))
	if bob.VCard.FN != "bob" || bob.VCard.Nickname != "bob" || !strings.Contains(bob.VCard.Note, string(acctBob.Number)) {
		t.Errorf("bob's vCard = %+v, want FN and NICKNAME bob and the number", bob.VCard)
	}
	info := c.iq("get", tr.contact(acctBob.Number), discoGet)
	if !strings.Contains(info.Raw, `var="vcard-temp"`) {
		t.Errorf("contact disco#info lacks vcard-temp: %s", info.Raw)
	}

	// A client that asks for a whole roster's vCards at once: all are
	// answered (from the copy of the nicknames the first request left).
	const burst = 200
	began := time.Now()
	for i := range burst {
		c.send(`<iq type="get" id="burst-%d" to="%d@%s">%s</iq>`, i, 5000000+i, gw, vcardGet)
	}
	for i := range burst {
		id := fmt.Sprint("burst-", i)
		r := c.expect("answer to "+id, func(g got) bool { return g.Name == "iq" && g.ID == id })
		if r.Type != "result" {
			t.Errorf("vCard %d of a burst of %d: %s", i, burst, r.Raw)
		}
	}
	t.Logf("%d vCard requests sent back to back answered in %v", burst, time.Since(began).Round(time.Millisecond))

	stranger := newUser(t, srv, "stranger")
	other := vcardOf(t, stranger.iq("get", tr.contact(acctBob.Number), vcardGet))
	if other.VCard.FN != string(acctBob.Number) || other.VCard.Nickname != "" {
		t.Errorf("bob's vCard for a stranger = %+v, want the number only", other.VCard)
	}

	own := vcardOf(t, c.iq("get", gw, vcardGet))
	if own.VCard.FN != imipserver.DefaultDisplayName {
		t.Errorf("gateway vCard FN = %q, want the HELO's ServiceDisplayName %q", own.VCard.FN, imipserver.DefaultDisplayName)
	}
	if n := identityName(t, c.iq("get", gw, discoGet)); n != imipserver.DefaultDisplayName {
		t.Errorf("disco name after a login = %q, want %q", n, imipserver.DefaultDisplayName)
	}
}

//go:embed testdata/slixmpp_vcard.py
var slixmppVCard string

// TestVCardSlixmpp: an independent client library (python3-slixmpp, its
// XEP-0054 and XEP-0060 plugins) reads the contact's nickname from the
// vCard and from the vCard4 PEP node, and the gateway's name.
func TestVCardSlixmpp(t *testing.T) {
	testenv.SkipUnavailable(t, testenv.SlixmppAvailable())
	srv := prosodyPriv.Get(t)
	tr := startTransport(t, srv, acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	c := newUser(t, srv, "slivc")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	c.expect("roster push of bob", func(g got) bool {
		return isRosterPush(g) && g.Items[0].JID == tr.contact(acctBob.Number)
	})

	_, port, _ := strings.Cut(srv.C2SAddr(), ":")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, err := testenv.RunPython(ctx, t, slixmppTimeout, slixmppVCard,
		c.jid.Bare().String()+"/slixmpp", "pw-"+c.jid.Localpart(), port, tr.domain.String(), tr.contact(acctBob.Number))
	if err != nil {
		t.Fatalf("slixmpp script: %v\n%s", err, out)
	}
	lines := scriptLines(out)
	if v := lines["FAIL"]; len(v) > 0 {
		t.Fatalf("script reported failures: %s\n%s", v, out)
	}
	// slixmpp reads NICKNAME as a list (vcard-temp allows several, comma
	// separated).
	var peer, gw struct {
		FN, Note string
		Nickname []string
	}
	var nick string
	for word, v := range map[string]any{"PEER": &peer, "GATEWAY": &gw, "VCARD4_NICKNAME": &nick} {
		if len(lines[word]) != 1 {
			t.Fatalf("script printed %d %s lines, want 1:\n%s", len(lines[word]), word, out)
		}
		if err := json.Unmarshal(lines[word][0], v); err != nil {
			t.Fatalf("%s line %s: %v", word, lines[word][0], err)
		}
	}
	if peer.FN != acctBob.Nick || !slices.Equal(peer.Nickname, []string{acctBob.Nick}) || !strings.Contains(peer.Note, string(acctBob.Number)) {
		t.Errorf("contact vCard as slixmpp read it: %+v", peer)
	}
	if gw.FN != imipserver.DefaultDisplayName {
		t.Errorf("gateway vCard as slixmpp read it: %+v, want FN %q", gw, imipserver.DefaultDisplayName)
	}
	if nick != acctBob.Nick {
		t.Errorf("vCard4 nickname as slixmpp read it: %q, want %q", nick, acctBob.Nick)
	}
}
