package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/internal/xmppserver"
)

// EnvRequireServers is the environment variable that turns "server not
// installed" from a skip into a failure when set to "1".
const EnvRequireServers = "IMIP_REQUIRE_SERVERS"

// startBudget bounds a whole start (the servers bound their own readiness
// wait more tightly).
const startBudget = 60 * time.Second

// stopBudget bounds a stop at cleanup.
const stopBudget = 20 * time.Second

// RequireServers reports whether IMIP_REQUIRE_SERVERS=1.
func RequireServers() bool { return os.Getenv(EnvRequireServers) == "1" }

// SkipUnavailable skips t (or fails it under IMIP_REQUIRE_SERVERS=1) when
// err, an availability check's result, is not nil.
func SkipUnavailable(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if RequireServers() {
		t.Fatalf("testenv: %v (%s=1 forbids skipping)", err, EnvRequireServers)
	}
	t.Skipf("testenv: skipping: %v (set %s=1 to make this a failure)", err, EnvRequireServers)
}

// Prosody starts a private Prosody for t (in t.TempDir() unless opts.Dir
// is set) and stops it at cleanup; the tail of its log is logged if t
// failed. It skips or fails t per the package's skip policy.
func Prosody(t testing.TB, opts xmppserver.ProsodyOptions) *xmppserver.Prosody {
	t.Helper()
	SkipUnavailable(t, xmppserver.ProsodyAvailable(opts.Binary))
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), startBudget)
	defer cancel()
	srv, err := xmppserver.StartProsody(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeForTest(t, srv) })
	return srv
}

// Ejabberd starts a private ejabberd node for t and stops it at cleanup.
// Starting ejabberd takes about two seconds: prefer [SharedEjabberd]
// unless the test needs a node of its own.
func Ejabberd(t testing.TB, opts xmppserver.EjabberdOptions) *xmppserver.Ejabberd {
	t.Helper()
	_, err := xmppserver.EjabberdAvailable(opts.Ctl)
	SkipUnavailable(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), startBudget)
	defer cancel()
	srv, err := xmppserver.StartEjabberd(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeForTest(t, srv) })
	return srv
}

func closeForTest(t testing.TB, srv xmppserver.Server) {
	if t.Failed() {
		t.Logf("testenv: %s log:%s", srv.Kind(), xmppserver.Tail(4096, srv.LogPath()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Errorf("testenv: %v", err)
	}
}

// Shared is a server started at most once per test binary, on the first
// Get, and stopped by Close (normally through [Main]).
// Its methods are safe for concurrent use.
type Shared[S xmppserver.Server] struct {
	kind      string
	available func() error
	start     func(context.Context) (S, error)

	once    sync.Once
	mu      sync.Mutex
	srv     S
	started bool
	err     error // start error, or unavailability (see unavail)
	unavail bool
}

// SharedProsody returns a lazily started Prosody shared by a package's
// tests. Give it to [Main] so that it is stopped at the end.
func SharedProsody(opts xmppserver.ProsodyOptions) *Shared[*xmppserver.Prosody] {
	return &Shared[*xmppserver.Prosody]{
		kind:      "prosody",
		available: func() error { return xmppserver.ProsodyAvailable(opts.Binary) },
		start: func(ctx context.Context) (*xmppserver.Prosody, error) {
			return xmppserver.StartProsody(ctx, opts)
		},
	}
}

// SharedEjabberd returns a lazily started ejabberd node shared by a
// package's tests. Give it to [Main] so that it is stopped at the end.
func SharedEjabberd(opts xmppserver.EjabberdOptions) *Shared[*xmppserver.Ejabberd] {
	return &Shared[*xmppserver.Ejabberd]{
		kind: "ejabberd",
		available: func() error {
			_, err := xmppserver.EjabberdAvailable(opts.Ctl)
			return err
		},
		start: func(ctx context.Context) (*xmppserver.Ejabberd, error) {
			return xmppserver.StartEjabberd(ctx, opts)
		},
	}
}

// Get returns the shared server, starting it on the first call (which
// blocks until it is ready). It skips or fails t per the skip policy; a
// failed start fails every test that asks for the server. If t fails, the
// tail of the server's log is logged at its cleanup.
func (s *Shared[S]) Get(t testing.TB) S {
	t.Helper()
	s.once.Do(func() {
		if err := s.available(); err != nil {
			s.err, s.unavail = err, true
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), startBudget)
		defer cancel()
		srv, err := s.start(ctx)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.srv, s.err, s.started = srv, err, err == nil
	})
	if s.unavail {
		SkipUnavailable(t, s.err)
	}
	if s.err != nil {
		t.Fatalf("testenv: shared %s: %v", s.kind, s.err)
	}
	srv := s.srv
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: shared %s log:%s", srv.Kind(), xmppserver.Tail(4096, srv.LogPath()))
		}
	})
	return srv
}

// Close stops the shared server if it was started. It is safe to call when
// Get was never called, and more than once.
func (s *Shared[S]) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	s.started = false
	ctx, cancel := context.WithTimeout(context.Background(), stopBudget)
	defer cancel()
	if err := s.srv.Close(ctx); err != nil {
		return fmt.Errorf("testenv: shared %s: %w", s.kind, err)
	}
	return nil
}

// RunMain runs the tests, then closes every shared server, and returns the
// exit code (1 if a Close failed and the tests had passed).
func RunMain(m *testing.M, shared ...io.Closer) int {
	code := m.Run()
	for _, c := range shared {
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Main is RunMain followed, when the tests passed, by a goroutine leak
// check (goleak.Find with opts), and os.Exit. Call it from TestMain.
func Main(m *testing.M, shared ...io.Closer) {
	MainWithLeakOptions(m, nil, shared...)
}

// MainWithLeakOptions is Main with goleak options (for example
// goleak.IgnoreTopFunction for a known background goroutine).
func MainWithLeakOptions(m *testing.M, leakOpts []goleak.Option, shared ...io.Closer) {
	code := RunMain(m, shared...)
	if code == 0 {
		if err := goleak.Find(leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
