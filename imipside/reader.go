package imipside

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"imip-transport/imipside/wire"
)

// readLoop is the session's reader goroutine: it reads blocks, matches
// replies to requests and hands pushed blocks and outcomes to the Handler as
// events. When it has consumed everything read and the session has a
// watch, it parks: it arms the watch and returns, and the watch starts a
// new readLoop when the connection is readable (one reader at a time: the
// watch wakes once per arm). It ends when the connection fails or is
// closed, waits for the writer goroutine and the timer callbacks, delivers
// ClosedEvent and closes done. woken: started by the watch, so there are
// bytes (or the end) to read before parking again.
func (s *Session) readLoop(woken bool) {
	early := s.early
	s.early = nil
	for _, ev := range early {
		s.emit(ev)
	}
	for {
		if !woken && s.watch != nil && s.r.Buffered() == 0 {
			parked, err := s.idle()
			if parked {
				return
			}
			if err != nil {
				s.closeWith(s.readError(err))
				break
			}
		}
		woken = false
		b := &s.in
		if err := s.r.ReadBlock(b); err != nil {
			s.closeWith(s.readError(err))
			break
		}
		if !s.readAny.Load() {
			s.readAny.Store(true)
		}
		s.traceBlock('S', b)
		if err := s.dispatch(b); err != nil {
			s.closeWith(err)
			break
		}
		s.release()
	}
	if s.watch != nil {
		s.watch.Close()
	}
	s.bg.Wait()
	s.emit(ClosedEvent{Err: s.Err()})
	close(s.done)
}

// idle waits up to parkAfter for the next block to start and parks the
// reader when none does: a busy session keeps its reader (a wake-up
// through the poller costs a few microseconds), an idle one gives it up.
// It reports whether the reader must return, or the read error.
func (s *Session) idle() (bool, error) {
	if err := s.conn.SetReadDeadline(time.Now().Add(s.parkAfter)); err != nil {
		return false, err
	}
	err := s.r.Wait()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if err := s.conn.SetReadDeadline(time.Time{}); err != nil {
			return false, err
		}
		return s.park(), nil
	}
	if err != nil {
		return false, err
	}
	return false, s.conn.SetReadDeadline(time.Time{})
}

// park releases the read buffers and arms the watch. It reports whether
// the reader must return (a new one starts when the connection is
// readable, or has started already); false means this reader goes on
// (arming failed: the connection is closing, and the next read says so).
func (s *Session) park() bool {
	s.r.Release()
	s.in = wire.Block{}
	s.parked.Store(true)
	if err := s.watch.Arm(); err != nil {
		// Another reader may have been started meanwhile (closeWith's
		// wake): only one of the two goes on.
		return !s.parked.CompareAndSwap(true, false)
	}
	return true
}

// release drops what the last block left behind so an idle session stays
// small: its strings, and a body or header slice grown for a large block
// (the wire.Reader drops its own grown buffer).
func (s *Session) release() {
	s.in.Reset()
	if cap(s.in.Body) > 1024 {
		s.in.Body = nil
	}
	if cap(s.in.Headers) > 16 {
		s.in.Headers = nil
	}
}

// readError turns a read failure into the session's end cause.
func (s *Session) readError(err error) error {
	var we *wire.Error
	if errors.As(err, &we) {
		return fmt.Errorf("%w: malformed block: %w", ErrProtocol, err)
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("imipside: server closed the connection: %w", err)
	}
	return fmt.Errorf("imipside: read: %w", err)
}

// dispatch handles one block from the server. An error ends the session.
func (s *Session) dispatch(b *wire.Block) error {
	typ := strings.ToUpper(b.Type)
	switch typ {
	case wire.TypeSTAT, wire.TypeMESG, wire.TypeLIST:
		ev, err := decodePush(b, s.number)
		if err != nil {
			s.logIgnored("imipside: ignoring block", b, err)
			return nil
		}
		s.emit(ev)
		return nil
	}
	ref, ok := b.Reference()
	if !ok {
		s.log.Debug("imipside: ignoring block", "number", s.number, "type", b.Type, "reason", "no Reference")
		return nil
	}
	code := wire.CodeOK
	if typ == wire.TypeACK {
		c, err := wire.ParseCode(b.Arg)
		if err != nil {
			return fmt.Errorf("%w: malformed ACK: %w", ErrProtocol, err)
		}
		code = c
	}
	s.reply(ref, code, b.Type)
	return nil
}

// reply handles the server's answer to the client block ref. The server
// answers in order, so it also settles every earlier request still without
// an outcome: those succeeded without an ACK (implicit).
func (s *Session) reply(ref uint64, code wire.Code, typ string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if ref < wire.FirstClientBlockID || ref >= s.nextID {
		s.mu.Unlock()
		s.log.Debug("imipside: reply to a block never sent", "number", s.number, "type", typ, "reference", ref, "code", int(code))
		return
	}
	if s.pingOut != 0 && ref >= s.pingOut {
		s.pingOut = 0
		s.ka.Reset(s.kaDur)
	}
	var stack [8]request
	settled := s.reqs.settle(stack[:0], ref) // copied: the ring is reused once s.mu is released
	if s.reqs.len() == 0 {
		if s.barrier != nil {
			// Dropped so that an idle session holds no timer; a callback
			// already under way finds the barrier disarmed.
			s.barrier.Stop()
			s.barrier, s.barrierArmed = nil, false
		}
	} else if s.barrierArmed {
		s.quietSince = time.Now() // a reply: the server is answering
	}
	disc := s.discID
	s.mu.Unlock()

	matched := false
	for _, r := range settled {
		c, implicit := wire.CodeOK, true
		if r.id == ref {
			c, implicit, matched = code, false, true
		}
		if r.w != nil {
			r.w.deliver(ackResult{code: c})
			continue
		}
		s.emit(ReplyEvent{ID: r.id, Type: opTypes[r.op], Number: r.num, Code: c, Implicit: implicit})
	}
	if disc != 0 && ref >= disc {
		if !code.OK() && ref == disc {
			s.log.Debug("imipside: server refused DISC; closing anyway", "number", s.number, "code", int(code))
		}
		s.closeWith(nil)
		return
	}
	if !matched && !code.OK() {
		s.log.Debug("imipside: failure ACK to no outstanding request", "number", s.number, "type", typ, "reference", ref, "code", int(code))
	}
}

// emit hands ev to the Handler, and confirms a pushed message afterwards
// when the session confirms them by itself (Config.AutoConfirm).
func (s *Session) emit(ev Event) {
	if m, ok := ev.(MessageEvent); ok && s.autoConfirm && s.mesgAck && m.BlockID != 0 {
		defer func() {
			if err := s.ConfirmMessage(m.BlockID); err != nil {
				s.log.Debug("imipside: confirming a MESG", "number", s.number, "err", err)
			}
		}()
	}
	if s.handler == nil {
		return
	}
	s.inHandler.Store(true)
	defer func() {
		// The Handler held the reader: a keep-alive ACK may be read only
		// now. Set before inHandler is cleared, so that the keep-alive
		// check sees one or the other.
		s.readAny.Store(true)
		s.inHandler.Store(false)
	}()
	s.handler.HandleIMIP(ev)
}
