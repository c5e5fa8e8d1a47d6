package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// Defaults for zero Config fields.
const (
	DefaultInboxSize    = 128
	DefaultLoginTimeout = 20 * time.Second
	DefaultOpTimeout    = 15 * time.Second
	DefaultRetryMin     = 2 * time.Second
	DefaultRetryMax     = 5 * time.Minute
	DefaultRosterGroup  = "IMIP"
	// DefaultRegisterGrace is how long the session that checked a new
	// registration stays logged in, waiting for the user's presence.
	DefaultRegisterGrace = 30 * time.Second
	// DefaultProbeTimeout is how long a user's resource has to answer the
	// gateway's probe after the component link came back.
	DefaultProbeTimeout = 10 * time.Second
	// DefaultDeliveryTimeout bounds the wait for IMIP to confirm a message.
	DefaultDeliveryTimeout = 5 * time.Minute
	// DefaultHoldWrites is Config.HoldWrites' default.
	DefaultHoldWrites = 50 * time.Millisecond
)

// Config configures a Gateway.
type Config struct {
	Domain       jid.JID // the component's domain, e.g. imip.localhost
	Store        Store
	Dialer       Dialer
	Logger       *slog.Logger
	InboxSize    int           // events queued per user before stanzas are refused
	LoginTimeout time.Duration // bound on one IMIP login
	OpTimeout    time.Duration // bound on one IMIP request or XMPP send
	RetryMin     time.Duration // first delay before logging in again after a drop
	RetryMax     time.Duration // longest delay between login attempts
	RosterGroup  string        // roster group of IMIP contacts
	// RegisterGrace is how long the login that checked a registration is
	// kept, waiting for the user's presence (0: 30 s). Negative: the
	// checking login ends at once, and the user's presence logs in anew
	// (contacts see the user come, go and come back).
	RegisterGrace time.Duration
	// ProbeTimeout is how long, after the component link came back, a
	// resource known from before has to answer the gateway's probe before
	// it is taken as gone (default 10 s).
	ProbeTimeout time.Duration
	AllowRemove  bool // let users' unsubscribe remove accepted contacts
	// OutboxSize bounds the stanzas waiting for the component link
	// (default DefaultOutboxSize); beyond it stanzas are dropped and logged.
	OutboxSize int
	// DeliveryTimeout is how long a message for IMIP may wait for IMIP's
	// confirmation, from its acceptance, before it is bounced to its sender
	// (default DefaultDeliveryTimeout).
	DeliveryTimeout time.Duration
	// HoldWrites is how long the write of a message (either way) waits
	// for the other side's confirmation before it is done: the message
	// goes on at once, and one confirmed within HoldWrites is never
	// written (0: DefaultHoldWrites; negative: every message is written
	// before it goes on). A message from XMPP read less than HoldWrites
	// before the process is killed, that had not reached IMIP yet (its
	// user's IMIP session down or its MESG not yet written), is lost, as a
	// stanza the server wrote and the transport had not read (XEP-0114
	// has no acknowledgement); once its MESG is written, IMIP has it. One
	// from IMIP is never lost that way (the IMIP server sends it again, see
	// the mesg-ack extension; without mesg-ack it is written first).
	HoldWrites time.Duration
	// Limits are the per-user and gateway-wide rates (zero fields:
	// DefaultLimits).
	Limits Limits
	// Admins are the bare JIDs that may run the administrators' ad-hoc
	// commands (see adhoc.go).
	Admins []jid.JID
	// Owners, when set, decides which instance of a cluster owns each
	// user's IMIP session (see owners.go); nil: this one owns every user.
	Owners Ownership
	// HandoverTimeout bounds the wait for another instance to give up a
	// user this one needs (default DefaultHandoverTimeout).
	HandoverTimeout time.Duration
}

// Gateway bridges XMPP users to IMIP sessions. Its Handle* methods implement
// xmppside.Handler.
type Gateway struct {
	cfg  Config
	log  *slog.Logger
	xmpp XMPP

	mu         sync.Mutex
	users      map[string]*user // by bare JID, registered users only
	registered map[string]struct{}
	closing    bool
	runs       tracker    // run loops and helper goroutines in flight
	out        outbox     // every stanza sent goes through it
	commit     *committer // every store write of a user goes through it
	stats      *stats     // counters for monitoring (see Stats)
	// up says the component link is up (between HandleConnected and
	// HandleDisconnected).
	up atomic.Bool

	// link counts component links; availability presence is stamped with
	// the link it came on (see onLinkUp).
	link atomic.Uint64

	noAck     sync.Once     // the warning about a server without mesg-ack
	service   serviceName   // the IMIP service's name (see vcard.go)
	logins    *rate.Limiter // paces IMIP logins
	rosterOps *rate.Limiter // paces roster changes in users' rosters
	queued    []string      // users with queued messages, loaded at the first link-up
	// freeQueued are, with a cluster, the users nobody owns that have
	// queued messages: loaded when a presence of theirs comes here.
	freeQueued map[string]struct{}
	// ctx ends when Close starts: waits of helper goroutines end with it.
	ctx    context.Context
	cancel context.CancelFunc

	limMu    sync.Mutex
	limiters map[string]*rate.Limiter // registration attempts, by bare JID
	// regInFlight counts, per IMIP number, strangers' registration
	// logins that have not ended yet: each may still be refused, so each
	// holds one of the number's tokens (see allowRegister).
	regInFlight map[wire.Number]int

	onlineMu sync.Mutex
	online   map[string]struct{} // users whose IMIP session is live (admin commands)
}

var _ xmppside.Handler = (*Gateway)(nil)

// New returns a Gateway. It loads the set of registered users from the store.
// Attach the component with SetXMPP before it connects.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if cfg.Store == nil || cfg.Dialer == nil || cfg.Domain.Domainpart() == "" {
		return nil, errors.New("gateway: Config needs Domain, Store and Dialer")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.InboxSize <= 0 {
		cfg.InboxSize = DefaultInboxSize
	}
	if cfg.LoginTimeout <= 0 {
		cfg.LoginTimeout = DefaultLoginTimeout
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	switch {
	case cfg.HoldWrites == 0:
		cfg.HoldWrites = DefaultHoldWrites
	case cfg.HoldWrites < 0:
		cfg.HoldWrites = 0
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	if cfg.RegisterGrace == 0 {
		cfg.RegisterGrace = DefaultRegisterGrace
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.OutboxSize <= 0 {
		cfg.OutboxSize = DefaultOutboxSize
	}
	if cfg.HandoverTimeout <= 0 {
		cfg.HandoverTimeout = DefaultHandoverTimeout
	}
	if cfg.RosterGroup == "" {
		cfg.RosterGroup = DefaultRosterGroup
	}
	cfg.Domain = cfg.Domain.Domain()
	regs, err := cfg.Store.Registrations(ctx)
	if err != nil {
		return nil, fmt.Errorf("gateway: loading registrations: %w", err)
	}
	g := &Gateway{
		cfg:        cfg,
		log:        cfg.Logger,
		users:      make(map[string]*user),
		registered: make(map[string]struct{}, len(regs)),
		freeQueued: make(map[string]struct{}),
	}
	g.out.g = g
	g.stats = newStats()
	g.commit = newCommitter(cfg.Store, cfg.Logger, commitConfig{latency: &g.stats.storeLatency})
	g.logins = rate.NewLimiter(rate.Limit(cfg.Limits.LoginRate), cfg.Limits.LoginBurst)
	g.rosterOps = rate.NewLimiter(rate.Limit(cfg.Limits.RosterRate), cfg.Limits.RosterBurst)
	for _, r := range regs {
		g.registered[r.JID] = struct{}{}
	}
	if cfg.Owners == nil {
		// With a cluster, the users nobody owns are loaded as slots come
		// up (probeAndLoad): other instances may own the rest.
		queued, err := cfg.Store.QueuedJIDs(ctx)
		if err != nil {
			_ = g.commit.Close(ctx)
			return nil, fmt.Errorf("gateway: loading queued messages: %w", err)
		}
		g.queued = queued
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// loadQueued loads, once, the users with messages queued from before a
// restart, so that their messages flow as soon as the links allow.
func (g *Gateway) loadQueued() {
	g.mu.Lock()
	queued := g.queued
	g.queued = nil
	g.mu.Unlock()
	for _, k := range queued {
		bare, err := jid.Parse(k)
		if err != nil {
			continue
		}
		if u := g.userFor(bare, false); u != nil {
			u.postAlways(evLoad{})
		}
	}
}

// SetXMPP attaches the component the gateway sends through. Call it once,
// before the component connects.
func (g *Gateway) SetXMPP(x XMPP) { g.xmpp = x }

// Domain returns the gateway's domain.
func (g *Gateway) Domain() jid.JID { return g.cfg.Domain }

// isRegistered reports whether bare is registered.
// isClosing reports whether Stop or Close began.
func (g *Gateway) isClosing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

func (g *Gateway) isRegistered(bare string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.registered[bare]
	return ok
}

// userFor returns the user of a registered bare JID, creating its value on
// first use, or nil when bare is not registered or the gateway is closing.
func (g *Gateway) userFor(bare jid.JID, create bool) *user {
	key := bare.String()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return nil
	}
	if u := g.users[key]; u != nil {
		return u
	}
	if _, ok := g.registered[key]; !ok && !create {
		return nil
	}
	u := newUser(g, bare)
	g.users[key] = u
	return u
}

func (g *Gateway) setRegistered(bare string, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.registered[bare] = struct{}{}
	} else {
		delete(g.registered, bare)
	}
}

// dropUser forgets u if it is still the registered value for its JID.
// The value takes no new events after it; those still in its inbox run,
// and registration requests among them are forwarded (see forward).
// Called on u's run loop.
func (g *Gateway) dropUser(u *user) {
	u.endDrain() // its ClosedEvent will not reach a dropped value
	g.mu.Lock()
	if g.users[u.key] == u {
		delete(g.users, u.key)
	}
	g.mu.Unlock()
	u.mu.Lock()
	u.stopped, u.gone = true, true
	u.mu.Unlock()
}

// isGone reports whether the user value was dropped from the registry.
func (u *user) isGone() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.gone
}

// spawn runs f on its own goroutine; Close waits for it.
func (g *Gateway) spawn(f func()) {
	g.runs.add()
	go func() {
		defer g.runs.done()
		f()
	}()
}

// endConn ends a session no run loop will take (its user stopped) without
// waiting for the server.
func (g *Gateway) endConn(c *imipConn) {
	c.letGo()
	g.trackEnd(c.sess, nil)
	c.sess.Kill()
}

// doner is an IMIPSession that tells when it has ended
// (imipside.Session does).
type doner interface{ Done() <-chan struct{} }

// trackEnd counts sess in the gateway's Stop until it has ended (the
// server answered DISC and closed, or the session's own bound passed), and
// then calls ended, if not nil: with several instances, the user's next
// owner, or this instance's leave, must not let anyone log the number in
// while a session of it is still up here. It never waits.
func (g *Gateway) trackEnd(sess IMIPSession, ended func()) {
	d, ok := sess.(doner)
	if !ok {
		return
	}
	g.runs.add()
	go func() {
		<-d.Done()
		g.runs.done()
		if ended != nil {
			ended()
		}
	}()
}

// contactJID maps a number to its JID on the gateway.
func (g *Gateway) contactJID(n wire.Number) jid.JID { return roster.JID(n, g.cfg.Domain) }

// HandlePresence implements xmppside.Handler. It never blocks.
func (g *Gateway) HandlePresence(p xmppside.Presence) {
	if p.From.Domainpart() == "" || p.From.Localpart() == "" {
		return // presence from a server or a component: nothing to do
	}
	g.stats.stanzaIn.Add(1)
	if p.Type == "error" {
		g.log.Debug("presence error from user", "from", p.From, "to", p.To)
		return
	}
	var u *user
	if p.Type == "unavailable" {
		// Nothing to log out for a user not loaded (the answers to the
		// gateway's probes after a reconnect are mostly these): do not
		// load the user for it, unless it has messages waiting that
		// nobody delivers (see probeAndLoad).
		if u = g.loadedUser(p.From.Bare()); u == nil {
			if g.takeFreeQueued(p.From.Bare().String()) {
				if u = g.userFor(p.From.Bare(), false); u != nil {
					u.postAlways(evLoad{})
				}
			}
			return
		}
	} else {
		u = g.userFor(p.From.Bare(), false)
	}
	if u == nil {
		g.answerUnregisteredPresence(p)
		return
	}
	if p.Type == "" || p.Type == "unavailable" {
		u.postAvailability(p) // never dropped, duplicates merged
		return
	}
	if !u.post(evPresence{p: p}) {
		g.log.Warn("inbox full: presence dropped", "user", u.key, "type", p.Type)
	}
}

// loadedUser returns the user value of bare if there is one.
func (g *Gateway) loadedUser(bare jid.JID) *user {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.users[bare.String()]
}

// HandleMessage implements xmppside.Handler. It never blocks.
func (g *Gateway) HandleMessage(m xmppside.Message) {
	g.stats.stanzaIn.Add(1)
	if m.Type == "error" {
		if strings.HasPrefix(m.ID, "imip-") && m.From.Localpart() != "" {
			// The user's server bounced a message from IMIP after taking
			// it (the account is gone, or refuses the contact): IMIP has
			// no way to tell its sender, so the log does.
			cond := "unknown"
			if m.Error != nil {
				cond = string(m.Error.Condition)
			}
			g.log.Warn("message from IMIP bounced by the user's server", "user", m.From.Bare().String(),
				"from", m.To.String(), "id", m.ID, "condition", cond)
		}
		return // never answer an error with an error
	}
	if m.Type == "groupchat" || m.Type == "headline" {
		return
	}
	if m.From.Localpart() == "" || m.Body == "" {
		return // chat states, receipts and the like have no IMIP form
	}
	u := g.userFor(m.From.Bare(), false)
	if u == nil && g.isClosing() {
		if !g.holdForRestart(m) {
			g.log.Warn("message arrived while stopping and could not be kept", "user", m.From.Bare().String(), "id", m.ID)
			if g.isRegistered(m.From.Bare().String()) {
				g.bounce(m, stanza.Error{Type: stanza.Wait, Condition: stanza.ServiceUnavailable,
					Text: map[string]string{"": "The gateway is restarting; send the message again shortly."}})
			}
		}
		return
	}
	if u == nil {
		g.bounce(m, stanza.Error{Type: stanza.Auth, Condition: stanza.RegistrationRequired,
			Text: map[string]string{"": "Register with the IMIP gateway first."}})
		return
	}
	if !u.post(evMessage{m: m, at: time.Now()}) {
		if g.isClosing() && g.holdForRestart(m) {
			return
		}
		g.bounce(m, stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint,
			Text: map[string]string{"": "Too many messages queued; try again shortly."}})
	}
}

// answerUnregisteredPresence answers what an unregistered JID sends to the
// gateway: subscription requests are refused, probes answered unavailable.
func (g *Gateway) answerUnregisteredPresence(p xmppside.Presence) {
	switch p.Type {
	case "subscribe":
		g.sendPresence(xmppside.Presence{From: p.To.Bare(), To: p.From.Bare(), Type: "unsubscribed"})
	case "probe":
		g.sendPresence(xmppside.Presence{From: p.To.Bare(), To: p.From, Type: "unavailable"})
	case "", "unavailable", "subscribed", "unsubscribe", "unsubscribed":
	}
}

// HandleConnected implements xmppside.Handler: after every handshake the
// gateway probes each registered user, so their servers tell it who is
// online.
func (g *Gateway) HandleConnected(ctx context.Context) {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return
	}
	link := g.link.Add(1)
	g.up.Store(true)
	g.stats.compConnects.Add(1)
	live := make([]*user, 0, len(g.users))
	for _, u := range g.users {
		live = append(live, u)
	}
	g.mu.Unlock()
	for _, u := range live {
		u.postAlways(evLinkUp{link: link})
	}
	g.loadQueued()
	g.runs.add()
	go func() {
		defer g.runs.done()
		g.probeAndLoad(ctx)
	}()
}

// HandleDisconnected implements xmppside.Handler.
func (g *Gateway) HandleDisconnected(err error) {
	g.up.Store(false)
	g.mu.Lock()
	closing := g.closing
	g.mu.Unlock()
	if closing {
		g.log.Info("component link closed")
		return
	}
	g.log.Info("component link down; IMIP sessions kept until it is back", "err", err)
}

// Prompt implements xmppside.Gateway (XEP-0100).
func (g *Gateway) Prompt() (desc, prompt string) {
	return "Enter the IMIP number of the contact you would like to add.", "IMIP number"
}

// Translate implements xmppside.Gateway (XEP-0100): a number to its JID.
func (g *Gateway) Translate(input string) (jid.JID, error) {
	n, err := wire.ParseNumber(input)
	if err != nil {
		return jid.JID{}, &xmppside.Error{Condition: stanza.JIDMalformed, Text: "An IMIP number is made of digits only."}
	}
	return g.contactJID(n), nil
}

// sendPresence queues p in the outbox; a failure is logged.
func (g *Gateway) sendPresence(p xmppside.Presence) { g.out.push(outItem{p: &p}) }

// sendPresenceThen queues p; done gets the outcome (see outbox).
func (g *Gateway) sendPresenceThen(p xmppside.Presence, done func(error)) {
	g.out.push(outItem{p: &p, done: done})
}

// sendMessage queues m in the outbox; a failure is logged.
func (g *Gateway) sendMessage(m xmppside.Message) { g.out.push(outItem{m: &m}) }

// maxBounceExcerpt bounds the bytes of the refused message's body that a
// bounce echoes. The whole body could make the error larger than the
// server accepts on the component stream (it would close it, for every
// user): a body of tabs grows fivefold as XML.
const maxBounceExcerpt = 256

// bounce answers message m with an error of the same id, quoting at most
// maxBounceExcerpt bytes of its body ("…" marks a cut).
func (g *Gateway) bounce(m xmppside.Message, e stanza.Error) {
	body := m.Body
	if len(body) > maxBounceExcerpt {
		body = truncateUTF8(body, maxBounceExcerpt) + "…"
	}
	reply := xmppside.Message{ID: m.ID, From: m.To, To: m.From, Type: "error", Body: body, Error: &e}
	g.stats.bounces.Add(1)
	if reply.From.Domainpart() != g.cfg.Domain.Domainpart() {
		reply.From = g.cfg.Domain
	}
	g.sendMessage(reply)
}

// Stop logs every user out of IMIP, sends each online user unavailable
// presence from their contacts and the gateway, and waits for every run
// loop, bounded by ctx. The store stays open: a message from XMPP that
// arrives from then on (the XMPP server may have written it before it saw
// the component's stream close) is stored for after the restart, until
// Close. Stop may be called more than once.
func (g *Gateway) Stop(ctx context.Context) error {
	g.mu.Lock()
	if !g.closing {
		g.closing = true
		g.cancel()
		users := make([]*user, 0, len(g.users))
		for _, u := range g.users {
			users = append(users, u)
		}
		g.mu.Unlock()
		for _, u := range users {
			u.postShutdown()
		}
	} else {
		g.mu.Unlock()
	}
	if err := g.runs.wait(ctx); err != nil {
		g.mu.Lock()
		var busy []string
		for k, u := range g.users {
			u.mu.Lock()
			if u.running || u.jobs.Load() > 0 {
				busy = append(busy, fmt.Sprintf("%s (running %v, jobs %d, inbox %d)", k, u.running, u.jobs.Load(), len(u.inbox)))
			}
			u.mu.Unlock()
		}
		g.mu.Unlock()
		g.runs.mu.Lock()
		n := g.runs.n
		g.runs.mu.Unlock()
		g.log.Warn("gateway stop: still running", "goroutines", n, "users", len(busy), "first", busy[:min(len(busy), 5)])
		return fmt.Errorf("gateway: stop: %w", err)
	}
	return nil
}

// Close is Stop, then it closes the store writes: every write submitted
// before is committed (bounded by ctx).
func (g *Gateway) Close(ctx context.Context) error {
	if err := g.Stop(ctx); err != nil {
		_ = g.commit.Close(ctx)
		return fmt.Errorf("gateway: close: %w", err)
	}
	if err := g.commit.Close(ctx); err != nil {
		return fmt.Errorf("gateway: close: %w", err)
	}
	return nil
}

// holdForRestart stores a message from XMPP that arrived while the gateway
// stops, for IMIP after the restart (loadQueued sends it then); it reports
// whether it took it. The XMPP server counts a stanza written to the
// component's socket as delivered, so dropping it would lose it.
func (g *Gateway) holdForRestart(m xmppside.Message) bool {
	key := m.From.Bare().String()
	if !g.isRegistered(key) || len(m.Body) > wire.DefaultMaxSize-256 {
		return false
	}
	if g.cfg.Owners != nil && !g.cfg.Owners.Owns(key) {
		// Another instance serves the user (or will): it reads the
		// user's queue only when it takes the user, so the sender is
		// told to send it again instead.
		return false
	}
	n, err := roster.Number(m.To, g.cfg.Domain)
	if err != nil {
		return false
	}
	q := QueuedMessage{JID: key, Dir: ToIMIP, Peer: n, StanzaID: m.ID, Resource: m.From.Resourcepart(),
		Body: m.Body, Receipt: m.ReceiptRequest}
	log := g.log
	ok := g.commit.Submit([]Op{OpPutMessage{Msg: &q}}, func(err error) {
		if err != nil {
			log.Error("storing a message that arrived while stopping", "user", key, "id", m.ID, "err", err)
		}
	})
	if ok {
		log.Info("message arrived while stopping: stored for after the restart", "user", key, "id", m.ID)
	}
	return ok
}
