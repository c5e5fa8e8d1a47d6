package xmppserver

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
	"time"
)

// Default names and limits shared by both servers.
const (
	// DefaultDomain is the XMPP domain users live on.
	DefaultDomain = "localhost"
	// DefaultComponent is the name of the XEP-0114 component.
	DefaultComponent = "imip.localhost"
	// DefaultSecret is the component secret used when none is given.
	DefaultSecret = "imip-test-secret"
	// DefaultStartTimeout bounds how long a start waits for readiness.
	DefaultStartTimeout = 20 * time.Second
	// DefaultStopTimeout bounds a graceful stop before the process is killed.
	DefaultStopTimeout = 10 * time.Second
)

// ErrNotRunning is returned by methods that need a running server.
var ErrNotRunning = errors.New("xmppserver: server is not running")

// Server is what tests need from a running XMPP server.
// Both *Prosody and *Ejabberd implement it.
// All methods are safe for concurrent use.
type Server interface {
	// Kind names the implementation: "prosody" or "ejabberd".
	Kind() string
	// C2SAddr is the client-to-server listener, "127.0.0.1:port".
	// It requires STARTTLS.
	C2SAddr() string
	// ComponentAddr is the XEP-0114 listener, "127.0.0.1:port".
	ComponentAddr() string
	// Domain is the users' domain, for example "localhost".
	Domain() string
	// ComponentName is the domain of the external component.
	ComponentName() string
	// Secret is the component's shared secret.
	Secret() string
	// Dir is the directory holding configuration, data and logs.
	Dir() string
	// LogPath is the server's main log file.
	LogPath() string
	// AddUser creates (or overwrites, on Prosody) an account on Domain.
	// It blocks until the account exists.
	AddUser(ctx context.Context, name, password string) error
	// Stop stops the server and waits for its processes to exit.
	// Stopping a stopped server does nothing.
	Stop(ctx context.Context) error
	// Restart stops the server and starts it again on the same ports with
	// the same data.
	Restart(ctx context.Context) error
	// Close stops the server and removes its directory if the start
	// function created it.
	Close(ctx context.Context) error
}

var (
	_ Server = (*Prosody)(nil)
	_ Server = (*Ejabberd)(nil)
)

// commonOptions are the settings both servers share, after defaults.
type commonOptions struct {
	domain    string
	component string
	secret    string
	logger    *slog.Logger
	timeout   time.Duration
}

func newCommon(domain, component, secret string, logger *slog.Logger, timeout time.Duration) commonOptions {
	c := commonOptions{domain: domain, component: component, secret: secret, logger: logger, timeout: timeout}
	if c.domain == "" {
		c.domain = DefaultDomain
	}
	if c.component == "" {
		c.component = DefaultComponent
	}
	if c.secret == "" {
		c.secret = DefaultSecret
	}
	if c.logger == nil {
		c.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.timeout <= 0 {
		c.timeout = DefaultStartTimeout
	}
	return c
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
// All listeners are held open until every port is chosen so that the ports
// differ; another process may still take one before the server binds it.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("xmppserver: find free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// fatalError makes waitReady give up at once.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// waitReady polls check every 25 ms until it succeeds, returns a
// *fatalError, the process exits, ctx ends or timeout passes.
func waitReady(ctx context.Context, p *proc, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		last = check(ctx)
		if last == nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(last, &fatal) {
			return fatal.err
		}
		select {
		case <-p.done:
			return fmt.Errorf("process exited before it was ready: %w", p.exitErr())
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v (last check: %v): %w", timeout, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// logSize returns the size of the file at path, 0 if it does not exist.
func logSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// logMentions returns the first line at or after byte offset from of the
// file at path that contains needle, or "" (also when it cannot be read).
func logMentions(path string, from int64, needle string) string {
	data, err := os.ReadFile(path)
	if err != nil || int64(len(data)) < from {
		return ""
	}
	for line := range strings.Lines(string(data[from:])) {
		if strings.Contains(line, needle) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// Tail returns up to the last limit bytes of each file, each labelled with
// its path, for error messages and failed-test output.
func Tail(limit int64, paths ...string) string {
	var out []byte
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		st, err := f.Stat()
		if err == nil && st.Size() > 0 {
			off := max(st.Size()-limit, 0)
			buf := make([]byte, st.Size()-off)
			n, _ := f.ReadAt(buf, off)
			out = fmt.Appendf(out, "\n--- %s (last %d bytes) ---\n%s", path, n, buf[:n])
		}
		_ = f.Close()
	}
	if len(out) == 0 {
		return "\n(no log output)"
	}
	return string(out)
}

// startError wraps err with the tail of the given log files.
type startError struct {
	kind string
	err  error
	tail string
}

func (e *startError) Error() string {
	return fmt.Sprintf("xmppserver: start %s: %v%s", e.kind, e.err, e.tail)
}

func (e *startError) Unwrap() error { return e.err }
