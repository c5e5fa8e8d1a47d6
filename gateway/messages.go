package gateway

// Durable delivery of messages, both ways. A message is written to the
// store (through the group commit) unless the other side confirms it first,
// and removed only once the other side confirmed it; every message ends
// delivered or bounced to its sender.
//
// With Config.HoldWrites (the default), a message goes on at once and its
// write waits that long in the committer (a deferred Submit): confirmed
// within it, the write is taken back and the message never touches the
// disk; not confirmed, it is written and the rest is as without it. With
// HoldWrites negative, a message is written before it goes anywhere.
//
//   - XMPP -> IMIP: stored (or held), then sent as MESG; the server's ACK 600
//     (or its answer to a later block: it answers in order) confirms it and
//     deletes it (or takes back its held write), and the sender gets a
//     XEP-0184 receipt if they asked for one. An ACK 8xx, or no confirmation
//     within DeliveryTimeout of its acceptance, bounces it. A message sent on
//     a session that ended unconfirmed is sent again on the next one (a
//     duplicate only if the lost confirmation was the server's, after it
//     took the message).
//   - IMIP -> XMPP: stored, then confirmed to the IMIP server (when it
//     offers the mesg-ack extension), then sent on the component link with a
//     stable id; removed only once a barrier (a ping after it on the same
//     stream) was answered. Held instead (only when the IMIP server offers
//     mesg-ack, so that it sends again what was not confirmed): sent at
//     once, and confirmed to the IMIP server when the barrier is answered
//     or the write is done, whichever comes first. Unconfirmed ones are sent again after the link
//     comes back; while the link is down they wait in the store.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
	"imip-transport/xmppside"
)

// resendAfter is how long a message the full outbox refused waits before
// it is tried again.
const resendAfter = time.Second

// delayAfter is how old a message's Timo must be to carry a XEP-0203 delay.
const delayAfter = time.Minute

// Bounds on the messages a user's run loop keeps in memory.
const (
	// maxOutMessages bounds the messages of one user waiting for IMIP;
	// beyond it a message is refused (resource-constraint, type wait).
	maxOutMessages = 256
	// maxInMemory bounds the IMIP messages of one user kept in memory while
	// waiting for the component link; the others wait in the store only
	// and are read back as the first ones are delivered.
	maxInMemory = 64
)

// outMsg is a Jabber user's message on its way to IMIP.
type outMsg struct {
	// q.ID is valid once stored. While its write is not done, the
	// committer may read q: the run loop does not change it.
	q        QueuedMessage
	stored   bool      // the store's write completed
	done     bool      // confirmed, bounced or dropped: nothing more to do
	accepted time.Time // when the gateway took it (the delivery deadline runs from it)
	waited   bool      // it could not go when taken (no live session), or came from the store
	sentOn   *imipConn // the session it was last sent on; nil: to send
	tries    int       // times sent
	// held: its write is a deferred Submit (pend), so it goes before the
	// write is done.
	held bool
	pend *Deferred
	// writeFailed: its write failed after it was sent; a hand-over that
	// finds it unconfirmed writes it again for the next owner.
	writeFailed bool
}

// inMsg is an IMIP message on its way to the user.
type inMsg struct {
	q       QueuedMessage // as outMsg.q: unchanged while its write is not done
	m       xmppside.Message
	stored  bool
	settled bool // the store's write completed (stored or failed)
	// held: its write is a deferred Submit (pend), so it goes before the
	// write is done; delivered: the barrier confirmed it, and its write is
	// being done (then deleted: see onStoredIn).
	held, delivered bool
	pend            *Deferred
	sent            bool      // handed to the outbox; waiting for the barrier
	conn            *imipConn // the session it came on, to confirm it
	block           uint64    // its MESG block ID on that session
	arrived         time.Time // when it reached the gateway
	// waited: it could not go at once (the link was down); it carries a
	// XEP-0203 delay then.
	waited bool
}

// Events of the delivery.
type (
	// evStoredOut: the write of a message for IMIP ended.
	evStoredOut struct {
		om  *outMsg
		err error
	}
	// evStoredIn: the write of a message from IMIP ended; spilled says it
	// is not kept in memory.
	evStoredIn struct {
		im      *inMsg
		err     error
		spilled bool
	}
	// evDelivered: a message from IMIP was confirmed by the barrier (err
	// nil) or could not be sent.
	evDelivered struct {
		im   *inMsg
		err  error
		link uint64 // the component link it was sent on
	}
	// evReloaded: a page of the messages from IMIP that wait in the store
	// only, read back (see user.maybeReload).
	evReloaded struct {
		qs  []QueuedMessage
		err error
	}
)

func (evStoredOut) isEvent() {}
func (evStoredIn) isEvent()  {}
func (evDelivered) isEvent() {}
func (evReloaded) isEvent()  {}

// Retry delays of messages from IMIP whose barrier failed while the
// component link stayed up.
const (
	// barrierRetry: the barrier was not answered in time (a busy server):
	// the messages it covered go again after this long.
	barrierRetry = 5 * time.Second
	// unreachableRetry: the user's server answered that it cannot reach
	// the user's domain (remote-server-not-found or -timeout): what the
	// barrier covered bounced, and goes again after this long.
	unreachableRetry = 30 * time.Second
)

// onMessage takes a user's chat or normal message with a body for IMIP.
func (u *user) onMessage(m xmppside.Message, at time.Time) {
	if m.Body == "" {
		return // chat states, receipts and the like have no IMIP form
	}
	if u.reg == nil {
		u.g.bounce(m, textError(stanza.Auth, stanza.RegistrationRequired, "Register with the IMIP gateway first."))
		return
	}
	if m.To.Localpart() == "" {
		u.g.bounce(m, textError(stanza.Cancel, stanza.ServiceUnavailable,
			"The gateway itself takes no messages: write to number@"+u.g.cfg.Domain.String()+"."))
		return
	}
	n, err := roster.Number(m.To, u.g.cfg.Domain)
	if err != nil {
		u.g.bounce(m, *malformedError())
		return
	}
	switch {
	case u.link.state == linkAuthFailed:
		u.g.bounce(m, textError(stanza.Auth, stanza.NotAuthorized,
			"IMIP refused your login; register again with the right password. The message was not sent."))
		return
	case u.sess == nil && !u.res.any() && !u.recentlyTaken():
		u.g.bounce(m, textError(stanza.Wait, stanza.RecipientUnavailable,
			"You are not online to the IMIP gateway; send it your presence first. The message was not sent."))
		return
	case len(m.Body) > wire.DefaultMaxSize-256:
		u.g.bounce(m, textError(stanza.Modify, stanza.NotAcceptable, "The message is too long for IMIP."))
		return
	case !u.msgLimit().Allow():
		u.g.bounce(m, errSlowDown("messages"))
		return
	case len(u.outq) >= maxOutMessages:
		u.g.bounce(m, textError(stanza.Wait, stanza.ResourceConstraint,
			"Too many messages waiting for the IMIP network; try again shortly."))
		return
	}
	om := &outMsg{accepted: at, q: QueuedMessage{JID: u.key, Dir: ToIMIP, Peer: n, StanzaID: m.ID,
		Resource: m.From.Resourcepart(), Body: m.Body, Receipt: m.ReceiptRequest}}
	hold := u.g.cfg.HoldWrites
	if u.releasing {
		hold = 0 // written before the hand-over ends, for the next owner
	}
	u.writes++
	om.pend = u.g.commit.SubmitDeferred([]Op{OpPutMessage{Msg: &om.q}}, func(err error) { u.postAlways(evStoredOut{om: om, err: err}) },
		hold)
	if om.pend == nil {
		u.g.bounce(m, textError(stanza.Wait, stanza.ResourceConstraint, "The gateway is overloaded; try again shortly."))
		return
	}
	om.held = hold > 0
	// One that cannot go at once (no live session) is not counted in the
	// relay latency when it goes.
	om.waited = u.sess == nil || !u.link.state.live() || u.draining != nil
	u.outq = append(u.outq, om)
	u.armDelivery()
	if om.held {
		u.flushOut()
	}
}

// onStoredOut handles the end of a write of a message for IMIP.
func (u *user) onStoredOut(ev evStoredOut) {
	om := ev.om
	if om.done {
		// Confirmed or bounced meanwhile: take it out of the store again.
		if ev.err == nil && om.q.ID != 0 {
			u.write([]Op{OpDeleteMessage{ID: om.q.ID}}, "deleting a finished message")
		}
		return
	}
	if ev.err != nil {
		u.logger().Error("storing a message for IMIP", "err", ev.err)
		if om.held && om.sentOn != nil {
			// Sent already: IMIP's answer decides (only a crash before it
			// would lose the message now; a hand-over writes it again).
			om.writeFailed = true
			return
		}
		u.finishOut(om, false)
		u.bounceOut(om, textError(stanza.Wait, stanza.InternalServerError, "The gateway could not store the message; it was not sent."))
		return
	}
	if om.q.ID == 0 {
		// Skipped: the user unregistered meanwhile.
		u.finishOut(om, false)
		return
	}
	om.stored = true
	if om.tries > 1 {
		u.write([]Op{OpTouchMessage{ID: om.q.ID, Tries: om.tries}}, "counting a resend")
	}
	u.flushOut()
}

// flushOut sends the stored messages not yet sent on the live session, in
// the order they were accepted.
func (u *user) flushOut() {
	if u.sess == nil || !u.link.state.live() || u.draining != nil {
		for _, om := range u.outq {
			if om.tries == 0 {
				om.waited = true // for a login, a link: not a relay
			}
		}
		return
	}
	for _, om := range u.outq {
		if !om.stored && !om.held {
			return // order: the ones behind wait for it
		}
		if om.sentOn == u.conn {
			continue
		}
		id, err := u.sess.SendMessage(om.q.Peer, om.q.Body)
		if err != nil {
			if errors.Is(err, wire.ErrSizeTooLarge) {
				u.finishOut(om, true)
				u.bounceOut(om, textError(stanza.Modify, stanza.NotAcceptable, "The message is too long for IMIP."))
				continue
			}
			// The session's queue is full or it is ending: a later reply
			// or the next session sends the rest.
			u.logger().Debug("MESG not sent now", "err", err)
			return
		}
		om.sentOn = u.conn
		u.track(id, pendingReq{kind: imipside.RequestMESG, number: om.q.Peer, msg: om})
		if om.tries == 0 && !om.waited {
			// Straight through: from the component's read to IMIP's socket
			// (the store's write included, when the message waits for it).
			u.g.stats.relayToIMIP.observe(time.Since(om.accepted))
		}
		if om.tries++; om.tries > 1 && om.stored {
			u.write([]Op{OpTouchMessage{ID: om.q.ID, Tries: om.tries}}, "counting a resend")
		}
	}
}

// onMESGReply handles IMIP's answer to a MESG.
func (u *user) onMESGReply(om *outMsg, code wire.Code) {
	if om.done {
		return
	}
	u.finishOut(om, true)
	if !code.OK() {
		u.logger().Info("IMIP refused a message", "to", om.q.Peer, "code", int(code))
		u.bounceOut(om, *ackError(code))
		return
	}
	u.g.stats.msgToIMIP.Add(1)
	if om.q.Receipt && om.q.StanzaID != "" {
		u.g.sendMessage(xmppside.Message{From: u.g.contactJID(om.q.Peer), To: u.senderJID(om), ReceiptReceived: om.q.StanzaID})
	}
}

// finishOut takes om out of the queue (and the store, with del: a held
// write is taken back, or the message deleted once it is written).
func (u *user) finishOut(om *outMsg, del bool) {
	om.done = true
	if i := slices.Index(u.outq, om); i >= 0 {
		u.outq = slices.Delete(u.outq, i, i+1)
	}
	switch {
	case !del:
	case om.stored:
		u.write([]Op{OpDeleteMessage{ID: om.q.ID}}, "deleting a delivered message")
	case om.held && u.g.commit.Cancel(om.pend):
		u.g.stats.heldUnwritten.Add(1)
	}
	u.armDelivery()
}

// senderJID is the full JID a message for IMIP came from.
func (u *user) senderJID(om *outMsg) jid.JID {
	if om.q.Resource != "" {
		if full, err := u.bare.WithResource(om.q.Resource); err == nil {
			return full
		}
	}
	return u.bare
}

// bounceOut returns om to its sender as a message error with its id.
func (u *user) bounceOut(om *outMsg, e stanza.Error) {
	u.g.bounce(xmppside.Message{ID: om.q.StanzaID, From: u.senderJID(om), To: u.g.contactJID(om.q.Peer), Body: om.q.Body}, e)
}

// armDelivery points the delivery deadline at the oldest message for IMIP.
func (u *user) armDelivery() {
	if len(u.outq) == 0 {
		u.disarm(timerDelivery)
		return
	}
	u.armAt(timerDelivery, u.outq[0].accepted.Add(u.g.cfg.DeliveryTimeout))
}

// expireOut bounces the messages for IMIP not confirmed in time.
func (u *user) expireOut() {
	deadline := time.Now().Add(-u.g.cfg.DeliveryTimeout)
	for len(u.outq) > 0 && !u.outq[0].accepted.After(deadline) {
		om := u.outq[0]
		u.finishOut(om, true)
		u.logger().Warn("message for IMIP not confirmed in time: bounced", "to", om.q.Peer, "tries", max(om.tries, om.q.Tries))
		u.bounceOut(om, textError(stanza.Wait, stanza.RemoteServerTimeout,
			"The IMIP network did not confirm the message in time; it may not have been delivered."))
	}
	u.armDelivery()
}

// unsendOut marks the messages sent on c, which ended, for sending again.
func (u *user) unsendOut(c *imipConn) {
	for _, om := range u.outq {
		if om.sentOn == c {
			om.sentOn = nil
		}
	}
}

// ---------------------------------------------------------------- from IMIP

// onIMIPMessage takes a message from IMIP: stored first, then confirmed to
// the IMIP server, then sent to the user.
func (u *user) onIMIPMessage(ev imipside.MessageEvent, at time.Time) {
	m := xmppside.Message{
		From: u.g.contactJID(ev.From),
		To:   u.bare,
		Type: "chat",
		Body: ev.Text,
		Nick: ev.Nick,
	}
	if c, ok := u.list.Contact(ev.From); ok && c.InList && c.Nick == ev.Nick {
		// XEP-0172: the nick is for senders the user does not know; a
		// listed contact's is in the roster already (each byte of every
		// message costs the user's server too).
		m.Nick = ""
	}
	if !ev.Time.IsZero() {
		stored := ev.Time.Before(u.loginTime.Truncate(time.Second))
		if stored || time.Since(ev.Time) > delayAfter {
			m.Delay = ev.Time.UTC()
			m.DelayFrom = u.g.cfg.Domain
		}
	}
	if ev.MessageID != "" {
		m.ID = "imip-" + string(u.conn.number) + "-" + ev.MessageID // the same on every redelivery
	} else {
		m.ID = "imip-" + randomToken()
	}
	im := &inMsg{m: m, conn: u.conn, block: ev.BlockID, arrived: at, q: QueuedMessage{JID: u.key, Dir: ToXMPP, Peer: ev.From,
		StanzaID: m.ID, Nick: m.Nick, Body: ev.Text, Stamp: ev.Time}}
	// Order: once one message waits in the store only, the ones after it
	// do too, until the store is read back.
	spill := len(u.inq) >= maxInMemory || u.spilled > 0 || u.spillStored
	if spill {
		u.spilled++
	} else {
		u.inq = append(u.inq, im)
	}
	hold := u.g.cfg.HoldWrites
	if spill || u.sess == nil || !u.sess.ConfirmsMessages() || u.settling != nil {
		// It waits in the store only: written now. Or the IMIP server
		// does not send again what the transport did not confirm (no
		// mesg-ack): then the store is the only copy, written first. Or
		// the session logs out once it is confirmed (settleIn).
		hold = 0
	}
	u.writes++
	im.pend = u.g.commit.SubmitDeferred([]Op{OpPutMessage{Msg: &im.q}}, func(err error) { u.postAlways(evStoredIn{im: im, err: err, spilled: spill}) },
		hold)
	if im.pend == nil {
		u.postAlways(evStoredIn{im: im, err: errCommitFull, spilled: spill})
		return
	}
	if hold > 0 {
		im.held = true
		u.flushIn()
	}
}

// confirmIn confirms im to the IMIP server (mesg-ack), when it came on the
// live session.
func (u *user) confirmIn(im *inMsg) {
	if im.conn != nil && im.conn == u.conn && im.block != 0 && u.sess.ConfirmsMessages() {
		if err := u.sess.ConfirmMessage(im.block); err != nil {
			u.logger().Debug("confirming a MESG", "err", err)
		}
	}
}

// onStoredIn handles the end of a write of a message from IMIP.
func (u *user) onStoredIn(ev evStoredIn) {
	im := ev.im
	im.settled, im.stored = true, ev.err == nil && im.q.ID != 0
	if ev.err != nil {
		// Not durable: it still goes to the user, but is not confirmed to
		// the IMIP server, which (with mesg-ack) sends it again later.
		u.logger().Error("storing a message from IMIP", "err", ev.err)
	}
	if im.stored {
		u.confirmIn(im)
	}
	if im.delivered {
		// The barrier confirmed it while it was being written.
		u.orphanWrites--
		if im.stored {
			u.write([]Op{OpDeleteMessage{ID: im.q.ID}}, "deleting a delivered message")
		}
		u.maybeReload()
		return
	}
	if ev.spilled {
		u.spilled--
		if !im.stored {
			// Not in the store to come back from: keep it in memory.
			u.inq = append(u.inq, im)
		} else {
			u.spillStored = true
			u.spillsSince++
		}
	}
	if !im.held {
		// A held message went at once; its resends follow the barrier's
		// verdicts (onDelivered), not its write.
		u.flushIn()
	}
	// The messages in memory may all be delivered already: then nothing
	// else would read this one back.
	u.maybeReload()
}

// flushIn sends the messages from IMIP that wait for the component link, in
// order, while it is up.
func (u *user) flushIn() {
	// The session is being left (a hand-over, a shutdown): what has not
	// gone yet goes from the store, sent by the next owner or after the
	// restart, or comes again from IMIP. Sent from here, it would go again
	// from there, since no barrier confirms it here any more. Only a
	// message that is nowhere else (its write failed, and the IMIP server
	// does not send again what was not confirmed) goes from here.
	leaving := u.settling != nil || u.draining != nil || u.releasing || u.stopping
	if !u.g.up.Load() {
		for _, im := range u.inq {
			im.waited = true
		}
		return
	}
	for _, im := range u.inq {
		if !im.settled && !im.held {
			return // order: the ones behind wait for it
		}
		if im.sent || leaving && !u.onlyCopy(im) {
			continue
		}
		if im.waited && im.m.Delay.IsZero() {
			at := im.q.Stamp
			if at.IsZero() {
				at = im.arrived
			}
			im.m.Delay, im.m.DelayFrom = at.UTC().Truncate(time.Second), u.g.cfg.Domain
		}
		var since time.Time
		if !im.waited {
			// Straight through (a failed send marks it waited): the relay
			// latency is measured once it is written.
			since = im.arrived
		}
		im.sent = true
		link := u.g.link.Load()
		stored, id := im.stored, int64(0)
		if stored { // else the committer may be writing q.ID
			id = im.q.ID
		}
		u.g.out.push(outItem{m: &im.m, barrier: true, since: since, done: func(err error) {
			if !u.postAlways(evDelivered{im: im, err: err, link: link}) && err == nil && stored {
				// The user has stopped (shutdown): the confirmation still
				// takes the message out of the store.
				u.g.commit.Submit([]Op{OpDeleteMessage{ID: id}}, nil)
			}
		}})
	}
}

// onlyCopy reports whether memory holds the only copy of im: its write
// failed (or the group commit refused it), and the IMIP server does not
// send it again (it came on a session without mesg-ack).
func (u *user) onlyCopy(im *inMsg) bool {
	if !im.settled || im.stored {
		return false
	}
	return im.conn == nil || im.block == 0 || !im.conn.sess.ConfirmsMessages()
}

// onDelivered handles the barrier's verdict on a message sent to the user.
func (u *user) onDelivered(ev evDelivered) {
	im := ev.im
	if ev.err != nil {
		if errors.Is(ev.err, xmppside.ErrNotConnected) || errors.Is(ev.err, errBarrier) || errors.Is(ev.err, errOutboxFull) {
			// Again once a new link is up (evLinkUp); at once if one is up
			// already. Never at once on the link that failed: that would
			// spin until the component notices it is down.
			im.sent, im.waited = false, true
			switch {
			case errors.Is(ev.err, errOutboxFull):
				u.armWithin(timerResend, resendAfter) // the outbox has room again soon
			case u.g.up.Load() && u.g.link.Load() > ev.link:
				u.flushIn()
			case errors.Is(ev.err, xmppside.ErrRemoteUnreachable):
				// Bounced by the user's server on the way to their domain:
				// the messages wait in the store, tried again later.
				u.logger().Warn("the user's server cannot reach their domain: messages from IMIP wait", "err", ev.err)
				u.armWithin(timerResend, unreachableRetry)
			case errors.Is(ev.err, xmppside.ErrNotConnected):
				// The link dropped: evLinkUp sends it on the next one.
			default:
				// Not answered in time on a link that stays up: ask again
				// (the stable id makes a duplicate recognisable).
				u.armWithin(timerResend, barrierRetry)
			}
			return
		}
		// The server can never take it (a refused address): drop it.
		u.logger().Warn("message from IMIP cannot be delivered to XMPP: dropped", "from", im.q.Peer, "err", ev.err)
	} else {
		u.g.stats.msgToXMPP.Add(1)
	}
	if i := slices.Index(u.inq, im); i >= 0 {
		u.inq = slices.Delete(u.inq, i, i+1)
	}
	switch {
	case im.stored:
		u.write([]Op{OpDeleteMessage{ID: im.q.ID}}, "deleting a delivered message")
	case im.settled && ev.err == nil:
		// Its write failed, but the user's server has it now.
		u.confirmIn(im)
	case im.held && !im.settled:
		if u.g.commit.Cancel(im.pend) {
			// Never written: delivered is what confirms it to IMIP.
			u.g.stats.heldUnwritten.Add(1)
			u.confirmIn(im)
			break
		}
		// Its write is being done: onStoredIn confirms and deletes it.
		im.delivered = true
		u.orphanWrites++
	}
	u.maybeReload()
}

// maybeReload starts reading back the messages from IMIP that wait in the
// store only, once memory holds none (all delivered) and no write of one is
// in flight. The read comes after every write submitted before it (the
// deletes of the delivered ones among them: an empty submit to the group
// commit is a barrier), on a job of its own, a page of maxInMemory at a
// time; evReloaded brings the page.
func (u *user) maybeReload() {
	if u.reloading || !u.spillStored || u.spilled > 0 || len(u.inq) > 0 || u.orphanWrites > 0 || u.reg == nil {
		return
	}
	committed := make(chan struct{})
	if !u.g.commit.Submit(nil, func(error) { close(committed) }) {
		u.arm(timerResend, resendAfter) // the committer is full: later
		return
	}
	u.reloading, u.spillsSince = true, 0
	u.spawnJob(func() {
		select {
		case <-committed:
		case <-u.g.ctx.Done():
			u.postAlways(evReloaded{err: u.g.ctx.Err()})
			return
		}
		ctx, cancel := context.WithTimeout(u.g.ctx, u.g.cfg.OpTimeout)
		defer cancel()
		qs, err := u.g.cfg.Store.MessagesPage(ctx, u.key, ToXMPP, 0, maxInMemory+1)
		u.postAlways(evReloaded{qs: qs, err: err})
	})
}

// onReloaded takes a page of messages read back from the store.
func (u *user) onReloaded(ev evReloaded) {
	u.reloading = false
	if ev.err != nil {
		u.logger().Error("reading queued messages", "err", ev.err)
		u.arm(timerResend, resendAfter) // spillStored holds: again then
		return
	}
	if u.reg == nil {
		return // unregistered meanwhile: the store dropped them
	}
	// A message that went to the store only while the read ran may have
	// missed it: then read again once these are delivered.
	u.spillStored = u.spillsSince > 0
	for i, q := range ev.qs {
		if i == maxInMemory {
			u.spillStored = true
			break
		}
		u.inq = append(u.inq, u.restoredIn(q))
	}
	u.flushIn()
	u.maybeReload() // an empty page and a spill since: read again
}

// restoredIn makes a message from IMIP read from the store ready to send.
func (u *user) restoredIn(q QueuedMessage) *inMsg {
	m := xmppside.Message{ID: q.StanzaID, From: u.g.contactJID(q.Peer), To: u.bare, Type: "chat", Body: q.Body, Nick: q.Nick,
		DelayFrom: u.g.cfg.Domain}
	m.Delay = q.Stamp
	if m.Delay.IsZero() {
		m.Delay = q.Accepted
	}
	m.Delay = m.Delay.UTC().Truncate(time.Second)
	return &inMsg{q: q, m: m, stored: true, settled: true, arrived: q.Accepted, waited: true}
}

// loadQueued reads the user's messages for IMIP queued before a restart
// (at most maxOutMessages: no more are ever accepted at once), and has
// those from IMIP read back a page at a time (maybeReload).
func (u *user) loadQueued(ctx context.Context) {
	qs, err := u.g.cfg.Store.MessagesPage(ctx, u.key, ToIMIP, 0, 0)
	if err != nil {
		u.logger().Error("reading queued messages", "err", err)
	}
	for _, q := range qs {
		u.outq = append(u.outq, &outMsg{q: q, stored: true, accepted: q.Accepted, waited: true})
	}
	if len(qs) > 0 {
		u.logger().Info("queued messages for IMIP loaded", "messages", len(qs))
		u.armDelivery()
	}
	// Those from IMIP may be many: they come back a page at a time.
	u.spillStored = true
	u.maybeReload()
}

// randomToken returns 16 random hex digits.
func randomToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ---------------------------------------------------------------- events

// onIMIP handles an event of the live IMIP session.
func (u *user) onIMIP(ev imipside.Event, at time.Time) {
	switch ev := ev.(type) {
	case imipside.StatEvent:
		if u.settling != nil || u.draining != nil {
			// The session is being left (a hand-over or a shutdown told
			// the user its contacts went offline): not shown again. It
			// still says that the contact accepted the user's request.
			u.applyRoster(roster.ServerStat{Number: ev.From})
			return
		}
		u.onStat(ev)
	case imipside.MessageEvent:
		u.onIMIPMessage(ev, at)
	case imipside.ReplyEvent:
		u.onReply(ev)
	case imipside.ListAddEvent:
		u.onListAdd(ev)
	case imipside.ListAcceptEvent:
		u.applyRoster(roster.ServerListAccept{Number: ev.From, Nick: ev.Nick})
	case imipside.ListRejectEvent:
		u.applyRoster(roster.ServerListReject{Number: ev.From})
	case imipside.ListRemoveEvent:
		u.applyRoster(roster.ServerListRemove{Number: ev.From})
		delete(u.contacts, ev.From)
	}
}

// Limits on contact requests from IMIP, which any IMIP user can send.
const (
	maxPendingIn   = 100  // unanswered requests kept per user
	maxRequestText = 1024 // bytes of a request's text kept and shown
)

// onListAdd handles a contact request, within the limits: the text is cut
// to maxRequestText, and beyond maxPendingIn unanswered requests new ones
// are ignored (the IMIP server keeps them and delivers them again at the
// next login).
func (u *user) onListAdd(ev imipside.ListAddEvent) {
	if _, known := u.list.Contact(ev.From); !known {
		pending := 0
		for _, c := range u.list.Contacts() {
			if c.PendingIn {
				pending++
			}
		}
		if pending >= maxPendingIn {
			u.logger().Warn("too many unanswered contact requests: one ignored", "from", ev.From, "pending", pending)
			return
		}
	}
	u.applyRoster(roster.ServerListAdd{Number: ev.From, Nick: ev.Nick, Text: truncateUTF8(ev.Text, maxRequestText)})
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// onStat caches a contact's presence and forwards it.
func (u *user) onStat(ev imipside.StatEvent) {
	u.applyRoster(roster.ServerStat{Number: ev.From})
	if ev.Status == wire.StatusOffline {
		delete(u.contacts, ev.From)
	} else {
		u.contacts[ev.From] = contactPresence{status: ev.Status, text: ev.Text}
	}
	u.sendContactPresence(ev.From, u.bare)
}
