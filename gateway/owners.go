package gateway

// Several instances of the gateway on one store (internal/cluster decides,
// through the database, which instance owns each user's IMIP session). A
// user value loads only once its instance owns the user; an instance asked
// for a user it owns logs the user out of IMIP, writes what it held and
// gives the user up; one that finds a user owned elsewhere waits for the
// owner to give it up.

import (
	"context"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/xmppside"
)

// DefaultHandoverTimeout bounds the wait for another instance to give a
// user up (Config.HandoverTimeout).
const DefaultHandoverTimeout = 10 * time.Second

// Ownership decides which instance of a cluster owns each user's IMIP
// session. Its methods block on the database; the gateway calls them from
// a user's run loop (as it reads the store there) or from goroutines of
// its own.
type Ownership interface {
	// Acquire makes this instance the owner of bareJID, asking a live
	// owner to release it and waiting for that until ctx ends. took
	// reports whether the user was not this instance's already.
	Acquire(ctx context.Context, bareJID string) (took bool, err error)
	// Release gives bareJID up, once its IMIP session is over and its
	// writes are done.
	Release(ctx context.Context, bareJID string) error
	// ProbeSet returns the registered users this instance probes after a
	// component connection came up: those nobody owns and its own.
	ProbeSet(ctx context.Context) ([]string, error)
	// QueuedFree returns the users with queued messages whom nobody owns.
	QueuedFree(ctx context.Context) ([]string, error)
}

// evRelease: another instance asked for the user.
type evRelease struct{}

func (evRelease) isEvent() {}

// errMoving answers what a user not owned here asks while its owner has
// not given it up.
var errMoving = &xmppside.Error{Condition: stanza.ResourceConstraint,
	Text: "Your IMIP session is moving between gateway instances; try again shortly."}

// acquire makes this instance the user's owner (load calls it); it
// reports false when another instance kept the user.
func (u *user) acquire() bool {
	own := u.g.cfg.Owners
	if own == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), u.g.cfg.HandoverTimeout)
	defer cancel()
	took, err := own.Acquire(ctx, u.key)
	if err != nil {
		u.logger().Warn("cluster: user not taken", "err", err)
		return false
	}
	if took {
		// Its resources are unknown here: the server tells them in its
		// answer to a probe. Messages the user sends meanwhile wait for
		// the IMIP session (see acceptsWithoutResource).
		u.takenAt = time.Now()
		u.g.stats.usersTaken.Add(1)
		u.g.sendPresence(xmppside.Presence{From: u.g.cfg.Domain, To: u.bare, Type: "probe"})
	}
	return true
}

// recentlyTaken reports whether the user came from another instance (or
// from none) less than ProbeTimeout ago: its resources may not be known
// yet, and a message from one of them is taken for IMIP rather than
// refused as from a user who sent no presence.
func (u *user) recentlyTaken() bool {
	return !u.takenAt.IsZero() && time.Since(u.takenAt) < u.g.cfg.ProbeTimeout
}

// refuseUnowned answers an event of a user whom another instance kept:
// what has a sender is told to try again; the rest waits for the next
// event, which asks again.
func (u *user) refuseUnowned(ev event) {
	switch ev := ev.(type) {
	case evMessage:
		u.g.bounce(ev.m, textError(stanza.Wait, stanza.ResourceConstraint, errMoving.Text))
	case evRegister:
		ev.reply <- errMoving
	case evUnregister:
		ev.reply <- errMoving
	case evCommand:
		ev.reply <- cmdReply{err: errMoving}
	case evCard:
		ev.reply <- ""
	}
}

// ReleaseUser is called when another instance asks for bareJID: the
// user's run loop logs it out of IMIP, writes what it held, and gives it
// up (Ownership.Release).
func (g *Gateway) ReleaseUser(bareJID string) {
	bare, err := jid.Parse(bareJID)
	if err != nil {
		return
	}
	u := g.userFor(bare, false)
	if u == nil {
		// Not registered here, or stopping: the instance's leave frees
		// every user it owned.
		return
	}
	u.postAlways(evRelease{})
}

// onRelease starts the hand-over: the IMIP session logs out, and once
// its answers are in (the MESGs sent before it are confirmed or not), the
// held writes are done and the user is given up (finishRelease).
func (u *user) onRelease() {
	if u.releasing {
		return
	}
	u.releasing = true
	u.logger().Info("cluster: handing the user over to another instance")
	u.failRegistrations(errMoving)
	if u.conn != nil && u.pendingMESG() {
		u.draining = u.conn
		if err := u.conn.sess.Logout(); err == nil {
			return // finishRelease when it ends (onIMIPEvent)
		}
		u.draining = nil
	}
	u.finishRelease()
}

// finishRelease stops the user here: the link stops (the session, if
// any, logs out), the held writes go to the store at once, and a barrier
// Submit behind them says when they are all written.
func (u *user) finishRelease() {
	u.draining = nil
	u.applyLink(linkStop{}, nil)
	u.timers.stop()
	for _, om := range u.outq {
		u.g.commit.Expedite(om.pend)
	}
	for _, im := range u.inq {
		u.g.commit.Expedite(im.pend)
	}
	u.released = true
	u.g.dropUser(u)
	// The user is given up once the barrier behind its writes is done
	// (its done runs on the committer: the release goes on a goroutine).
	// When the committer is closing, the instance's leave frees the user.
	g, key, log := u.g, u.key, u.logger()
	u.g.commit.Submit(nil, func(error) {
		g.stats.usersGiven.Add(1)
		g.spawn(func() {
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
			defer cancel()
			if err := g.cfg.Owners.Release(ctx, key); err != nil {
				log.Warn("cluster: releasing the user", "err", err)
			}
		})
	})
}

// afterRelease passes an event that came after the user was given up to
// the user's next value here (which asks for the user again): stanzas
// still routed here after the hand-over bring the user back.
func (u *user) afterRelease(ev event) {
	switch ev.(type) {
	case evMessage, evPresence, evCommand, evCard, evRegister, evUnregister:
	case evAvailability:
		// The presences wait beside the inbox of this value.
		for _, p := range u.takeAvailability() {
			if nu := u.g.userFor(u.bare, false); nu != nil && nu != u {
				nu.postAvailability(p.p)
			}
		}
		return
	default:
		return
	}
	nu := u.g.userFor(u.bare, false)
	if nu == nil || nu == u || !nu.post(ev) {
		u.refuseUnowned(ev)
	}
}

// probeSet returns the users to probe after a component connection came
// up: every registered user, or with a cluster those nobody owns and this
// instance's.
func (g *Gateway) probeSet(ctx context.Context) []string {
	if g.cfg.Owners == nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		users := make([]string, 0, len(g.registered))
		for k := range g.registered {
			users = append(users, k)
		}
		return users
	}
	users, err := g.cfg.Owners.ProbeSet(ctx)
	if err != nil {
		g.log.Warn("cluster: users to probe", "err", err)
	}
	return users
}

// SlotConnected is called when another component connection of this
// instance came up (with a cluster, one per slot it holds beyond the
// first): the users whose stanzas now come here are probed, and the free
// users with queued messages loaded.
func (g *Gateway) SlotConnected(ctx context.Context) {
	if g.isClosing() {
		return
	}
	g.spawn(func() { g.probeAndLoad(ctx) })
}

// probeAndLoad probes the users of probeSet and, with a cluster, loads the
// free users with queued messages.
func (g *Gateway) probeAndLoad(ctx context.Context) {
	if own := g.cfg.Owners; own != nil {
		queued, err := own.QueuedFree(ctx)
		if err != nil {
			g.log.Warn("cluster: users with queued messages", "err", err)
		}
		g.mu.Lock()
		g.queued = append(g.queued, queued...)
		g.mu.Unlock()
		g.loadQueued()
	}
	for _, k := range g.probeSet(ctx) {
		to, err := jid.Parse(k)
		if err != nil {
			continue
		}
		if err := g.xmpp.SendPresence(ctx, xmppside.Presence{From: g.cfg.Domain, To: to, Type: "probe"}); err != nil {
			g.log.Debug("probe not sent", "user", k, "err", err)
			return
		}
	}
}
