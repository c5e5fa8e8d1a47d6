package gateway

// Regression tests for defects found by reviewing the gateway: each failed
// before its fix.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// a client that comes online and at once sends a directed unavailable
// to one contact (invisible to X): both land in one availability batch, the
// directed unavailable replaces the available, and the user is never logged in.
func TestRegressDirectedUnavailableSwallowsLogin(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "6340564")
	h.settle()
	// Keep the run loop busy: a probe answer blocks on the link.
	h.x.setBlocked(true)
	h.presence(aliceHW, gw, "probe", "", "")
	time.Sleep(50 * time.Millisecond)
	n := h.d.sessionCount()
	h.available(aliceHW, "", "")                          // broadcast: to the gateway
	h.presence(aliceHW, cj("100"), "", "", "")            // and a copy to a contact
	h.presence(aliceHW, cj("200"), "unavailable", "", "") // invisible to 200
	h.x.setBlocked(false)
	h.settle()
	if got := h.d.sessionCount(); got == n {
		t.Fatalf("online resource never logged in (sessions %d)", got)
	}
}

// a roster change of a single transition (LIST ACCEPT) while the link is
// down is lost: not marked stale, never pushed again.
func TestRegressSingleRosterPushLostWhileDown(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.presence(aliceHW, cj("123"), "subscribe", "", "")
	s.waitCall(t, "LIST ADD")
	h.settle()
	h.x.setDown(true)
	s.push(imipside.ListAcceptEvent{From: "123", Nick: "bob"})
	h.settle()
	h.x.setDown(false)
	mark := h.x.mark()
	h.g.HandleConnected(context.Background())
	h.available(aliceHW, "", "")
	h.settle()
	time.Sleep(50 * time.Millisecond)
	h.settle()
	ps := h.x.presences(mark, func(p xmppside.Presence) bool {
		return p.From.Equal(cj("123")) && (p.Type == "subscribed" || p.Type == "subscribe")
	})
	if len(ps) == 0 {
		t.Fatalf("the accepted contact never reached the user's roster:\n%s", dump(h.x.since(mark)))
	}
}

// messages queued before evLinkUp go out before the held ones.
func TestRegressHeldOrder(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.x.setDown(true)
	s.push(imipside.MessageEvent{From: "100", To: "6340564", Text: "one"})
	h.settle()
	h.x.setDown(false) // link back; HandleConnected not yet run
	s.push(imipside.MessageEvent{From: "100", To: "6340564", Text: "two"})
	h.settle()
	mark := 0
	h.g.HandleConnected(context.Background())
	h.settle()
	var got []string
	for _, m := range h.x.messages(mark, func(m xmppside.Message) bool { return m.Type == "chat" }) {
		got = append(got, m.Body)
	}
	if fmt.Sprint(got) != "[one two]" {
		t.Errorf("order %q, want [one two]", got)
	}
}

// a second Unregister queued behind the first is forwarded and leaves
// a user value for an unregistered JID in the registry forever.
func TestRegressForwardedUnregisterLeavesStrayUser(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "6340564")
	h.settle()
	h.x.setBlocked(true)
	h.presence(aliceHW, gw, "probe", "", "") // run loop busy
	time.Sleep(50 * time.Millisecond)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			errs <- h.g.Unregister(ctx, jid.MustParse(alice))
		}()
	}
	time.Sleep(50 * time.Millisecond)
	h.x.setBlocked(false)
	e1, e2 := <-errs, <-errs
	h.settle()
	h.g.mu.Lock()
	_, stray := h.g.users[alice]
	_, reg := h.g.registered[alice]
	h.g.mu.Unlock()
	t.Logf("errs %v / %v; registered=%v", e1, e2, reg)
	if stray && !reg {
		t.Errorf("user value kept for unregistered %s", alice)
	}
}

// a transient store error at first load makes a registered user dead
// until restart.
type flakyStore struct {
	*memStore
	fail int
}

func (f *flakyStore) Registration(ctx context.Context, bare string) (Registration, error) {
	if f.fail > 0 {
		f.fail--
		return Registration{}, fmt.Errorf("db locked")
	}
	return f.memStore.Registration(ctx, bare)
}

func TestRegressTransientLoadError(t *testing.T) {
	st := newMemStore()
	_ = st.PutRegistration(context.Background(), Registration{JID: alice, Number: "6340564", Password: "pw"})
	fs := &flakyStore{memStore: st, fail: 1}
	d := newFakeDialer()
	g, err := New(context.Background(), Config{Domain: gw, Store: fs, Dialer: d, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	x := newFakeXMPP()
	g.SetXMPP(x)
	defer g.Close(context.Background())
	g.HandlePresence(xmppside.Presence{From: jid.MustParse(aliceHW), To: gw})
	time.Sleep(50 * time.Millisecond)
	g.HandlePresence(xmppside.Presence{From: jid.MustParse(aliceHW), To: gw, Show: "away"})
	time.Sleep(100 * time.Millisecond)
	if d.sessionCount() == 0 {
		t.Errorf("registered user never logged in after one transient store error")
	}
	_ = wire.StatusOnline
}

// a probe answer that merges into an evAvailability queued before the
// link came back runs before evLinkUp, so the resource is then marked
// unconfirmed and dropped: an online user is logged out.
func TestRegressProbeAnswerBeforeLinkUp(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.ProbeTimeout = 100 * time.Millisecond })
	s := h.login(aliceHW, "6340564")
	h.x.setBlocked(true) // the link hangs: the run loop waits in a send
	h.presence(aliceHW, gw, "probe", "", "")
	time.Sleep(30 * time.Millisecond)
	h.available(alicePh, "", "")                   // a second resource: evAvailability queued
	h.presence(alicePh, gw, "unavailable", "", "") // ...and gone again
	h.g.HandleDisconnected(fmt.Errorf("EOF"))
	h.g.HandleConnected(context.Background()) // evLinkUp queued behind it
	h.available(aliceHW, "", "")              // the laptop answers the probe: merges into the queued batch
	h.x.setBlocked(false)
	time.Sleep(300 * time.Millisecond)
	h.settle()
	if got := s.callsWith("DISC"); len(got) != 0 {
		t.Fatalf("online user logged out: the probe answer was applied before the link-up: %q", s.callList())
	}
}

// re-registering with another number leaves the old number's contacts
// in the user's roster.
func TestRegressNumberChangeKeepsOldContacts(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("1111", wire.Buddy{Number: "100", Nick: "ann"})
	h.d.setBuddies("2222", wire.Buddy{Number: "200", Nick: "bob"})
	h.login(aliceHW, "1111")
	h.settle()
	mark := h.x.mark()
	h.register(alice, "2222")
	h.settle()
	rm := h.x.presences(mark, func(p xmppside.Presence) bool {
		return p.From.Equal(cj("100")) && (p.Type == "unsubscribe" || p.Type == "unsubscribed")
	})
	if len(rm) == 0 {
		t.Errorf("old number's contact 100 left in the roster; sent:\n%s", dump(h.x.since(mark)))
	}
}

// a subscription request with a 100 KB status made a LIST ADD block above
// IMIP's limit: the request was refused by the writer and lost. Its text
// is now cut to maxRequestText, as a request's text from IMIP is. Found
// by the hostile-stanza suite.
func TestRegressHugeSubscribeStatusCut(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.presence(aliceHW, cj("123"), "subscribe", "", strings.Repeat("é", 50000))
	call := s.waitCall(t, "LIST ADD 123")
	text := strings.TrimPrefix(call, "LIST ADD 123 ")
	if len(text) > maxRequestText || !utf8.ValidString(text) || !strings.HasPrefix(text, "éé") {
		t.Errorf("LIST ADD text of %d bytes (valid UTF-8: %v), want at most %d", len(text), utf8.ValidString(text), maxRequestText)
	}
}
