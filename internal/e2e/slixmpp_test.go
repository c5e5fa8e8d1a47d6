package e2e

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"imip-transport/imipside/wire"
	"imip-transport/internal/testenv"
)

//go:embed testdata/slixmpp_scenario.py
var slixmppScenario string

// slixmppTimeout bounds the whole python run; the script's own watchdog
// (60 s) fires first.
const slixmppTimeout = 75 * time.Second

// scriptLines parses the script's "WORD json" lines into word -> values.
func scriptLines(out string) map[string][]json.RawMessage {
	lines := make(map[string][]json.RawMessage)
	for l := range strings.Lines(out) {
		word, rest, ok := strings.Cut(strings.TrimSpace(l), " ")
		if !ok || word == "" || strings.ToUpper(word) != word || !json.Valid([]byte(rest)) {
			continue // slixmpp's own warnings
		}
		lines[word] = append(lines[word], json.RawMessage(rest))
	}
	return lines
}

// TestSlixmppScenario: an independent client (python3-slixmpp) discovers
// the gateway, registers over XEP-0077, approves the gateway's
// subscription, chats with an IMIP user, changes its show and unregisters;
// both sides are checked.
func TestSlixmppScenario(t *testing.T) {
	testenv.SkipUnavailable(t, testenv.SlixmppAvailable())
	srv := prosodyPriv.Get(t)
	tr := startTransport(t, srv, acctAlice, acctBob)
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)

	name := fmt.Sprintf("sli%d", userSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := srv.AddUser(ctx, name, "pw-"+name); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(srv.C2SAddr(), ":")
	const (
		text     = "Grüße aus Köln — 你好\nzweite Zeile\n\tdritte"
		reply    = "ça va ? 👍\nsecond line"
		awayText = "out for lunch ☕"
		ackText  = "saw you away"
	)

	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	runCtx, stopRun := context.WithCancel(context.Background())
	t.Cleanup(func() { // a failed assertion must not leave python running
		stopRun()
		if res := <-done; t.Failed() {
			t.Logf("slixmpp script output (err %v):\n%s", res.err, res.out)
		}
	})
	began := time.Now()
	go func() {
		out, err := testenv.RunPython(runCtx, t, slixmppTimeout, slixmppScenario,
			name+"@"+srv.Domain(), "pw-"+name, port, tr.domain.String(),
			string(acctAlice.Number), acctAlice.Password, tr.contact(acctBob.Number), text, ackText, awayText)
		done <- result{out, err}
	}()

	// The IMIP side, while the script runs.
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	bob.expectMessage(acctAlice.Number, text)
	bob.send(acctAlice.Number, reply)
	bob.expectStat(acctAlice.Number, wire.StatusAway, awayText)
	bob.send(acctAlice.Number, ackText)
	bob.expectStat(acctAlice.Number, wire.StatusOffline, "")

	var res result
	select {
	case res = <-done:
		done <- res // for the cleanup
	case <-time.After(slixmppTimeout + 5*time.Second):
		t.Fatal("python script did not exit")
	}
	t.Logf("slixmpp script ran %v", time.Since(began).Round(time.Millisecond))
	if res.err != nil {
		t.Fatalf("slixmpp script: %v\n%s", res.err, res.out)
	}
	if os.Getenv("E2E_DEBUG") != "" {
		t.Logf("script output:\n%s", res.out)
	}
	lines := scriptLines(res.out)
	one := func(word string, v any) bool {
		t.Helper()
		raw := lines[word]
		if len(raw) != 1 {
			t.Errorf("script printed %d %s lines, want 1; output:\n%s", len(raw), word, res.out)
			return false
		}
		if err := json.Unmarshal(raw[0], v); err != nil {
			t.Errorf("%s line %s: %v", word, raw[0], err)
			return false
		}
		return true
	}
	if v := lines["FAIL"]; len(v) > 0 {
		t.Errorf("script reported failures: %s", v)
	}
	var ids, feats, form []string
	if one("IDENTITIES", &ids) && !slices.Contains(ids, "gateway/imip") {
		t.Errorf("disco#info identities %v lack gateway/imip", ids)
	}
	if one("FEATURES", &feats) {
		for _, f := range []string{"jabber:iq:register", "jabber:iq:gateway"} {
			if !slices.Contains(feats, f) {
				t.Errorf("disco#info features %v lack %s", feats, f)
			}
		}
	}
	if one("FORM", &form) && (!slices.Contains(form, "username") || !slices.Contains(form, "password") || slices.Contains(form, "registered")) {
		t.Errorf("registration form fields %v: want username and password, not registered", form)
	}
	var s string
	if one("REGISTER", &s) && s != "result" {
		t.Errorf("registration answered %q", s)
	}
	if one("GATEWAY_SUBSCRIPTION", &s) && s != "both" {
		t.Errorf("gateway subscription in the client's roster is %q, want both", s)
	}
	var item struct {
		Name   string
		Groups []string
	}
	if one("PEER_ITEM", &item) && (item.Name != acctBob.Nick || !slices.Equal(item.Groups, []string{"IMIP"})) {
		t.Errorf("roster item of the IMIP contact: %+v, want name %q group IMIP", item, acctBob.Nick)
	}
	var recv struct {
		Body, Type string
		Nick       *string
	}
	if one("RECEIVED", &recv) {
		// The contact's name is in the roster item: no XEP-0172 nick in
		// each of his messages.
		if recv.Body != reply || recv.Type != "chat" || (recv.Nick != nil && *recv.Nick != "") {
			t.Errorf("message from IMIP as slixmpp saw it: %+v (nick %v), want body %q type chat and no nick", recv, recv.Nick, reply)
		}
	}
	if one("UNREGISTER", &s) && s != "result" {
		t.Errorf("unregistration answered %q", s)
	}
	for _, w := range []string{"GATEWAY_ONLINE", "SENT", "AWAY", "ACK", "GATEWAY_OFFLINE", "DONE"} {
		if len(lines[w]) != 1 {
			t.Errorf("script printed no %s line; output:\n%s", w, res.out)
		}
	}
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Errorf("alice still on IMIP after unregistering")
	}
}
