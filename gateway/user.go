package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// event is anything a user's run loop handles: a closed set, each type
// marked by isEvent.
type event interface{ isEvent() }

// Events of a user's run loop.
type (
	evPresence     struct{ p xmppside.Presence } // subscriptions and probes
	evAvailability struct{}                      // see postAvailability
	// evMessage is a message from the user; at is when the component
	// handed it to the gateway (the relay latency runs from it).
	evMessage struct {
		m  xmppside.Message
		at time.Time
	}
	// evIMIP is an event of one IMIP session; c says which.
	evIMIP struct {
		c  *imipConn
		ev imipside.Event
		at time.Time // when the session's reader handed it over
	}
	// evDialed: the login of ticket t ended (c is nil when err is set).
	evDialed struct {
		t   *dialTicket
		c   *imipConn
		err error
	}
	evRegister struct {
		ctx         context.Context // the request's
		number      wire.Number
		password    string
		allowRemove *bool
		owner       bool // the JID is registered with this number already
		reply       chan error
	}
	// evRegisterDialed: the login that checks a registration ended.
	evRegisterDialed struct {
		req evRegister
		c   *imipConn
		err error
	}
	evUnregister struct{ reply chan error }
	evTimer      struct{} // a deadline of the user's timer may have passed
	// evLoad: load the user (its queued messages after a restart).
	evLoad     struct{}
	evLinkUp   struct{ link uint64 } // the component link is up again
	evShutdown struct{}
)

func (evPresence) isEvent()       {}
func (evAvailability) isEvent()   {}
func (evMessage) isEvent()        {}
func (evIMIP) isEvent()           {}
func (evDialed) isEvent()         {}
func (evRegister) isEvent()       {}
func (evRegisterDialed) isEvent() {}
func (evUnregister) isEvent()     {}
func (evTimer) isEvent()          {}
func (evLoad) isEvent()           {}
func (evLinkUp) isEvent()         {}
func (evShutdown) isEvent()       {}

// contactPresence is the last STAT of a contact.
type contactPresence struct {
	status wire.Status
	text   string
}

// user is one registered Jabber user. Fields below mu are guarded by it;
// the rest belong to the run loop alone.
type user struct {
	g    *Gateway
	bare jid.JID
	key  string

	mu      sync.Mutex
	inbox   []event
	running bool
	stopped bool
	closing bool // shutdown under way: nothing more from the XMPP side
	gone    bool // dropped from the registry
	// avail holds availability presences not yet handled, by resource;
	// availQueued says an evAvailability is in the inbox for them.
	avail       map[string]pendingAvail
	availQueued bool
	availSeq    uint64
	// jobs counts the user's goroutines in flight (logins, roster jobs)
	// whose result is still to come as an event.
	jobs atomic.Int32
	// timerQueued says an evTimer is in the inbox.
	timerQueued bool
	space       chan struct{} // closed when the inbox shrinks

	loaded bool
	reg    *Registration
	res    resources // the presence machine
	link   imipLink  // the IMIP link machine
	conn   *imipConn // the live session (link state online or grace)
	sess   IMIPSession
	// corked is the session the run loop corked while it handles its
	// inbox (see run), nil when none.
	corked corker
	// dialing is the login in flight (link state dialing), nil otherwise.
	dialing *dialTicket
	// reqs are registration requests (evRegister, evUnregister) waiting
	// for the one in flight (reqBusy: a registration's login) to end.
	reqs    []event
	reqBusy bool
	// lostDuringCheck: the live session ended while a registration's login
	// for the same number was in flight (the IMIP server keeps only the
	// newest login of a number); the outcome of that login decides.
	lostDuringCheck bool
	// draining is the session logging out at shutdown, kept until it ends
	// so that the answers to its MESGs come in.
	draining *imipConn
	// settling: a hand-over or a shutdown waits for the writes of the
	// messages from IMIP that the live session must confirm (settleIn).
	settling *settle
	// stopping: the gateway stops; it ends the user here, even one being
	// handed over (the instance's leave frees it).
	stopping bool
	// ending counts the sessions endConn let go of that have not ended yet
	// (trackEnd).
	ending   int
	checking wire.Number // the number of the registration's login in flight
	timers   deadlines
	lim      *userLimits                 // token buckets; nil until first used
	bo       *backoff.ExponentialBackOff // login retries; nil until one fails

	loginTime  time.Time
	sentStatus wire.Status
	sentText   string
	contacts   map[wire.Number]contactPresence
	list       *roster.List
	// pending are the requests sent on the live session, by block ID.
	pending map[uint64]pendingReq
	// outq are the messages for IMIP not confirmed yet, in order; inq the
	// messages from IMIP not confirmed by the barrier yet (at most
	// maxInMemory; spilled counts writes in flight of those beyond, and
	// spillStored says the store holds some that memory does not).
	outq        []*outMsg
	inq         []*inMsg
	spilled     int
	spillStored bool
	// reloading: a read of the store for them is in flight; spillsSince
	// counts the ones that went to the store only since it started.
	reloading   bool
	spillsSince int
	// manualAt is when the user last asked for a reconnect, and for a
	// sync (Unix ns; see manualAllowed).
	manualAt [2]int64
	// orphanWrites counts messages from IMIP delivered while their held
	// write was being done (see onDelivered): no reload until they are
	// written and deleted.
	orphanWrites int
	// rosterStale: a roster push did not reach the user; push again.
	rosterStale bool
	// rosterJobs wait for the one in flight (rosterBusy).
	rosterJobs []*rosterJob
	rosterBusy bool
	// cards is a read-safe copy of the contacts' nicknames for vCards
	// (see vcard.go); nil until asked, and again once the list changed.
	cards atomic.Pointer[cardSnap]
	// takenAt is when this instance took the user from another (or from
	// none), zero without a cluster; releasing says another instance
	// asked for it and the hand-over is under way; released, that it was
	// given up (see owners.go).
	takenAt   time.Time
	releasing bool
	released  bool
	// releaseWriting: the link stopped, the hand-over waits for the
	// user's writes (barrierSent: a barrier Submit is out, sent when
	// writes was barrierAt); writes counts the Submits of the user's loop.
	releaseWriting bool
	barrierSent    bool
	barrierAt      uint64
	barrierAfter   time.Time // no barrier before (the store failed one)
	releasePoll    bool      // an evReleaseCheck is due
	writes         uint64
	// shownOut and shownIn are len(outq) and len(inq) as last counted in
	// the gateway's stats (countQueues).
	shownOut, shownIn int
}

func newUser(g *Gateway, bare jid.JID) *user {
	key := bare.String()
	return &user{g: g, bare: bare, key: key}
}

// logger returns the gateway's logger with the user's JID. It is made per
// call, not kept: logging is rare, and an idle user is smaller without it.
func (u *user) logger() *slog.Logger { return u.g.log.With("user", u.key) }

// handle dispatches one event on the run loop.
func (u *user) handle(ev event) {
	if u.released {
		u.afterRelease(ev)
		return
	}
	if _, ok := ev.(evRelease); ok && !u.loaded {
		// Nothing runs for the user here (its load failed, or never
		// happened): it is given up as it is.
		u.releaseDone()
		return
	}
	if !u.loaded {
		if !u.load() {
			u.refuseUnowned(ev)
			return
		}
	}
	if u.releasing && u.onWhileReleasing(ev) {
		u.releaseStep()
		return
	}
	switch ev := ev.(type) {
	case evPresence:
		u.onPresence(ev.p)
	case evAvailability:
		pend := u.takeAvailability()
		if u.reg != nil {
			u.onAvailability(pend)
		}
	case evMessage:
		u.onMessage(ev.m, ev.at)
	case evIMIP:
		u.onIMIPEvent(ev.c, ev.ev, ev.at)
	case evDialed:
		u.onDialed(ev)
	case evRegister:
		if u.isGone() {
			u.forward(ev, ev.reply)
			return
		}
		u.reqs = append(u.reqs, ev)
		u.nextRequest()
	case evRegisterDialed:
		u.onRegisterDialed(ev)
	case evUnregister:
		if u.isGone() {
			u.forward(ev, ev.reply)
			return
		}
		u.reqs = append(u.reqs, ev)
		u.nextRequest()
	case evTimer:
		u.onTimer()
	case evRosterDone:
		u.onRosterDone(ev)
	case evLoad:
	case evCard:
		u.onCard(ev)
	case evStoredOut:
		u.onStoredOut(ev)
	case evStoredIn:
		u.onStoredIn(ev)
	case evDelivered:
		u.onDelivered(ev)
	case evReloaded:
		u.onReloaded(ev)
	case evCommand:
		u.onCommand(ev)
	case evLinkUp:
		u.onLinkUp(ev.link)
	case evShutdown:
		u.onShutdown()
	case evRelease:
		u.onRelease()
	case evReleaseCheck:
		u.releasePoll = false
	case evReleaseBarrier:
		u.onReleaseBarrier(ev)
	case evSettleTimeout:
		u.onSettleTimeout(ev)
	case evEnded:
		u.ending--
	}
	u.countQueues()
	u.dropStaleCards()
	u.settleStep()
	u.releaseStep()
}

// countQueues brings the gateway's queue gauges up to date with the
// user's queues: two comparisons, and an atomic add when one changed.
func (u *user) countQueues() {
	if n := len(u.outq); n != u.shownOut {
		u.g.stats.queuedToIMIP.Add(int64(n - u.shownOut))
		u.shownOut = n
	}
	if n := len(u.inq); n != u.shownIn {
		u.g.stats.queuedToXMPP.Add(int64(n - u.shownIn))
		u.shownIn = n
	}
}

// load reads the user's registration and contacts from the store. With a
// cluster it first makes this instance the user's owner, and reports false
// when another instance kept the user (nothing is loaded then; the next
// event tries again).
func (u *user) load() bool {
	u.uncork() // it waits for the store, and with a cluster for another instance
	ctx, cancel := context.WithTimeout(context.Background(), u.g.cfg.OpTimeout)
	defer cancel()
	reg, err := u.g.cfg.Store.Registration(ctx, u.key)
	if err == nil && u.g.cfg.Owners != nil {
		// The owner's writes are all done before it gives the user up:
		// what is read after acquire is what it left.
		if !u.acquire() {
			return false
		}
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), u.g.cfg.OpTimeout)
		defer cancel()
		reg, err = u.g.cfg.Store.Registration(ctx, u.key)
	}
	if err != nil {
		u.list = roster.New(roster.Options{AllowRemove: u.g.cfg.AllowRemove}, nil)
		if !errors.Is(err, ErrNotFound) {
			// Not loaded: the next event tries again.
			u.logger().Error("loading registration", "err", err)
			return true
		}
		u.loaded = true
		return true
	}
	u.loaded = true
	u.reg = &reg
	u.loadContacts(ctx)
	u.loadQueued(ctx)
	return true
}

func (u *user) loadContacts(ctx context.Context) {
	cs, err := u.g.cfg.Store.Contacts(ctx, u.key)
	if err != nil {
		u.logger().Error("loading contacts", "err", err)
	}
	allow := u.g.cfg.AllowRemove
	if u.reg != nil && u.reg.AllowRemove {
		allow = true
	}
	u.list = roster.New(roster.Options{AllowRemove: allow}, cs)
}

// opCtx bounds one network operation.
// A store call waits on the run loop: what the cork holds goes first.
func (u *user) opCtx() (context.Context, context.CancelFunc) {
	u.uncork()
	return context.WithTimeout(context.Background(), u.g.cfg.OpTimeout)
}

// ---------------------------------------------------------------- the link

// applyLink runs ev through the link machine and carries out its actions.
// c is the session a finished login produced, for the actions that need it.
func (u *user) applyLink(ev linkEvent, c *imipConn) {
	before := u.link.state
	acts := u.link.apply(ev)
	if u.link.state != before {
		u.g.stats.linkMoved(before, u.link.state)
		if after := u.link.state; before.live() != after.live() && after != linkStopped {
			// The store's online flag and last login time (shown by the
			// admin commands); a shutdown keeps the flag of who was online.
			u.write([]Op{OpSetOnline{JID: u.key, Online: after.live()}}, "recording the IMIP login state")
		}
		if before.live() != u.link.state.live() {
			u.g.setOnline(u.key, u.link.state.live()) // the admins' online users
		}
		if _, ok := ev.(linkRetryDue); ok && u.link.state == linkDialing {
			u.g.stats.imipReconnects.Add(1)
		}
		u.logger().Debug("IMIP link", "from", before.String(), "to", u.link.state.String(), "event", fmt.Sprintf("%T", ev), "actions", fmt.Sprint(acts))
	}
	for _, a := range acts {
		u.execLink(a, c)
	}
}

// execLink carries out one action of the link machine.
func (u *user) execLink(a linkAction, c *imipConn) {
	switch a {
	case actDial:
		u.startDial()
	case actAbandonDial:
		u.dialing = nil // its result is ended when it comes (onDialed)
	case actEndDialed:
		if c != nil {
			u.endConn(c, "login no longer wanted")
		}
	case actLogout:
		if u.conn != nil {
			c := u.conn
			u.dropLive()
			u.endConn(c, "logout")
		}
	case actUp:
		u.up(c)
	case actLost:
		u.g.stats.imipLost.Add(1)
		u.offlineAll("Disconnected from the IMIP network; reconnecting.")
		u.dropLive()
	case actLoginFailed:
		u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "unavailable",
			Status: "Cannot reach the IMIP network; retrying."})
	case actAuthFailed:
		// Told in onDialed, which knows the code.
	case actArmRetry:
		if u.bo == nil {
			u.bo = newBackoff(u.g.cfg.RetryMin, u.g.cfg.RetryMax)
		}
		u.arm(timerRetry, u.bo.NextBackOff())
	case actCancelRetry:
		u.disarm(timerRetry)
		u.bo = nil
	case actArmGrace:
		u.arm(timerGrace, max(u.g.cfg.RegisterGrace, 0))
	case actCancelGrace:
		u.disarm(timerGrace)
	}
}

// newBackoff returns the login retry backoff: exponential from min to max,
// with jitter so that users do not log in again in lockstep.
func newBackoff(min, max time.Duration) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     min,
		RandomizationFactor: 0.25,
		Multiplier:          2,
		MaxInterval:         max,
	}
	b.Reset()
	return b
}

// dialTicket identifies one login in flight; a result whose ticket is not
// u.dialing any more is not wanted.
type dialTicket struct{}

// imipConn is one IMIP session of the user, from its login to its end.
// The session's reader hands its events to the run loop only once the loop
// has adopted it (adopt), and drops them once the loop let go (letGo):
// so no event of a session is handled before the session is live, and the
// reader never waits on a loop that no longer wants it.
type imipConn struct {
	sess   IMIPSession
	number wire.Number

	mu      sync.Mutex
	isReady bool          // the session became the live one
	isGone  bool          // the run loop let go of it
	readyCh chan struct{} // made only when the reader must wait; closed with isReady
	goneCh  chan struct{} // made only when a wait needs it; closed with isGone
}

func newConn(n wire.Number) *imipConn { return &imipConn{number: n} }

// adopt marks c as the live session: its reader may hand events over.
func (c *imipConn) adopt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isReady = true
	if c.readyCh != nil {
		close(c.readyCh)
	}
}

// letGo marks c as let go of: its reader drops its events.
func (c *imipConn) letGo() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isGone {
		return
	}
	c.isGone = true
	if c.goneCh != nil {
		close(c.goneCh)
	}
}

// gone returns a channel closed once c is let go of (made at the first
// call: most sessions never need it).
func (c *imipConn) gone() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goneLocked()
}

func (c *imipConn) goneLocked() chan struct{} {
	if c.goneCh == nil {
		c.goneCh = make(chan struct{})
		if c.isGone {
			close(c.goneCh)
		}
	}
	return c.goneCh
}

// awaitReady waits until c is adopted (true) or let go of (false).
func (c *imipConn) awaitReady() bool {
	c.mu.Lock()
	switch {
	case c.isGone:
		c.mu.Unlock()
		return false
	case c.isReady:
		c.mu.Unlock()
		return true
	}
	if c.readyCh == nil {
		c.readyCh = make(chan struct{})
	}
	ready, gone := c.readyCh, c.goneLocked()
	c.mu.Unlock()
	select {
	case <-ready:
	case <-gone:
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.isGone
}

// handler returns the imipside.Handler of c: it runs on the session's
// reader goroutine.
func (u *user) handler(c *imipConn) imipside.Handler {
	return imipside.HandlerFunc(func(ev imipside.Event) {
		if !c.awaitReady() {
			return
		}
		if _, ok := ev.(imipside.ClosedEvent); ok {
			u.postAlways(evIMIP{c: c, ev: ev}) // one per session: never dropped
			return
		}
		u.postWait(evIMIP{c: c, ev: ev, at: time.Now()}, c.gone)
	})
}

// evEnded: a session the loop let go of (endConn) has ended.
type evEnded struct{}

func (evEnded) isEvent() {}

// trackEnd counts sess, ended by endConn, until it has ended: a hand-over
// gives the user up only then (releaseStep), and the gateway's Stop waits
// for it.
func (u *user) trackEnd(sess IMIPSession) {
	if _, ok := sess.(doner); !ok {
		return
	}
	u.ending++
	u.g.trackEnd(sess, func() { u.postAlways(evEnded{}) })
}

// dial logs number in on the calling goroutine.
func (u *user) dial(ctx context.Context, n wire.Number, password string) (*imipConn, error) {
	c := newConn(n)
	ctx, cancel := context.WithTimeout(ctx, u.g.cfg.LoginTimeout)
	defer cancel()
	sess, err := u.g.cfg.Dialer.Dial(ctx, n, password, u.handler(c))
	if !errors.Is(err, context.Canceled) {
		u.g.stats.loginEnded(err)
	}
	if err != nil {
		c.letGo()
		return nil, err
	}
	c.sess = sess
	u.g.noteService(sess)
	return c, nil
}

// startDial starts a login with the registered credentials on its own
// goroutine; its result comes back as evDialed.
func (u *user) startDial() {
	t := &dialTicket{}
	u.dialing = t
	n, pw := u.reg.Number, u.reg.Password
	u.spawnJob(func() {
		// Logins are paced for all users together; a shutdown ends the
		// wait (the dial then fails at once).
		_ = u.g.logins.Wait(u.g.ctx)
		c, err := u.dial(u.g.ctx, n, pw)
		if !u.postAlways(evDialed{t: t, c: c, err: err}) && c != nil {
			u.g.endConn(c)
		}
	})
}

// spawnJob runs f, a job whose result f posts as an event, on its own
// goroutine.
func (u *user) spawnJob(f func()) {
	u.jobs.Add(1)
	u.g.spawn(func() {
		defer u.jobs.Add(-1)
		f()
	})
}

// onDialed handles the end of a login.
func (u *user) onDialed(ev evDialed) {
	if ev.t != u.dialing {
		if ev.c != nil {
			u.endConn(ev.c, "login no longer wanted")
		}
		return
	}
	u.dialing = nil
	if ev.err == nil {
		u.applyLink(linkDialed{result: dialOK}, ev.c)
		return
	}
	var le *imipside.LoginError
	if errors.As(ev.err, &le) && (le.Code == wire.CodeWrongPassword || le.Code == wire.CodeIllegalUser) {
		u.logger().Warn("IMIP refused the credentials; not retrying until the user registers again", "code", int(le.Code))
		se, text := loginError(le.Code)
		u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal", Subject: "IMIP login failed",
			Body: "IMIP login failed: " + text + " Register again with the right number and password to reconnect."})
		u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "error", Error: se})
		u.applyLink(linkDialed{result: dialAuth}, nil)
		return
	}
	u.logger().Warn("IMIP login failed", "err", ev.err)
	u.applyLink(linkDialed{result: dialTransient}, nil)
}

// up makes c the live session: STAT, the gateway's presence, the roster
// sync.
func (u *user) up(c *imipConn) {
	u.conn, u.sess = c, c.sess
	c.adopt()
	u.loginTime = time.Now()
	u.sentStatus, u.sentText = "", ""
	if u.contacts == nil {
		u.contacts = make(map[wire.Number]contactPresence)
	}
	u.logger().Info("logged in to IMIP", "number", c.number)
	if !c.sess.ConfirmsMessages() {
		u.g.noAck.Do(func() {
			u.g.log.Warn("the IMIP server does not offer the mesg-ack extension: messages it pushes count as delivered once read from TCP (best effort)")
		})
	}
	u.updateStatus()
	u.sendGatewayPresence(u.bare)
	u.syncRoster(u.capBuddies(c.sess.Contacts()))
	u.flushOut()
}

// dropLive forgets the live session and its contacts' presence; its events
// are dropped from now on.
func (u *user) dropLive() {
	if u.conn != nil {
		u.conn.letGo()
		u.dropPending(u.conn)
	}
	u.conn, u.sess = nil, nil
	clear(u.contacts)
	u.contacts = nil
	u.sentStatus, u.sentText = "", ""
}

// endConn ends a session the loop has let go of (or never adopted) with
// DISC; the session closes itself once the server answers, or after a
// bound. It never waits.
func (u *user) endConn(c *imipConn, why string) {
	c.letGo()
	u.trackEnd(c.sess)
	if err := c.sess.Logout(); err != nil {
		u.logger().Debug("DISC", "err", err)
		c.sess.Kill()
	}
	u.logger().Info("logged out of IMIP", "why", why)
}

// onIMIPEvent handles an event of session c.
func (u *user) onIMIPEvent(c *imipConn, ev imipside.Event, at time.Time) {
	if _, ok := ev.(imipside.ClosedEvent); ok && c == u.draining {
		if c == u.conn {
			u.dropLive()
		}
		if u.releasing && !u.stopping {
			u.finishRelease()
		} else {
			u.finishShutdown()
		}
		return
	}
	if c != u.conn {
		return // a session the loop let go of
	}
	if ce, ok := ev.(imipside.ClosedEvent); ok {
		u.logger().Warn("IMIP session ended", "err", ce.Err)
		if u.reqBusy && u.checking == c.number {
			// The registration's own login of this number pushed it out;
			// that login's outcome decides what follows.
			u.lostDuringCheck = true
			return
		}
		u.applyLink(linkClosed{}, nil)
		return
	}
	u.onIMIP(ev, at)
}

// ---------------------------------------------------------------- presence

// onPresence handles a presence stanza from one of the user's resources.
func (u *user) onPresence(p xmppside.Presence) {
	if u.reg == nil {
		return
	}
	toGateway := p.To.Localpart() == ""
	switch p.Type {
	case "probe":
		if toGateway {
			u.sendGatewayPresence(p.From)
			return
		}
		n, err := roster.Number(p.To, u.g.cfg.Domain)
		if err != nil {
			return
		}
		u.sendContactPresence(n, p.From)
	case "subscribe", "subscribed", "unsubscribe", "unsubscribed":
		if toGateway {
			u.onGatewaySubscription(p)
			return
		}
		n, err := roster.Number(p.To, u.g.cfg.Domain)
		if err != nil {
			u.g.sendPresence(xmppside.Presence{ID: p.ID, From: p.To.Bare(), To: p.From, Type: "error", Error: malformedError()})
			return
		}
		if !u.allowSubscription(p) {
			return
		}
		u.onContactSubscription(n, p)
	}
}

// onGatewaySubscription handles the user's subscription stanzas to the
// gateway's own JID.
func (u *user) onGatewaySubscription(p xmppside.Presence) {
	switch p.Type {
	case "subscribe":
		u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "subscribed"})
		u.sendGatewayPresence(u.bare)
	case "unsubscribe":
		u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "unsubscribed"})
	}
}

// onAvailability runs a batch of availability presence through the
// presence machine and tells the link machine whether the user is there.
func (u *user) onAvailability(pend []pendingAvail) {
	fresh := u.res.apply(pend)
	if u.sess != nil {
		for _, full := range fresh {
			u.sendAllPresence(full)
		}
	}
	u.applyLink(linkWant{on: u.res.any()}, nil)
	u.updateStatus()
}

// onLinkUp handles a new component link. What was sent while the link was
// down is lost, so a logged-in user gets the presence of the gateway and of
// their online contacts again. The user's resources are known from before
// the outage: the gateway's probe asks the server for the live ones, and
// those that have not answered after ProbeTimeout are taken as gone (some
// servers answer a probe of an offline user with nothing at all).
func (u *user) onLinkUp(link uint64) {
	if u.stopping || u.releasing {
		return // the user is being logged out here: nothing to probe or send again
	}
	if u.res.linkUp(link) {
		u.arm(timerConfirm, u.g.cfg.ProbeTimeout)
	}
	if u.sess != nil {
		u.sendAllPresence(u.bare)
		if u.rosterStale {
			u.resyncRoster()
		}
	}
	u.flushIn()
}

// dropUnconfirmed forgets the resources that did not answer the probe.
func (u *user) dropUnconfirmed() {
	dropped := u.res.dropUnconfirmed()
	if dropped == 0 {
		return
	}
	u.logger().Info("resources did not answer the probe after the link came back", "dropped", dropped, "left", u.res.count())
	u.applyLink(linkWant{on: u.res.any()}, nil)
	u.updateStatus()
}

// maxStatusText bounds the status message sent in STAT: a longer one is
// cut (on a character boundary), so a huge XMPP status never makes a STAT
// block IMIP refuses.
const maxStatusText = 1024

// updateStatus sends STAT when the aggregate status changed.
func (u *user) updateStatus() {
	if u.sess == nil || !u.res.any() {
		return // no resource yet (a registration's grace period): keep the login's ONLINE
	}
	st, text := u.res.aggregate()
	text = truncateUTF8(text, maxStatusText)
	if st == u.sentStatus && text == u.sentText {
		u.disarm(timerStatus)
		return
	}
	if d := u.statusDelay(); d > 0 {
		u.arm(timerStatus, d) // the newest status goes then
		return
	}
	u.disarm(timerStatus)
	id, err := u.sess.SendStatus(st, text)
	if err != nil {
		u.logger().Warn("STAT not sent", "status", st, "err", err)
		return
	}
	u.track(id, pendingReq{kind: imipside.RequestSTAT})
	u.sentStatus, u.sentText = st, text
}

// sendGatewayPresence sends the gateway's own presence to to: available
// while logged in to IMIP.
func (u *user) sendGatewayPresence(to jid.JID) {
	p := xmppside.Presence{From: u.g.cfg.Domain, To: to, Type: "unavailable"}
	if u.sess != nil {
		p.Type = ""
	}
	u.g.sendPresence(p)
}

// sendContactPresence answers a probe for one contact from the cache.
func (u *user) sendContactPresence(n wire.Number, to jid.JID) {
	cp, ok := u.contacts[n]
	if !ok || u.sess == nil {
		cp = contactPresence{status: wire.StatusOffline}
	}
	p := statToPresence(cp.status, cp.text)
	p.From, p.To = u.g.contactJID(n), to
	if c, ok := u.list.Contact(n); ok && c.Nick != "" && p.Type == "" {
		p.Nick = c.Nick
	}
	u.g.sendPresence(p)
}

// sendAllPresence sends a newly available resource the gateway's presence
// and that of every online contact.
func (u *user) sendAllPresence(to jid.JID) {
	u.sendGatewayPresence(to)
	nums := make([]wire.Number, 0, len(u.contacts))
	for n, cp := range u.contacts {
		if cp.status != wire.StatusOffline {
			nums = append(nums, n)
		}
	}
	slices.SortFunc(nums, func(a, b wire.Number) int { return cmp.Compare(a, b) })
	for _, n := range nums {
		u.sendContactPresence(n, to)
	}
}

// offlineAll tells the user every online contact and the gateway went
// offline.
func (u *user) offlineAll(status string) {
	u.offlineContacts()
	u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "unavailable", Status: status})
}

// offlineContacts tells the user every online contact went offline, and
// forgets their presence.
func (u *user) offlineContacts() {
	for n, cp := range u.contacts {
		if cp.status != wire.StatusOffline {
			u.g.sendPresence(xmppside.Presence{From: u.g.contactJID(n), To: u.bare, Type: "unavailable"})
		}
	}
	clear(u.contacts)
}

// onShutdown tells an online user everything went offline and logs out.
// A session with messages sent and not confirmed yet is kept until it ends:
// the server answers DISC after them, so their answers are all in when it
// closes (within the session's logout bound), and none is sent twice after
// a restart.
func (u *user) onShutdown() {
	u.stopping = true
	u.timers.stop() // no grace, retry or delivery deadline acts during the logout
	if u.sess != nil {
		u.offlineAll("The IMIP gateway is shutting down.")
	}
	u.failRegistrations(errShuttingDown)
	if u.draining != nil {
		return // a hand-over's logout is under way: its end ends the user (onIMIPEvent)
	}
	if u.settling != nil {
		// A hand-over was settling: the stop ends the user instead.
		u.settling.then = u.shutdownLogout
		return
	}
	if u.settleIn(u.shutdownLogout) {
		return // shutdownLogout once settled (settleStep)
	}
	u.shutdownLogout()
}

// shutdownLogout logs the live session out and, once it ended (drain),
// finishShutdown.
func (u *user) shutdownLogout() {
	if u.drain() {
		return // finishShutdown when it ends (onIMIPEvent)
	}
	u.finishShutdown()
}

// drain logs the live session out (DISC) and keeps it until it ends: the
// server answers DISC after the answers to the MESGs sent before it, so
// they are all in when it closes (none is sent twice after a restart), and
// once it closed the IMIP server has let the number go, so that the next
// owner's login, or the restarted transport's, never meets this session
// still logged in (the server would end one of the two). The session ends
// by itself within its logout bound, answered or not; the gateway's Stop
// waits for it. It reports false when there is no session to log out.
func (u *user) drain() bool {
	if u.conn == nil || u.draining != nil {
		return false
	}
	if err := u.conn.sess.Logout(); err != nil {
		return false
	}
	u.draining = u.conn
	u.g.runs.add()
	return true
}

// endDrain forgets the session drain logged out, and lets the gateway's
// Stop go on.
func (u *user) endDrain() {
	if u.draining != nil {
		u.draining = nil
		u.g.runs.done()
	}
}

// finishShutdown ends the user for good.
func (u *user) finishShutdown() {
	u.endDrain()
	u.applyLink(linkStop{}, nil)
	u.timers.stop()
	u.mu.Lock()
	u.stopped = true
	u.mu.Unlock()
}

// popFront drops the first element of q without keeping it reachable from
// the backing array (a request keeps its context and reply channel, a
// roster job its contacts), and returns nil once q is empty, so an idle
// user holds no queue storage.
func popFront[T any](q []T) []T {
	var zero T
	q[0] = zero
	if len(q) == 1 {
		return nil
	}
	return q[1:]
}
