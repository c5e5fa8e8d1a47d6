package gateway

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// Events of a user's run loop.
type (
	evPresence     struct{ p xmppside.Presence } // subscriptions and probes
	evAvailability struct{}                      // see postAvailability
	evMessage      struct{ m xmppside.Message }
	evIMIP         struct {
		gen uint64
		ev  imipside.Event
	}
	evRegister struct {
		ctx         context.Context // the request's
		number      wire.Number
		password    string
		allowRemove *bool
		reply       chan error
	}
	evUnregister struct{ reply chan error }
	evRetry      struct{ gen uint64 }
	evGrace      struct{ gen uint64 }  // the registration's grace period ended
	evLinkUp     struct{ link uint64 } // the component link is up again
	evConfirm    struct{ seq uint64 }  // resources had their time to answer the probe
	evShutdown   struct{}
)

// resource is one available XMPP resource of the user.
type resource struct {
	show     string
	status   string
	priority int
	seq      uint64 // when it last changed, to break priority ties
	// unconfirmed: known from before the component link went down, and not
	// heard of since.
	unconfirmed bool
	// viaGateway: its presence reached the gateway's own JID (a broadcast),
	// so a lone unavailable to one contact JID is directed, not a logout.
	viaGateway bool
	// discoDone: its disco#info was answered (asked once per resource);
	// rosterx: it advertises XEP-0144.
	discoDone, rosterx bool
	// link: the component link its last presence came on.
	link uint64
}

// contactPresence is the last STAT of a contact.
type contactPresence struct {
	status wire.Status
	text   string
}

// sentMessage remembers an XMPP message sent as MESG, until IMIP could
// still refuse it.
type sentMessage struct {
	imipID uint64
	id     string
	from   jid.JID
	to     jid.JID
	body   string
}

// maxSentMessages bounds how many sent messages a user remembers for error
// reports.
const maxSentMessages = 32

// user is one registered Jabber user. Fields below mu are guarded by it;
// the rest belong to the run loop alone.
type user struct {
	g    *Gateway
	bare jid.JID
	key  string
	log  *slog.Logger

	mu      sync.Mutex
	inbox   []event
	running bool
	stopped bool
	gone    bool          // dropped from the registry
	inCall  bool          // the run loop waits for an IMIP answer (awaitIMIP)
	space   chan struct{} // closed when the inbox shrinks
	// avail holds availability presences not yet handled, by resource;
	// availQueued says an evAvailability is in the inbox for them.
	avail       map[string]pendingAvail
	availQueued bool
	availSeq    uint64

	loaded     bool
	reg        *Registration
	resources  map[string]resource
	seq        uint64
	sess       IMIPSession
	gen        uint64        // generation of sess; events of older sessions are ignored
	abandon    chan struct{} // closed when the run loop lets go of the newest dialed session
	loginTime  time.Time
	sentStatus wire.Status
	sentText   string
	contacts   map[wire.Number]contactPresence
	list       *roster.List
	sent       []sentMessage
	held       []xmppside.Message // IMIP messages kept while the component link is down
	// rosterStale: a roster push did not reach the user; push again.
	rosterStale bool
	authFailed  bool
	retry       *time.Timer
	grace       *time.Timer // ends a session kept after registration
	confirm     *time.Timer // drops resources that did not answer the probe
	confirmSeq  uint64
	retryDelay  time.Duration
}

func newUser(g *Gateway, bare jid.JID) *user {
	key := bare.String()
	return &user{g: g, bare: bare, key: key, log: g.log.With("user", key)}
}

// handle runs one event on the run loop.
func (u *user) handle(ev event) {
	if !u.loaded {
		u.load()
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
		u.onMessage(ev.m)
	case evIMIP:
		if ev.gen == u.gen && u.sess != nil {
			u.onIMIP(ev.ev)
		}
	case evRegister:
		if u.isGone() {
			u.forward(ev, ev.reply)
			return
		}
		ev.reply <- u.onRegister(ev.ctx, ev.number, ev.password, ev.allowRemove)
	case evUnregister:
		if u.isGone() {
			u.forward(ev, ev.reply)
			return
		}
		ev.reply <- u.onUnregister()
	case evRetry:
		if ev.gen != u.gen {
			return
		}
		u.retry = nil
		if u.sess == nil && len(u.resources) > 0 {
			u.login()
		}
	case evGrace:
		if ev.gen != u.gen {
			return
		}
		u.grace = nil
		if u.sess != nil && len(u.resources) == 0 {
			u.logout("no presence within the registration's grace period")
		}
	case evLinkUp:
		u.onLinkUp(ev.link)
	case evConfirm:
		if ev.seq == u.confirmSeq {
			u.dropUnconfirmed()
		}
	case evShutdown:
		u.onShutdown()
	}
}

// load reads the user's registration and contacts from the store.
func (u *user) load() {
	ctx, cancel := context.WithTimeout(context.Background(), u.g.cfg.OpTimeout)
	defer cancel()
	reg, err := u.g.cfg.Store.Registration(ctx, u.key)
	if err != nil {
		u.list = roster.New(roster.Options{AllowRemove: u.g.cfg.AllowRemove}, nil)
		if !errors.Is(err, ErrNotFound) {
			// Not loaded: the next event tries again.
			u.log.Error("loading registration", "err", err)
			return
		}
		u.loaded = true
		return
	}
	u.loaded = true
	u.reg = &reg
	u.loadContacts(ctx)
}

func (u *user) loadContacts(ctx context.Context) {
	cs, err := u.g.cfg.Store.Contacts(ctx, u.key)
	if err != nil {
		u.log.Error("loading contacts", "err", err)
	}
	allow := u.g.cfg.AllowRemove
	if u.reg != nil && u.reg.AllowRemove {
		allow = true
	}
	u.list = roster.New(roster.Options{AllowRemove: allow}, cs)
}

// opCtx bounds one network operation.
func (u *user) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), u.g.cfg.OpTimeout)
}

// aggregate returns the IMIP status that stands for the user's resources:
// the highest priority resource's, the most recently changed on a tie.
func (u *user) aggregate() (wire.Status, string) {
	var best *resource
	for _, r := range u.resources {
		if best == nil || r.priority > best.priority || (r.priority == best.priority && r.seq > best.seq) {
			best = &r
		}
	}
	if best == nil {
		return wire.StatusOffline, ""
	}
	return showToStatus(best.show), best.status
}

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

// onAvailability tracks the user's resources: the first available one logs
// in, a change updates STAT, the last unavailable one logs out.
func (u *user) onAvailability(pend []pendingAvail) {
	hadResources := len(u.resources) > 0
	var fresh []jid.JID // resources new since the last batch
	for _, pa := range pend {
		if full, isNew := u.applyAvailability(pa.p, pa.toGateway, pa.link); isNew {
			fresh = append(fresh, full)
		}
	}
	switch {
	case len(u.resources) == 0:
		// Only when a resource left: a bare unavailable while none is
		// known (servers send one in answer to presence from a JID that
		// is not subscribed yet) must not end a registration's grace.
		if hadResources {
			u.logout("last resource unavailable")
		}
	case u.sess == nil:
		if u.retry == nil {
			u.login()
		}
	default:
		for _, full := range fresh {
			u.sendAllPresence(full)
		}
		u.updateStatus()
	}
}

// applyAvailability records one availability presence of a resource and
// reports whether it is a resource the gateway did not know.
func (u *user) applyAvailability(p xmppside.Presence, toGateway bool, link uint64) (jid.JID, bool) {
	res := p.From.Resourcepart()
	if p.Type == "unavailable" {
		if !toGateway && u.broadcastSeen(res) {
			// Directed unavailable to one contact ("invisible to X"): IMIP
			// has no per-contact presence, and the user is still online.
			return jid.JID{}, false
		}
		if res == "" {
			clear(u.resources)
		} else {
			delete(u.resources, res)
		}
		return jid.JID{}, false
	}
	if u.resources == nil {
		u.resources = make(map[string]resource, 1)
	}
	u.seq++
	old, existed := u.resources[res]
	r := resource{show: p.Show, status: p.Status, priority: p.Priority, seq: u.seq,
		viaGateway: toGateway || old.viaGateway, discoDone: old.discoDone, rosterx: old.rosterx, link: link}
	if existed && old.show == r.show && old.status == r.status && old.priority == r.priority {
		if link >= old.link {
			old.unconfirmed = false // it answered the probe, if one was asked
			old.link = link
		}
		old.viaGateway = r.viaGateway
		u.resources[res] = old
		return jid.JID{}, false // the same presence again, through another contact's JID
	}
	u.resources[res] = r
	return p.From, !existed
}

// broadcastSeen reports whether the presence of resource res (every
// resource, for the bare JID) has reached the gateway's own JID, so that an
// unavailable sent to one contact JID only is a directed one.
func (u *user) broadcastSeen(res string) bool {
	if res != "" {
		r, ok := u.resources[res]
		return ok && r.viaGateway
	}
	for _, r := range u.resources {
		if r.viaGateway {
			return true
		}
	}
	return false
}

// onLinkUp handles a new component link. What was sent while the link was
// down is lost, so a logged-in user gets the presence of the gateway and of
// their online contacts again. The user's resources are known from before
// the outage: the gateway's probe asks the server for the live ones, and
// those that have not answered after ProbeTimeout are taken as gone (some
// servers answer a probe of an offline user with nothing at all).
func (u *user) onLinkUp(link uint64) {
	marked := false
	for k, r := range u.resources {
		// A presence that came on this link already answered; a resource
		// whose presence never reached the gateway's own JID cannot answer
		// the gateway's probe, and is kept.
		if r.link < link && r.viaGateway {
			r.unconfirmed = true
			u.resources[k] = r
			marked = true
		}
	}
	if marked {
		u.confirmSeq++
		seq := u.confirmSeq
		if u.confirm != nil {
			u.confirm.Stop()
		}
		u.confirm = time.AfterFunc(u.g.cfg.ProbeTimeout, func() { u.postAlways(evConfirm{seq: seq}) })
	}
	if u.sess != nil {
		u.sendAllPresence(u.bare)
		if u.rosterStale {
			u.resyncRoster()
		}
	}
	u.flushHeld()
}

// dropUnconfirmed forgets the resources that did not answer the probe, and
// logs out when none is left.
func (u *user) dropUnconfirmed() {
	u.confirm = nil
	dropped := 0
	for k, r := range u.resources {
		if r.unconfirmed {
			delete(u.resources, k)
			dropped++
		}
	}
	if dropped == 0 {
		return
	}
	u.log.Info("resources did not answer the probe after the link came back", "dropped", dropped, "left", len(u.resources))
	if len(u.resources) == 0 {
		u.logout("no resource answered the probe")
		return
	}
	u.updateStatus()
}

// updateStatus sends STAT when the aggregate status changed.
func (u *user) updateStatus() {
	if u.sess == nil || len(u.resources) == 0 {
		return // no resource yet (a registration's grace period): keep the login's ONLINE
	}
	st, text := u.aggregate()
	if st == u.sentStatus && text == u.sentText {
		return
	}
	ctx, cancel := u.opCtx()
	defer cancel()
	if err := u.awaitIMIP(func() error { return u.sess.SetStatus(ctx, st, text) }); err != nil {
		u.log.Warn("STAT failed", "status", st, "err", err)
		return
	}
	u.sentStatus, u.sentText = st, text
}

// awaitIMIP runs a request that waits for the IMIP server's answer. The
// session's reader must be able to read that answer, so while the run loop
// waits the reader may queue events past the usual bound instead of
// waiting for room (see postWait).
func (u *user) awaitIMIP(call func() error) error {
	u.mu.Lock()
	u.inCall = true
	if u.space != nil {
		close(u.space) // wake a reader waiting for room: it may go on now
		u.space = nil
	}
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.inCall = false
		u.mu.Unlock()
	}()
	return call()
}

// login dials IMIP for the user's registration.
func (u *user) login() {
	if u.reg == nil || u.authFailed {
		return
	}
	u.stopRetry()
	sess, err := u.dial(u.reg.Number, u.reg.Password)
	if err != nil {
		u.loginFailed(err)
		return
	}
	u.adopt(sess)
}

// dial logs number into IMIP with a fresh session generation.
func (u *user) dial(number wire.Number, password string) (IMIPSession, error) {
	u.gen++
	gen := u.gen
	// abandon is closed by the run loop when it lets go of this session
	// (dropSession), before it calls Disconnect or Close. Those wait for the
	// session's reader, so the reader must never wait on the run loop then:
	// events of an abandoned session are dropped (they would be ignored
	// anyway), and the ClosedEvent, one per session, never waits for room.
	abandon := make(chan struct{})
	h := imipside.HandlerFunc(func(ev imipside.Event) {
		select {
		case <-abandon:
			return
		default:
		}
		if _, ok := ev.(imipside.ClosedEvent); ok {
			u.postAlways(evIMIP{gen: gen, ev: ev})
			return
		}
		u.postWait(evIMIP{gen: gen, ev: ev}, abandon)
	})
	ctx, cancel := context.WithTimeout(context.Background(), u.g.cfg.LoginTimeout)
	defer cancel()
	sess, err := u.g.cfg.Dialer.Dial(ctx, number, password, h)
	if err != nil {
		close(abandon)
		return nil, err
	}
	u.abandon = abandon
	return sess, nil
}

// adopt makes sess the user's live session: STAT, the gateway's presence,
// and the roster sync.
func (u *user) adopt(sess IMIPSession) {
	u.stopRetry()
	u.sess = sess
	u.loginTime = time.Now()
	u.retryDelay = 0
	u.sentStatus, u.sentText = "", ""
	if u.contacts == nil {
		u.contacts = make(map[wire.Number]contactPresence)
	}
	u.log.Info("logged in to IMIP", "number", u.reg.Number)
	u.updateStatus()
	u.sendGatewayPresence(u.bare)
	u.syncRoster(sess.Contacts())
}

// loginFailed tells the user why a login failed, and retries unless the
// credentials were refused.
func (u *user) loginFailed(err error) {
	var le *imipside.LoginError
	if errors.As(err, &le) && (le.Code == wire.CodeWrongPassword || le.Code == wire.CodeIllegalUser) {
		u.authFailed = true
		u.log.Warn("IMIP refused the credentials; not retrying until the user registers again", "code", int(le.Code))
		text := "IMIP login failed: wrong password. Register again with the right password to reconnect."
		if le.Code == wire.CodeIllegalUser {
			text = "IMIP login failed: the IMIP server does not know this number. Register again with a valid number."
		}
		_ = u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal", Subject: "IMIP login failed", Body: text})
		u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "error", Error: loginError(le.Code)})
		return
	}
	u.log.Warn("IMIP login failed; will retry", "err", err)
	u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "unavailable",
		Status: "Cannot reach the IMIP network; retrying."})
	u.scheduleRetry()
}

// scheduleRetry posts a login retry after an exponential, jittered delay. It
// uses a runtime timer: no goroutine waits meanwhile.
func (u *user) scheduleRetry() {
	if len(u.resources) == 0 {
		return
	}
	u.retryDelay = nextDelay(u.retryDelay, u.g.cfg.RetryMin, u.g.cfg.RetryMax)
	gen := u.gen
	u.stopRetry()
	u.retry = time.AfterFunc(u.retryDelay, func() {
		// Not post: a retry refused by a full inbox would be lost, and the
		// user would stay offline while online.
		u.postAlways(evRetry{gen: gen})
	})
}

func (u *user) stopRetry() {
	if u.retry != nil {
		u.retry.Stop()
		u.retry = nil
	}
}

// logout ends the IMIP session after the user's last resource left.
func (u *user) logout(why string) {
	u.stopRetry()
	u.stopGrace()
	u.retryDelay = 0
	if u.sess == nil {
		return
	}
	u.endSession(u.sess)
	u.log.Info("logged out of IMIP", "why", why)
}

// endSession lets go of sess, the live or newest dialed session (its
// events are dropped from now on), and ends it with DISC, or Close when
// that fails.
func (u *user) endSession(sess IMIPSession) {
	u.dropSession()
	ctx, cancel := u.opCtx()
	defer cancel()
	if err := sess.Disconnect(ctx); err != nil {
		u.log.Debug("DISC", "err", err)
		_ = sess.Close()
	}
}

// dropSession forgets the live (or newest dialed) session and its
// contacts' presence. Call it before Disconnect or Close of that session.
func (u *user) dropSession() {
	if u.abandon != nil {
		close(u.abandon)
		u.abandon = nil
	}
	u.sess = nil
	u.gen++
	clear(u.contacts)
	u.contacts = nil
	u.sent = nil
	u.sentStatus, u.sentText = "", ""
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
// offline, and forgets their presence.
func (u *user) offlineAll(status string) {
	for n, cp := range u.contacts {
		if cp.status != wire.StatusOffline {
			u.g.sendPresence(xmppside.Presence{From: u.g.contactJID(n), To: u.bare, Type: "unavailable"})
		}
	}
	u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "unavailable", Status: status})
}

// onShutdown logs out and tells an online user everything went offline.
func (u *user) onShutdown() {
	u.stopRetry()
	if u.sess != nil {
		u.offlineAll("The IMIP gateway is shutting down.")
		u.logout("shutdown")
	}
}
