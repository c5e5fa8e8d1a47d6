package xmppside

import (
	"fmt"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// TestPrivilegesPerDomain checks that a grant only covers the users of the
// domain that sent it: a federated server announcing roster none must not
// switch off the local server's roster privilege, and grants from anything
// but a bare domain are ignored.
func TestPrivilegesPerDomain(t *testing.T) {
	env := startEnv(t, nil)
	local, remote := jid.MustParse("juliet@localhost/balcony"), jid.MustParse("romeo@evil.example")
	if p := env.c.PrivilegesFor(local); p.Namespace != "" || p.CanGetRoster() {
		t.Fatalf("PrivilegesFor before any grant = %+v, want zero", p)
	}
	grant(t, env, NSPrivilege2, "both") // from localhost

	announce := func(from, roster string) {
		env.fc.send(t, fmt.Sprintf(`<message from="%s" to="imip.localhost" id="pr2"><privilege xmlns="%s"><perm access="roster" type="%s"/></privilege></message>`, from, NSPrivilege2, roster))
	}
	announce("evil.example", "none")
	select {
	case p := <-env.h.privileges:
		if p.Server.String() != "evil.example" || p.Roster != "none" {
			t.Fatalf("announced %+v", p)
		}
	case <-time.After(waitFor):
		t.Fatal("evil.example grant not announced")
	}
	// Grants from non-servers are dropped; a ping afterwards proves the
	// read loop handled them.
	announce("mallory@localhost", "none")
	announce("localhost/res", "none")
	announce("imip.localhost", "none")
	env.fc.roundTrip(t, `<iq type="get" id="sync" from="juliet@localhost/x" to="imip.localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	select {
	case p := <-env.h.privileges:
		t.Errorf("a non-server grant was accepted: %+v", p)
	default:
	}

	tests := []struct {
		user     jid.JID
		server   string
		get, set bool
	}{
		0: {local, "localhost", true, true},
		1: {local.Bare(), "localhost", true, true},
		2: {remote, "evil.example", false, false},
		3: {jid.MustParse("x@third.example"), "", false, false},
	}
	for i, tc := range tests {
		p := env.c.PrivilegesFor(tc.user)
		if p.Server.String() != tc.server || p.CanGetRoster() != tc.get || p.CanSetRoster() != tc.set {
			t.Errorf("%d PrivilegesFor(%s) = %+v, want server %q get %v set %v", i, tc.user, p, tc.server, tc.get, tc.set)
		}
	}
}
