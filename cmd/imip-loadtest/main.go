// Command imip-loadtest measures a transport under load. It starts the
// imip-transport and imipd binaries on 127.0.0.1 and puts the Jabber users
// where -xmpp says:
//
//   - component (the default): the tool itself plays the XMPP server over
//     XEP-0114 (no Prosody, whose own cost per client session would hide the
//     transport's), so the transport's ceiling is measured alone;
//   - prosody: a private Prosody the tool starts (Debian's prosody and
//     prosody-modules), with N accounts; each user is a client session
//     (STARTTLS, SASL) and the transport is Prosody's component;
//   - external: the admin's own XMPP server (-c2s, -xmpp-domain, -component,
//     -gateway, -component-secret; the N accounts -user-format and
//     -user-password must exist there): the tool's transport connects to it
//     as its component, the users as client sessions.
//
// It registers N Jabber users with the gateway (XEP-0077) and logs them in,
// puts N IMIP peers online, measures the idle cost, then
// sends numbered messages both ways (each user with its own peer) at a set
// rate or flat out, and reports logins/s, delivered messages/s each way,
// end-to-end latency (p50, p99, max), lost and duplicated messages, and
// the transport's and imipd's RSS per user and CPU per message, read from
// /proc. Every phase is bounded; the tool always stops by itself, and
// exits 1 when a message was lost.
//
//	imip-loadtest -users 1000 -messages 20000 -rate 2000
//	imip-loadtest -users 20000 -messages 0 -json
//	imip-loadtest -xmpp prosody -users 100 -messages 20000 -rate 1000
package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sync/errgroup"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
)

// Config is one run.
type Config struct {
	Users     int           // Jabber users, each with one IMIP peer
	Messages  int           // messages each way (0: no chat phase)
	Rate      int           // messages per second each way (0: flat out)
	Window    int           // flat out: messages in flight each way at most
	Idle      time.Duration // idle window for the CPU measurement
	Timeout   time.Duration // bound on the whole run
	Transport string        // imip-transport binary ("" builds it)
	IMIPd     string        // imipd binary ("" builds it)
	Dir       string        // working directory ("" a temporary one)
	Env       []string      // extra environment of the transport (e.g. GOGC=50)
	Quiet     bool          // no progress bars
	// CPUProfile, when set, is where the transport's CPU profile of the
	// chat phase is written (from its pprof endpoint; ProfileFor long,
	// starting with the chat).
	CPUProfile string
	ProfileFor time.Duration
	// IMIPdProfile, when set, is where imipd writes its CPU profile of the
	// whole run (at its exit).
	IMIPdProfile string
	// XMPP is where the Jabber users are: "component" (the tool plays the
	// XMPP server over XEP-0114; the default), "prosody" (a private
	// Prosody the tool starts, users as client sessions) or "external"
	// (the server in Server, users as client sessions).
	XMPP   string
	Server XMPPServer
	// Restart, in component mode, stops the transport (SIGTERM) once the
	// users are logged in and idle, starts it again, and measures how long
	// until every user is logged in again (paced by LoginRate).
	Restart bool
	// LoginRate is the transport's limits.logins_per_second (and
	// login_burst); 0: 1000.
	LoginRate int
	// StoreDSN, when set, is an empty PostgreSQL database the transport
	// stores in instead of SQLite.
	StoreDSN string
	// Cluster runs the transport in cluster mode (one instance holding
	// the one slot), on StoreDSN: what the ownership of users and the
	// per-user barriers of several instances cost on the message path.
	Cluster bool
}

// Report is what a run measured.
type Report struct {
	Users            int     `json:"users"`
	RegisterSeconds  float64 `json:"register_seconds"`
	LoginSeconds     float64 `json:"login_seconds"`
	LoginsPerSecond  float64 `json:"logins_per_second"`
	TransportRSSBase int64   `json:"transport_rss_base_kib"`
	TransportRSSIdle int64   `json:"transport_rss_idle_kib"`
	TransportKiBUser float64 `json:"transport_kib_per_user"`
	IMIPdRSSBase     int64   `json:"imipd_rss_base_kib"`
	IMIPdRSSIdle     int64   `json:"imipd_rss_idle_kib"`
	IMIPdKiBConn     float64 `json:"imipd_kib_per_connection"`
	// TransportMem is the transport's runtime.MemStats when idle (from its
	// pprof endpoint), in KiB: where the RSS goes.
	TransportMem      map[string]int64 `json:"transport_memstats_kib,omitempty"`
	TransportIdleCPU  float64          `json:"transport_idle_cpu_percent"`
	IMIPdIdleCPU      float64          `json:"imipd_idle_cpu_percent"`
	Messages          int              `json:"messages_each_way"`
	Rate              int              `json:"rate_each_way"`
	ChatSeconds       float64          `json:"chat_seconds"`
	ToIMIP            Way              `json:"xmpp_to_imip"`
	ToXMPP            Way              `json:"imip_to_xmpp"`
	TransportCPUPerMs float64          `json:"transport_cpu_us_per_message"`
	// TransportSysShare is the part of the transport's CPU over the chat
	// spent in the kernel (stime / (utime+stime)), in percent.
	TransportSysShare float64 `json:"transport_cpu_system_percent"`
	// TransportReads and TransportWrites are the transport's read-like and
	// write-like system calls over the chat (/proc/PID/io syscr, syscw)
	// per message, both ways counted; TransportGoroutines the goroutines
	// it started per message (its /metrics). They say where the kernel's
	// and the scheduler's share comes from, and vary far less between
	// runs than CPU time.
	TransportReads      float64 `json:"transport_reads_per_message"`
	TransportWrites     float64 `json:"transport_writes_per_message"`
	TransportGoroutines float64 `json:"transport_goroutines_per_message"`
	// RestartSeconds: with Restart, from the transport's start again to
	// every user logged in again; StopSeconds, the SIGTERM's shutdown.
	RestartSeconds float64 `json:"restart_seconds,omitempty"`
	StopSeconds    float64 `json:"stop_seconds,omitempty"`
	IMIPdCPUPerMs  float64 `json:"imipd_cpu_us_per_message"`
	// XMPPServerCPUPerMs is the private Prosody's CPU per message (-xmpp
	// prosody only).
	XMPPServerCPUPerMs float64 `json:"xmpp_server_cpu_us_per_message,omitempty"`
	Lost               int     `json:"lost"`
}

// Way is one direction's result.
type Way struct {
	Sent       int     `json:"sent"`
	Delivered  int     `json:"delivered"`
	Duplicated int     `json:"duplicated"`
	Refused    int     `json:"refused"`
	PerSecond  float64 `json:"per_second"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Maxms      float64 `json:"max_ms"`
	// Relay is the latency the transport alone added to the messages
	// that went straight through, from its /metrics histogram.
	Relay *RelaySummary `json:"transport_relay,omitempty"`
}

// RelaySummary summarises the transport's relay_seconds histogram over
// the chat: the mean, and the bucket bounds that the 50th and 99th
// percentiles are at or below (-1: above the last bound).
type RelaySummary struct {
	Count  uint64  `json:"count"`
	Meanms float64 `json:"mean_ms"`
	P50ms  float64 `json:"p50_at_most_ms"`
	P99ms  float64 `json:"p99_at_most_ms"`
}

func main() {
	var cfg Config
	asJSON := flag.Bool("json", false, "print the report as JSON")
	sweep := flag.String("sweep", "", "run these numbers of users in turn (e.g. 100,300,1000) and write charts")
	charts := flag.String("charts", filepath.Join("docs", "img"), "with -sweep: the directory of the SVG charts")
	flag.IntVar(&cfg.Users, "users", 100, "Jabber users, each with one IMIP peer")
	flag.IntVar(&cfg.Messages, "messages", 1000, "messages each way (0: measure logins and idle cost only)")
	flag.IntVar(&cfg.Rate, "rate", 0, "messages per second each way (0: flat out)")
	flag.IntVar(&cfg.Window, "window", 200, "flat out: messages in flight each way at most")
	flag.DurationVar(&cfg.Idle, "idle", 10*time.Second, "idle window for the CPU measurement")
	flag.DurationVar(&cfg.Timeout, "timeout", 15*time.Minute, "bound on the whole run")
	flag.StringVar(&cfg.Transport, "transport", "", "imip-transport binary (default: built from this module)")
	flag.StringVar(&cfg.IMIPd, "imipd", "", "imipd binary (default: built from this module)")
	flag.StringVar(&cfg.Dir, "dir", "", "working directory, kept (default: a temporary one, removed)")
	flag.BoolVar(&cfg.Quiet, "quiet", false, "no progress bars")
	flag.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write the transport's CPU profile of the chat phase to this file (go tool pprof reads it)")
	flag.StringVar(&cfg.IMIPdProfile, "imipd-cpuprofile", "", "have imipd write its CPU profile of the whole run to this file")
	flag.DurationVar(&cfg.ProfileFor, "profile-for", 10*time.Second, "with -cpuprofile: how long to profile, from the chat's start")
	flag.StringVar(&cfg.XMPP, "xmpp", "component", "where the Jabber users are: component (the tool plays the XMPP server), prosody (a private Prosody the tool starts) or external (the -c2s server)")
	flag.StringVar(&cfg.Server.C2S, "c2s", "", "-xmpp external: the XMPP server's client listener, host:port")
	flag.StringVar(&cfg.Server.Domain, "xmpp-domain", "", "-xmpp external: the users' domain")
	flag.StringVar(&cfg.Server.Component, "component", "", "-xmpp external: the server's component listener (XEP-0114) the transport connects to, host:port")
	flag.StringVar(&cfg.Server.Gateway, "gateway", "", "-xmpp external: the component's name (the gateway's JID)")
	flag.StringVar(&cfg.Server.Secret, "component-secret", "", "-xmpp external: the component secret")
	flag.StringVar(&cfg.Server.UserFormat, "user-format", "load%d", "-xmpp external: the users' localparts, %d the index from 0 (the accounts must exist)")
	flag.StringVar(&cfg.Server.Password, "user-password", "loadpw%d", "-xmpp external: the users' password, %d the index")
	flag.BoolVar(&cfg.Server.InsecureTLS, "xmpp-insecure-tls", false, "-xmpp external: do not verify the server's certificate")
	flag.BoolVar(&cfg.Restart, "restart", false, "component mode: restart the transport once the users are idle and measure how long until all are logged in again")
	flag.StringVar(&cfg.StoreDSN, "store-dsn", "", "store in this empty PostgreSQL database (a libpq URL or key=value string) instead of SQLite")
	flag.BoolVar(&cfg.Cluster, "cluster", false, "component mode, with -store-dsn: run the transport as a one-instance cluster (ownership in PostgreSQL, barriers per user)")
	flag.IntVar(&cfg.LoginRate, "login-rate", 1000, "the transport's limits.logins_per_second and login_burst (its own default is 50)")
	flag.Func("transport-env", "NAME=VALUE added to the transport's environment (repeatable), e.g. GOGC=50", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want NAME=VALUE")
		}
		cfg.Env = append(cfg.Env, v)
		return nil
	})
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if *sweep != "" {
		os.Exit(runSweep(ctx, cfg, *sweep, *charts, *asJSON))
	}
	rep, err := Run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imip-loadtest:", err)
		os.Exit(2)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		printReport(os.Stdout, rep)
	}
	if rep.Lost > 0 {
		os.Exit(1)
	}
}

// runSweep runs a sweep, prints every report and writes the charts; it
// returns the exit status.
func runSweep(ctx context.Context, cfg Config, sizes, dir string, asJSON bool) int {
	ns, err := parseSizes(sizes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imip-loadtest:", err)
		return 2
	}
	reps, err := Sweep(ctx, cfg, ns, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imip-loadtest:", err)
		return 2
	}
	lost := 0
	for _, r := range reps {
		lost += r.Lost
		if !asJSON {
			printReport(os.Stdout, r)
			fmt.Println()
		}
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(reps)
	}
	if err := WriteCharts(reps, dir); err != nil {
		fmt.Fprintln(os.Stderr, "imip-loadtest: charts:", err)
		return 2
	}
	fmt.Fprintln(os.Stderr, "imip-loadtest: charts written to", dir)
	if lost > 0 {
		return 1
	}
	return 0
}

func printReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "users                    %d\n", r.Users)
	fmt.Fprintf(w, "register                 %.1f s\n", r.RegisterSeconds)
	fmt.Fprintf(w, "login                    %.1f s (%.0f logins/s)\n", r.LoginSeconds, r.LoginsPerSecond)
	fmt.Fprintf(w, "transport RSS            %d KiB idle, %d KiB before users: %.2f KiB per user\n", r.TransportRSSIdle, r.TransportRSSBase, r.TransportKiBUser)
	fmt.Fprintf(w, "imipd RSS                %d KiB idle, %d KiB before users: %.2f KiB per connection\n", r.IMIPdRSSIdle, r.IMIPdRSSBase, r.IMIPdKiBConn)
	if m := r.TransportMem; m != nil {
		fmt.Fprintf(w, "transport memory         heap in use %d KiB (live objects %d KiB), heap idle %d KiB of which returned %d KiB, stacks %d KiB, other runtime %d KiB\n",
			m["HeapInuse"], m["HeapAlloc"], m["HeapIdle"], m["HeapReleased"], m["StackInuse"], m["Sys"]-m["HeapSys"]-m["StackSys"])
	}
	fmt.Fprintf(w, "idle CPU                 transport %.2f %%, imipd %.2f %% of a core\n", r.TransportIdleCPU, r.IMIPdIdleCPU)
	if r.RestartSeconds > 0 {
		fmt.Fprintf(w, "restart                  stopped in %.1f s; every user logged in again %.1f s after the start (%.0f logins/s)\n",
			r.StopSeconds, r.RestartSeconds, float64(r.Users)/r.RestartSeconds)
	}
	if r.Messages == 0 {
		return
	}
	rate := "flat out"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%d/s", r.Rate)
	}
	fmt.Fprintf(w, "chat                     %d each way, %s, %.1f s\n", r.Messages, rate, r.ChatSeconds)
	for _, x := range []struct {
		name string
		w    Way
	}{{"XMPP -> IMIP", r.ToIMIP}, {"IMIP -> XMPP", r.ToXMPP}} {
		fmt.Fprintf(w, "%-24s delivered %d/%d (%.0f/s), duplicated %d, refused %d, latency p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
			x.name, x.w.Delivered, x.w.Sent, x.w.PerSecond, x.w.Duplicated, x.w.Refused, x.w.P50ms, x.w.P99ms, x.w.Maxms)
	}
	for _, x := range []struct {
		name string
		r    *RelaySummary
	}{{"to IMIP", r.ToIMIP.Relay}, {"to XMPP", r.ToXMPP.Relay}} {
		if x.r != nil {
			bound := func(ms float64) string {
				if ms < 0 {
					return "above the last bucket"
				}
				return fmt.Sprintf("<= %g ms", ms)
			}
			fmt.Fprintf(w, "transport alone, %-7s %d messages straight through: mean %.3f ms, p50 %s, p99 %s (read to queued or written)\n",
				x.name, x.r.Count, x.r.Meanms, bound(x.r.P50ms), bound(x.r.P99ms))
		}
	}
	if r.TransportReads > 0 || r.TransportWrites > 0 {
		fmt.Fprintf(w, "per message, transport   %.2f reads, %.2f writes (system calls), %.2f goroutines started (both ways counted)\n",
			r.TransportReads, r.TransportWrites, r.TransportGoroutines)
	}
	fmt.Fprintf(w, "CPU per message          transport %.1f us (%.0f %% in the kernel), imipd %.1f us (both ways counted)\n", r.TransportCPUPerMs, r.TransportSysShare, r.IMIPdCPUPerMs)
	if r.XMPPServerCPUPerMs > 0 {
		fmt.Fprintf(w, "XMPP server              %.1f us per message (Prosody, both ways counted)\n", r.XMPPServerCPUPerMs)
	}
	fmt.Fprintf(w, "lost                     %d\n", r.Lost)
}

const (
	domain    = "imip.localhost"
	secret    = "loadtest-secret"
	userBase  = 5000000
	peerBase  = 6000000
	maxRegFly = 256
)

func userNum(i int) wire.Number { return wire.Number(strconv.Itoa(userBase + i)) }
func peerNum(i int) wire.Number { return wire.Number(strconv.Itoa(peerBase + i)) }
func userJID(i int) string      { return fmt.Sprintf("u%d@localhost", i) }

// Run runs one measurement. Progress goes to progress.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Report, error) {
	if cfg.Users <= 0 {
		return nil, errors.New("-users must be positive")
	}
	if cfg.Window <= 0 {
		cfg.Window = 200
	}
	switch x := cfg.Server; cfg.XMPP {
	case "", "component", "prosody":
	case "external":
		if x.C2S == "" || x.Domain == "" || x.Component == "" || x.Gateway == "" || x.Secret == "" {
			return nil, errNoServer
		}
	default:
		return nil, fmt.Errorf("-xmpp %q: want component, prosody or external", cfg.XMPP)
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "imip-loadtest-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	raiseFileLimit(4*cfg.Users + 4096)
	var err error
	if cfg.Transport == "" {
		if cfg.Transport, err = build(ctx, dir, "imip-transport/cmd/imip-transport"); err != nil {
			return nil, err
		}
	}
	if cfg.IMIPd == "" {
		if cfg.IMIPd, err = build(ctx, dir, "imip-transport/cmd/imipd"); err != nil {
			return nil, err
		}
	}
	rep := &Report{Users: cfg.Users, Messages: cfg.Messages, Rate: cfg.Rate}

	// imipd with every account, its limits opened for one client address.
	var acc strings.Builder
	for i := range cfg.Users {
		fmt.Fprintf(&acc, "[[account]]\nnumber = %q\npassword = \"pw-%d\"\nnick = \"u%d\"\ncontacts = [%q]\n\n", userNum(i), i, i, peerNum(i))
		fmt.Fprintf(&acc, "[[account]]\nnumber = %q\npassword = \"ppw-%d\"\nnick = \"p%d\"\ncontacts = [%q]\n\n", peerNum(i), i, i, userNum(i))
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.toml"), []byte(acc.String()), 0o600); err != nil {
		return nil, err
	}
	imipAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	big := strconv.Itoa(10 * (cfg.Users + cfg.Messages + 1000))
	imipdArgs := []string{}
	if cfg.IMIPdProfile != "" {
		imipdArgs = append(imipdArgs, "-cpuprofile", cfg.IMIPdProfile)
	}
	imipd, err := start(ctx, dir, "imipd", cfg.IMIPd, append(imipdArgs, "-listen", imipAddr, "-data", filepath.Join(dir, "imipd-data"),
		"-key-file", filepath.Join(dir, "imipd.key"), "-accounts", filepath.Join(dir, "accounts.toml"), "-log-level", "warn",
		"-max-conns", big, "-max-pending", big, "-max-pending-per-addr", big, "-send-rate", big, "-send-burst", big,
		"-max-held-per-sender", big, "-max-held-per-recipient", big)...)
	if err != nil {
		return nil, err
	}
	defer stop(imipd)
	if err := waitListening(ctx, imipAddr, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("imipd: %w", err)
	}

	// The fake XMPP server, then the transport.
	// The Jabber side and where the transport connects.
	var (
		js                            jabberSide
		srv                           *server // component mode only
		xmppPID                       int     // -xmpp prosody: Prosody\'s
		compAddr, gateway, compSecret string
	)
	switch cfg.XMPP {
	case "", "component":
		if srv, err = newServer(cfg.Users); err != nil {
			return nil, err
		}
		defer srv.close()
		js, compAddr, gateway, compSecret = srv, srv.addr(), domain, secret
	case "prosody", "external":
		x := cfg.Server
		if cfg.XMPP == "prosody" {
			p, err := startProsody(ctx, cfg.Users)
			if err != nil {
				return nil, err
			}
			defer p.Close(context.WithoutCancel(ctx))
			xmppPID = p.PID()
			x = XMPPServer{C2S: p.C2SAddr(), Domain: p.Domain(), Component: p.ComponentAddr(), Gateway: p.ComponentName(),
				Secret: p.Secret(), UserFormat: prosodyUser, Password: prosodyPassword, InsecureTLS: true}
		}
		if x.C2S == "" || x.Domain == "" || x.Component == "" || x.Gateway == "" || x.Secret == "" {
			return nil, errNoServer
		}
		cs, err := newClients(x, cfg.Users)
		if err != nil {
			return nil, err
		}
		defer cs.close()
		js, compAddr, gateway, compSecret = cs, x.Component, x.Gateway, x.Secret
		bar := newBar(cfg, cfg.Users, "connect")
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(64)
		for i := range cfg.Users {
			g.Go(func() error {
				err := cs.dial(gctx, i)
				_ = bar.Add(1)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		_ = bar.Finish()
	default:
		return nil, fmt.Errorf("-xmpp %q: want component, prosody or external", cfg.XMPP)
	}
	monAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if srv != nil {
		srv.monAddr = monAddr
	}
	loginRate := cfg.LoginRate
	if loginRate <= 0 {
		loginRate = 1000
	}
	trCfg := fmt.Sprintf(`[xmpp]
component = %q
server = %q
secret = %q
min_backoff = "100ms"
max_backoff = "1s"
max_registrations = %d

[imip]
server = %q
login_timeout = "30s"
op_timeout = "30s"
retry_min = "1s"
retry_max = "10s"

%s
[limits]
messages_per_second = 100000
message_burst = 100000
logins_per_second = %d
login_burst = %d
roster_changes_per_second = 100000
roster_change_burst = 100000

[monitoring]
listen = %q
pprof = true

[log]
level = "warn"
`, gateway, compAddr, compSecret, maxRegFly, imipAddr, storeConfig(cfg, dir), loginRate, loginRate, monAddr)
	if err := os.WriteFile(filepath.Join(dir, "transport.toml"), []byte(trCfg), 0o600); err != nil {
		return nil, err
	}
	if cfg.Restart && srv == nil {
		return nil, errors.New("-restart needs -xmpp component")
	}
	if cfg.Cluster && (srv == nil || cfg.StoreDSN == "") {
		return nil, errors.New("-cluster needs -xmpp component and -store-dsn")
	}
	startTransport := func() (*proc, error) {
		return startEnv(ctx, dir, "transport", cfg.Env, cfg.Transport, "-config", filepath.Join(dir, "transport.toml"))
	}
	tr, err := startTransport()
	if err != nil {
		return nil, err
	}
	defer func() { stop(tr) }() // the one running at the end
	if srv != nil {
		if err := srv.waitConnected(ctx, 1, time.Minute); err != nil {
			return nil, fmt.Errorf("transport: %w", err)
		}
	}
	if err := settle(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	rep.TransportRSSBase, rep.IMIPdRSSBase = rss(tr.pid()), rss(imipd.pid())

	// Registration: at most maxRegFly in flight.
	began := time.Now()
	bar := newBar(cfg, cfg.Users, "register")
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxRegFly)
	for i := range cfg.Users {
		g.Go(func() error {
			for {
				typ, cond, err := js.register(gctx, i)
				if err != nil {
					return err
				}
				if typ == "result" {
					_ = bar.Add(1)
					return nil
				}
				switch {
				case cond == "resource-constraint", cond == "policy-violation":
				case (cond == "service-unavailable" || cond == "remote-server-not-found") && time.Since(began) < time.Minute:
					// A real server answers so until the transport's
					// component connected.
				default:
					return fmt.Errorf("registering user %d: %s", i, cond)
				}
				if err := settle(gctx, 50*time.Millisecond); err != nil { // the gateway said busy: try again shortly
					return err
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	_ = bar.Finish()
	rep.RegisterSeconds = time.Since(began).Seconds()

	// Login: each user's presence; logged in when the gateway answers with
	// its own presence to the user's resource.
	began = time.Now()
	bar = newBar(cfg, cfg.Users, "login")
	for i := range cfg.Users {
		if err := js.login(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := js.waitLogins(ctx, cfg.Users, 10*time.Minute, bar); err != nil {
		return nil, err
	}
	_ = bar.Finish()
	rep.LoginSeconds = time.Since(began).Seconds()
	rep.LoginsPerSecond = float64(cfg.Users) / rep.LoginSeconds

	// The IMIP peers, when there is a chat (each is one more connection to
	// imipd; without them imipd's file limit fits twice the users).
	peers := newPeers(cfg.Users)
	defer peers.close()
	if cfg.Messages > 0 {
		bar = newBar(cfg, cfg.Users, "peers")
		g, gctx = errgroup.WithContext(ctx)
		g.SetLimit(64)
		for i := range cfg.Users {
			g.Go(func() error {
				err := peers.dial(gctx, imipAddr, i)
				_ = bar.Add(1)
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return nil, err
		}
		_ = bar.Finish()
	}

	// Idle: RSS once the logins settled, CPU over the idle window.
	if err := settle(ctx, 5*time.Second); err != nil {
		return nil, err
	}
	rep.TransportRSSIdle, rep.IMIPdRSSIdle = rss(tr.pid()), rss(imipd.pid())
	rep.TransportMem = memStats(ctx, monAddr)
	rep.TransportKiBUser = float64(rep.TransportRSSIdle-rep.TransportRSSBase) / float64(cfg.Users)
	conns := cfg.Users
	if cfg.Messages > 0 {
		conns *= 2 // the peers too
	}
	rep.IMIPdKiBConn = float64(rep.IMIPdRSSIdle-rep.IMIPdRSSBase) / float64(conns)
	t0, i0 := cpuTicks(tr.pid()), cpuTicks(imipd.pid())
	if err := settle(ctx, cfg.Idle); err != nil {
		return nil, err
	}
	secs := cfg.Idle.Seconds()
	rep.TransportIdleCPU = 100 * float64(cpuTicks(tr.pid())-t0) / clockTicks / secs
	rep.IMIPdIdleCPU = 100 * float64(cpuTicks(imipd.pid())-i0) / clockTicks / secs

	if cfg.Restart {
		// The transport stops (SIGTERM: every user logged out in order),
		// starts again on the same store, probes the users who were
		// online, and logs each in again as it answers, paced.
		began := time.Now()
		stop(tr)
		rep.StopSeconds = time.Since(began).Seconds()
		began = time.Now()
		if tr, err = startTransport(); err != nil {
			return nil, err
		}
		if err := srv.waitConnected(ctx, 2, time.Minute); err != nil {
			return nil, fmt.Errorf("transport after the restart: %w", err)
		}
		// Logged in again: the transport's own count of live IMIP
		// sessions (its /metrics), since after a restart it answers a
		// user's probe answer to the bare JID.
		bar := newBar(cfg, cfg.Users, "login again")
		if err := waitOnline(ctx, monAddr, cfg.Users, 30*time.Minute, bar); err != nil {
			return nil, fmt.Errorf("after the restart: %w", err)
		}
		_ = bar.Finish()
		rep.RestartSeconds = time.Since(began).Seconds()
	}

	if cfg.Messages > 0 {
		profiled := make(chan error, 1)
		if cfg.CPUProfile != "" {
			go func() { profiled <- cpuProfile(ctx, monAddr, cfg.ProfileFor, cfg.CPUProfile) }()
		} else {
			profiled <- nil
		}
		relay0 := relayHistograms(ctx, monAddr)
		r0, w0 := syscalls(tr.pid())
		g0, gok0 := metricValue(ctx, monAddr, "go_sched_goroutines_created_goroutines_total ")
		if err := chat(ctx, cfg, rep, js, peers, tr.pid(), imipd.pid(), xmppPID); err != nil {
			return nil, err
		}
		relay1 := relayHistograms(ctx, monAddr)
		r1, w1 := syscalls(tr.pid())
		g1, gok1 := metricValue(ctx, monAddr, "go_sched_goroutines_created_goroutines_total ")
		if total := float64(rep.ToIMIP.Delivered + rep.ToXMPP.Delivered); total > 0 {
			rep.TransportReads, rep.TransportWrites = float64(r1-r0)/total, float64(w1-w0)/total
			if gok0 && gok1 {
				rep.TransportGoroutines = (g1 - g0) / total
			}
		}
		rep.ToIMIP.Relay = relay1["to_imip"].since(relay0["to_imip"]).summary()
		rep.ToXMPP.Relay = relay1["to_xmpp"].since(relay0["to_xmpp"]).summary()
		if err := <-profiled; err != nil {
			return nil, fmt.Errorf("CPU profile: %w", err)
		}
	}
	return rep, nil
}

// chat sends cfg.Messages each way and measures.
func chat(ctx context.Context, cfg Config, rep *Report, js jabberSide, peers *peerSet, trPID, imipdPID, xmppPID int) error {
	n := cfg.Messages
	up := newWay(n)   // XMPP -> IMIP, received by the peers
	down := newWay(n) // IMIP -> XMPP, received by the fake server
	peers.up.Store(up)
	peers.down.Store(down)
	js.setWays(up, down)
	t0, i0 := cpuTicks(trPID), cpuTicks(imipdPID)
	_, ts0 := cpuSplit(trPID)
	var x0 int64
	if xmppPID > 0 {
		x0 = cpuTicks(xmppPID)
	}
	began := time.Now()
	bar := newBar(cfg, 2*n, "chat")
	var wg sync.WaitGroup
	sendAll := func(w *way, send func(seq int)) {
		defer wg.Done()
		var tick *time.Ticker
		start := time.Now()
		if cfg.Rate > 0 {
			// Paced by the clock, not one message per tick (a ticker
			// that slips would lower the rate): each tick sends what is
			// due by then.
			tick = time.NewTicker(max(time.Second/time.Duration(cfg.Rate), 100*time.Microsecond))
			defer tick.Stop()
		}
		for seq := range n {
			if tick != nil {
				for float64(seq) >= time.Since(start).Seconds()*float64(cfg.Rate) {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
			} else {
				for int(w.sent.Load())-int(w.got.Load())-int(w.refused.Load()) >= cfg.Window {
					select {
					case <-ctx.Done():
						return
					case <-w.progress:
					}
				}
			}
			w.sent.Add(1)
			send(seq)
			_ = bar.Add(1)
		}
	}
	wg.Add(2)
	go sendAll(up, func(seq int) {
		i := seq % cfg.Users
		js.sendUp(i, seq, fmt.Sprintf("L %d %d", seq, time.Now().UnixNano()))
	})
	go sendAll(down, func(seq int) {
		i := seq % cfg.Users
		if !peers.send(i, fmt.Sprintf("L %d %d", seq, time.Now().UnixNano())) {
			down.refused.Add(1)
		}
	})
	wg.Wait()
	// Drain: until every message arrived, or a minute without progress.
	last, lastAt := -1, time.Now()
	for {
		got := int(up.got.Load() + down.got.Load() + up.refused.Load() + down.refused.Load())
		if got >= 2*n {
			break
		}
		if got != last {
			last, lastAt = got, time.Now()
		}
		if time.Since(lastAt) > time.Minute {
			break
		}
		if err := settle(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	_ = bar.Finish()
	elapsed := time.Since(began)
	rep.ChatSeconds = elapsed.Seconds()
	total := float64(up.got.Load() + down.got.Load())
	if total > 0 {
		t1 := cpuTicks(trPID)
		rep.TransportCPUPerMs = float64(t1-t0) / clockTicks * 1e6 / total
		if _, ts1 := cpuSplit(trPID); t1 > t0 {
			rep.TransportSysShare = 100 * float64(ts1-ts0) / float64(t1-t0)
		}
		rep.IMIPdCPUPerMs = float64(cpuTicks(imipdPID)-i0) / clockTicks * 1e6 / total
		if xmppPID > 0 {
			rep.XMPPServerCPUPerMs = float64(cpuTicks(xmppPID)-x0) / clockTicks * 1e6 / total
		}
	}
	rep.ToIMIP, rep.ToXMPP = up.result(elapsed), down.result(elapsed)
	rep.Lost = (rep.ToIMIP.Sent - rep.ToIMIP.Delivered - rep.ToIMIP.Refused) + (rep.ToXMPP.Sent - rep.ToXMPP.Delivered - rep.ToXMPP.Refused)
	return nil
}

// way counts one direction's messages.
type way struct {
	sent, got, refused atomic.Int64
	mu                 sync.Mutex
	seen               []uint8
	dups               int
	lat                []time.Duration
	progress           chan struct{}
}

func newWay(n int) *way {
	return &way{seen: make([]uint8, n), lat: make([]time.Duration, 0, n), progress: make(chan struct{}, 1)}
}

// arrived records a body "L <seq> <unixnano>".
func (w *way) arrived(body string) {
	f := strings.Fields(body)
	if len(f) != 3 || f[0] != "L" {
		return
	}
	seq, err1 := strconv.Atoi(f[1])
	ns, err2 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || seq < 0 || seq >= len(w.seen) {
		return
	}
	w.mu.Lock()
	if w.seen[seq] > 0 {
		w.dups++
		w.mu.Unlock()
		return
	}
	w.seen[seq] = 1
	w.lat = append(w.lat, time.Since(time.Unix(0, ns)))
	w.mu.Unlock()
	w.got.Add(1)
	select {
	case w.progress <- struct{}{}:
	default:
	}
}

func (w *way) result(elapsed time.Duration) Way {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := Way{Sent: int(w.sent.Load()), Delivered: int(w.got.Load()), Duplicated: w.dups, Refused: int(w.refused.Load())}
	r.PerSecond = float64(r.Delivered) / elapsed.Seconds()
	if len(w.lat) > 0 {
		slices.Sort(w.lat)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		r.P50ms = ms(w.lat[len(w.lat)/2])
		r.P99ms = ms(w.lat[len(w.lat)*99/100])
		r.Maxms = ms(w.lat[len(w.lat)-1])
	}
	return r
}

// ---------------------------------------------------------------- the fake XMPP server

type server struct {
	ln      net.Listener
	mu      sync.Mutex
	conn    net.Conn
	w       *bufio.Writer
	links   atomic.Int64 // component handshakes completed
	monAddr string       // the transport's monitoring listener
	users   int
	regs    sync.Map // id -> chan [2]string (type, condition)
	// Once the chat starts: down receives IMIP -> XMPP messages, up2
	// counts XMPP -> IMIP messages the gateway refused.
	up2, down atomic.Pointer[way]
	wg        sync.WaitGroup
}

func newServer(users int) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &server{ln: ln, users: users}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) close() {
	s.ln.Close()
	s.mu.Lock()
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *server) accept() {
	defer s.wg.Done()
	for { // one component connection at a time
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.serve(c)
		s.mu.Lock()
		s.conn, s.w = nil, nil
		s.mu.Unlock()
	}
}

// stanza is what the tool reads of the transport's stanzas.
type stanza struct {
	XMLName xml.Name
	Type    string `xml:"type,attr"`
	ID      string `xml:"id,attr"`
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	Body    string `xml:"body"`
	Error   struct {
		Conds []struct {
			XMLName xml.Name
		} `xml:",any"`
	} `xml:"error"`
}

func (s *server) serve(c net.Conn) {
	defer c.Close()
	d := xml.NewDecoder(bufio.NewReaderSize(c, 64<<10))
	if !startElement(d, "stream") {
		return
	}
	const id = "loadtest-1"
	if _, err := fmt.Fprintf(c, `<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='%s' id='%s'>`, domain, id); err != nil {
		return
	}
	var hs struct {
		Text string `xml:",chardata"`
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "handshake" {
			if d.DecodeElement(&hs, &se) != nil {
				return
			}
			break
		}
	}
	sum := sha1.Sum([]byte(id + secret))
	if hs.Text != hex.EncodeToString(sum[:]) {
		return
	}
	s.mu.Lock()
	s.conn, s.w = c, bufio.NewWriterSize(c, 64<<10)
	s.mu.Unlock()
	if _, err := io.WriteString(c, `<handshake/>`); err != nil {
		return
	}
	s.links.Add(1)
	for {
		tok, err := d.Token()
		if err != nil {
			return
		}
		if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "stream" {
			s.send(`</stream:stream>`)
			return
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		var st stanza
		if err := d.DecodeElement(&st, &se); err != nil {
			return
		}
		s.handle(&st)
	}
}

func startElement(d *xml.Decoder, local string) bool {
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == local {
			return true
		}
	}
}

func (s *server) handle(st *stanza) {
	switch st.XMLName.Local {
	case "iq":
		switch st.Type {
		case "get", "set": // barrier pings, disco: answered as a server and client do
			s.send(fmt.Sprintf(`<iq type="result" id=%q from=%q to=%q/>`, st.ID, st.To, st.From))
		case "result", "error":
			if ch, ok := s.regs.LoadAndDelete(st.ID); ok {
				cond := ""
				if len(st.Error.Conds) > 0 {
					cond = st.Error.Conds[0].XMLName.Local
				}
				ch.(chan [2]string) <- [2]string{st.Type, cond}
			}
		}
	case "presence":
		if st.Type == "probe" { // the user is online
			if i, ok := userIndex(st.To); ok {
				s.send(fmt.Sprintf(`<presence from="%s/r" to=%q/>`, userJID(i), st.From))
			}
		}
	case "message":
		if strings.HasPrefix(st.ID, "imip-slotcheck-") && !strings.Contains(st.To, "@") {
			// A cluster instance's slot check (messages from the
			// gateway's domain to itself): routed back, as ejabberd does.
			s.send(fmt.Sprintf(`<message from=%q to=%q id=%q type="normal"/>`, st.From, st.To, st.ID))
			return
		}
		up, down := s.up2.Load(), s.down.Load()
		if down == nil {
			return
		}
		if st.Type == "error" {
			up.refused.Add(1)
		} else if st.Body != "" {
			down.arrived(st.Body)
		}
	}
}

// userIndex parses u<i>@localhost[/r].
func userIndex(j string) (int, bool) {
	j = strings.TrimPrefix(j, "u")
	at := strings.IndexByte(j, '@')
	if at < 0 {
		return 0, false
	}
	i, err := strconv.Atoi(j[:at])
	return i, err == nil
}

func (s *server) send(raw string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return
	}
	_, _ = s.w.WriteString(raw)
	_ = s.w.Flush()
}

// waitConnected waits until the n-th component connection completed its
// handshake.
func (s *server) waitConnected(ctx context.Context, n int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for s.links.Load() < n {
		if time.Now().After(deadline) {
			return errors.New("the component did not connect")
		}
		if err := settle(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// register registers user i and returns the answer's type and condition.
func (s *server) register(ctx context.Context, i int) (string, string, error) {
	id := fmt.Sprintf("reg%d-%d", i, time.Now().UnixNano())
	ch := make(chan [2]string, 1)
	s.regs.Store(id, ch)
	s.send(fmt.Sprintf(`<iq type="set" id=%q from="%s/r" to=%q><query xmlns="jabber:iq:register"><username>%s</username><password>pw-%d</password></query></iq>`,
		id, userJID(i), domain, userNum(i), i))
	select {
	case a := <-ch:
		return a[0], a[1], nil
	case <-time.After(2 * time.Minute):
		s.regs.Delete(id)
		return "", "", fmt.Errorf("no answer to user %d's registration", i)
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

// waitLogins waits until the transport has n live IMIP sessions (its
// /metrics): the gateway's presence that follows a login goes to the
// user's resource or to the bare JID, depending on the path, so the
// transport's own count is the signal.
func (s *server) waitLogins(ctx context.Context, n int, within time.Duration, bar *progressbar.ProgressBar) error {
	return waitOnline(ctx, s.monAddr, n, within, bar)
}

// waitOnline waits until the transport at monAddr has n live IMIP
// sessions, moving bar.
func waitOnline(ctx context.Context, monAddr string, n int, within time.Duration, bar *progressbar.ProgressBar) error {
	last := 0
	deadline := time.Now().Add(within)
	for {
		got := onlineSessions(ctx, monAddr)
		_ = bar.Add(got - last)
		last = got
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d users logged in within %v", got, n, within)
		}
		if err := settle(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// ---------------------------------------------------------------- IMIP peers

type peerSet struct {
	mu   sync.Mutex
	sess []*imipside.Session
	// Once the chat starts: up receives XMPP -> IMIP messages, down counts
	// IMIP -> XMPP messages imipd refused.
	up, down atomic.Pointer[way]
}

func newPeers(n int) *peerSet { return &peerSet{sess: make([]*imipside.Session, n)} }

func (p *peerSet) dial(ctx context.Context, addr string, i int) error {
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	s, err := imipside.Dial(dctx, imipside.Config{Addr: addr, Number: peerNum(i), Password: fmt.Sprint("ppw-", i),
		AutoConfirm: true, MaxOutstanding: 1 << 20, MaxQueue: 64 << 20,
		Handler: imipside.HandlerFunc(func(ev imipside.Event) {
			switch ev := ev.(type) {
			case imipside.MessageEvent:
				if w := p.up.Load(); w != nil {
					w.arrived(ev.Text)
				}
			case imipside.ReplyEvent:
				if w := p.down.Load(); w != nil && !ev.OK() && ev.Type == imipside.RequestMESG {
					w.refused.Add(1)
				}
			}
		})})
	if err != nil {
		return fmt.Errorf("peer %d: %w", i, err)
	}
	p.mu.Lock()
	p.sess[i] = s
	p.mu.Unlock()
	return nil
}

func (p *peerSet) send(i int, text string) bool {
	p.mu.Lock()
	s := p.sess[i]
	p.mu.Unlock()
	if s == nil {
		return false
	}
	_, err := s.SendMessage(userNum(i), text)
	return err == nil
}

func (p *peerSet) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sess {
		if s != nil {
			s.Close()
		}
	}
}

// ---------------------------------------------------------------- processes and /proc

func build(ctx context.Context, dir, pkg string) (string, error) {
	bin := filepath.Join(dir, "bin", filepath.Base(pkg))
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// proc is a started binary.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func start(ctx context.Context, dir, name, bin string, args ...string) (*proc, error) {
	return startEnv(ctx, dir, name, nil, bin, args...)
}

func startEnv(ctx context.Context, dir, name string, env []string, bin string, args ...string) (*proc, error) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the tool
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// stop ends p with SIGTERM, or SIGKILL after 10 s, and waits for it.
func stop(p *proc) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitListening(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if err := settle(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("nothing listens on %s within %v", addr, within)
}

// settle waits d (a measurement window or a pacing pause), or until ctx ends.
func settle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// raiseFileLimit raises this process's open-file limit (its children
// inherit it), as far as it may.
func raiseFileLimit(want int) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	if l.Max < uint64(want) {
		l.Max = uint64(want) // allowed as root
	}
	l.Cur = l.Max
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// rss returns the VmRSS of pid in KiB.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clockTicks = 100.0

// cpuTicks returns utime+stime of pid, in clock ticks.
func cpuTicks(pid int) int64 {
	u, s := cpuSplit(pid)
	return u + s
}

// cpuSplit returns utime and stime of pid, in clock ticks (0, 0 if
// unknown).
func cpuSplit(pid int) (user, system int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u, st
}

func newBar(cfg Config, n int, what string) *progressbar.ProgressBar {
	if cfg.Quiet {
		return progressbar.DefaultSilent(int64(n), what)
	}
	return progressbar.NewOptions(n, progressbar.OptionSetDescription(what), progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }))
}

// cpuProfile writes the transport's CPU profile over the next d to path.
func cpuProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof endpoint: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 64<<20)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// onlineSessions reads the transport's count of live IMIP sessions from its
// /metrics (0 when it cannot be read).
func onlineSessions(ctx context.Context, addr string) int {
	n, _ := metricValue(ctx, addr, `imip_transport_imip_sessions{state="online"} `)
	return int(n)
}

// memStats reads the transport's runtime.MemStats from its pprof endpoint
// (the "# Name = value" lines of /debug/pprof/heap?debug=1), in KiB.
func memStats(ctx context.Context, addr string) map[string]int64 {
	out := make(map[string]int64)
	err := eachLine(ctx, "http://"+addr+"/debug/pprof/heap?debug=1", func(line string) bool {
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if ok {
			if n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64); err == nil {
				out[name] = n / 1024
			}
		}
		return true
	})
	if err != nil {
		return nil
	}
	return out
}

// eachLine GETs url and calls f with each line of the body (at most 16
// MiB, lines up to 1 MiB) until f returns false.
func eachLine(ctx context.Context, url string, f func(line string) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if !f(sc.Text()) {
			break
		}
	}
	return sc.Err()
}

// hist is one Prometheus histogram as scraped: cumulative counts by upper
// bound (seconds), ascending; +Inf last.
type hist struct {
	le    []float64
	cum   []uint64
	sum   float64
	count uint64
}

// since returns h minus an earlier scrape of the same histogram.
func (h hist) since(before hist) hist {
	out := hist{le: h.le, cum: slices.Clone(h.cum), sum: h.sum - before.sum, count: h.count - before.count}
	if len(before.cum) == len(h.cum) {
		for i := range out.cum {
			out.cum[i] -= before.cum[i]
		}
	}
	return out
}

// quantile returns the upper bound of the bucket where the q quantile
// falls (+Inf when beyond the last bound).
func (h hist) quantile(q float64) float64 {
	want := uint64(math.Ceil(q * float64(h.count)))
	for i, c := range h.cum {
		if c >= want {
			return h.le[i]
		}
	}
	return math.Inf(1)
}

func (h hist) summary() *RelaySummary {
	if h.count == 0 {
		return nil
	}
	ms := func(q float64) float64 {
		if v := h.quantile(q); !math.IsInf(v, 1) {
			return 1000 * v
		}
		return -1 // JSON has no infinity
	}
	return &RelaySummary{Count: h.count, Meanms: 1000 * h.sum / float64(h.count), P50ms: ms(0.5), P99ms: ms(0.99)}
}

// relayHistograms scrapes the transport's relay_seconds histograms by
// direction from its /metrics (nil when it cannot be read).
func relayHistograms(ctx context.Context, addr string) map[string]hist {
	const name = "imip_transport_relay_seconds"
	out := make(map[string]hist)
	err := eachLine(ctx, "http://"+addr+"/metrics", func(line string) bool {
		line, ok := strings.CutPrefix(line, name)
		if !ok {
			return true
		}
		kind, rest, ok := strings.Cut(line, "{")
		if !ok {
			return true
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			return true
		}
		dir := label(labels, "direction")
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if dir == "" || err != nil {
			return true
		}
		h := out[dir]
		switch kind {
		case "_bucket":
			le, err := strconv.ParseFloat(label(labels, "le"), 64)
			if err != nil {
				return true
			}
			h.le, h.cum = append(h.le, le), append(h.cum, uint64(v))
		case "_sum":
			h.sum = v
		case "_count":
			h.count = uint64(v)
		}
		out[dir] = h
		return true
	})
	if err != nil {
		return nil
	}
	return out
}

// label returns the value of name in a Prometheus label list (a="x",b="y").
func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// syscalls returns pid's read-like and write-like system calls so far
// (/proc/PID/io; 0, 0 if unknown).
func syscalls(pid int) (reads, writes int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}

// metricValue returns the value of the first line of the transport's
// /metrics that starts with prefix.
func metricValue(ctx context.Context, addr, prefix string) (v float64, ok bool) {
	_ = eachLine(ctx, "http://"+addr+"/metrics", func(line string) bool {
		val, found := strings.CutPrefix(line, prefix)
		if found {
			f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			v, ok = f, err == nil
		}
		return !found
	})
	return v, ok
}

// storeConfig is the transport's [storage] section (and [cluster], with
// cfg.Cluster).
func storeConfig(cfg Config, dir string) string {
	key := filepath.Join(dir, "transport.key")
	if cfg.StoreDSN == "" {
		return fmt.Sprintf("[storage]\ndriver = \"sqlite\"\npath = %q\nkey_file = %q\n", filepath.Join(dir, "transport.db"), key)
	}
	s := fmt.Sprintf("[storage]\ndriver = \"postgres\"\ndsn = %q\nkey_file = %q\n", cfg.StoreDSN, key)
	if cfg.Cluster {
		s += "\n[cluster]\nenabled = true\nslots = 1\n"
	}
	return s
}
