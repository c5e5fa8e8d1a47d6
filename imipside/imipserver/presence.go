package imipserver

import (
	"strings"

	"imip-transport/imipside/wire"
)

// visible returns the presence others see for a status and text: an
// invisible user (STAT OFFLINE) shows as OFFLINE without text.
func visible(st wire.Status, text string) (wire.Status, string) {
	if st == wire.StatusOffline {
		return wire.StatusOffline, ""
	}
	return st, text
}

// onSTAT sets the user's presence: ACK 800 without a status, 801 for an
// unknown one, else ACK 600 and, when what others see changed, a STAT to
// every online user whose list holds this user.
func (c *conn) onSTAT(b *wire.Block) {
	arg := strings.TrimSpace(b.Arg)
	if arg == "" {
		c.sendACK(b, wire.CodeNoStatus)
		return
	}
	st, ok := wire.ParseStatus(arg)
	if !ok {
		c.sendACK(b, wire.CodeUnknownStatus)
		return
	}
	text := string(b.Body)
	s := c.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	oldSt, oldText := visible(c.status, c.text)
	c.status, c.text = st, text
	c.sendACK(b, wire.CodeOK)
	if newSt, newText := visible(st, text); newSt != oldSt || newText != oldText {
		s.announce(c.num, newSt, newText)
	}
}

// announce sends STAT st (with text as body) from n to every online user
// whose list holds n. The caller holds s.mu.
func (s *Server) announce(n wire.Number, st wire.Status, text string) {
	watchers, err := s.store.Watchers(s.ctx, n)
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("imipserver: presence fan-out: store", "number", n, "err", err)
		}
		return
	}
	for _, w := range watchers {
		if wc := s.online[w]; wc != nil {
			wc.sendSTAT(n, st, text)
		}
	}
}

// sendSTAT queues STAT st from n on c.
func (c *conn) sendSTAT(from wire.Number, st wire.Status, text string) {
	c.send(wire.TypeSTAT, string(st), []wire.Header{hdr(wire.HdrFrom, string(from))}, text)
}

// presenceOf returns what others see of n now: OFFLINE when n is offline
// or invisible. The caller holds s.mu.
func (s *Server) presenceOf(n wire.Number) (wire.Status, string) {
	if oc := s.online[n]; oc != nil {
		return visible(oc.status, oc.text)
	}
	return wire.StatusOffline, ""
}

// Presence returns what others see of n now (OFFLINE when n is offline or
// invisible), for tests and tools.
func (s *Server) Presence(n wire.Number) (wire.Status, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.presenceOf(n)
}
