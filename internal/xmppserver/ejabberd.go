package xmppserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// EjabberdOptions configures [StartEjabberd]. The zero value is usable.
type EjabberdOptions struct {
	// Dir holds configuration, certificates, the Mnesia spool and logs; it
	// is chowned to the ejabberd user, and every parent must be searchable
	// by that user.
	// Empty: a new directory under os.TempDir(), removed by Close.
	Dir string
	// Domain is the users' host. Default DefaultDomain.
	Domain string
	// Component is the XEP-0114 component's name. Default DefaultComponent.
	Component string
	// Secret is the component password. Default DefaultSecret.
	Secret string
	// Privilege enables mod_privilege (urn:xmpp:privilege:1 in 23.01) for
	// the component: roster both, message outgoing, presence roster.
	Privilege bool
	// Users are registered once the server is ready: name -> password.
	Users map[string]string
	// Balancing, when set, adds a domain_balancing entry for the component
	// domain: several component connections may then share the name.
	Balancing *ComponentBalancing
	// ExtraModules are added to the modules section as "NAME: {}"
	// (ejabberd names, for example "mod_carboncopy").
	ExtraModules []string
	// ExtraConfig is raw YAML appended at the top level; it must not repeat
	// a key the generated file already has.
	ExtraConfig string
	// LogLevel is ejabberd's loglevel: "debug", "info" (default), "warning"...
	LogLevel string
	// Ctl is the ejabberdctl script. Default: PATH, then /usr/sbin/ejabberdctl.
	Ctl string
	// StartTimeout bounds each start. Default DefaultStartTimeout.
	StartTimeout time.Duration
	// Logger receives start and stop events. Default: discarded.
	Logger *slog.Logger
}

// ComponentBalancing is ejabberd's domain_balancing for the component
// domain. What ejabberd 23.01 does with it (src/ejabberd_router.erl,
// src/ejabberd_router_mnesia.erl; proven by TestEjabberdComponentBalancing):
//
//   - With ComponentNumber N the domain's route table holds N slots. A
//     component connection takes the first free slot at its handshake; one
//     made while all N are held gets none, is not told, and receives
//     nothing (it can still send). When a slot's connection closes, the
//     slot stays as a placeholder without a process, and stanzas hashed to
//     it are dropped without an error until a new connection takes it.
//     Each stanza goes to slot erlang:phash2(key, N), the key chosen by
//     Type ("bare_source": the sender's bare JID).
//   - Without ComponentNumber no component can connect at all: 23.01
//     reads component_number without a default once the domain has a
//     domain_balancing entry, and every handshake crashes the connection
//     ({badkey,component_number} in ejabberd's log). Without
//     domain_balancing (Balancing nil), ejabberd picks one of the
//     connections at random for each stanza.
type ComponentBalancing struct {
	// Type is random, source, destination, bare_source or bare_destination;
	// empty leaves ejabberd's default (random).
	Type string
	// ComponentNumber is the number of slots, 2 to 1000 (ejabberd's
	// bounds); 0 leaves it out, which ejabberd 23.01 cannot work with
	// (see above; kept possible so that a test can show it).
	ComponentNumber int
}

// validate checks b against ejabberd's own bounds, so that a typo fails the
// start with a clear error instead of an ejabberd configuration crash.
func (b *ComponentBalancing) validate() error {
	if b == nil {
		return nil
	}
	switch b.Type {
	case "", "random", "source", "destination", "bare_source", "bare_destination":
	default:
		return fmt.Errorf("xmppserver: ejabberd domain_balancing type %q: want random, source, destination, bare_source or bare_destination", b.Type)
	}
	if b.ComponentNumber != 0 && (b.ComponentNumber < 2 || b.ComponentNumber > 1000) {
		return fmt.Errorf("xmppserver: ejabberd domain_balancing component_number %d: want 2 to 1000", b.ComponentNumber)
	}
	return nil
}

// Ejabberd is a private ejabberd node started by [StartEjabberd].
// Its methods are safe for concurrent use.
//
// The node runs `ejabberdctl ... foreground` (which switches to the
// ejabberd user when run as root) under a unique node name
// "imipNNNNNNNN@localhost", with Erlang distribution on a private loopback
// port and no epmd. Administrative calls (readiness, AddUser) go through
// mod_http_api on a loopback-only port instead of spawning an Erlang VM per
// ejabberdctl command.
type Ejabberd struct {
	commonOptions
	ctl                                   string
	dir, spoolDir, logDir, cfgDir         string
	logPath, outPath, pidPath             string
	node                                  string
	ownDir                                bool
	c2sPort, compPort, httpPort, distPort int
	api                                   *ejabberdAPI

	mu sync.Mutex
	p  *proc // the ejabberdctl foreground process; nil when stopped
}

// EjabberdAvailable reports whether ejabberdctl can be found (ctl, PATH,
// then /usr/sbin) and whether this process may run it: as root (it then
// switches to the ejabberd user) or as the ejabberd user itself.
func EjabberdAvailable(ctl string) (string, error) {
	path, err := findCtl(ctl)
	if err != nil {
		return "", err
	}
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil || u.Username != "ejabberd" {
			return "", fmt.Errorf("xmppserver: ejabberdctl must run as root or as the ejabberd user")
		}
	}
	return path, nil
}

func findCtl(ctl string) (string, error) {
	if ctl == "" {
		ctl = "ejabberdctl"
	}
	if p, err := exec.LookPath(ctl); err == nil {
		return p, nil
	}
	if ctl == "ejabberdctl" {
		if p, err := exec.LookPath("/usr/sbin/ejabberdctl"); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("xmppserver: ejabberd not installed (run .ci/install-deps.sh): %s not found", ctl)
}

// StartEjabberd writes a configuration for a private ejabberd node, starts
// it in the foreground, waits until the client, component and HTTP API
// listeners answer (bounded by StartTimeout and ctx), then registers
// opts.Users.
// On failure every started process is stopped and the error carries the
// tail of the log files.
func StartEjabberd(ctx context.Context, opts EjabberdOptions) (*Ejabberd, error) {
	ctl, err := EjabberdAvailable(opts.Ctl)
	if err != nil {
		return nil, err
	}
	if err := opts.Balancing.validate(); err != nil {
		return nil, err
	}
	s := &Ejabberd{
		commonOptions: newCommon(opts.Domain, opts.Component, opts.Secret, opts.Logger, opts.StartTimeout),
		ctl:           ctl,
		dir:           opts.Dir,
	}
	if err := s.prepare(opts); err != nil {
		s.removeOwnDir()
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		s.removeOwnDir()
		return nil, err
	}
	for name, pw := range opts.Users {
		if err := s.AddUser(ctx, name, pw); err != nil {
			_ = s.Close(context.Background())
			return nil, err
		}
	}
	return s, nil
}

func (s *Ejabberd) prepare(opts EjabberdOptions) error {
	if s.dir == "" {
		d, err := os.MkdirTemp("", "imip-ejabberd-")
		if err != nil {
			return fmt.Errorf("xmppserver: ejabberd temp dir: %w", err)
		}
		s.dir, s.ownDir = d, true
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return fmt.Errorf("xmppserver: node name: %w", err)
	}
	s.node = "imip" + hex.EncodeToString(suffix[:]) + "@localhost"
	s.cfgDir = s.dir
	s.spoolDir = filepath.Join(s.dir, "spool")
	s.logDir = filepath.Join(s.dir, "logs")
	s.logPath = filepath.Join(s.logDir, "ejabberd.log")
	s.outPath = filepath.Join(s.dir, "ejabberdctl.out")
	s.pidPath = filepath.Join(s.dir, "ejabberd.pid")
	for _, d := range []string{s.spoolDir, s.logDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("xmppserver: ejabberd dir: %w", err)
		}
	}
	certs, err := WriteCertificate(filepath.Join(s.dir, "certs"), s.domain, s.component)
	if err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	s.c2sPort, s.compPort, s.httpPort, s.distPort = ports[0], ports[1], ports[2], ports[3]
	s.api = newEjabberdAPI(loopback(s.httpPort))
	level := opts.LogLevel
	if level == "" {
		level = "info"
	}
	cfg := ejabberdConfig{
		dir: s.dir, certFile: certs.Combined, pidPath: s.pidPath,
		c2sPort: s.c2sPort, componentPort: s.compPort, httpPort: s.httpPort, distPort: s.distPort,
		domain: s.domain, component: s.component, secret: s.secret,
		logLevel: level, privilege: opts.Privilege, balancing: opts.Balancing,
		extraModules: opts.ExtraModules, extraConfig: opts.ExtraConfig,
	}
	files := []struct {
		name, data string
	}{
		{"ejabberd.yml", cfg.renderYAML()},
		{"ejabberdctl.cfg", cfg.renderCtl()},
		{"inetrc", "{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1}, [\"localhost\"]}.\n"},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(s.dir, f.name), []byte(f.data), 0o640); err != nil {
			return fmt.Errorf("xmppserver: write ejabberd %s: %w", f.name, err)
		}
	}
	return chownToEjabberd(s.dir)
}

// chownToEjabberd gives dir and everything in it to the ejabberd user when
// this process runs as root (ejabberdctl switches to that user).
func chownToEjabberd(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("ejabberd")
	if err != nil {
		return fmt.Errorf("xmppserver: ejabberd user: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("xmppserver: ejabberd user has non-numeric ids %q:%q", u.Uid, u.Gid)
	}
	err = filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("xmppserver: chown ejabberd dir: %w", err)
	}
	return nil
}

func (s *Ejabberd) start(ctx context.Context) error {
	began := time.Now()
	logFrom := logSize(s.logPath)
	_ = os.Remove(s.pidPath)
	args := []string{
		"--config-dir", s.cfgDir, "--logs", s.logDir, "--spool", s.spoolDir,
		"--node", s.node, "foreground",
	}
	p, err := startProc(s.ctl, args, os.Environ(), s.dir, s.outPath)
	if err != nil {
		return &startError{kind: "ejabberd", err: err, tail: Tail(4096, s.outPath)}
	}
	err = waitReady(ctx, p, s.timeout, func(ctx context.Context) error {
		err := probeC2S(ctx, s.C2SAddr(), s.domain)
		if err == nil {
			err = probeComponent(ctx, s.ComponentAddr(), s.component)
		}
		if err == nil {
			_, err = s.api.call(ctx, "status", map[string]string{})
		}
		// A port taken since it was chosen: the listener fails alone.
		if line := logMentions(s.logPath, logFrom, "Failed to open socket"); line != "" {
			return &fatalError{errors.New(line)}
		}
		return err
	})
	if err != nil {
		_ = s.kill(context.Background(), p)
		return &startError{kind: "ejabberd", err: err, tail: Tail(4096, s.outPath, s.logPath)}
	}
	s.p = p
	s.logger.Info("xmppserver: ejabberd ready", "node", s.node, "c2s", s.C2SAddr(),
		"component", s.ComponentAddr(), "dir", s.dir, "took", time.Since(began))
	return nil
}

// Kind returns "ejabberd".
func (s *Ejabberd) Kind() string { return "ejabberd" }

// C2SAddr returns the client listener address (STARTTLS required).
func (s *Ejabberd) C2SAddr() string { return loopback(s.c2sPort) }

// ComponentAddr returns the XEP-0114 listener address.
func (s *Ejabberd) ComponentAddr() string { return loopback(s.compPort) }

// HTTPAddr returns the loopback-only mod_http_api listener address
// (base path /api/).
func (s *Ejabberd) HTTPAddr() string { return loopback(s.httpPort) }

// Domain returns the users' domain.
func (s *Ejabberd) Domain() string { return s.domain }

// ComponentName returns the component's domain.
func (s *Ejabberd) ComponentName() string { return s.component }

// Secret returns the component password.
func (s *Ejabberd) Secret() string { return s.secret }

// Dir returns the instance directory.
func (s *Ejabberd) Dir() string { return s.dir }

// LogPath returns ejabberd's main log file.
func (s *Ejabberd) LogPath() string { return s.logPath }

// Node returns the Erlang node name, unique per StartEjabberd.
func (s *Ejabberd) Node() string { return s.node }

// AddUser registers name on Domain through the HTTP API, or changes its
// password if it already exists. The server must be running
// (ErrNotRunning otherwise).
func (s *Ejabberd) AddUser(ctx context.Context, name, password string) error {
	if err := checkLocalpart(name); err != nil {
		return err
	}
	s.mu.Lock()
	running := s.p != nil
	s.mu.Unlock()
	if !running {
		return fmt.Errorf("xmppserver: ejabberd add user %q: %w", name, ErrNotRunning)
	}
	_, err := s.api.call(ctx, "register", map[string]string{
		"user": name, "host": s.domain, "password": password,
	})
	if err == nil {
		return nil
	}
	if !isConflict(err) {
		return fmt.Errorf("xmppserver: ejabberd add user %q: %w", name, err)
	}
	_, err = s.api.call(ctx, "change_password", map[string]string{
		"user": name, "host": s.domain, "newpass": password,
	})
	if err != nil {
		return fmt.Errorf("xmppserver: ejabberd change password of %q: %w", name, err)
	}
	return nil
}

// Stop asks the node to shut down (SIGTERM to its beam.smp, which runs
// init:stop, the same path as `ejabberdctl stop`), waits for the foreground
// ejabberdctl to exit, and then kills anything still running under this
// node's name. SIGKILL follows after DefaultStopTimeout or when ctx ends.
// Stopping a stopped server returns nil.
func (s *Ejabberd) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(ctx)
}

func (s *Ejabberd) stopLocked(ctx context.Context) error {
	if s.p == nil {
		return nil
	}
	began := time.Now()
	p := s.p
	s.p = nil
	if err := s.kill(ctx, p); err != nil {
		return fmt.Errorf("xmppserver: stop ejabberd: %w", err)
	}
	s.logger.Info("xmppserver: ejabberd stopped", "node", s.node, "took", time.Since(began))
	return nil
}

// Restart stops the node and starts it again with the same node name,
// configuration, ports and Mnesia data, blocking until it is ready.
func (s *Ejabberd) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(ctx); err != nil {
		return err
	}
	return s.start(ctx)
}

// Close stops the server and, if StartEjabberd created the directory,
// removes it.
func (s *Ejabberd) Close(ctx context.Context) error {
	err := s.Stop(ctx)
	if err == nil {
		s.removeOwnDir()
	}
	return err
}

func (s *Ejabberd) removeOwnDir() {
	if s.ownDir && s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
