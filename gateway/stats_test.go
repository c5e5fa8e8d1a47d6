package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
)

// The stats follow what the gateway does: a login, messages both ways, a
// bounce, the link state, the round trips and the store's commits.
func TestStats(t *testing.T) {
	h := newHarness(t, "")
	st0 := h.g.Stats()
	if !st0.LinkUp || st0.ComponentConnects != 1 || st0.Logins != 0 || st0.LastLogin != "" {
		t.Fatalf("fresh stats: link up %v, connects %d, logins %d, last login %q; want true, 1, 0, \"\"",
			st0.LinkUp, st0.ComponentConnects, st0.Logins, st0.LastLogin)
	}
	s := h.login(aliceHW, "6340564")
	s.setReply(func(kind string, n wire.Number) (wire.Code, bool) {
		if kind == imipside.RequestMESG && n == "999" {
			return wire.CodeIllegalUser, true
		}
		return wire.CodeOK, true
	})
	h.chat("m1", aliceHW, cj("100"), "chat", "hello")
	h.chat("m2", aliceHW, cj("999"), "chat", "to nobody")
	s.push(imipside.MessageEvent{BlockID: 1, From: "7744387", Nick: "mawis76", To: "6340564", Text: "hi"})
	h.settle()
	waitUntil(t, "messages counted", func() bool {
		st := h.g.Stats()
		return st.MessagesToIMIP == 1 && st.MessagesToXMPP == 1
	})
	st := h.g.Stats()
	// The registration's own login and the presence's.
	if st.Logins != 2 || st.LastLogin != "ok" {
		t.Errorf("logins %d, last %q; want 2, ok", st.Logins, st.LastLogin)
	}
	if st.Sessions["online"] != 1 || st.Sessions["dialing"] != 0 {
		t.Errorf("sessions %v, want 1 online", st.Sessions)
	}
	if st.Bounces != 1 {
		t.Errorf("bounces %d, want 1", st.Bounces)
	}
	if st.IMIPErrors[wire.CodeIllegalUser] != 1 {
		t.Errorf("IMIP errors %v, want one %d", st.IMIPErrors, wire.CodeIllegalUser)
	}
	if st.QueuedToIMIP != 0 || st.QueuedToXMPP != 0 {
		t.Errorf("queued %d to IMIP, %d to XMPP after delivery; want 0", st.QueuedToIMIP, st.QueuedToXMPP)
	}
	if st.StanzasIn < 3 || st.StanzasOut < 3 {
		t.Errorf("stanzas in %d, out %d; want at least 3 each", st.StanzasIn, st.StanzasOut)
	}
	if st.IMIPRoundTrip.Count < 3 { // STAT and two MESGs
		t.Errorf("IMIP round trips %d, want at least 3", st.IMIPRoundTrip.Count)
	}
	if st.StoreLatency.Count == 0 || st.StoreLatency.Sum <= 0 {
		t.Errorf("store latency: %d commits, sum %v; want some", st.StoreLatency.Count, st.StoreLatency.Sum)
	}
	if st.Registered != 1 || st.Uptime <= 0 {
		t.Errorf("registered %d, uptime %v", st.Registered, st.Uptime)
	}

	// The session drops and the next login fails: lost, a reconnect, a
	// network failure.
	h.d.setFail(errors.New("connection refused"))
	s.drop(errors.New("reset"))
	h.d.waitAttempts(t, h.d.attemptCount()+1)
	waitUntil(t, "the failure counted", func() bool {
		st := h.g.Stats()
		return st.LoginFailures[LoginFailNetwork] >= 1 && st.IMIPSessionsLost == 1 && st.IMIPReconnects >= 1
	})
	if st := h.g.Stats(); st.LastLogin != "unreachable" || st.Sessions["online"] != 0 {
		t.Errorf("after the failure: last login %q, sessions %v; want unreachable, none online", st.LastLogin, st.Sessions)
	}
	h.g.HandleDisconnected(errors.New("gone"))
	if h.g.Stats().LinkUp {
		t.Error("link up after HandleDisconnected")
	}
}

// Messages waiting for IMIP count as queued until IMIP confirms them.
func TestStatsQueued(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	s.setReply(func(string, wire.Number) (wire.Code, bool) { return 0, false }) // no answer
	h.chat("m1", aliceHW, cj("100"), "chat", "one")
	h.chat("m2", aliceHW, cj("100"), "chat", "two")
	h.settle()
	if st := h.g.Stats(); st.QueuedToIMIP != 2 {
		t.Errorf("queued to IMIP %d, want 2", st.QueuedToIMIP)
	}
}

func TestLoginFailReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&imipside.LoginError{Code: wire.CodeWrongPassword}, LoginFailAuth},
		{fmt.Errorf("login: %w", &imipside.LoginError{Code: wire.CodeIllegalUser}), LoginFailAuth},
		{&imipside.LoginError{Code: 850}, LoginFailRefused},
		{context.DeadlineExceeded, LoginFailTimeout},
		{&net.OpError{Op: "dial", Err: timeoutErr{}}, LoginFailTimeout},
		{errors.New("connection refused"), LoginFailNetwork},
	}
	for _, tc := range tests {
		if got := loginFailReason(tc.err); got != tc.want {
			t.Errorf("loginFailReason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestHistogram(t *testing.T) {
	var h histogram
	h.observe(0)
	h.observe(time.Millisecond)
	h.observe(3 * time.Millisecond)
	h.observe(time.Minute)
	s := h.snapshot()
	want := map[int]uint64{0: 1, 3: 1, 5: 1, len(LatencyBounds): 1}
	for i, c := range s.Counts {
		if c != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, c, want[i])
		}
	}
	if s.Count != 4 || s.Sum != time.Minute+4*time.Millisecond {
		t.Errorf("count %d sum %v", s.Count, s.Sum)
	}
}

// CheckStore writes through the group commit; a failing store fails it.
func TestCheckStore(t *testing.T) {
	h := newHarness(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.CheckStore(ctx); err != nil {
		t.Fatalf("CheckStore: %v", err)
	}
	h.st.setApplyErr(errors.New("disk full"))
	if err := h.g.CheckStore(ctx); err == nil {
		t.Error("CheckStore passed on a failing store")
	}
}

// The store's online flag follows the IMIP login (the admin commands show
// it, with the last login time); a shutdown keeps it.
func TestOnlineFlag(t *testing.T) {
	h := newHarness(t, "")
	online := func() []string {
		js, err := h.st.OnlineJIDs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	h.login(aliceHW, "6340564")
	h.settle()
	if got := online(); len(got) != 1 || got[0] != alice {
		t.Fatalf("online after login: %q, want [%s]", got, alice)
	}
	h.presence(aliceHW, gw, "unavailable", "", "")
	waitUntil(t, "flag cleared after logout", func() bool { return len(online()) == 0 })
	h.available(aliceHW, "", "")
	waitUntil(t, "flag set after the second login", func() bool { return len(online()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := online(); len(got) != 1 {
		t.Errorf("online after shutdown: %q, want alice kept", got)
	}
}

// The stats' hot-path updates: what a delivered message costs in counting
// (a counter, a round trip observed, a queue length change).
func BenchmarkStatsPerMessage(b *testing.B) {
	s := newStats()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.msgToIMIP.Add(1)
			s.imipRTT.observe(3 * time.Millisecond)
			s.queuedToIMIP.Add(1)
			s.queuedToIMIP.Add(-1)
		}
	})
}

func TestStatsNoAlloc(t *testing.T) {
	s := newStats()
	if n := testing.AllocsPerRun(100, func() {
		s.msgToXMPP.Add(1)
		s.storeLatency.observe(time.Millisecond)
		s.linkMoved(linkDialing, linkOnline)
		s.code(wire.CodeIllegalUser)
	}); n != 0 {
		t.Errorf("%v allocations per update, want 0", n)
	}
}

// The relay latency counts the messages that go straight through, each
// way, once; a message that waited for a login is not counted when it
// goes.
func TestRelayLatency(t *testing.T) {
	h := newHarness(t, "")
	s := h.login(aliceHW, "6340564")
	h.chat("m1", aliceHW, cj("100"), "chat", "straight through")
	s.push(imipside.MessageEvent{BlockID: 1, From: "7744387", To: "6340564", Text: "hi"})
	h.settle()
	waitUntil(t, "both messages delivered", func() bool {
		st := h.g.Stats()
		return st.MessagesToIMIP == 1 && st.MessagesToXMPP == 1
	})
	st := h.g.Stats()
	if st.RelayToIMIP.Count != 1 || st.RelayToXMPP.Count != 1 {
		t.Fatalf("relays measured: %d to IMIP, %d to XMPP; want 1 and 1", st.RelayToIMIP.Count, st.RelayToXMPP.Count)
	}
	// Measured from the arrival: above 0, and not from a zero time.
	if st.RelayToIMIP.Sum <= 0 || st.RelayToXMPP.Sum <= 0 || st.RelayToIMIP.Sum > time.Minute || st.RelayToXMPP.Sum > time.Minute {
		t.Errorf("relay latency sums %v, %v; want above 0 and below a minute", st.RelayToIMIP.Sum, st.RelayToXMPP.Sum)
	}

	// The session drops and the next login waits: a message sent
	// meanwhile goes once the user is back, and is not a relay.
	h.d.setFail(errors.New("connection refused"))
	s.drop(errors.New("reset"))
	h.d.waitAttempts(t, h.d.attemptCount()+1)
	h.chat("m2", aliceHW, cj("100"), "chat", "waited")
	h.settle()
	n := h.d.sessionCount()
	h.d.setFail(nil)
	s2 := h.d.waitSession(t, n)
	s2.waitCall(t, "MESG 100 waited")
	waitUntil(t, "the waiting message delivered", func() bool { return h.g.Stats().MessagesToIMIP == 2 })
	if st := h.g.Stats(); st.RelayToIMIP.Count != 1 {
		t.Errorf("relays to IMIP %d after a message that waited for a login, want 1", st.RelayToIMIP.Count)
	}
}
