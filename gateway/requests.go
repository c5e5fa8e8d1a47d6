package gateway

// IMIP requests never make the run loop wait: a request is written (queued
// by the session) and recorded in the pending table under its block ID; its
// outcome comes back as an imipside.ReplyEvent, or as the session's end, or
// as the request deadline passing (one deadline for the oldest request,
// on the user's timer).

import (
	"time"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/xmppside"
)

// pendingReq is a request sent on the live session and not answered yet.
type pendingReq struct {
	kind   string // imipside.Request*
	number wire.Number
	msg    *outMsg   // MESG: the message
	sent   time.Time // when it was sent; the request deadline runs from it
}

// track records request id as pending on the live session.
func (u *user) track(id uint64, p pendingReq) {
	if u.pending == nil {
		u.pending = make(map[uint64]pendingReq)
	}
	p.sent = time.Now()
	u.pending[id] = p
	if p.kind != imipside.RequestMESG && !u.timers.isArmed(timerRequests) {
		u.arm(timerRequests, u.g.cfg.OpTimeout)
	}
}

// onReply handles IMIP's answer to a request.
func (u *user) onReply(ev imipside.ReplyEvent) {
	p, ok := u.pending[ev.ID]
	if !ok {
		return // timed out already
	}
	delete(u.pending, ev.ID)
	u.g.stats.imipRTT.observe(time.Since(p.sent))
	if !ev.OK() {
		u.g.stats.code(ev.Code)
	}
	if len(u.pending) == 0 {
		u.pending = nil // a map keeps its buckets: an idle user keeps none
	}
	switch p.kind {
	case imipside.RequestMESG:
		u.onMESGReply(p.msg, ev.Code)
		u.flushOut() // the session's queue has room again
	case imipside.RequestSTAT:
		if !ev.OK() {
			u.logger().Warn("IMIP refused STAT", "code", int(ev.Code))
			u.sentStatus, u.sentText = "", "" // sent again at the next change
		}
	default:
		if !ev.OK() {
			u.requestFailed(p, "The IMIP network refused "+p.kind+" "+string(p.number)+": "+ev.Code.String())
		}
	}
}

// requestFailed tells the user a contact list request did not go through
// and undoes its list state.
func (u *user) requestFailed(p pendingReq, text string) {
	u.logger().Warn("IMIP request failed", "request", p.kind, "number", p.number, "why", text)
	u.g.sendMessage(xmppside.Message{From: u.g.cfg.Domain, To: u.bare, Type: "normal", Body: text})
	u.unsent(p.number, p.kind)
}

// expireRequests fails the requests (other than MESG, which has its own
// delivery deadline) that had no answer within the op timeout.
func (u *user) expireRequests() {
	now := time.Now()
	var next time.Time
	for id, p := range u.pending {
		if p.kind == imipside.RequestMESG {
			continue
		}
		due := p.sent.Add(u.g.cfg.OpTimeout)
		if now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		delete(u.pending, id)
		if p.kind == imipside.RequestSTAT {
			u.logger().Warn("no answer to STAT in time")
			u.sentStatus, u.sentText = "", ""
			continue
		}
		u.requestFailed(p, "The IMIP network did not answer "+p.kind+" "+string(p.number)+" in time.")
	}
	if len(u.pending) == 0 {
		u.pending = nil
	}
	if !next.IsZero() {
		u.armAt(timerRequests, next)
	}
}

// dropPending forgets the requests of a session that ended: messages are
// sent again on the next session, list requests are undone.
func (u *user) dropPending(c *imipConn) {
	u.unsendOut(c)
	pending := u.pending
	u.pending = nil
	u.disarm(timerRequests)
	for _, p := range pending {
		switch p.kind {
		case imipside.RequestMESG, imipside.RequestSTAT:
		default:
			u.requestFailed(p, "The IMIP connection ended before "+p.kind+" "+string(p.number)+" was confirmed; try again.")
		}
	}
}
