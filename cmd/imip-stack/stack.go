package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/imipside/imipserver"
	"imip-transport/internal/app"
	"imip-transport/internal/xmppserver"
	"imip-transport/xmppside"
)

// Bounds on starting and stopping the parts.
const (
	connectTimeout = 15 * time.Second // transport to Prosody's component port
	imipdStopWait  = 5 * time.Second
	prosodyStopMax = 15 * time.Second
)

// installHint is what to run when Prosody or its modules are missing.
const installHint = "run `bash .ci/install-deps.sh` (as root; `make stack` does it for you)"

// privilegeModules are the places Debian's prosody-modules puts
// mod_privilege.
var privilegeModules = []string{
	"/usr/lib/prosody/modules/mod_privilege/mod_privilege.lua",
	"/usr/lib/prosody/modules/mod_privilege.lua",
	"/usr/local/lib/prosody/modules/mod_privilege/mod_privilege.lua",
}

// stack is one run of the demo.
type stack struct {
	o        options
	dir      string
	log      *slog.Logger
	accounts []imipserver.Account
	seed     imipserver.Seed
	prosody  *xmppserver.Prosody
}

// run starts Prosody, imipd and the transport, prints the instructions to
// out once all three are up, and blocks until ctx ends or a part fails.
// Then it stops every part it started, last started first.
func run(ctx context.Context, o options, out io.Writer, log *slog.Logger) (err error) {
	s := &stack{o: o, log: log}
	if err := s.preflight(); err != nil {
		return err
	}
	secret, err := loadSecret(s.dir)
	if err != nil {
		return err
	}

	// Prosody.
	if err := s.startProsody(ctx, secret); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), prosodyStopMax)
		defer cancel()
		pid := s.prosody.PID()
		if serr := s.prosody.Stop(sctx); serr != nil {
			err = errors.Join(err, serr)
			return
		}
		log.Info("prosody stopped", "pid", pid)
	}()

	// imipd.
	imipCtx, stopIMIP := context.WithCancel(context.Background())
	defer stopIMIP()
	imipd, err := s.startIMIPD(imipCtx)
	if err != nil {
		return err
	}
	defer func() {
		stopIMIP()
		if werr := imipd.wait("imipd", imipdStopWait); werr != nil {
			err = errors.Join(err, werr)
		}
	}()

	// The transport.
	appCtx, stopApp := context.WithCancel(context.Background())
	defer stopApp()
	transport, comp := s.startTransport(appCtx, secret)
	defer func() {
		stopApp()
		if werr := transport.wait("transport", app.ShutdownGrace+time.Second); werr != nil {
			err = errors.Join(err, werr)
		}
	}()
	if err := waitConnected(ctx, comp, transport); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting
		}
		return err
	}

	printBanner(out, s.bannerInfo())

	select {
	case <-ctx.Done():
		log.Info("stopping (signal received)")
		return nil
	case <-transport.done:
		return errors.New("transport stopped on its own")
	case <-imipd.done:
		return errors.New("imipd stopped on its own")
	}
}

// part is one part of the stack running on its own goroutine.
type part struct {
	done chan struct{} // closed when the part has returned
	err  error         // its result, valid once done is closed
}

func startPart(f func() error) *part {
	p := &part{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = f()
	}()
	return p
}

// wait waits up to d for the part to return and gives its error, named.
func (p *part) wait(name string, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s: %w", name, p.err)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("%s did not stop within %v", name, d)
	}
}

// preflight checks everything that can fail before a process starts:
// Prosody installed, the accounts file, the state directory, the ports.
func (s *stack) preflight() error {
	if err := xmppserver.ProsodyAvailable(s.o.Prosody); err != nil {
		return fmt.Errorf("prosody is not installed: %s", installHint)
	}
	if !anyExists(privilegeModules) {
		s.log.Warn("mod_privilege not found (package prosody-modules): roster pushes fall back to subscriptions; " + installHint)
	}
	f, err := os.Open(s.o.Accounts)
	if err != nil {
		return fmt.Errorf("demo IMIP accounts: %w (run from the repository root, or pass -accounts FILE)", err)
	}
	defer f.Close()
	seed, err := imipserver.DecodeSeed(f)
	if err != nil {
		return fmt.Errorf("demo IMIP accounts %s: %w", s.o.Accounts, err)
	}
	accts := seed.Accounts
	s.seed = seed
	if len(accts) < 2 {
		return fmt.Errorf("demo IMIP accounts %s: the demo needs at least two accounts, found %d", s.o.Accounts, len(accts))
	}
	s.accounts = accts
	if s.dir, err = stateDir(s.o.Dir); err != nil {
		return err
	}
	return checkPorts([]portUse{
		{flag: "-c2s-port", what: "Prosody clients", port: s.o.C2SPort},
		{flag: "-component-port", what: "Prosody components", port: s.o.CompPort},
		{flag: "-imip-port", what: "imipd", port: s.o.IMIPPort},
	}, filepath.Join(s.dir, "prosody", "prosody.pid"))
}

func anyExists(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func (s *stack) startProsody(ctx context.Context, secret string) error {
	users := make(map[string]string, len(demoUsers))
	for _, u := range demoUsers {
		users[u.Name] = u.Password
	}
	level := "info"
	if s.o.ProsodyDebug {
		level = "debug"
	}
	p, err := xmppserver.StartProsody(ctx, xmppserver.ProsodyOptions{
		Dir:           filepath.Join(s.dir, "prosody"),
		Domain:        domain,
		Component:     component,
		Secret:        secret,
		Privilege:     true,
		Users:         users,
		LogLevel:      level,
		Binary:        s.o.Prosody,
		C2SPort:       s.o.C2SPort,
		ComponentPort: s.o.CompPort,
		Logger:        s.log.With("part", "prosody"),
	})
	if err != nil {
		return err
	}
	s.prosody = p
	s.log.Info("prosody running", "pid", p.PID(), "c2s", p.C2SAddr(), "component", p.ComponentAddr(), "log", p.LogPath())
	return nil
}

// startIMIPD opens imipd's store, loads the demo accounts and serves on the
// IMIP port until ctx ends; the part's result is Serve's, joined with
// closing the store.
func (s *stack) startIMIPD(ctx context.Context) (*part, error) {
	dir := filepath.Join(s.dir, "imipd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("imipd: %w", err)
	}
	st, err := imipserver.OpenSQLite(ctx, filepath.Join(dir, "imipd.db"),
		imipserver.SQLiteOptions{KeyFile: filepath.Join(s.dir, "imipd.key"), Logger: s.log.With("part", "imipd")})
	if err != nil {
		return nil, err
	}
	if err := s.seed.Apply(ctx, st); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("imipd: demo accounts: %w", err)
	}
	srv, err := imipserver.New(imipserver.Config{Store: st, Logger: s.log.With("part", "imipd")})
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.o.IMIPPort)))
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("imipd: %w (choose another port with -imip-port N)", err)
	}
	s.log.Info("imipd running", "addr", ln.Addr().String(), "accounts", len(s.accounts))
	return startPart(func() error {
		err := srv.Serve(ctx, ln)
		return errors.Join(err, st.Close())
	}), nil
}

// startTransport runs app.Run until ctx ends. The channel receives the
// component once it is built.
func (s *stack) startTransport(ctx context.Context, secret string) (*part, <-chan *xmppside.Component) {
	comp := make(chan *xmppside.Component, 1)
	opts := app.Options{
		Domain:      jid.MustParse(component),
		XMPPServer:  s.prosody.ComponentAddr(),
		Secret:      secret,
		IMIPServer:  net.JoinHostPort("127.0.0.1", strconv.Itoa(s.o.IMIPPort)),
		ClientName:  "imip-transport (imip-stack)",
		StorePath:   filepath.Join(s.dir, "transport.db"),
		KeyFile:     filepath.Join(s.dir, "transport.key"),
		Version:     "imip-stack",
		Logger:      s.log.With("part", "transport"),
		MinBackoff:  200 * time.Millisecond,
		MaxBackoff:  5 * time.Second,
		RosterGroup: "IMIP",
		// The second demo user administers the gateway (its ad-hoc
		// commands: online users, statistics, ...).
		Admins: []jid.JID{jid.MustParse(demoUsers[len(demoUsers)-1].Name + "@" + domain)},
		Ready: func(_ *gateway.Gateway, c *xmppside.Component) {
			comp <- c
		},
	}
	return startPart(func() error { return app.Run(ctx, opts) }), comp
}

// waitConnected blocks until the component is connected to Prosody, the
// transport fails, ctx ends or connectTimeout passes.
func waitConnected(ctx context.Context, compc <-chan *xmppside.Component, transport *part) error {
	deadline := time.NewTimer(connectTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var comp *xmppside.Component
	for {
		if comp != nil && comp.Connected() {
			return nil
		}
		select {
		case c := <-compc:
			comp = c
		case <-transport.done:
			return fmt.Errorf("transport stopped while starting: %v", transport.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("transport: component not connected to Prosody after %v", connectTimeout)
		case <-tick.C:
		}
	}
}
