package gateway

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

const admin = "root@localhost"

func withAdmin(c *Config) { c.Admins = []jid.JID{jid.MustParse(admin)} }

func nodes(t *testing.T, g *Gateway, from string) []string {
	t.Helper()
	list, err := g.Commands(context.Background(), jid.MustParse(from))
	if err != nil {
		t.Fatalf("Commands(%s): %v", from, err)
	}
	var out []string
	for _, c := range list {
		out = append(out, c.Node)
	}
	return out
}

// exec runs one stage of a command.
func exec(t *testing.T, g *Gateway, from, node string, stage int, state any, values map[string][]string) (xmppside.CommandStep, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return g.ExecuteCommand(ctx, xmppside.CommandRequest{From: jid.MustParse(from), Node: node, Stage: stage, State: state, Values: values})
}

// mustExec is exec that must succeed.
func mustExec(t *testing.T, g *Gateway, from, node string, stage int, state any, values map[string][]string) xmppside.CommandStep {
	t.Helper()
	step, err := exec(t, g, from, node, stage, state, values)
	if err != nil {
		t.Fatalf("%s by %s, stage %d: %v", node, from, stage, err)
	}
	return step
}

func noteText(s xmppside.CommandStep) string {
	var b []string
	for _, n := range s.Notes {
		b = append(b, n.Type+": "+n.Text)
	}
	return strings.Join(b, "\n")
}

func field(f *xmppside.Form, v string) (xmppside.FormField, bool) {
	if f == nil {
		return xmppside.FormField{}, false
	}
	i := slices.IndexFunc(f.Fields, func(fl xmppside.FormField) bool { return fl.Var == v })
	if i < 0 {
		return xmppside.FormField{}, false
	}
	return f.Fields[i], true
}

func fieldValue(t *testing.T, f *xmppside.Form, v string) string {
	t.Helper()
	fl, ok := field(f, v)
	if !ok || len(fl.Values) == 0 {
		t.Fatalf("form has no value for %q: %+v", v, f)
	}
	return fl.Values[0]
}

func vals(kv ...string) map[string][]string {
	m := map[string][]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = append(m[kv[i]], kv[i+1])
	}
	return m
}

func TestCommandsByRole(t *testing.T) {
	h := newHarness(t, "", withAdmin)
	userCmds := []string{NodeRegister, NodeStatus, NodeReconnect, NodeSync, NodeSettings, NodePassword, NodeUnregister}
	if got := nodes(t, h.g, alice+"/pc"); !slices.Equal(got, []string{NodeRegister}) {
		t.Errorf("unregistered user sees %q, want register only", got)
	}
	h.register(alice, "123")
	if got := nodes(t, h.g, alice+"/pc"); !slices.Equal(got, userCmds) {
		t.Errorf("registered user sees %q, want %q", got, userCmds)
	}
	got := nodes(t, h.g, admin+"/pc")
	if got[0] != NodeRegister || !slices.Contains(got, NodeDeleteUser) || !slices.Contains(got, NodeStatistics) || slices.Contains(got, NodeStatus) {
		t.Errorf("unregistered admin sees %q, want register and the admin commands", got)
	}
	for _, c := range commandList {
		if c.admin != slices.Contains(got, c.node) && c.node != NodeRegister {
			t.Errorf("admin list %q and command %s (admin %v) disagree", got, c.node, c.admin)
		}
	}
	if got := nodes(t, h.g, "localhost"); len(got) != 0 {
		t.Errorf("a server JID sees %q, want nothing", got)
	}
}

func TestCommandsForbidden(t *testing.T) {
	h := newHarness(t, "", withAdmin)
	h.register(alice, "123")
	for _, c := range commandList {
		if !c.admin {
			continue
		}
		_, err := exec(t, h.g, alice+"/pc", c.node, 0, nil, nil)
		var xe *xmppside.Error
		if !errors.As(err, &xe) || xe.Condition != stanza.Forbidden {
			t.Errorf("non-admin runs %s: %v, want forbidden", c.node, err)
		}
		// Even with values, at a later stage.
		if _, err := exec(t, h.g, alice+"/pc", c.node, 2, []string{bob}, vals("confirm", "1", "accountjids", bob)); !errors.As(err, &xe) || xe.Condition != stanza.Forbidden {
			t.Errorf("non-admin submits %s: %v, want forbidden", c.node, err)
		}
	}
	var xe *xmppside.Error
	if _, err := exec(t, h.g, bob+"/pc", NodeStatus, 0, nil, nil); !errors.As(err, &xe) || xe.Condition != stanza.RegistrationRequired {
		t.Errorf("unregistered status: %v, want registration-required", err)
	}
	if _, err := exec(t, h.g, alice+"/pc", "nope", 0, nil, nil); !errors.As(err, &xe) || xe.Condition != stanza.ItemNotFound {
		t.Errorf("unknown node: %v, want item-not-found", err)
	}
	if _, ok := h.st.reg(bob); ok {
		t.Error("a forbidden command changed the store")
	}
}

func TestCommandRegister(t *testing.T) {
	h := newHarness(t, "")
	step := mustExec(t, h.g, alice+"/pc", NodeRegister, 0, nil, nil)
	if step.Form == nil || !step.Last {
		t.Fatalf("register stage 0: %+v, want a form to complete", step)
	}
	for _, v := range []string{"username", "password", OptionAllowRemove} {
		if _, ok := field(step.Form, v); !ok {
			t.Errorf("register form lacks %s", v)
		}
	}
	// The same checks and texts as XEP-0077.
	h.d.setFail(&imipside.LoginError{Code: wire.CodeWrongPassword})
	step = mustExec(t, h.g, alice+"/pc", NodeRegister, 1, nil, vals("username", "123", "password", "bad"))
	want := registerError(&imipside.LoginError{Code: wire.CodeWrongPassword}).(*xmppside.Error).Text
	if len(step.Notes) != 1 || step.Notes[0].Type != xmppside.NoteError || step.Notes[0].Text != want || step.Form != nil {
		t.Errorf("wrong password: %q, want the error note %q", noteText(step), want)
	}
	step = mustExec(t, h.g, alice+"/pc", NodeRegister, 1, nil, vals("username", "abc", "password", "pw"))
	if !strings.Contains(noteText(step), "digits only") {
		t.Errorf("letters: %q", noteText(step))
	}
	if _, ok := h.st.reg(alice); ok {
		t.Fatal("a failed registration was stored")
	}
	h.d.setFail(nil)
	step = mustExec(t, h.g, alice+"/pc", NodeRegister, 1, nil, vals("username", "123", "password", "pw", OptionAllowRemove, "1"))
	if len(step.Notes) != 1 || step.Notes[0].Type != xmppside.NoteInfo {
		t.Fatalf("register: %q", noteText(step))
	}
	reg, ok := h.st.reg(alice)
	if !ok || reg.Number != "123" || reg.Password != "pw" || !reg.AllowRemove {
		t.Fatalf("stored %+v %v", reg, ok)
	}
	// The rate limit of XEP-0077 applies: the burst is spent by now.
	var last string
	for range registerBurst + 1 {
		last = noteText(mustExec(t, h.g, bob+"/pc", NodeRegister, 1, nil, vals("username", "9", "password", "x")))
	}
	if !strings.Contains(last, "Too many registration attempts") {
		t.Errorf("after the burst: %q, want the rate limit's text", last)
	}
}

func TestCommandPasswordSettingsUnregister(t *testing.T) {
	h := newHarness(t, "")
	h.register(alice, "123")
	step := mustExec(t, h.g, alice+"/pc", NodePassword, 0, nil, nil)
	if _, ok := field(step.Form, "password"); !ok {
		t.Fatalf("password form: %+v", step.Form)
	}
	h.d.setFail(&imipside.LoginError{Code: wire.CodeWrongPassword})
	step = mustExec(t, h.g, alice+"/pc", NodePassword, 1, nil, vals("password", "wrong"))
	if step.Notes[0].Type != xmppside.NoteError {
		t.Errorf("refused password: %q", noteText(step))
	}
	if reg, _ := h.st.reg(alice); reg.Password != "pw" {
		t.Errorf("a refused password replaced the stored one")
	}
	h.d.setFail(nil)
	step = mustExec(t, h.g, alice+"/pc", NodePassword, 1, nil, vals("password", "new"))
	if reg, _ := h.st.reg(alice); reg.Password != "new" || reg.Number != "123" || step.Notes[0].Type != xmppside.NoteInfo {
		t.Errorf("after the change: %+v, %q", reg, noteText(step))
	}

	step = mustExec(t, h.g, alice+"/pc", NodeSettings, 0, nil, nil)
	if v := fieldValue(t, step.Form, OptionAllowRemove); v != "0" {
		t.Errorf("allow_remove shown as %q", v)
	}
	if !strings.Contains(fmtFields(step.Form), `"IMIP"`) {
		t.Errorf("settings do not show the roster group: %s", fmtFields(step.Form))
	}
	mustExec(t, h.g, alice+"/pc", NodeSettings, 1, nil, vals(OptionAllowRemove, "true"))
	if reg, _ := h.st.reg(alice); !reg.AllowRemove || reg.Password != "new" {
		t.Errorf("settings not stored: allow_remove %v", reg.AllowRemove)
	}
	if v := fieldValue(t, mustExec(t, h.g, alice+"/pc", NodeSettings, 0, nil, nil).Form, OptionAllowRemove); v != "1" {
		t.Errorf("allow_remove shown as %q after setting it", v)
	}

	step = mustExec(t, h.g, alice+"/pc", NodeUnregister, 1, nil, vals("confirm", "0"))
	if _, ok := h.st.reg(alice); !ok || step.Notes[0].Type != xmppside.NoteInfo {
		t.Fatalf("unconfirmed unregister: %q", noteText(step))
	}
	mustExec(t, h.g, alice+"/pc", NodeUnregister, 1, nil, vals("confirm", "1"))
	if _, ok := h.st.reg(alice); ok {
		t.Fatal("still registered")
	}
	if got := nodes(t, h.g, alice); !slices.Equal(got, []string{NodeRegister}) {
		t.Errorf("after unregistering: %q", got)
	}
}

func fmtFields(f *xmppside.Form) string {
	var b []string
	for _, fl := range f.Fields {
		b = append(b, fl.Var+"="+strings.Join(fl.Values, ","))
	}
	return strings.Join(b, "; ")
}

func TestCommandStatusKickReconnect(t *testing.T) {
	h := newHarness(t, "", withAdmin)
	h.d.setBuddies("123", wire.Buddy{Number: "555"})
	s := h.login(alice+"/pc", "123")
	s.push(imipside.StatEvent{From: "555", Status: wire.StatusOnline})
	h.idle(alice)
	step := mustExec(t, h.g, alice+"/pc", NodeStatus, 0, nil, nil)
	if fieldValue(t, step.Result, "state") != "online" || fieldValue(t, step.Result, "number") != "123" {
		t.Errorf("status: %s", fmtFields(step.Result))
	}
	if fieldValue(t, step.Result, "contacts_online") != "1" {
		t.Errorf("contacts online: %s", fmtFields(step.Result))
	}
	if _, ok := field(step.Result, "since"); !ok || !strings.Contains(noteText(step), "logged in to IMIP since") {
		t.Errorf("status note: %q", noteText(step))
	}
	step = mustExec(t, h.g, admin+"/pc", NodeOnlineUsersList, 0, nil, nil)
	if fl, _ := field(step.Result, "onlineuserjids"); !slices.Equal(fl.Values, []string{alice}) {
		t.Errorf("online users: %q", fl.Values)
	}
	if n := fieldValue(t, mustExec(t, h.g, admin+"/pc", NodeOnlineUsersNum, 0, nil, nil).Result, "onlineusersnum"); n != "1" {
		t.Errorf("online users num %s", n)
	}
	step = mustExec(t, h.g, admin+"/pc", NodeUserRegistration, 1, nil, vals("accountjid", alice))
	if fieldValue(t, step.Result, "number") != "123" || fieldValue(t, step.Result, "state") != "online" || fieldValue(t, step.Result, "lastlogin") == "" {
		t.Errorf("user registration: %s", fmtFields(step.Result))
	}
	step = mustExec(t, h.g, admin+"/pc", NodeUserLastLogin, 1, nil, vals("accountjid", alice))
	if fieldValue(t, step.Result, "accountjid") != alice || fieldValue(t, step.Result, "lastlogin") == "" {
		t.Errorf("get-user-lastlogin: %s", fmtFields(step.Result))
	}
	step = mustExec(t, h.g, admin+"/pc", NodeUserRegistration, 1, nil, vals("accountjid", alice))
	if strings.Contains(fmtFields(step.Result), "=pw") {
		t.Errorf("the password is shown: %s", fmtFields(step.Result))
	}

	// Announce reaches the online user.
	mark := h.x.mark()
	step = mustExec(t, h.g, admin+"/pc", NodeAnnounce, 1, nil, vals("subject", "Maintenance", "announcement", "back at 6"))
	if !strings.Contains(noteText(step), "Sent to 1 online users") {
		t.Errorf("announce: %q", noteText(step))
	}
	h.x.waitMessage(t, mark, "announcement", func(m xmppside.Message) bool {
		return m.To.String() == alice && m.From.Equal(gw) && m.Body == "back at 6" && m.Subject == "Maintenance"
	})

	// The admin logs alice out: DISC, contacts offline, state offline.
	mark = h.x.mark()
	step = mustExec(t, h.g, admin+"/pc", NodeEndUserSession, 1, nil, vals("accountjids", alice))
	if !strings.Contains(noteText(step), alice+": logged out of IMIP") {
		t.Errorf("end session: %q", noteText(step))
	}
	s.waitCall(t, "DISC")
	h.x.waitPresence(t, mark, "contact offline", func(p xmppside.Presence) bool {
		return p.From.Equal(cj("555")) && p.Type == "unavailable"
	})
	h.idle(alice)
	step = mustExec(t, h.g, alice+"/pc", NodeStatus, 0, nil, nil)
	if fieldValue(t, step.Result, "state") != "offline" || !strings.Contains(noteText(step), "administrator") {
		t.Errorf("status after the kick: %q", noteText(step))
	}
	if len(h.g.onlineUsers()) != 0 {
		t.Errorf("online users after the kick: %q", h.g.onlineUsers())
	}
	// Another presence of the same resource does not log in again...
	n := h.d.sessionCount()
	h.available(alice+"/pc", "away", "")
	h.idle(alice)
	if h.d.sessionCount() != n {
		t.Error("a presence logged the kicked user in again")
	}
	// ...the user's reconnect does.
	step = mustExec(t, h.g, alice+"/pc", NodeReconnect, 0, nil, nil)
	if !strings.Contains(noteText(step), "Logging in") {
		t.Errorf("reconnect: %q", noteText(step))
	}
	s2 := h.d.waitSession(t, n)
	s2.waitCall(t, "STAT ")
	h.idle(alice)
	if fieldValue(t, mustExec(t, h.g, alice+"/pc", NodeStatus, 0, nil, nil).Result, "state") != "online" {
		t.Error("not online after reconnect")
	}

	// Sync pushes the contact again.
	mark = h.x.mark()
	step = mustExec(t, h.g, alice+"/pc", NodeSync, 0, nil, nil)
	if !strings.Contains(noteText(step), "1 contacts") {
		t.Errorf("sync: %q", noteText(step))
	}
	h.x.waitPresence(t, mark, "gateway presence again", func(p xmppside.Presence) bool {
		return p.From.Equal(gw) && p.To.String() == alice && p.Type == ""
	})

	st := mustExec(t, h.g, admin+"/pc", NodeStatistics, 0, nil, nil).Result
	if fieldValue(t, st, "online") != "1" || fieldValue(t, st, "registered") != "1" {
		t.Errorf("statistics: %s", fmtFields(st))
	}
}

func TestCommandDeleteUser(t *testing.T) {
	h := newHarness(t, "", withAdmin)
	h.register(alice, "123")
	step := mustExec(t, h.g, admin+"/pc", NodeDeleteUser, 0, nil, nil)
	if step.Form == nil || step.Last {
		t.Fatalf("stage 0: %+v, want a form with next", step)
	}
	step = mustExec(t, h.g, admin+"/pc", NodeDeleteUser, 1, nil, vals("accountjids", alice, "accountjids", "nobody@localhost", "accountjids", "not a jid@"))
	if step.Form == nil || !step.Last || !slices.Equal(step.State.([]string), []string{alice}) {
		t.Fatalf("stage 1: %+v", step)
	}
	if !strings.Contains(fmtFields(step.Form), "IMIP number 123") || !strings.Contains(noteText(step), "nobody@localhost is not registered") {
		t.Errorf("stage 1 shows %s / %q", fmtFields(step.Form), noteText(step))
	}
	if _, ok := h.st.reg(alice); !ok {
		t.Fatal("deleted before the confirmation")
	}
	step = mustExec(t, h.g, admin+"/pc", NodeDeleteUser, 2, step.State, vals("confirm", "1"))
	if !strings.Contains(noteText(step), alice+": deleted") {
		t.Errorf("stage 2: %q", noteText(step))
	}
	if _, ok := h.st.reg(alice); ok {
		t.Fatal("still registered")
	}
	if h.g.isRegistered(alice) {
		t.Fatal("the registry still has the user")
	}
}

func TestCommandSettingsGroupText(t *testing.T) {
	for _, tc := range []struct {
		priv  string
		keeps bool
	}{{"", false}, {privNone, false}, {privBoth, true}} {
		h := newHarness(t, tc.priv, func(c *Config) { c.RosterGroup = "Odigo" })
		h.register(alice, "123")
		f := mustExec(t, h.g, alice+"/pc", NodeSettings, 0, nil, nil).Form
		text := fmtFields(f)
		if !strings.Contains(text, `"Odigo"`) || strings.Contains(text, "stay there") != tc.keeps {
			t.Errorf("privileges %q: settings say %q", tc.priv, text)
		}
	}
}

func TestCommandDuringShutdown(t *testing.T) {
	h := newHarness(t, "", withAdmin)
	h.login(alice+"/pc", "123")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := h.g.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{NodeReconnect, NodeSync, NodeStatus} {
		step := mustExec(t, h.g, alice+"/pc", node, 0, nil, nil)
		if !strings.Contains(noteText(step), "shutting down") {
			t.Errorf("%s during shutdown: %q", node, noteText(step))
		}
	}
	step := mustExec(t, h.g, admin+"/pc", NodeEndUserSession, 1, nil, vals("accountjids", alice))
	if !strings.Contains(noteText(step), "shutting down") {
		t.Errorf("end-user-session during shutdown: %q", noteText(step))
	}
}

// The settings command sets the user's roster group: stored, kept by a
// re-registration, and given to the contacts the next sync adds; an
// unprintable group is refused; empty goes back to the gateway's.
func TestCommandSettingsRosterGroup(t *testing.T) {
	h := newHarness(t, privBoth)
	h.register(alice, "6340564")
	step := mustExec(t, h.g, alice+"/pc", NodeSettings, 1, nil, vals(fieldGroup, "bad\x07group"))
	if step.Notes[0].Type != xmppside.NoteError {
		t.Errorf("a group with a control character: %q", noteText(step))
	}
	step = mustExec(t, h.g, alice+"/pc", NodeSettings, 1, nil, vals(fieldGroup, "  Odigo friends "))
	if reg, _ := h.st.reg(alice); reg.Group != "Odigo friends" || step.Notes[0].Type != xmppside.NoteInfo {
		t.Fatalf("group stored as %q: %q", reg.Group, noteText(step))
	}
	if v := fieldValue(t, mustExec(t, h.g, alice+"/pc", NodeSettings, 0, nil, nil).Form, fieldGroup); v != "Odigo friends" {
		t.Errorf("the form shows the group as %q", v)
	}
	mustExec(t, h.g, alice+"/pc", NodePassword, 1, nil, vals("password", "new"))
	if reg, _ := h.st.reg(alice); reg.Group != "Odigo friends" || reg.Password != "new" {
		t.Errorf("after a new password: group %q", reg.Group)
	}
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "bob"})
	i := h.d.sessionCount()
	h.available(aliceHW, "", "")
	h.d.waitSession(t, i)
	h.idle(alice)
	waitUntil(t, "the roster set", func() bool { sets, _ := h.rx.rosterSets(); return len(sets) > 0 })
	h.idle(alice)
	sets, _ := h.rx.rosterSets()
	if len(sets) != 1 || !slices.Equal(sets[0].Groups, []string{"Odigo friends"}) {
		t.Errorf("roster sets %+v, want bob in the user's group", sets)
	}
	mustExec(t, h.g, alice+"/pc", NodeSettings, 1, nil, vals(fieldGroup, ""))
	if reg, _ := h.st.reg(alice); reg.Group != "" {
		t.Errorf("an empty group stored as %q", reg.Group)
	}
}

// Reconnect and sync are paced per user: a burst of them starts one login
// and one roster update, not one each (each is an IMIP login, or a roster
// update sharing the pacing of every user).
func TestCommandReconnectSyncPaced(t *testing.T) {
	h := newHarness(t, "")
	h.d.setBuddies("6340564", wire.Buddy{Number: "100", Nick: "bob"})
	h.login(aliceHW, "6340564")
	n := h.d.sessionCount()
	warned := 0
	for range 20 {
		if strings.HasPrefix(noteText(mustExec(t, h.g, aliceHW, NodeReconnect, 0, nil, nil)), "warn") {
			warned++
		}
	}
	h.d.waitSession(t, n)
	h.idle(alice)
	if got := h.d.sessionCount() - n; got != 1 || warned != 19 {
		t.Errorf("20 reconnects: %d logins, %d refused; want 1 and 19", got, warned)
	}
	warned = 0
	for range 20 {
		if strings.HasPrefix(noteText(mustExec(t, h.g, aliceHW, NodeSync, 0, nil, nil)), "warn") {
			warned++
		}
	}
	if warned != 19 {
		t.Errorf("20 syncs: %d refused, want 19", warned)
	}
}

// An announcement that would take more than half of the outbox is not
// sent: it must not crowd out the users' own traffic.
func TestCommandAnnounceNeedsRoom(t *testing.T) {
	h := newHarness(t, "", withAdmin, func(c *Config) { c.OutboxSize = 2 })
	h.login(aliceHW, "6340564")
	h.login("bob@localhost/pc", "6340565")
	mark := h.x.mark()
	step := mustExec(t, h.g, admin+"/pc", NodeAnnounce, 1, nil, vals("announcement", "maintenance at noon"))
	if step.Notes[0].Type != xmppside.NoteError || !strings.Contains(noteText(step), "Not sent") {
		t.Errorf("announce with no room: %q", noteText(step))
	}
	if got := h.x.messages(mark, func(m xmppside.Message) bool { return m.Body == "maintenance at noon" }); len(got) != 0 {
		t.Errorf("%d announcements sent anyway", len(got))
	}
}

// delete-user on a user whose new registration is still being checked:
// the deletion waits behind it; the admin is told it is queued (not that
// it failed), and it happens once the check ends.
func TestCommandDeleteUserQueued(t *testing.T) {
	h := newHarness(t, "", withAdmin)
	h.register(alice, "123")
	gate := make(chan struct{})
	h.d.mu.Lock()
	h.d.gate = gate // the registration's login waits
	h.d.mu.Unlock()
	regDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		regDone <- h.g.Register(ctx, jid.MustParse(alice), "123", "pw2")
	}()
	h.d.waitAttempts(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond) // the command's own deadline
	step, err := h.g.ExecuteCommand(ctx, xmppside.CommandRequest{From: jid.MustParse(admin + "/pc"), Node: NodeDeleteUser,
		Stage: 2, State: []string{alice}, Values: vals("confirm", "1")})
	cancel()
	if err != nil || !strings.Contains(noteText(step), "queued") {
		t.Errorf("delete-user during a registration check: %q, %v; want it reported queued", noteText(step), err)
	}
	h.d.mu.Lock()
	h.d.gate = nil
	h.d.mu.Unlock()
	close(gate)
	<-regDone
	waitUntil(t, "alice deleted", func() bool { _, ok := h.st.reg(alice); return !ok })
}
