package imipserver

import (
	"errors"
	"strings"
	"time"

	"imip-transport/imipside/wire"
)

// onMESG routes a message: to the recipient's connection when it is
// online, else into the Store for its next login. An unknown recipient is
// answered with ACK 811. With `ACK-Type: errors-only` success is silent,
// otherwise it is answered with ACK 600. A store failure closes the
// connection without an ACK, so the client cannot take the message as
// delivered.
func (c *conn) onMESG(b *wire.Block) bool {
	s := c.srv
	to, err := wire.ParseNumber(strings.TrimSpace(b.Get(wire.HdrTo)))
	if err != nil {
		c.sendACK(b, wire.CodeIllegalUser)
		return true
	}
	if _, err := s.store.Account(s.ctx, to); err != nil {
		if errors.Is(err, ErrNotFound) {
			c.sendACK(b, wire.CodeIllegalUser)
			return true
		}
		c.log().Error("imipserver: message: store", "err", err)
		return false
	}
	m := Message{From: c.num, To: to, Time: time.Now().UTC().Truncate(time.Second), Text: string(b.Body)}
	buf, err := s.encodeMESG(m, c.nick)
	if err != nil {
		// Only a size above the limit can fail here.
		c.log().Info("imipserver: message too large to deliver", "err", err)
		c.sendACK(b, wire.CodeMalformedBlock)
		return true
	}

	s.mu.Lock()
	delivered := false
	if rc := s.online[to]; rc != nil {
		delivered = rc.enqueue(outItem{buf: buf})
	}
	if !delivered {
		if _, err := s.store.PutMessage(s.ctx, m); err != nil {
			s.mu.Unlock()
			c.log().Error("imipserver: hold message: store", "err", err)
			return false
		}
	}
	s.mu.Unlock()
	c.log().Debug("imipserver: message", "to", to, "held", !delivered)

	if !strings.EqualFold(strings.TrimSpace(b.Get(wire.HdrACKType)), wire.ACKTypeErrorsOnly) && !s.cfg.Faults.NoOurs {
		c.sendACK(b, wire.CodeOK)
	}
	return true
}

// encodeMESG builds the S MESG block for m.
func (s *Server) encodeMESG(m Message, fromNick string) ([]byte, error) {
	return s.encode(wire.TypeMESG, "", []wire.Header{
		hdr(wire.HdrContentType, wire.ContentTypeText),
		hdr(wire.HdrFrom, wire.FormatFrom(m.From, fromNick)),
		hdr(wire.HdrTimo, wire.FormatTimo(m.Time)),
		hdr(wire.HdrTo, string(m.To)),
	}, m.Text)
}

// sendMESG queues a held message on c; done runs once it is written.
func (c *conn) sendMESG(m Message, fromNick string, done func()) {
	buf, err := c.srv.encodeMESG(m, fromNick)
	if err != nil {
		c.log().Error("imipserver: cannot encode held message", "err", err)
		return
	}
	c.enqueue(outItem{buf: buf, done: done})
}
