package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/internal/app"
	"imip-transport/internal/xmppserver"
)

// quiet is how long a test waits to be sure something does not happen.
const quiet = 1500 * time.Millisecond

func isRosterPush(g got) bool { return g.Name == "iq" && g.Type == "set" && len(g.Items) > 0 }

// rosterItems fetches the client's roster.
func (c *client) rosterItems() map[string]gotItem {
	c.t.Helper()
	r := c.iq("get", "", `<query xmlns="jabber:iq:roster"/>`)
	out := make(map[string]gotItem)
	for _, it := range r.Items {
		out[it.JID] = it
	}
	return out
}

// waitRosterItem waits until the roster holds jid with subscription sub.
func (c *client) waitRosterItem(jid, sub string) {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		items := c.rosterItems()
		if it, ok := items[jid]; ok && it.Subscription == sub {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("roster item %s with subscription %s: roster is %+v", jid, sub, items)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRosterPrivileged: with XEP-0356 the contacts land in the roster with
// their nicknames and the group, by roster push, with no subscription
// requests, and a re-login or a restart sends nothing again.
func TestRosterPrivileged(t *testing.T) {
	srv := prosodyPriv.Get(t)
	tr := startTransport(t, srv, acctAlice, acctBob, acctCarol)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	befriend(t, tr, acctAlice.Number, acctCarol.Number)
	c := newUser(t, srv, "priv")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)

	for _, a := range []struct {
		n    wire.Number
		nick string
	}{{acctBob.Number, "bob"}, {acctCarol.Number, "carol"}} {
		push := c.expect("roster push of "+a.nick, func(g got) bool {
			return isRosterPush(g) && g.Items[0].JID == tr.contact(a.n)
		})
		it := push.Items[0]
		if it.Name != a.nick || len(it.Groups) != 1 || it.Groups[0] != "IMIP" {
			t.Errorf("roster push for %s: name %q groups %v, want %q [IMIP]", a.n, it.Name, it.Groups, a.nick)
		}
	}
	items := c.rosterItems()
	if it, ok := items[tr.contact(acctBob.Number)]; !ok || it.Name != "bob" {
		t.Errorf("roster after sync: %+v", items)
	}
	c.never("subscription request from a contact", quiet, func(g got) bool {
		return g.Name == "presence" && g.Type == "subscribe" && bare(g.From) != tr.domain.String()
	})
	assertNoResync(t, tr, c)
}

// assertNoResync logs the user out and in again, then restarts the
// transport, and checks that neither sends roster pushes or subscription
// requests for unchanged contacts.
func assertNoResync(t *testing.T, tr *transport, c *client) {
	t.Helper()
	resync := func(g got) bool {
		return isRosterPush(g) || (g.Name == "presence" && g.Type == "subscribe" && bare(g.From) != tr.domain.String())
	}
	c.mu.Lock()
	c.backlog = nil
	c.mu.Unlock()
	c.send(`<presence type="unavailable"/>`)
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Fatal("still on IMIP after going offline")
	}
	c.send(`<presence/>`)
	if !tr.imip.WaitOnline(acctAlice.Number, true, waitFor) {
		t.Fatal("not on IMIP after coming back")
	}
	c.never("roster change after a re-login", quiet, resync)
	tr.restart()
	if !tr.imip.WaitOnline(acctAlice.Number, true, waitFor) {
		t.Fatal("not on IMIP after a transport restart")
	}
	c.never("roster change after a restart", quiet, resync)
}

// TestRosterFallbackProsody: without privileges the gateway asks for each
// contact with a subscribe carrying the nickname, once.
func TestRosterFallbackProsody(t *testing.T) { testRosterFallback(t, prosodyNoPriv.Get(t)) }

// TestRosterFallbackEjabberd: ejabberd 23.01's privilege:1 roster set fails;
// the gateway falls back to subscription presences.
func TestRosterFallbackEjabberd(t *testing.T) { testRosterFallback(t, ejabberd.Get(t)) }

func testRosterFallback(t *testing.T, srv xmppserver.Server) {
	tr := startTransport(t, srv, acctAlice, acctBob, acctCarol)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	c := newUser(t, srv, "fb")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	sub := c.expect("subscribe from bob", isPresence(tr.contact(acctBob.Number), "subscribe"))
	if sub.Nick != "bob" {
		t.Errorf("subscribe from bob carries nick %q, want bob", sub.Nick)
	}
	// Once approved both ways, bob's presence reaches the user.
	bob.setStatus(wire.StatusAway, "back soon")
	c.expect("bob's presence", func(g got) bool {
		return isPresence(tr.contact(acctBob.Number), "")(g) && g.Show == "away" && g.Status == "back soon"
	})
	c.waitRosterItem(tr.contact(acctBob.Number), "both")
	assertNoResync(t, tr, c)
}

// TestAddAcceptChatRemove: a Jabber user adds an imipd user, who accepts;
// they chat; the imipd user asks the other way and is accepted; then each
// removes the other.
func TestAddAcceptChatRemove(t *testing.T) {
	srv := prosodyPriv.Get(t)
	tr := startTransportWith(t, srv, func(o *app.Options) { o.AllowRemove = true }, acctAlice, acctCarol)
	carol := dialIMIP(t, tr, acctCarol.Number, acctCarol.Password)
	c := newUser(t, srv, "add")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	if !tr.imip.WaitOnline(acctAlice.Number, true, waitFor) {
		t.Fatal("alice not on IMIP")
	}
	carolJID := tr.contact(acctCarol.Number)

	// alice -> carol: subscribe becomes LIST ADD with the status as text.
	c.send(`<presence type="subscribe" to=%q><status>Hi, it's alice</status></presence>`, carolJID)
	ev := carol.expect("LIST ADD from alice", func(ev imipside.Event) bool {
		a, ok := ev.(imipside.ListAddEvent)
		return ok && a.From == acctAlice.Number
	}).(imipside.ListAddEvent)
	if ev.Text != "Hi, it's alice" || ev.Nick != "alice" {
		t.Errorf("LIST ADD text %q nick %q", ev.Text, ev.Nick)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := carol.sess.ListAccept(ctx, acctAlice.Number, "alice"); err != nil {
		t.Fatal(err)
	}
	c.expect("subscribed from carol", isPresence(carolJID, "subscribed"))
	c.expect("carol's presence", isPresence(carolJID, ""))

	// They chat.
	c.send(`<message type="chat" to=%q id="hi"><body>hello carol</body></message>`, carolJID)
	carol.expectMessage(acctAlice.Number, "hello carol")
	carol.send(acctAlice.Number, "hello alice")
	if m := c.expect("carol's reply", isMessage(carolJID)); m.Body != "hello alice" {
		t.Errorf("reply body %q", m.Body)
	}

	// carol -> alice: LIST ADD arrives as subscribe with nick and text;
	// subscribed answers LIST ACCEPT, and carol then sees alice.
	if err := carol.sess.ListAdd(ctx, acctAlice.Number, "may I?"); err != nil {
		t.Fatal(err)
	}
	sub := c.expect("subscribe from carol", isPresence(carolJID, "subscribe"))
	if sub.Nick != "carol" || sub.Status != "may I?" {
		t.Errorf("subscribe from carol: nick %q status %q", sub.Nick, sub.Status)
	}
	carol.expectStat(acctAlice.Number, wire.StatusOnline, "")

	// alice removes carol: LIST REMOVE; carol is told.
	c.send(`<presence type="unsubscribe" to=%q/>`, carolJID)
	carol.expect("LIST REMOVE from alice", func(ev imipside.Event) bool {
		r, ok := ev.(imipside.ListRemoveEvent)
		return ok && r.From == acctAlice.Number
	})
	// carol removes alice: alice gets unsubscribe and unsubscribed.
	if err := carol.sess.ListRemove(ctx, acctAlice.Number); err != nil {
		t.Fatal(err)
	}
	// alice had already dropped carol, so only carol's subscription to alice
	// was left: the server delivers the unsubscribe and the roster item ends
	// with no subscription (the gateway's unsubscribed is a no-op there).
	c.expect("unsubscribe from carol", isPresence(carolJID, "unsubscribe"))
	deadline := time.Now().Add(waitFor)
	for {
		it, ok := c.rosterItems()[carolJID]
		if !ok || it.Subscription == "none" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol still subscribed in alice's roster: %+v", it)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRemoveProtected: without allow_remove, unsubscribe from an accepted
// contact is refused with an explanation and nothing reaches IMIP.
func TestRemoveProtected(t *testing.T) {
	srv := prosodyPriv.Get(t)
	tr := startTransport(t, srv, acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	c := newUser(t, srv, "prot")
	c.autoApprove = tr.domain.String()
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	c.send(`<presence type="unsubscribe" to=%q/>`, tr.contact(acctBob.Number))
	m := c.expect("refusal from the gateway", isMessage(tr.domain.String()))
	if !strings.Contains(strings.ToLower(m.Body), "remov") {
		t.Errorf("refusal text %q", m.Body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	has, err := tr.imip.Store().HasContact(ctx, acctAlice.Number, acctBob.Number)
	if err != nil || !has {
		t.Errorf("bob left alice's IMIP list (has=%v err=%v)", has, err)
	}

	// The user may choose removal in the registration form.
	form := c.iq("get", tr.domain.String(), `<query xmlns="jabber:iq:register"/>`)
	if !strings.Contains(form.Raw, `var="allow_remove"`) {
		t.Fatalf("registration form offers no allow_remove: %s", form.Raw)
	}
	r := c.iq("set", tr.domain.String(), `<query xmlns="jabber:iq:register"><x xmlns="jabber:x:data" type="submit">`+
		`<field var="FORM_TYPE"><value>jabber:iq:register</value></field>`+
		`<field var="username"><value>`+string(acctAlice.Number)+`</value></field>`+
		`<field var="password"><value>`+acctAlice.Password+`</value></field>`+
		`<field var="allow_remove"><value>1</value></field></x></query>`)
	if r.Type != "result" {
		t.Fatalf("registering with allow_remove: %s", r.Raw)
	}
	c.send(`<presence type="unsubscribe" to=%q/>`, tr.contact(acctBob.Number))
	deadline := time.Now().Add(waitFor)
	for {
		has, err := tr.imip.Store().HasContact(ctx, acctAlice.Number, acctBob.Number)
		if err != nil {
			t.Fatal(err)
		}
		if !has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob still on alice's IMIP list after unsubscribe with allow_remove")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTwoJabberUsers: two Jabber users who both reach IMIP through the
// gateway add each other and chat.
func TestTwoJabberUsers(t *testing.T) {
	srv := prosodyPriv.Get(t)
	tr := startTransport(t, srv, acctAlice, acctBob)
	u1 := newUser(t, srv, "two")
	u2 := newUser(t, srv, "two")
	for _, u := range []*client{u1, u2} {
		u.autoApprove = tr.domain.String()
	}
	u1.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	u2.mustRegister(tr, string(acctBob.Number), acctBob.Password)
	for _, n := range []wire.Number{acctAlice.Number, acctBob.Number} {
		if !tr.imip.WaitOnline(n, true, waitFor) {
			t.Fatalf("%s not on IMIP", n)
		}
	}
	aliceJID, bobJID := tr.contact(acctAlice.Number), tr.contact(acctBob.Number)
	u2.autoApprove = "" // u2 answers by hand below
	u1.send(`<presence type="subscribe" to=%q><status>hi bob</status></presence>`, bobJID)
	sub := u2.expect("subscribe from alice", isPresence(aliceJID, "subscribe"))
	if sub.Nick != "alice" || sub.Status != "hi bob" {
		t.Errorf("subscribe nick %q status %q", sub.Nick, sub.Status)
	}
	u2.send(`<presence type="subscribed" to=%q/>`, aliceJID)
	u1.expect("subscribed from bob", isPresence(bobJID, "subscribed"))
	u1.expect("bob's presence", isPresence(bobJID, ""))
	u1.send(`<message type="chat" to=%q id="x"><body>across IMIP</body></message>`, bobJID)
	if m := u2.expect("message from alice", isMessage(aliceJID)); m.Body != "across IMIP" || m.Nick != "alice" {
		t.Errorf("message: body %q nick %q", m.Body, m.Nick)
	}
}
