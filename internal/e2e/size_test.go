package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"

	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
	"imip-transport/internal/app"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

const nsRosterX = "http://jabber.org/protocol/rosterx"

// linkCounter is a slog.Handler that counts the component's handshakes
// and link drops, and passes every record on.
type linkCounter struct {
	slog.Handler
	up, down *atomic.Int64
}

func (h linkCounter) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "xmpp component connected":
		h.up.Add(1)
	case "xmpp component disconnected":
		h.down.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h linkCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return linkCounter{h.Handler.WithAttrs(as), h.up, h.down}
}

func (h linkCounter) WithGroup(name string) slog.Handler {
	return linkCounter{h.Handler.WithGroup(name), h.up, h.down}
}

// TestHostileSizesKeepTheLink sends the gateway, through a real Prosody,
// what used to make it write a stanza above Prosody's 512 KiB component
// limit (Prosody then closed the stream, cutting off every user): a
// message of 120,000 tabs from an unregistered JID (bounced), one of
// 200,000 tabs from a registered user (too long for IMIP, bounced), and a
// login with a Buddy list of 9,000 contacts for a client that advertises
// XEP-0144 (one roster item exchange of about 700 KB). A second user chats
// with an IMIP contact throughout; the component link must never drop.
// An IMIP message too large for one stanza arrives whole, in parts.
func TestHostileSizesKeepTheLink(t *testing.T) {
	srv := prosodyNoPriv.Get(t)
	acctDave := imiptest.Account{Number: "4004004", Password: "dave-pw", Nick: "dave"}
	var up, down atomic.Int64
	tr := startTransportWith(t, srv, func(o *app.Options) {
		o.Logger = slog.New(linkCounter{o.Logger.Handler(), &up, &down})
		o.Limits.MaxRosterItems = 10000 // the whole list, to test the stanza size
	}, acctAlice, acctBob, acctCarol, acctDave)
	gw := tr.domain.String()
	assertLink := func(when string) {
		t.Helper()
		if u, d := up.Load(), down.Load(); u != 1 || d != 0 {
			t.Fatalf("%s: %d handshakes and %d link drops, want 1 and 0", when, u, d)
		}
		if !tr.comp.Load().Connected() {
			t.Fatalf("%s: component not connected", when)
		}
	}

	// The witness: a Jabber user registered as bob, chatting with carol on
	// IMIP.
	befriend(t, tr, acctBob.Number, acctCarol.Number)
	carol := dialIMIP(t, tr, acctCarol.Number, acctCarol.Password)
	w := newUser(t, srv, "witness")
	w.autoApprove = gw
	w.mustRegister(tr, string(acctBob.Number), acctBob.Password)
	carolJID := tr.contact(acctCarol.Number)
	w.expect("carol's presence", isPresence(carolJID, ""))
	chat := func(tag string) {
		t.Helper()
		w.send(`<message type="chat" to=%q id=%q><body>%s from xmpp</body></message>`, carolJID, tag, tag)
		carol.expectMessage(acctBob.Number, tag+" from xmpp")
		carol.send(acctBob.Number, tag+" from imip")
		if m := w.expect(tag+" message from carol", isMessage(carolJID)); m.Body != tag+" from imip" {
			t.Errorf("%s: message from carol %q", tag, m.Body)
		}
	}
	chat("before")
	assertLink("before")

	// 1. 120,000 tabs (120 KB as a client writes them, 600 KB as Go
	// escapes them) from a JID that is not registered.
	stranger := newUser(t, srv, "stranger")
	stranger.sendBytes(fmt.Sprintf(`<message type="chat" to=%q id="tabs1"><body>%s</body></message>`,
		tr.contact(acctCarol.Number), strings.Repeat("\t", 120000)))
	e := stranger.expect("the bounce of 120,000 tabs", isMessageError("tabs1"))
	if e.ErrCond != "registration-required" || len(e.Body) > 256+len("…") || !strings.HasPrefix(e.Body, "\t\t\t") {
		t.Errorf("bounce of 120,000 tabs: condition %q, body of %d bytes", e.ErrCond, len(e.Body))
	}
	chat("after-unregistered")
	assertLink("after 120,000 tabs from an unregistered JID")

	// 2. 200,000 tabs from a registered, online user: too long for IMIP.
	alice := newUser(t, srv, "alice")
	alice.autoApprove = gw
	alice.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	if !tr.imip.WaitOnline(acctAlice.Number, true, waitFor) {
		t.Fatal("alice not on IMIP")
	}
	alice.sendBytes(fmt.Sprintf(`<message type="chat" to=%q id="tabs2"><body>%s</body></message>`,
		carolJID, strings.Repeat("\t", 200000)))
	e = alice.expect("the bounce of 200,000 tabs", isMessageError("tabs2"))
	if e.ErrCond != "not-acceptable" || len(e.Body) > 256+len("…") {
		t.Errorf("bounce of 200,000 tabs: condition %q (%s), body of %d bytes", e.ErrCond, e.ErrText, len(e.Body))
	}
	chat("after-too-long")
	assertLink("after 200,000 tabs from a registered user")

	// 3. A Buddy list of 9,000 contacts (54 KB) at login, for a client
	// that advertises XEP-0144: registered with an empty list, offline,
	// the list filled on the IMIP server, online again.
	dave := newUser(t, srv, "dave")
	dave.autoApprove = gw
	dave.mu.Lock()
	dave.features = []string{nsRosterX}
	dave.mu.Unlock()
	dave.mustRegister(tr, string(acctDave.Number), acctDave.Password)
	if !tr.imip.WaitOnline(acctDave.Number, true, waitFor) {
		t.Fatal("dave not on IMIP")
	}
	dave.send(`<presence type="unavailable"/>`)
	if !tr.imip.WaitOnline(acctDave.Number, false, waitFor) {
		t.Fatal("dave still on IMIP after going offline")
	}
	const buddies = 9000
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for i := range buddies {
		if err := tr.imip.Store().AddContact(ctx, acctDave.Number, wire.Number(fmt.Sprint(10000+i))); err != nil {
			t.Fatal(err)
		}
	}
	dave.send(`<presence/>`)
	seen := make(map[string]bool, buddies)
	exchanges := 0
	for len(seen) < buddies {
		x := dave.expect(fmt.Sprintf("roster item exchange (%d items so far)", len(seen)), func(g got) bool {
			return g.Name == "message" && bare(g.From) == gw && len(g.XItems) > 0
		})
		exchanges++
		for _, it := range x.XItems {
			if seen[it.JID] || it.Action != "add" || !strings.HasSuffix(it.JID, "@"+gw) {
				t.Fatalf("exchange %d: item %+v (duplicate, or not an add of a contact)", exchanges, it)
			}
			seen[it.JID] = true
		}
	}
	if exchanges < 2 {
		t.Errorf("%d items in %d exchange, want several below the limit", buddies, exchanges)
	}
	t.Logf("%d contacts arrived in %d roster item exchanges", buddies, exchanges)
	dave.never("subscription requests from contacts", quiet, func(g got) bool {
		return g.Name == "presence" && g.Type == "subscribe" && bare(g.From) != gw
	})
	chat("after-buddies")
	assertLink("after a Buddy list of 9,000 contacts")

	// 4. An IMIP message too large for one stanza (60,000 quotes are
	// 300,000 bytes escaped, above the default 256 KiB) arrives in parts
	// that put together give the text.
	long := strings.Repeat(`"`, 60000)
	carol.send(acctBob.Number, long)
	var body strings.Builder
	parts := 0
	for body.Len() < len(long) {
		parts++
		m := w.expect(fmt.Sprintf("part %d of carol's long message", parts), isMessage(carolJID))
		body.WriteString(m.Body)
	}
	if body.String() != long || parts < 2 {
		t.Errorf("carol's long message arrived as %d bytes in %d parts; want the %d sent, in several parts", body.Len(), parts, len(long))
	}
	chat("after")
	assertLink("at the end")
}

// TestServerStanzaLimits checks what the default MaxStanzaSize rests on,
// with a bare XEP-0114 connection: Prosody 0.12 accepts a stanza of about
// 500,000 bytes (as written: tabs escaped as &#x9;) and closes the
// component stream on one of 550,000 (component_stanza_size_limit, 512
// KiB); ejabberd 23.01 (ejabberd_service, max_stanza_size unset: infinity)
// accepts 1,100,000 and keeps the stream.
func TestServerStanzaLimits(t *testing.T) {
	t.Run("prosody", func(t *testing.T) {
		srv := prosodyNoPriv.Get(t)
		c, sess, served := componentAndUser(t, srv)
		sendTabs(t, sess, c, "ok", 100000) // 500,000 bytes of tabs
		if m := c.expect("100,000 tabs", isMessage(srv.ComponentName())); len(m.Body) != 100000 {
			t.Errorf("100,000 tabs arrived as %d bytes", len(m.Body))
		}
		// 550,000 bytes: the write may fail part way, once Prosody has
		// closed the stream.
		if err := trySendTabs(sess, c, 110000); err != nil {
			t.Logf("sending 110,000 tabs: %v", err)
		}
		select {
		case err := <-served:
			t.Logf("prosody closed the component stream: %v", err)
		case <-time.After(waitFor):
			t.Fatal("prosody kept the component stream after a stanza of 550,000 bytes")
		}
	})
	t.Run("ejabberd", func(t *testing.T) {
		srv := ejabberd.Get(t)
		c, sess, served := componentAndUser(t, srv)
		sendTabs(t, sess, c, "big", 220000) // 1,100,000 bytes
		if m := c.expect("220,000 tabs", isMessage(srv.ComponentName())); len(m.Body) != 220000 {
			t.Errorf("220,000 tabs arrived as %d bytes", len(m.Body))
		}
		sendTabs(t, sess, c, "after", 1)
		c.expect("a message after", isMessage(srv.ComponentName()))
		select {
		case err := <-served:
			t.Fatalf("ejabberd closed the component stream: %v", err)
		default:
		}
	})
}

// componentAndUser connects a bare component session to srv and logs in
// an online user.
func componentAndUser(t *testing.T, srv xmppserver.Server) (*client, *xmpp.Session, <-chan error) {
	t.Helper()
	c := newUser(t, srv, "limit")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sess := testenv.DialComponent(ctx, t, srv)
	served := testenv.Serve(t, sess, xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		return nil
	}))
	return c, sess, served
}

// sendTabs sends c a message of n tabs from the component's domain.
func sendTabs(t *testing.T, sess *xmpp.Session, c *client, id string, n int) {
	t.Helper()
	if err := trySendTabs(sess, c, n); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
}

func trySendTabs(sess *xmpp.Session, c *client, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return testenv.SendChat(ctx, sess, sess.LocalAddr(), c.jid, strings.Repeat("\t", n))
}
