package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
	"imip-transport/internal/buildinfo"
)

// dbName is the database file inside the data directory.
const dbName = "imipd.db"

// version is set at build time with -ldflags "-X main.version=..." (make
// build, make dist); -version prints it.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, nil))
}

// run is the whole command. ready, when not nil, receives the listening
// address once the server accepts connections.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, ready chan<- net.Addr) int {
	if len(args) > 0 && (args[0] == "add-account" || args[0] == "rotate-key") {
		cmd := addAccount
		if args[0] == "rotate-key" {
			cmd = rotateKey
		}
		if err := cmd(ctx, args[1:], stdin, stdout, stderr); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			fmt.Fprintln(stderr, err)
			return 2
		}
		return 0
	}
	if err := serve(ctx, args, stdout, stderr, ready); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- net.Addr) error {
	fs := flag.NewFlagSet("imipd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: imipd -data DIR -key-file F [flags]\n"+
			"       imipd add-account -data DIR -key-file F -number N -nick NICK (-password-file F | -password-stdin)\n"+
			"       imipd rotate-key -data DIR -key-file F\n"+
			"       imipd -version\n\nflags:\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", fmt.Sprintf("127.0.0.1:%d", wire.DefaultPort), "address to listen on")
	accounts := fs.String("accounts", "", "accounts.toml to upsert into the database at start (optional)")
	data := fs.String("data", "", "data directory (created 0700); holds "+dbName)
	keyFile := fs.String("key-file", "", keyFileUsage)
	keepAlive := fs.Duration("keepalive", imipserver.DefaultKeepAlive, "Keep-Alive announced to clients; silent connections are closed after twice this")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	maxBlock := fs.Int("max-block-size", wire.DefaultMaxSize, "largest block SIZE accepted and sent, in bytes")
	service := fs.String("service", imipserver.DefaultService, "Service header of the HELO reply")
	display := fs.String("display-name", imipserver.DefaultDisplayName, "ServiceDisplayName header of the HELO reply")
	regURL := fs.String("registration-url", "", "Registration header of the HELO reply (default http://SERVICE/)")
	window := fs.Int("delivery-window", imipserver.DefaultDeliveryWindow, "stored messages pushed to one connection and not yet confirmed (mesg-ack: by the client; else: written); the rest wait in the database")
	hold := fs.Duration("hold-writes", imipserver.DefaultHoldWrites, "a message to a recipient online with mesg-ack is pushed before it is stored; confirmed within this time it is never stored, else stored then (the sender's ACK 600 follows either); 0: stored before it is pushed")
	showVersion := fs.Bool("version", false, "print the version and exit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof; written at exit)")
	d := imipserver.DefaultAbuseLimits
	var abuse imipserver.AbuseLimits
	fs.IntVar(&abuse.MaxHeldPerSender, "max-held-per-sender", d.MaxHeldPerSender, "messages one sender may have stored for one recipient; beyond: ACK 814")
	fs.IntVar(&abuse.MaxHeldPerRecipient, "max-held-per-recipient", d.MaxHeldPerRecipient, "messages stored for one recipient from everyone; beyond: ACK 814")
	fs.IntVar(&abuse.MaxRequestsPerRecipient, "max-requests-per-recipient", d.MaxRequestsPerRecipient, "pending contact requests of one user; beyond: ACK 814")
	fs.Float64Var(&abuse.SendRate, "send-rate", d.SendRate, "MESG and LIST ADD per second per connection; beyond (and the burst): ACK 815")
	fs.IntVar(&abuse.SendBurst, "send-burst", d.SendBurst, "MESG and LIST ADD at once per connection")
	fs.IntVar(&abuse.MaxConns, "max-conns", d.MaxConns, "open connections in all; beyond: closed at once")
	fs.IntVar(&abuse.MaxPending, "max-pending", d.MaxPending, "connections not logged in yet, in all")
	fs.IntVar(&abuse.MaxPendingPerAddr, "max-pending-per-addr", d.MaxPendingPerAddr, "connections not logged in yet from one IP address")
	fs.DurationVar(&abuse.LoginTimeout, "login-timeout", d.LoginTimeout, "a connection must log in within this time of its accept")
	fs.IntVar(&abuse.AddrFailBurst, "addr-fail-burst", d.AddrFailBurst, "refused logins from one IP address before it is throttled")
	fs.DurationVar(&abuse.AddrFailEvery, "addr-fail-every", d.AddrFailEvery, "then one refused login per this time")
	fs.IntVar(&abuse.NumberFailBurst, "number-fail-burst", d.NumberFailBurst, "refused logins of one number (not counting its last login address) before it is throttled")
	fs.DurationVar(&abuse.NumberFailEvery, "number-fail-every", d.NumberFailEvery, "then one refused login per this time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("imipd: unexpected argument %q", fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, "imipd", buildinfo.Version(version))
		return nil
	}
	if *data == "" {
		return errors.New("imipd: -data DIR is required")
	}
	if *keyFile == "" {
		return errors.New("imipd: -key-file F is required: the " + keyFileUsage)
	}
	if *maxBlock < 256 {
		return fmt.Errorf("imipd: -max-block-size %d is below 256", *maxBlock)
	}
	if *window < 1 {
		return fmt.Errorf("imipd: -delivery-window %d is below 1", *window)
	}
	if *keepAlive < time.Second {
		return fmt.Errorf("imipd: -keepalive %v is below 1s", *keepAlive)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("imipd: -log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	log.Info("imipd: starting", "version", buildinfo.Version(version), "listen", *listen)

	st, err := openStore(ctx, *data, *keyFile, log)
	if err != nil {
		return err
	}
	defer st.Close()
	if *accounts != "" {
		if err := loadAccounts(ctx, st, *accounts, log); err != nil {
			return err
		}
	}

	srv, err := imipserver.New(imipserver.Config{
		Store:           st,
		KeepAlive:       *keepAlive,
		Limits:          wire.Limits{MaxSize: *maxBlock},
		Service:         *service,
		DisplayName:     *display,
		RegistrationURL: *regURL,
		Logger:          log,
		DeliveryWindow:  *window,
		HoldWrites:      holdWrites(*hold),
		Abuse:           abuse,
	})
	if err != nil {
		return fmt.Errorf("imipd: %w", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("imipd: %w", err)
	}
	if *cpuProfile != "" {
		f, err := os.OpenFile(*cpuProfile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("imipd: cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("imipd: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if ready != nil {
		ready <- ln.Addr()
	}
	if err := srv.Serve(ctx, ln); err != nil {
		return fmt.Errorf("imipd: %w", err)
	}
	return nil
}

// keyFileUsage describes -key-file.
const keyFileUsage = "key file that seals the passwords in the database (created 0600 on first run; keep it, and its backups, apart from the data directory)"

// openStore creates the data directory (0700) and opens its database with
// the key in keyFile.
func openStore(ctx context.Context, dir, keyFile string, log *slog.Logger) (*imipserver.SQLiteStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("imipd: data directory: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("imipd: data directory is readable by others; it holds the messages and contact lists", "dir", dir, "mode", fi.Mode().Perm().String())
	}
	warnKeyFile(keyFile, log)
	st, err := imipserver.OpenSQLite(ctx, filepath.Join(dir, dbName), imipserver.SQLiteOptions{KeyFile: keyFile, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("imipd: %w", err)
	}
	return st, nil
}

// warnKeyFile warns when the key file exists and group or others may read
// it.
func warnKeyFile(path string, log *slog.Logger) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o044 != 0 {
		log.Warn("imipd: key file is readable by others; it unseals the passwords", "path", path, "mode", fi.Mode().Perm().String())
	}
}

func loadAccounts(ctx context.Context, st imipserver.Store, path string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("imipd: accounts: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("imipd: accounts file is readable by others; it holds passwords", "path", path, "mode", fi.Mode().Perm().String())
	}
	buf, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("imipd: accounts: %w", err)
	}
	n, err := imipserver.LoadAccounts(ctx, st, buf)
	if err != nil {
		return fmt.Errorf("imipd: %s: %w", path, err)
	}
	log.Info("imipd: accounts loaded", "path", path, "count", n)
	return nil
}

// readPassword returns the first line of r, without its line end.
func readPassword(r io.Reader) (string, error) {
	buf, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(buf), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

// holdWrites maps the -hold-writes flag to Config.HoldWrites (0: none).
func holdWrites(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
