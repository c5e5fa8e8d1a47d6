package gateway

import (
	"context"
	"errors"
	"slices"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

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
		ev = roster.UserSubscribe{Number: n, Status: p.Status}
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
	ctx, cancel := u.opCtx()
	defer cancel()
	switch a := a.(type) {
	case roster.SendListAdd:
		u.imip(a.Number, "LIST ADD", func(s IMIPSession) error { return s.ListAdd(ctx, a.Number, a.Text) })
	case roster.SendListAccept:
		u.imip(a.Number, "LIST ACCEPT", func(s IMIPSession) error { return s.ListAccept(ctx, a.Number, a.Nick) })
	case roster.SendListReject:
		u.imip(a.Number, "LIST REJECT", func(s IMIPSession) error { return s.ListReject(ctx, a.Number) })
	case roster.SendListRemove:
		u.imip(a.Number, "LIST REMOVE", func(s IMIPSession) error { return s.ListRemove(ctx, a.Number) })
	case roster.PresenceToUser:
		err := u.g.trySendPresence(xmppside.Presence{From: u.g.contactJID(a.From), To: u.bare, Type: string(a.Type), Nick: a.Nick, Status: a.Status})
		u.noteLostPush(err)
		if a.Type == roster.Subscribed {
			// RFC 6121 3.1.5: the contact's current presence follows.
			u.sendContactPresence(a.From, u.bare)
		}
		if a.Type == roster.Unsubscribed {
			u.g.sendPresence(xmppside.Presence{From: u.g.contactJID(a.From), To: u.bare, Type: "unavailable"})
		}
	case roster.RosterUpsert:
		u.noteLostPush(u.pushRoster([]roster.Contact{a.Contact}, nil, false))
	case roster.RosterRemove:
		u.noteLostPush(u.pushRoster(nil, []wire.Number{a.Number}, false))
	case roster.Refused:
		_ = u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal", Body: a.Reason})
	case roster.Persist:
		u.persist(ctx)
	}
}

// imip sends a LIST request, or reports to the user why it could not.
func (u *user) imip(n wire.Number, what string, send func(IMIPSession) error) {
	if u.sess == nil {
		_ = u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal",
			Body: "Not connected to the IMIP network: " + what + " " + string(n) + " was not sent. Go online and try again."})
		u.unsent(n, what)
		return
	}
	if err := u.awaitIMIP(func() error { return send(u.sess) }); err != nil {
		u.log.Warn("IMIP request failed", "request", what, "number", n, "err", err)
		_ = u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal",
			Body: "The IMIP network refused " + what + " " + string(n) + ": " + err.Error()})
		u.unsent(n, what)
	}
}

// unsent undoes the list state of a request IMIP never got. A LIST ADD that
// stayed pending would swallow every later subscribe to the same number
// (roster.List does not ask twice), so it is withdrawn and the user's
// subscription request is denied; the user may ask again.
func (u *user) unsent(n wire.Number, what string) {
	if what == "LIST ADD" {
		u.applyRoster(roster.ServerListReject{Number: n})
	}
}

func (u *user) persist(ctx context.Context) {
	if u.reg == nil {
		return
	}
	if err := u.g.cfg.Store.SaveContacts(ctx, u.key, u.list.Contacts()); err != nil {
		u.log.Error("saving contacts", "err", err)
	}
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
	u.list = roster.New(roster.Options{AllowRemove: allow}, plan.Result)
	ctx, cancel := u.opCtx()
	u.persist(ctx)
	cancel()
	removed := make([]wire.Number, 0, len(plan.Remove))
	for _, c := range plan.Remove {
		removed = append(removed, c.Number)
	}
	upserts := append(slices.Clone(plan.Add), plan.Update...)
	if u.rosterStale {
		upserts = append(upserts, listed(plan.Unchanged)...)
	}
	u.log.Info("roster sync", "added", len(plan.Add), "updated", len(plan.Update), "removed", len(plan.Remove))
	u.noteRosterPush(u.pushRoster(upserts, removed, true))
}

// resyncRoster pushes every listed contact again, after a push that did
// not reach the user (the component link was down).
func (u *user) resyncRoster() {
	u.log.Info("roster sync again after a failed push")
	u.noteRosterPush(u.pushRoster(listed(u.list.Contacts()), nil, true))
}

// noteRosterPush records whether the user's roster may lack what the store
// says was synced; such a roster is pushed again at the next login or when
// the component link is back.
func (u *user) noteRosterPush(err error) {
	if err != nil {
		u.log.Warn("roster push did not reach the user; will push again", "err", err)
	}
	u.rosterStale = err != nil
}

// noteLostPush marks the roster for a push again when a single change could
// not reach the user because the component link was down (the store
// already holds the change, so no later sync would notice).
func (u *user) noteLostPush(err error) {
	if errors.Is(err, xmppside.ErrNotConnected) {
		u.rosterStale = true
	} else if err != nil {
		u.log.Debug("roster change not sent", "err", err)
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

// pushRoster puts contacts into the user's roster and takes numbers out of
// it, by the best means the user's server and clients offer: XEP-0356
// privileged roster access, else XEP-0144 roster item exchange to resources
// that support it, else subscription presences. fallback says whether the
// presence tier should send subscriptions itself (a sync) or whether the
// roster state machine already did (a single transition). It returns an
// error when nothing could reach the user (the component link is down).
// Each network request has its own time bound.
func (u *user) pushRoster(upserts []roster.Contact, removed []wire.Number, fallback bool) error {
	if len(upserts) == 0 && len(removed) == 0 {
		return nil
	}
	items := make([]xmppside.RosterItem, 0, len(upserts)+len(removed))
	for _, c := range upserts {
		items = append(items, xmppside.RosterItem{JID: u.g.contactJID(c.Number), Name: c.Nick,
			Subscription: "to", Groups: []string{u.g.cfg.RosterGroup}})
	}
	for _, n := range removed {
		items = append(items, xmppside.RosterItem{JID: u.g.contactJID(n), Remove: true})
	}
	if ra, ok := u.g.xmpp.(RosterAccess); ok {
		if ra.PrivilegesFor(u.bare).CanSetRoster() {
			err := u.rosterSet(ra, items)
			if err == nil {
				return nil
			}
			if errors.Is(err, xmppside.ErrNotConnected) {
				return err
			}
			u.log.Info("privileged roster set failed; falling back", "err", err)
		}
		targets := u.rosterxTargets(ra)
		sent := false
		for _, to := range targets {
			ctx, cancel := u.opCtx()
			if err := ra.SendRosterExchange(ctx, to, items); err == nil {
				sent = true
			}
			cancel()
		}
		if sent {
			return nil
		}
	}
	if !fallback {
		return nil
	}
	var firstErr error
	send := func(p xmppside.Presence) {
		if err := u.g.trySendPresence(p); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, c := range upserts {
		send(xmppside.Presence{From: u.g.contactJID(c.Number), To: u.bare, Type: "subscribe", Nick: c.Nick})
	}
	for _, n := range removed {
		if err := u.sendGone(u.g.contactJID(n)); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// sendGone tells the user that from (a contact, or the gateway) leaves:
// unsubscribe, unsubscribed and unavailable. It returns the first error.
func (u *user) sendGone(from jid.JID) error {
	var first error
	for _, t := range [...]string{"unsubscribe", "unsubscribed", "unavailable"} {
		if err := u.g.trySendPresence(xmppside.Presence{From: from, To: u.bare, Type: t}); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// rosterSet sets items one by one, each bounded by its own op timeout (one
// slow item does not eat the others' time).
func (u *user) rosterSet(ra RosterAccess, items []xmppside.RosterItem) error {
	for _, it := range items {
		ctx, cancel := u.opCtx()
		err := ra.RosterSet(ctx, u.bare, []xmppside.RosterItem{it})
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// rosterxTargets returns the user's available resources that advertise
// XEP-0144.
func (u *user) rosterxTargets(ra RosterAccess) []jid.JID {
	var out []jid.JID
	for res, r := range u.res.m {
		if res == "" {
			continue
		}
		full, err := u.bare.WithResource(res)
		if err != nil {
			continue
		}
		if !r.discoDone {
			// Asked once per resource, with a short bound: a client that
			// never answers costs the run loop one discoTimeout, once.
			ctx, cancel := context.WithTimeout(context.Background(), min(discoTimeout, u.g.cfg.OpTimeout))
			feats, err := ra.DiscoFeatures(ctx, full)
			cancel()
			var se stanza.Error
			if err == nil || errors.As(err, &se) {
				// An answer, an error answer included: final for this
				// resource. A timeout or a dropped link is asked again.
				r.discoDone, r.rosterx = true, err == nil && slices.Contains(feats, NSRosterX)
				u.res.m[res] = r
			}
		}
		if r.rosterx {
			out = append(out, full)
		}
	}
	return out
}

// discoTimeout bounds the disco#info query to one of the user's resources.
const discoTimeout = 5 * time.Second

// cleanRoster takes every IMIP contact out of the user's roster at
// unregistration.
func (u *user) cleanRoster() {
	ctx, cancel := u.opCtx()
	defer cancel()
	var nums []wire.Number
	for _, c := range u.list.Contacts() {
		nums = append(nums, c.Number)
	}
	if ra, ok := u.g.xmpp.(RosterAccess); ok {
		if pr := ra.PrivilegesFor(u.bare); pr.CanGetRoster() && pr.CanSetRoster() {
			if items, err := ra.RosterGet(ctx, u.bare); err == nil {
				for _, it := range items {
					if it.JID.Domainpart() != u.g.cfg.Domain.Domainpart() || it.JID.Localpart() == "" {
						continue // only the gateway's contacts are ever touched
					}
					if n, err := roster.Number(it.JID, u.g.cfg.Domain); err == nil && !slices.Contains(nums, n) {
						nums = append(nums, n)
					}
				}
			}
			for _, n := range nums {
				_ = ra.RosterSet(ctx, u.bare, []xmppside.RosterItem{{JID: u.g.contactJID(n), Remove: true}})
			}
		}
	}
	for _, n := range nums {
		_ = u.sendGone(u.g.contactJID(n))
	}
}
