package imipside

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"imip-transport/imipside/wire"
)

// waiter receives the reply to one request. The channel has room for the
// one result ever sent, so the sender never blocks.
type waiter struct {
	ch chan ackResult
}

type ackResult struct {
	code wire.Code
	err  error
}

func newWaiter() *waiter { return &waiter{ch: make(chan ackResult, 1)} }

func (w *waiter) deliver(r ackResult) {
	select {
	case w.ch <- r:
	default:
	}
}

// sendOpts says what to remember about a block being sent.
type sendOpts struct {
	wait      *waiter     // register for the reply
	track     trackKind   // remember without waiting: an 8xx ACK becomes an event
	trackNum  wire.Number // the number that event names
	keepAlive bool        // the keep-alive PING
	disc      bool        // DISC
	timeout   time.Duration
}

var longAgo = time.Unix(1, 0)

// send numbers b (its first header must be ID), writes it in one Write and
// returns its ID. The write deadline is ctx's deadline, at most
// DefaultWriteTimeout (or opts.timeout) away, and is pulled in when ctx is
// cancelled. A failed write ends the session: the stream may hold half a
// block.
func (s *Session) send(ctx context.Context, b *wire.Block, opts sendOpts) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("imipside: %s: %w", b.Type, err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	id := s.nextID
	b.Headers[0] = wire.Header{Name: wire.HdrID, Value: strconv.FormatUint(id, 10)}
	if err := wire.Check(b); err != nil {
		return 0, fmt.Errorf("imipside: %s: %w", b.Type, err)
	}
	if n := wire.ContentSize(b); n > wire.DefaultMaxSize {
		return 0, fmt.Errorf("imipside: %s: %w", b.Type, &wire.Error{Err: wire.ErrSizeTooLarge, Detail: strconv.Itoa(n) + " bytes"})
	}

	s.mu.Lock()
	if s.closed {
		err := s.closedErrLocked()
		s.mu.Unlock()
		return 0, err
	}
	if opts.wait != nil {
		if s.pending == nil {
			s.pending = make(map[uint64]*waiter, 1)
		}
		s.pending[id] = opts.wait
	}
	if opts.track != 0 {
		if len(s.unacked) >= maxTrackedMessages {
			s.unacked = s.unacked[1:]
		}
		s.unacked = append(s.unacked, tracked{id: id, num: opts.trackNum, kind: opts.track})
	}
	if opts.keepAlive {
		s.pingOut = id
	}
	if opts.disc {
		s.disconnecting = true
	}
	s.mu.Unlock()
	s.nextID++

	timeout := DefaultWriteTimeout
	if opts.timeout > 0 {
		timeout = opts.timeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := s.conn.SetWriteDeadline(deadline)
	if err == nil {
		var stop func() bool
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, func() { s.conn.SetWriteDeadline(longAgo) })
		}
		s.traceBlock('C', b)
		err = s.w.WriteBlock(b) // the Writer drops a buffer grown for a large block
		if stop != nil {
			stop()
		}
	}
	if err != nil {
		if cerr := ctxCause(ctx, err); cerr != nil {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		err = fmt.Errorf("imipside: write %s: %w", b.Type, err)
		cause := err
		if opts.keepAlive {
			cause = fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		s.closeWith(cause)
		return 0, err
	}

	s.mu.Lock()
	if s.ka != nil && !s.closed && (s.pingOut == 0 || opts.keepAlive) {
		s.ka.Reset(s.kaDur)
	}
	s.mu.Unlock()
	return id, nil
}

// request sends b and waits for the ACK that references it.
func (s *Session) request(ctx context.Context, b *wire.Block, opts sendOpts) error {
	w := newWaiter()
	opts.wait = w
	id, err := s.send(ctx, b, opts)
	if err != nil {
		return err
	}
	select {
	case r := <-w.ch:
		if r.err != nil {
			return r.err
		}
		if !r.code.OK() {
			return &AckError{Code: r.code}
		}
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		if s.pending[id] == w {
			delete(s.pending, id)
			if len(s.pending) == 0 {
				s.pending = nil
			}
		}
		s.mu.Unlock()
		return fmt.Errorf("imipside: waiting for the ACK to %s %d: %w", b.Type, id, ctx.Err())
	}
}

func idHeader() wire.Header { return wire.Header{Name: wire.HdrID} }

// SetStatus sends STAT with st (ONLINE, AWAY, BUSY or OFFLINE; OFFLINE makes
// the user invisible) and text as the status message ("" for none), and
// waits for the ACK: a failure is an *AckError (800: no status, 801: unknown
// status). It blocks until the ACK, ctx's end or the session's end.
func (s *Session) SetStatus(ctx context.Context, st wire.Status, text string) error {
	b := wire.Block{Type: wire.TypeSTAT, Arg: string(st), Headers: []wire.Header{idHeader()}, Body: []byte(text)}
	return s.request(ctx, &b, sendOpts{})
}

// SendMessage sends a MESG to `to` with ACK-Type errors-only and returns its
// ID once written; it does not wait for the server. A failure ACK that
// references the ID later arrives as a MessageFailedEvent.
func (s *Session) SendMessage(ctx context.Context, to wire.Number, text string) (uint64, error) {
	if !to.Valid() {
		return 0, fmt.Errorf("imipside: MESG: invalid recipient %q", to)
	}
	b := wire.Block{Type: wire.TypeMESG, Headers: []wire.Header{
		idHeader(),
		{Name: wire.HdrTo, Value: string(to)},
		{Name: wire.HdrACKType, Value: wire.ACKTypeErrorsOnly},
		{Name: wire.HdrFrom, Value: string(s.number)},
	}, Body: []byte(text)}
	return s.send(ctx, &b, sendOpts{track: trackMESG, trackNum: to})
}

// ListAdd asks to add n to the contact list (LIST ADD), with text as the
// request message ("" for none), and waits for the ACK. The server later
// sends n's STAT when n accepts.
func (s *Session) ListAdd(ctx context.Context, n wire.Number, text string) error {
	return s.listRequest(ctx, "ADD", n, "", true, text)
}

// ListAccept accepts n's request to add the user (LIST ACCEPT n "nick") and
// waits for the ACK.
func (s *Session) ListAccept(ctx context.Context, n wire.Number, nick string) error {
	return s.listRequest(ctx, "ACCEPT", n, nick, false, "")
}

// ListReject refuses n's request to add the user (LIST REJECT) and returns
// once the block is written: it does not wait for the server, since the
// ACK to a client LIST REJECT is this project's own rule (IMIP.md [ours])
// that a server may never follow. Like a MESG, the block is remembered until
// a reply to a later block confirms it; an 8xx ACK that references it arrives
// as a RequestFailedEvent with Type "LIST REJECT".
func (s *Session) ListReject(ctx context.Context, n wire.Number) error {
	b, err := s.listBlock("REJECT", n, "", false, "")
	if err != nil {
		return err
	}
	_, err = s.send(ctx, b, sendOpts{track: trackListReject, trackNum: n})
	return err
}

// ListRemove drops n from the contact list (LIST REMOVE) and waits for the
// ACK.
func (s *Session) ListRemove(ctx context.Context, n wire.Number) error {
	return s.listRequest(ctx, "REMOVE", n, "", true, "")
}

func (s *Session) listRequest(ctx context.Context, op string, n wire.Number, nick string, buddyList bool, text string) error {
	b, err := s.listBlock(op, n, nick, buddyList, text)
	if err != nil {
		return err
	}
	return s.request(ctx, b, sendOpts{})
}

// listBlock builds a client LIST block (its ID is set by send).
func (s *Session) listBlock(op string, n wire.Number, nick string, buddyList bool, text string) (*wire.Block, error) {
	if !n.Valid() {
		return nil, fmt.Errorf("imipside: LIST %s: invalid number %q", op, n)
	}
	hdrs := make([]wire.Header, 0, 3)
	hdrs = append(hdrs, idHeader())
	if buddyList {
		hdrs = append(hdrs, wire.Header{Name: wire.HdrList, Value: wire.ListBuddy})
	}
	hdrs = append(hdrs, wire.Header{Name: wire.HdrFrom, Value: string(s.number)})
	var body []byte
	if text != "" {
		body = []byte(text)
	}
	return &wire.Block{Type: wire.TypeLIST, Arg: op + " " + wire.FormatFrom(n, nick), Headers: hdrs, Body: body}, nil
}

// Ping sends PING and waits for the ACK.
func (s *Session) Ping(ctx context.Context) error {
	return s.request(ctx, &wire.Block{Type: wire.TypePING, Headers: []wire.Header{idHeader()}}, sendOpts{})
}
