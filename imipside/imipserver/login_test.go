package imipserver_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

func TestHELOReply(t *testing.T) {
	ts := startServer(t, imipserver.Config{
		KeepAlive: 90 * time.Second, Service: "imip.example", DisplayName: "Example",
		RegistrationURL: "http://imip.example/signup",
	})
	c := dialRaw(t, ts.addr)
	b := c.helo()
	wantNames := []string{"Auth-Type", "Capabilities", "ID", "Keep-Alive", "Protocol", "Registration", "Service", "ServiceDisplayName"}
	var names []string
	for _, h := range b.Headers {
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Errorf("HELO header order = %v, want %v", names, wantNames)
	}
	for i, tc := range []struct{ name, want string }{
		{wire.HdrAuthType, "imip-md5"},
		{wire.HdrCapabilities, "server-lists,mesg-ack"},
		{wire.HdrKeepAlive, "90"},
		{wire.HdrProtocol, "IMIP/1.0"},
		{wire.HdrRegistration, "http://imip.example/signup"},
		{wire.HdrService, "imip.example"},
		{wire.HdrServiceDisplay, "Example"},
	} {
		if got := b.Get(tc.name); got != tc.want {
			t.Errorf("%d: HELO %s = %q, want %q", i, tc.name, got, tc.want)
		}
	}
	if _, ok := b.Lookup(wire.HdrReference); ok {
		t.Errorf("HELO reply has a Reference")
	}
	if _, err := strconv.ParseUint(c.salt, 10, 32); err != nil {
		t.Errorf("salt %q is not a decimal 32-bit number: %v", c.salt, err)
	}
	// A fresh salt per connection (two random 32-bit draws collide with
	// probability 2^-32).
	c2 := dialRaw(t, ts.addr)
	c2.helo()
	if c2.salt == c.salt {
		t.Errorf("two connections got the same salt %q", c.salt)
	}
}

func TestLogin(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	for i, tc := range []struct {
		name     string
		number   string
		password string
		code     wire.Code // 0 = success
	}{
		{"ok", string(alice), "alice-pw", 0},
		{"wrong password", string(bob), "nope", wire.CodeWrongPassword},
		{"unknown user (answered like a wrong password)", "9999999", "x", wire.CodeWrongPassword},
		{"not a number", "alice", "alice-pw", wire.CodeIllegalUser},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			c.helo()
			id := c.logn(wire.Number(tc.number), tc.password)
			if tc.code == 0 {
				b := c.expect("LOGN " + tc.number)
				if ref, _ := b.Reference(); ref != id {
					t.Errorf("%d: Reference = %d, want %d", i, ref, id)
				}
				if _, ok := b.Lookup(wire.HdrBuddy); ok {
					t.Errorf("%d: empty list sent a Buddy header %q", i, b.Get(wire.HdrBuddy))
				}
				if !ts.srv.Online(wire.Number(tc.number)) {
					t.Errorf("%d: not online after login", i)
				}
				return
			}
			c.expectACK(tc.code, id)
			c.expectClosed()
		})
	}
}

func TestOnlyHELOAndLOGNBeforeLogin(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	c := dialRaw(t, ts.addr)
	for _, typ := range []string{wire.TypeSTAT + " ONLINE", wire.TypeMESG, wire.TypePING, wire.TypeDISC, "LIST ADD 1002002", "FOO"} {
		typ, arg, _ := strings.Cut(typ, " ")
		id := c.send(typ, arg, "")
		c.expectACK(wire.CodeNotAllowed, id)
	}
	// LOGN before HELO: no salt yet.
	id := c.logn(alice, "alice-pw")
	c.expectACK(wire.CodeNotAllowed, id)
	// The connection still works.
	c.login(alice)
	id = c.send(wire.TypeHELO, "", "")
	c.expectACK(wire.CodeNotAllowed, id)
}

func TestPingAndDisc(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	c := loginRaw(t, ts.addr, alice)
	id := c.send(wire.TypePING, "", "")
	c.expectACK(wire.CodeOK, id)
	id = c.send(wire.TypeDISC, "", "")
	c.expectACK(wire.CodeOK, id)
	c.expectClosed()
	waitFor(t, "alice offline", func() bool { return !ts.srv.Online(alice) })
}

func TestServerIDsIncreaseAcrossConnections(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	a := dialRaw(t, ts.addr)
	b := dialRaw(t, ts.addr)
	var last uint64
	for i, c := range []*rawClient{a, b, a, b} {
		id, ok := c.helo().ID()
		if !ok || id <= last {
			t.Fatalf("%d: server ID %d after %d, want increasing", i, id, last)
		}
		last = id
	}
}

func TestSecondLoginClosesOlder(t *testing.T) {
	ts := startServer(t, imipserver.Config{})
	// bob watches alice, so an OFFLINE in between would show.
	watch(t, ts, bob, alice)
	b := loginRaw(t, ts.addr, bob)
	old := loginRaw(t, ts.addr, alice)
	b.expect("STAT ONLINE")
	loginRaw(t, ts.addr, alice)
	old.expectClosed()
	if st := b.expect("STAT ONLINE"); st.Get(wire.HdrFrom) != string(alice) {
		t.Errorf("STAT From = %q", st.Get(wire.HdrFrom))
	}
	b.expectSilence(100 * time.Millisecond)
	if !ts.srv.Online(alice) {
		t.Errorf("alice offline after the older connection closed")
	}
}
