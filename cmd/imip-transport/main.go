// Command imip-transport is the IMIP gateway: an XMPP external component
// (XEP-0114) that logs each registered Jabber user into the IMIP network and
// bridges their presence, messages and contact list.
//
// Usage:
//
//	imip-transport -config config.toml
//	imip-transport -config config.toml -check-config
//	imip-transport -version
//	imip-transport rotate-key -config config.toml
//	imip-transport users list -config config.toml
//	imip-transport users show -config config.toml JID
//	imip-transport users delete -config config.toml JID
//	imip-transport migrate -config config.toml
//
// SIGINT or SIGTERM logs every user out of IMIP, tells online users that
// their contacts and the gateway went offline, and exits within 5 seconds.
//
// The IMIP passwords in the database are sealed under the key in
// storage.key_file, created with mode 0600 on first run. rotate-key, run
// while the transport is stopped, re-seals them under a new key that
// replaces the key file. At start and with -check-config, the transport
// warns about the secret file, a configuration file holding the secret
// inline, and the key file, when group or others may read them.
//
// The admin commands work on the configured store: users list (JID,
// number, state, last login, contacts, queued messages), users show JID
// (the same for one user; never the password), users delete JID (the
// registration, its contacts and its queued messages), migrate (create
// the database or bring its schema up to date, and exit). A running
// transport holds a lock on the store (storage.path + ".lock", flock):
// users delete, migrate and rotate-key refuse to run beside it. Exit codes:
// 0 done, 1 failed (the message says why), 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"mellium.im/xmpp/jid"

	"imip-transport/gateway"
	"imip-transport/internal/app"
	"imip-transport/internal/buildinfo"
	"imip-transport/internal/storelock"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "rotate-key":
			return rotateKey(args[1:], stdout, stderr)
		case "users":
			return users(args[1:], stdout, stderr)
		case "migrate":
			return migrate(args[1:], stdout, stderr)
		case "migrate-store":
			return migrateStore(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("imip-transport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "config.toml", "configuration file")
	check := fs.Bool("check-config", false, "check the configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "imip-transport", versionString())
		return 0
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "imip-transport:", err)
		return 1
	}
	warnings := cfg.warnings(*cfgPath)
	if *check {
		printWarnings(stderr, warnings)
		fmt.Fprintln(stdout, "configuration ok:", *cfgPath)
		return 0
	}
	log := newLogger(cfg.Log, stderr)
	for _, w := range warnings {
		if w.mode == 0 {
			log.Warn(w.msg, "addr", w.path)
			continue
		}
		log.Warn(w.msg, "path", w.path, "mode", w.mode.String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

func printWarnings(stderr io.Writer, ws []warning) {
	for _, w := range ws {
		if w.mode == 0 {
			fmt.Fprintf(stderr, "imip-transport: warning: %s: %s\n", w.msg, w.path)
			continue
		}
		fmt.Fprintf(stderr, "imip-transport: warning: %s: %s (mode %v)\n", w.msg, w.path, w.mode)
	}
}

// rotateKey is `imip-transport rotate-key -config F`: it re-seals every
// IMIP password of the configured database under a new key, which replaces
// storage.key_file. The transport must be stopped.
func rotateKey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("imip-transport rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "config.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "imip-transport rotate-key: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := decodeConfig(*cfgPath, false)
	if err != nil {
		fmt.Fprintln(stderr, "imip-transport rotate-key:", err)
		return 1
	}
	printWarnings(stderr, cfg.warnings(*cfgPath))
	lock, err := storelock.Acquire(cfg.Storage.lockPath())
	if errors.Is(err, storelock.ErrLocked) {
		fmt.Fprintf(stderr, "imip-transport rotate-key: a transport is running on this store, stop it first: %v\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "imip-transport rotate-key:", err)
		return 1
	}
	defer func() { _ = lock.Release() }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := rotateStoreKey(ctx, cfg.Storage, newLogger(cfg.Log, stderr))
	if err != nil {
		fmt.Fprintln(stderr, "imip-transport rotate-key:", err)
		return 1
	}
	fmt.Fprintf(stdout, "imip-transport rotate-key: %d password(s) re-sealed under a new key in %s; the old key no longer opens %s. Back up the new key file.\n",
		n, cfg.Storage.KeyFile, cfg.Storage.where())
	return 0
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.Level)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the transport until ctx ends.
func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	domain, err := jid.Parse(cfg.XMPP.Component)
	if err != nil {
		return fmt.Errorf("component name: %w", err)
	}
	admins, err := cfg.adminJIDs()
	if err != nil {
		return err
	}
	return app.Run(ctx, app.Options{
		Domain:       domain,
		XMPPServer:   cfg.XMPP.Server,
		Secret:       cfg.XMPP.Secret,
		MinBackoff:   cfg.XMPP.MinBackoff.Duration,
		MaxBackoff:   cfg.XMPP.MaxBackoff.Duration,
		IMIPServer:   cfg.IMIP.Server,
		ClientName:   cfg.IMIP.ClientName,
		MaxBlockSize: cfg.IMIP.MaxBlockSize,
		LoginTimeout: cfg.IMIP.LoginTimeout.Duration,
		OpTimeout:    cfg.IMIP.OpTimeout.Duration,
		RetryMin:     cfg.IMIP.RetryMin.Duration,
		RetryMax:     cfg.IMIP.RetryMax.Duration,
		StorePath:    cfg.Storage.Path,
		KeyFile:      cfg.Storage.KeyFile,
		StoreLock:    cfg.Storage.lockPath(),
		OpenStore: func(ctx context.Context, log *slog.Logger) (gateway.Store, error) {
			return openStore(ctx, cfg.Storage, log)
		},
		RosterGroup: cfg.Roster.Group,
		AllowRemove: cfg.Roster.AllowRemove,
		Admins:      admins,
		Version:     versionString(),
		Logger:      log,

		MaxStanzaSize:    cfg.XMPP.MaxStanzaSize,
		MaxRegistrations: cfg.XMPP.MaxRegistrations,
		Limits:           cfg.Limits.gateway(),
		DeliveryTimeout:  cfg.Limits.DeliveryTimeout.Duration,
		HoldWrites:       cfg.Storage.holdWrites(),
		MonitorAddr:      cfg.Monitoring.Listen,
		Pprof:            cfg.Monitoring.Pprof,
		Cluster:          cfg.Cluster.options(cfg.Storage),
	})
}

// versionString returns the build's version: the -ldflags value, else the
// module version or VCS revision.
func versionString() string { return buildinfo.Version(version) }
