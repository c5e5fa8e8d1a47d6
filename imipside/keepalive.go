package imipside

import (
	"fmt"
	"time"

	"imip-transport/imipside/wire"
)

// Two runtime timers (time.AfterFunc) drive the PINGs a session sends on
// its own; no goroutine waits while the session is idle.
//
// Keep-alive: after KeepAlive without a block written, a PING. If that PING
// has no ACK KeepAlive later, while nothing else was read and the Handler
// neither held the reader at any moment since the PING nor holds it now,
// the connection is dead (ErrTimeout). The
// writer re-arms the timer after every write, except while a keep-alive PING
// awaits its ACK; the reply re-arms it when the ACK (or a reply to a later
// block) comes.
//
// Confirmation barrier: armed when a request is queued; when it fires with
// requests still waiting and no reply read for ConfirmInterval, a PING, whose
// ACK settles every earlier request (the server answers in order). A PING
// already queued after the newest request makes another one useless; the
// timer is re-armed by the next request.

// onKeepAlive runs on the runtime's timer when no block was written for
// KeepAlive, or when a keep-alive PING has waited KeepAlive for its ACK.
func (s *Session) onKeepAlive() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.bg.Add(1)
	defer s.bg.Done()
	if dead := s.pingOut; dead != 0 {
		switch {
		case s.inHandler.Load():
			// The Handler holds the reader: the ACK may be waiting unread.
			s.ka.Reset(s.kaDur)
		case s.readAny.Load():
			// The server is talking: the connection is alive.
			s.pingOut = 0
			s.ka.Reset(s.kaDur)
		default:
			s.mu.Unlock()
			s.closeWith(fmt.Errorf("%w: no ACK to PING %d within %v", ErrTimeout, dead, s.kaDur))
			return
		}
		s.mu.Unlock()
		return
	}
	if s.discID != 0 {
		s.mu.Unlock() // logging out: the logout bound ends the session
		return
	}
	s.pingLocked("keep-alive")
	s.ka.Reset(s.kaDur)
	s.mu.Unlock()
}

// pingLocked queues a PING and makes it the keep-alive probe unless one is
// already out; s.mu is held.
func (s *Session) pingLocked(why string) bool {
	b := wire.Block{Type: wire.TypePING, Headers: []wire.Header{idHeader()}}
	id, err := s.queueLocked(&b, qopts{typ: wire.TypePING})
	if err != nil {
		s.log.Debug("imipside: PING not sent", "number", s.number, "why", why, "err", err)
		return false
	}
	if s.pingOut == 0 {
		s.pingOut = id
		s.readAny.Store(false)
		s.ka.Reset(s.kaDur)
	}
	return true
}

// armBarrierLocked starts the confirmation barrier's wait, unless it runs;
// s.mu is held.
func (s *Session) armBarrierLocked() {
	if s.barrierArmed {
		return
	}
	s.barrierArmed = true
	s.quietSince = time.Now()
	if s.barrier == nil {
		s.barrier = time.AfterFunc(s.confirmDur, s.onBarrier)
	} else {
		s.barrier.Reset(s.confirmDur)
	}
}

// onBarrier runs on the runtime's timer ConfirmInterval after the barrier
// was armed or a reply last read.
func (s *Session) onBarrier() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.barrierArmed {
		return
	}
	s.bg.Add(1)
	defer s.bg.Done()
	if s.reqs.len() == 0 || s.discID != 0 {
		s.barrierArmed = false
		return
	}
	if wait := s.confirmDur - time.Since(s.quietSince); wait > 0 {
		s.barrier.Reset(wait) // a reply came meanwhile
		return
	}
	if s.reqs.newest() <= s.lastPing {
		s.barrierArmed = false // a PING after every waiting request is out
		return
	}
	if s.pingLocked("confirmation barrier") {
		s.barrierArmed = false
		return
	}
	s.barrier.Reset(s.confirmDur) // queue full: try again later
}
