package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sync/errgroup"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// NSRosterX is XEP-0144 roster item exchange.
const NSRosterX = "http://jabber.org/protocol/rosterx"

// onContactSubscription turns the user's subscription stanza to a contact
// into a roster event.
func (u *user) onContactSubscription(n wire.Number, p xmppside.Presence) {
	var ev roster.Event
	switch p.Type {
	case "subscribe":
		// The request's text goes in the LIST ADD block: cut like a
		// request's text from IMIP, so a huge status never makes a block
		// IMIP refuses (and the request lost).
		ev = roster.UserSubscribe{Number: n, Status: truncateUTF8(p.Status, maxRequestText)}
	case "subscribed":
		ev = roster.UserSubscribed{Number: n}
	case "unsubscribe":
		ev = roster.UserUnsubscribe{Number: n}
	case "unsubscribed":
		ev = roster.UserUnsubscribed{Number: n}
	default:
		return
	}
	u.applyRoster(ev)
}

// applyRoster runs ev through the user's list and carries out the actions.
func (u *user) applyRoster(ev roster.Event) {
	for _, a := range u.list.Apply(ev) {
		u.do(a)
	}
}

// do carries out one roster action.
func (u *user) do(a roster.Action) {
	switch a := a.(type) {
	case roster.SendListAdd:
		u.imip(a.Number, imipside.RequestListAdd, func(s IMIPSession) (uint64, error) { return s.SendListAdd(a.Number, a.Text) })
	case roster.SendListAccept:
		nick := wireNick(a.Nick)
		u.imip(a.Number, imipside.RequestListAccept, func(s IMIPSession) (uint64, error) { return s.SendListAccept(a.Number, nick) })
	case roster.SendListReject:
		u.imip(a.Number, imipside.RequestListReject, func(s IMIPSession) (uint64, error) { return s.SendListReject(a.Number) })
	case roster.SendListRemove:
		u.imip(a.Number, imipside.RequestListRemove, func(s IMIPSession) (uint64, error) { return s.SendListRemove(a.Number) })
	case roster.PresenceToUser:
		u.g.sendPresenceThen(xmppside.Presence{From: u.g.contactJID(a.From), To: u.bare, Type: string(a.Type), Nick: a.Nick, Status: a.Status},
			u.lostPushNotice())
		if a.Type == roster.Subscribed {
			// RFC 6121 3.1.5: the contact's current presence follows.
			u.sendContactPresence(a.From, u.bare)
		}
		if a.Type == roster.Unsubscribed {
			u.g.sendPresence(xmppside.Presence{From: u.g.contactJID(a.From), To: u.bare, Type: "unavailable"})
		}
	case roster.RosterUpsert:
		u.pushRoster([]roster.Contact{a.Contact}, nil, false, false)
	case roster.RosterRemove:
		u.pushRoster(nil, []wire.Number{a.Number}, false, false)
	case roster.Refused:
		u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal", Body: a.Reason})
	case roster.Persist:
		u.persist(a.Number)
	}
}

// imip sends a LIST request without waiting (its answer comes back as a
// ReplyEvent), or reports to the user why it could not.
func (u *user) imip(n wire.Number, what string, send func(IMIPSession) (uint64, error)) {
	if u.sess == nil {
		u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal",
			Body: "Not connected to the IMIP network: " + what + " " + string(n) + " was not sent. Go online and try again."})
		u.unsent(n, what)
		return
	}
	id, err := send(u.sess)
	if err != nil {
		u.requestFailed(pendingReq{kind: what, number: n}, "The IMIP network did not take "+what+" "+string(n)+": "+err.Error())
		return
	}
	u.track(id, pendingReq{kind: what, number: n})
}

// maxWireNick bounds the nickname the gateway writes in a LIST ACCEPT type
// line (a type line is at most 256 bytes).
const maxWireNick = 64

// wireNick makes a contact's nickname, which the contact chose, safe for
// an IMIP type line: control characters and double quotes are dropped and
// it is cut to maxWireNick bytes (on a character boundary). An accept must
// never fail because of the requester's nickname.
func wireNick(nick string) string {
	clean := strings.Map(func(r rune) rune {
		if r == '"' || unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, nick)
	return strings.TrimSpace(truncateUTF8(clean, maxWireNick))
}

// unsent undoes the list state of a request IMIP never got. A LIST ADD that
// stayed pending would swallow every later subscribe to the same number
// (roster.List does not ask twice), so it is withdrawn and the user's
// subscription request is denied; the user may ask again.
func (u *user) unsent(n wire.Number, what string) {
	if what == imipside.RequestListAdd {
		u.applyRoster(roster.ServerListReject{Number: n})
	}
}

// persist writes the change of contact n: one row, through the group
// commit, in the order of the changes.
func (u *user) persist(n wire.Number) {
	if u.reg == nil {
		return
	}
	var op Op = OpDeleteContact{JID: u.key, Number: n}
	if c, ok := u.list.Contact(n); ok {
		op = OpPutContact{JID: u.key, Contact: c}
	}
	u.write([]Op{op}, "saving a contact")
}

// write submits ops to the group commit; a failure is logged (the list in
// memory stays right, and the next login's sync writes it again).
func (u *user) write(ops []Op, what string) {
	u.writes++
	log := u.logger()
	if !u.g.commit.Submit(ops, func(err error) {
		if err != nil {
			log.Error(what, "err", err)
		}
	}) {
		log.Error(what, "err", errCommitFull)
	}
}

// errCommitFull reports a write the group commit refused (its queue is full).
var errCommitFull = errors.New("gateway: store writes queue full")

// syncOps returns the writes that turn the stored list old into new.
func (u *user) syncOps(old, new []roster.Contact) []Op {
	was := make(map[wire.Number]roster.Contact, len(old))
	for _, c := range old {
		was[c.Number] = c
	}
	var ops []Op
	for _, c := range new {
		if o, ok := was[c.Number]; !ok || o != c {
			ops = append(ops, OpPutContact{JID: u.key, Contact: c})
		}
		delete(was, c.Number)
	}
	for n := range was {
		ops = append(ops, OpDeleteContact{JID: u.key, Number: n})
	}
	return ops
}

// syncRoster makes the user's roster follow the LOGN Buddy list, sending
// only what changed since the last sync.
func (u *user) syncRoster(buddies []wire.Buddy) {
	plan := roster.Sync(u.list.Contacts(), buddies)
	if !plan.Changed() {
		if u.rosterStale {
			u.resyncRoster()
		}
		return
	}
	allow := u.g.cfg.AllowRemove || (u.reg != nil && u.reg.AllowRemove)
	old := u.list.Contacts()
	u.list = roster.New(roster.Options{AllowRemove: allow}, plan.Result)
	if u.reg != nil {
		u.write(u.syncOps(old, u.list.Contacts()), "saving the synced contacts")
	}
	removed := make([]wire.Number, 0, len(plan.Remove))
	for _, c := range plan.Remove {
		removed = append(removed, c.Number)
	}
	upserts := append(slices.Clone(plan.Add), plan.Update...)
	if u.rosterStale {
		upserts = append(upserts, listed(plan.Unchanged)...)
	}
	u.logger().Info("roster sync", "added", len(plan.Add), "updated", len(plan.Update), "removed", len(plan.Remove))
	u.pushRoster(upserts, removed, true, true)
}

// resyncRoster pushes every listed contact again, after a push that did
// not reach the user (the component link was down).
func (u *user) resyncRoster() {
	u.logger().Info("roster sync again after a failed push")
	u.pushRoster(listed(u.list.Contacts()), nil, true, true)
}

// lostPushNotice returns the outcome function of a presence that carries a
// roster change: when it could not reach the user because the component
// link was down, the roster is marked for a push again (the store already
// holds the change, so no later sync would notice).
func (u *user) lostPushNotice() func(error) {
	return func(err error) {
		if errors.Is(err, xmppside.ErrNotConnected) {
			u.postAlways(evRosterDone{lost: true})
		} else if err != nil {
			u.logger().Debug("roster change not sent", "err", err)
		}
	}
}

// listed returns the contacts on the user's IMIP list.
func listed(cs []roster.Contact) []roster.Contact {
	var out []roster.Contact
	for _, c := range cs {
		if c.InList {
			out = append(out, c)
		}
	}
	return out
}

// rosterJob is one change of the user's roster, carried out off the run
// loop (it waits for IQ round trips): by XEP-0356 privileged roster set,
// else XEP-0144 roster item exchange to resources that support it, else
// subscription presences (only when fallback is set: for a single
// transition the roster machine already sent them). A user has one job in
// flight at a time, so changes reach the roster in order.
type rosterJob struct {
	upserts  []roster.Contact
	removed  []wire.Number
	fallback bool
	sync     bool   // a whole sync: its outcome decides rosterStale
	group    string // the roster group of the contacts it adds
	// targets are the user's resources, with what is known of their
	// XEP-0144 support; the job asks those not asked yet.
	targets []rxTarget
}

// rxTarget is one resource of the user as a roster exchange target.
type rxTarget struct {
	res            string
	full           jid.JID
	asked, rosterx bool // asked: disco#info answered
	nowAsked       bool // set by the job: it got an answer
}

// evRosterDone reports a finished roster job (job nil: a lost presence).
type evRosterDone struct {
	job  *rosterJob
	err  error
	lost bool // a roster presence did not reach the user
}

func (evRosterDone) isEvent() {}

// pushRoster queues a roster change for the user.
func (u *user) pushRoster(upserts []roster.Contact, removed []wire.Number, fallback, sync bool) {
	if len(upserts) == 0 && len(removed) == 0 {
		return
	}
	u.rosterJobs = append(u.rosterJobs, &rosterJob{upserts: upserts, removed: removed, fallback: fallback, sync: sync, group: u.rosterGroup()})
	u.nextRosterJob()
}

// nextRosterJob starts the next queued job unless one is in flight.
func (u *user) nextRosterJob() {
	if u.rosterBusy || len(u.rosterJobs) == 0 {
		return
	}
	j := u.rosterJobs[0]
	u.rosterJobs = popFront(u.rosterJobs)
	for _, r := range u.res.m {
		res := r.name
		if res == "" {
			continue
		}
		full, err := u.bare.WithResource(res)
		if err != nil {
			continue
		}
		j.targets = append(j.targets, rxTarget{res: res, full: full, asked: r.discoDone, rosterx: r.rosterx})
	}
	u.rosterBusy = true
	g, bare, log := u.g, u.bare, u.logger()
	// The job starts once the stanzas queued before it are written: a
	// "subscribed" presence must reach the user's server before the roster
	// set that makes it moot.
	u.jobs.Add(1)
	g.out.push(outItem{run: func() {
		u.spawnJob(func() {
			err := j.run(g, bare, log)
			u.postAlways(evRosterDone{job: j, err: err})
		})
		u.jobs.Add(-1)
	}})
}

// onRosterDone records what a job learnt and starts the next one.
func (u *user) onRosterDone(ev evRosterDone) {
	if ev.job == nil {
		if ev.lost {
			u.rosterStale = true
		}
		return
	}
	u.rosterBusy = false
	for _, t := range ev.job.targets {
		if r, ok := u.res.get(t.res); ok && t.nowAsked {
			r.discoDone, r.rosterx = true, t.rosterx
			u.res.set(t.res, r)
		}
	}
	switch {
	case ev.job.sync && ev.err != nil:
		u.logger().Warn("roster push did not reach the user; will push again", "err", ev.err)
		u.rosterStale = true
	case ev.job.sync:
		u.rosterStale = false
	case errors.Is(ev.err, xmppside.ErrNotConnected):
		u.rosterStale = true
	case ev.err != nil:
		u.logger().Debug("roster change not sent", "err", ev.err)
	}
	u.nextRosterJob()
}

// maxRosterSetsInFlight bounds the privileged roster sets one job has
// waiting for their answers at once.
const maxRosterSetsInFlight = 16

// run carries out the job on its own goroutine. It returns an error when
// nothing could reach the user (the component link is down).
func (j *rosterJob) run(g *Gateway, user jid.JID, log *slog.Logger) error {
	items := make([]xmppside.RosterItem, 0, len(j.upserts)+len(j.removed))
	for _, c := range j.upserts {
		items = append(items, xmppside.RosterItem{JID: g.contactJID(c.Number), Name: c.Nick,
			Subscription: "to", Groups: []string{j.group}})
	}
	for _, n := range j.removed {
		items = append(items, xmppside.RosterItem{JID: g.contactJID(n), Remove: true})
	}
	if ra, ok := g.xmpp.(RosterAccess); ok {
		if pr := ra.PrivilegesFor(user); pr.CanSetRoster() {
			if len(j.upserts) > 0 && pr.CanGetRoster() {
				ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
				have, err := ra.RosterGet(ctx, user)
				cancel()
				if err == nil {
					items = keepUsersChoices(items, have)
				} else {
					log.Info("reading the roster before a set failed; the set may replace names the user gave", "err", err)
				}
			}
			if len(items) == 0 {
				return nil
			}
			err := rosterSetAll(g, ra, user, items)
			if err == nil {
				return nil
			}
			if errors.Is(err, xmppside.ErrNotConnected) {
				return err
			}
			log.Info("privileged roster set failed; falling back", "err", err)
		}
		if j.exchange(g, ra, items) {
			return nil
		}
	}
	if !j.fallback {
		return nil
	}
	var firstErr error
	send := func(p xmppside.Presence) {
		if err := g.rosterOps.Wait(g.ctx); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		if err := g.sendNow(outItem{p: &p}); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, c := range j.upserts {
		send(xmppside.Presence{From: g.contactJID(c.Number), To: user, Type: "subscribe", Nick: c.Nick})
	}
	for _, n := range j.removed {
		for _, p := range goneStanzas(g.contactJID(n), user) {
			send(p)
		}
	}
	return firstErr
}

// keepUsersChoices adapts the items the gateway is about to set to the
// user's roster as it is (have): a roster set replaces the whole item, so
// a name the user gave a contact and the groups they put it in are kept
// (the contact's IMIP nickname is only the name of a new or unnamed item),
// a subscription the user approved ("from" or "both") is not taken back,
// and an item already as it would be set is left out. Removals pass as
// they are.
func keepUsersChoices(items, have []xmppside.RosterItem) []xmppside.RosterItem {
	byJID := make(map[string]xmppside.RosterItem, len(have))
	for _, it := range have {
		byJID[it.JID.Bare().String()] = it
	}
	out := items[:0:0]
	for _, it := range items {
		old, ok := byJID[it.JID.Bare().String()]
		if it.Remove || !ok {
			out = append(out, it)
			continue
		}
		if old.Name != "" {
			it.Name = old.Name
		}
		if len(old.Groups) > 0 {
			it.Groups = old.Groups
		}
		if old.Subscription == "from" || old.Subscription == "both" {
			it.Subscription = "both"
		}
		if it.Name == old.Name && it.Subscription == old.Subscription && slices.Equal(it.Groups, old.Groups) {
			continue // nothing to change
		}
		out = append(out, it)
	}
	return out
}

// rosterSetAll sets items by privileged roster sets, one item each (a roster
// set carries one item), up to maxRosterSetsInFlight at once, each bounded
// by the op timeout, paced by the gateway-wide roster bucket. It returns the
// first error.
func rosterSetAll(g *Gateway, ra RosterAccess, user jid.JID, items []xmppside.RosterItem) error {
	var eg errgroup.Group
	eg.SetLimit(maxRosterSetsInFlight)
	for _, it := range items {
		if err := g.rosterOps.Wait(g.ctx); err != nil {
			_ = eg.Wait()
			return fmt.Errorf("gateway: roster set: %w", err)
		}
		eg.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
			defer cancel()
			return ra.RosterSet(ctx, user, []xmppside.RosterItem{it})
		})
	}
	return eg.Wait()
}

// exchange sends items by XEP-0144 to every resource that advertises it,
// asking (in parallel, each with a short bound) the resources whose
// disco#info is not known yet. It reports whether one exchange was sent.
func (j *rosterJob) exchange(g *Gateway, ra RosterAccess, items []xmppside.RosterItem) bool {
	var wg sync.WaitGroup
	for i := range j.targets {
		t := &j.targets[i]
		if t.asked {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), min(discoTimeout, g.cfg.OpTimeout))
			defer cancel()
			feats, err := ra.DiscoFeatures(ctx, t.full)
			var se stanza.Error
			if err == nil || errors.As(err, &se) {
				// An answer, an error answer included: final for this
				// resource. A timeout or a dropped link is asked again.
				t.nowAsked, t.rosterx = true, err == nil && slices.Contains(feats, NSRosterX)
			}
		})
	}
	wg.Wait()
	sent := false
	for _, t := range j.targets {
		if !t.rosterx {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
		if err := ra.SendRosterExchange(ctx, t.full, items); err == nil {
			sent = true
		}
		cancel()
	}
	return sent
}

// goneStanzas are the presences that tell user that from (a contact, or
// the gateway) leaves: unsubscribe, unsubscribed and unavailable.
func goneStanzas(from, user jid.JID) []xmppside.Presence {
	return []xmppside.Presence{
		{From: from, To: user, Type: "unsubscribe"},
		{From: from, To: user, Type: "unsubscribed"},
		{From: from, To: user, Type: "unavailable"},
	}
}

// sendGone queues the presences that tell the user from leaves.
func (u *user) sendGone(from jid.JID) {
	for _, p := range goneStanzas(from, u.bare) {
		u.g.sendPresence(p)
	}
}

// discoTimeout bounds the disco#info query to one of the user's resources.
const discoTimeout = 5 * time.Second

// cleanRoster takes every IMIP contact out of the user's roster at
// unregistration or a change of number, on its own goroutine: with
// privileged roster access, every item of the gateway's domain (also those
// the gateway no longer knows of); by presences, those it knows. With
// withGateway (unregistration), the gateway's own item goes too when the
// privilege allows it; without the privilege, the unsubscribe and
// unsubscribed presences of the gateway (sendGone) leave it with
// subscription none, for the client to remove (XEP-0100 §4.3).
func (u *user) cleanRoster(withGateway bool) {
	var nums []wire.Number
	for _, c := range u.list.Contacts() {
		nums = append(nums, c.Number)
	}
	g, bare := u.g, u.bare
	g.spawn(func() {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.OpTimeout)
		defer cancel()
		if ra, ok := g.xmpp.(RosterAccess); ok {
			if pr := ra.PrivilegesFor(bare); pr.CanGetRoster() && pr.CanSetRoster() {
				if items, err := ra.RosterGet(ctx, bare); err == nil {
					for _, it := range items {
						if it.JID.Domainpart() != g.cfg.Domain.Domainpart() || it.JID.Localpart() == "" {
							continue // only the gateway's contacts are ever touched
						}
						if n, err := roster.Number(it.JID, g.cfg.Domain); err == nil && !slices.Contains(nums, n) {
							nums = append(nums, n)
						}
					}
				}
				items := make([]xmppside.RosterItem, 0, len(nums))
				for _, n := range nums {
					items = append(items, xmppside.RosterItem{JID: g.contactJID(n), Remove: true})
				}
				if withGateway {
					items = append(items, xmppside.RosterItem{JID: g.cfg.Domain, Remove: true})
				}
				_ = rosterSetAll(g, ra, bare, items)
			}
		}
		for _, n := range nums {
			for _, p := range goneStanzas(g.contactJID(n), bare) {
				g.sendPresence(p)
			}
		}
	})
}

// rosterGroup is the roster group of the user's new IMIP contacts: the
// user's choice, else the gateway's.
func (u *user) rosterGroup() string {
	if u.reg != nil && u.reg.Group != "" {
		return u.reg.Group
	}
	return u.g.cfg.RosterGroup
}
