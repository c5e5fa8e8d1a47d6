package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"mellium.im/xmpp/jid"

	"imip-transport/imipside"
	"imip-transport/imipside/wire"
	"imip-transport/internal/app"
	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// The multi-instance rig of cluster_test.go: a private PostgreSQL, a
// private ejabberd, the real imipd and several real imip-transport
// processes on one store. The cluster settings are all in this block and
// in clusterSection.

// clusterDefault is the switch between the two modes of the cluster tests:
// true runs clusterSlots transports with a [cluster] section behind one
// component name, ejabberd balancing over clusterSlots slots; false runs
// one transport without [cluster] (a second one would refuse the store's
// lock) and ejabberd without domain_balancing: the same faults against a
// single instance, for comparison. E2E_CLUSTER=1 or 0 overrides it.
const clusterDefault = true

const (
	// clusterSlots is the number of transports and ejabberd's
	// component_number (they must be equal).
	clusterSlots = 3
	// clusterCheckInterval is how often an instance looks for dead peers
	// and free slots.
	clusterCheckInterval = 100 * time.Millisecond
	// clusterHandoverTimeout bounds a graceful handover at SIGTERM.
	clusterHandoverTimeout = 10 * time.Second
	// clusterLoginRate is [limits] logins_per_second (and login_burst) of
	// every instance.
	clusterLoginRate = 50
)

// clusterOn reports the mode (see clusterDefault).
func clusterOn() bool {
	switch os.Getenv("E2E_CLUSTER") {
	case "1":
		return true
	case "0":
		return false
	}
	return clusterDefault
}

// clusterInstances is the number of transport processes of the mode.
func clusterInstances() int {
	if clusterOn() {
		return clusterSlots
	}
	return 1
}

// clusterBalancing is ejabberd's domain_balancing for the mode. Without
// cluster there is one connection: with component_number ejabberd would
// still make clusterSlots slots, two of them empty forever, and drop the
// stanzas of two thirds of the users.
func clusterBalancing() *xmppserver.ComponentBalancing {
	if !clusterOn() {
		return nil
	}
	return &xmppserver.ComponentBalancing{Type: "bare_source", ComponentNumber: clusterSlots}
}

// clusterSection is the [cluster] section of every instance's
// configuration, "" without cluster.
func clusterSection() string {
	if !clusterOn() {
		return ""
	}
	return fmt.Sprintf(`
[cluster]
enabled = true
slots = %d
check_interval = %q
handover_timeout = %q
`, clusterSlots, clusterCheckInterval, clusterHandoverTimeout)
}

// slotUpMsg is the log message with which an instance reports that one of
// its component connections holds a slot: the cluster's own line, or,
// without cluster, the component's handshake.
func slotUpMsg() string {
	if clusterOn() {
		return "cluster: slot connection up"
	}
	return "xmpp component connected"
}

// ---------------------------------------------------------------- instances

// clusterNode is one imip-transport process (restartable).
type clusterNode struct {
	t       *testing.T
	idx     int
	bin     string
	cfg     string // its config.toml
	logPath string // JSON log, appended over restarts
	monitor string // [monitoring] listen address

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func (n *clusterNode) name() string { return fmt.Sprint("transport", n.idx+1) }

func (n *clusterNode) start() {
	n.t.Helper()
	log, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		n.t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(n.bin, "-config", n.cfg)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
}

// stop sends sig and waits for the exit; SIGKILL follows after the
// transport's own shutdown bound and a margin. It returns when the process
// has exited (at once if it was not running).
func (n *clusterNode) stop(sig syscall.Signal) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	bound := app.ShutdownGrace + clusterHandoverTimeout + 5*time.Second
	select {
	case <-exited:
	case <-time.After(bound):
		n.t.Errorf("%s did not exit within %v of %v: killed", n.name(), bound, sig)
		_ = cmd.Process.Kill()
		<-exited
	}
}

// running reports whether the process is started and has not exited.
func (n *clusterNode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// waitHealthy waits until /healthz answers 200 (component link, store and
// IMIP server all good), failing t after waitFor or if the process exits.
func (n *clusterNode) waitHealthy() {
	n.t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(waitFor)
	last := "no answer"
	for {
		if !n.running() {
			n.t.Fatalf("%s exited before it was healthy; its log:\n%s", n.name(), xmppserver.Tail(4<<10, n.logPath))
		}
		resp, err := client.Get("http://" + n.monitor + "/healthz")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK
			last = resp.Status
			_ = resp.Body.Close()
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s not healthy within %v (last: %s); its log:\n%s", n.name(), waitFor, last, xmppserver.Tail(4<<10, n.logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// keyMetrics returns the instance's /metrics lines about stanzas,
// messages, users and logins, for a failure's report.
func (n *clusterNode) keyMetrics() string {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + n.monitor + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "imip_transport_") && !strings.Contains(l, "_bucket") &&
			(strings.Contains(l, "stanza") || strings.Contains(l, "message") || strings.Contains(l, "users") ||
				strings.Contains(l, "login") || strings.Contains(l, "component") || strings.Contains(l, "sessions")) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// logLine is one line of an instance's JSON log.
type logLine struct {
	at    time.Time
	level string
	msg   string
	attrs map[string]any
	raw   string
}

// lines returns the instance's log lines, in order; lines that are not
// JSON (a panic's trace) come with only raw set.
func (n *clusterNode) lines() []logLine {
	f, err := os.Open(n.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := logLine{raw: sc.Text()}
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			l.attrs = m
			l.msg, _ = m["msg"].(string)
			l.level, _ = m["level"].(string)
			if s, ok := m["time"].(string); ok {
				l.at, _ = time.Parse(time.RFC3339Nano, s)
			}
		}
		out = append(out, l)
	}
	return out
}

// keyLines are the lines worth showing after a failure: warnings, errors,
// anything of the cluster, and what is not JSON. At most limit, the last
// ones.
func (n *clusterNode) keyLines(limit int) []string {
	var out []string
	for _, l := range n.lines() {
		if l.attrs == nil || l.level == "WARN" || l.level == "ERROR" || strings.Contains(l.msg, "cluster") {
			out = append(out, l.raw)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// ---------------------------------------------------------------- the rig

// clusterRig is ejabberd, PostgreSQL, imipd and the transports.
type clusterRig struct {
	t      *testing.T
	dir    string
	srv    *xmppserver.Ejabberd
	domain jid.JID
	imip   *faultRig // only its imipd part: start, stop, log
	nodes  []*clusterNode
	users  []*clusterUser
	db     *pgx.Conn // the store's database, to read the slots' holders
}

// clusterUser is one Jabber user, registered with the gateway as a, and
// its IMIP contact b, online as an in-process IMIP client.
type clusterUser struct {
	i    int
	a, b imipAccount
	c    *client
	j    *jabberSide
	u    *imipSide

	mu    sync.Mutex
	stats []statAt // STATs of a's number seen by b
}

type statAt struct {
	at time.Time
	st wire.Status
}

// newClusterRig starts everything, registers users Jabber users, and
// waits until each of them is online on IMIP.
func newClusterRig(t *testing.T, users int) *clusterRig {
	t.Helper()
	testenv.SkipUnavailable(t, testenv.PostgresAvailable())
	_, err := xmppserver.EjabberdAvailable("")
	testenv.SkipUnavailable(t, err)
	began := time.Now()
	r := &clusterRig{t: t, dir: t.TempDir()}
	pg := testenv.StartPostgres(t)
	dsn := pg.NewDatabase(t)
	if r.db, err = pgx.Connect(t.Context(), dsn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.db.Close(context.Background()) })
	r.srv = testenv.Ejabberd(t, xmppserver.EjabberdOptions{Privilege: true, Balancing: clusterBalancing()})
	r.domain = jid.MustParse(r.srv.ComponentName())
	bin := filepath.Join(r.dir, "bin")
	trBin := buildBinary(t, bin, "imip-transport/cmd/imip-transport")
	r.imip = &faultRig{t: t, dir: r.dir, imipdBin: buildBinary(t, bin, "imip-transport/cmd/imipd"), imipAddr: freeAddr(t)}

	var acc strings.Builder
	for i := range users {
		a := imipAccount{number: wire.Number(fmt.Sprint(5100000 + i)), password: fmt.Sprint("a-pw-", i), contact: wire.Number(fmt.Sprint(5200000 + i))}
		b := imipAccount{number: a.contact, password: fmt.Sprint("b-pw-", i), contact: a.number}
		r.users = append(r.users, &clusterUser{i: i, a: a, b: b})
		for _, x := range []imipAccount{a, b} {
			fmt.Fprintf(&acc, "[[account]]\nnumber = %q\npassword = %q\nnick = \"n%s\"\ncontacts = [%q]\n\n", x.number, x.password, x.number, x.contact)
		}
	}
	if err := os.WriteFile(filepath.Join(r.dir, "accounts.toml"), []byte(acc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r.imip.startIMIPd()

	keyFile := filepath.Join(r.dir, "transport.key") // shared by every instance
	logLevel := "info"
	if os.Getenv("E2E_DEBUG") != "" {
		logLevel = "debug"
	}
	for i := range clusterInstances() {
		n := &clusterNode{t: t, idx: i, bin: trBin, monitor: freeAddr(t)}
		nd := filepath.Join(r.dir, n.name())
		if err := os.Mkdir(nd, 0o700); err != nil {
			t.Fatal(err)
		}
		n.cfg, n.logPath = filepath.Join(nd, "config.toml"), filepath.Join(nd, "transport.log")
		cfg := linksConfig(r.srv.ComponentName(), r.srv.ComponentAddr(), r.srv.Secret(), r.imip.imipAddr, "1s") + fmt.Sprintf(`
[storage]
driver = "postgres"
dsn = %q
key_file = %q

[limits]
logins_per_second = %d
login_burst = %d

[log]
level = %q
format = "json"

[monitoring]
listen = %q
%s`, dsn, keyFile,
			clusterLoginRate, clusterLoginRate, logLevel, n.monitor, clusterSection())
		if err := os.WriteFile(n.cfg, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		r.nodes = append(r.nodes, n)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range r.nodes {
				if n.running() {
					t.Logf("%s metrics at the failure:\n%s", n.name(), n.keyMetrics())
				}
			}
		}
		for _, n := range r.nodes {
			n.stop(syscall.SIGTERM)
		}
		r.imip.stopIMIPd(syscall.SIGTERM)
		if t.Failed() {
			r.dumpKeyLines()
		}
		r.keepLogs()
	})
	// All instances at once (the store serializes its migrations under a
	// PostgreSQL session lock; the cluster's first version did not, and
	// one of three instances started together on an empty database
	// exited with "partial migration error").
	//
	// E2E_CLUSTER_LATE=1 starts the first one alone and the others only
	// once the users are registered: with the cluster's first versions,
	// an instance knew only the registrations it read at its start and
	// those made through itself.
	late := os.Getenv("E2E_CLUSTER_LATE") == "1"
	startNodes := func(nodes []*clusterNode) {
		for _, n := range nodes {
			n.start()
		}
		for _, n := range nodes {
			n.waitHealthy()
		}
	}
	if late {
		startNodes(r.nodes[:1])
	} else {
		startNodes(r.nodes)
		// The first instance takes every slot, and gives two away once
		// it held them for a while (cluster.Config.GiveAfter); a slot is
		// without a connection for a few milliseconds then, and a
		// registration the server routes to it meanwhile is dropped, as
		// after a deployment an administrator lets the cluster spread
		// before users come.
		deadline := time.Now().Add(clusterBackBound)
		for r.slotHolders() < len(r.nodes) {
			if time.Now().After(deadline) {
				t.Fatalf("the slots did not spread to the %d instances in %v", len(r.nodes), clusterBackBound)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("rig up in %v: ejabberd, PostgreSQL, imipd, %d transport(s), cluster %v",
		time.Since(began).Round(time.Millisecond), len(r.nodes), clusterOn())

	began = time.Now()
	r.enrol()
	t.Logf("%d users registered and online on IMIP in %v", users, time.Since(began).Round(time.Millisecond))
	if late {
		startNodes(r.nodes[1:])
	}
	return r
}

// enrol brings every user's IMIP contact online, logs the Jabber users in,
// registers them with the gateway (XEP-0077), and waits until each is
// online on IMIP. Up to enrolParallel users at once.
func (r *clusterRig) enrol() {
	t := r.t
	t.Helper()
	const enrolParallel = 16
	tr := &transport{t: t, domain: r.domain}
	sem := make(chan struct{}, enrolParallel)
	var wg sync.WaitGroup
	for _, cu := range r.users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			cu.u = &imipSide{t: t, addr: r.imip.imipAddr, acct: cu.b, ids: make(map[*imipside.Session]map[uint64]int),
				got: make(map[int]int), observe: cu.observe}
			cu.u.connect(waitFor)
			t.Cleanup(cu.u.close)
			c := newUser(t, r.srv, "cluster")
			c.autoApprove = r.domain.String()
			var reg got
			deadline := time.Now().Add(waitFor)
			for {
				reg = c.register(tr, string(cu.a.number), cu.a.password)
				if reg.Type == "result" || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if reg.Type != "result" {
				t.Errorf("registering %s: %s", cu.a.number, reg.Raw)
				return
			}
			contact := tr.contact(cu.b.number)
			c.expect("the contact's presence", isPresence(contact, ""))
			cu.c = c
			cu.j = &jabberSide{t: t, user: c.jid.Localpart(), c: c, contact: contact}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	r.waitAllOnline(time.Now().Add(waitFor))
	if t.Failed() {
		t.FailNow()
	}
}

// observe records the peer's view of the user's IMIP status.
func (cu *clusterUser) observe(ev imipside.Event) {
	if s, ok := ev.(imipside.StatEvent); ok && s.From == cu.a.number {
		cu.mu.Lock()
		cu.stats = append(cu.stats, statAt{at: time.Now(), st: s.Status})
		cu.mu.Unlock()
	}
}

// online reports whether the peer's last STAT of the user is not OFFLINE.
func (cu *clusterUser) online() bool {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	return len(cu.stats) > 0 && cu.stats[len(cu.stats)-1].st != wire.StatusOffline
}

// outage is the first time the user went OFFLINE at its peer after since,
// and when it came back (zero while it has not).
func (cu *clusterUser) outage(since time.Time) (off, back time.Time) {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	for _, s := range cu.stats {
		switch {
		case s.at.Before(since):
		case off.IsZero() && s.st == wire.StatusOffline:
			off = s.at
		case !off.IsZero() && s.st != wire.StatusOffline:
			return off, s.at
		}
	}
	return off, time.Time{}
}

// settled returns how many times the user went OFFLINE at its peer in
// [since, until), and when it was last seen coming back (zero if it never
// went offline, or is still off).
func (cu *clusterUser) settled(since, until time.Time) (outages int, back time.Time) {
	cu.mu.Lock()
	defer cu.mu.Unlock()
	off := false
	for _, s := range cu.stats {
		if s.at.Before(since) || !s.at.Before(until) {
			continue
		}
		switch {
		case s.st == wire.StatusOffline && !off:
			outages++
			off, back = true, time.Time{}
		case s.st != wire.StatusOffline && off:
			off, back = false, s.at
		}
	}
	return outages, back
}

// waitAllOnline waits until every user is online at its peer; at
// deadline it marks t failed and returns.
func (r *clusterRig) waitAllOnline(deadline time.Time) {
	r.t.Helper()
	for {
		var off []wire.Number
		for _, cu := range r.users {
			if !cu.online() {
				off = append(off, cu.a.number)
			}
		}
		if len(off) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("%d users not online on IMIP in time: %v", len(off), off)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSettled waits until every instance holds a slot (with a cluster),
// every user is online at its peer and none went offline for quiet: the
// hand-overs a restart sets off (a slot given to the restarted instance
// moves its users) are over, as an administrator's rolling upgrade waits
// before the next restart. At deadline it marks t failed and returns.
func (r *clusterRig) waitSettled(quiet time.Duration, deadline time.Time) {
	r.t.Helper()
	var spread time.Time // since when every instance holds a slot
	for {
		if r.slotHolders() < len(r.nodes) {
			spread = time.Time{}
		} else if spread.IsZero() {
			spread = time.Now()
		}
		var off []wire.Number
		var last time.Time
		for _, cu := range r.users {
			if !cu.online() {
				off = append(off, cu.a.number)
			}
			cu.mu.Lock()
			for _, s := range cu.stats {
				if s.st == wire.StatusOffline && s.at.After(last) {
					last = s.at
				}
			}
			cu.mu.Unlock()
		}
		// Quiet since the slots spread too: the users of a slot just
		// given go offline only once their new instance asked for them.
		if !spread.IsZero() && time.Since(spread) >= quiet && len(off) == 0 && time.Since(last) >= quiet {
			return
		}
		if time.Now().After(deadline) {
			r.t.Errorf("the cluster did not settle in time: every instance holds a slot %v, %d users offline %v, last went offline at %s",
				!spread.IsZero(), len(off), off, last.Format("15:04:05.000"))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// slotHolders returns how many live instances that are not stopping hold
// a slot (without a cluster: the number of instances).
func (r *clusterRig) slotHolders() int {
	r.t.Helper()
	if !clusterOn() {
		return len(r.nodes)
	}
	var n int
	if err := r.db.QueryRow(r.t.Context(), `SELECT count(DISTINCT s.instance) FROM cluster_slots s
		JOIN cluster_instances i ON i.id = s.instance WHERE NOT i.stopping`).Scan(&n); err != nil {
		r.t.Fatalf("reading the slots' holders: %v", err)
	}
	return n
}

// servedBy returns, per instance index, the numbers whose last IMIP login
// (log "logged in to IMIP") before until was by that instance.
func (r *clusterRig) servedBy(until time.Time) map[int][]wire.Number {
	type login struct {
		at  time.Time
		idx int
	}
	last := make(map[wire.Number]login)
	for _, n := range r.nodes {
		for _, l := range n.lines() {
			num, _ := l.attrs["number"].(string)
			if l.msg != "logged in to IMIP" || num == "" || l.at.After(until) {
				continue
			}
			if p, ok := last[wire.Number(num)]; !ok || l.at.After(p.at) {
				last[wire.Number(num)] = login{l.at, n.idx}
			}
		}
	}
	out := make(map[int][]wire.Number)
	for num, l := range last {
		out[l.idx] = append(out[l.idx], num)
	}
	for _, nums := range out {
		slices.Sort(nums)
	}
	return out
}

// firstLine returns the time of the first line with message msg logged
// after since by an instance for which which returns true (zero if none).
func (r *clusterRig) firstLine(msg string, since time.Time, which func(*clusterNode) bool) (time.Time, *clusterNode) {
	var best time.Time
	var by *clusterNode
	for _, n := range r.nodes {
		if !which(n) {
			continue
		}
		for _, l := range n.lines() {
			if l.msg == msg && l.at.After(since) && (best.IsZero() || l.at.Before(best)) {
				best, by = l.at, n
				break
			}
		}
	}
	return best, by
}

// imipdReplaced counts imipd's "replaced by a new login" lines: a number
// logged in twice at once (by two instances, or by one that did not know
// its own session).
func (r *clusterRig) imipdReplaced() int {
	data, err := os.ReadFile(filepath.Join(r.dir, "imipd.log"))
	if err != nil {
		r.t.Errorf("imipd log: %v", err)
		return -1
	}
	return strings.Count(string(data), "replaced by a new login")
}

// keepLogs copies every instance's log and imipd's to the directory
// named by E2E_CLUSTER_LOGS, if set (the test's own directory is removed).
func (r *clusterRig) keepLogs() {
	dst := os.Getenv("E2E_CLUSTER_LOGS")
	if dst == "" {
		return
	}
	dst = filepath.Join(dst, r.t.Name())
	if err := os.MkdirAll(dst, 0o700); err != nil {
		r.t.Errorf("E2E_CLUSTER_LOGS: %v", err)
		return
	}
	files := map[string]string{filepath.Join(r.dir, "imipd.log"): "imipd.log"}
	for _, n := range r.nodes {
		files[n.logPath] = n.name() + ".log"
	}
	for src, name := range files {
		data, err := os.ReadFile(src)
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, name), data, 0o600)
		}
		if err != nil {
			r.t.Errorf("E2E_CLUSTER_LOGS: %v", err)
		}
	}
	r.t.Logf("logs kept in %s", dst)
}

func (r *clusterRig) dumpKeyLines() {
	for _, n := range r.nodes {
		r.t.Logf("%s key log lines (warnings, errors, cluster):\n%s", n.name(), strings.Join(n.keyLines(60), "\n"))
	}
	r.t.Logf("imipd log (tail):\n%s", xmppserver.Tail(4<<10, filepath.Join(r.dir, "imipd.log")))
}

// ---------------------------------------------------------------- traffic

// clusterTraffic runs every user's two senders: numbered messages at
// clusterRate a second each way, the users' starts spread over one
// period so that the load is even.
type clusterTraffic struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func (r *clusterRig) startTraffic() *clusterTraffic {
	tr := &clusterTraffic{stop: make(chan struct{})}
	period := time.Second / clusterRate
	for i, cu := range r.users {
		offset := period * time.Duration(i) / time.Duration(len(r.users))
		send := func(f func(n int)) {
			defer tr.wg.Done()
			select {
			case <-tr.stop:
				return
			case <-time.After(offset):
			}
			tick := time.NewTicker(period)
			defer tick.Stop()
			for n := 0; ; n++ {
				f(n)
				select {
				case <-tr.stop:
					return
				case <-tick.C:
				}
			}
		}
		tr.wg.Add(2)
		go send(func(n int) { cu.j.send("cl", n) })
		go send(cu.u.send)
	}
	return tr
}

func (tr *clusterTraffic) halt() {
	close(tr.stop)
	tr.wg.Wait()
}

// drain waits until every message is delivered, refused or bounced (or
// ignorable), or clusterDrain passes, and returns both directions' sums.
func (r *clusterRig) drain(ignorable func(at time.Time) bool) (up, down tally, lostUp, lostDown map[wire.Number][]int) {
	deadline := time.Now().Add(clusterDrain)
	for {
		up, down = tally{}, tally{}
		lostUp, lostDown = make(map[wire.Number][]int), make(map[wire.Number][]int)
		for _, cu := range r.users {
			gotX, errs := cu.j.received()
			cu.j.mu.Lock()
			sent := append([]sentMsg(nil), cu.j.sent...)
			cu.j.mu.Unlock()
			cu.u.mu.Lock()
			u := classifyBy(sent, cu.u.got, func(n int) bool { return errs[fmt.Sprintf("cl-a%d", n)] }, ignorable)
			d := classifyBy(cu.u.sent, gotX, func(int) bool { return false }, func(time.Time) bool { return false })
			cu.u.mu.Unlock()
			d.dups += cu.j.dups()
			sumTally(&up, u)
			sumTally(&down, d)
			if len(u.lostNums) > 0 {
				lostUp[cu.a.number] = u.lostNums
			}
			if len(d.lostNums) > 0 {
				lostDown[cu.a.number] = d.lostNums
			}
		}
		if (up.lost == 0 && down.lost == 0) || time.Now().After(deadline) {
			return up, down, lostUp, lostDown
		}
		time.Sleep(100 * time.Millisecond)
	}
}
