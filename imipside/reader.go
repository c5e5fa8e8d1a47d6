package imipside

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"imip-transport/imipside/wire"
)

// readLoop is the session's one goroutine: it reads blocks, matches replies
// to requests and hands pushed blocks to the Handler as events. It ends when
// the connection fails or is closed, delivers ClosedEvent and closes done.
func (s *Session) readLoop() {
	early := s.early
	s.early = nil
	for _, ev := range early {
		s.emit(ev)
	}
	for {
		b := &s.in
		if err := s.r.ReadBlock(b); err != nil {
			s.closeWith(s.readError(err))
			break
		}
		s.traceBlock('S', b)
		if err := s.dispatch(b); err != nil {
			s.closeWith(err)
			break
		}
		s.release()
	}
	s.cbs.Wait()
	s.emit(ClosedEvent{Err: s.Err()})
	close(s.done)
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
		return fmt.Errorf("imipside: malformed block from server: %w", err)
	}
	s.mu.Lock()
	disc := s.disconnecting
	s.mu.Unlock()
	if disc {
		return nil // the server closes the connection after DISC
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
			return fmt.Errorf("imipside: malformed ACK from server: %w", err)
		}
		code = c
	}
	s.reply(ref, code, b.Type)
	return nil
}

// reply delivers the answer to the client block ref. The server answers in
// order, so it also confirms every earlier block sent without waiting
// (errors-only MESG, LIST REJECT).
func (s *Session) reply(ref uint64, code wire.Code, typ string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	ping := s.pingOut != 0 && ref >= s.pingOut
	if ping {
		s.pingOut = 0
		s.ka.Reset(s.kaDur)
	}
	w := s.pending[ref]
	if w != nil {
		delete(s.pending, ref)
		if len(s.pending) == 0 {
			s.pending = nil
		}
	}
	var failed Event
	i := 0
	for i < len(s.unacked) && s.unacked[i].id < ref {
		i++
	}
	hit := i < len(s.unacked) && s.unacked[i].id == ref
	if hit {
		if !code.OK() {
			failed = s.unacked[i].failure(code)
		}
		i++
	}
	if i == len(s.unacked) {
		s.unacked = nil
	} else {
		s.unacked = s.unacked[i:]
	}
	s.mu.Unlock()

	switch {
	case w != nil:
		w.deliver(ackResult{code: code})
	case failed != nil:
		s.emit(failed)
	case !hit && !ping:
		s.log.Debug("imipside: reply to no waiting request", "number", s.number, "type", typ, "reference", ref, "code", int(code))
	}
}

// emit hands ev to the Handler.
func (s *Session) emit(ev Event) {
	if s.handler == nil {
		return
	}
	s.inHandler.Store(true)
	defer s.inHandler.Store(false)
	s.handler.HandleIMIP(ev)
}
