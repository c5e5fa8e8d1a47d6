package gateway

// Fakes of everything the gateway consumes: the XMPP component, the IMIP
// dialer and its sessions, and the store. No network, no real servers.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// waitFor bounds every wait of the tests.
const waitFor = 5 * time.Second

// ---------------------------------------------------------------- XMPP

// fakeXMPP records every stanza the gateway sends.
type fakeXMPP struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every send
	sent    []any         // xmppside.Presence or xmppside.Message, in order
	block   chan struct{} // while non-nil, sends wait until it is closed or ctx ends
	down    bool          // the link is down: sends fail with ErrNotConnected
	// barriers counts the barriers asked for; barrierHold, while non-nil,
	// makes them wait for it; barrierErr is their outcome.
	barriers    int
	barrierHold chan struct{}
	barrierErr  error
}

var _ Barrier = (*fakeXMPP)(nil)

func (f *fakeXMPP) LinkSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return 0
	}
	return 1
}

func (f *fakeXMPP) Barrier(ctx context.Context, to jid.JID, seq uint64) error {
	f.mu.Lock()
	f.barriers++
	hold := f.barrierHold
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.barrierErr
}

// setDown makes sends fail with xmppside.ErrNotConnected (true), as while
// the component link is down, or succeed again (false).
func (f *fakeXMPP) setDown(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = on
}

func newFakeXMPP() *fakeXMPP { return &fakeXMPP{changed: make(chan struct{})} }

func (f *fakeXMPP) record(s any, ctx context.Context) error {
	f.mu.Lock()
	block, down := f.block, f.down
	f.mu.Unlock()
	if down {
		return xmppside.ErrNotConnected
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, s)
	close(f.changed)
	f.changed = make(chan struct{})
	return nil
}

func (f *fakeXMPP) SendPresence(ctx context.Context, p xmppside.Presence) error {
	return f.record(p, ctx)
}

func (f *fakeXMPP) SendMessage(ctx context.Context, m xmppside.Message) error {
	return f.record(m, ctx)
}

// setBlocked makes every later send wait (true) or lets them all go (false).
func (f *fakeXMPP) setBlocked(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case on && f.block == nil:
		f.block = make(chan struct{})
	case !on && f.block != nil:
		close(f.block)
		f.block = nil
	}
}

// mark returns the number of stanzas sent so far: a position for since.
func (f *fakeXMPP) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent)
}

// since returns the stanzas sent from position i on.
func (f *fakeXMPP) since(i int) []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent[min(i, len(f.sent)):])
}

// waitStanza waits until a stanza sent at or after position from matches,
// and returns it.
func (f *fakeXMPP) waitStanza(t *testing.T, from int, what string, match func(any) bool) any {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		for _, s := range f.sent[min(from, len(f.sent)):] {
			if match(s) {
				f.mu.Unlock()
				return s
			}
		}
		changed := f.changed
		f.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s within %v; sent since %d:\n%s", what, waitFor, from, dump(f.since(from)))
			return nil
		}
	}
}

// waitPresence waits for a presence sent at or after from that matches.
func (f *fakeXMPP) waitPresence(t *testing.T, from int, what string, match func(xmppside.Presence) bool) xmppside.Presence {
	t.Helper()
	s := f.waitStanza(t, from, what, func(s any) bool {
		p, ok := s.(xmppside.Presence)
		return ok && match(p)
	})
	return s.(xmppside.Presence)
}

// waitMessage waits for a message sent at or after from that matches.
func (f *fakeXMPP) waitMessage(t *testing.T, from int, what string, match func(xmppside.Message) bool) xmppside.Message {
	t.Helper()
	s := f.waitStanza(t, from, what, func(s any) bool {
		m, ok := s.(xmppside.Message)
		return ok && match(m)
	})
	return s.(xmppside.Message)
}

// presences returns the presences sent at or after from that match.
func (f *fakeXMPP) presences(from int, match func(xmppside.Presence) bool) []xmppside.Presence {
	var out []xmppside.Presence
	for _, s := range f.since(from) {
		if p, ok := s.(xmppside.Presence); ok && match(p) {
			out = append(out, p)
		}
	}
	return out
}

// messages returns the messages sent at or after from that match.
func (f *fakeXMPP) messages(from int, match func(xmppside.Message) bool) []xmppside.Message {
	var out []xmppside.Message
	for _, s := range f.since(from) {
		if m, ok := s.(xmppside.Message); ok && match(m) {
			out = append(out, m)
		}
	}
	return out
}

func dump(ss []any) string {
	var b strings.Builder
	for i, s := range ss {
		switch s := s.(type) {
		case xmppside.Presence:
			fmt.Fprintf(&b, "  %d presence type=%q from=%s to=%s show=%q status=%q nick=%q", i, s.Type, s.From, s.To, s.Show, s.Status, s.Nick)
			if s.Error != nil {
				fmt.Fprintf(&b, " error=%s", s.Error.Condition)
			}
		case xmppside.Message:
			fmt.Fprintf(&b, "  %d message id=%q type=%q from=%s to=%s body=%q", i, s.ID, s.Type, s.From, s.To, s.Body)
			if s.Error != nil {
				fmt.Fprintf(&b, " error=%s", s.Error.Condition)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Privilege modes of fakeRosterXMPP.
const (
	privNone    = "none"     // no XEP-0356 grant
	privBoth    = "both"     // roster get and set granted, sets succeed
	privSetFail = "set-fail" // granted, but every set fails (ejabberd 23.01)
)

// fakeRosterXMPP is a fakeXMPP that also offers RosterAccess.
type fakeRosterXMPP struct {
	*fakeXMPP
	mode string

	rmu   sync.Mutex
	sets  []xmppside.RosterItem // every item of a successful RosterSet
	tries int                   // RosterSet calls, failed ones included
	items []xmppside.RosterItem // what RosterGet returns
	// rosterx lists the full JIDs whose disco#info advertises XEP-0144.
	rosterx   map[string]bool
	exchanges map[string][]xmppside.RosterItem // XEP-0144 items sent, by full JID
}

var _ RosterAccess = (*fakeRosterXMPP)(nil)

func (f *fakeRosterXMPP) PrivilegesFor(user jid.JID) xmppside.Privileges {
	switch f.mode {
	case privBoth, privSetFail:
		return xmppside.Privileges{Namespace: "urn:xmpp:privilege:2", Roster: "both"}
	}
	return xmppside.Privileges{}
}

func (f *fakeRosterXMPP) RosterGet(ctx context.Context, user jid.JID) ([]xmppside.RosterItem, error) {
	if f.mode == privNone {
		return nil, xmppside.ErrNoPrivilege
	}
	f.rmu.Lock()
	defer f.rmu.Unlock()
	return slices.Clone(f.items), nil
}

func (f *fakeRosterXMPP) RosterSet(ctx context.Context, user jid.JID, items []xmppside.RosterItem) error {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	f.tries++
	switch f.mode {
	case privNone:
		return xmppside.ErrNoPrivilege
	case privSetFail:
		return errors.New("internal-server-error")
	}
	f.sets = append(f.sets, items...)
	return nil
}

func (f *fakeRosterXMPP) DiscoFeatures(ctx context.Context, to jid.JID) ([]string, error) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	if f.rosterx[to.String()] {
		return []string{"http://jabber.org/protocol/disco#info", NSRosterX}, nil
	}
	return []string{"http://jabber.org/protocol/disco#info"}, nil
}

func (f *fakeRosterXMPP) SendRosterExchange(ctx context.Context, to jid.JID, items []xmppside.RosterItem) error {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	if !f.rosterx[to.String()] {
		return errors.New("fake: no XEP-0144 at " + to.String())
	}
	if f.exchanges == nil {
		f.exchanges = make(map[string][]xmppside.RosterItem)
	}
	f.exchanges[to.String()] = append(f.exchanges[to.String()], items...)
	return nil
}

func (f *fakeRosterXMPP) exchanged(to string) []xmppside.RosterItem {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	return slices.Clone(f.exchanges[to])
}

func (f *fakeRosterXMPP) rosterSets() ([]xmppside.RosterItem, int) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	return slices.Clone(f.sets), f.tries
}

// ---------------------------------------------------------------- IMIP

// fakeDialer hands out fakeSessions and remembers them.
type fakeDialer struct {
	mu       sync.Mutex
	changed  chan struct{}
	sessions []*fakeSession
	attempts []string // "number/password" of every Dial, failed ones included
	fail     []error  // errors for the next Dials, in order
	failAll  error    // error of every Dial while non-nil (after fail is used up)
	buddies  map[wire.Number][]wire.Buddy
	live     map[wire.Number]int // sessions not yet ended, by number
	maxLive  int                 // the most live sessions one number ever had
	// reply and confirm are given to every later session (see fakeSession).
	reply   func(kind string, n wire.Number) (wire.Code, bool)
	confirm bool
	// stall, while set, makes Dials wait for their context's end (a
	// server that never answers the login).
	stall bool
	// gate, while non-nil, holds every Dial until it is closed (logins
	// in flight at once).
	gate chan struct{}
}

var _ Dialer = (*fakeDialer)(nil)

func newFakeDialer() *fakeDialer {
	return &fakeDialer{changed: make(chan struct{}), buddies: map[wire.Number][]wire.Buddy{}, live: map[wire.Number]int{}}
}

func (d *fakeDialer) Dial(ctx context.Context, n wire.Number, password string, h imipside.Handler) (IMIPSession, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.notifyLocked()
	d.attempts = append(d.attempts, string(n)+"/"+password)
	if d.stall {
		d.notifyLocked()
		d.mu.Unlock()
		<-ctx.Done()
		d.mu.Lock()
	}
	if gate := d.gate; gate != nil {
		d.notifyLocked()
		d.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
		}
		d.mu.Lock()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var err error
	switch {
	case len(d.fail) > 0:
		err, d.fail = d.fail[0], d.fail[1:]
	case d.failAll != nil:
		err = d.failAll
	}
	if err != nil {
		return nil, err
	}
	s := &fakeSession{d: d, number: n, password: password, h: h, buddies: slices.Clone(d.buddies[n]),
		reply: d.reply, confirm: d.confirm, gone: make(chan struct{})}
	// The IMIP server keeps only the newest login of a number: the older
	// sessions end, from the server's side.
	var older []*fakeSession
	for _, o := range d.sessions {
		if o.number == n && o.alive() == nil {
			older = append(older, o)
		}
	}
	d.sessions = append(d.sessions, s)
	d.mu.Unlock()
	for _, o := range older {
		o.drop(errors.New("imipside: server closed the connection: logged in elsewhere"))
	}
	d.mu.Lock()
	d.live[n]++
	d.maxLive = max(d.maxLive, d.live[n])
	return s, nil
}

func (d *fakeDialer) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *fakeDialer) setFail(all error, next ...error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failAll, d.fail = all, next
}

func (d *fakeDialer) setBuddies(n wire.Number, bs ...wire.Buddy) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buddies[n] = bs
}

// setReply sets how the server answers the requests of every later session.
func (d *fakeDialer) setReply(f func(kind string, n wire.Number) (wire.Code, bool)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reply = f
}

func (d *fakeDialer) attemptCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.attempts)
}

func (d *fakeDialer) sessionCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.sessions)
}

// waitSession waits for the i-th session (0-based) ever dialed.
func (d *fakeDialer) waitSession(t *testing.T, i int) *fakeSession {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		if len(d.sessions) > i {
			s := d.sessions[i]
			d.mu.Unlock()
			return s
		}
		changed := d.changed
		n := len(d.sessions)
		d.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("session %d not dialed within %v (%d sessions so far)", i, waitFor, n)
			return nil
		}
	}
}

// waitAttempts waits until Dial was called at least n times.
func (d *fakeDialer) waitAttempts(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		d.mu.Lock()
		got, changed := len(d.attempts), d.changed
		d.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%d Dial calls within %v, want %d", got, waitFor, n)
		}
	}
}

// fakeSession records the requests the gateway makes and answers them
// the way imipside does: each request gets a ReplyEvent (ACK 600 unless
// reply says otherwise) from the session's "reader", in order, after the
// call is recorded.
type fakeSession struct {
	d        *fakeDialer
	number   wire.Number
	password string
	h        imipside.Handler
	buddies  []wire.Buddy

	mu      sync.Mutex
	changed chan struct{}
	calls   []string // "STAT ONLINE text", "MESG 123 text", "LIST ADD 123 text", "ACK 1001", "DISC", "KILL", "DROPPED"
	nextID  uint64
	ended   bool
	sendErr error // returned by SendMessage when set
	// reply decides the answer to a request: its code, and whether the
	// server answers at all. nil: ACK 600 to everything.
	reply   func(kind string, n wire.Number) (wire.Code, bool)
	confirm bool             // the server offers mesg-ack
	burst   []imipside.Event // delivered by the "reader" just before its ClosedEvent
	// The reader: events are delivered in order by a goroutine that runs
	// while there are some; after the ClosedEvent nothing more.
	pumpQ   []imipside.Event
	pumping bool
	closed  bool          // the ClosedEvent was delivered
	gone    chan struct{} // closed once the ClosedEvent was delivered
	// Cork holds what is sent (the server sees it, and answers, at Uncork,
	// as with imipside's cork), a DISC too (nothing more can be sent once
	// it is queued); a kill or a drop loses what was held.
	corked     bool
	held       []func()
	discQueued bool
	// discHold, when set, keeps the server's answer to DISC (and so the
	// ClosedEvent) back until it is closed: a slow server.
	discHold chan struct{}
}

var (
	_ IMIPSession = (*fakeSession)(nil)
	_ corker      = (*fakeSession)(nil)
)

func (s *fakeSession) Cork() {
	s.mu.Lock()
	s.corked = true
	s.mu.Unlock()
}

func (s *fakeSession) Uncork() {
	s.mu.Lock()
	s.corked = false
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// send has the server see what f does now, or at Uncork when corked.
func (s *fakeSession) send(f func()) {
	s.mu.Lock()
	if s.corked {
		s.held = append(s.held, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f()
}

func (s *fakeSession) call(c string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	if s.changed != nil {
		close(s.changed)
	}
	s.changed = make(chan struct{})
}

func (s *fakeSession) alive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.discQueued {
		return imipside.ErrClosed
	}
	return nil
}

// setReply sets how the server answers the session's requests.
func (s *fakeSession) setReply(f func(kind string, n wire.Number) (wire.Code, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = f
}

// enqueue hands ev to the session's reader.
func (s *fakeSession) enqueue(ev imipside.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.pumpQ = append(s.pumpQ, ev)
	if !s.pumping {
		s.pumping = true
		go s.pump()
	}
}

func (s *fakeSession) pump() {
	for {
		s.mu.Lock()
		if len(s.pumpQ) == 0 || s.closed {
			s.pumping = false
			s.pumpQ = nil
			s.mu.Unlock()
			return
		}
		ev := s.pumpQ[0]
		s.pumpQ = s.pumpQ[1:]
		s.mu.Unlock()
		s.h.HandleIMIP(ev)
		if _, ok := ev.(imipside.ClosedEvent); ok {
			s.mu.Lock()
			s.closed = true
			s.pumping = false
			s.pumpQ = nil
			close(s.gone)
			s.mu.Unlock()
			return
		}
	}
}

// request records a request and has the server answer it.
func (s *fakeSession) request(kind string, n wire.Number, call string) (uint64, error) {
	if err := s.alive(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	if s.nextID == 0 {
		s.nextID = wire.FirstClientBlockID - 1
	}
	s.nextID++
	id := s.nextID
	code, answer := wire.CodeOK, true
	if s.reply != nil {
		code, answer = s.reply(kind, n)
	}
	s.mu.Unlock()
	s.send(func() {
		s.call(call)
		if answer {
			s.enqueue(imipside.ReplyEvent{ID: id, Type: kind, Number: n, Code: code})
		}
	})
	return id, nil
}

func (s *fakeSession) Contacts() []wire.Buddy { return slices.Clone(s.buddies) }

func (s *fakeSession) ConfirmsMessages() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirm
}

func (s *fakeSession) SendStatus(st wire.Status, text string) (uint64, error) {
	return s.request(imipside.RequestSTAT, "", strings.TrimSpace("STAT "+string(st)+" "+text))
}

func (s *fakeSession) SendMessage(to wire.Number, text string) (uint64, error) {
	s.mu.Lock()
	err := s.sendErr
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return s.request(imipside.RequestMESG, to, "MESG "+string(to)+" "+text)
}

func (s *fakeSession) SendListAdd(n wire.Number, text string) (uint64, error) {
	return s.request(imipside.RequestListAdd, n, strings.TrimSpace("LIST ADD "+string(n)+" "+text))
}

func (s *fakeSession) SendListAccept(n wire.Number, nick string) (uint64, error) {
	return s.request(imipside.RequestListAccept, n, fmt.Sprintf("LIST ACCEPT %s %q", n, nick))
}

func (s *fakeSession) SendListReject(n wire.Number) (uint64, error) {
	return s.request(imipside.RequestListReject, n, "LIST REJECT "+string(n))
}

func (s *fakeSession) SendListRemove(n wire.Number) (uint64, error) {
	return s.request(imipside.RequestListRemove, n, "LIST REMOVE "+string(n))
}

func (s *fakeSession) ConfirmMessage(blockID uint64) error {
	if err := s.alive(); err != nil {
		return err
	}
	s.send(func() { s.call(fmt.Sprintf("ACK %d", blockID)) })
	return nil
}

// end marks the session ended and has the reader deliver the burst and the
// ClosedEvent. It does not wait for them (see drop).
func (s *fakeSession) end(what string, cause error) error {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return imipside.ErrClosed
	}
	s.ended = true
	burst := s.burst
	held := s.held
	s.held, s.corked = nil, false
	s.mu.Unlock()
	if what == "DISC" {
		for _, f := range held {
			f() // written before the DISC
		}
	}
	s.d.mu.Lock()
	s.d.live[s.number]--
	s.d.mu.Unlock()
	s.call(what)
	closeEvents := func() {
		for _, ev := range burst {
			s.enqueue(ev)
		}
		s.enqueue(imipside.ClosedEvent{Err: cause})
	}
	s.mu.Lock()
	hold := s.discHold
	s.mu.Unlock()
	if what == "DISC" && hold != nil {
		go func() {
			<-hold
			closeEvents()
		}()
		return nil
	}
	closeEvents()
	return nil
}

func (s *fakeSession) Logout() error {
	s.mu.Lock()
	if s.ended || s.discQueued {
		s.mu.Unlock()
		return imipside.ErrClosed
	}
	if s.corked {
		// Queued behind what the cork holds: written, and the session
		// ended, at Uncork.
		s.discQueued = true
		s.held = append(s.held, func() { _ = s.end("DISC", nil) })
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	return s.end("DISC", nil)
}

func (s *fakeSession) Kill() { _ = s.end("KILL", nil) }

// Done is closed once the session's ClosedEvent was delivered, as
// imipside.Session's once it has ended.
func (s *fakeSession) Done() <-chan struct{} { return s.gone }

// push delivers ev to the gateway as the session's reader would, and
// returns once the gateway took it.
func (s *fakeSession) push(ev imipside.Event) { s.h.HandleIMIP(ev) }

// drop ends the session from the server's side with cause, and waits until
// the gateway took the ClosedEvent.
func (s *fakeSession) drop(cause error) {
	if s.end("DROPPED", cause) == nil {
		<-s.gone
	}
}

func (s *fakeSession) callList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// callsWith returns the calls that start with prefix.
func (s *fakeSession) callsWith(prefix string) []string {
	var out []string
	for _, c := range s.callList() {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// waitCall waits until a call starting with prefix was made, and returns it.
func (s *fakeSession) waitCall(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		for _, c := range s.calls {
			if strings.HasPrefix(c, prefix) {
				s.mu.Unlock()
				return c
			}
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		calls := slices.Clone(s.calls)
		s.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("session %s: no call %q within %v; calls: %q", s.number, prefix, waitFor, calls)
			return ""
		}
	}
}

// ---------------------------------------------------------------- Store

// holdStore makes the store's PutRegistration and SaveContacts for bare
// (every JID when bare is "") wait; the function returned lets them go. It
// is called at cleanup too.
func (h *harness) holdStore(bare string) (release func()) {
	ch := make(chan struct{})
	h.st.mu.Lock()
	h.st.hold, h.st.holdJID = ch, bare
	h.st.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			h.st.mu.Lock()
			h.st.hold, h.st.holdJID = nil, ""
			h.st.mu.Unlock()
			close(ch)
		})
	}
	h.t.Cleanup(release)
	return release
}

// waitHeld waits until a store call waits in holdStore.
func (h *harness) waitHeld() {
	h.t.Helper()
	waitUntil(h.t, "a store call held", func() bool {
		h.st.mu.Lock()
		defer h.st.mu.Unlock()
		return h.st.held > 0
	})
}

// memStore is an in-memory Store.
type memStore struct {
	mu       sync.Mutex
	regs     map[string]Registration
	contacts map[string][]roster.Contact
	saves    int
	hold     chan struct{} // while non-nil, SaveContacts and PutRegistration wait until it is closed
	holdJID  string        // when set, only calls for this JID wait
	q        memQueue      // queued messages and online flags: see Apply
	held     int           // calls that waited for hold
	// applyHold, while non-nil, makes Apply wait until it is closed;
	// applyHeld counts the calls that waited.
	applyHold chan struct{}
	applyHeld int
	// applyErr, when set, fails every Apply.
	applyErr error
	// puts counts the OpPutMessage ops applied.
	puts int
}

func (m *memStore) putCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.puts
}

func (m *memStore) setApplyErr(err error) {
	m.mu.Lock()
	m.applyErr = err
	m.mu.Unlock()
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{regs: map[string]Registration{}, contacts: map[string][]roster.Contact{}}
}

func (m *memStore) Registration(ctx context.Context, bare string) (Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.regs[bare]
	if !ok {
		return Registration{}, fmt.Errorf("memstore: %s: %w", bare, ErrNotFound)
	}
	return r, nil
}

func (m *memStore) PutRegistration(ctx context.Context, r Registration) error {
	m.mu.Lock()
	hold := m.hold
	if m.holdJID != "" && m.holdJID != r.JID {
		hold = nil
	}
	if hold != nil {
		m.held++
	}
	m.mu.Unlock()
	if hold != nil {
		<-hold
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if old, ok := m.regs[r.JID]; ok {
		r.Created = old.Created
		if old.Number != r.Number {
			delete(m.contacts, r.JID)
		}
	} else {
		r.Created = now
	}
	r.Updated = now
	m.regs[r.JID] = r
	return nil
}

func (m *memStore) DeleteRegistration(ctx context.Context, bare string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.regs[bare]; !ok {
		return fmt.Errorf("memstore: %s: %w", bare, ErrNotFound)
	}
	delete(m.regs, bare)
	delete(m.contacts, bare)
	m.q.drop(bare)
	return nil
}

func (m *memStore) Registrations(ctx context.Context) ([]Registration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Registration, 0, len(m.regs))
	for _, r := range m.regs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Registration) int { return cmp.Compare(a.JID, b.JID) })
	return out, nil
}

func (m *memStore) Contacts(ctx context.Context, bare string) ([]roster.Contact, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.contacts[bare]), nil
}

func (m *memStore) SaveContacts(ctx context.Context, bare string, cs []roster.Contact) error {
	m.mu.Lock()
	hold := m.hold
	if m.holdJID != "" && m.holdJID != bare {
		hold = nil
	}
	if hold != nil {
		m.held++
	}
	m.mu.Unlock()
	if hold != nil {
		<-hold
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.regs[bare]; !ok {
		return fmt.Errorf("memstore: %s: %w", bare, ErrNotFound)
	}
	m.contacts[bare] = slices.Clone(cs)
	m.saves++
	return nil
}

func (m *memStore) Close() error { return nil }

func (m *memStore) reg(bare string) (Registration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.regs[bare]
	return r, ok
}

func (m *memStore) savedContacts(bare string) []roster.Contact {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.contacts[bare])
}

// memQueue holds memStore's queued messages and online flags; its zero value
// is empty. memStore.mu guards it.
type memQueue struct {
	lastID int64
	msgs   []QueuedMessage // ordered by ID
	online map[string]bool
}

// drop deletes everything of bare.
func (q *memQueue) drop(bare string) {
	q.msgs = slices.DeleteFunc(q.msgs, func(m QueuedMessage) bool { return m.JID == bare })
	delete(q.online, bare)
}

// Apply performs ops all at once, as Store.Apply does: nothing is changed
// when an op is invalid.
func (m *memStore) Apply(ctx context.Context, ops []Op) error {
	if err := CheckOps(ops); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: %w", err)
	}
	m.mu.Lock()
	if m.applyErr != nil {
		err := m.applyErr
		m.mu.Unlock()
		return fmt.Errorf("memstore: %w", err)
	}
	hold := m.applyHold
	if hold != nil {
		m.applyHeld++
	}
	m.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return fmt.Errorf("memstore: %w", ctx.Err())
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for _, op := range ops {
		switch op := op.(type) {
		case OpPutMessage:
			m.puts++
			op.Msg.ID, op.Msg.Accepted = 0, time.Time{}
			if _, ok := m.regs[op.Msg.JID]; !ok {
				continue
			}
			m.q.lastID++
			op.Msg.ID, op.Msg.Accepted = m.q.lastID, now
			m.q.msgs = append(m.q.msgs, *op.Msg)
		case OpDeleteMessage:
			m.q.msgs = slices.DeleteFunc(m.q.msgs, func(q QueuedMessage) bool { return q.ID == op.ID })
		case OpTouchMessage:
			for i := range m.q.msgs {
				if m.q.msgs[i].ID == op.ID {
					m.q.msgs[i].Tries = op.Tries
				}
			}
		case OpPutContact:
			if _, ok := m.regs[op.JID]; !ok {
				continue
			}
			cs := m.contacts[op.JID]
			if i := slices.IndexFunc(cs, func(c roster.Contact) bool { return c.Number == op.Contact.Number }); i >= 0 {
				cs[i] = op.Contact
			} else {
				cs = append(cs, op.Contact)
			}
			m.contacts[op.JID] = cs
		case OpDeleteContact:
			m.contacts[op.JID] = slices.DeleteFunc(m.contacts[op.JID], func(c roster.Contact) bool { return c.Number == op.Number })
		case OpSetOnline:
			if _, ok := m.regs[op.JID]; !ok {
				continue
			}
			if m.q.online == nil {
				m.q.online = map[string]bool{}
			}
			m.q.online[op.JID] = op.Online
		}
	}
	return nil
}

func (m *memStore) Messages(ctx context.Context, bare string) ([]QueuedMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []QueuedMessage{}
	for _, q := range m.q.msgs {
		if q.JID == bare {
			out = append(out, q)
		}
	}
	return out, nil
}

func (m *memStore) MessagesPage(ctx context.Context, bare string, dir Direction, after int64, limit int) ([]QueuedMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []QueuedMessage{}
	for _, q := range m.q.msgs {
		if q.JID == bare && q.Dir == dir && q.ID > after && (limit <= 0 || len(out) < limit) {
			out = append(out, q)
		}
	}
	return out, nil
}

func (m *memStore) QueuedJIDs(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []string{}
	for _, q := range m.q.msgs {
		out = append(out, q.JID)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (m *memStore) OnlineJIDs(ctx context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []string{}
	for jid, on := range m.q.online {
		if on {
			out = append(out, jid)
		}
	}
	slices.Sort(out)
	return out, nil
}
