package xmppside

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// cmdHandler adds a Commander to the fake handler: "two" asks for a name,
// then a confirmation, then completes; "admin" is forbidden to all but
// boss@localhost; "one" completes at once with a result form.
type cmdHandler struct {
	*fakeHandler
	mu   sync.Mutex
	reqs []CommandRequest
}

func (h *cmdHandler) Commands(_ context.Context, from jid.JID) ([]CommandInfo, error) {
	out := []CommandInfo{{Node: "one", Name: "One"}, {Node: "two", Name: "Two stages"}}
	if from.Bare().String() == "boss@localhost" {
		out = append(out, CommandInfo{Node: "admin", Name: "Admin"})
	}
	return out, nil
}

func (h *cmdHandler) ExecuteCommand(_ context.Context, req CommandRequest) (CommandStep, error) {
	h.mu.Lock()
	h.reqs = append(h.reqs, req)
	h.mu.Unlock()
	switch req.Node {
	case "one":
		return CommandStep{Notes: []CommandNote{{Type: NoteInfo, Text: "done"}},
			Result: &Form{Title: "R", Fields: []FormField{{Var: "n", Type: "text-single", Values: []string{"42"}}}}}, nil
	case "two":
		switch req.Stage {
		case 0:
			return CommandStep{Form: &Form{FormType: "urn:test", Fields: []FormField{{Var: "name", Type: "text-single", Required: true}}}}, nil
		case 1:
			return CommandStep{Last: true, State: req.Value("name"),
				Form: &Form{Fields: []FormField{{Var: "ok", Type: "boolean"}}}}, nil
		default:
			ok, _ := req.Bool("ok")
			return CommandStep{Notes: []CommandNote{{Type: NoteInfo, Text: fmt.Sprintf("%v %v", req.State, ok)}}}, nil
		}
	case "admin":
		if req.From.Bare().String() != "boss@localhost" {
			return CommandStep{}, Error{Condition: stanza.Forbidden}
		}
		return CommandStep{}, nil
	}
	return CommandStep{}, Error{Condition: stanza.ItemNotFound}
}

const cmdIQ = `<iq type="set" id="%s" from="%s" to="imip.localhost"><command xmlns="http://jabber.org/protocol/commands" node="%s" %s>%s</command></iq>`

func cmdOf(n *node) *node { return n.child(nsCommands, "command") }

func TestAdhocProtocol(t *testing.T) {
	env := startEnvWith(t, nil, func(h *fakeHandler) Handler { return &cmdHandler{fakeHandler: h} })
	fc := env.fc
	juliet := "juliet@localhost/balcony"

	// disco#info advertises the feature; disco#items lists per asker.
	info := fc.roundTrip(t, `<iq type="get" id="i1" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`)
	if !strings.Contains(info.String(), `var="`+nsCommands+`"`) {
		t.Errorf("disco#info lacks the commands feature: %s", info)
	}
	items := func(from string) []string {
		r := fc.roundTrip(t, `<iq type="get" id="i2" from="`+from+`" to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#items" node="`+nsCommands+`"/></iq>`)
		var out []string
		for _, it := range r.child(nsDiscoItems, "query").Nodes {
			out = append(out, it.attr("node")+"@"+it.attr("jid"))
		}
		return out
	}
	if got := fmt.Sprint(items(juliet)); got != "[one@imip.localhost two@imip.localhost]" {
		t.Errorf("juliet's commands: %s", got)
	}
	if got := fmt.Sprint(items("boss@localhost/x")); got != "[one@imip.localhost two@imip.localhost admin@imip.localhost]" {
		t.Errorf("boss's commands: %s", got)
	}
	ni := fc.roundTrip(t, `<iq type="get" id="i3" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="http://jabber.org/protocol/disco#info" node="admin"/></iq>`)
	if errCondition(ni) != "item-not-found" {
		t.Errorf("disco#info of a command juliet may not run: %s", ni)
	}

	// A forbidden command.
	r := fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c0", juliet, "admin", `action="execute"`, ""))
	if r.attr("type") != "error" || errCondition(r) != "forbidden" {
		t.Errorf("juliet runs admin: %s", r)
	}

	// One stage: completed with a note and a result form, no session kept.
	r = cmdOf(fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c1", juliet, "one", "", "")))
	if r.attr("status") != "completed" || r.path("note").text() != "done" || r.path("note").attr("type") != "info" ||
		r.child(nsData, "x").attr("type") != "result" {
		t.Errorf("one: %s", r)
	}

	// Two stages: executing with next, then complete, then completed.
	r = cmdOf(fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c2", juliet, "two", `action="execute"`, "")))
	sid := r.attr("sessionid")
	if r.attr("status") != "executing" || sid == "" || r.path("actions").attr("execute") != "next" || r.path("actions", "next") == nil {
		t.Fatalf("two, stage 0: %s", r)
	}
	if !strings.Contains(r.String(), "urn:test") {
		t.Errorf("FORM_TYPE missing: %s", r)
	}
	// Another requester cannot use the session.
	e := fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c3", "mallory@localhost/x", "two", `sessionid="`+sid+`" action="next"`, ""))
	if errCondition(e) != "bad-request" || !strings.Contains(e.String(), "bad-sessionid") {
		t.Errorf("another requester's next: %s", e)
	}
	// complete is not offered yet.
	e = fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c4", juliet, "two", `sessionid="`+sid+`" action="complete"`, ""))
	if !strings.Contains(e.String(), "bad-action") {
		t.Errorf("complete at stage 0: %s", e)
	}
	form := `<x xmlns="jabber:x:data" type="submit"><field var="name"><value>Romeo</value></field></x>`
	r = cmdOf(fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c5", juliet, "two", `sessionid="`+sid+`" action="next"`, form)))
	if r.attr("status") != "executing" || r.attr("sessionid") != sid || r.path("actions").attr("execute") != "complete" {
		t.Fatalf("two, stage 1: %s", r)
	}
	form = `<x xmlns="jabber:x:data" type="submit"><field var="ok"><value>1</value></field></x>`
	r = cmdOf(fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c6", juliet, "two", `sessionid="`+sid+`" action="complete"`, form)))
	if r.attr("status") != "completed" || r.path("note").text() != "Romeo true" {
		t.Fatalf("two, stage 2: %s", r)
	}
	// The session is gone.
	e = fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c7", juliet, "two", `sessionid="`+sid+`" action="complete"`, form))
	if !strings.Contains(e.String(), "bad-sessionid") {
		t.Errorf("a completed session used again: %s", e)
	}

	// Cancel.
	r = cmdOf(fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c8", juliet, "two", "", "")))
	sid = r.attr("sessionid")
	r = cmdOf(fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c9", juliet, "two", `sessionid="`+sid+`" action="cancel"`, "")))
	if r.attr("status") != "canceled" {
		t.Errorf("cancel: %s", r)
	}
	// Profanity's /form cancel: a muc#owner query with a cancelled form.
	r = cmdOf(fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c11", juliet, "two", "", "")))
	sid = r.attr("sessionid")
	r = fc.roundTrip(t, `<iq type="set" id="c12" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="cancel"/></query></iq>`)
	if r.attr("type") != "result" {
		t.Errorf("Profanity's cancel: %s", r)
	}
	e = fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c13", juliet, "two", `sessionid="`+sid+`" action="next"`, form))
	if !strings.Contains(e.String(), "bad-sessionid") {
		t.Errorf("a session after Profanity's cancel: %s", e)
	}
	r = fc.roundTrip(t, `<iq type="set" id="c14" from="juliet@localhost/balcony" to="imip.localhost"><query xmlns="http://jabber.org/protocol/muc#owner"/></iq>`)
	if errCondition(r) != "service-unavailable" {
		t.Errorf("another muc#owner query: %s", r)
	}
	// Contacts have no commands.
	r = fc.roundTrip(t, `<iq type="get" id="c15" from="juliet@localhost/balcony" to="123@imip.localhost"><query xmlns="http://jabber.org/protocol/disco#items" node="`+nsCommands+`"/></iq>`)
	if r.attr("type") != "result" || len(r.child(nsDiscoItems, "query").Nodes) != 0 {
		t.Errorf("a contact's commands: %s", r)
	}
	// Without a node.
	e = fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c16", juliet, "", "", ""))
	if errCondition(e) != "bad-request" {
		t.Errorf("no node: %s", e)
	}

	// prev is not supported.
	e = fc.roundTrip(t, fmt.Sprintf(cmdIQ, "c10", juliet, "two", `action="prev"`, ""))
	if !strings.Contains(e.String(), "bad-action") {
		t.Errorf("prev: %s", e)
	}
}

func TestAdhocSessionLimits(t *testing.T) {
	var s *cmdSessions
	now := time.Unix(1000, 0)
	open := func(id, owner string) bool {
		return s.open(&cmdSession{id: id, owner: owner + "/r", bare: owner, node: "n"})
	}
	// Per user: the oldest goes when one more opens.
	s = newCmdSessions(100, time.Minute)
	s.now = func() time.Time { return now }
	for i := range MaxCommandSessionsPerUser + 1 {
		now = now.Add(time.Second)
		open(fmt.Sprint("a", i), "a@x")
	}
	if _, cond := s.take("a0", "a@x/r", "n"); cond != condBadSession {
		t.Errorf("the oldest session of a user beyond %d: %q, want it gone", MaxCommandSessionsPerUser, cond)
	}
	if len(s.byID) != MaxCommandSessionsPerUser {
		t.Errorf("%d sessions for one user, want %d", len(s.byID), MaxCommandSessionsPerUser)
	}
	// Total bound.
	s = newCmdSessions(2, time.Minute)
	s.now = func() time.Time { return now }
	if !open("x", "a@x") || !open("y", "b@x") || open("z", "c@x") {
		t.Error("the total bound of 2 sessions does not hold")
	}
	// Age: an expired session answers session-expired, and frees room.
	now = now.Add(2 * time.Minute)
	if _, cond := s.take("x", "a@x/r", "n"); cond != condExpired {
		t.Errorf("expired session: %q", cond)
	}
	if !open("z", "c@x") {
		t.Error("an expired session still counts")
	}
	// A session in use is not swept, and is not taken twice.
	cs, _ := s.take("z", "c@x/r", "n")
	if _, cond := s.take("z", "c@x/r", "n"); cond != condBadSession {
		t.Errorf("a busy session taken twice: %q", cond)
	}
	s.release(cs, false)
	if _, cond := s.take("z", "c@x/r", "n"); cond != "" {
		t.Errorf("a released session: %q", cond)
	}
}

// FuzzCommandDecode feeds arbitrary bytes, as the payload of a command IQ,
// through the decoding commandSet uses, and checks the bounds on what a
// submitted form can hand the Commander, and that the answer built from
// what was decoded is well-formed XML.
func FuzzCommandDecode(f *testing.F) {
	for _, s := range []string{
		`<command xmlns="http://jabber.org/protocol/commands" node="register" action="complete" sessionid="abc"><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>urn:x</value></field><field var="username"><value>123</value></field><field var="password"><value>pw</value></field></x></command>`,
		`<command xmlns="http://jabber.org/protocol/commands" node="x"><x xmlns="jabber:x:data"><field var="a"><value>1</value><value>2</value></field><field><value>none</value></field></x></command>`,
		`<command xmlns="http://jabber.org/protocol/commands" node="&lt;&amp;&quot;" action="prev"/>`,
		`<command xmlns="http://jabber.org/protocol/commands"><x xmlns="jabber:x:data" type="cancel"/></command>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := xml.NewDecoder(bytes.NewReader(data))
		var start xml.StartElement
		for {
			tok, err := d.Token()
			if err != nil {
				return
			}
			if se, ok := tok.(xml.StartElement); ok {
				start = se.Copy()
				break
			}
		}
		var cmd wireCommand
		if err := decodeElem(d, start, &cmd); err != nil {
			return
		}
		vals := formValues(cmd.Form)
		if len(vals) > maxFormFields {
			t.Fatalf("%d fields handed over, bound %d", len(vals), maxFormFields)
		}
		fields := []FormField{}
		for k, v := range vals {
			if len(v) > maxFormValues {
				t.Fatalf("field %q: %d values handed over, bound %d", k, len(v), maxFormValues)
			}
			fields = append(fields, FormField{Var: k, Type: "text-multi", Values: v, Label: k})
		}
		step := CommandStep{Notes: []CommandNote{{Type: NoteWarn, Text: cmd.Action}}, Form: &Form{Title: cmd.Node, Fields: fields}}
		toks, err := readTokens(commandResponse(cmd.Node, cmd.SID, step))
		if err != nil {
			t.Fatalf("answer tokens: %v", err)
		}
		var buf bytes.Buffer
		enc := xml.NewEncoder(&buf)
		for _, tk := range toks {
			if err := enc.EncodeToken(tk); err != nil {
				return // text the encoder refuses (invalid characters were decoded away already)
			}
		}
		if err := enc.Flush(); err != nil {
			t.Fatal(err)
		}
		var back struct {
			Node string `xml:"node,attr"`
		}
		if err := xml.Unmarshal(buf.Bytes(), &back); err != nil || back.Node != cmd.Node {
			t.Fatalf("the answer does not decode back (%v, node %q, want %q): %s", err, back.Node, cmd.Node, buf.Bytes())
		}
	})
}

// Strangers' sessions (CommandStep.Guest) fill at most half of the table:
// guests opening sessions from many JIDs cannot keep users out.
func TestAdhocGuestSessionsBounded(t *testing.T) {
	s := newCmdSessions(8, time.Minute)
	guests := 0
	for i := range 40 { // ten JIDs, four sessions each
		if s.open(&cmdSession{id: fmt.Sprint("g", i), owner: fmt.Sprintf("s%d@evil/r", i/4), bare: fmt.Sprintf("s%d@evil", i/4), node: "register", guest: true}) {
			guests++
		}
	}
	if guests > 4 || len(s.byID) > 4 {
		t.Errorf("%d guest sessions open of a table of 8, want at most 4", len(s.byID))
	}
	for i := range 4 {
		if !s.open(&cmdSession{id: fmt.Sprint("u", i), owner: fmt.Sprintf("u%d@x/r", i), bare: fmt.Sprintf("u%d@x", i), node: "settings"}) {
			t.Errorf("user %d refused while guests hold their half", i)
		}
	}
}
