package imipside

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"imip-transport/imipside/wire"
)

// Session is one user's logged-in IMIP connection.
// All its methods are safe for concurrent use.
type Session struct {
	conn     net.Conn
	number   wire.Number
	contacts []wire.Buddy
	handler  Handler
	log      *slog.Logger
	trace    io.Writer
	kaDur    time.Duration

	tmu sync.Mutex // serialises Trace writes

	// Reader side: used by Dial, then only by the reader goroutine.
	r     *wire.Reader
	in    wire.Block
	early []Event // pushed before the LOGN reply, delivered first

	wmu    sync.Mutex // guards w and nextID; taken before mu
	w      *wire.Writer
	nextID uint64

	mu            sync.Mutex
	pending       map[uint64]*waiter // requests waiting for their reply
	unacked       []tracked          // blocks sent without waiting (MESG, LIST REJECT) not yet confirmed, ascending IDs
	ka            *time.Timer        // keep-alive timer, nil before login
	pingOut       uint64             // ID of the unanswered keep-alive PING, 0 if none
	closed        bool
	disconnecting bool // DISC written: the server closing the connection is no error
	err           error

	cbs       sync.WaitGroup // keep-alive callbacks running
	inHandler atomic.Bool
	done      chan struct{}
}

// tracked is a block sent without waiting for its reply: an errors-only
// MESG or a LIST REJECT. An 8xx ACK that references it becomes an event.
type tracked struct {
	id   uint64
	num  wire.Number // the MESG's recipient, the number rejected
	kind trackKind
}

type trackKind uint8

const (
	trackMESG trackKind = iota + 1
	trackListReject
)

// failure is the event reporting an 8xx ACK to t.
func (t tracked) failure(code wire.Code) Event {
	if t.kind == trackListReject {
		return RequestFailedEvent{ID: t.id, Type: wire.TypeLIST + " REJECT", Number: t.num, Code: code}
	}
	return MessageFailedEvent{ID: t.id, To: t.num, Code: code}
}

// Dial connects to cfg.Addr and logs in: HELO, then LOGN with the MD5 of the
// server's salt and the password. It returns only when logged in; ctx bounds
// the whole handshake (DefaultLoginTimeout when ctx has no deadline).
// A refused login is a *LoginError (errors.Is ErrWrongPassword for 810,
// ErrIllegalUser for 811). On any failure the connection is closed.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	if !cfg.Number.Valid() {
		return nil, fmt.Errorf("imipside: invalid number %q", cfg.Number)
	}
	if cfg.Addr == "" && cfg.Dial == nil {
		return nil, errors.New("imipside: no server address")
	}
	dial := cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("imipside: dial %s: %w", cfg.Addr, err)
	}
	s := newSession(conn, cfg)
	if err := s.login(ctx, cfg); err != nil {
		s.closeWith(err)
		return nil, err
	}
	s.start()
	return s, nil
}

func newSession(conn net.Conn, cfg Config) *Session {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{
		conn:    conn,
		number:  cfg.Number,
		handler: cfg.Handler,
		log:     log,
		trace:   cfg.Trace,
		r:       wire.NewReader(conn, cfg.Limits),
		w:       wire.NewWriter(conn),
		nextID:  wire.FirstClientBlockID,
		done:    make(chan struct{}),
	}
}

// login runs the handshake. Writes are bounded by ctx in send; reads by a
// read deadline, pulled in when ctx is cancelled.
func (s *Session) login(ctx context.Context, cfg Config) error {
	deadline := time.Now().Add(DefaultLoginTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	if err := s.conn.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("imipside: login: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Unix(1, 0)) })
	err := s.handshake(ctx, cfg)
	if !stop() && err == nil {
		// ctx ended while finishing: the read deadline may be in the past.
		err = fmt.Errorf("imipside: login: %w", context.Cause(ctx))
	}
	if err != nil {
		if cerr := ctxCause(ctx, err); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("imipside: login: %w: %w", cerr, err)
		}
		return err
	}
	if err := s.conn.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("imipside: login: %w", err)
	}
	return nil
}

func (s *Session) handshake(ctx context.Context, cfg Config) error {
	helo := wire.Block{Type: wire.TypeHELO, Headers: []wire.Header{
		{Name: wire.HdrID}, {Name: wire.HdrProtocol, Value: wire.ProtocolIMIP10},
	}}
	heloID, err := s.send(ctx, &helo, sendOpts{})
	if err != nil {
		return fmt.Errorf("imipside: login: %w", err)
	}
	var dropped int
	defer func() {
		if dropped > 0 {
			s.log.Warn("imipside: login: dropped blocks pushed before login completed",
				"number", s.number, "dropped", dropped, "kept", maxEarlyEvents)
		}
	}()
	b, err := s.awaitReply(wire.TypeHELO, heloID, &dropped)
	if err != nil {
		return err
	}
	if at, ok := b.Lookup(wire.HdrAuthType); ok && !strings.EqualFold(strings.TrimSpace(at), wire.AuthTypeMD5) {
		return fmt.Errorf("imipside: login: server wants Auth-Type %q, only %s is supported", at, wire.AuthTypeMD5)
	}
	s.kaDur = DefaultKeepAlive
	if n, ok := b.Uint(wire.HdrKeepAlive); ok && n > 0 {
		s.kaDur = time.Duration(min(n, uint64(maxKeepAlive/time.Second))) * time.Second
	}
	if cfg.KeepAlive > 0 {
		s.kaDur = cfg.KeepAlive
	}
	salt := strings.TrimSpace(string(b.Body))
	if salt == "" {
		return errors.New("imipside: login: server HELO carries no salt")
	}
	client := cfg.ClientName
	if client == "" {
		client = DefaultClientName
	}
	logn := wire.Block{Type: wire.TypeLOGN, Arg: string(s.number), Headers: []wire.Header{
		{Name: wire.HdrID}, {Name: wire.HdrClient, Value: client}, {Name: wire.HdrAuthType, Value: wire.AuthTypeMD5},
	}, Body: []byte(wire.AuthDigest(salt, cfg.Password))}
	lognID, err := s.send(ctx, &logn, sendOpts{})
	if err != nil {
		return fmt.Errorf("imipside: login: %w", err)
	}
	clear(logn.Body)
	b, err = s.awaitReply(wire.TypeLOGN, lognID, &dropped)
	if err != nil {
		return err
	}
	if b.Type == wire.TypeACK {
		return nil // a 6xx ACK instead of the LOGN reply: logged in, no contacts
	}
	if v, ok := b.Lookup(wire.HdrBuddy); ok {
		// Lenient: a contact controls its own nickname, and one that does
		// not survive the unescaped header format must not lock the user
		// out. The entries that parse are kept.
		list, err := wire.ParseBuddyListLenient(v)
		if err != nil {
			s.log.Warn("imipside: login: malformed Buddy header, skipped what did not parse",
				"number", s.number, "kept", len(list), "err", err)
		}
		s.contacts = list
	}
	return nil
}

// awaitReply reads blocks until the server's answer to the block typ sent
// with ID id: a block of type typ (not referencing another block), or an ACK
// referencing id. A failure ACK is a *LoginError. Blocks pushed meanwhile are
// kept for the Handler, up to maxEarlyEvents; *dropped counts the others.
func (s *Session) awaitReply(typ string, id uint64, dropped *int) (*wire.Block, error) {
	b := &s.in
	for range 64 {
		if err := s.r.ReadBlock(b); err != nil {
			return nil, fmt.Errorf("imipside: login: waiting for %s reply: %w", typ, err)
		}
		s.traceBlock('S', b)
		ref, hasRef := b.Reference()
		switch {
		case strings.EqualFold(b.Type, wire.TypeACK) && (!hasRef || ref == id):
			code, err := wire.ParseCode(b.Arg)
			if err != nil {
				return nil, fmt.Errorf("imipside: login: %w", err)
			}
			if !code.OK() {
				return nil, &LoginError{Code: code}
			}
			if typ == wire.TypeLOGN {
				return b, nil
			}
		case strings.EqualFold(b.Type, typ) && (!hasRef || ref == id):
			return b, nil
		default:
			ev, err := decodePush(b, s.number)
			if err != nil {
				s.logIgnored("imipside: ignoring block while logging in", b, err)
				continue
			}
			if len(s.early) < maxEarlyEvents {
				s.early = append(s.early, ev)
			} else {
				*dropped++
			}
		}
	}
	return nil, fmt.Errorf("imipside: login: no %s reply within 64 blocks", typ)
}

// start begins reading and arms the keep-alive timer.
func (s *Session) start() {
	s.mu.Lock()
	s.ka = time.AfterFunc(s.kaDur, s.onKeepAlive)
	s.mu.Unlock()
	go s.readLoop()
}

// Number returns the user's number.
func (s *Session) Number() wire.Number { return s.number }

// Contacts returns a copy of the contact list the server sent at login.
func (s *Session) Contacts() []wire.Buddy {
	if len(s.contacts) == 0 {
		return nil
	}
	return append([]wire.Buddy(nil), s.contacts...)
}

// KeepAlive returns the keep-alive interval in force.
func (s *Session) KeepAlive() time.Duration { return s.kaDur }

// Done returns a channel closed when the session has ended and its reader
// goroutine has exited.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended: nil while it runs and after Disconnect
// or Close.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session at once, without DISC. It is idempotent and
// returns nil. It waits for the reader goroutine to exit, unless the Handler
// is running at that moment (so that a Handler may call Close); Done reports
// the exit then.
func (s *Session) Close() error {
	s.closeWith(nil)
	if !s.inHandler.Load() {
		<-s.done
	}
	return nil
}

// Disconnect logs out: it sends DISC, waits for the server's ACK (bounded by
// ctx) and closes the connection. The session ends with a nil Err even when
// the ACK does not come; the error returned then says why.
func (s *Session) Disconnect(ctx context.Context) error {
	err := s.request(ctx, &wire.Block{Type: wire.TypeDISC, Headers: []wire.Header{{Name: wire.HdrID}}}, sendOpts{disc: true})
	s.mu.Lock()
	discSent := s.disconnecting
	s.mu.Unlock()
	s.closeWith(nil)
	if !s.inHandler.Load() {
		<-s.done
	}
	if errors.Is(err, ErrClosed) && discSent && s.Err() == nil {
		return nil // the server closed the connection instead of answering
	}
	return err
}

// closeWith ends the session with cause (nil: a requested end). Only the
// first call counts. It fails every waiting request and closes the
// connection, which makes the reader goroutine exit.
func (s *Session) closeWith(cause error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.err = cause
	pending := s.pending
	s.pending, s.unacked = nil, nil
	if s.ka != nil {
		s.ka.Stop()
	}
	s.mu.Unlock()
	s.conn.Close()
	werr := closedErr(cause)
	for _, w := range pending {
		w.deliver(ackResult{err: werr})
	}
	if cause != nil {
		s.log.Debug("imipside: session ended", "number", s.number, "err", cause)
	}
}

// ctxCause returns ctx's error when ctx explains the I/O error err: ctx has
// ended, or err is a deadline that ctx set (the conn's timer may fire an
// instant before ctx's own).
func ctxCause(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

func closedErr(cause error) error {
	if cause == nil {
		return ErrClosed
	}
	return fmt.Errorf("%w: %w", ErrClosed, cause)
}

// closedErrLocked is the error for a call on an ended session; s.mu is held.
func (s *Session) closedErrLocked() error { return closedErr(s.err) }
