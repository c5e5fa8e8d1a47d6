package imipserver_test

import (
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

func TestPresence(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	watch(t, ts, bob, alice) // bob sees alice
	a := loginRaw(t, ts.addr, alice)
	b := loginRaw(t, ts.addr, bob)
	// [ours] bob gets alice's presence at login, and his Buddy header.
	if got := b.expect("STAT ONLINE").Get(wire.HdrFrom); got != string(alice) {
		t.Errorf("From = %q", got)
	}

	steps := []struct {
		send     string // C STAT argument
		text     string
		code     wire.Code
		wantStat string // what bob sees, "" = nothing
		wantText string
	}{
		{"AWAY", "lunch", wire.CodeOK, "STAT AWAY", "lunch"},
		{"away", "lunch", wire.CodeOK, "", ""}, // unchanged: no fan-out
		{"BUSY", "", wire.CodeOK, "STAT BUSY", ""},
		{"", "", wire.CodeNoStatus, "", ""},
		{"SLEEPING", "", wire.CodeUnknownStatus, "", ""},
		{"OFFLINE", "hidden", wire.CodeOK, "STAT OFFLINE", ""}, // invisible: no text leaks
		{"ONLINE", "back", wire.CodeOK, "STAT ONLINE", "back"},
	}
	for i, st := range steps {
		id := a.send(wire.TypeSTAT, st.send, st.text)
		a.expectACK(st.code, id)
		if st.wantStat == "" {
			b.expectSilence(50 * time.Millisecond)
			continue
		}
		m := b.expect(st.wantStat)
		if m.Get(wire.HdrFrom) != string(alice) || string(m.Body) != st.wantText {
			t.Errorf("%d: bob got From %q body %q, want %q %q", i, m.Get(wire.HdrFrom), m.Body, alice, st.wantText)
		}
	}
	// alice does not see bob: lists are one-directional.
	a.expectSilence(50 * time.Millisecond)

	// A dropped connection: STAT OFFLINE.
	a.nc.Close()
	if m := b.expect("STAT OFFLINE"); m.Get(wire.HdrFrom) != string(alice) {
		t.Errorf("From = %q", m.Get(wire.HdrFrom))
	}
}

func TestInvisibleUserIsNotPushedAtLogin(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	watch(t, ts, bob, alice)
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeSTAT, "OFFLINE", "")
	a.expectACK(wire.CodeOK, id)
	b := loginRaw(t, ts.addr, bob)
	b.expectSilence(100 * time.Millisecond)
	// Invisible, alice still receives messages.
	b.send(wire.TypeMESG, "", "psst", wire.HdrTo, string(alice), wire.HdrACKType, wire.ACKTypeErrorsOnly)
	if m := a.expect(wire.TypeMESG); string(m.Body) != "psst" {
		t.Errorf("body %q", m.Body)
	}
	// Logging out while invisible sends nothing more.
	a.send(wire.TypeDISC, "", "")
	b.expectSilence(100 * time.Millisecond)
}

func TestMessages(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	a := loginRaw(t, ts.addr, alice)
	b := loginRaw(t, ts.addr, bob)

	before := time.Now().UTC().Truncate(time.Second)
	a.send(wire.TypeMESG, "", "héllo bob", wire.HdrTo, string(bob), wire.HdrACKType, wire.ACKTypeErrorsOnly, wire.HdrFrom, string(alice))
	m := b.expect(wire.TypeMESG)
	var names []string
	for _, h := range m.Headers {
		names = append(names, h.Name)
	}
	if got, want := strings.Join(names, ","), "Content-Type,From,ID,Timo,To"; got != want {
		t.Errorf("MESG headers %s, want %s", got, want)
	}
	for i, tc := range []struct{ name, want string }{
		{wire.HdrContentType, wire.ContentTypeText},
		{wire.HdrFrom, `1001001 "alice"`},
		{wire.HdrTo, string(bob)},
	} {
		if got := m.Get(tc.name); got != tc.want {
			t.Errorf("%d: %s = %q, want %q", i, tc.name, got, tc.want)
		}
	}
	if tm, ok := wire.MessageTime(m); !ok || tm.Before(before) || tm.After(time.Now()) {
		t.Errorf("Timo %q not the send time", m.Get(wire.HdrTimo))
	}
	if string(m.Body) != "héllo bob" {
		t.Errorf("body %q", m.Body)
	}
	a.expectSilence(50 * time.Millisecond) // errors-only: success is silent

	// Without ACK-Type: ACK 600 [ours].
	id := a.send(wire.TypeMESG, "", "acked", wire.HdrTo, string(bob))
	a.expectACK(wire.CodeOK, id)
	b.expect(wire.TypeMESG)

	// Unknown and malformed recipients: ACK 811 either way.
	for _, to := range []string{"9999999", "bob", ""} {
		id = a.send(wire.TypeMESG, "", "x", wire.HdrTo, to, wire.HdrACKType, wire.ACKTypeErrorsOnly)
		a.expectACK(wire.CodeIllegalUser, id)
	}
	// A spoofed From is ignored.
	a.send(wire.TypeMESG, "", "spoof", wire.HdrTo, string(bob), wire.HdrFrom, string(carol), wire.HdrACKType, wire.ACKTypeErrorsOnly)
	if got := b.expect(wire.TypeMESG).Get(wire.HdrFrom); got != `1001001 "alice"` {
		t.Errorf("From = %q, want alice", got)
	}
}

func TestMessageToOfflineUserHeldUntilLogin(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	a := loginRaw(t, ts.addr, alice)
	for _, text := range []string{"first", "second"} {
		id := a.send(wire.TypeMESG, "", text, wire.HdrTo, string(carol))
		a.expectACK(wire.CodeOK, id)
	}
	held, err := ts.store.Messages(t.Context(), carol, 0, 1000)
	if err != nil || len(held) != 2 {
		t.Fatalf("held = %v, %v; want 2 messages", held, err)
	}
	time.Sleep(1100 * time.Millisecond) // so the login time differs from Timo
	c := loginRaw(t, ts.addr, carol)
	for i, want := range []string{"first", "second"} {
		m := c.expect(wire.TypeMESG)
		if string(m.Body) != want {
			t.Errorf("%d: body %q, want %q", i, m.Body, want)
		}
		if got, want := m.Get(wire.HdrTimo), wire.FormatTimo(held[i].Time); got != want {
			t.Errorf("%d: Timo %q, want the original %q", i, got, want)
		}
	}
	waitFor(t, "held messages deleted", func() bool {
		m, _ := ts.store.Messages(t.Context(), carol, 0, 1000)
		return len(m) == 0
	})
}

func TestLists(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	a := loginRaw(t, ts.addr, alice)
	b := loginRaw(t, ts.addr, bob)

	// Unknown number, own number, bad sub-command.
	for i, tc := range []struct {
		arg  string
		code wire.Code
	}{
		{"ADD 9999999", wire.CodeIllegalUser},
		{"ADD " + string(alice), wire.CodeIllegalUser},
		{"ADD x", wire.CodeIllegalUser},
		{"ACCEPT 9999999 \"x\"", wire.CodeIllegalUser},
		{"REMOVE 9999999", wire.CodeIllegalUser},
		{"FROB " + string(bob), wire.CodeNotAllowed},
		{"ACCEPT " + string(bob) + ` "bob"`, wire.CodeNotAllowed}, // nothing pending
	} {
		t.Logf("%d: LIST %s", i, tc.arg)
		id := a.send(wire.TypeLIST, tc.arg, "", wire.HdrList, wire.ListBuddy, wire.HdrFrom, string(alice))
		a.expectACK(tc.code, id)
	}

	// alice asks bob; bob sees the request.
	id := a.send(wire.TypeLIST, "ADD "+string(bob), "hi, it's alice", wire.HdrList, wire.ListBuddy, wire.HdrFrom, string(alice))
	a.expectACK(wire.CodeOK, id)
	r := b.expect("LIST ADD")
	if r.Get(wire.HdrFrom) != `1001001 "alice"` || r.Get(wire.HdrList) != "Buddy" || string(r.Body) != "hi, it's alice" {
		t.Errorf("LIST ADD: %v %q", r.Headers, r.Body)
	}
	// bob goes away, then accepts: alice gets bob's current STAT.
	id = b.send(wire.TypeSTAT, "AWAY", "brb")
	b.expectACK(wire.CodeOK, id)
	id = b.send(wire.TypeLIST, "ACCEPT "+string(alice)+` "alice"`, "", wire.HdrFrom, string(bob))
	b.expectACK(wire.CodeOK, id)
	if m := a.expect("STAT AWAY"); m.Get(wire.HdrFrom) != string(bob) || string(m.Body) != "brb" {
		t.Errorf("STAT after accept: %v %q", m.Headers, m.Body)
	}
	// One-directional: bob's list is still empty, alice's holds bob.
	a2 := dialRaw(t, ts.addr)
	if got := a2.login(alice).Get(wire.HdrBuddy); got != `1002002 "bob"` {
		t.Errorf("alice Buddy = %q", got)
	}
	a.expectClosed() // replaced by the login above
	a = a2
	if m := a.expect("STAT AWAY"); m.Get(wire.HdrFrom) != string(bob) {
		t.Errorf("From %q", m.Get(wire.HdrFrom))
	}

	// ADD again of a contact already on the list: ACK 600 and its STAT.
	id = a.send(wire.TypeLIST, "ADD "+string(bob), "")
	a.expectACK(wire.CodeOK, id)
	a.expect("STAT AWAY")

	// bob asks alice, alice rejects: bob gets S LIST REJECT [ours].
	id = b.send(wire.TypeLIST, "ADD "+string(alice), "")
	b.expectACK(wire.CodeOK, id)
	if r := a.expect("LIST ADD"); len(r.Body) != 0 {
		t.Errorf("body %q", r.Body)
	}
	id = a.send(wire.TypeLIST, "REJECT "+string(bob), "", wire.HdrFrom, string(alice))
	a.expectACK(wire.CodeOK, id)
	if r := b.expect("LIST REJECT " + string(alice)); r.Get(wire.HdrFrom) != string(alice) {
		t.Errorf("REJECT From %q", r.Get(wire.HdrFrom))
	}
	// Rejecting again: nothing pending, ACK 600, nothing sent.
	id = a.send(wire.TypeLIST, "REJECT "+string(bob), "")
	a.expectACK(wire.CodeOK, id)
	b.expectSilence(50 * time.Millisecond)

	// alice removes bob: bob gets S LIST REMOVE [ours]; alice no longer
	// sees bob's presence.
	id = a.send(wire.TypeLIST, "REMOVE "+string(bob), "", wire.HdrList, wire.ListBuddy)
	a.expectACK(wire.CodeOK, id)
	if r := b.expect("LIST REMOVE " + string(alice)); r.Get(wire.HdrFrom) != string(alice) || r.Get(wire.HdrList) != "Buddy" {
		t.Errorf("REMOVE: %v", r.Headers)
	}
	id = b.send(wire.TypeSTAT, "BUSY", "")
	b.expectACK(wire.CodeOK, id)
	a.expectSilence(50 * time.Millisecond)
	if has, _ := ts.store.HasContact(t.Context(), alice, bob); has {
		t.Errorf("alice's list still holds bob")
	}
}

func TestPendingRequestDeliveredAtLogin(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	a := loginRaw(t, ts.addr, alice)
	id := a.send(wire.TypeLIST, "ADD "+string(carol), "add me")
	a.expectACK(wire.CodeOK, id)

	// carol logs in later: the request arrives, and again at every login
	// until she answers.
	for i := 0; i < 2; i++ {
		c := loginRaw(t, ts.addr, carol)
		r := c.expect("LIST ADD")
		if r.Get(wire.HdrFrom) != `1001001 "alice"` || string(r.Body) != "add me" {
			t.Fatalf("%d: LIST ADD %v %q", i, r.Headers, r.Body)
		}
		if i == 1 {
			id := c.send(wire.TypeLIST, "ACCEPT "+string(alice)+` "alice"`, "")
			c.expectACK(wire.CodeOK, id)
		} else {
			c.send(wire.TypeDISC, "", "")
			c.expect("ACK 600")
			c.expectClosed()
			a.expectSilence(50 * time.Millisecond) // carol is not on alice's list yet
		}
	}
	if m := a.expect("STAT ONLINE"); m.Get(wire.HdrFrom) != string(carol) {
		t.Errorf("From %q", m.Get(wire.HdrFrom))
	}
}
