package imiptest

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// Account is an account of the test server.
type Account = imipserver.Account

// Faults are the server's deliberate deviations; the zero value is a
// faithful server.
type Faults = imipserver.Faults

// Options configures Start.
type Options struct {
	Accounts  []Account
	KeepAlive time.Duration // default 60 s
	Faults    Faults
	Limits    wire.Limits
	Logger    *slog.Logger // nil discards the server's logs
	// DeliveryWindow is imipserver.Config.DeliveryWindow: the pushes one
	// connection may leave unconfirmed (default 32).
	DeliveryWindow int
}

// Server is a running test server.
type Server struct {
	t     testing.TB
	srv   *imipserver.Server
	store *imipserver.MemStore
	addr  string
}

// Start starts a server with an in-memory store on 127.0.0.1:0. It fails
// the test on any setup error. t.Cleanup stops it and waits for all its
// goroutines.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	store := imipserver.NewMemStore()
	for _, a := range opts.Accounts {
		if err := store.PutAccount(context.Background(), a); err != nil {
			t.Fatalf("imiptest: %v", err)
		}
	}
	srv, err := imipserver.New(imipserver.Config{
		Store:          store,
		KeepAlive:      opts.KeepAlive,
		Limits:         opts.Limits,
		Service:        "imip.test",
		Logger:         opts.Logger,
		Faults:         opts.Faults,
		DeliveryWindow: opts.DeliveryWindow,
	})
	if err != nil {
		t.Fatalf("imiptest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("imiptest: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("imiptest: Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("imiptest: server did not stop within 10s")
		}
	})
	return &Server{t: t, srv: srv, store: store, addr: ln.Addr().String()}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// Server returns the underlying server.
func (s *Server) Server() *imipserver.Server { return s.srv }

// Store returns the server's in-memory store.
func (s *Server) Store() *imipserver.MemStore { return s.store }

// AddAccount adds or updates an account; it fails the test on error.
func (s *Server) AddAccount(a Account) {
	s.t.Helper()
	if err := s.srv.AddAccount(context.Background(), a); err != nil {
		s.t.Fatalf("imiptest: add account: %v", err)
	}
}

// Online reports whether the user is logged in.
func (s *Server) Online(n wire.Number) bool { return s.srv.Online(n) }

// WaitOnline waits up to timeout until Online(n) == want and reports
// whether it got there.
func (s *Server) WaitOnline(n wire.Number, want bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if s.srv.Online(n) == want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// PushRaw writes raw bytes, as they are, to the user's connection. It
// reports whether the user was online.
func (s *Server) PushRaw(n wire.Number, raw []byte) bool { return s.srv.PushRaw(n, raw) }

// Kill drops the user's connection at once, as a network failure would.
// It reports whether the user was online.
func (s *Server) Kill(n wire.Number) bool { return s.srv.Kick(n) }
