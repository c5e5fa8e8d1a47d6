package gateway

// The gateway's XEP-0050 ad-hoc commands (xmppside.Commander): the users'
// commands (register, unregister, password, settings, reconnect, sync,
// status) and the administrators' (XEP-0133 style). xmppside speaks the
// protocol and the data forms; this file decides who may run what and
// does it. A command that acts on a user goes through that user's run
// loop as an evCommand, or through the registration requests
// (Register/Unregister), never touching a user's state from here.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// Command nodes. The administrators' use XEP-0133's names where one fits.
const (
	NodeRegister   = "register"
	NodeUnregister = "unregister"
	NodePassword   = "password"
	NodeSettings   = "settings"
	NodeReconnect  = "reconnect"
	NodeSync       = "sync"
	NodeStatus     = "status"

	nsAdmin              = "http://jabber.org/protocol/admin"
	NodeOnlineUsersNum   = nsAdmin + "#get-online-users-num"
	NodeOnlineUsersList  = nsAdmin + "#get-online-users-list"
	NodeRegisteredNum    = nsAdmin + "#get-registered-users-num"
	NodeUserLastLogin    = nsAdmin + "#get-user-lastlogin"
	NodeEndUserSession   = nsAdmin + "#end-user-session"
	NodeDeleteUser       = nsAdmin + "#delete-user"
	NodeAnnounce         = nsAdmin + "#announce"
	NodeUserRegistration = "admin#user-registration"
	NodeStatistics       = "admin#statistics"
)

// Limits of the administrators' commands.
const (
	// MaxCommandJIDs bounds the JIDs one end-user-session or delete-user
	// acts on; the rest are refused with a note.
	MaxCommandJIDs = 100
	// MaxListedUsers bounds the JIDs get-online-users-list shows (the
	// answer must fit in one stanza); the count says how many more.
	MaxListedUsers = 1000
	// MaxAnnounceLen bounds an announcement's text, in bytes.
	MaxAnnounceLen = 4000
)

// command is one ad-hoc command.
type command struct {
	node, name string
	admin      bool
	// who may see and run it among non-admins: needReg (registered users
	// only), or every user when false.
	needReg bool
	run     func(g *Gateway, ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error)
}

// commandList is every command, in the order they are listed.
var commandList = []command{
	{node: NodeRegister, name: "Register with IMIP", run: (*Gateway).cmdRegister},
	{node: NodeStatus, name: "IMIP status", needReg: true, run: (*Gateway).cmdStatus},
	{node: NodeReconnect, name: "Reconnect to IMIP now", needReg: true, run: (*Gateway).cmdReconnect},
	{node: NodeSync, name: "Sync contacts now", needReg: true, run: (*Gateway).cmdSync},
	{node: NodeSettings, name: "Settings", needReg: true, run: (*Gateway).cmdSettings},
	{node: NodePassword, name: "Change the IMIP password", needReg: true, run: (*Gateway).cmdPassword},
	{node: NodeUnregister, name: "Unregister from IMIP", needReg: true, run: (*Gateway).cmdUnregister},
	{node: NodeOnlineUsersNum, name: "Number of online users (admin)", admin: true, run: (*Gateway).cmdOnlineNum},
	{node: NodeOnlineUsersList, name: "Online users (admin)", admin: true, run: (*Gateway).cmdOnlineList},
	{node: NodeRegisteredNum, name: "Number of registered users (admin)", admin: true, run: (*Gateway).cmdRegisteredNum},
	{node: NodeUserRegistration, name: "A user's registration (admin)", admin: true, run: (*Gateway).cmdUserRegistration},
	{node: NodeUserLastLogin, name: "A user's last IMIP login (admin)", admin: true, run: (*Gateway).cmdUserLastLogin},
	{node: NodeEndUserSession, name: "Log a user out of IMIP (admin)", admin: true, run: (*Gateway).cmdEndSession},
	{node: NodeDeleteUser, name: "Delete a registration (admin)", admin: true, run: (*Gateway).cmdDeleteUser},
	{node: NodeAnnounce, name: "Announce to online users (admin)", admin: true, run: (*Gateway).cmdAnnounce},
	{node: NodeStatistics, name: "Gateway statistics (admin)", admin: true, run: (*Gateway).cmdStatistics},
}

var _ xmppside.Commander = (*Gateway)(nil)

// IsAdmin reports whether who's bare JID is one of Config.Admins.
func (g *Gateway) IsAdmin(who jid.JID) bool {
	b := who.Bare()
	return who.Localpart() != "" && slices.ContainsFunc(g.cfg.Admins, func(a jid.JID) bool { return a.Bare().Equal(b) })
}

// Commands implements xmppside.Commander: an unregistered user sees
// register; a registered one the user commands; an administrator the
// administrators' too.
func (g *Gateway) Commands(_ context.Context, from jid.JID) ([]xmppside.CommandInfo, error) {
	admin, reg := g.IsAdmin(from), g.isRegistered(from.Bare().String())
	var out []xmppside.CommandInfo
	for _, c := range commandList {
		if (c.admin && !admin) || (c.needReg && !reg) {
			continue
		}
		if from.Localpart() == "" && !c.admin {
			continue // a server or component: no account to act on
		}
		out = append(out, xmppside.CommandInfo{Node: c.node, Name: c.name})
	}
	return out, nil
}

// ExecuteCommand implements xmppside.Commander.
func (g *Gateway) ExecuteCommand(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	i := slices.IndexFunc(commandList, func(c command) bool { return c.node == req.Node })
	if i < 0 {
		return xmppside.CommandStep{}, &xmppside.Error{Condition: stanza.ItemNotFound, Text: "No such command."}
	}
	c := commandList[i]
	switch {
	case c.admin && !g.IsAdmin(req.From):
		return xmppside.CommandStep{}, &xmppside.Error{Condition: stanza.Forbidden, Text: "Only the gateway's administrators may run this command."}
	case !c.admin && req.From.Localpart() == "":
		return xmppside.CommandStep{}, &xmppside.Error{Condition: stanza.NotAllowed, Text: "Only user accounts can run this command."}
	case c.needReg && !g.isRegistered(req.From.Bare().String()):
		return xmppside.CommandStep{}, &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "You are not registered."}
	}
	return c.run(g, ctx, req)
}

// done completes a command with one note.
func done(typ, text string) (xmppside.CommandStep, error) {
	return xmppside.CommandStep{Notes: []xmppside.CommandNote{{Type: typ, Text: text}}}, nil
}

// failed completes a command with the text of err as an error note when
// err is meant for the requester (an xmppside.Error); other errors end the
// command with an IQ error (internal-server-error, or the timeout).
func failed(err error) (xmppside.CommandStep, error) {
	var xe *xmppside.Error
	if errors.As(err, &xe) && xe != nil {
		text := xe.Text
		if text == "" {
			text = string(xe.Condition)
		}
		return done(xmppside.NoteError, text)
	}
	return xmppside.CommandStep{}, err
}

// ----------------------------------------------------------------- users

func (g *Gateway) cmdRegister(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		number, registered, err := g.Registration(ctx, req.From)
		if err != nil {
			return xmppside.CommandStep{}, err
		}
		opts, err := g.RegisterOptions(ctx, req.From)
		if err != nil {
			return xmppside.CommandStep{}, err
		}
		instr := "Enter your IMIP number and password. The gateway logs in to IMIP to check them."
		if registered {
			instr = "You are registered as IMIP number " + number + ". Enter a number and password to replace it."
		}
		f := &xmppside.Form{
			Title: "IMIP registration", Instructions: instr,
			Fields: []xmppside.FormField{
				{Var: "username", Type: "text-single", Label: "IMIP number", Required: true, Values: nonEmpty(number)},
				{Var: "password", Type: "text-private", Label: "Password", Required: true},
			},
		}
		f.Fields = append(f.Fields, optionFields(opts)...)
		return xmppside.CommandStep{Form: f, Last: true, Guest: !registered}, nil
	}
	number, password := strings.TrimSpace(req.Value("username")), req.Value("password")
	if number == "" || password == "" {
		return done(xmppside.NoteError, "The IMIP number and the password are required.")
	}
	options := map[string]bool{}
	if b, ok := req.Bool(OptionAllowRemove); ok {
		options[OptionAllowRemove] = b
	}
	if err := g.RegisterWithOptions(ctx, req.From, number, password, options); err != nil {
		return failed(err)
	}
	return done(xmppside.NoteInfo, "Registered as IMIP number "+number+". Accept the gateway's subscription request so that it sees when you are online; your IMIP contacts then appear in your roster.")
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// optionFields turns registration options into boolean fields.
func optionFields(opts []xmppside.RegisterOption) []xmppside.FormField {
	out := make([]xmppside.FormField, 0, len(opts))
	for _, o := range opts {
		v := "0"
		if o.Value {
			v = "1"
		}
		out = append(out, xmppside.FormField{Var: o.Var, Type: "boolean", Label: o.Label, Values: []string{v}})
	}
	return out
}

func (g *Gateway) cmdUnregister(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		return xmppside.CommandStep{Last: true, Form: &xmppside.Form{
			Title:        "Unregister from IMIP",
			Instructions: "Your IMIP contacts leave your roster and the gateway forgets your number, password and queued messages.",
			Fields: []xmppside.FormField{
				{Var: "confirm", Type: "boolean", Label: "Yes, unregister", Required: true, Values: []string{"0"}},
			},
		}}, nil
	}
	if ok, _ := req.Bool("confirm"); !ok {
		return done(xmppside.NoteInfo, "Not confirmed: nothing changed.")
	}
	if err := g.Unregister(ctx, req.From); err != nil {
		return failed(err)
	}
	return done(xmppside.NoteInfo, "Unregistered. Your IMIP contacts left your roster.")
}

func (g *Gateway) cmdPassword(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		return xmppside.CommandStep{Last: true, Form: &xmppside.Form{
			Title:        "Change the IMIP password",
			Instructions: "Enter the password your IMIP account has now (change it on the IMIP side first). The gateway logs in to check it before storing it.",
			Fields: []xmppside.FormField{
				{Var: "password", Type: "text-private", Label: "IMIP password", Required: true},
			},
		}}, nil
	}
	password := req.Value("password")
	if password == "" {
		return done(xmppside.NoteError, "The password must not be empty.")
	}
	number, registered, err := g.Registration(ctx, req.From)
	if err != nil {
		return xmppside.CommandStep{}, err
	}
	if !registered {
		return done(xmppside.NoteError, "You are not registered.")
	}
	if err := g.register(ctx, req.From, number, password, nil); err != nil {
		return failed(err)
	}
	return done(xmppside.NoteInfo, "The new password works and is stored.")
}

// fieldGroup is the settings form's field of the user's roster group.
const fieldGroup = "roster_group"

func (g *Gateway) cmdSettings(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		opts, err := g.RegisterOptions(ctx, req.From)
		if err != nil {
			return xmppside.CommandStep{}, err
		}
		reg, err := g.cfg.Store.Registration(ctx, req.From.Bare().String())
		if err != nil && !errors.Is(err, ErrNotFound) {
			return xmppside.CommandStep{}, err
		}
		groupText := fmt.Sprintf("Empty: the gateway's group, %q.", g.cfg.RosterGroup)
		if ra, ok := g.xmpp.(RosterAccess); ok {
			if pr := ra.PrivilegesFor(req.From.Bare()); pr.CanGetRoster() && pr.CanSetRoster() {
				// keepUsersChoices: the gateway's roster sets keep the user's groups.
				groupText += " Contacts you moved to other groups in your client stay there."
			}
		}
		fields := append(optionFields(opts),
			xmppside.FormField{Var: fieldGroup, Type: "text-single", Label: "Roster group of new IMIP contacts", Values: []string{reg.Group}},
			xmppside.FormField{Type: "fixed", Values: []string{groupText}})
		if len(opts) == 0 {
			fields = append(fields, xmppside.FormField{Type: "fixed",
				Values: []string{"Removing a contact from your roster removes it from your IMIP list (the administrator allowed it for everyone)."}})
		}
		return xmppside.CommandStep{Last: true, Form: &xmppside.Form{Title: "IMIP settings", Fields: fields}}, nil
	}
	ev := evCommand{op: opSettings}
	if allow, ok := req.Bool(OptionAllowRemove); ok && !g.cfg.AllowRemove {
		ev.allowRemove = &allow
	}
	if v, ok := req.Values[fieldGroup]; ok {
		group := ""
		if len(v) > 0 {
			group = strings.TrimSpace(v[0])
		}
		if len(group) > MaxGroupLen || !utf8.ValidString(group) || strings.ContainsFunc(group, unicode.IsControl) {
			return done(xmppside.NoteError, fmt.Sprintf("The roster group must be at most %d bytes of text, without control characters.", MaxGroupLen))
		}
		ev.group = &group
	}
	if ev.allowRemove == nil && ev.group == nil {
		return done(xmppside.NoteInfo, "Nothing to change.")
	}
	r, err := g.askUser(ctx, req.From, ev)
	if err != nil {
		return failed(err)
	}
	return done(xmppside.NoteInfo, r.note)
}

func (g *Gateway) cmdReconnect(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	r, err := g.askUser(ctx, req.From, evCommand{op: opReconnect})
	if err != nil {
		return failed(err)
	}
	return done(r.noteType, r.note)
}

func (g *Gateway) cmdSync(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	r, err := g.askUser(ctx, req.From, evCommand{op: opSync})
	if err != nil {
		return failed(err)
	}
	return done(r.noteType, r.note)
}

func (g *Gateway) cmdStatus(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	r, err := g.askUser(ctx, req.From, evCommand{op: opStatus})
	if err != nil {
		return failed(err)
	}
	return xmppside.CommandStep{
		Notes:  []xmppside.CommandNote{{Type: xmppside.NoteInfo, Text: r.st.text()}},
		Result: r.st.form("IMIP status"),
	}, nil
}

// ---------------------------------------------------------------- admins

func (g *Gateway) cmdOnlineNum(_ context.Context, _ xmppside.CommandRequest) (xmppside.CommandStep, error) {
	n := len(g.onlineUsers())
	return xmppside.CommandStep{Result: &xmppside.Form{FormType: nsAdmin, Title: "Online users", Fields: []xmppside.FormField{
		{Var: "onlineusersnum", Type: "text-single", Label: "Users logged in to IMIP", Values: []string{strconv.Itoa(n)}},
	}}}, nil
}

func (g *Gateway) cmdRegisteredNum(_ context.Context, _ xmppside.CommandRequest) (xmppside.CommandStep, error) {
	g.mu.Lock()
	n := len(g.registered)
	g.mu.Unlock()
	return xmppside.CommandStep{Result: &xmppside.Form{FormType: nsAdmin, Title: "Registered users", Fields: []xmppside.FormField{
		{Var: "registeredusersnum", Type: "text-single", Label: "Registered users", Values: []string{strconv.Itoa(n)}},
	}}}, nil
}

func (g *Gateway) cmdOnlineList(_ context.Context, _ xmppside.CommandRequest) (xmppside.CommandStep, error) {
	users := g.onlineUsers()
	var notes []xmppside.CommandNote
	if len(users) > MaxListedUsers {
		notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteWarn,
			Text: fmt.Sprintf("%d users are online; the first %d (by JID) are listed.", len(users), MaxListedUsers)})
		users = users[:MaxListedUsers]
	}
	return xmppside.CommandStep{Notes: notes, Result: &xmppside.Form{FormType: nsAdmin, Title: "Online users", Fields: []xmppside.FormField{
		{Var: "onlineuserjids", Type: "jid-multi", Label: "Users logged in to IMIP", Values: users},
	}}}, nil
}

// accountsForm asks for the accounts an administrator's command acts on.
func accountsForm(title, instr string, last bool) xmppside.CommandStep {
	return xmppside.CommandStep{Last: last, Form: &xmppside.Form{FormType: nsAdmin, Title: title, Instructions: instr,
		Fields: []xmppside.FormField{{Var: "accountjids", Type: "jid-multi", Label: "The users' Jabber IDs", Required: true}}}}
}

// accounts parses the submitted accountjids (or accountjid): bare JIDs,
// at most MaxCommandJIDs, without repeats; bad ones come back as notes.
// maxBadJIDNotes bounds the notes that quote malformed JIDs in one answer.
const maxBadJIDNotes = 5

func accounts(req xmppside.CommandRequest) (out []jid.JID, notes []xmppside.CommandNote) {
	vals := append(slices.Clone(req.Values["accountjids"]), req.Values["accountjid"]...)
	seen := map[string]bool{}
	bad := 0
	defer func() {
		if bad > maxBadJIDNotes {
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: fmt.Sprintf("And %d more that are not Jabber IDs.", bad-maxBadJIDNotes)})
		}
	}()
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		j, err := jid.Parse(v)
		if err != nil || j.Localpart() == "" {
			bad++
			if bad <= maxBadJIDNotes {
				notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: fmt.Sprintf("%q is not a user's Jabber ID.", truncateUTF8(v, 80))})
			}
			continue
		}
		j = j.Bare()
		if seen[j.String()] {
			continue
		}
		seen[j.String()] = true
		if len(out) == MaxCommandJIDs {
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: fmt.Sprintf("At most %d users at once; %s and the rest were left alone.", MaxCommandJIDs, v)})
			break
		}
		out = append(out, j)
	}
	return out, notes
}

func (g *Gateway) cmdUserRegistration(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		return xmppside.CommandStep{Last: true, Form: &xmppside.Form{FormType: nsAdmin, Title: "A user's registration",
			Fields: []xmppside.FormField{{Var: "accountjid", Type: "jid-single", Label: "The user's Jabber ID", Required: true}}}}, nil
	}
	js, notes := accounts(req)
	if len(js) == 0 {
		if len(notes) == 0 {
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: "No Jabber ID given."})
		}
		return xmppside.CommandStep{Notes: oneNote(notes)}, nil
	}
	st, err := g.userStatusOf(ctx, js[0])
	if err != nil {
		return failed(err)
	}
	return xmppside.CommandStep{Result: st.form("Registration of " + js[0].String())}, nil
}

// cmdUserLastLogin is XEP-0133's get-user-lastlogin: the last IMIP login.
func (g *Gateway) cmdUserLastLogin(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		return xmppside.CommandStep{Last: true, Form: &xmppside.Form{FormType: nsAdmin, Title: "A user's last IMIP login",
			Fields: []xmppside.FormField{{Var: "accountjid", Type: "jid-single", Label: "The user's Jabber ID", Required: true}}}}, nil
	}
	js, notes := accounts(req)
	if len(js) == 0 {
		if len(notes) == 0 {
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: "No Jabber ID given."})
		}
		return xmppside.CommandStep{Notes: oneNote(notes)}, nil
	}
	st, err := g.userStatusOf(ctx, js[0])
	if err != nil {
		return failed(err)
	}
	last := "never"
	if !st.LastLogin.IsZero() {
		last = st.LastLogin.UTC().Format(time.RFC3339)
	}
	return xmppside.CommandStep{Result: &xmppside.Form{FormType: nsAdmin, Title: "Last IMIP login of " + st.JID, Fields: []xmppside.FormField{
		{Var: "accountjid", Type: "jid-single", Label: "The user's Jabber ID", Values: []string{st.JID}},
		{Var: "lastlogin", Type: "text-single", Label: "Last IMIP login", Values: []string{last}},
	}}}, nil
}

// userStatusOf returns what an administrator sees of who's registration.
func (g *Gateway) userStatusOf(ctx context.Context, who jid.JID) (userStatus, error) {
	reg, err := g.cfg.Store.Registration(ctx, who.String())
	if errors.Is(err, ErrNotFound) {
		return userStatus{}, &xmppside.Error{Condition: stanza.ItemNotFound, Text: who.String() + " is not registered."}
	}
	if err != nil {
		return userStatus{}, fmt.Errorf("gateway: %w", err)
	}
	st := userStatus{JID: who.String(), Number: reg.Number, Created: reg.Created, LastLogin: reg.LastLogin, State: linkOffline.String()}
	if r, err := g.askUser(ctx, who, evCommand{op: opStatus}); err == nil {
		r.st.JID, r.st.Created, r.st.LastLogin = st.JID, reg.Created, reg.LastLogin
		st = r.st
	}
	return st, nil
}

func (g *Gateway) cmdEndSession(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		return accountsForm("Log users out of IMIP", "Their IMIP sessions end; each logs in again when all their resources went offline and came back, or with the reconnect command.", true), nil
	}
	js, notes := accounts(req)
	for _, j := range js {
		r, err := g.askUser(ctx, j, evCommand{op: opKick})
		switch {
		case err != nil:
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: j.String() + ": " + errText(err)})
		default:
			notes = append(notes, xmppside.CommandNote{Type: r.noteType, Text: j.String() + ": " + r.note})
		}
	}
	return xmppside.CommandStep{Notes: oneNote(notes)}, nil
}

func (g *Gateway) cmdDeleteUser(ctx context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	switch {
	case req.Values == nil:
		return accountsForm("Delete registrations", "Each registration is deleted as if its user unregistered: IMIP session, roster items, stored contacts and queued messages.", false), nil
	case req.State == nil: // the accounts came (at whatever stage); the confirmation comes next
		js, notes := accounts(req)
		var found []string
		fields := []xmppside.FormField{}
		for _, j := range js {
			st, err := g.userStatusOf(ctx, j)
			if err != nil {
				notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: j.String() + ": " + errText(err)})
				continue
			}
			found = append(found, j.String())
			fields = append(fields, xmppside.FormField{Type: "fixed", Values: []string{fmt.Sprintf("%s: IMIP number %s, %s", j, st.Number, st.State)}})
		}
		if len(found) == 0 {
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: "No registration to delete."})
			return xmppside.CommandStep{Notes: oneNote(notes)}, nil
		}
		fields = append(fields, xmppside.FormField{Var: "confirm", Type: "boolean", Label: "Yes, delete these registrations", Required: true, Values: []string{"0"}})
		return xmppside.CommandStep{Last: true, Notes: oneNote(notes), State: found,
			Form: &xmppside.Form{FormType: nsAdmin, Title: "Delete registrations", Fields: fields}}, nil
	}
	found, _ := req.State.([]string)
	if ok, _ := req.Bool("confirm"); !ok || len(found) == 0 {
		return done(xmppside.NoteInfo, "Not confirmed: nothing deleted.")
	}
	var notes []xmppside.CommandNote
	for _, s := range found {
		j, err := jid.Parse(s)
		if err == nil {
			err = g.Unregister(ctx, j)
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			// Posted to the user's run loop, behind a registration still
			// being checked: it is carried out when that ends.
			g.log.Info("registration deletion queued by an administrator", "user", s, "admin", req.From.Bare().String())
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteWarn,
				Text: s + ": queued behind a registration being checked; it is deleted once that check ends."})
			continue
		}
		if err != nil {
			notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteError, Text: s + ": " + errText(err)})
			continue
		}
		g.log.Info("registration deleted by an administrator", "user", s, "admin", req.From.Bare().String())
		notes = append(notes, xmppside.CommandNote{Type: xmppside.NoteInfo, Text: s + ": deleted."})
	}
	return xmppside.CommandStep{Notes: oneNote(notes)}, nil
}

func (g *Gateway) cmdAnnounce(_ context.Context, req xmppside.CommandRequest) (xmppside.CommandStep, error) {
	if req.Values == nil {
		return xmppside.CommandStep{Last: true, Form: &xmppside.Form{FormType: nsAdmin, Title: "Announce to online users",
			Instructions: "A message from the gateway to every user logged in to IMIP now.",
			Fields: []xmppside.FormField{
				{Var: "subject", Type: "text-single", Label: "Subject"},
				{Var: "announcement", Type: "text-multi", Label: "Message", Required: true},
			}}}, nil
	}
	body := strings.Join(req.Values["announcement"], "\n")
	if strings.TrimSpace(body) == "" {
		return done(xmppside.NoteError, "The message is empty.")
	}
	if len(body) > MaxAnnounceLen {
		return done(xmppside.NoteError, fmt.Sprintf("The message is longer than %d bytes.", MaxAnnounceLen))
	}
	subject := truncateUTF8(req.Value("subject"), 200)
	users := g.onlineUsers()
	// The announcement must not crowd out the users' own traffic: it goes
	// only while it fits in half of the outbox with what waits there.
	g.out.mu.Lock()
	queued := len(g.out.q)
	g.out.mu.Unlock()
	if queued+len(users) > g.cfg.OutboxSize/2 {
		return done(xmppside.NoteError, fmt.Sprintf("Not sent: %d users online and %d stanzas waiting for the XMPP server leave too little room in the gateway's outbox (%d); try again when it has drained.",
			len(users), queued, g.cfg.OutboxSize))
	}
	for _, u := range users {
		to, err := jid.Parse(u)
		if err != nil {
			continue
		}
		g.sendMessage(xmppside.Message{From: g.cfg.Domain, To: to, Type: "normal", Subject: subject, Body: body})
	}
	g.log.Info("announcement sent", "admin", req.From.Bare().String(), "users", len(users))
	return done(xmppside.NoteInfo, fmt.Sprintf("Sent to %d online users.", len(users)))
}

func (g *Gateway) cmdStatistics(_ context.Context, _ xmppside.CommandRequest) (xmppside.CommandStep, error) {
	s := g.Stats()
	f := &xmppside.Form{FormType: nsAdmin, Title: "Gateway statistics"}
	add := func(v, label, val string) {
		f.Fields = append(f.Fields, xmppside.FormField{Var: v, Type: "text-single", Label: label, Values: []string{val}})
	}
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	add("uptime", "Uptime", s.Uptime.Truncate(time.Second).String())
	add("registered", "Registered users", strconv.Itoa(s.Registered))
	add("online", "Users logged in to IMIP", strconv.FormatInt(s.Sessions[linkOnline.String()]+s.Sessions[linkGrace.String()], 10))
	states := make([]string, 0, len(s.Sessions))
	for st, n := range s.Sessions {
		states = append(states, fmt.Sprintf("%s %d", st, n))
	}
	slices.Sort(states)
	add("sessions", "Sessions by state", strings.Join(states, ", "))
	add("messages_to_imip", "Messages to IMIP", u(s.MessagesToIMIP))
	add("messages_to_xmpp", "Messages to XMPP", u(s.MessagesToXMPP))
	add("bounces", "Messages bounced", u(s.Bounces))
	add("stanzas_in", "Stanzas in", u(s.StanzasIn))
	add("stanzas_out", "Stanzas out", u(s.StanzasOut))
	add("logins", "IMIP logins", u(s.Logins))
	fails := make([]string, 0, len(s.LoginFailures))
	for r, n := range s.LoginFailures {
		fails = append(fails, fmt.Sprintf("%s %d", r, n))
	}
	slices.Sort(fails)
	add("login_failures", "IMIP login failures", strings.Join(fails, ", "))
	codes := make([]wire.Code, 0, len(s.IMIPErrors))
	for c := range s.IMIPErrors {
		codes = append(codes, c)
	}
	slices.SortFunc(codes, func(a, b wire.Code) int { return cmp.Compare(a, b) })
	errs := make([]string, 0, len(codes))
	for _, c := range codes {
		errs = append(errs, fmt.Sprintf("%d: %d", c, s.IMIPErrors[c]))
	}
	if len(errs) == 0 {
		errs = append(errs, "none")
	}
	add("imip_errors", "IMIP errors by code", strings.Join(errs, ", "))
	add("imip_sessions_lost", "IMIP sessions lost", u(s.IMIPSessionsLost))
	add("imip_reconnects", "IMIP reconnects", u(s.IMIPReconnects))
	add("component_connects", "Component connections", u(s.ComponentConnects))
	return xmppside.CommandStep{Result: f}, nil
}

// oneNote folds notes into one, of the gravest type, one line each:
// some clients (Profanity) show only the first note of an answer.
func oneNote(notes []xmppside.CommandNote) []xmppside.CommandNote {
	if len(notes) < 2 {
		return notes
	}
	rank := map[string]int{xmppside.NoteInfo: 0, xmppside.NoteWarn: 1, xmppside.NoteError: 2}
	out := xmppside.CommandNote{Type: xmppside.NoteInfo}
	lines := make([]string, 0, len(notes))
	for _, n := range notes {
		if rank[n.Type] > rank[out.Type] {
			out.Type = n.Type
		}
		lines = append(lines, n.Text)
	}
	out.Text = strings.Join(lines, "\n")
	return []xmppside.CommandNote{out}
}

// errText is the text of err for a note: an xmppside.Error's own text,
// else a generic one (internal errors are logged, not shown).
func errText(err error) string {
	var xe *xmppside.Error
	if errors.As(err, &xe) && xe != nil && xe.Text != "" {
		return xe.Text
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time."
	}
	return "failed (see the gateway's log)."
}

// ------------------------------------------------------ the user's side

// cmdOp is what an evCommand asks of a user's run loop.
type cmdOp uint8

const (
	opStatus    cmdOp = iota + 1 // report the user's status
	opReconnect                  // end the IMIP session (or the wait) and log in now
	opSync                       // push the contact list to the roster again
	opKick                       // an administrator ends the IMIP session
	opSettings                   // store the allow-remove choice
)

// evCommand asks a user's run loop to carry out a command.
type evCommand struct {
	op cmdOp
	// opSettings: the new values, nil when unchanged.
	allowRemove *bool
	group       *string
	reply       chan cmdReply
}

func (evCommand) isEvent() {}

// cmdReply is a run loop's answer to an evCommand.
type cmdReply struct {
	st       userStatus
	noteType string
	note     string
	err      error
}

// userStatus is what the status commands show of one user (never the
// password).
type userStatus struct {
	JID            string
	Number         wire.Number
	State          string // the link state
	Why            string // what the state means for the user
	Since          time.Time
	ContactsOnline int
	Contacts       int
	ToIMIP, ToXMPP int // messages waiting
	Created        time.Time
	LastLogin      time.Time
}

func (s userStatus) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "IMIP number %s: %s", s.Number, s.Why)
	if !s.Since.IsZero() {
		fmt.Fprintf(&b, " since %s", s.Since.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, ".\nContacts online: %d of %d.\nMessages waiting: %d for IMIP, %d for you.", s.ContactsOnline, s.Contacts, s.ToIMIP, s.ToXMPP)
	return b.String()
}

func (s userStatus) form(title string) *xmppside.Form {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	}
	f := &xmppside.Form{Title: title}
	add := func(v, label, val string) {
		f.Fields = append(f.Fields, xmppside.FormField{Var: v, Type: "text-single", Label: label, Values: []string{val}})
	}
	if s.JID != "" {
		add("accountjid", "Jabber ID", s.JID)
	}
	add("number", "IMIP number", string(s.Number))
	add("state", "State", s.State)
	add("why", "Meaning", s.Why)
	if !s.Since.IsZero() {
		add("since", "Logged in since", ts(s.Since))
	}
	add("contacts_online", "Contacts online", strconv.Itoa(s.ContactsOnline))
	add("contacts", "Contacts", strconv.Itoa(s.Contacts))
	add("waiting_to_imip", "Messages waiting for IMIP", strconv.Itoa(s.ToIMIP))
	add("waiting_to_xmpp", "Messages waiting for the user", strconv.Itoa(s.ToXMPP))
	if !s.Created.IsZero() {
		add("registered", "Registered", ts(s.Created))
	}
	if s.JID != "" {
		add("lastlogin", "Last IMIP login", ts(s.LastLogin))
	}
	return f
}

// askUser posts ev to who's run loop and waits for its answer.
func (g *Gateway) askUser(ctx context.Context, who jid.JID, ev evCommand) (cmdReply, error) {
	u := g.userFor(who.Bare(), false)
	if u == nil && g.isClosing() {
		return cmdReply{}, errShuttingDown
	}
	if u == nil {
		return cmdReply{}, &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "Not registered."}
	}
	ev.reply = make(chan cmdReply, 1)
	if !u.post(ev) {
		if nu := g.userFor(who.Bare(), false); nu == nil || nu == u || !nu.post(ev) {
			if g.isClosing() {
				return cmdReply{}, errShuttingDown
			}
			if nu == nil {
				return cmdReply{}, &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "Not registered."}
			}
			return cmdReply{}, &xmppside.Error{Condition: stanza.ResourceConstraint, Text: "Busy; try again shortly."}
		}
	}
	select {
	case r := <-ev.reply:
		return r, r.err
	case <-ctx.Done():
		return cmdReply{}, fmt.Errorf("gateway: %w", ctx.Err())
	}
}

// onCommand carries out an evCommand on the run loop.
func (u *user) onCommand(ev evCommand) {
	if u.isGone() || u.reg == nil {
		ev.reply <- cmdReply{err: &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "Not registered."}}
		return
	}
	if u.link.state == linkStopped && ev.op != opStatus {
		ev.reply <- cmdReply{err: errShuttingDown}
		return
	}
	info := func(text string) { ev.reply <- cmdReply{noteType: xmppside.NoteInfo, note: text} }
	warn := func(text string) { ev.reply <- cmdReply{noteType: xmppside.NoteWarn, note: text} }
	switch ev.op {
	case opStatus:
		ev.reply <- cmdReply{st: u.status()}
	case opReconnect:
		switch {
		case u.reqBusy:
			warn("A registration is being checked; try again when it is done.")
		case !u.link.want:
			warn("You have no available resource: the gateway logs in to IMIP when you come online.")
		case u.link.state == linkDialing:
			warn("A login to IMIP is under way; wait for it.")
		case u.link.state == linkAuthFailed:
			warn("IMIP refused your password: register again (the register command) with the right one.")
		case !u.manualAllowed(&u.manualAt[0]):
			warn(fmt.Sprintf("A reconnect runs at most once every %v; try again shortly.", manualEvery))
		default:
			u.logger().Info("reconnect asked by the user", "state", u.link.state.String())
			u.offlineContacts()
			u.applyLink(linkCredentials{}, nil)
			info("Logging in to IMIP again now.")
		}
	case opSync:
		if u.sess == nil {
			warn("You are not logged in to IMIP; your contacts are synced at the next login.")
			return
		}
		if len(u.rosterJobs) > 0 || !u.manualAllowed(&u.manualAt[1]) {
			warn(fmt.Sprintf("Your roster is being updated, or was synced less than %v ago; try again shortly.", manualEvery))
			return
		}
		cs := listed(u.list.Contacts())
		u.pushRoster(cs, nil, true, true)
		u.sendAllPresence(u.bare)
		info(fmt.Sprintf("%d contacts sent to your roster again, with their presence.", len(cs)))
	case opKick:
		if !u.link.state.live() && u.link.state != linkDialing && u.link.state != linkRetryWait {
			info("not logged in to IMIP (" + u.link.state.String() + ").")
			return
		}
		u.logger().Info("logged out by an administrator", "state", u.link.state.String())
		u.offlineAll("Logged out of IMIP by the gateway's administrator.")
		u.applyLink(linkKick{}, nil)
		info("logged out of IMIP.")
	case opSettings:
		reg := *u.reg
		if ev.allowRemove != nil {
			reg.AllowRemove = *ev.allowRemove
		}
		if ev.group != nil {
			reg.Group = *ev.group
		}
		if reg.AllowRemove == u.reg.AllowRemove && reg.Group == u.reg.Group {
			info("Nothing changed.")
			return
		}
		ctx, cancel := u.opCtx()
		defer cancel()
		if err := u.g.cfg.Store.PutRegistration(ctx, reg); err != nil {
			u.logger().Error("storing settings", "err", err)
			ev.reply <- cmdReply{err: fmt.Errorf("gateway: storing settings: %w", err)}
			return
		}
		u.reg = &reg
		u.list = roster.New(roster.Options{AllowRemove: u.g.cfg.AllowRemove || reg.AllowRemove}, u.list.Contacts())
		var saved []string
		if ev.allowRemove != nil {
			if reg.AllowRemove {
				saved = append(saved, "removing a contact from your roster now removes it from your IMIP list")
			} else {
				saved = append(saved, "removing a contact from your roster leaves your IMIP list alone")
			}
		}
		if ev.group != nil {
			saved = append(saved, fmt.Sprintf("new IMIP contacts go to the roster group %q", u.rosterGroup()))
		}
		info("Saved: " + strings.Join(saved, "; ") + ".")
	}
}

// status reports the user's state for the status commands.
func (u *user) status() userStatus {
	st := userStatus{Number: u.reg.Number, State: u.link.state.String(), ToIMIP: len(u.outq), ToXMPP: len(u.inq) + u.spilled}
	switch u.link.state {
	case linkOnline:
		st.Why = "logged in to IMIP"
	case linkGrace:
		st.Why = "logged in to IMIP (a new registration, waiting for your presence)"
	case linkDialing:
		st.Why = "logging in to IMIP"
	case linkRetryWait:
		st.Why = "not logged in: the IMIP server could not be reached or dropped the session; retrying"
	case linkAuthFailed:
		st.Why = "not logged in: IMIP refused the number or password; change the password or register again"
	case linkStopped:
		st.Why = "not logged in: the gateway is shutting down"
	default:
		if u.link.want {
			st.Why = "not logged in: logged out by the gateway's administrator; run reconnect, or go offline and back"
		} else {
			st.Why = "not logged in: you have no available resource (the gateway logs in when you come online)"
		}
	}
	if u.link.state.live() {
		st.Since = u.loginTime
	}
	for _, cp := range u.contacts {
		if cp.status != wire.StatusOffline {
			st.ContactsOnline++
		}
	}
	st.Contacts = len(listed(u.list.Contacts()))
	return st
}

// onlineUsers returns the bare JIDs logged in to IMIP, sorted.
func (g *Gateway) onlineUsers() []string {
	g.onlineMu.Lock()
	out := make([]string, 0, len(g.online))
	for k := range g.online {
		out = append(out, k)
	}
	g.onlineMu.Unlock()
	slices.Sort(out)
	return out
}

// setOnline records whether key's IMIP session is live (from its run
// loop, at each change).
func (g *Gateway) setOnline(key string, on bool) {
	g.onlineMu.Lock()
	defer g.onlineMu.Unlock()
	if on {
		if g.online == nil {
			g.online = make(map[string]struct{})
		}
		g.online[key] = struct{}{}
	} else {
		delete(g.online, key)
	}
}

// manualEvery is how often a user may ask for a reconnect or a sync (each
// is an IMIP login, or a roster update that the roster pacing shares with
// every user).
const manualEvery = 10 * time.Second

// manualAllowed reports whether a reconnect or a sync (at, one of
// u.manualAt) may run now, and if so counts it.
func (u *user) manualAllowed(at *int64) bool {
	now := time.Now().UnixNano()
	if *at != 0 && now-*at < int64(manualEvery) {
		return false
	}
	*at = now
	return true
}
