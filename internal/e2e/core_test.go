package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
	"imip-transport/internal/xmppserver"
)

// Demo IMIP accounts of the end-to-end tests.
var (
	acctAlice = imiptest.Account{Number: "1001001", Password: "alice-pw", Nick: "alice"}
	acctBob   = imiptest.Account{Number: "2002002", Password: "bob-pw", Nick: "bob"}
	acctCarol = imiptest.Account{Number: "3003003", Password: "carol-pw", Nick: "carol"}
)

func TestCoreProsody(t *testing.T)  { runCore(t, prosodyPriv.Get(t)) }
func TestCoreEjabberd(t *testing.T) { runCore(t, ejabberd.Get(t)) }

func runCore(t *testing.T, srv xmppserver.Server) {
	t.Run("Register", func(t *testing.T) { testRegister(t, srv) })
	t.Run("PresenceAndMessages", func(t *testing.T) { testPresenceAndMessages(t, srv) })
	t.Run("Errors", func(t *testing.T) { testErrors(t, srv) })
	t.Run("Unregister", func(t *testing.T) { testUnregister(t, srv) })
}

// befriend puts a and b on each other's IMIP lists.
func befriend(t *testing.T, tr *transport, a, b wire.Number) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st := tr.imip.Store()
	if err := st.AddContact(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	if err := st.AddContact(ctx, b, a); err != nil {
		t.Fatal(err)
	}
}

func testRegister(t *testing.T, srv xmppserver.Server) {
	tr := startTransport(t, srv, acctAlice, acctBob)
	c := newUser(t, srv, "reg")
	gw := tr.domain.String()

	form := c.iq("get", gw, `<query xmlns="jabber:iq:register"/>`)
	if form.Type != "result" || !strings.Contains(form.Raw, "<username") || strings.Contains(form.Raw, "<registered") {
		t.Fatalf("registration form before registering: %s", form.Raw)
	}
	if r := c.register(tr, "12ab", "x"); r.Type != "error" || r.ErrCond != "not-acceptable" {
		t.Errorf("non-numeric number: %s", r.Raw)
	}
	if r := c.register(tr, string(acctAlice.Number), "wrong"); r.Type != "error" || r.ErrCond != "not-authorized" || r.ErrText == "" {
		t.Errorf("wrong password: %s", r.Raw)
	}
	// imipd answers a number without an account like a wrong password, so
	// that numbers cannot be enumerated through logins.
	if r := c.register(tr, "9999999", "x"); r.Type != "error" || r.ErrCond != "not-authorized" {
		t.Errorf("unknown number: %s", r.Raw)
	}
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	form = c.iq("get", gw, `<query xmlns="jabber:iq:register"/>`)
	if !strings.Contains(form.Raw, "<registered") || !strings.Contains(form.Raw, string(acctAlice.Number)) || strings.Contains(form.Raw, acctAlice.Password) {
		t.Errorf("registration form after registering (registered, number, no password): %s", form.Raw)
	}
	// Registering again updates the credentials.
	if r := c.register(tr, string(acctBob.Number), acctBob.Password); r.Type != "result" {
		t.Errorf("registering again: %s", r.Raw)
	}
	form = c.iq("get", gw, `<query xmlns="jabber:iq:register"/>`)
	if !strings.Contains(form.Raw, string(acctBob.Number)) {
		t.Errorf("registration not updated: %s", form.Raw)
	}
	// The gateway answers disco on itself and on contacts.
	info := c.iq("get", gw, `<query xmlns="http://jabber.org/protocol/disco#info"/>`)
	for _, want := range []string{`category="gateway"`, `type="imip"`, "jabber:iq:register", "jabber:iq:gateway"} {
		if !strings.Contains(info.Raw, want) {
			t.Errorf("disco#info of the gateway lacks %s: %s", want, info.Raw)
		}
	}
	info = c.iq("get", tr.contact(acctBob.Number), `<query xmlns="http://jabber.org/protocol/disco#info"/>`)
	if !strings.Contains(info.Raw, `category="client"`) || !strings.Contains(info.Raw, `type="pc"`) {
		t.Errorf("disco#info of a contact: %s", info.Raw)
	}
	tx := c.iq("set", gw, `<query xmlns="jabber:iq:gateway"><prompt>2002002</prompt></query>`)
	if !strings.Contains(tx.Raw, tr.contact(acctBob.Number)) {
		t.Errorf("jabber:iq:gateway translation: %s", tx.Raw)
	}
}

func testPresenceAndMessages(t *testing.T, srv xmppserver.Server) {
	tr := startTransport(t, srv, acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	c := newUser(t, srv, "pm")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	bobJID := tr.contact(acctBob.Number)

	// Approving the gateway's subscription sends it the user's presence,
	// which logs in to IMIP: bob sees alice, alice sees bob.
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	c.expect("presence of the gateway", isPresence(tr.domain.String(), ""))
	c.expect("bob's presence", isPresence(bobJID, ""))

	// Each show value maps to its IMIP status, with the status text.
	for _, tc := range []struct {
		show string
		want wire.Status
	}{{"away", wire.StatusAway}, {"xa", wire.StatusAway}, {"dnd", wire.StatusBusy}, {"chat", wire.StatusOnline}, {"", wire.StatusOnline}} {
		text := "status " + tc.show + " ✓"
		if tc.show == "" {
			c.send(`<presence><status>%s</status></presence>`, text)
		} else {
			c.send(`<presence><show>%s</show><status>%s</status></presence>`, tc.show, text)
		}
		bob.expectStat(acctAlice.Number, tc.want, text)
	}
	// And the other way.
	for _, tc := range []struct {
		st       wire.Status
		wantShow string
	}{{wire.StatusAway, "away"}, {wire.StatusBusy, "dnd"}, {wire.StatusOnline, ""}} {
		text := "bob is " + string(tc.st)
		bob.setStatus(tc.st, text)
		g := c.expect("bob's "+string(tc.st), func(g got) bool {
			return isPresence(bobJID, "")(g) && g.Status == text
		})
		if g.Show != tc.wantShow {
			t.Errorf("STAT %s arrived as show %q, want %q", tc.st, g.Show, tc.wantShow)
		}
	}

	// Messages both ways, UTF-8 and several lines.
	text := "Grüße aus Köln — 你好\nzweite Zeile\n\tdritte"
	c.send(`<message type="chat" to=%q id="m1"><body>%s</body></message>`, bobJID, text)
	bob.expectMessage(acctAlice.Number, text)
	reply := "ça va ? 👍\nsecond line"
	bob.send(acctAlice.Number, reply)
	m := c.expect("bob's message", isMessage(bobJID))
	// bob is in alice's list (and roster, under his nick): no XEP-0172 nick
	// in each of his messages.
	if m.Body != reply || m.Type != "chat" || m.Nick != "" || m.Delay != "" {
		t.Errorf("message from IMIP: body %q type %q nick %q delay %q", m.Body, m.Type, m.Nick, m.Delay)
	}
	// A normal message (no type) is bridged too.
	c.send(`<message to=%q><body>normal one</body></message>`, bobJID)
	bob.expectMessage(acctAlice.Number, "normal one")

	// Going offline logs out: bob sees alice go offline.
	c.send(`<presence type="unavailable"/>`)
	bob.expectStat(acctAlice.Number, wire.StatusOffline, "")
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Errorf("alice still online on IMIP after her last resource left")
	}

	// A message sent while she was away arrives with a delay at next login.
	bob.send(acctAlice.Number, "while you were out")
	time.Sleep(1100 * time.Millisecond) // let the login time pass the Timo second
	c.send(`<presence/>`)
	m = c.expect("stored message", isMessage(bobJID))
	if m.Body != "while you were out" || m.Delay == "" {
		t.Errorf("stored message: body %q delay %q (want a XEP-0203 delay)", m.Body, m.Delay)
	}
}

func testErrors(t *testing.T, srv xmppserver.Server) {
	tr := startTransport(t, srv, acctAlice, acctBob)
	c := newUser(t, srv, "err")
	c.autoApprove = tr.domain.String()

	// Unregistered: registration-required.
	c.send(`<message type="chat" to=%q id="unreg"><body>hi</body></message>`, tr.contact(acctBob.Number))
	if e := c.expect("registration-required", isMessageError("unreg")); e.ErrCond != "registration-required" {
		t.Errorf("unregistered sender: %s", e.Raw)
	}
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	c.expect("gateway online", isPresence(tr.domain.String(), ""))
	// Unavailable to the gateway logs out of IMIP: then a message gets an
	// error, not silence.
	c.send(`<presence type="unavailable" to=%q/>`, tr.domain.String())
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Fatalf("still on IMIP after unavailable presence to the gateway")
	}
	c.send(`<message type="chat" to=%q id="offline"><body>hi</body></message>`, tr.contact(acctBob.Number))
	if e := c.expect("error while not online", isMessageError("offline")); e.ErrCond == "" {
		t.Errorf("message while not logged in: %s", e.Raw)
	}
	c.send(`<presence/>`)
	c.expect("gateway online again", isPresence(tr.domain.String(), ""))
	// A non-numeric contact: jid-malformed.
	c.send(`<message type="chat" to=%q id="bad"><body>hi</body></message>`, "bob@"+tr.domain.String())
	if e := c.expect("jid-malformed", isMessageError("bad")); e.ErrCond != "jid-malformed" {
		t.Errorf("non-numeric contact: %s", e.Raw)
	}
	// An unknown number: IMIP answers ACK 811, the sender gets item-not-found
	// with the original id.
	c.send(`<message type="chat" to=%q id="nobody-42"><body>anyone?</body></message>`, tr.contact("5555555"))
	if e := c.expect("item-not-found", isMessageError("nobody-42")); e.ErrCond != "item-not-found" || bare(e.From) != tr.contact("5555555") {
		t.Errorf("unknown number: %s", e.Raw)
	}
}

func testUnregister(t *testing.T, srv xmppserver.Server) {
	tr := startTransport(t, srv, acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	c := newUser(t, srv, "unreg")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	c.expect("bob online", isPresence(tr.contact(acctBob.Number), ""))

	r := c.iq("set", tr.domain.String(), `<query xmlns="jabber:iq:register"><remove/></query>`)
	if r.Type != "result" {
		t.Fatalf("unregister: %s", r.Raw)
	}
	bob.expectStat(acctAlice.Number, wire.StatusOffline, "")
	for _, from := range []string{tr.contact(acctBob.Number), tr.domain.String()} {
		c.expect("unavailable from "+from, isPresence(from, "unavailable"))
	}
	form := c.iq("get", tr.domain.String(), `<query xmlns="jabber:iq:register"/>`)
	if strings.Contains(form.Raw, "<registered") {
		t.Errorf("still registered after remove: %s", form.Raw)
	}
	c.send(`<message type="chat" to=%q id="after"><body>hi</body></message>`, tr.contact(acctBob.Number))
	if e := c.expect("registration-required", isMessageError("after")); e.ErrCond != "registration-required" {
		t.Errorf("message after unregistering: %s", e.Raw)
	}
	_ = imipside.StatEvent{}
}
