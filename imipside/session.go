package imipside

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"imip-transport/imipside/wire"
	"imip-transport/internal/netpoll"
)

// Session is one user's logged-in IMIP connection.
// All its methods are safe for concurrent use.
type Session struct {
	conn        net.Conn
	raw         syscall.RawConn // conn's, for writes that do not wait; nil if it has none
	number      wire.Number
	contacts    []wire.Buddy
	handler     Handler
	autoConfirm bool
	noPark      bool
	parkAfter   time.Duration
	log         *slog.Logger
	trace       io.Writer
	mesgAck     bool   // both sides announced mesg-ack
	service     string // the HELO reply's ServiceDisplayName, cleaned

	// Limits and intervals, fixed at Dial.
	kaDur        time.Duration
	writeTimeout time.Duration
	confirmDur   time.Duration
	logoutDur    time.Duration
	maxQueue     int
	maxReqs      int

	tmu sync.Mutex // serialises Trace writes

	// Reader side: used by Dial, then only by the reader goroutine.
	r     *wire.Reader
	in    wire.Block
	early []Event // pushed before the LOGN reply, delivered first
	// watch parks the reader while the server is silent (no goroutine, no
	// read buffer); nil where it cannot (the reader then blocks in Read).
	watch  *netpoll.Watch
	parked atomic.Bool // no reader runs; the watch will start one

	mu       sync.Mutex
	nextID   uint64
	out      *wbuf    // encoded blocks not yet handed to the writer; nil when empty
	inflight int      // bytes of the write in progress
	writing  bool     // the writer goroutine runs
	corked   bool     // between Cork and Uncork
	reqs     requests // requests without an outcome, ascending IDs
	ka       *time.Timer
	pingOut  uint64 // ID of the unanswered keep-alive PING, 0 if none
	lastPing uint64 // ID of the newest PING queued
	// Confirmation barrier: a PING when requests wait and no reply came.
	barrier      *time.Timer // exists only while requests wait
	barrierArmed bool
	quietSince   time.Time // the last reply read, or when the barrier was armed
	discID       uint64    // ID of the DISC queued by Logout, 0 before
	logoutTimer  *time.Timer
	closed       bool
	err          error

	bg        sync.WaitGroup // the writer goroutine and running timer callbacks
	readAny   atomic.Bool    // a block was read, or the Handler returned, since the keep-alive PING
	inHandler atomic.Bool
	done      chan struct{}
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
	// Direct writes only on the standard library's own connections: a
	// Config.Dial wrapper that embeds one (and so has its SyscallConn)
	// may do work of its own in Write, which they would skip.
	var raw syscall.RawConn
	switch c := conn.(type) {
	case *net.TCPConn:
		raw, _ = c.SyscallConn()
	case *net.UnixConn:
		raw, _ = c.SyscallConn()
	}
	return &Session{
		conn:         conn,
		raw:          raw,
		number:       cfg.Number,
		handler:      cfg.Handler,
		autoConfirm:  cfg.AutoConfirm,
		noPark:       cfg.NoPark,
		parkAfter:    orDefault(cfg.ParkAfter, DefaultParkAfter),
		log:          log,
		trace:        cfg.Trace,
		writeTimeout: orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
		confirmDur:   orDefault(cfg.ConfirmInterval, DefaultConfirmInterval),
		logoutDur:    orDefault(cfg.LogoutTimeout, DefaultLogoutTimeout),
		maxQueue:     orDefault(cfg.MaxQueue, DefaultMaxQueue),
		maxReqs:      orDefault(cfg.MaxOutstanding, DefaultMaxOutstanding),
		r:            wire.NewReader(conn, cfg.Limits),
		nextID:       wire.FirstClientBlockID,
		done:         make(chan struct{}),
	}
}

var longAgo = time.Unix(1, 0)

// login runs the handshake on the caller's goroutine, writing and reading
// directly: the writer and reader goroutines start after it. Reads and writes
// are bounded by a deadline, pulled in when ctx is cancelled.
func (s *Session) login(ctx context.Context, cfg Config) error {
	deadline := time.Now().Add(DefaultLoginTimeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	if err := s.conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("imipside: login: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(longAgo) })
	err := s.handshake(cfg)
	if !stop() && err == nil {
		// ctx ended while finishing: the deadline may be in the past.
		err = fmt.Errorf("imipside: login: %w", context.Cause(ctx))
	}
	if err != nil {
		if cerr := ctxCause(ctx, err); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("imipside: login: %w: %w", cerr, err)
		}
		return err
	}
	if err := s.conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("imipside: login: %w", err)
	}
	return nil
}

func (s *Session) handshake(cfg Config) error {
	helo := wire.Block{Type: wire.TypeHELO, Headers: []wire.Header{
		idHeader(), {Name: wire.HdrProtocol, Value: wire.ProtocolIMIP10},
	}}
	heloID, err := s.writeLogin(&helo)
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
		return fmt.Errorf("imipside: login: %w: server wants Auth-Type %q, only %s is supported", ErrProtocol, at, wire.AuthTypeMD5)
	}
	s.kaDur = DefaultKeepAlive
	if n, ok := b.Uint(wire.HdrKeepAlive); ok && n > 0 {
		s.kaDur = time.Duration(min(n, uint64(maxKeepAlive/time.Second))) * time.Second
	}
	if cfg.KeepAlive > 0 {
		s.kaDur = cfg.KeepAlive
	}
	if caps, ok := b.Lookup(wire.HdrCapabilities); ok {
		s.mesgAck = hasCapability(caps, wire.CapabilityMesgAck)
	}
	if name, ok := b.Lookup(wire.HdrServiceDisplay); ok {
		s.service = cleanServiceName(name)
	}
	salt := strings.TrimSpace(string(b.Body))
	if salt == "" {
		return fmt.Errorf("imipside: login: %w: server HELO carries no salt", ErrProtocol)
	}
	client := cfg.ClientName
	if client == "" {
		client = DefaultClientName
	}
	logn := wire.Block{Type: wire.TypeLOGN, Arg: string(s.number), Headers: []wire.Header{
		idHeader(), {Name: wire.HdrClient, Value: client}, {Name: wire.HdrAuthType, Value: wire.AuthTypeMD5},
	}, Body: []byte(wire.AuthDigest(salt, cfg.Password))}
	if s.mesgAck {
		logn.Add(wire.HdrCapabilities, wire.CapabilityMesgAck)
	}
	lognID, err := s.writeLogin(&logn)
	clear(logn.Body)
	if err != nil {
		return fmt.Errorf("imipside: login: %w", err)
	}
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

// hasCapability reports whether the comma-separated Capabilities value
// caps lists token, compared case-insensitively.
func hasCapability(caps, token string) bool {
	for c := range strings.SplitSeq(caps, ",") {
		if strings.EqualFold(strings.TrimSpace(c), token) {
			return true
		}
	}
	return false
}

// writeLogin numbers b (its first header must be ID) and writes it at once,
// on the caller's goroutine: during login nothing else writes.
func (s *Session) writeLogin(b *wire.Block) (uint64, error) {
	if err := checkBlock(b, b.Type); err != nil {
		return 0, err
	}
	id := s.nextID
	b.Headers[0] = wire.Header{Name: wire.HdrID, Value: strconv.FormatUint(id, 10)}
	buf, err := wire.AppendBlock(nil, b)
	if err != nil {
		return 0, err
	}
	s.nextID++
	s.traceBlock('C', b)
	_, err = s.conn.Write(buf)
	clear(buf) // the LOGN digest
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", b.Type, err)
	}
	return id, nil
}

// awaitReply reads blocks until the server's answer to the block typ sent
// with ID id: a block of type typ (not referencing another block), or an ACK
// referencing id. A failure ACK is a *LoginError. Blocks pushed meanwhile are
// kept for the Handler, up to maxEarlyEvents; *dropped counts the others.
func (s *Session) awaitReply(typ string, id uint64, dropped *int) (*wire.Block, error) {
	b := &s.in
	for range 64 {
		if err := s.r.ReadBlock(b); err != nil {
			var we *wire.Error
			if errors.As(err, &we) {
				err = fmt.Errorf("%w: malformed block: %w", ErrProtocol, err)
			}
			return nil, fmt.Errorf("imipside: login: waiting for %s reply: %w", typ, err)
		}
		s.traceBlock('S', b)
		ref, hasRef := b.Reference()
		switch {
		case strings.EqualFold(b.Type, wire.TypeACK) && (!hasRef || ref == id):
			code, err := wire.ParseCode(b.Arg)
			if err != nil {
				return nil, fmt.Errorf("imipside: login: %w: malformed ACK: %w", ErrProtocol, err)
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
	return nil, fmt.Errorf("imipside: login: %w: no %s reply within 64 blocks", ErrProtocol, typ)
}

// start begins reading and arms the keep-alive timer.
func (s *Session) start() {
	s.mu.Lock()
	s.ka = time.AfterFunc(s.kaDur, s.onKeepAlive)
	s.mu.Unlock()
	if !s.noPark {
		if p, err := netpoll.Default(); err == nil {
			if w, err := p.Watch(s.conn, s.wake); err == nil {
				s.watch = w
			}
		}
	}
	go s.readLoop(false)
}

// wake starts a reader for a parked session (on the poller's goroutine,
// when the connection is readable, or from closeWith).
func (s *Session) wake() {
	if s.parked.CompareAndSwap(true, false) {
		go s.readLoop(true)
	}
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

// ServiceDisplayName returns the name the server gave its service in the
// HELO reply (ServiceDisplayName), cleaned by cleanServiceName: "" when the
// header was absent or held nothing printable.
func (s *Session) ServiceDisplayName() string { return s.service }

// KeepAlive returns the keep-alive interval in force.
func (s *Session) KeepAlive() time.Duration { return s.kaDur }

// ConfirmsMessages reports whether both sides announced the mesg-ack
// extension at login: the server then keeps each message it pushes until
// ConfirmMessage confirms it. Without it, the server forgets a message once
// written to the connection (best effort).
func (s *Session) ConfirmsMessages() bool { return s.mesgAck }

// Done returns a channel closed when the session has ended: its reader and
// writer goroutines have exited and the ClosedEvent has been handled.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended: nil while it runs and after Logout,
// Kill or Close.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Kill ends the session at once: it closes the connection without DISC and
// returns without waiting for anything, even while the Handler is blocked.
// The ClosedEvent (Err nil) follows on the reader goroutine once the Handler
// returns. Kill is idempotent.
func (s *Session) Kill() { s.closeWith(nil) }

// Close is Kill followed by waiting for the session's goroutines to exit
// (Done), unless the Handler is running at that moment (so that a Handler
// may call Close). It is idempotent and returns nil.
func (s *Session) Close() error {
	s.closeWith(nil)
	if !s.inHandler.Load() {
		<-s.done
	}
	return nil
}

// Logout queues DISC and returns without waiting. The session then ends by
// itself, with a nil Err whatever happens: when the server ACKs the DISC or
// closes the connection, or Config.LogoutTimeout after the call at the
// latest. Requests sent before and still without an outcome may get their
// ReplyEvent before the ClosedEvent; the Send methods fail with ErrClosed
// from now on. Logout is idempotent; on a session that has ended it returns
// an error matching ErrClosed.
func (s *Session) Logout() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.closedErrLocked()
	}
	if s.discID != 0 {
		return nil
	}
	b := wire.Block{Type: wire.TypeDISC, Headers: []wire.Header{idHeader()}}
	id, err := s.queueLocked(&b, qopts{typ: wire.TypeDISC, force: true})
	if err != nil {
		return err
	}
	s.discID = id
	s.bg.Add(1) // the callback below; done when it has run or is stopped
	s.logoutTimer = time.AfterFunc(s.logoutDur, s.onLogoutTimeout)
	return nil
}

func (s *Session) onLogoutTimeout() {
	defer s.bg.Done()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return
	}
	s.log.Debug("imipside: no end of the session within the logout bound", "number", s.number, "bound", s.logoutDur)
	s.closeWith(nil)
}

// Disconnect is Logout followed by waiting (bounded by ctx) until the
// session has ended. When ctx ends first it kills the session and returns
// ctx's error. It must not be called from the Handler.
func (s *Session) Disconnect(ctx context.Context) error {
	if err := s.Logout(); err != nil {
		return err
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.Close()
		return fmt.Errorf("imipside: logout: %w", ctx.Err())
	}
}

// closeWith ends the session with cause (nil: a requested end; after Logout
// always nil). Only the first call counts. It stops the timers, fails the
// blocking wrappers still waiting and closes the connection, which makes the
// reader and writer goroutines exit. It never blocks on the network.
func (s *Session) closeWith(cause error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.discID != 0 && cause != nil {
		s.log.Debug("imipside: connection ended while logging out", "number", s.number, "err", cause)
		cause = nil
	}
	s.closed = true
	s.err = cause
	waiters := s.reqs.drain()
	if s.ka != nil {
		s.ka.Stop()
	}
	if s.barrier != nil {
		s.barrier.Stop()
	}
	if s.logoutTimer != nil && s.logoutTimer.Stop() {
		s.bg.Done() // its callback will not run
	}
	s.mu.Unlock()
	s.conn.Close()
	s.wake() // a parked reader must see the end too
	werr := closedErr(cause)
	for _, w := range waiters {
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

// closedErrLocked is the error for a call on an ended (or logging out)
// session; s.mu is held.
func (s *Session) closedErrLocked() error {
	if !s.closed && s.discID != 0 {
		return fmt.Errorf("%w: logging out", ErrClosed)
	}
	return closedErr(s.err)
}
