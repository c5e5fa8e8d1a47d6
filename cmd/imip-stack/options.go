package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Fixed names of the demo stack.
const (
	domain    = "localhost"      // the users' XMPP domain
	component = "imip.localhost" // the gateway's component domain
)

// demoUser is one Jabber account created on the private Prosody.
type demoUser struct{ Name, Password string }

// demoUsers are the Jabber accounts of the demo, created (their passwords
// reset) at every start.
var demoUsers = []demoUser{
	{"alice", "alice-demo"},
	{"bob", "bob-demo"},
}

// options are the command-line settings.
type options struct {
	Dir          string // state directory
	C2SPort      int
	CompPort     int
	IMIPPort     int
	Accounts     string // demo IMIP accounts (TOML)
	Prosody      string // prosody binary
	LogLevel     slog.Level
	ProsodyDebug bool
}

// parseOptions decodes the command line. It returns flag.ErrHelp for -h.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("imip-stack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: imip-stack [flags]")
		fmt.Fprintln(stderr, "Runs Prosody, imipd and the transport on 127.0.0.1 until Ctrl-C. Flags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Dir, "dir", ".stack", "state directory (Prosody data, SQLite files, component secret)")
	fs.IntVar(&o.C2SPort, "c2s-port", 5222, "Prosody client (c2s) port on 127.0.0.1")
	fs.IntVar(&o.CompPort, "component-port", 5347, "Prosody component (XEP-0114) port on 127.0.0.1")
	fs.IntVar(&o.IMIPPort, "imip-port", 11319, "imipd port on 127.0.0.1")
	fs.StringVar(&o.Accounts, "accounts", "cmd/imipd/accounts.example.toml", "demo IMIP accounts file (TOML)")
	fs.StringVar(&o.Prosody, "prosody", "prosody", "prosody executable")
	level := fs.String("log-level", "info", "log level of imipd and the transport: debug, info, warn or error")
	fs.BoolVar(&o.ProsodyDebug, "prosody-debug", false, "write Prosody's debug log (to DIR/prosody/prosody.log)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var errs []error
	if err := o.LogLevel.UnmarshalText([]byte(*level)); err != nil {
		errs = append(errs, fmt.Errorf("-log-level %q: use debug, info, warn or error", *level))
	}
	ports := []struct {
		flag string
		port int
	}{{"-c2s-port", o.C2SPort}, {"-component-port", o.CompPort}, {"-imip-port", o.IMIPPort}}
	seen := map[int]string{}
	for _, p := range ports {
		if p.port < 1 || p.port > 65535 {
			errs = append(errs, fmt.Errorf("%s %d: not a TCP port", p.flag, p.port))
			continue
		}
		if other, dup := seen[p.port]; dup {
			errs = append(errs, fmt.Errorf("%s and %s are both %d", other, p.flag, p.port))
		}
		seen[p.port] = p.flag
	}
	if o.Dir == "" {
		errs = append(errs, errors.New("-dir must not be empty"))
	}
	return o, errors.Join(errs...)
}
