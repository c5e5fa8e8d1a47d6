package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// Registration implements xmppside.Registrar.
func (g *Gateway) Registration(ctx context.Context, who jid.JID) (string, bool, error) {
	reg, err := g.cfg.Store.Registration(ctx, who.Bare().String())
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("gateway: %w", err)
	}
	return string(reg.Number), true, nil
}

// Registration attempts: each one logs into IMIP, so nobody may use the
// gateway to guess IMIP passwords. Per JID, every attempt counts:
// registerBurst at once, then one per registerEvery. Per IMIP number, only
// refused logins count (the same budget), and the JID registered with that
// number is exempt: a stranger guessing a number's password wears out the
// number's budget for other strangers, never for its owner. At most
// maxLimiters keys are tracked; beyond that the idle ones (full again) are
// forgotten, and each new key forgets up to two idle ones on its way.
const (
	registerBurst = 5
	registerEvery = 12 * time.Second
	maxLimiters   = 10000
)

// allowRegister reports whether bare may try to register number now; owner
// says bare is registered with number already. An attempt allowed to a
// stranger holds one of the number's tokens until registerDone: the
// refusals are only counted when the logins end, and without the hold
// many JIDs guessing at once (each within its own budget) would all pass
// a number whose budget is a few guesses.
func (g *Gateway) allowRegister(bare string, number wire.Number, owner bool) bool {
	g.limMu.Lock()
	defer g.limMu.Unlock()
	if !owner {
		// A number without a limiter has had no refused login lately: it
		// has its whole budget, and looking does not make one.
		tokens := float64(registerBurst)
		if l := g.limiters["num:"+string(number)]; l != nil {
			tokens = l.Tokens()
		}
		if tokens-float64(g.regInFlight[number]) < 1 {
			return false
		}
	}
	if !g.limiter("jid:" + bare).Allow() {
		return false
	}
	if !owner {
		if g.regInFlight == nil {
			g.regInFlight = make(map[wire.Number]int)
		}
		g.regInFlight[number]++
	}
	return true
}

// registerDone releases what allowRegister held for an attempt that
// ended (its refusal, if any, already counted by registerRefused).
func (g *Gateway) registerDone(number wire.Number, owner bool) {
	if owner {
		return
	}
	g.limMu.Lock()
	defer g.limMu.Unlock()
	if g.regInFlight[number]--; g.regInFlight[number] <= 0 {
		delete(g.regInFlight, number)
	}
}

// registerRefused counts a login IMIP refused against number (unless bare
// owns it).
func (g *Gateway) registerRefused(bare string, number wire.Number, owner bool) {
	if owner {
		return
	}
	g.limMu.Lock()
	defer g.limMu.Unlock()
	g.limiter("num:" + string(number)).Allow()
}

// limiter returns the limiter of key, creating it. g.limMu is held.
func (g *Gateway) limiter(key string) *rate.Limiter {
	if l := g.limiters[key]; l != nil {
		return l
	}
	// Each new key looks at two others and forgets them if they are full
	// again (as good as new): the map stays near the keys in use, not
	// every JID that ever registered.
	swept := 0
	for k, l := range g.limiters {
		if swept == 2 {
			break
		}
		swept++
		if l.Tokens() >= registerBurst {
			delete(g.limiters, k)
		}
	}
	if len(g.limiters) >= maxLimiters {
		for k, l := range g.limiters {
			if l.Tokens() >= registerBurst {
				delete(g.limiters, k) // idle: as good as new
			}
		}
		if len(g.limiters) >= 2*maxLimiters {
			clear(g.limiters) // a flood of fresh keys: memory wins
		}
	}
	if g.limiters == nil {
		g.limiters = make(map[string]*rate.Limiter)
	}
	l := rate.NewLimiter(rate.Every(registerEvery), registerBurst)
	g.limiters[key] = l
	return l
}

// OptionAllowRemove is the registration option that lets the user's
// unsubscribe remove accepted contacts from their IMIP list.
const OptionAllowRemove = "allow_remove"

var _ xmppside.OptionRegistrar = (*Gateway)(nil)

// RegisterOptions implements xmppside.OptionRegistrar: the user may choose
// allow_remove, unless the administrator allowed removal for everyone.
func (g *Gateway) RegisterOptions(ctx context.Context, who jid.JID) ([]xmppside.RegisterOption, error) {
	if g.cfg.AllowRemove {
		return nil, nil
	}
	reg, err := g.cfg.Store.Registration(ctx, who.Bare().String())
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return []xmppside.RegisterOption{{
		Var:   OptionAllowRemove,
		Label: "Removing a contact from my roster also removes it from my IMIP list",
		Value: err == nil && reg.AllowRemove,
	}}, nil
}

// RegisterWithOptions implements xmppside.OptionRegistrar.
func (g *Gateway) RegisterWithOptions(ctx context.Context, who jid.JID, username, password string, options map[string]bool) error {
	var allow *bool
	if v, ok := options[OptionAllowRemove]; ok {
		allow = &v
	}
	return g.register(ctx, who, username, password, allow)
}

// Register implements xmppside.Registrar. It logs into IMIP with the
// credentials before storing them, on the user's run loop, so a session the
// user already has is replaced rather than doubled.
func (g *Gateway) Register(ctx context.Context, who jid.JID, username, password string) error {
	return g.register(ctx, who, username, password, nil)
}

// register checks and stores a registration; allowRemove nil keeps the
// user's previous choice.
func (g *Gateway) register(ctx context.Context, who jid.JID, username, password string, allowRemove *bool) error {
	n, err := wire.ParseNumber(username)
	if err != nil {
		return &xmppside.Error{Condition: stanza.NotAcceptable, Text: "An IMIP number is made of digits only."}
	}
	if password == "" {
		return &xmppside.Error{Condition: stanza.NotAcceptable, Text: "The password must not be empty."}
	}
	if who.Localpart() == "" {
		return &xmppside.Error{Condition: stanza.NotAllowed, Text: "Only user accounts can register."}
	}
	owner := false
	if reg, err := g.cfg.Store.Registration(ctx, who.Bare().String()); err == nil && reg.Number == n {
		owner = true
	}
	if !g.allowRegister(who.Bare().String(), n, owner) {
		return &xmppside.Error{Condition: stanza.PolicyViolation, Type: stanza.Wait,
			Text: "Too many registration attempts; wait a minute and try again."}
	}
	// The attempt's login ends before the answer (a refusal is counted
	// first), or with ctx, which cancels it.
	defer g.registerDone(n, owner)
	u := g.userFor(who.Bare(), true)
	if u == nil {
		return &xmppside.Error{Condition: stanza.ServiceUnavailable, Text: "The gateway is shutting down."}
	}
	return g.ask(ctx, u, true, func(reply chan error) event {
		return evRegister{ctx: ctx, number: n, password: password, allowRemove: allowRemove, owner: owner, reply: reply}
	})
}

// Unregister implements xmppside.Registrar.
func (g *Gateway) Unregister(ctx context.Context, who jid.JID) error {
	u := g.userFor(who.Bare(), false)
	if u == nil {
		return &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "You are not registered."}
	}
	return g.ask(ctx, u, false, func(reply chan error) event { return evUnregister{reply: reply} })
}

// ask posts a request to u's run loop and waits for its answer.
// A user value dropped meanwhile is replaced by the JID's current one
// (created when create is set).
func (g *Gateway) ask(ctx context.Context, u *user, create bool, mk func(chan error) event) error {
	reply := make(chan error, 1)
	if !u.post(mk(reply)) {
		nu := u
		if u.isGone() {
			nu = g.userFor(u.bare, create)
		}
		if nu == nil && !create {
			return &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "You are not registered."}
		}
		if nu == nil || nu == u || !nu.post(mk(reply)) {
			return &xmppside.Error{Condition: stanza.ResourceConstraint, Text: "Busy; try again shortly."}
		}
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gateway: %w", ctx.Err())
	}
}

// forward hands a registration request that reached a user value which
// was dropped meanwhile (unregistered, or a failed first registration) to
// the JID's current user value.
func (u *user) forward(ev event, reply chan error) {
	_, isRegister := ev.(evRegister)
	nu := u.g.userFor(u.bare, isRegister) // an unregistration creates nothing
	switch {
	case nu == nil && !isRegister:
		reply <- &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "You are not registered."}
	case nu == nil:
		reply <- &xmppside.Error{Condition: stanza.ServiceUnavailable, Text: "The gateway is shutting down."}
	case nu == u:
		reply <- &xmppside.Error{Condition: stanza.ResourceConstraint, Text: "Busy; try again shortly."}
	case !nu.post(ev):
		reply <- &xmppside.Error{Condition: stanza.ResourceConstraint, Text: "Busy; try again shortly."}
	}
}

// errShuttingDown answers a request the gateway can no longer carry out.
var errShuttingDown = &xmppside.Error{Condition: stanza.ServiceUnavailable, Text: "The gateway is shutting down."}

// nextRequest carries out the registration requests in the order they came:
// an unregistration at once, a registration by starting the login that
// checks its credentials (its result comes back as evRegisterDialed, and
// the requests behind it wait for it).
func (u *user) nextRequest() {
	for !u.reqBusy && len(u.reqs) > 0 {
		req := u.reqs[0]
		u.reqs = popFront(u.reqs)
		switch req := req.(type) {
		case evUnregister:
			req.reply <- u.onUnregister()
			if u.isGone() {
				u.forwardRequests()
				return
			}
		case evRegister:
			if err := req.ctx.Err(); err != nil {
				req.reply <- fmt.Errorf("gateway: %w", err)
				continue
			}
			u.reqBusy, u.checking = true, req.number
			u.spawnJob(func() {
				// The login ends with the request or with the gateway
				// (a shutdown does not wait for it).
				ctx, cancel := context.WithCancel(req.ctx)
				defer context.AfterFunc(u.g.ctx, cancel)()
				defer cancel()
				c, err := u.dial(ctx, req.number, req.password)
				if !u.postAlways(evRegisterDialed{req: req, c: c, err: err}) {
					if c != nil {
						u.g.endConn(c)
					}
					req.reply <- &xmppside.Error{Condition: stanza.ResourceConstraint, Text: "Busy; try again shortly."}
				}
			})
		}
	}
}

// forwardRequests hands the requests still queued on a user value that was
// dropped to the JID's current one.
func (u *user) forwardRequests() {
	reqs := u.reqs
	u.reqs = nil
	for _, r := range reqs {
		switch r := r.(type) {
		case evRegister:
			u.forward(r, r.reply)
		case evUnregister:
			u.forward(r, r.reply)
		}
	}
}

// failRegistrations answers every queued request with err.
func (u *user) failRegistrations(err error) {
	for _, r := range u.reqs {
		switch r := r.(type) {
		case evRegister:
			r.reply <- err
		case evUnregister:
			r.reply <- err
		}
	}
	u.reqs = nil
}

// onRegisterDialed finishes a registration once the login that checked its
// credentials ended: on success the credentials are stored and that login
// becomes the user's live session (the IMIP server keeps only the newest
// login of a number, so it replaces the old one); on failure what was
// registered before stays, and a live session stays live.
func (u *user) onRegisterDialed(ev evRegisterDialed) {
	if u.releasing {
		// Another instance has the user now: the check's session ends.
		u.reqBusy = false
		if ev.c != nil {
			u.endConn(ev.c, "user handed over")
		}
		ev.req.reply <- errMoving
		return
	}
	u.reqBusy = false
	defer u.nextRequest()
	lost := u.lostDuringCheck
	u.lostDuringCheck = false
	req := ev.req
	failed := func(err error) {
		u.logger().Info("registration not completed", "number", req.number, "err", err,
			"previous_kept", u.reg != nil, "session_kept", u.conn != nil && !lost)
		if ev.c != nil {
			u.endConn(ev.c, "registration not completed")
		}
		if lost {
			u.applyLink(linkClosed{}, nil)
		}
		if !u.isRegisteredUser() {
			u.g.dropUser(u)
			u.forwardRequests()
		}
		req.reply <- err
	}
	if ev.err != nil {
		var le *imipside.LoginError
		if errors.As(ev.err, &le) && (le.Code == wire.CodeWrongPassword || le.Code == wire.CodeIllegalUser) {
			u.g.registerRefused(u.key, req.number, req.owner)
		}
		failed(registerError(ev.err))
		return
	}
	if err := req.ctx.Err(); err != nil {
		// Too late: the requester was already answered with an error.
		failed(fmt.Errorf("gateway: %w", err))
		return
	}
	if u.link.state == linkStopped || u.g.ctx.Err() != nil {
		// The gateway is shutting down: the login that checked the
		// credentials must not become a session nobody logs out.
		failed(errShuttingDown)
		return
	}
	now := time.Now().UTC()
	reg := Registration{JID: u.key, Number: req.number, Password: req.password, Created: now, Updated: now}
	if u.reg != nil {
		reg.Created, reg.AllowRemove, reg.Group = u.reg.Created, u.reg.AllowRemove, u.reg.Group
	}
	if req.allowRemove != nil {
		reg.AllowRemove = *req.allowRemove
	}
	sctx, cancel := u.opCtx()
	defer cancel()
	if err := u.g.cfg.Store.PutRegistration(sctx, reg); err != nil {
		u.logger().Error("storing registration", "err", err)
		failed(fmt.Errorf("gateway: storing registration: %w", err))
		return
	}
	if u.reg == nil && u.g.cfg.Owners != nil {
		// A new registration: nobody could own the user before it, so
		// this takes it at once (its session is the registration's
		// login), unless another instance registered the JID meanwhile.
		if !u.acquire() {
			u.loaded = false // the next event loads it (and asks for it)
			failed(errMoving)
			return
		}
		// The others learn of it now: the user's slot may move to one of
		// them before it opens a connection again.
		u.g.cfg.Owners.Registered(sctx, u.key)
	}
	if u.reg != nil && u.reg.Number != req.number {
		// The old number's contacts leave the roster; the store dropped
		// them already, and the new number's sync starts from nothing.
		u.cleanRoster(false)
	}
	if u.conn != nil {
		// The new login's contacts report their presence afresh.
		u.offlineContacts()
		if u.conn.number == req.number {
			// Pushed out by the new login: its end is no news to the user.
			u.dropLive()
		}
	}
	u.reg = &reg
	u.g.setRegistered(u.key, true)
	// Reload: the number's contacts, and the list's removal option.
	u.loadContacts(sctx)
	u.logger().Info("registered", "number", req.number)
	// XEP-0100: the gateway asks for the user's presence.
	u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "subscribe"})
	if u.g.cfg.RegisterGrace < 0 && !u.link.want {
		// No grace: the checked login ends at once; the user's presence
		// will log in anew.
		u.syncRoster(u.capBuddies(ev.c.sess.Contacts()))
		u.endConn(ev.c, "registration checked")
		u.applyLink(linkCredentials{}, nil)
		req.reply <- nil
		return
	}
	// The user's presence reaches the gateway only once they approve its
	// subscription, usually a moment from now: the checked login is kept
	// that long (the grace state) instead of logging out and in again,
	// which contacts would see as a flap.
	u.applyLink(linkAdopt{}, ev.c)
	req.reply <- nil
}

func (u *user) isRegisteredUser() bool { return u.g.isRegistered(u.key) }

// registerError maps a failed login to the error the registration IQ
// returns.
func registerError(err error) error {
	var le *imipside.LoginError
	if errors.As(err, &le) {
		_, text := loginError(le.Code)
		return &xmppside.Error{Condition: codeInfo(le.Code).loginCond, Text: text}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &xmppside.Error{Condition: stanza.RemoteServerTimeout, Text: "The IMIP server did not answer in time."}
	}
	if errors.Is(err, wire.ErrSizeTooLarge) {
		// The server answered, with a block above the gateway's limit (a
		// huge contact list): not a network problem.
		return &xmppside.Error{Condition: stanza.NotAcceptable,
			Text: "The IMIP server's answer to the login is larger than this gateway accepts (its max_block_size); ask the gateway's administrator."}
	}
	return &xmppside.Error{Condition: stanza.RemoteServerNotFound, Text: "The IMIP server cannot be reached."}
}

// onUnregister closes the session, cleans the user's roster and deletes
// what is stored.
func (u *user) onUnregister() error {
	if u.reg == nil {
		return &xmppside.Error{Condition: stanza.RegistrationRequired, Text: "You are not registered."}
	}
	ctx, cancel := u.opCtx()
	defer cancel()
	if err := u.g.cfg.Store.DeleteRegistration(ctx, u.key); err != nil {
		u.logger().Error("deleting registration", "err", err)
		return fmt.Errorf("gateway: deleting registration: %w", err)
	}
	if own := u.g.cfg.Owners; own != nil {
		own.Forget(u.key) // the store dropped the ownership with the registration
	}
	u.applyLink(linkStop{}, nil)
	u.timers.stop()
	u.cleanRoster(true)
	u.sendGone(u.g.cfg.Domain)
	// The store dropped the queued messages with the registration: those
	// for IMIP go back to their senders, those from IMIP are gone.
	outq := u.outq
	u.outq = nil
	for _, om := range outq {
		om.done = true
		u.bounceOut(om, textError(stanza.Cancel, stanza.RegistrationRequired,
			"You unregistered from the IMIP gateway before the message was delivered."))
	}
	if n := len(u.inq) + u.spilled; n > 0 || u.spillStored {
		u.logger().Warn("unregistered with IMIP messages not yet delivered to XMPP", "dropped", n)
	}
	u.inq, u.spilled, u.spillStored = nil, 0, false
	u.g.setRegistered(u.key, false)
	u.g.dropUser(u)
	u.reg = nil
	u.res.reset()
	u.logger().Info("unregistered")
	return nil
}
