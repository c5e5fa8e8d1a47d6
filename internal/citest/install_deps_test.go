package citest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// packages is what .ci/install-deps.sh installs, in its order.
var packages = []string{"prosody", "prosody-modules", "lua-unbound", "python3-slixmpp", "ejabberd", "shellcheck", "postgresql"}

// realTools are linked into the simulated machine's PATH as they are: the
// script (and the original version of it) needs them, and none of them
// touches the system beyond the files and PIDs it is given.
var realTools = []string{"grep", "tee", "chmod", "cut", "sort", "tr", "seq", "sleep", "env", "kill", "cat"}

// machine is a simulated fresh Debian machine in a temporary directory.
type machine struct {
	t      *testing.T
	dir    string
	bin    string // the script's whole PATH
	state  string // stub state: installed/, logs, markers
	policy string // IMIP_POLICY_RC_D
}

type machineOpts struct {
	uid         int      // what `id -u` prints
	sudo        bool     // a sudo stub on PATH (runs its arguments)
	noSS        bool     // no ss on PATH at all
	ssFail      bool     // ss exits 1 with an error
	installed   []string // packages installed from the start
	failUpdate  bool     // apt-get update exits 100
	failInstall bool     // apt-get install exits 100 (installing nothing)
	// before lists PIDs listening on a default port from the start; during
	// lists PIDs that listen once apt-get install has run.
	before, during []int
}

func newMachine(t *testing.T, o machineOpts) *machine {
	t.Helper()
	dir := t.TempDir()
	m := &machine{
		t:      t,
		dir:    dir,
		bin:    filepath.Join(dir, "bin"),
		state:  filepath.Join(dir, "state"),
		policy: filepath.Join(dir, "policy-rc.d"),
	}
	for _, d := range []string{m.bin, filepath.Join(m.state, "installed")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tool := range realTools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("real tool %s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(m.bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range o.installed {
		m.writeFile(filepath.Join(m.state, "installed", p), "")
	}
	st := shQuote(m.state)

	m.stub("id", fmt.Sprintf(`case "$1" in -u) echo %d ;; *) echo "uid=%d" ;; esac`, o.uid, o.uid))
	if o.sudo {
		m.stub("sudo", `printf '%s\n' "$*" >>`+st+`/sudo.log
exec "$@"`)
	}

	// dpkg-query -W -f='${Status}' PKG: installed once marked by apt-get.
	m.stub("dpkg-query", `for pkg; do :; done
if [ -e `+st+`/installed/"$pkg" ]; then printf 'install ok installed'; exit 0; fi
echo "dpkg-query: no packages found matching $pkg" >&2
exit 1`)

	failUpdate, failInstall := "", ""
	if o.failUpdate {
		failUpdate = `echo "E: The repository is not signed (stub)" >&2; exit 100`
	}
	if o.failInstall {
		failInstall = `echo "E: Unable to locate package prosody (stub)" >&2; exit 100`
	}
	m.stub("apt-get", `printf '%s\n' "$*" >>`+st+`/apt-get.log
printf 'DEBIAN_FRONTEND=%s\n' "${DEBIAN_FRONTEND:-}" >>`+st+`/apt-get.env
if grep -qx 'exit 101' `+shQuote(m.policy)+` 2>/dev/null && [ -x `+shQuote(m.policy)+` ]; then
	echo policy-ok >>`+st+`/apt-get.policy
else
	echo policy-missing >>`+st+`/apt-get.policy
fi
case "$1" in
update)
	`+failUpdate+`
	;;
install)
	: >`+st+`/daemon-started
	`+failInstall+`
	shift
	for a; do
		case "$a" in -*) ;; *) : >`+st+`/installed/"$a" ;; esac
	done
	;;
esac
exit 0`)

	var before, during strings.Builder
	for _, pid := range o.before {
		fmt.Fprintln(&before, ssLine(pid))
	}
	for _, pid := range o.during {
		fmt.Fprintln(&during, ssLine(pid))
	}
	m.writeFile(filepath.Join(m.state, "ss-before"), before.String())
	m.writeFile(filepath.Join(m.state, "ss-during"), during.String())
	switch {
	case o.noSS:
	case o.ssFail:
		m.stub("ss", `echo "Cannot open netlink socket: Permission denied" >&2
exit 1`)
	default:
		m.stub("ss", `printf '%s\n' "$*" >>`+st+`/ss.log
cat `+st+`/ss-before
if [ -e `+st+`/daemon-started ]; then cat `+st+`/ss-during; fi
exit 0`)
	}
	return m
}

// ssLine is a line of `ss -Hltnp` for a process listening on 5222.
func ssLine(pid int) string {
	return fmt.Sprintf(`LISTEN 0      4096       127.0.0.1:5222      0.0.0.0:*    users:(("prosody",pid=%d,fd=7))`, pid)
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (m *machine) writeFile(path, content string) {
	m.t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

func (m *machine) stub(name, body string) {
	m.t.Helper()
	if err := os.WriteFile(filepath.Join(m.bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		m.t.Fatal(err)
	}
}

// lines returns the lines of a state file, nil when it does not exist.
func (m *machine) lines(name string) []string {
	m.t.Helper()
	b, err := os.ReadFile(filepath.Join(m.state, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		m.t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

type result struct {
	exitCode int
	stderr   string
}

// run runs .ci/install-deps.sh with bash on the simulated machine.
func (m *machine) run() result {
	m.t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		m.t.Fatalf("bash: %v", err)
	}
	script, err := filepath.Abs(filepath.Join("..", "..", ".ci", "install-deps.sh"))
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, script)
	cmd.Dir = m.dir
	cmd.Env = []string{
		"PATH=" + m.bin,
		"HOME=" + m.dir,
		"TMPDIR=" + m.dir,
		"LC_ALL=C",
		"IMIP_POLICY_RC_D=" + m.policy,
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := result{stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.exitCode = ee.ExitCode()
	default:
		m.t.Fatalf("running %s: %v\nstderr:\n%s", script, err, res.stderr)
	}
	m.t.Logf("exit %d; stdout:\n%s\nstderr:\n%s", res.exitCode, stdout.String(), res.stderr)
	if strings.Contains(res.stderr, "unexpected failure") {
		m.t.Errorf("the ERR trap fired (an unhandled failure in the script):\n%s", res.stderr)
	}
	return res
}

// checkPolicy asserts that the policy-rc.d file says exit 101 and is
// executable, and that every apt-get call saw it so.
func (m *machine) checkPolicy() {
	m.t.Helper()
	fi, err := os.Stat(m.policy)
	if err != nil {
		m.t.Fatalf("policy-rc.d not written: %v", err)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		m.t.Errorf("policy-rc.d mode %v, want executable", fi.Mode())
	}
	b, _ := os.ReadFile(m.policy)
	if !slices.Contains(strings.Split(string(b), "\n"), "exit 101") {
		m.t.Errorf("policy-rc.d has no line \"exit 101\":\n%s", b)
	}
	for _, l := range m.lines("apt-get.policy") {
		if l != "policy-ok" {
			m.t.Errorf("apt-get ran before policy-rc.d said exit 101 (%s)", l)
		}
	}
}

var (
	wantUpdate  = "update -qq"
	wantInstall = "install -y -qq --no-install-recommends " + strings.Join(packages, " ")
)

func TestFreshMachineNothingListening(t *testing.T) {
	m := newMachine(t, machineOpts{})
	res := m.run()
	if res.exitCode != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", res.exitCode, res.stderr)
	}
	if got, want := m.lines("apt-get.log"), []string{wantUpdate, wantInstall}; !slices.Equal(got, want) {
		t.Errorf("apt-get calls:\n got %q\nwant %q", got, want)
	}
	for _, l := range m.lines("apt-get.env") {
		if l != "DEBIAN_FRONTEND=noninteractive" {
			t.Errorf("apt-get environment: %s", l)
		}
	}
	m.checkPolicy()
	for _, want := range []string{
		"install-deps: missing: " + strings.Join(packages, " "),
		"install-deps: installed: " + strings.Join(packages, " "),
	} {
		if !strings.Contains(res.stderr, want+"\n") {
			t.Errorf("stderr lacks %q", want)
		}
	}
	// ss was asked about the default ports, before and after the install.
	ss := m.lines("ss.log")
	if len(ss) != 2 {
		t.Fatalf("ss calls %q, want 2", ss)
	}
	for _, port := range []string{":5222", ":5269", ":5347", ":4369"} {
		if !strings.Contains(ss[0], "sport = "+port) {
			t.Errorf("ss filter %q lacks port %s", ss[0], port)
		}
	}
}

func TestEverythingInstalled(t *testing.T) {
	m := newMachine(t, machineOpts{installed: packages})
	// A correct policy-rc.d is left as it is.
	const policy = "#!/bin/sh\nexit 101\n"
	m.writeFile(m.policy, policy)
	if err := os.Chmod(m.policy, 0o755); err != nil {
		t.Fatal(err)
	}
	res := m.run()
	if res.exitCode != 0 {
		t.Fatalf("exit %d, want 0", res.exitCode)
	}
	if calls := m.lines("apt-get.log"); calls != nil {
		t.Errorf("apt-get called: %q", calls)
	}
	if calls := m.lines("ss.log"); calls != nil {
		t.Errorf("ss called: %q", calls)
	}
	if b, _ := os.ReadFile(m.policy); string(b) != policy {
		t.Errorf("policy-rc.d rewritten:\n%s", b)
	}
	if !strings.Contains(res.stderr, "install-deps: all installed: "+strings.Join(packages, " ")+"\n") {
		t.Errorf("stderr lacks the all-installed line")
	}
}

func TestPolicyWrittenWhenAllInstalled(t *testing.T) {
	m := newMachine(t, machineOpts{installed: packages})
	m.writeFile(m.policy, "#!/bin/sh\nexit 0\n")
	if res := m.run(); res.exitCode != 0 {
		t.Fatalf("exit %d, want 0", res.exitCode)
	}
	m.checkPolicy()
	if calls := m.lines("apt-get.log"); calls != nil {
		t.Errorf("apt-get called: %q", calls)
	}
}

func TestPolicyNotWritable(t *testing.T) {
	m := newMachine(t, machineOpts{})
	m.policy = filepath.Join(m.dir, "no-such-dir", "policy-rc.d")
	res := m.run()
	if res.exitCode == 0 {
		t.Fatal("exit 0, want non-zero")
	}
	if !strings.Contains(res.stderr, "install-deps: cannot write "+m.policy) {
		t.Errorf("stderr lacks the cannot-write message")
	}
	if calls := m.lines("apt-get.log"); calls != nil {
		t.Errorf("apt-get called without a policy-rc.d: %q", calls)
	}
}

func TestAptGetFails(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      machineOpts
		wantCalls []string
		wantMsg   string
	}{
		{"update", machineOpts{failUpdate: true}, []string{wantUpdate}, "install-deps: apt-get update failed (exit 100)"},
		{"install", machineOpts{failInstall: true}, []string{wantUpdate, wantInstall}, "install-deps: apt-get install failed (exit 100)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, tc.opts)
			res := m.run()
			if res.exitCode == 0 {
				t.Fatal("exit 0, want non-zero")
			}
			if !strings.Contains(res.stderr, tc.wantMsg+"\n") {
				t.Errorf("stderr lacks %q", tc.wantMsg)
			}
			if strings.Contains(res.stderr, "install-deps: installed:") {
				t.Errorf("stderr claims success")
			}
			if got := m.lines("apt-get.log"); !slices.Equal(got, tc.wantCalls) {
				t.Errorf("apt-get calls:\n got %q\nwant %q", got, tc.wantCalls)
			}
		})
	}
}

// TestStillMissingAfterInstall: apt-get exits 0 but a package is still not
// installed (here: dpkg-query never reports shellcheck).
func TestStillMissingAfterInstall(t *testing.T) {
	m := newMachine(t, machineOpts{})
	m.stub("dpkg-query", `for pkg; do :; done
if [ "$pkg" != shellcheck ] && [ -e `+shQuote(m.state)+`/installed/"$pkg" ]; then printf 'install ok installed'; exit 0; fi
exit 1`)
	res := m.run()
	if res.exitCode == 0 {
		t.Fatal("exit 0, want non-zero")
	}
	if !strings.Contains(res.stderr, "install-deps: still missing after install: shellcheck\n") {
		t.Errorf("stderr lacks the still-missing line")
	}
}

// daemon is a sleep process started by the test, named argv0 (what
// /proc/PID/cmdline shows). It is reaped as soon as it exits, so that a
// kill -0 on its PID fails then, and killed at the end of the test.
type daemon struct {
	pid  int
	done chan struct{} // closed when the process has exited and been reaped
	cmd  *exec.Cmd
}

func startDaemon(t *testing.T, argv0 string) *daemon {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sleep, "300")
	cmd.Args[0] = argv0
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{pid: cmd.Process.Pid, done: make(chan struct{}), cmd: cmd}
	go func() {
		_ = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // this PID only; a no-op once reaped
		<-d.done
	})
	return d
}

// exited reports whether the daemon exits within wait.
func (d *daemon) exited(wait time.Duration) bool {
	select {
	case <-d.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// running reports whether the daemon has not exited (or not been reaped).
func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func TestDaemonStartedDuringInstallIsStopped(t *testing.T) {
	old := startDaemon(t, "prosody")          // listening before the run
	started := startDaemon(t, "prosody")      // appears during the install
	unrelated := startDaemon(t, "some-sleep") // appears too, but no XMPP server
	m := newMachine(t, machineOpts{
		before: []int{old.pid},
		during: []int{started.pid, unrelated.pid},
	})
	res := m.run()
	if res.exitCode != 0 {
		t.Fatalf("exit %d, want 0", res.exitCode)
	}
	if !started.exited(5 * time.Second) {
		t.Errorf("daemon pid %d started during the install still runs", started.pid)
	} else if ws, ok := started.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGTERM {
		t.Errorf("daemon pid %d ended with %v, want SIGTERM", started.pid, started.cmd.ProcessState)
	}
	if !strings.Contains(res.stderr, fmt.Sprintf("install-deps: stopping daemon started during install: pid %d (prosody 300)\n", started.pid)) {
		t.Errorf("stderr lacks the stopping line for pid %d", started.pid)
	}
	// The script waits until a daemon it signals is gone (kill -0 fails
	// only once this test has reaped it), so a wrongly stopped process
	// would have exited by now.
	if !old.running() {
		t.Errorf("daemon pid %d, listening before the run, was stopped", old.pid)
	}
	if !unrelated.running() {
		t.Errorf("process pid %d, not an XMPP server, was stopped", unrelated.pid)
	}
	for _, d := range []*daemon{old, unrelated} {
		if strings.Contains(res.stderr, fmt.Sprintf("pid %d ", d.pid)) {
			t.Errorf("stderr mentions pid %d", d.pid)
		}
	}
}

// TestVanishedListener: ss reports a PID whose process has exited by the
// time the script reads /proc/PID: no error, nothing stopped.
func TestVanishedListener(t *testing.T) {
	gone := startDaemon(t, "prosody")
	if err := gone.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if !gone.exited(5 * time.Second) {
		t.Fatal("could not stop the helper process")
	}
	m := newMachine(t, machineOpts{during: []int{gone.pid}})
	res := m.run()
	if res.exitCode != 0 {
		t.Fatalf("exit %d, want 0", res.exitCode)
	}
	if strings.Contains(res.stderr, "No such file") || strings.Contains(res.stderr, "stopping daemon") {
		t.Errorf("unexpected stderr for a vanished PID:\n%s", res.stderr)
	}
}

func TestNonRoot(t *testing.T) {
	t.Run("with sudo", func(t *testing.T) {
		m := newMachine(t, machineOpts{uid: 1000, sudo: true})
		res := m.run()
		if res.exitCode != 0 {
			t.Fatalf("exit %d, want 0", res.exitCode)
		}
		m.checkPolicy()
		sudo := m.lines("sudo.log")
		for _, want := range []string{
			"tee " + m.policy,
			"env DEBIAN_FRONTEND=noninteractive apt-get " + wantUpdate,
			"env DEBIAN_FRONTEND=noninteractive apt-get " + wantInstall,
		} {
			if !slices.Contains(sudo, want) {
				t.Errorf("no sudo call %q in %q", want, sudo)
			}
		}
	})
	t.Run("without sudo", func(t *testing.T) {
		m := newMachine(t, machineOpts{uid: 1000})
		res := m.run()
		if res.exitCode == 0 {
			t.Fatal("exit 0, want non-zero")
		}
		if !strings.Contains(res.stderr, "install-deps: must run as root (or with sudo)\n") {
			t.Errorf("stderr lacks the must-run-as-root line")
		}
		if calls := m.lines("apt-get.log"); calls != nil {
			t.Errorf("apt-get called: %q", calls)
		}
	})
}

func TestWithoutWorkingSS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    machineOpts
		wantMsg string
	}{
		{"missing", machineOpts{noSS: true}, "install-deps: ss (iproute2) not found"},
		{"failing", machineOpts{ssFail: true}, "install-deps: ss failed: Cannot open netlink socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMachine(t, tc.opts)
			res := m.run()
			if res.exitCode != 0 {
				t.Fatalf("exit %d, want 0", res.exitCode)
			}
			if got, want := m.lines("apt-get.log"), []string{wantUpdate, wantInstall}; !slices.Equal(got, want) {
				t.Errorf("apt-get calls:\n got %q\nwant %q", got, want)
			}
			for _, want := range []string{tc.wantMsg, "install-deps: installed: "} {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
		})
	}
}
