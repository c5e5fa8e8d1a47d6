package gateway

// Limits that keep one user's flood from costing the others anything, and
// from ever being lost silently: over a limit a message or subscription is
// refused with an error stanza (wait / resource-constraint), and a status
// change is slowed (the newest one goes when the bucket allows).

import (
	"time"

	"golang.org/x/time/rate"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// Limits are the per-user and gateway-wide rates. Zero fields take the
// defaults (DefaultLimits).
type Limits struct {
	// Messages a user may send toward IMIP: per second, and in a burst.
	MessageRate  float64
	MessageBurst int
	// Subscription changes (subscribe, subscribed, unsubscribe,
	// unsubscribed to contacts) a user may make: per second, burst.
	SubscriptionRate  float64
	SubscriptionBurst int
	// Status changes (STAT) sent for a user: per second, burst. Changes
	// beyond it are not refused but delayed, and only the newest is sent.
	StatusRate  float64
	StatusBurst int
	// Roster changes the gateway makes in users' rosters, all users
	// together (privileged roster sets and subscription presences of a
	// roster sync): per second, burst. A large sync is paced by it.
	RosterRate  float64
	RosterBurst int
	// MaxRosterItems is the most IMIP contacts synced into one user's
	// roster; a larger IMIP contact list is synced in part, and the user is
	// told.
	MaxRosterItems int
	// IMIP logins, all users together (after a restart or a reconnect
	// every online user logs in again): per second, burst.
	LoginRate  float64
	LoginBurst int
}

// DefaultLimits are the limits of zero Limits fields.
var DefaultLimits = Limits{
	MessageRate: 10, MessageBurst: 50,
	SubscriptionRate: 1, SubscriptionBurst: 20,
	StatusRate: 1, StatusBurst: 5,
	RosterRate: 100, RosterBurst: 200,
	MaxRosterItems: 1000,
	LoginRate:      50, LoginBurst: 50,
}

// withDefaults fills the zero fields.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	pick := func(v *float64, def float64) {
		if *v <= 0 {
			*v = def
		}
	}
	pickInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&l.MessageRate, d.MessageRate)
	pickInt(&l.MessageBurst, d.MessageBurst)
	pick(&l.SubscriptionRate, d.SubscriptionRate)
	pickInt(&l.SubscriptionBurst, d.SubscriptionBurst)
	pick(&l.StatusRate, d.StatusRate)
	pickInt(&l.StatusBurst, d.StatusBurst)
	pick(&l.RosterRate, d.RosterRate)
	pickInt(&l.RosterBurst, d.RosterBurst)
	pickInt(&l.MaxRosterItems, d.MaxRosterItems)
	pick(&l.LoginRate, d.LoginRate)
	pickInt(&l.LoginBurst, d.LoginBurst)
	return l
}

// userLimits are a user's token buckets, each made at its first use (an
// idle user has none; one who never sent a message has no message bucket).
type userLimits struct {
	msg, sub, stat *rate.Limiter
}

func (u *user) limits() *userLimits {
	if u.lim == nil {
		u.lim = &userLimits{}
	}
	return u.lim
}

// msgLimit, subLimit and statLimit return the user's buckets, making them.
func (u *user) msgLimit() *rate.Limiter {
	l := u.limits()
	if l.msg == nil {
		l.msg = rate.NewLimiter(rate.Limit(u.g.cfg.Limits.MessageRate), u.g.cfg.Limits.MessageBurst)
	}
	return l.msg
}

func (u *user) subLimit() *rate.Limiter {
	l := u.limits()
	if l.sub == nil {
		l.sub = rate.NewLimiter(rate.Limit(u.g.cfg.Limits.SubscriptionRate), u.g.cfg.Limits.SubscriptionBurst)
	}
	return l.sub
}

func (u *user) statLimit() *rate.Limiter {
	l := u.limits()
	if l.stat == nil {
		l.stat = rate.NewLimiter(rate.Limit(u.g.cfg.Limits.StatusRate), u.g.cfg.Limits.StatusBurst)
	}
	return l.stat
}

// errSlowDown is the error of a stanza refused by a user's limit.
func errSlowDown(what string) stanza.Error {
	return textError(stanza.Wait, stanza.ResourceConstraint,
		"You are sending "+what+" faster than the IMIP gateway allows; this one was not sent. Wait a moment and try again.")
}

// allowSubscription checks the user's subscription bucket; over it the
// stanza p is answered with an error.
func (u *user) allowSubscription(p xmppside.Presence) bool {
	if u.subLimit().Allow() {
		return true
	}
	e := errSlowDown("contact requests")
	u.g.sendPresence(xmppside.Presence{ID: p.ID, From: p.To.Bare(), To: p.From, Type: "error", Error: &e})
	return false
}

// statusDelay reports how long the next STAT must wait for the user's
// bucket (0: it may go now, and the token is taken).
func (u *user) statusDelay() time.Duration {
	r := u.statLimit().Reserve()
	d := r.Delay()
	if d > 0 {
		r.Cancel()
	}
	return d
}

// capBuddies cuts an IMIP contact list to MaxRosterItems, telling the user
// once per login when it does.
func (u *user) capBuddies(buddies []wire.Buddy) []wire.Buddy {
	max := u.g.cfg.Limits.MaxRosterItems
	if len(buddies) <= max {
		return buddies
	}
	u.logger().Warn("IMIP contact list longer than max_roster_items: synced in part", "contacts", len(buddies), "synced", max)
	u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal",
		Body: "Your IMIP contact list is longer than this gateway syncs into a roster: only its first entries appear in your roster."})
	return buddies[:max]
}
