package imipserver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"imip-transport/imipside/wire"
)

// onMESG routes a message. To a recipient online without mesg-ack, with
// no stored message waiting for it, the message is queued on its
// connection; every other message (recipient offline, or online with
// mesg-ack) is stored first and then pushed by the recipient's deliver.
//
// An unknown recipient is answered with ACK 811. Otherwise, unless the
// MESG has `ACK-Type: errors-only`, the sender gets ACK 600 once the
// message is durably stored, or once it is written to the recipient's
// socket. A store failure closes the sender's connection without an ACK,
// so the client cannot take the message as delivered.
func (c *conn) onMESG(b *wire.Block) bool {
	s := c.srv
	if !c.pace.Allow() {
		c.sendACK(b, wire.CodeTooFast)
		return true
	}
	to, err := wire.ParseNumber(strings.TrimSpace(b.Get(wire.HdrTo)))
	if err != nil {
		c.sendACK(b, wire.CodeIllegalUser)
		return true
	}
	rc := s.onlineConn(to) // the recipient's connection, nil when offline
	if rc == nil {         // an online recipient has an account
		if _, err := s.store.Account(s.ctx, to); err != nil {
			if errors.Is(err, ErrNotFound) {
				c.sendACK(b, wire.CodeIllegalUser)
				return true
			}
			c.log().Error("imipserver: message: store", "err", err)
			return false
		}
	}
	m := Message{From: c.num, To: to, Time: time.Now().UTC().Truncate(time.Second), Text: string(b.Body)}
	if err := s.checkMESG(m); err != nil {
		c.log().Info("imipserver: message too large to deliver", "err", err)
		c.sendACK(b, wire.CodeMalformedBlock)
		return true
	}
	var ack func() // sends the sender's ACK 600, when one is due
	ref, _ := b.Lookup(wire.HdrID)
	if !strings.EqualFold(strings.TrimSpace(b.Get(wire.HdrACKType)), wire.ACKTypeErrorsOnly) &&
		!s.cfg.Faults.NoOurs && !s.cfg.Faults.SilentMESG {
		ack = func() { c.sendACKRef(ref, wire.CodeOK) }
	}

	if rc != nil && !rc.confirms {
		buf, _, err := s.encodeMESG(m, c.nick, false)
		if err != nil { // checkMESG makes this unreachable
			c.log().Error("imipserver: cannot encode message", "err", err)
			return false
		}
		// The sender's ACK comes once the push is written, in its place
		// among the sender's answers (a later one would confirm this
		// message first); a push that the recipient's end drops unwritten
		// is stored instead, then answered.
		var slot *answerSlot
		var done, dropped func()
		if ack != nil {
			slot = c.holdAnswer(ref, nil)
			done = func() { c.release(slot, c.ackItem(ref, wire.CodeOK)) }
		}
		dropped = func() { c.storeDropped(m, slot, ref) }
		if rc.pushLive(buf, done, dropped) {
			c.log().Debug("imipserver: message", "to", to, "held", false)
			return true
		}
		if slot != nil {
			c.release(slot, nil) // not pushed: stored below, and answered then
		}
	}
	if rc != nil && rc.confirms && s.cfg.HoldWrites > 0 {
		// Pushed before it is stored, when rc takes it (see heldMsg); the
		// sender's ACK follows the confirmation or the write.
		held := m
		held.Key = s.newKey()
		if rc.pushHeld(held, c, ack != nil, ref) {
			return true
		}
	}
	if full, err := c.heldFull(to); err != nil {
		c.log().Error("imipserver: message: store", "err", err)
		return false
	} else if full {
		c.log().Info("imipserver: message refused: recipient holds too many", "to", to)
		c.sendACK(b, wire.CodeRecipientFull)
		return true
	}
	// Held messages pushed to the recipient before this one are stored
	// before it (see storeHeld).
	var prior *conn
	if rc := s.onlineConn(to); rc != nil && rc.confirms && s.cfg.HoldWrites > 0 {
		prior = rc
		rc.storeMu.Lock()
		rc.storeHeldLocked(math.MaxUint64)
	}
	id, err := s.store.PutMessage(s.ctx, m)
	if prior != nil {
		prior.storeMu.Unlock()
	}
	if err != nil {
		if s.ctx.Err() == nil {
			c.log().Error("imipserver: hold message: store", "err", err)
		}
		return false
	}
	c.log().Debug("imipserver: message", "to", to, "held", true, "message", id)
	if ack != nil {
		ack()
	}
	// Looked up after the message is durable: a login that published its
	// conn before this sees the message in its own first pull, and one
	// after it is found here.
	if rc := s.onlineConn(to); rc != nil {
		rc.deliver()
	}
	return true
}

// onlineConn returns n's connection, or nil when n is offline.
func (s *Server) onlineConn(n wire.Number) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.online[n]
}

// encodeMESG builds the S MESG block for m and returns it with its block
// ID; withID adds the mesg-ack Message-ID header.
func (s *Server) encodeMESG(m Message, fromNick string, withID bool) ([]byte, uint64, error) {
	hdrs := []wire.Header{
		hdr(wire.HdrContentType, wire.ContentTypeText),
		hdr(wire.HdrFrom, wire.FormatFrom(m.From, fromNick)),
		hdr(wire.HdrTimo, wire.FormatTimo(m.Time)),
		hdr(wire.HdrTo, string(m.To)),
	}
	if withID {
		hdrs = append(hdrs, hdr(hdrMessageID, messageID(m)))
	}
	return s.encodeID(wire.TypeMESG, "", hdrs, m.Text)
}

// checkMESG reports an error when the S MESG for m could exceed
// Limits.MaxSize: its headers are counted at their longest (a nick of
// MaxNickLen bytes, the longest Message-ID and block ID), so a message that
// passes can always be pushed, whatever nick and IDs it gets later.
func (s *Server) checkMESG(m Message) error {
	b := wire.Block{Type: wire.TypeMESG, Body: []byte(m.Text), Headers: []wire.Header{
		hdr(wire.HdrContentType, wire.ContentTypeText),
		hdr(wire.HdrFrom, wire.FormatFrom(m.From, strings.Repeat("n", MaxNickLen))),
		hdr(wire.HdrID, strconv.FormatUint(math.MaxUint64, 10)),
		hdr(hdrMessageID, strings.Repeat("m", maxMessageIDLen)),
		hdr(wire.HdrTimo, wire.FormatTimo(m.Time)),
		hdr(wire.HdrTo, string(m.To)),
	}}
	if n := wire.ContentSize(&b); n > s.cfg.Limits.MaxSize {
		return fmt.Errorf("imipserver: MESG of up to %d bytes is above the limit %d: %w",
			n, s.cfg.Limits.MaxSize, wire.ErrSizeTooLarge)
	}
	return nil
}

// heldFull reports whether the Store holds as many messages for to as the
// caps allow: from this sender, or from everyone.
func (c *conn) heldFull(to wire.Number) (bool, error) {
	lim := c.srv.cfg.Abuse
	fromSender, total, err := c.srv.store.CountHeld(c.srv.ctx, to, c.num)
	if err != nil {
		return false, err
	}
	return fromSender >= lim.MaxHeldPerSender || total >= lim.MaxHeldPerRecipient, nil
}

// storeDropped stores a live message whose push its recipient's connection
// dropped unwritten (it goes at the next login), then sends the sender's
// ACK (when slot is not nil); a store failure kills the sender's
// connection instead, so that no later answer confirms the message.
func (c *conn) storeDropped(m Message, slot *answerSlot, ref string) {
	s := c.srv
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), finalFlushTimeout)
	defer cancel()
	if _, err := s.store.PutMessage(ctx, m); err != nil {
		c.log().Error("imipserver: store a dropped live message, closing", "err", err)
		c.kill()
		if slot != nil {
			c.release(slot, nil)
		}
		return
	}
	if slot != nil {
		c.release(slot, c.ackItem(ref, wire.CodeOK))
	}
}
