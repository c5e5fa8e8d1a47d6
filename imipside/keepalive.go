package imipside

import (
	"context"
	"fmt"

	"imip-transport/imipside/wire"
)

// onKeepAlive runs on the runtime's timer when no block was written for
// KeepAlive. With no PING outstanding it sends one; with one outstanding for
// KeepAlive the connection is dead.
//
// The timer is the session's only keep-alive state: no goroutine waits while
// the session is idle. send re-arms it after every block written, except
// while a keep-alive PING awaits its ACK; reply re-arms it when the ACK comes.
func (s *Session) onKeepAlive() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.cbs.Add(1)
	dead := s.pingOut
	s.mu.Unlock()
	defer s.cbs.Done()

	if dead != 0 {
		s.closeWith(fmt.Errorf("%w: no ACK to PING %d within %v", ErrTimeout, dead, s.kaDur))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.kaDur)
	defer cancel()
	b := wire.Block{Type: wire.TypePING, Headers: []wire.Header{idHeader()}}
	if _, err := s.send(ctx, &b, sendOpts{keepAlive: true}); err != nil {
		s.log.Debug("imipside: keep-alive PING not sent", "number", s.number, "err", err)
	}
}
