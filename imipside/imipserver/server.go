package imipserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"imip-transport/imipside/wire"
)

// ErrServing is returned by Serve when the Server is already serving or
// has served.
var ErrServing = errors.New("imipserver: Serve called twice")

// firstServerID is the first ID the server writes; IDs then count up by
// one across every connection.
const firstServerID = 10000

// Server is an IMIP server. Create one with New and run it with Serve.
// Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	store Store
	log   *slog.Logger
	ids   atomic.Uint64
	guard *guard
	// keyPrefix and keys make the Message-IDs of messages pushed before
	// they are stored (see Config.HoldWrites): unique across restarts.
	keyPrefix string
	keys      atomic.Uint64

	// mu guards the fields below and the presence fields of every conn.
	// Store calls that must be ordered against logins (held messages,
	// presence fan-out) are made under mu.
	mu      sync.Mutex
	ctx     context.Context
	addr    net.Addr
	serving bool
	closed  bool
	online  map[wire.Number]*conn // logged-in connections
	conns   map[*conn]struct{}    // every open connection

	wg sync.WaitGroup // reader and writer goroutines
}

// New checks cfg and returns a Server. It does not listen.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("imipserver: Config.Store is nil")
	}
	cfg = cfg.withDefaults()
	if cfg.RegistrationURL == "" {
		cfg.RegistrationURL = "http://" + cfg.Service + "/"
	}
	for _, v := range []string{cfg.Service, cfg.DisplayName, cfg.RegistrationURL} {
		if err := wire.Check(&wire.Block{Type: "X", Headers: []wire.Header{{Name: "X", Value: v}}}); err != nil {
			return nil, fmt.Errorf("imipserver: config: %w", err)
		}
	}
	s := &Server{
		cfg:    cfg,
		store:  cfg.Store,
		log:    cfg.Logger,
		ctx:    context.Background(),
		online: make(map[wire.Number]*conn),
		conns:  make(map[*conn]struct{}),
		guard:  newGuard(cfg.Abuse),
	}
	s.ids.Store(firstServerID - 1)
	var nonce [5]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("imipserver: message keys: %w", err)
	}
	s.keyPrefix = "h" + hex.EncodeToString(nonce[:]) + "-"
	return s, nil
}

// Addr returns the address Serve listens on, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Serve accepts connections on ln until ctx ends, then closes ln and every
// connection and waits for all its goroutines. It returns nil when ctx
// ended, or the error that stopped accepting. It may be called once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return ErrServing
	}
	s.serving, s.addr, s.ctx = true, ln.Addr(), ctx
	s.mu.Unlock()
	s.log.Info("imipserver: listening", "addr", ln.Addr().String())

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	jctx, jcancel := context.WithCancel(ctx)
	jdone := make(chan struct{})
	go func() {
		defer close(jdone)
		s.janitor(jctx)
	}()
	var err error
	backoff := 5 * time.Millisecond
	for {
		nc, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(aerr, net.ErrClosed) {
				err = fmt.Errorf("imipserver: accept: %w", aerr)
				break
			}
			// Anything else (too many open files, a connection aborted
			// before it was accepted, a timeout) passes: back off and
			// keep serving, as net/http does.
			if backoff == 5*time.Millisecond || backoff == time.Second {
				s.log.Warn("imipserver: accept failed; retrying", "err", aerr, "in", backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.startConn(nc)
	}
	ln.Close()
	jcancel()
	<-jdone
	s.shutdown()
	s.wg.Wait()
	s.log.Info("imipserver: stopped")
	return err
}

func (s *Server) startConn(nc net.Conn) {
	addr := hostOf(nc.RemoteAddr())
	if ok, why := s.guard.admit(addr); !ok {
		s.log.Debug("imipserver: connection refused", "remote", addr, "why", why)
		nc.Close()
		return
	}
	c := newConn(s, nc)
	c.addr = addr
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.guard.closed(addr, true)
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
}

// shutdown closes every connection; new ones are refused.
func (s *Server) shutdown() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.kill()
	}
}

// Online reports whether the user is logged in.
func (s *Server) Online(n wire.Number) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.online[n] != nil
}

// Kick closes the user's connection at once, as if it had dropped; its
// contacts see it go OFFLINE. It reports whether the user was online.
func (s *Server) Kick(n wire.Number) bool {
	s.mu.Lock()
	c := s.online[n]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.kill()
	return true
}

// PushRaw queues raw bytes, written as they are, on the user's connection.
// It is meant for tests and debugging. It reports whether the user was
// online and the bytes were queued.
func (s *Server) PushRaw(n wire.Number, raw []byte) bool {
	s.mu.Lock()
	c := s.online[n]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	return c.enqueue(outItem{buf: append([]byte(nil), raw...)})
}

// AddAccount creates or updates an account in the Store.
func (s *Server) AddAccount(ctx context.Context, a Account) error {
	return s.store.PutAccount(ctx, a)
}

// janitor closes parked connections past their keep-alive or login
// deadline (a reader that is not parked keeps its own, with read
// deadlines). It looks once a second until ctx ends.
func (s *Server) janitor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	idle := 2 * s.cfg.KeepAlive
	var expired []*conn
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.mu.Lock()
		for c := range s.conns {
			if c.expired(now, idle) {
				expired = append(expired, c)
			}
		}
		s.mu.Unlock()
		for _, c := range expired {
			c.log().Info("imipserver: silent past the keep-alive or login deadline, closing", "idle", idle)
			c.kill()
		}
		clear(expired)
		expired = expired[:0]
	}
}
