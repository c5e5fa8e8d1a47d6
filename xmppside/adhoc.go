package xmppside

// XEP-0050 ad-hoc commands, the responder side: the protocol (disco of the
// command list, <command/> IQs, sessions, actions, notes) and XEP-0004 data
// forms. Which commands exist and what they do is the Commander's business
// (the gateway); this file knows nothing of IMIP.
//
// mellium.im/xmpp/commands (v0.22.0) is the requester side only; its
// Actions and Note types are used here to write <actions/> and <note/>.
// mellium.im/xmpp/form cannot write a form of type "result", so forms are
// written with this package's element helpers, as the XEP-0077 form is.

import (
	"context"
	"encoding/xml"
	"slices"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/commands"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// nsCommands is XEP-0050's namespace, also the disco node of the command
// list.
const nsCommands = commands.NS

// Limits of ad-hoc command sessions (a command of several stages keeps a
// session between them).
const (
	// DefaultMaxCommandSessions is Config.MaxCommandSessions' default: the
	// sessions open at once, all requesters together.
	DefaultMaxCommandSessions = 256
	// DefaultCommandSessionTimeout is Config.CommandSessionTimeout's
	// default: a session not continued within it is forgotten, and its
	// requester gets session-expired.
	DefaultCommandSessionTimeout = 10 * time.Minute
	// MaxCommandSessionsPerUser bounds the sessions of one bare JID; a new
	// one beyond it replaces that JID's oldest.
	MaxCommandSessionsPerUser = 4
	// maxFormValues bounds the values of one submitted field and
	// maxFormFields the fields of one submitted form; the rest is ignored.
	maxFormValues = 1000
	maxFormFields = 64
)

// CommandInfo names one ad-hoc command, as disco#items lists it.
type CommandInfo struct {
	Node string
	Name string
}

// FormOption is one choice of a list field.
type FormOption struct {
	Label, Value string
}

// FormField is one field of a data form.
type FormField struct {
	// Var is the field's name ("" for a fixed field).
	Var string
	// Type is a XEP-0004 field type: text-single, text-private,
	// text-multi, boolean, list-single, jid-single, jid-multi, fixed,
	// hidden ("" leaves the attribute out: text-single).
	Type     string
	Label    string
	Desc     string
	Required bool
	Values   []string
	Options  []FormOption
}

// Form is a data form the component sends.
type Form struct {
	// Type is "form" (asks for input) or "result".
	Type string
	// FormType, if set, is written as the hidden FORM_TYPE field.
	FormType     string
	Title        string
	Instructions string
	Fields       []FormField
}

// Note types of a CommandNote.
const (
	NoteInfo  = "info"
	NoteWarn  = "warn"
	NoteError = "error"
)

// CommandNote is a XEP-0050 <note/>: a message for the requester.
type CommandNote struct {
	Type string // NoteInfo, NoteWarn or NoteError
	Text string
}

// CommandRequest is one execution stage of a command.
type CommandRequest struct {
	// From is the requester (a full JID, as the server stamped it).
	From jid.JID
	Node string
	// Stage is 0 for the first execution, then 1, 2... for each form
	// submitted in the session.
	Stage int
	// State is what the previous stage returned in CommandStep.State.
	State any
	// Values are the fields of the submitted form, by var (FORM_TYPE left
	// out); nil when no form came (a first execution usually).
	Values map[string][]string
}

// Value returns the first submitted value of field name, or "".
func (r CommandRequest) Value(name string) string {
	if v := r.Values[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Bool returns the submitted boolean field name; ok is false when it is
// absent or not a boolean.
func (r CommandRequest) Bool(name string) (b, ok bool) {
	return parseBool(r.Value(name))
}

// CommandStep is what a command answers to one stage.
type CommandStep struct {
	// Form, if not nil, asks for input: the session stays open
	// (status executing) and the submitted form comes as the next stage.
	// Nil completes the command.
	Form *Form
	// Last says the form's submission completes the command (the client
	// offers "complete"); otherwise it offers "next".
	Last bool
	// Result is a result form sent with the completion.
	Result *Form
	Notes  []CommandNote
	// State is handed back in the next stage's CommandRequest.
	State any
	// Guest marks the first form of a command run by someone who is not a
	// user of the gateway (a stranger registering): guests' sessions may
	// fill at most half of the session table, so that strangers cannot
	// keep users from running commands.
	Guest bool
}

// Commander may be implemented by a Handler to offer XEP-0050 ad-hoc
// commands on the component's domain. Its methods may block; they run in
// their own goroutine (bounded as registrations are, see
// Config.MaxRegistrations) with a context that ends at RegisterTimeout or
// when the link goes down.
//
// Errors of type [Error] or [stanza.Error] are sent to the requester as
// they are (forbidden for a command the requester may not run,
// item-not-found for an unknown node); any other error becomes
// internal-server-error without its text, and ends the session.
type Commander interface {
	// Commands lists the commands from (a full JID) may run, in the order
	// to show them.
	Commands(ctx context.Context, from jid.JID) ([]CommandInfo, error)
	// ExecuteCommand runs one stage of a command.
	ExecuteCommand(ctx context.Context, req CommandRequest) (CommandStep, error)
}

// cmdSession is an open multi-stage command.
type cmdSession struct {
	id      string
	owner   string // the requester's full JID
	bare    string
	node    string
	stage   int
	state   any
	last    bool // the form waiting for submission is the last
	expires time.Time
	busy    bool // a stage runs
	guest   bool // opened by a stranger (CommandStep.Guest)
}

// cmdSessions are the open sessions of a Component.
type cmdSessions struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	byID map[string]*cmdSession
}

func newCmdSessions(max int, ttl time.Duration) *cmdSessions {
	return &cmdSessions{max: max, ttl: ttl, now: time.Now, byID: make(map[string]*cmdSession)}
}

// sweep forgets expired sessions. s.mu is held.
func (s *cmdSessions) sweep(now time.Time) {
	for id, cs := range s.byID {
		if !cs.busy && now.After(cs.expires) {
			delete(s.byID, id)
		}
	}
}

// open stores a new session, or reports that none may be opened.
func (s *cmdSessions) open(cs *cmdSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweep(now)
	var mine []*cmdSession
	for _, o := range s.byID {
		if o.bare == cs.bare && !o.busy {
			mine = append(mine, o)
		}
	}
	if len(mine) >= MaxCommandSessionsPerUser {
		oldest := slices.MinFunc(mine, func(a, b *cmdSession) int { return a.expires.Compare(b.expires) })
		delete(s.byID, oldest.id)
	}
	if len(s.byID) >= s.max {
		return false
	}
	if cs.guest {
		guests := 0
		for _, o := range s.byID {
			if o.guest {
				guests++
			}
		}
		if guests >= s.max/2 {
			return false
		}
	}
	cs.expires = now.Add(s.ttl)
	s.byID[cs.id] = cs
	return true
}

// Why a session cannot be continued: XEP-0050's specific conditions.
const (
	condBadSession  = "bad-sessionid"
	condExpired     = "session-expired"
	condBadAction   = "bad-action"
	condMalformedAc = "malformed-action"
)

// take marks the session id of owner busy for one stage and returns it,
// or the XEP-0050 condition why it cannot be used.
func (s *cmdSessions) take(id, owner, node string) (*cmdSession, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.byID[id]
	switch {
	case cs == nil:
		return nil, condBadSession
	case cs.owner != owner || cs.node != node:
		return nil, condBadSession
	case cs.busy:
		return nil, condBadSession
	case s.now().After(cs.expires):
		delete(s.byID, id)
		return nil, condExpired
	}
	cs.busy = true
	return cs, ""
}

// release ends a stage: the session waits for the next one, or (done)
// is forgotten.
func (s *cmdSessions) release(cs *cmdSession, done bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs.busy = false
	if done {
		delete(s.byID, cs.id)
		return
	}
	cs.expires = s.now().Add(s.ttl)
}

// remove forgets a session (cancel).
func (s *cmdSessions) remove(id, owner string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.byID[id]
	if cs == nil || cs.owner != owner {
		return false
	}
	delete(s.byID, id)
	return true
}

// removeAll forgets the sessions of owner that wait for a stage.
func (s *cmdSessions) removeAll(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, cs := range s.byID {
		if cs.owner == owner && !cs.busy {
			delete(s.byID, id)
		}
	}
}

// wireCommand is a <command/> as a requester sends it.
type wireCommand struct {
	Node   string    `xml:"node,attr"`
	Action string    `xml:"action,attr"`
	SID    string    `xml:"sessionid,attr"`
	Form   *wireForm `xml:"jabber:x:data x"`
}

// commander returns the Handler's Commander, if it has one.
func (c *Component) commander() (Commander, bool) {
	cm, ok := c.h.(Commander)
	return cm, ok
}

// commandsAllowed checks that a command IQ goes to the bare component
// domain.
func commandsAllowed(iq stanza.IQ) (stanza.Error, bool) {
	if !isDomain(iq.To) || iq.To.Resourcepart() != "" {
		return newStanzaError(stanza.ServiceUnavailable), false
	}
	return stanza.Error{}, true
}

// commandItems answers disco#items on the command list node: the commands
// the asker may run.
func (l *link) commandItems(iq stanza.IQ, t xmlstream.TokenReadEncoder) error {
	cm, ok := l.c.commander()
	if !ok || !isDomain(iq.To) {
		// A contact (or a component without commands) has none.
		return l.replyResult(t, iq, elem(nsDiscoItems, "query", attrs("node", nsCommands)))
	}
	from, domain := iq.From, l.c.domain.String()
	return l.async(t, iq, "command list", func(ctx context.Context) (xml.TokenReader, error) {
		list, err := cm.Commands(ctx, from)
		if err != nil {
			return nil, err
		}
		items := make([]xml.TokenReader, 0, len(list))
		for _, ci := range list {
			items = append(items, elem("", "item", attrs("jid", domain, "node", ci.Node, "name", ci.Name)))
		}
		return elem(nsDiscoItems, "query", attrs("node", nsCommands), items...), nil
	})
}

// commandInfo answers disco#info on the command list node or on one
// command's node (only for a command the asker may run).
func (l *link) commandInfo(iq stanza.IQ, t xmlstream.TokenReadEncoder, node string) error {
	cm, ok := l.c.commander()
	if !ok || !isDomain(iq.To) {
		return l.replyError(t, iq, newStanzaError(stanza.ItemNotFound))
	}
	if node == nsCommands {
		return l.replyResult(t, iq, elem(nsDiscoInfo, "query", attrs("node", node),
			elem("", "identity", attrs("category", "automation", "type", "command-list", "name", "Commands")),
			elem("", "feature", attrs("var", nsDiscoInfo)),
			elem("", "feature", attrs("var", nsDiscoItems)),
		))
	}
	from := iq.From
	return l.async(t, iq, "command info", func(ctx context.Context) (xml.TokenReader, error) {
		list, err := cm.Commands(ctx, from)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(list, func(ci CommandInfo) bool { return ci.Node == node })
		if i < 0 {
			return nil, Error{Condition: stanza.ItemNotFound}
		}
		return elem(nsDiscoInfo, "query", attrs("node", node),
			elem("", "identity", attrs("category", "automation", "type", "command-node", "name", list[i].Name)),
			elem("", "feature", attrs("var", nsCommands)),
			elem("", "feature", attrs("var", nsData)),
		), nil
	})
}

// commandSet handles a <command/> IQ: execute, next, complete, cancel.
func (l *link) commandSet(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload *xml.StartElement) error {
	var cmd wireCommand
	if err := decodeElem(t, *payload, &cmd); err != nil {
		return err
	}
	cm, ok := l.c.commander()
	if !ok {
		return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
	}
	if se, ok := commandsAllowed(iq); !ok {
		return l.replyError(t, iq, se)
	}
	if cmd.Node == "" {
		return l.replyError(t, iq, Error{Condition: stanza.BadRequest, Text: "the command has no node"}.StanzaError())
	}
	owner := iq.From.String()
	action := cmd.Action
	switch action {
	case "", "execute", "next", "complete", "cancel":
	case "prev":
		return l.replyCommandError(t, iq, stanza.BadRequest, condBadAction, "going back is not supported; cancel and start again")
	default:
		return l.replyCommandError(t, iq, stanza.BadRequest, condMalformedAc, "unknown action")
	}
	if action == "cancel" {
		if cmd.SID == "" || !l.c.cmds.remove(cmd.SID, owner) {
			return l.replyCommandError(t, iq, stanza.BadRequest, condBadSession, "no such session")
		}
		return l.replyResult(t, iq, elem(nsCommands, "command", attrs("node", cmd.Node, "sessionid", cmd.SID, "status", "canceled")))
	}
	if cmd.Form != nil && cmd.Form.Type == "cancel" {
		if cmd.SID != "" {
			l.c.cmds.remove(cmd.SID, owner)
		}
		return l.replyResult(t, iq, elem(nsCommands, "command", attrs("node", cmd.Node, "sessionid", cmd.SID, "status", "canceled")))
	}
	req := CommandRequest{From: iq.From, Node: cmd.Node, Values: formValues(cmd.Form)}
	var cs *cmdSession
	if cmd.SID != "" {
		var cond string
		if cs, cond = l.c.cmds.take(cmd.SID, owner, cmd.Node); cs == nil {
			c := stanza.BadRequest
			if cond == condExpired {
				c = stanza.NotAllowed // XEP-0050 §4.6: session-expired goes with not-allowed
			}
			return l.replyCommandError(t, iq, c, cond, "the command session is unknown or expired; start the command again")
		}
		if (action == "complete" && !cs.last) || (action == "next" && cs.last) {
			l.c.cmds.release(cs, false)
			return l.replyCommandError(t, iq, stanza.BadRequest, condBadAction, "that action is not offered at this stage")
		}
		req.Stage, req.State = cs.stage+1, cs.state
	} else if action == "next" || action == "complete" {
		return l.replyCommandError(t, iq, stanza.BadRequest, condBadSession, "next and complete need a session id")
	}
	refused := func() {
		if cs != nil {
			l.c.cmds.release(cs, false)
		}
	}
	return l.asyncOr(t, iq, "command "+cmd.Node, refused, func(ctx context.Context) (xml.TokenReader, error) {
		step, err := cm.ExecuteCommand(ctx, req)
		if err != nil {
			if cs != nil {
				l.c.cmds.release(cs, true)
			}
			return nil, err
		}
		sid := cmd.SID
		if step.Form != nil {
			if cs == nil {
				cs = &cmdSession{id: randomID(), owner: owner, bare: iq.From.Bare().String(), node: cmd.Node, busy: true, guest: step.Guest}
				if !l.c.cmds.open(cs) {
					return nil, Error{Condition: stanza.ResourceConstraint, Text: "too many command sessions open; try again later"}
				}
				sid = cs.id
			}
			cs.stage, cs.state, cs.last = req.Stage, step.State, step.Last
			l.c.cmds.release(cs, false)
		} else if cs != nil {
			l.c.cmds.release(cs, true)
		}
		return commandResponse(cmd.Node, sid, step), nil
	})
}

// nsMUCOwner is XEP-0045's owner namespace: Profanity's /form cancel sends
// a muc#owner query with a cancelled form, whatever the form was for.
const nsMUCOwner = "http://jabber.org/protocol/muc#owner"

// mucOwnerSet answers Profanity's cancel of a command form (a muc#owner
// query holding a form of type cancel, sent to the component's domain):
// the requester's command sessions are forgotten. Anything else in that
// namespace is not served here.
func (l *link) mucOwnerSet(iq stanza.IQ, t xmlstream.TokenReadEncoder, payload *xml.StartElement) error {
	var q struct {
		Form *wireForm `xml:"jabber:x:data x"`
	}
	if err := decodeElem(t, *payload, &q); err != nil {
		return err
	}
	if _, ok := l.c.commander(); !ok || !isDomain(iq.To) || q.Form == nil || q.Form.Type != "cancel" {
		return l.replyError(t, iq, newStanzaError(stanza.ServiceUnavailable))
	}
	l.c.cmds.removeAll(iq.From.String())
	return l.replyResult(t, iq, nil)
}

// commandResponse writes the <command/> of a result.
func commandResponse(node, sid string, step CommandStep) xml.TokenReader {
	status := "completed"
	var children []xml.TokenReader
	if step.Form != nil {
		status = "executing"
		a := commands.Next | commands.Next<<3
		if step.Last {
			a = commands.Complete | commands.Complete<<3
		}
		children = append(children, a.TokenReader())
	}
	for _, n := range step.Notes {
		typ := commands.NoteInfo
		switch n.Type {
		case NoteWarn:
			typ = commands.NoteWarn
		case NoteError:
			typ = commands.NoteError
		}
		children = append(children, commands.Note{Type: typ, Value: n.Text}.TokenReader())
	}
	if step.Form != nil {
		f := *step.Form
		f.Type = "form"
		children = append(children, f.tokenReader())
	} else if step.Result != nil {
		f := *step.Result
		f.Type = "result"
		children = append(children, f.tokenReader())
	}
	return elem(nsCommands, "command", attrs("node", node, "sessionid", sid, "status", status), children...)
}

// replyCommandError answers iq with a stanza error carrying a XEP-0050
// specific condition.
func (l *link) replyCommandError(w xmlstream.TokenWriter, iq stanza.IQ, c stanza.Condition, specific, text string) error {
	se := Error{Condition: c, Text: text}.StanzaError()
	eiq := iq
	eiq.Type = stanza.ErrorIQ
	eiq.From, eiq.To = iq.To, iq.From
	return l.reply(w, iq, eiq.Wrap(se.Wrap(elem(nsCommands, specific, nil))))
}

// formValues returns the fields of a submitted form by var, FORM_TYPE left
// out; nil for no form.
func formValues(f *wireForm) map[string][]string {
	if f == nil || (f.Type != "submit" && f.Type != "") {
		return nil
	}
	out := make(map[string][]string, len(f.Fields))
	for i, fl := range f.Fields {
		if i == maxFormFields {
			break
		}
		if fl.Var == "" || fl.Var == "FORM_TYPE" {
			continue
		}
		v := fl.Values
		if len(v) > maxFormValues {
			v = v[:maxFormValues]
		}
		out[fl.Var] = v
	}
	return out
}

// tokenReader writes the form as a jabber:x:data element.
func (f Form) tokenReader() xml.TokenReader {
	var children []xml.TokenReader
	if f.Title != "" {
		children = append(children, textElem("", "title", f.Title))
	}
	if f.Instructions != "" {
		children = append(children, textElem("", "instructions", f.Instructions))
	}
	if f.FormType != "" {
		children = append(children, elem("", "field", attrs("type", "hidden", "var", "FORM_TYPE"),
			textElem("", "value", f.FormType)))
	}
	for _, fl := range f.Fields {
		children = append(children, fl.tokenReader())
	}
	return elem(nsData, "x", attrs("type", f.Type), children...)
}

func (fl FormField) tokenReader() xml.TokenReader {
	var children []xml.TokenReader
	if fl.Desc != "" {
		children = append(children, textElem("", "desc", fl.Desc))
	}
	if fl.Required {
		children = append(children, textElem("", "required", ""))
	}
	for _, v := range fl.Values {
		children = append(children, textElem("", "value", v))
	}
	for _, o := range fl.Options {
		children = append(children, elem("", "option", attrs("label", o.Label), textElem("", "value", o.Value)))
	}
	return elem("", "field", attrs("type", fl.Type, "var", fl.Var, "label", fl.Label), children...)
}
