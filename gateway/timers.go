package gateway

import "time"

// A user's one timer: a deadline per purpose, and one runtime timer armed
// for the earliest of them. When it fires, one evTimer is queued; the run
// loop then handles every deadline that has passed. A deadline disarmed or
// moved before the loop got there simply is not due: no generation
// counters, and an idle user with nothing armed costs nothing.

// timerKind names a deadline of the user.
type timerKind uint8

const (
	timerRetry    timerKind = iota // the next login after a failure
	timerGrace                     // the end of a registration's grace period
	timerConfirm                   // resources must have answered the probe
	timerRequests                  // the oldest IMIP request must have been answered
	timerDelivery                  // the oldest message for IMIP must have been confirmed
	timerResend                    // messages for the user the full outbox refused go again
	timerStatus                    // a status change held back by the user\'s bucket goes
	numTimers
)

// deadlines is the user's timer state; it belongs to the run loop. The
// deadlines are kept as offsets from base (the first one ever armed), with
// a bit per armed one: 64 bytes less per user than a time.Time each.
type deadlines struct {
	base  time.Time
	at    [numTimers]time.Duration // since base, when armed
	armed uint8                    // bit k: deadline k is armed
	// t fires at the earliest deadline; nil while none is armed (an idle
	// user keeps no runtime timer).
	t *time.Timer
	// next is the deadline t fires at (since base), valid when hasNext.
	next    time.Duration
	hasNext bool
}

// get returns deadline k and whether it is armed.
func (d *deadlines) get(k timerKind) (time.Time, bool) {
	if d.armed&(1<<k) == 0 {
		return time.Time{}, false
	}
	return d.base.Add(d.at[k]), true
}

// set arms deadline k at t.
func (d *deadlines) set(k timerKind, t time.Time) {
	if d.base.IsZero() {
		d.base = t
	}
	d.at[k] = t.Sub(d.base)
	d.armed |= 1 << k
}

// isArmed reports whether deadline k is armed.
func (d *deadlines) isArmed(k timerKind) bool { return d.armed&(1<<k) != 0 }

// clear disarms deadline k.
func (d *deadlines) clear(k timerKind) { d.armed &^= 1 << k }

// arm sets deadline k to d from now, replacing an earlier one.
func (u *user) arm(k timerKind, d time.Duration) {
	u.timers.set(k, time.Now().Add(d))
	u.rearm()
}

// armWithin sets deadline k to d from now, unless it is due sooner.
func (u *user) armWithin(k timerKind, d time.Duration) {
	at := time.Now().Add(d)
	if cur, ok := u.timers.get(k); ok && cur.Before(at) {
		return
	}
	u.armAt(k, at)
}

// armAt sets deadline k to t.
func (u *user) armAt(k timerKind, t time.Time) {
	if cur, ok := u.timers.get(k); ok && cur.Equal(t) {
		return
	}
	u.timers.set(k, t)
	u.rearm()
}

// disarm clears deadline k.
func (u *user) disarm(k timerKind) {
	if _, ok := u.timers.get(k); !ok {
		return
	}
	u.timers.clear(k)
	u.rearm()
}

// rearm points the runtime timer at the earliest deadline, or drops it
// when none is armed.
func (u *user) rearm() {
	d := &u.timers
	var first time.Duration
	found := false
	for k := range numTimers {
		if d.isArmed(k) && (!found || d.at[k] < first) {
			first, found = d.at[k], true
		}
	}
	if !found {
		d.hasNext = false
		if d.t != nil {
			d.t.Stop()
			d.t = nil
		}
		return
	}
	if d.hasNext && first == d.next {
		return
	}
	d.next, d.hasNext = first, true
	wait := time.Until(d.base.Add(first))
	if d.t == nil {
		d.t = time.AfterFunc(wait, u.postTimer)
		return
	}
	d.t.Reset(wait)
}

// stop disarms everything; the user's loop is ending for good.
func (d *deadlines) stop() {
	d.armed, d.hasNext = 0, false
	if d.t != nil {
		d.t.Stop()
		d.t = nil
	}
}

// postTimer runs on the runtime's timer goroutine: it queues one evTimer
// unless one is queued already. It is never dropped (a lost timer would
// strand the user) and never waits.
func (u *user) postTimer() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped || u.timerQueued {
		return
	}
	u.timerQueued = true
	u.enqueueLocked(evTimer{})
}

// onTimer handles every deadline that has passed, then re-arms.
func (u *user) onTimer() {
	u.mu.Lock()
	u.timerQueued = false
	u.mu.Unlock()
	u.timers.hasNext = false // it fired
	if u.stopping || u.releasing {
		return // no deadline acts while the user is logged out here
	}
	now := time.Now()
	for k := range numTimers {
		at, ok := u.timers.get(k)
		if !ok || now.Before(at) {
			continue
		}
		u.timers.clear(k)
		switch k {
		case timerRetry:
			u.applyLink(linkRetryDue{}, nil)
		case timerGrace:
			u.applyLink(linkGraceDue{}, nil)
		case timerConfirm:
			u.dropUnconfirmed()
		case timerRequests:
			u.expireRequests()
		case timerDelivery:
			u.expireOut()
		case timerResend:
			u.flushIn()
			u.maybeReload()
		case timerStatus:
			u.updateStatus()
		}
	}
	u.rearm()
}
