package e2e

import (
	"context"
	_ "embed"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/commands"
	"mellium.im/xmpp/form"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/gateway"
	"imip-transport/internal/app"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// cmdAnswer is a command's answer as a mellium client reads it.
type cmdAnswer struct {
	resp  commands.Response
	notes []string // "type: text"
	form  *form.Data
	err   error
}

func (a cmdAnswer) note() string { return strings.Join(a.notes, "\n") }

// field returns the first value of a field of the answer's form.
func (a cmdAnswer) field(v string) string {
	if a.form == nil {
		return ""
	}
	raw, _ := a.form.Raw(v)
	if len(raw) == 0 {
		return ""
	}
	return raw[0]
}

// runCommand sends one <command/> (the attributes of mellium's
// commands.Command) and decodes the answer, its form with mellium's form
// package. Command.Execute is not used: in mellium v0.22.0 it leaves the
// response of an IQ error unclosed, which stalls the session's read loop.
func runCommand(t *testing.T, c *client, to jid.JID, cmd commands.Command, payload xml.TokenReader) cmdAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	attrs := []xml.Attr{{Name: xml.Name{Local: "node"}, Value: cmd.Node}}
	if cmd.Action != "" {
		attrs = append(attrs, xml.Attr{Name: xml.Name{Local: "action"}, Value: cmd.Action})
	}
	if cmd.SID != "" {
		attrs = append(attrs, xml.Attr{Name: xml.Name{Local: "sessionid"}, Value: cmd.SID})
	}
	iq := stanza.IQ{Type: stanza.SetIQ, To: to}
	body, err := c.sess.SendIQ(ctx, iq.Wrap(xmlstream.Wrap(payload, xml.StartElement{Name: xml.Name{Space: commands.NS, Local: "command"}, Attr: attrs})))
	if err != nil {
		return cmdAnswer{err: err}
	}
	defer body.Close()
	var reply struct {
		stanza.IQ
		Error   *stanza.Error `xml:"jabber:client error"`
		Command struct {
			Node   string `xml:"node,attr"`
			SID    string `xml:"sessionid,attr"`
			Status string `xml:"status,attr"`
			Notes  []struct {
				Type string `xml:"type,attr"`
				Text string `xml:",chardata"`
			} `xml:"note"`
			Form *form.Data `xml:"jabber:x:data x"`
		} `xml:"http://jabber.org/protocol/commands command"`
	}
	if err := xml.NewTokenDecoder(body).Decode(&reply); err != nil {
		t.Fatalf("decoding the answer to %s: %v", cmd.Node, err)
	}
	if reply.Type == stanza.ErrorIQ {
		if reply.Error == nil {
			return cmdAnswer{err: stanza.Error{Condition: stanza.UndefinedCondition}}
		}
		return cmdAnswer{err: *reply.Error}
	}
	a := cmdAnswer{form: reply.Command.Form}
	a.resp = commands.Response{IQ: reply.IQ, Node: reply.Command.Node, SID: reply.Command.SID, Status: reply.Command.Status}
	for _, n := range reply.Command.Notes {
		a.notes = append(a.notes, n.Type+": "+n.Text)
	}
	return a
}

// listCommands returns the nodes disco#items lists for c.
func listCommands(t *testing.T, c *client, to jid.JID) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	it := commands.Fetch(ctx, to, c.sess)
	defer it.Close()
	var out []string
	for it.Next() {
		out = append(out, it.Command().Node)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("listing commands: %v", err)
	}
	return out
}

// submit fills the form of a (its type becomes submit) and returns it.
func submit(t *testing.T, a cmdAnswer, values map[string]any) xml.TokenReader {
	t.Helper()
	if a.form == nil {
		t.Fatalf("no form to fill: %+v", a)
	}
	for k, v := range values {
		if _, err := a.form.Set(k, v); err != nil {
			t.Fatalf("setting %s: %v", k, err)
		}
	}
	r, ok := a.form.Submit()
	if !ok {
		t.Fatalf("form not complete: %v", values)
	}
	return r
}

func isCondition(err error, c stanza.Condition) bool {
	var se stanza.Error
	return errors.As(err, &se) && se.Condition == c
}

// TestAdhocCommands: a user registers, checks their status, is logged out
// by an admin, reconnects, and an admin deletes the registration, all
// through ad-hoc commands driven by mellium's commands and form packages,
// on both servers.
func TestAdhocCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		srv  func(t *testing.T) xmppserver.Server
	}{
		{"prosody", func(t *testing.T) xmppserver.Server { return prosodyPriv.Get(t) }},
		{"ejabberd", func(t *testing.T) xmppserver.Server { return ejabberd.Get(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.srv(t)
			boss := newUser(t, srv, "boss")
			tr := startTransportWith(t, srv, func(o *app.Options) { o.Admins = []jid.JID{boss.jid.Bare()} }, acctAlice, acctBob)
			testAdhoc(t, tr, boss)
		})
	}
}

func testAdhoc(t *testing.T, tr *transport, boss *client) {
	gw := tr.domain
	u := newUser(t, tr.srv, "adhoc")

	info := u.iq("get", gw.String(), `<query xmlns="http://jabber.org/protocol/disco#info"/>`)
	if !strings.Contains(info.Raw, `var="`+commands.NS+`"`) {
		t.Errorf("disco#info lacks the commands feature: %s", info.Raw)
	}
	if got := listCommands(t, u, gw); !slices.Equal(got, []string{gateway.NodeRegister}) {
		t.Errorf("an unregistered user sees %q, want register only", got)
	}

	// Register: a form, a wrong password (the XEP-0077 text), then right.
	a := runCommand(t, u, gw, commands.Command{Node: gateway.NodeRegister}, nil)
	if a.err != nil || a.resp.Status != "executing" || a.resp.SID == "" || a.form == nil {
		t.Fatalf("register: %+v", a)
	}
	b := runCommand(t, u, gw, a.resp.Complete(), submit(t, a, map[string]any{"username": string(acctAlice.Number), "password": "wrong"}))
	if b.err != nil || b.resp.Status != "completed" || !strings.HasPrefix(b.note(), "error: ") {
		t.Fatalf("register with a wrong password: %+v", b)
	}
	a = runCommand(t, u, gw, commands.Command{Node: gateway.NodeRegister}, nil)
	b = runCommand(t, u, gw, a.resp.Complete(), submit(t, a, map[string]any{"username": string(acctAlice.Number), "password": acctAlice.Password}))
	if b.err != nil || b.resp.Status != "completed" || !strings.HasPrefix(b.note(), "info: Registered") {
		t.Fatalf("register: %+v", b)
	}
	u.expect("subscribe from the gateway", isPresence(gw.String(), "subscribe"))
	u.send(`<presence type="subscribed" to=%q/>`, gw.String())
	u.send(`<presence type="subscribe" to=%q/>`, gw.String())
	if !tr.imip.WaitOnline(acctAlice.Number, true, waitFor) {
		t.Fatal("not logged in to IMIP after registering by command")
	}
	got := listCommands(t, u, gw)
	if !slices.Contains(got, gateway.NodeStatus) || slices.Contains(got, gateway.NodeStatistics) {
		t.Errorf("a registered user sees %q", got)
	}

	// Status, after the gateway came online.
	u.expect("the gateway online", isPresence(gw.String(), ""))
	a = runCommand(t, u, gw, commands.Command{Node: gateway.NodeStatus}, nil)
	if a.err != nil || a.field("state") != "online" || a.field("number") != string(acctAlice.Number) || !strings.Contains(a.note(), "logged in to IMIP since") {
		t.Errorf("status: %+v %q", a, a.note())
	}

	// Admin commands: forbidden to the user, listed for the admin.
	a = runCommand(t, u, gw, commands.Command{Node: gateway.NodeStatistics}, nil)
	if !isCondition(a.err, stanza.Forbidden) {
		t.Errorf("a user runs statistics: %v, want forbidden", a.err)
	}
	if got := listCommands(t, boss, gw); !slices.Contains(got, gateway.NodeDeleteUser) || !slices.Contains(got, gateway.NodeOnlineUsersList) {
		t.Errorf("the admin sees %q", got)
	}
	a = runCommand(t, boss, gw, commands.Command{Node: gateway.NodeOnlineUsersList}, nil)
	if a.err != nil || a.form == nil {
		t.Fatalf("online users: %+v", a)
	}
	if jids, _ := a.form.GetJIDs("onlineuserjids"); !slices.ContainsFunc(jids, func(j jid.JID) bool { return j.Equal(u.jid.Bare()) }) {
		t.Errorf("online users %v lack %s", jids, u.jid.Bare())
	}
	a = runCommand(t, boss, gw, commands.Command{Node: gateway.NodeStatistics}, nil)
	if a.err != nil || a.field("online") != "1" || a.field("uptime") == "" {
		t.Errorf("statistics: %+v", a)
	}
	a = runCommand(t, boss, gw, commands.Command{Node: gateway.NodeUserRegistration}, nil)
	b = runCommand(t, boss, gw, a.resp.Complete(), submit(t, a, map[string]any{"accountjid": u.jid.Bare()}))
	if b.err != nil || b.field("number") != string(acctAlice.Number) || b.field("lastlogin") == "never" || b.field("lastlogin") == "" {
		t.Errorf("a user's registration: %+v", b)
	}
	a = runCommand(t, boss, gw, commands.Command{Node: gateway.NodeUserLastLogin}, nil)
	c := runCommand(t, boss, gw, a.resp.Complete(), submit(t, a, map[string]any{"accountjid": u.jid.Bare()}))
	if c.err != nil || c.field("lastlogin") != b.field("lastlogin") {
		t.Errorf("get-user-lastlogin: %+v, want lastlogin %q", c, b.field("lastlogin"))
	}
	if b.form != nil {
		b.form.ForFields(func(f form.FieldData) {
			if v, _ := b.form.Raw(f.Var); slices.Contains(v, acctAlice.Password) {
				t.Errorf("field %s shows the password", f.Var)
			}
		})
	}

	// The admin logs the user out; the user reconnects.
	a = runCommand(t, boss, gw, commands.Command{Node: gateway.NodeEndUserSession}, nil)
	b = runCommand(t, boss, gw, a.resp.Complete(), submit(t, a, map[string]any{"accountjids": []jid.JID{u.jid.Bare()}}))
	if b.err != nil || !strings.Contains(b.note(), "logged out of IMIP") {
		t.Errorf("end-user-session: %+v %q", b, b.note())
	}
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Fatal("still on IMIP after end-user-session")
	}
	a = runCommand(t, u, gw, commands.Command{Node: gateway.NodeReconnect}, nil)
	if a.err != nil || !strings.Contains(a.note(), "Logging in") {
		t.Errorf("reconnect: %+v", a)
	}
	if !tr.imip.WaitOnline(acctAlice.Number, true, waitFor) {
		t.Fatal("not back on IMIP after reconnect")
	}

	// Delete: three stages (accounts, confirmation, done).
	a = runCommand(t, boss, gw, commands.Command{Node: gateway.NodeDeleteUser}, nil)
	b = runCommand(t, boss, gw, a.resp.Next(), submit(t, a, map[string]any{"accountjids": []jid.JID{u.jid.Bare()}}))
	if b.err != nil || b.resp.Status != "executing" || b.resp.SID != a.resp.SID {
		t.Fatalf("delete-user, stage 1: %+v", b)
	}
	c = runCommand(t, boss, gw, b.resp.Complete(), submit(t, b, map[string]any{"confirm": true}))
	if c.err != nil || c.resp.Status != "completed" || !strings.Contains(c.note(), "deleted") {
		t.Fatalf("delete-user: %+v %q", c, c.note())
	}
	u.expect("unavailable from the gateway", isPresence(gw.String(), "unavailable"))
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Error("still on IMIP after delete-user")
	}
	if got := listCommands(t, u, gw); !slices.Equal(got, []string{gateway.NodeRegister}) {
		t.Errorf("after the deletion the user sees %q", got)
	}
}

//go:embed testdata/slixmpp_adhoc.py
var slixmppAdhoc string

// TestSlixmppAdhoc: slixmpp's xep_0050 client registers, reads its status,
// is refused an admin command, cancels a session and unregisters, all by
// ad-hoc commands.
func TestSlixmppAdhoc(t *testing.T) {
	testenv.SkipUnavailable(t, testenv.SlixmppAvailable())
	srv := prosodyPriv.Get(t)
	tr := startTransport(t, srv, acctAlice)
	name := fmt.Sprintf("sliadhoc%d", userSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := srv.AddUser(ctx, name, "pw-"+name); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(srv.C2SAddr(), ":")
	began := time.Now()
	out, err := testenv.RunPython(context.Background(), t, slixmppTimeout, slixmppAdhoc,
		name+"@"+srv.Domain(), "pw-"+name, port, tr.domain.String(), string(acctAlice.Number), acctAlice.Password)
	t.Logf("slixmpp script ran %v", time.Since(began).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("slixmpp script: %v\n%s", err, out)
	}
	lines := scriptLines(out)
	one := func(word string, v any) bool {
		t.Helper()
		raw := lines[word]
		if len(raw) != 1 {
			t.Errorf("script printed %d %s lines, want 1; output:\n%s", len(raw), word, out)
			return false
		}
		if err := json.Unmarshal(raw[0], v); err != nil {
			t.Errorf("%s line %s: %v", word, raw[0], err)
			return false
		}
		return true
	}
	if v := lines["FAIL"]; len(v) > 0 {
		t.Errorf("script reported failures: %s\n%s", v, out)
	}
	var feats, cmds []string
	if one("FEATURES", &feats) && !slices.Contains(feats, commands.NS) {
		t.Errorf("features %v lack %s", feats, commands.NS)
	}
	if one("COMMANDS", &cmds) && !slices.Equal(cmds, []string{gateway.NodeRegister}) {
		t.Errorf("commands before registering: %v", cmds)
	}
	type answer struct {
		Status, SID, Error string
		Notes              [][2]string
		FormType           string `json:"form_type"`
		Fields, Actions    []string
	}
	var a answer
	if one("REGISTER_FORM", &a) && (a.Status != "executing" || a.SID == "" || a.FormType != "form" ||
		!slices.Contains(a.Fields, "username") || !slices.Contains(a.Fields, "password") || !slices.Contains(a.Actions, "complete")) {
		t.Errorf("register form: %+v", a)
	}
	if one("REGISTER", &a) && (a.Status != "completed" || len(a.Notes) != 1 || a.Notes[0][0] != "info") {
		t.Errorf("register: %+v", a)
	}
	if one("COMMANDS_AFTER", &cmds) && (!slices.Contains(cmds, gateway.NodeStatus) || slices.Contains(cmds, gateway.NodeStatistics)) {
		t.Errorf("commands after registering: %v", cmds)
	}
	if one("STATUS", &a) && (a.Status != "completed" || len(a.Notes) != 1 || !strings.Contains(a.Notes[0][1], "logged in to IMIP")) {
		t.Errorf("status: %+v", a)
	}
	if one("ADMIN", &a) && a.Error != "forbidden" {
		t.Errorf("an admin command: %+v, want forbidden", a)
	}
	if one("CANCEL", &a) && a.Status != "canceled" {
		t.Errorf("cancel: %+v", a)
	}
	if one("UNREGISTER", &a) && (a.Status != "completed" || len(a.Notes) != 1 || a.Notes[0][0] != "info") {
		t.Errorf("unregister: %+v", a)
	}
	if one("COMMANDS_END", &cmds) && !slices.Equal(cmds, []string{gateway.NodeRegister}) {
		t.Errorf("commands after unregistering: %v", cmds)
	}
	for _, w := range []string{"GATEWAY_ONLINE", "GATEWAY_OFFLINE", "DONE"} {
		if len(lines[w]) != 1 {
			t.Errorf("script printed no %s line; output:\n%s", w, out)
		}
	}
	if !tr.imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Error("still on IMIP after unregistering")
	}
}
