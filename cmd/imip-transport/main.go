// Command imip-transport is the IMIP gateway: an XMPP external component
// (XEP-0114) that logs each registered Jabber user into the IMIP network and
// bridges their presence, messages and contact list.
//
// Usage:
//
//	imip-transport -config config.toml
//	imip-transport -config config.toml -check-config
//	imip-transport -version
//
// SIGINT or SIGTERM logs every user out of IMIP, tells online users that
// their contacts and the gateway went offline, and exits within 5 seconds.
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
	"runtime/debug"
	"syscall"

	"mellium.im/xmpp/jid"

	"imip-transport/internal/app"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
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
	if *check {
		fmt.Fprintln(stdout, "configuration ok:", *cfgPath)
		return 0
	}
	log := newLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
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
		RosterGroup:  cfg.Roster.Group,
		AllowRemove:  cfg.Roster.AllowRemove,
		Version:      versionString(),
		Logger:       log,

		MaxStanzaSize:   cfg.XMPP.MaxStanzaSize,
		Limits:          cfg.Limits.gateway(),
		DeliveryTimeout: cfg.Limits.DeliveryTimeout.Duration,
	})
}

// versionString returns the build's version: the -ldflags value, else the
// module version or VCS revision.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}
