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

// deadlines is the user's timer state; it belongs to the run loop.
type deadlines struct {
	at [numTimers]time.Time // zero: not armed
	t  *time.Timer          // nil until first armed
	// next is when t fires; zero when it is stopped.
	next time.Time
}

// arm sets deadline k to d from now, replacing an earlier one.
func (u *user) arm(k timerKind, d time.Duration) {
	u.timers.at[k] = time.Now().Add(d)
	u.rearm()
}

// armWithin sets deadline k to d from now, unless it is due sooner.
func (u *user) armWithin(k timerKind, d time.Duration) {
	at := time.Now().Add(d)
	if cur := u.timers.at[k]; !cur.IsZero() && cur.Before(at) {
		return
	}
	u.armAt(k, at)
}

// armAt sets deadline k to t.
func (u *user) armAt(k timerKind, t time.Time) {
	if u.timers.at[k].Equal(t) {
		return
	}
	u.timers.at[k] = t
	u.rearm()
}

// disarm clears deadline k.
func (u *user) disarm(k timerKind) {
	if u.timers.at[k].IsZero() {
		return
	}
	u.timers.at[k] = time.Time{}
	u.rearm()
}

// rearm points the runtime timer at the earliest deadline.
func (u *user) rearm() {
	var first time.Time
	for _, at := range u.timers.at {
		if !at.IsZero() && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	d := &u.timers
	if first.Equal(d.next) {
		return
	}
	d.next = first
	if first.IsZero() {
		if d.t != nil {
			d.t.Stop()
		}
		return
	}
	wait := time.Until(first)
	if d.t == nil {
		d.t = time.AfterFunc(wait, u.postTimer)
		return
	}
	d.t.Reset(wait)
}

// stop disarms everything; the user's loop is ending for good.
func (d *deadlines) stop() {
	d.at = [numTimers]time.Time{}
	d.next = time.Time{}
	if d.t != nil {
		d.t.Stop()
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
	u.timers.next = time.Time{} // it fired
	now := time.Now()
	for k := range numTimers {
		at := u.timers.at[k]
		if at.IsZero() || now.Before(at) {
			continue
		}
		u.timers.at[k] = time.Time{}
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
