package gateway

import (
	"sync"
	"time"
)

// Before a hand-over or a shutdown logs the live session out, the messages
// from IMIP that came on it and that neither the barrier nor a write has
// confirmed yet (their writes held, or under way) are written at once, and
// each is confirmed to IMIP (mesg-ack) as its write ends, while the
// session is up. Logged out first, they would be in the store and, not
// confirmed, kept by the IMIP server too, which pushes them to the next
// session: the user would get each twice more (from the store, and from
// IMIP) instead of once from the store. With a cluster this is the usual
// case: the asking instance holds the user's slot, so the barriers' answers
// for the user go there, and none confirms a message here any more.

// settleBound bounds the wait: a store that has not answered by then
// leaves the messages to IMIP, which pushes what was not confirmed again.
const settleBound = 2 * time.Second

// settle is a wait of settleIn; then runs when it is over, or when timer
// fires. The gateway's Stop waits for it (a run loop is idle meanwhile, and
// the logout comes after it): it counts in g.runs until end.
type settle struct {
	then  func()
	timer *time.Timer
	once  sync.Once
	done  func()
}

// end stops the timer and lets the gateway's Stop go on; at most once.
func (s *settle) end() {
	s.once.Do(func() {
		s.timer.Stop()
		s.done()
	})
}

// evSettleTimeout: the bound of the wait s is over.
type evSettleTimeout struct{ s *settle }

func (evSettleTimeout) isEvent() {}

// settleIn starts the wait when there is something to wait for, and
// reports whether it did; then runs once it is over (settleStep).
func (u *user) settleIn(then func()) bool {
	if !u.confirmsPending() {
		return false
	}
	// Every held write, in order: the ones of an earlier session too, so
	// that they are not written after what comes meanwhile (at once).
	for _, im := range u.inq {
		if im.held && !im.settled {
			u.g.commit.Expedite(im.pend)
		}
	}
	s := &settle{then: then, done: u.g.runs.done}
	u.g.runs.add()
	u.settling = s
	s.timer = time.AfterFunc(settleBound, func() {
		if !u.postAlways(evSettleTimeout{s: s}) {
			s.end() // the user stopped meanwhile
		}
	})
	return true
}

// confirmsPending reports whether a message from IMIP waits for a write
// whose end confirms it on the live session: one in memory that came on
// it, or one beyond memory (spilled), or one the barrier confirmed while
// its write was under way (orphanWrites).
func (u *user) confirmsPending() bool {
	if u.conn == nil || u.sess == nil || !u.sess.ConfirmsMessages() || u.draining != nil {
		return false // nothing to confirm, or logging out already
	}
	if u.spilled > 0 || u.orphanWrites > 0 {
		return true
	}
	for _, im := range u.inq {
		if im.conn == u.conn && !im.settled {
			return true
		}
	}
	return false
}

// settleStep ends the wait once nothing is pending (after each event).
func (u *user) settleStep() {
	if u.settling == nil || u.confirmsPending() {
		return
	}
	s := u.settling
	u.settling = nil
	s.then()
	s.end()
}

// onSettleTimeout ends the wait at its bound.
func (u *user) onSettleTimeout(ev evSettleTimeout) {
	if u.settling != ev.s {
		return // over already
	}
	u.logger().Warn("messages from IMIP not written in time before the logout; IMIP pushes them again", "bound", settleBound)
	s := u.settling
	u.settling = nil
	s.then()
	s.end()
}
