package imipserver

import (
	"context"
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

// messageID is the Message-ID of the stored message id.
func messageID(id int64) string { return "m" + strconv.FormatInt(id, 10) }

// inflight is a stored message pushed to a connection and not yet
// confirmed.
type inflight struct {
	id   int64 // the message's Store ID
	size int   // bytes of the pushed block
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
		after := c.last
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
		if len(msgs) == room {
			c.dirty = true // there may be more
		}
		for _, m := range msgs {
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
// stores this one too). done runs once it is written. It reports whether
// the message was queued.
func (c *conn) pushLive(buf []byte, done func()) bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.confirms || c.pulling || c.dirty {
		return false
	}
	// A queue already half full takes no more live messages: they are
	// stored and follow through the delivery window, so no sender can
	// overflow another user's queue and get them disconnected.
	return c.enqueueMax(outItem{buf: buf, done: done}, c.srv.pushBudget())
}

// confirm takes the pushed MESG with block ID bid off c's window and
// returns its message ID; ok is false when no such push is in flight.
func (c *conn) confirm(bid uint64) (id int64, ok bool) {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	f, ok := c.flight[bid]
	if !ok {
		return 0, false
	}
	delete(c.flight, bid)
	c.flightBytes -= f.size
	if len(c.flight) == 0 {
		c.flight = nil // an idle connection keeps no map
	}
	return f.id, true
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
	id, ok := c.confirm(ref)
	if !ok {
		c.log().Debug("imipserver: ACK for no pushed message ignored", "reference", ref)
		return
	}
	c.confirmed = append(c.confirmed, id)
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
	ids := c.confirmed
	c.confirmed = nil
	if err := c.srv.store.DeleteMessages(ctx, ids...); err != nil {
		// They were delivered; at worst they are pushed again at the next
		// login, with the same Message-ID.
		c.log().Error("imipserver: delete confirmed messages: store", "count", len(ids), "err", err)
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
		if id, ok := c.confirm(bid); ok {
			ids = append(ids, id)
		}
	}
	if err := c.srv.store.DeleteMessages(c.srv.ctx, ids...); err != nil && c.srv.ctx.Err() == nil {
		c.log().Error("imipserver: delete delivered messages: store", "count", len(ids), "err", err)
	}
	c.deliver()
}
