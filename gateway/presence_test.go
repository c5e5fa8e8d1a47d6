package gateway

import (
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

const (
	alice   = "alice@localhost"
	aliceHW = "alice@localhost/laptop"
	alicePh = "alice@localhost/phone"
	bob     = "bob@localhost"
	bobHW   = "bob@localhost/desk"
)

var aliceJID = jid.MustParse(alice)

// The first available presence logs in and sends STAT mapped from show and
// status.
func TestFirstPresenceLogsIn(t *testing.T) {
	tests := []struct {
		show, status string
		want         string
	}{
		0: {"", "", "STAT ONLINE"},
		1: {"chat", "", "STAT ONLINE"},
		2: {"away", "", "STAT AWAY"},
		3: {"xa", "gone fishing", "STAT AWAY gone fishing"},
		4: {"dnd", "in a meeting", "STAT BUSY in a meeting"},
		5: {"", "hello world", "STAT ONLINE hello world"},
	}
	for i, tc := range tests {
		h := newHarness(t, "")
		h.register(alice, "6340564")
		if n := h.d.sessionCount(); n != 1 {
			t.Fatalf("%d: %d sessions after Register, want 1 (the credential check)", i, n)
		}
		mark := h.x.mark()
		h.available(aliceHW, tc.show, tc.status)
		s := h.d.waitSession(t, 1)
		if s.number != "6340564" || s.password != "pw" {
			t.Errorf("%d: dialed %s/%s, want 6340564/pw", i, s.number, s.password)
		}
		if got := s.waitCall(t, "STAT "); got != tc.want {
			t.Errorf("%d: show %q status %q: first STAT = %q, want %q", i, tc.show, tc.status, got, tc.want)
		}
		h.x.waitPresence(t, mark, "gateway available presence", presenceFromTo(gw, aliceJID, ""))
		h.settle()
		if got := s.callsWith("STAT "); len(got) != 1 {
			t.Errorf("%d: STATs = %q, want exactly one", i, got)
		}
	}
}

// A change of show while logged in sends a new STAT, with the mapping of
// TestFirstPresenceLogsIn.
func TestPresenceChangeSendsStat(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	steps := []struct {
		show, status string
		want         []string // every STAT so far
	}{
		0: {"away", "", []string{"STAT ONLINE", "STAT AWAY"}},
		1: {"xa", "", []string{"STAT ONLINE", "STAT AWAY"}}, // still AWAY: nothing new
		2: {"dnd", "busy!", []string{"STAT ONLINE", "STAT AWAY", "STAT BUSY busy!"}},
		3: {"chat", "", []string{"STAT ONLINE", "STAT AWAY", "STAT BUSY busy!", "STAT ONLINE"}},
	}
	for i, st := range steps {
		h.available(aliceHW, st.show, st.status)
		h.settle()
		if got := s.callsWith("STAT "); !slices.Equal(got, st.want) {
			t.Errorf("%d: after show %q: STATs %q, want %q", i, st.show, got, st.want)
		}
	}
}

// The server copies the user's presence to the gateway and to every contact
// JID; a second resource with the same status changes nothing on IMIP.
func TestDuplicatePresenceNoDuplicateStat(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "6340564")
	for _, to := range []jid.JID{gw, cj("100"), cj("200"), cj("300")} {
		h.presence(aliceHW, to, "", "away", "out")
	}
	s := h.d.waitSession(t, 1)
	h.settle()
	for _, to := range []jid.JID{gw, cj("100")} {
		h.presence(alicePh, to, "", "away", "out") // a second resource, same status
	}
	h.settle()
	if got := s.callsWith("STAT "); !slices.Equal(got, []string{"STAT AWAY out"}) {
		t.Errorf("STATs = %q, want one STAT AWAY out", got)
	}
	if n := h.d.attemptCount(); n != 2 {
		t.Errorf("%d Dial calls, want 2 (register, login)", n)
	}
}

// Only the last resource's unavailable logs out; the duplicates through
// contact JIDs neither log in again nor send a second DISC.
func TestLastUnavailableDisconnects(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.available(alicePh, "", "")
	h.settle()
	h.presence(aliceHW, gw, "unavailable", "", "")
	h.presence(aliceHW, cj("100"), "unavailable", "", "")
	h.settle()
	if got := s.callsWith("DISC"); len(got) != 0 {
		t.Fatalf("DISC while a resource is still available: %q", s.callList())
	}
	h.presence(alicePh, gw, "unavailable", "", "")
	h.presence(alicePh, cj("100"), "unavailable", "", "")
	h.presence(alicePh, cj("200"), "unavailable", "", "")
	h.settle()
	if got := s.callsWith("DISC"); len(got) != 1 {
		t.Errorf("calls %q: want exactly one DISC", s.callList())
	}
	if n := h.d.attemptCount(); n != 2 {
		t.Errorf("%d Dial calls, want 2 (register, login)", n)
	}
	// Online again: a new login.
	h.available(aliceHW, "", "")
	s2 := h.d.waitSession(t, 2)
	s2.waitCall(t, "STAT ONLINE")
}

// A contact's STAT becomes presence from number@gateway.
func TestContactStat(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	tests := []struct {
		st                 wire.Status
		text               string
		typ, show, wantSta string
	}{
		0: {wire.StatusOnline, "", "", "", ""},
		1: {wire.StatusAway, "lunch", "", "away", "lunch"},
		2: {wire.StatusBusy, "", "", "dnd", ""},
		3: {wire.StatusOnline, "back", "", "", "back"},
		4: {wire.StatusOffline, "", "unavailable", "", ""},
	}
	for i, tc := range tests {
		mark := h.x.mark()
		s.push(imipside.StatEvent{From: "7744387", Status: tc.st, Text: tc.text})
		p := h.x.waitPresence(t, mark, "contact presence", func(p xmppside.Presence) bool { return p.From.Equal(cj("7744387")) })
		if p.Type != tc.typ || p.Show != tc.show || p.Status != tc.wantSta || !p.To.Equal(aliceJID) {
			t.Errorf("%d: STAT %s %q -> presence to=%s type=%q show=%q status=%q; want to=%s type=%q show=%q status=%q",
				i, tc.st, tc.text, p.To, p.Type, p.Show, p.Status, aliceJID, tc.typ, tc.show, tc.wantSta)
		}
	}
}

// A newly available resource gets the gateway's presence and that of every
// online contact; offline contacts are not sent.
func TestNewResourceGetsContactPresence(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
	s.push(imipside.StatEvent{From: "200", Status: wire.StatusAway, Text: "lunch"})
	s.push(imipside.StatEvent{From: "300", Status: wire.StatusOnline})
	s.push(imipside.StatEvent{From: "300", Status: wire.StatusOffline})
	h.settle()
	mark := h.x.mark()
	phone := jid.MustParse(alicePh)
	h.available(alicePh, "", "")
	h.settle()
	got := h.x.presences(mark, func(p xmppside.Presence) bool { return p.To.Equal(phone) })
	want := map[string]string{"imip.localhost": "", "100@imip.localhost": "", "200@imip.localhost": "away"}
	if len(got) != len(want) {
		t.Fatalf("presences to the new resource:\n%s\nwant %d (gateway, 100, 200)", dump(toAny(got)), len(want))
	}
	for _, p := range got {
		show, ok := want[p.From.String()]
		if !ok || p.Type != "" || p.Show != show {
			t.Errorf("unexpected presence from=%s type=%q show=%q", p.From, p.Type, p.Show)
		}
	}
}

// Probes are answered from the cache, without IMIP.
func TestProbes(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusBusy, Text: "busy"})
	h.settle()
	calls := len(s.callList())
	tests := []struct {
		to         jid.JID
		typ, show  string
		wantStatus string
	}{
		0: {cj("100"), "", "dnd", "busy"},
		1: {cj("999"), "unavailable", "", ""},
		2: {gw, "", "", ""},
	}
	for i, tc := range tests {
		mark := h.x.mark()
		h.presence(alice, tc.to, "probe", "", "")
		p := h.x.waitPresence(t, mark, "probe answer", func(p xmppside.Presence) bool { return p.From.Equal(tc.to) })
		if p.Type != tc.typ || p.Show != tc.show || p.Status != tc.wantStatus || !p.To.Equal(aliceJID) {
			t.Errorf("%d: probe to %s answered type=%q show=%q status=%q to=%s; want type=%q show=%q status=%q to=%s",
				i, tc.to, p.Type, p.Show, p.Status, p.To, tc.typ, tc.show, tc.wantStatus, aliceJID)
		}
	}
	if got := s.callList(); len(got) != calls {
		t.Errorf("probes made IMIP calls: %q", got[calls:])
	}
}

// A probe to the gateway of a user not logged in is answered unavailable,
// and so is an unregistered user's probe.
func TestProbeGatewayOffline(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "6340564")
	for i, from := range []string{alice, bob} {
		mark := h.x.mark()
		h.presence(from, gw, "probe", "", "")
		p := h.x.waitPresence(t, mark, "probe answer", func(p xmppside.Presence) bool { return p.From.Equal(gw) })
		if p.Type != "unavailable" || !p.To.Bare().Equal(jid.MustParse(from)) {
			t.Errorf("%d: probe from %s answered type=%q to=%s, want unavailable", i, from, p.Type, p.To)
		}
	}
}

func toAny[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

// The server copies every presence to the gateway and to each contact JID:
// with more copies than the inbox holds, none may be lost, least of all
// the unavailable that logs the user out.
func TestPresenceCopiesNeverDropped(t *testing.T) {
	h := newHarness(t, "") // InboxSize 16
	s := h.login(aliceHW, "6340564")
	targets := []jid.JID{gw}
	for i := range 40 {
		targets = append(targets, cj(fmt.Sprintf("%d", 100+i)))
	}
	for _, to := range targets {
		h.presence(aliceHW, to, "", "away", "")
	}
	for _, to := range targets {
		h.presence(aliceHW, to, "unavailable", "", "")
	}
	s.waitCall(t, "DISC")
	h.settle()
	if got := s.callsWith("STAT"); len(got) > 2 {
		t.Errorf("STATs %q: copies of one presence sent more than one STAT", got)
	}
}

// An unavailable directed at one contact JID ("invisible to X") does not log
// the user out: IMIP has no per-contact presence. The broadcast one does.
func TestDirectedUnavailableIgnored(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.presence(aliceHW, cj("100"), "unavailable", "", "")
	h.settle()
	if got := s.callsWith("DISC"); len(got) != 0 {
		t.Fatalf("a directed unavailable logged the user out: %q", s.callList())
	}
	h.presence(aliceHW, gw, "unavailable", "", "")
	s.waitCall(t, "DISC")
}

// The presence a new resource gets from the cache carries the contact's
// nickname, as the live one does.
func TestCachedPresenceHasNick(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "ann"})
	s := h.login(aliceHW, "6340564")
	s.push(imipside.StatEvent{From: "100", Status: wire.StatusOnline})
	h.settle()
	mark := h.x.mark()
	h.available(alicePh, "", "")
	p := h.x.waitPresence(t, mark, "ann's presence to the phone", presenceFromTo(cj("100"), jid.MustParse(alicePh), ""))
	if p.Nick != "ann" {
		t.Errorf("cached presence nick %q, want ann", p.Nick)
	}
}

// A huge XMPP status is cut before it goes to IMIP (a STAT block IMIP would
// refuse, or the session's writer would, is never built).
func TestHugeStatusCut(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.available(aliceHW, "away", strings.Repeat("é", 60000))
	h.settle()
	got := s.callsWith("STAT AWAY")
	if len(got) != 1 {
		t.Fatalf("STATs %d, want one STAT AWAY", len(got))
	}
	text := strings.TrimPrefix(got[0], "STAT AWAY ")
	if len(text) > maxStatusText || !utf8.ValidString(text) || len(text) < maxStatusText-1 {
		t.Errorf("status of %d bytes (valid UTF-8 %v), want cut to %d", len(text), utf8.ValidString(text), maxStatusText)
	}
}
