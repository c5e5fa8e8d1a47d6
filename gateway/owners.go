package gateway

// Several instances of the gateway on one store (internal/cluster decides,
// through the database, which instance owns each user's IMIP session). A
// user value loads only once its instance owns the user; an instance asked
// for a user it owns logs the user out of IMIP, writes what it held and
// gives the user up; one that finds a user owned elsewhere waits for the
// owner to give it up.

import (
	"context"
	"fmt"
	"slices"
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
	// QueuedFree returns the users with queued messages whom nobody owns.
	QueuedFree(ctx context.Context) ([]string, error)
	// Owns reports whether this instance owns bareJID (as far as it
	// knows without asking the database).
	Owns(bareJID string) bool
	// Forget drops what the instance knows of bareJID's ownership: the
	// registration was deleted, and the ownership with it.
	Forget(bareJID string)
	// Registered tells the other instances that bareJID registered here
	// (they add it to their registered users, see AddRegistered).
	Registered(ctx context.Context, bareJID string)
}

// Events of the hand-over.
type (
	// evRelease: another instance asked for the user.
	evRelease struct{}
	// evReleaseCheck: look again whether the hand-over can end (a job
	// was in flight, or the store refused a barrier).
	evReleaseCheck struct{}
	// evReleaseBarrier: the barrier Submit behind the user's writes came
	// back.
	evReleaseBarrier struct{ err error }
)

func (evReleaseCheck) isEvent()   {}
func (evReleaseBarrier) isEvent() {}
func (evRelease) isEvent()        {}

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
	// Bounded, and over when the gateway stops (a stop must not wait
	// for another instance).
	ctx, cancel := context.WithTimeout(u.g.ctx, u.g.cfg.HandoverTimeout)
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

// takeFreeQueued reports whether bare was noted as a free user with
// queued messages, and forgets it.
func (g *Gateway) takeFreeQueued(bare string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.freeQueued[bare]; !ok {
		return false
	}
	delete(g.freeQueued, bare)
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
	case evAvailability:
		// Dropped: the owner has the user, and it is probed when it moves.
		u.takeAvailability()
	}
}

// ReleaseUser is called when another instance asks for bareJID, which
// this one owns: the user's run loop logs it out of IMIP, writes what it
// held, and gives it up (Ownership.Release). A user with no value here
// has nothing running: it is given up at once.
func (g *Gateway) ReleaseUser(bareJID string) {
	bare, err := jid.Parse(bareJID)
	if err != nil {
		return
	}
	if g.isClosing() {
		return // the instance's leave frees every user it owned
	}
	if u := g.loadedUser(bare); u != nil && u.postAlways(evRelease{}) {
		return
	}
	g.spawn(func() {
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.OpTimeout) // over at a stop, as above
		defer cancel()
		if err := g.cfg.Owners.Release(ctx, bareJID); err != nil {
			g.log.Warn("cluster: releasing a user", "user", bareJID, "err", err)
			return
		}
		g.stats.usersGiven.Add(1)
		g.sendPresence(xmppside.Presence{From: g.cfg.Domain, To: bare, Type: "probe"})
	})
}

// onRelease starts the hand-over: the IMIP session logs out, and once
// its answers are in (the MESGs sent before it are confirmed or not), the
// link stops and the held writes are done (finishRelease).
func (u *user) onRelease() {
	if u.releasing || u.stopping {
		return // under way already, or the instance stops (its leave frees the user)
	}
	u.releasing = true
	u.timers.stop() // no grace, retry or delivery deadline acts during the hand-over
	u.logger().Info("cluster: handing the user over to another instance")
	u.failRegistrations(errMoving)
	if u.sess != nil {
		// The next owner shows the contacts online again as its login
		// reports them; one that went offline meanwhile must not stay
		// shown online from here.
		u.offlineContacts()
	}
	if u.settleIn(u.releaseLogout) {
		return // releaseLogout once settled (settleStep)
	}
	u.releaseLogout()
}

// releaseLogout logs the live session out and, once it ended (drain),
// finishRelease.
func (u *user) releaseLogout() {
	if u.drain() {
		return // finishRelease when it ends (onIMIPEvent)
	}
	u.finishRelease()
}

// finishRelease stops the user here: the link stops (the session, if
// any, logs out; a login in flight is ended when it comes back), the held
// writes go to the store at once, and the hand-over ends once every write
// of the user is done and handled (endRelease).
func (u *user) finishRelease() {
	u.endDrain()
	u.applyLink(linkStop{}, nil)
	u.timers.stop()
	for _, om := range u.outq {
		u.g.commit.Expedite(om.pend)
	}
	for _, im := range u.inq {
		u.g.commit.Expedite(im.pend)
	}
	u.releaseWriting = true
	u.barrierSent = false
}

// releaseStep runs after each event of a user being handed over, once its
// link stopped: when no job of the user is in flight (a login, whose
// session is ended when it comes back; a roster job), a barrier Submit
// goes behind every write the user submitted; when it comes back and the
// user submitted nothing since (the results of those writes may delete a
// confirmed message, a write of its own), the user is given up.
func (u *user) releaseStep() {
	if !u.releaseWriting || u.released {
		return
	}
	if u.jobs.Load() > 0 {
		// Its result comes as an event, but the count drops just after:
		// look again shortly.
		u.releaseLater(releasePoll)
		return
	}
	if u.ending > 0 {
		return // a session endConn let go of is still up: evEnded comes
	}
	if u.barrierSent || time.Now().Before(u.barrierAfter) {
		return
	}
	u.barrierSent = true
	u.barrierAt = u.writes
	if !u.g.commit.Submit(nil, func(err error) { u.postAlways(evReleaseBarrier{err: err}) }) {
		u.barrierSent = false
		u.releaseLater(releasePoll)
	}
}

// releaseLater makes the hand-over look again after d (one wake-up at a
// time, however many events come meanwhile).
func (u *user) releaseLater(d time.Duration) {
	if u.releasePoll {
		return
	}
	u.releasePoll = true
	time.AfterFunc(d, func() { u.postAlways(evReleaseCheck{}) })
}

// releasePoll is how soon a hand-over waiting for a job or for room in the
// group commit looks again.
const releasePoll = 20 * time.Millisecond

// onReleaseBarrier ends the hand-over when nothing was written since the
// barrier, and sends another barrier otherwise.
func (u *user) onReleaseBarrier(ev evReleaseBarrier) {
	u.barrierSent = false
	if ev.err != nil {
		u.logger().Warn("cluster: hand-over waits for the store", "err", ev.err)
		u.barrierAfter = time.Now().Add(time.Second)
		u.releaseLater(time.Second)
		return
	}
	if u.writes != u.barrierAt {
		return // releaseStep sends the next barrier
	}
	// A message for IMIP still unconfirmed and not in the store (its
	// write failed after it was sent) is written again: the next owner
	// sends it from there.
	for _, om := range u.outq {
		if om.done || om.stored || !om.writeFailed {
			continue
		}
		om.writeFailed = false
		u.writes++
		if !u.g.commit.Submit([]Op{OpPutMessage{Msg: &om.q}}, func(err error) { u.postAlways(evStoredOut{om: om, err: err}) }) {
			om.writeFailed = true
		}
	}
	if u.writes != u.barrierAt || slices.ContainsFunc(u.outq, func(om *outMsg) bool { return !om.done && !om.stored }) {
		if u.writes == u.barrierAt {
			// Refused by a full group commit: again shortly.
			time.AfterFunc(releasePoll, func() { u.postAlways(evReleaseCheck{}) })
		}
		return // releaseStep sends the next barrier
	}
	// The next owner counts what waits in the store from now on.
	u.outq, u.inq = nil, nil
	u.releaseDone()
}

// releaseDone drops the user value and gives the user up in the database.
// Then it probes the user: the instance that holds the user's slot (the
// asker, or, if the asker gave up waiting, whoever gets the answer) takes
// it even if the user sends nothing more.
func (u *user) releaseDone() {
	u.released = true
	u.g.dropUser(u)
	g, key, bare, log := u.g, u.key, u.bare, u.logger()
	g.spawn(func() {
		// Over when the gateway stops: its leave frees every user.
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.OpTimeout)
		defer cancel()
		if err := g.cfg.Owners.Release(ctx, key); err != nil {
			log.Warn("cluster: releasing the user", "err", err)
			return
		}
		g.stats.usersGiven.Add(1)
		g.sendPresence(xmppside.Presence{From: g.cfg.Domain, To: bare, Type: "probe"})
	})
}

// onWhileReleasing handles an event that comes while the user is being
// handed over, before it is given up: messages are taken (written before
// the hand-over ends, for the next owner), presences dropped (the next
// owner probes the user), requests refused.
func (u *user) onWhileReleasing(ev event) bool {
	switch ev := ev.(type) {
	case evAvailability:
		u.takeAvailability()
	case evPresence, evTimer:
	case evRegister, evUnregister, evCommand, evCard:
		u.refuseUnowned(ev)
	default:
		return false
	}
	return true
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

// AddRegistered adds bareJID to the registered users: another instance of
// the cluster registered it.
func (g *Gateway) AddRegistered(bareJID string) { g.setRegistered(bareJID, true) }

// RefreshRegistered adds to the gateway's set of registered users those
// registered through other instances since it started: call it before a
// component connection of a slot opens, since the users of that slot may
// have registered elsewhere. Without a cluster it does nothing.
func (g *Gateway) RefreshRegistered(ctx context.Context) error {
	if g.cfg.Owners == nil {
		return nil
	}
	regs, err := g.cfg.Store.Registrations(ctx)
	if err != nil {
		return fmt.Errorf("gateway: reading registrations: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range regs {
		g.registered[r.JID] = struct{}{}
	}
	return nil
}

// probeSet returns the users to probe after a component connection came
// up: every registered user. With a cluster the answers go to the
// instances that hold the users' slots, which take the users they do not
// serve yet (a slot that moved here brings its users).
func (g *Gateway) probeSet() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	users := make([]string, 0, len(g.registered))
	for k := range g.registered {
		users = append(users, k)
	}
	return users
}

// SlotConnected is called when another component connection of this
// instance came up (with a cluster, one per slot it holds beyond the
// first): the users whose stanzas now come here are probed, and the free
// users with queued messages are loaded when their server's answer comes
// here (see probeAndLoad).
func (g *Gateway) SlotConnected(ctx context.Context) {
	if g.isClosing() {
		return
	}
	g.spawn(func() { g.probeAndLoad(ctx) })
}

// probeAndLoad probes the users of probeSet. With a cluster, the free
// users with queued messages are noted: the instance that receives a
// user's answer to the probe (the server routes it by the user's JID, to
// the instance that should serve the user) loads the user then, even for
// an unavailable presence (see HandlePresence), so that the messages flow
// from the right instance.
func (g *Gateway) probeAndLoad(ctx context.Context) {
	if own := g.cfg.Owners; own != nil {
		queued, err := own.QueuedFree(ctx)
		if err != nil {
			g.log.Warn("cluster: users with queued messages", "err", err)
		}
		g.mu.Lock()
		for _, k := range queued {
			g.freeQueued[k] = struct{}{}
		}
		g.mu.Unlock()
	}
	for _, k := range g.probeSet() {
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
