package gateway

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// The LOGN Buddy list is synced to the user's roster by the best means
// available, and a later login with the same list sends nothing new.
func TestRosterSync(t *testing.T) {
	buddies := []wire.Buddy{{Number: "100", Nick: "ann"}, {Number: "200", Nick: "bo"}}
	tests := []struct {
		name      string
		mode      string // harness privilege mode
		wantSets  bool   // privileged roster set carries the sync
		wantTries int    // RosterSet calls
	}{
		0: {name: "no RosterAccess", mode: ""},
		1: {name: "no privilege", mode: privNone},
		2: {name: "privileged", mode: privBoth, wantSets: true, wantTries: 2},
		// The sets go out together: each fails, and the sync falls back.
		3: {name: "privileged set fails", mode: privSetFail, wantTries: 2},
	}
	isSub := func(p xmppside.Presence) bool { return p.Type == "subscribe" && p.From.Localpart() != "" }
	for i, tc := range tests {
		h := newHarness(t, tc.mode)
		h.d.setBuddies("6340564", buddies...)
		mark := h.x.mark()
		s := h.login(aliceHW, "6340564")
		subs := h.x.presences(mark, isSub)
		if tc.wantSets {
			sets, tries := h.rx.rosterSets()
			// They go out in parallel: compare them in JID order.
			slices.SortFunc(sets, func(a, b xmppside.RosterItem) int { return strings.Compare(a.JID.String(), b.JID.String()) })
			if tries != tc.wantTries || len(sets) != 2 {
				t.Fatalf("%d %s: %d RosterSet calls with items %+v, want %d with 2 items", i, tc.name, tries, sets, tc.wantTries)
			}
			for j, b := range buddies {
				it := sets[j]
				if !it.JID.Equal(cj(string(b.Number))) || it.Name != b.Nick || !slices.Equal(it.Groups, []string{DefaultRosterGroup}) || it.Remove {
					t.Errorf("%d %s: roster item %d = %+v, want %s named %q in group %s", i, tc.name, j, it, cj(string(b.Number)), b.Nick, DefaultRosterGroup)
				}
			}
			if len(subs) != 0 {
				t.Errorf("%d %s: subscription presences besides the roster set:\n%s", i, tc.name, dump(toAny(subs)))
			}
		} else {
			if h.rx != nil {
				if _, tries := h.rx.rosterSets(); tries != tc.wantTries {
					t.Errorf("%d %s: %d RosterSet calls, want %d", i, tc.name, tries, tc.wantTries)
				}
			}
			if len(subs) != 2 {
				t.Fatalf("%d %s: subscribe presences:\n%s\nwant 2", i, tc.name, dump(toAny(subs)))
			}
			for j, b := range buddies {
				p := subs[j]
				if !p.From.Equal(cj(string(b.Number))) || !p.To.Equal(aliceJID) || p.Nick != b.Nick {
					t.Errorf("%d %s: subscribe %d from=%s to=%s nick=%q, want from %s nick %q", i, tc.name, j, p.From, p.To, p.Nick, cj(string(b.Number)), b.Nick)
				}
			}
		}
		if got := h.st.savedContacts(alice); len(got) != 2 || !got[0].InList || got[0].Nick != "ann" {
			t.Errorf("%d %s: stored contacts %+v, want ann and bo listed", i, tc.name, got)
		}

		// Log out and in again with the same list: nothing new.
		h.presence(aliceHW, gw, "unavailable", "", "")
		h.settle()
		if got := s.callsWith("DISC"); len(got) != 1 {
			t.Fatalf("%d %s: no DISC: %q", i, tc.name, s.callList())
		}
		m2 := h.x.mark()
		tries := 0
		if h.rx != nil {
			_, tries = h.rx.rosterSets()
		}
		n := h.d.sessionCount()
		h.available(aliceHW, "", "")
		h.d.waitSession(t, n).waitCall(t, "STAT ONLINE")
		h.settle()
		if again := h.x.presences(m2, isSub); len(again) != 0 {
			t.Errorf("%d %s: second login sent subscription requests again:\n%s", i, tc.name, dump(toAny(again)))
		}
		if h.rx != nil {
			if _, t2 := h.rx.rosterSets(); t2 != tries {
				t.Errorf("%d %s: second login made %d roster sets", i, tc.name, t2-tries)
			}
		}
	}
}

// A contact that left the Buddy list while the user was away is taken out of
// the roster; a new one is added.
func TestRosterSyncChanges(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"}, wire.Buddy{Number: "200", Nick: "bo"})
	h.login(aliceHW, "6340564")
	h.presence(aliceHW, gw, "unavailable", "", "")
	h.settle()
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"}, wire.Buddy{Number: "300", Nick: "cy"})
	mark := h.x.mark()
	n := h.d.sessionCount()
	h.available(aliceHW, "", "")
	h.d.waitSession(t, n).waitCall(t, "STAT")
	h.settle()
	subs := h.x.presences(mark, func(p xmppside.Presence) bool { return p.Type == "subscribe" })
	if len(subs) != 1 || !subs[0].From.Equal(cj("300")) || subs[0].Nick != "cy" {
		t.Errorf("subscribes after the change:\n%s\nwant one from 300 (cy)", dump(toAny(subs)))
	}
	for _, typ := range []string{"unsubscribe", "unsubscribed"} {
		if got := h.x.presences(mark, presenceFromTo(cj("200"), aliceJID, typ)); len(got) != 1 {
			t.Errorf("%d %s from 200, want 1", len(got), typ)
		}
	}
	if got := h.x.presences(mark, func(p xmppside.Presence) bool { return p.From.Equal(cj("100")) }); len(got) != 0 {
		t.Errorf("unchanged contact touched:\n%s", dump(toAny(got)))
	}
}

// The user's subscribe to number@gateway asks IMIP with LIST ADD; the
// contact's first STAT accepts it.
func TestSubscribeSendsListAdd(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("7744387"), Type: "subscribe", Status: "it's me"})
	if got := s.waitCall(t, "LIST ADD"); got != "LIST ADD 7744387 it's me" {
		t.Errorf("call %q, want LIST ADD 7744387 it's me", got)
	}
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("7744387"), Type: "subscribe"}) // the client resends
	h.settle()
	if got := s.callsWith("LIST ADD"); len(got) != 1 {
		t.Errorf("LIST ADDs %q, want one", got)
	}
	mark := h.x.mark()
	s.push(imipside.StatEvent{From: "7744387", Status: wire.StatusOnline})
	h.x.waitPresence(t, mark, "subscribed", presenceFromTo(cj("7744387"), aliceJID, "subscribed"))
	h.x.waitPresence(t, mark, "available", presenceFromTo(cj("7744387"), aliceJID, ""))
	h.idle(alice) // the change is committed
	if cs := h.st.savedContacts(alice); len(cs) != 1 || !cs[0].InList {
		t.Errorf("stored contacts %+v, want 7744387 listed", cs)
	}
	// A subscribe to a non-number is refused with jid-malformed.
	m2 := h.x.mark()
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: jid.MustParse("bob@imip.localhost"), Type: "subscribe"})
	p := h.x.waitPresence(t, m2, "error", func(p xmppside.Presence) bool { return p.Type == "error" })
	if p.Error == nil || p.Error.Condition != "jid-malformed" {
		t.Errorf("subscribe to a non-number: %+v, want jid-malformed", p.Error)
	}
}

// A subscribe while IMIP is not connected is refused at once, and does not
// leave a request pending that would swallow the next subscribe.
func TestSubscribeOffline(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "6340564")
	mark := h.x.mark()
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("100"), Type: "subscribe"})
	msg := h.x.waitMessage(t, mark, "notice", func(m xmppside.Message) bool { return m.From.Equal(gw) })
	if !strings.Contains(msg.Body, "100") {
		t.Errorf("notice %q does not name the contact", msg.Body)
	}
	h.x.waitPresence(t, mark, "unsubscribed", presenceFromTo(cj("100"), aliceJID, "unsubscribed"))
	h.settle()
	if cs := h.st.savedContacts(alice); len(cs) != 0 {
		t.Errorf("a request that was never sent is stored as pending: %+v", cs)
	}
	s := h.login(aliceHW, "6340564")
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("100"), Type: "subscribe"})
	s.waitCall(t, "LIST ADD 100")
}

// An IMIP LIST ADD asks the user with a subscribe carrying nick and text;
// the user's subscribed accepts it with LIST ACCEPT, unsubscribed rejects.
func TestIncomingListAdd(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	mark := h.x.mark()
	s.push(imipside.ListAddEvent{From: "555", Nick: "eve", Text: "add me please"})
	s.push(imipside.ListAddEvent{From: "666", Nick: "mal", Text: "me too"})
	p := h.x.waitPresence(t, mark, "subscribe from 555", presenceFromTo(cj("555"), aliceJID, "subscribe"))
	if p.Nick != "eve" || p.Status != "add me please" {
		t.Errorf("subscribe nick=%q status=%q, want eve / add me please", p.Nick, p.Status)
	}
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("555"), Type: "subscribed"})
	if got := s.waitCall(t, "LIST ACCEPT"); got != `LIST ACCEPT 555 "eve"` {
		t.Errorf("call %q, want LIST ACCEPT 555 \"eve\"", got)
	}
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("666"), Type: "unsubscribed"})
	if got := s.waitCall(t, "LIST REJECT"); got != "LIST REJECT 666" {
		t.Errorf("call %q, want LIST REJECT 666", got)
	}
	// Answering again sends nothing more.
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("555"), Type: "subscribed"})
	h.settle()
	if got := s.callsWith("LIST ACCEPT"); len(got) != 1 {
		t.Errorf("LIST ACCEPTs %q, want one", got)
	}
}

// A contact's LIST REMOVE takes it out of the roster and the cache.
func TestListRemove(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"})
	s := h.login(aliceHW, "6340564")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
	h.settle()
	mark := h.x.mark()
	s.push(imipside.ListRemoveEvent{From: "100"})
	for _, typ := range []string{"unsubscribe", "unsubscribed", "unavailable"} {
		h.x.waitPresence(t, mark, typ, presenceFromTo(cj("100"), aliceJID, typ))
	}
	h.settle()
	if cs := h.st.savedContacts(alice); len(cs) != 0 {
		t.Errorf("stored contacts %+v, want none", cs)
	}
}

// Without privileges, a resource that advertises XEP-0144 gets the contacts
// as a roster item exchange (names and group), and no subscription request
// is sent; a resource without it would get the presence fallback.
func TestRosterSyncRosterExchange(t *testing.T) {
	h := newHarness(t, privNone)
	h.rx.rmu.Lock()
	h.rx.rosterx = map[string]bool{aliceHW: true}
	h.rx.rmu.Unlock()
	h.register(alice, "6340564")
	h.settle()
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"}, wire.Buddy{Number: "200", Nick: "bo"})
	mark := h.x.mark()
	i := h.d.sessionCount()
	h.available(aliceHW, "", "")
	h.d.waitSession(t, i).waitCall(t, "STAT ")
	h.settle()
	got := h.rx.exchanged(aliceHW)
	if len(got) != 2 {
		t.Fatalf("XEP-0144 items to %s: %+v, want ann and bo", aliceHW, got)
	}
	for i, want := range []struct{ jid, name string }{{"100@" + gw.String(), "ann"}, {"200@" + gw.String(), "bo"}} {
		if got[i].JID.String() != want.jid || got[i].Name != want.name || len(got[i].Groups) != 1 || got[i].Groups[0] != DefaultRosterGroup || got[i].Remove {
			t.Errorf("item %d = %+v, want %s %q in %s", i, got[i], want.jid, want.name, DefaultRosterGroup)
		}
	}
	if subs := h.x.presences(mark, func(p xmppside.Presence) bool { return p.Type == "subscribe" && p.From.Localpart() != "" }); len(subs) != 0 {
		t.Errorf("subscription requests sent although XEP-0144 was used:\n%s", dump(toAny(subs)))
	}
}

// Contact requests from IMIP are bounded: the text is cut, and beyond
// maxPendingIn unanswered requests new ones are ignored.
func TestIncomingRequestLimits(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	long := strings.Repeat("é", maxRequestText) // 2 bytes each
	mark := h.x.mark()
	s.push(imipside.ListAddEvent{From: "5", Nick: "five", Text: long})
	p := h.x.waitPresence(t, mark, "subscribe from 5", presenceFromTo(cj("5"), aliceJID, "subscribe"))
	if len(p.Status) > maxRequestText || !utf8.ValidString(p.Status) || len(p.Status) < maxRequestText-1 {
		t.Errorf("request text of %d bytes (valid UTF-8: %v), want cut to about %d", len(p.Status), utf8.ValidString(p.Status), maxRequestText)
	}
	for i := range maxPendingIn + 20 {
		s.push(imipside.ListAddEvent{From: wire.Number(fmt.Sprintf("%d", 1000+i)), Nick: "x"})
	}
	h.settle()
	subs := h.x.presences(mark, func(p xmppside.Presence) bool { return p.Type == "subscribe" && p.From.Localpart() != "" })
	if len(subs) != maxPendingIn {
		t.Errorf("%d requests passed on, want %d", len(subs), maxPendingIn)
	}
}

// A roster sync that could not reach the user (the component link was
// down) is pushed again when the link is back, although the stored list
// already holds the contacts.
func TestRosterPushedAgainAfterLinkDown(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"})
	h.x.setDown(true)
	h.register(alice, "6340564")
	i := h.d.sessionCount()
	h.available(aliceHW, "", "")
	h.d.waitSession(t, i).waitCall(t, "STAT ONLINE")
	h.settle()
	h.x.setDown(false)
	mark := h.x.mark()
	h.g.HandleConnected(context.Background())
	p := h.x.waitPresence(t, mark, "subscribe from ann", presenceFromTo(cj("100"), aliceJID, "subscribe"))
	if p.Nick != "ann" {
		t.Errorf("subscribe nick %q, want ann", p.Nick)
	}
	// Pushed once: a second link-up sends nothing more.
	h.settle()
	mark = h.x.mark()
	h.g.HandleConnected(context.Background())
	h.settle()
	if subs := h.x.presences(mark, func(p xmppside.Presence) bool { return p.Type == "subscribe" && p.From.Localpart() != "" }); len(subs) != 0 {
		t.Errorf("pushed again after a successful push:\n%s", dump(toAny(subs)))
	}
}

// A contact request whose nickname cannot go in an IMIP type line (too
// long, control characters) is still accepted: the gateway writes a safe
// form of it, and the user is not told IMIP refused anything.
func TestAcceptHostileNick(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "1111")
	nick := strings.Repeat("n", 300) + "\x01\"x"
	mark := h.x.mark()
	s.push(imipside.ListAddEvent{From: "4242", Nick: nick, Text: "hi"})
	h.x.waitPresence(t, mark, "subscribe", presenceFromTo(cj("4242"), aliceJID, "subscribe"))
	h.g.HandlePresence(xmppside.Presence{From: aliceJID, To: cj("4242"), Type: "subscribed"})
	got := s.waitCall(t, "LIST ACCEPT")
	want := fmt.Sprintf("LIST ACCEPT 4242 %q", strings.Repeat("n", maxWireNick))
	if got != want {
		t.Errorf("call %q, want %q", got, want)
	}
	h.settle()
	if ms := h.x.messages(mark, func(m xmppside.Message) bool { return m.From.Equal(gw) }); len(ms) != 0 {
		t.Errorf("the user was told: %s", dump(toAny(ms)))
	}
}

// keepUsersChoices keeps what the user chose in their roster: the name
// they gave, their groups and a subscription they approved; an item that
// would not change is not set again; new items and removals pass.
func TestKeepUsersChoices(t *testing.T) {
	imip := []string{DefaultRosterGroup}
	item := func(n, name, sub string, groups ...string) xmppside.RosterItem {
		return xmppside.RosterItem{JID: cj(n), Name: name, Subscription: sub, Groups: groups}
	}
	have := []xmppside.RosterItem{
		item("1", "Annie", "none", "Friends"), // named and moved by the user, request out
		item("2", "", "none"),                 // added by the user without a name
		item("3", "bo", "both", DefaultRosterGroup),
		item("4", "cy", "to", DefaultRosterGroup), // as the gateway would set it
		item("5", "", "from"),
	}
	set := []xmppside.RosterItem{
		item("1", "ann", "to", imip...),
		item("2", "dee", "to", imip...),
		item("3", "bo", "to", imip...),
		item("4", "cy", "to", imip...),
		item("5", "", "to", imip...),
		item("6", "new", "to", imip...),
		{JID: cj("1"), Remove: true},
	}
	got := keepUsersChoices(set, have)
	want := []xmppside.RosterItem{
		item("1", "Annie", "to", "Friends"),
		item("2", "dee", "to", imip...),
		// 3: already both, named and grouped alike: nothing to set
		// 4: identical: nothing to set
		item("5", "", "both", imip...),
		item("6", "new", "to", imip...),
		{JID: cj("1"), Remove: true},
	}
	if len(got) != len(want) {
		t.Fatalf("keepUsersChoices = %+v\nwant %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.JID.Equal(w.JID) || g.Name != w.Name || g.Subscription != w.Subscription || !slices.Equal(g.Groups, w.Groups) || g.Remove != w.Remove {
			t.Errorf("item %d = %+v, want %+v", i, g, w)
		}
	}
}

// A contact that accepts the user's request without a nickname keeps the
// name the user gave it in their roster (the privileged set that records
// the acceptance reads the roster first).
func TestAcceptKeepsUsersName(t *testing.T) {
	h := newHarness(t, privBoth)
	s := h.login(aliceHW, "6340564")
	h.settle()
	h.rx.rmu.Lock()
	h.rx.items = append(h.rx.items, xmppside.RosterItem{JID: cj("123"), Name: "Bob from work", Subscription: "none", Groups: []string{"Work"}})
	h.rx.rmu.Unlock()
	h.presence(aliceHW, cj("123"), "subscribe", "", "")
	s.waitCall(t, "LIST ADD")
	s.push(imipside.ListAcceptEvent{From: "123"})
	var it xmppside.RosterItem
	waitUntil(t, "roster set for the accepted contact", func() bool {
		sets, _ := h.rx.rosterSets()
		for _, x := range sets {
			if x.JID.Equal(cj("123")) {
				it = x
				return true
			}
		}
		return false
	})
	if it.Name != "Bob from work" || !slices.Equal(it.Groups, []string{"Work"}) || it.Subscription != "to" {
		t.Errorf("roster set %+v, want the user's name and group kept, subscription to", it)
	}
}
