package xmppserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ProsodyOptions configures [StartProsody]. The zero value is usable.
type ProsodyOptions struct {
	// Dir holds configuration, data, certificates and logs.
	// Empty: a new temporary directory, removed by Close.
	Dir string
	// C2SPort and ComponentPort fix the listeners' ports on 127.0.0.1
	// (for the local demo stack). Zero: a free port is chosen.
	C2SPort, ComponentPort int
	// Domain is the users' VirtualHost. Default DefaultDomain.
	Domain string
	// Component is the XEP-0114 component's name. Default DefaultComponent.
	Component string
	// Secret is the component secret. Default DefaultSecret.
	Secret string
	// Privilege grants the component XEP-0356 rights through
	// prosody-modules' mod_privilege: roster "both", message "outgoing",
	// presence "roster".
	Privilege bool
	// Users are created before the server starts: name -> password.
	Users map[string]string
	// ExtraModules are added to the global modules_enabled list.
	ExtraModules []string
	// ExtraConfig is raw Lua appended to the global section.
	ExtraConfig string
	// LogLevel is the minimum level written to the log file: "debug",
	// "info" (default), "warn" or "error".
	LogLevel string
	// Binary is the prosody executable. Default: "prosody" from PATH.
	Binary string
	// StartTimeout bounds each start. Default DefaultStartTimeout.
	StartTimeout time.Duration
	// Logger receives start and stop events. Default: discarded.
	Logger *slog.Logger
}

// Prosody is a private Prosody instance started by [StartProsody].
// Its methods are safe for concurrent use.
type Prosody struct {
	commonOptions
	binary            string
	dir, dataDir      string
	cfgPath, logPath  string
	outPath           string
	ownDir            bool
	c2sPort, compPort int

	mu sync.Mutex
	p  *proc // nil when stopped
}

// ProsodyAvailable reports whether the prosody binary (from PATH, or binary
// if not empty) can be found.
func ProsodyAvailable(binary string) error {
	if binary == "" {
		binary = "prosody"
	}
	if _, err := exec.LookPath(binary); err != nil {
		return fmt.Errorf("xmppserver: prosody not installed (run .ci/install-deps.sh): %w", err)
	}
	return nil
}

// StartProsody writes a configuration for a private Prosody instance,
// starts `prosody --config FILE -F` and blocks until its client and
// component ports accept connections (bounded by StartTimeout and ctx).
// On failure every started process is stopped and the error carries the
// tail of the log files.
func StartProsody(ctx context.Context, opts ProsodyOptions) (*Prosody, error) {
	s := &Prosody{
		commonOptions: newCommon(opts.Domain, opts.Component, opts.Secret, opts.Logger, opts.StartTimeout),
		binary:        opts.Binary,
		dir:           opts.Dir,
	}
	if s.binary == "" {
		s.binary = "prosody"
	}
	if err := ProsodyAvailable(s.binary); err != nil {
		return nil, err
	}
	if err := s.prepare(opts); err != nil {
		s.removeOwnDir()
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		s.removeOwnDir()
		return nil, err
	}
	return s, nil
}

func (s *Prosody) prepare(opts ProsodyOptions) error {
	if s.dir == "" {
		d, err := os.MkdirTemp("", "imip-prosody-")
		if err != nil {
			return fmt.Errorf("xmppserver: prosody temp dir: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	s.dataDir = filepath.Join(s.dir, "data")
	s.cfgPath = filepath.Join(s.dir, "prosody.cfg.lua")
	s.logPath = filepath.Join(s.dir, "prosody.log")
	s.outPath = filepath.Join(s.dir, "prosody.out")
	certDir := filepath.Join(s.dir, "certs")
	if err := os.MkdirAll(s.dataDir, 0o750); err != nil {
		return fmt.Errorf("xmppserver: prosody data dir: %w", err)
	}
	if _, err := WriteCertificate(certDir, s.domain, s.component); err != nil {
		return err
	}
	c2sPort, compPort, err := choosePorts(opts.C2SPort, opts.ComponentPort)
	if err != nil {
		return err
	}
	s.c2sPort, s.compPort = c2sPort, compPort
	level := opts.LogLevel
	if level == "" {
		level = "info"
	}
	cfg := prosodyConfig{
		dir: s.dir, dataDir: s.dataDir, certDir: certDir, logPath: s.logPath,
		pidPath: filepath.Join(s.dir, "prosody.pid"),
		c2sPort: s.c2sPort, componentPort: s.compPort,
		domain: s.domain, component: s.component, secret: s.secret,
		logLevel: level, privilege: opts.Privilege,
		extraModules: opts.ExtraModules, extraConfig: opts.ExtraConfig,
	}
	if err := os.WriteFile(s.cfgPath, []byte(cfg.render()), 0o600); err != nil {
		return fmt.Errorf("xmppserver: write prosody config: %w", err)
	}
	for name, pw := range opts.Users {
		if err := s.writeAccount(name, pw); err != nil {
			return err
		}
	}
	return nil
}

// start launches the process and waits for readiness; the caller holds no
// lock (StartProsody) or s.mu (Restart).
func (s *Prosody) start(ctx context.Context) error {
	began := time.Now()
	logFrom := logSize(s.logPath)
	env := append(os.Environ(), "LANG=C.UTF-8")
	p, err := startProc(s.binary, []string{"--config", s.cfgPath, "-F"}, env, s.dir, s.outPath)
	if err != nil {
		return &startError{kind: "prosody", err: err, tail: Tail(4096, s.outPath)}
	}
	err = waitReady(ctx, p, s.timeout, func(ctx context.Context) error {
		err := probeC2S(ctx, s.C2SAddr(), s.domain)
		if err == nil {
			err = probeComponent(ctx, s.ComponentAddr(), s.component)
		}
		// A port taken since it was chosen: Prosody logs it and runs on,
		// and a probe might have reached whoever holds the port.
		if line := logMentions(s.logPath, logFrom, "Failed to open server port"); line != "" {
			return &fatalError{errors.New(line)}
		}
		return err
	})
	if err != nil {
		_ = p.terminate(context.Background(), 3*time.Second)
		return &startError{kind: "prosody", err: err, tail: Tail(4096, s.outPath, s.logPath)}
	}
	s.p = p
	s.logger.Info("xmppserver: prosody ready", "pid", p.pid(), "c2s", s.C2SAddr(),
		"component", s.ComponentAddr(), "dir", s.dir, "took", time.Since(began))
	return nil
}

// Kind returns "prosody".
func (s *Prosody) Kind() string { return "prosody" }

// C2SAddr returns the client listener address (STARTTLS required).
func (s *Prosody) C2SAddr() string { return loopback(s.c2sPort) }

// ComponentAddr returns the XEP-0114 listener address.
func (s *Prosody) ComponentAddr() string { return loopback(s.compPort) }

// Domain returns the users' domain.
func (s *Prosody) Domain() string { return s.domain }

// ComponentName returns the component's domain.
func (s *Prosody) ComponentName() string { return s.component }

// Secret returns the component secret.
func (s *Prosody) Secret() string { return s.secret }

// Dir returns the instance directory.
func (s *Prosody) Dir() string { return s.dir }

// LogPath returns Prosody's log file.
func (s *Prosody) LogPath() string { return s.logPath }

// ConfigPath returns the generated Lua configuration file.
func (s *Prosody) ConfigPath() string { return s.cfgPath }

// PID returns the server's process ID, or 0 when it is stopped.
func (s *Prosody) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil || s.p.exited() {
		return 0
	}
	return s.p.pid()
}

// AddUser writes the account file for name on Domain (internal_plain
// storage), replacing any existing password.
// It works whether or not the server runs and takes effect at the next
// login. The name is lower-cased as Prosody's nodeprep would.
func (s *Prosody) AddUser(ctx context.Context, name, password string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("xmppserver: prosody add user: %w", err)
	}
	return s.writeAccount(name, password)
}

func (s *Prosody) writeAccount(name, password string) error {
	name = strings.ToLower(name)
	if err := checkLocalpart(name); err != nil {
		return err
	}
	dir := filepath.Join(s.dataDir, prosodyEncode(s.domain), "accounts")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("xmppserver: prosody accounts dir: %w", err)
	}
	body := "return {\n\t[\"password\"] = " + luaQuote(password) + ";\n};\n"
	path := filepath.Join(dir, prosodyEncode(name)+".dat")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		return fmt.Errorf("xmppserver: prosody write account: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("xmppserver: prosody write account: %w", err)
	}
	return nil
}

// checkLocalpart rejects names that cannot be a JID localpart.
func checkLocalpart(name string) error {
	if name == "" || len(name) > 1023 || strings.ContainsAny(name, "@/\"&'<>: \t\r\n") {
		return fmt.Errorf("xmppserver: invalid user name %q", name)
	}
	return nil
}

// Stop sends SIGTERM to the server's PID and waits for it to exit
// (SIGKILL after DefaultStopTimeout or when ctx ends).
// Stopping a stopped server returns nil.
func (s *Prosody) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(ctx)
}

func (s *Prosody) stopLocked(ctx context.Context) error {
	if s.p == nil {
		return nil
	}
	began := time.Now()
	p := s.p
	s.p = nil
	if err := p.terminate(ctx, DefaultStopTimeout); err != nil {
		return fmt.Errorf("xmppserver: stop prosody: %w", err)
	}
	s.logger.Info("xmppserver: prosody stopped", "pid", p.pid(), "took", time.Since(began))
	return nil
}

// Restart stops the server (if running) and starts it again with the same
// configuration, ports and data, blocking until it is ready.
func (s *Prosody) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(ctx); err != nil {
		return err
	}
	return s.start(ctx)
}

// Close stops the server and, if StartProsody created the directory,
// removes it.
func (s *Prosody) Close(ctx context.Context) error {
	err := s.Stop(ctx)
	if err == nil {
		s.removeOwnDir()
	}
	return err
}

func (s *Prosody) removeOwnDir() {
	if s.ownDir {
		_ = os.RemoveAll(s.dir)
	}
}
