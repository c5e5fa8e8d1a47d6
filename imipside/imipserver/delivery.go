package imipserver

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"imip-transport/imipside/wire"
)

// The [ours] extension mesg-ack (see the package doc).
const (
	// capMesgAck is the Capabilities token both sides announce.
	capMesgAck = "mesg-ack"
	// hdrMessageID carries a pushed message's stable Message-ID.
	hdrMessageID = "Message-ID"
	// maxConfirmBatch bounds the confirmed messages a reader collects
	// before it deletes them from the Store in one call.
	maxConfirmBatch = 64
	// finalFlushTimeout bounds the delete of the last confirmed messages
	// when a connection ends (also at shutdown, whose context is done).
	finalFlushTimeout = 5 * time.Second
)

// hasToken reports whether the comma-separated list holds tok (ASCII case
// insensitive, spaces around tokens ignored).
func hasToken(list, tok string) bool {
	for t := range strings.SplitSeq(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// messageID is the Message-ID of the stored message m.
func messageID(m Message) string {
	if m.Key != "" {
		return m.Key
	}
	return "m" + strconv.FormatInt(m.ID, 10)
}

// maxMessageIDLen bounds the Message-IDs this server makes: "m" and an
// int64 (20 bytes), or a key (newKey: 1 + 10 + 1 + at most 13 bytes).
const maxMessageIDLen = 25

// newKey returns a new Message-ID for a message pushed before it is stored.
func (s *Server) newKey() string {
	return s.keyPrefix + strconv.FormatUint(s.keys.Add(1), 36)
}

// inflight is a message pushed to a connection and not yet confirmed.
type inflight struct {
	id   int64 // the message's Store ID; 0 while a held one is not stored
	size int   // bytes of the pushed block
	held *heldMsg
}

// heldMsg is a message pushed before it was stored (Config.HoldWrites).
// Exactly one party decides its fate, under the recipient connection's
// dmu: the recipient's confirmation (then it is never stored), or the
// timer or the connection's end (then it is stored). The decider sends
// the sender's ACK (in its place among the sender's answers) and ends the
// server's count of it.
type heldMsg struct {
	m      Message
	sender *conn
	slot   *answerSlot // the sender's ACK 600 (nil: none due)
	rc     *conn       // the recipient's connection
	bid    uint64      // the push's block ID on rc
	timer  *time.Timer
	// Guarded by rc.dmu. decided: the fate is settled; late: confirmed
	// after it was decided to store it (the storer deletes it).
	decided, late bool
}

// pushHeld pushes m (with m.Key set) to c, before it is stored, when c
// confirms messages (mesg-ack), no stored message waits for it, and its
// window has room; sender is the sender's connection, ack says the sender
// is due an ACK 600 (with Reference: ref). It reports false when the message must be stored
// first. Then HoldWrites decides, see heldMsg.
func (c *conn) pushHeld(m Message, sender *conn, ack bool, ref string) bool {
	s := c.srv
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if !c.confirms || c.pulling || c.dirty || c.isClosed() ||
		len(c.flight) >= s.cfg.DeliveryWindow || (len(c.flight) > 0 && c.flightBytes >= s.pushBudget()) {
		return false
	}
	buf, bid, err := s.encodeMESG(m, sender.nick, true)
	if err != nil { // checkMESG makes this unreachable
		c.log().Error("imipserver: cannot encode message", "err", err)
		return false
	}
	h := &heldMsg{m: m, sender: sender, rc: c, bid: bid}
	if c.flight == nil {
		c.flight = make(map[uint64]inflight, min(s.cfg.DeliveryWindow, 64))
	}
	c.flight[bid] = inflight{size: len(buf), held: h}
	c.flightBytes += len(buf)
	if c.early == nil {
		c.early = make(map[string]struct{})
	}
	c.early[m.Key] = struct{}{}
	if ack {
		h.slot = sender.holdAnswer(ref, h) // before the push can be confirmed
	}
	if !c.enqueue(outItem{buf: buf, pushed: bid}) {
		delete(c.flight, bid)
		delete(c.early, m.Key)
		c.flightBytes -= len(buf)
		if h.slot != nil {
			sender.release(h.slot, nil)
		}
		return false
	}
	s.wg.Add(1) // done by the decider
	h.timer = time.AfterFunc(s.cfg.HoldWrites, h.expire)
	return true
}

// expire runs when HoldWrites passed: unless decided already, the message
// is stored, after the held messages pushed before it.
func (h *heldMsg) expire() { h.rc.storeHeld(h.bid) }

// storeHeld stores the held messages in flight on c not decided yet whose
// push came up to block ID upTo, in the order of their pushes: stored
// messages are pushed again, after a login, in the order they were stored.
func (c *conn) storeHeld(upTo uint64) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	c.storeHeldLocked(upTo)
}

// storeHeldLocked is storeHeld with c.storeMu held.
func (c *conn) storeHeldLocked(upTo uint64) {
	var hs []*heldMsg
	c.dmu.Lock()
	for bid, f := range c.flight {
		if h := f.held; h != nil && !h.decided && bid <= upTo {
			h.decided = true
			hs = append(hs, h)
		}
	}
	c.dmu.Unlock()
	slices.SortFunc(hs, func(a, b *heldMsg) int { return cmp.Compare(a.bid, b.bid) })
	for _, h := range hs {
		h.timer.Stop()
		h.store()
	}
}

// confirmed runs when the recipient confirmed the push (after the flight
// entry was taken, without dmu) and decided first: no store; the ACK.
func (h *heldMsg) confirmed() {
	h.timer.Stop()
	h.sender.log().Debug("imipserver: message", "to", h.m.To, "held", false)
	h.ack()
}

// ack sends the sender's ACK 600 and ends the server's count of h.
func (h *heldMsg) ack() {
	defer h.sender.srv.wg.Done()
	if h.slot == nil {
		return
	}
	ref := h.slot.ref
	h.sender.release(h.slot, h.sender.ackItem(ref, wire.CodeOK))
}

// store writes the message, then sends the sender's ACK; a store failure
// sends none (the sender sends the message again) and closes the sender's
// connection, as onMESG does.
func (h *heldMsg) store() {
	s := h.sender.srv
	// Also at shutdown (Serve's context ended): a held message not stored
	// then would be sent again by its sender under a new Message-ID.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), finalFlushTimeout)
	defer cancel()
	id, err := s.store.PutMessage(ctx, h.m)
	if err != nil {
		h.sender.log().Error("imipserver: hold message: store, closing", "err", err)
		// Killed before the answers behind this one are released: a
		// client takes the answer to a later block as confirming this.
		h.sender.kill()
		if h.slot != nil {
			h.sender.release(h.slot, nil)
		}
		s.wg.Done()
		return
	}
	rc := h.rc
	rc.dmu.Lock()
	f, inFlight := rc.flight[h.bid]
	if inFlight && f.held == h {
		f.id = id // a confirmation deletes it
		rc.flight[h.bid] = f
	}
	late := h.late
	rc.dmu.Unlock()
	switch {
	case late:
		if err := s.store.DeleteMessages(ctx, id); err != nil {
			// Its key stays in rc.early: not pushed again on rc.
			h.sender.log().Error("imipserver: delete confirmed message: store", "err", err)
		} else {
			rc.forget(h.m.Key)
		}
	case !inFlight || rc.isClosed():
		// The recipient's connection ended before confirming: the message
		// waits in the Store for the next login, which may be under way.
		if nc := s.onlineConn(h.m.To); nc != nil && nc != rc {
			nc.deliver()
		}
	}
	h.sender.log().Debug("imipserver: message", "to", h.m.To, "held", true, "message", id)
	h.ack()
}

// endHeld stores the held messages still in flight on c, which ended.
func (c *conn) endHeld() { c.storeHeld(math.MaxUint64) }

// forget drops key from c.early: its message is deleted, or was never
// stored.
func (c *conn) forget(keys ...string) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	for _, k := range keys {
		delete(c.early, k)
	}
	c.forgets++
}

// deliver pushes stored messages for c's user while its window has room,
// lowest ID first, and returns. Any goroutine may call it, without locks
// held: one call at a time runs the loop, and a call that arrives meanwhile
// makes the running one look at the Store again, so a message stored
// before a deliver call is pushed (or waits for room) once it returns.
// It blocks on Store reads.
func (c *conn) deliver() {
	s := c.srv
	c.dmu.Lock()
	c.dirty = true
	if c.pulling {
		c.dmu.Unlock()
		return
	}
	c.pulling = true
	var nicks map[wire.Number]string
	for c.dirty && !c.isClosed() {
		room := s.cfg.DeliveryWindow - len(c.flight)
		if room <= 0 || (len(c.flight) > 0 && c.flightBytes >= s.pushBudget()) {
			break // a confirm calls deliver again
		}
		c.dirty = false
		after, forgets := c.last, c.forgets
		c.dmu.Unlock()

		msgs, err := s.store.Messages(s.ctx, c.num, after, room)
		if err == nil {
			for _, m := range msgs {
				if _, ok := nicks[m.From]; !ok {
					if nicks == nil {
						nicks = make(map[wire.Number]string)
					}
					nicks[m.From] = s.nickOf(m.From)
				}
			}
		}

		c.dmu.Lock()
		if err != nil {
			c.dirty, c.pulling = true, false
			c.dmu.Unlock()
			if s.ctx.Err() == nil {
				c.log().Error("imipserver: push stored messages: store, closing", "err", err)
			}
			c.kill() // the messages stay stored for the next login
			return
		}
		if c.forgets != forgets {
			// A message pushed before it was stored may have been read
			// just before its delete: read again.
			c.dirty = true
			continue
		}
		if len(msgs) == room {
			c.dirty = true // there may be more
		}
		for _, m := range msgs {
			if _, ok := c.early[m.Key]; ok && m.Key != "" {
				// Pushed before it was stored: not again.
				delete(c.early, m.Key)
				c.last = m.ID
				continue
			}
			if len(c.flight) > 0 && c.flightBytes >= s.pushBudget() {
				c.dirty = true // m and what follows are read again later
				break
			}
			buf, bid, err := s.encodeMESG(m, nicks[m.From], c.confirms)
			if err != nil {
				// Only a size above the limit can fail (a message stored
				// under a larger limit). It stays stored; skip it here.
				c.log().Error("imipserver: cannot encode stored message, skipped", "message", m.ID, "err", err)
				c.last = m.ID
				continue
			}
			if c.flight == nil {
				c.flight = make(map[uint64]inflight, min(s.cfg.DeliveryWindow, 64))
			}
			c.flight[bid] = inflight{id: m.ID, size: len(buf)}
			c.flightBytes += len(buf)
			if !c.enqueue(outItem{buf: buf, pushed: bid}) {
				break // closed: everything unconfirmed stays stored
			}
			c.last = m.ID
		}
	}
	c.pulling = false
	c.dmu.Unlock()
}

// pushBudget is the most bytes of pushed, unconfirmed messages one
// connection takes: half its queue, so the other blocks still fit.
func (s *Server) pushBudget() int { return s.cfg.OutQueueBytes / 2 }

// pushLive queues the live message buf on c, a connection without
// mesg-ack, unless stored messages wait for c (they go first: the caller
// stores this one too). done runs once it is written; dropped, if c ends
// before. It reports whether the message was queued.
func (c *conn) pushLive(buf []byte, done, dropped func()) bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.confirms || c.pulling || c.dirty {
		return false
	}
	// A queue already half full takes no more live messages: they are
	// stored and follow through the delivery window, so no sender can
	// overflow another user's queue and get them disconnected.
	return c.enqueueMax(outItem{buf: buf, done: done, dropped: dropped}, c.srv.pushBudget())
}

// confirm takes the pushed MESG with block ID bid off c's window and
// returns its message ID (0: a held message not stored); ok is false when
// no such push is in flight. held is set when the confirmation decided a
// held message's fate: the caller calls its confirmed. key is the Key of
// a held message that was stored: the caller forgets it once it deleted
// the message.
func (c *conn) confirm(bid uint64) (id int64, held *heldMsg, key string, ok bool) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	f, ok := c.flight[bid]
	if !ok {
		return 0, nil, "", false
	}
	if h := f.held; h != nil {
		switch {
		case !h.decided:
			h.decided = true
			held = h
			delete(c.early, h.m.Key) // never stored
		case f.id == 0:
			h.late = true // being stored: the storer deletes it
		default:
			key = h.m.Key
		}
	}
	delete(c.flight, bid)
	c.flightBytes -= f.size
	if len(c.flight) == 0 {
		c.flight = nil // an idle connection keeps no map
	}
	return f.id, held, key, true
}

// onClientACK handles a client ACK: with mesg-ack, ACK 600 whose Reference
// is a pushed, unconfirmed MESG confirms it. Anything else is ignored. The
// Store delete is batched: see flushConfirmed.
func (c *conn) onClientACK(b *wire.Block) {
	if !c.confirms || strings.TrimSpace(b.Arg) != strconv.Itoa(int(wire.CodeOK)) {
		return
	}
	ref, ok := b.Reference()
	if !ok {
		return
	}
	id, held, key, ok := c.confirm(ref)
	if !ok {
		c.log().Debug("imipserver: ACK for no pushed message ignored", "reference", ref)
		return
	}
	if held != nil {
		held.confirmed()
	}
	if id == 0 {
		// A held message not stored: nothing to delete; its window slot
		// is free for what waits in the Store.
		c.dmu.Lock()
		waiting := c.dirty && !c.pulling
		c.dmu.Unlock()
		if waiting {
			c.deliver()
		}
		return
	}
	c.confirmed = append(c.confirmed, id)
	if key != "" {
		c.confirmedKeys = append(c.confirmedKeys, key)
	}
	if len(c.confirmed) >= maxConfirmBatch {
		c.flushConfirmed(c.srv.ctx, true)
	}
}

// flushConfirmed deletes the confirmed messages from the Store in one
// call, then, when push is set, pushes what the freed window allows.
// Reader goroutine only.
func (c *conn) flushConfirmed(ctx context.Context, push bool) {
	if len(c.confirmed) == 0 {
		return
	}
	ids, keys := c.confirmed, c.confirmedKeys
	c.confirmed, c.confirmedKeys = nil, nil
	if err := c.srv.store.DeleteMessages(ctx, ids...); err != nil {
		// They were delivered; at worst they are pushed again at the next
		// login, with the same Message-ID. Their keys stay in c.early,
		// so none is pushed again on this connection.
		c.log().Error("imipserver: delete confirmed messages: store", "count", len(ids), "err", err)
	} else if len(keys) > 0 {
		c.forget(keys...)
	}
	if push {
		c.deliver()
	}
}

// finalFlush deletes the last confirmed messages when the connection ends,
// with a context that survives the server's shutdown.
func (c *conn) finalFlush() {
	if len(c.confirmed) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.srv.ctx), finalFlushTimeout)
	defer cancel()
	c.flushConfirmed(ctx, false)
}

// pushedWritten is called by the writer goroutine with the block IDs of
// pushed messages it wrote. Without mesg-ack, written is delivered: they
// leave the window and the Store, and more may be pushed.
func (c *conn) pushedWritten(bids []uint64) {
	if c.confirms {
		return
	}
	ids := make([]int64, 0, len(bids))
	for _, bid := range bids {
		if id, _, _, ok := c.confirm(bid); ok { // no held pushes without mesg-ack
			ids = append(ids, id)
		}
	}
	if err := c.srv.store.DeleteMessages(c.srv.ctx, ids...); err != nil && c.srv.ctx.Err() == nil {
		c.log().Error("imipserver: delete delivered messages: store", "count", len(ids), "err", err)
	}
	c.deliver()
}
