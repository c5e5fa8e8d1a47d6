package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"imip-transport/imipside/imipserver/imiptest"
	"imip-transport/imipside/wire"
	"imip-transport/internal/xmppserver"
)

// shippedConfig is the example configuration at the repository root.
var shippedConfig = filepath.Join("..", "..", "config.toml")

// buildTransport builds cmd/imip-transport into a temporary directory.
func buildTransport(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "imip-transport")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "imip-transport/cmd/imip-transport").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/imip-transport: %v\n%s", err, out)
	}
	t.Logf("go build cmd/imip-transport: %v", time.Since(began).Round(time.Millisecond))
	return bin
}

// runBinary runs bin with args, bounded, and returns its exit code, stdout
// and stderr.
func runBinary(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %s %v: %v", bin, args, err)
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// transportConfig is a configuration for the binary against srv and imip.
func transportConfig(srv xmppserver.Server, imipAddr, store string) string {
	level := "info"
	if os.Getenv("E2E_DEBUG") != "" {
		level = "debug"
	}
	return linksConfig(srv.ComponentName(), srv.ComponentAddr(), srv.Secret(), imipAddr, "2s") + fmt.Sprintf(`
[storage]
driver = "sqlite"
path = %q
key_file = %q

[log]
level = %q
`, store, store+".key", level)
}

// linksConfig is the [xmpp] and [imip] sections the end-to-end tests give
// the binary: the component link and the IMIP server, short timeouts and
// backoffs (retryMax: the longest wait between IMIP logins).
func linksConfig(component, server, secret, imipAddr, retryMax string) string {
	return fmt.Sprintf(`[xmpp]
component = %q
server = %q
secret = %q
min_backoff = "100ms"
max_backoff = "1s"

[imip]
server = %q
login_timeout = "5s"
op_timeout = "5s"
retry_min = "200ms"
retry_max = %q
`, component, server, secret, imipAddr, retryMax)
}

// TestSIGTERM runs the real binary, brings a user online with two IMIP
// contacts, and sends it SIGTERM: it exits 0 within 5 s, having logged the
// user out of IMIP and told her the gateway and her contacts went offline.
func TestSIGTERM(t *testing.T) {
	srv := prosodyPriv.Get(t)
	bin := buildTransport(t)
	dir := t.TempDir()

	// The IMIP side: an imiptest server; tr only carries it and the
	// domain for the helpers, no transport runs in process.
	imip := imiptest.Start(t, imiptest.Options{Accounts: []imiptest.Account{acctAlice, acctBob, acctCarol}})
	tr := &transport{t: t, srv: srv, imip: imip, domain: jid.MustParse(srv.ComponentName())}
	befriend(t, tr, acctAlice.Number, acctBob.Number)
	befriend(t, tr, acctAlice.Number, acctCarol.Number)
	bob := dialIMIP(t, tr, acctBob.Number, acctBob.Password)
	carol := dialIMIP(t, tr, acctCarol.Number, acctCarol.Password)

	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(transportConfig(srv, imip.Addr(), filepath.Join(dir, "transport.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "transport.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default: // the test failed before the signal: kill our process
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() || os.Getenv("E2E_DEBUG") != "" {
			b, _ := os.ReadFile(logPath)
			t.Logf("imip-transport log:\n%s", b)
		}
	})

	c := newUser(t, srv, "sigterm")
	c.autoApprove = tr.domain.String()
	waitGateway(t, c, tr, exited)
	c.mustRegister(tr, string(acctAlice.Number), acctAlice.Password)
	bob.expectStat(acctAlice.Number, wire.StatusOnline, "")
	carol.expectStat(acctAlice.Number, wire.StatusOnline, "")
	contacts := []string{tr.domain.String(), tr.contact(acctBob.Number), tr.contact(acctCarol.Number)}
	for _, from := range contacts {
		c.expect("presence of "+from, isPresence(from, ""))
	}

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to %d: %v", pid, err)
	}
	signalled := time.Now()
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		took := time.Since(signalled)
		t.Logf("exited %v after SIGTERM: %v", took.Round(time.Millisecond), err)
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit status %d after SIGTERM, want 0", code)
		}
		if took > 5*time.Second {
			t.Errorf("took %v to exit after SIGTERM, want at most 5s", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5s after SIGTERM")
	}
	// DISC reached IMIP: her contacts see her go offline.
	bob.expectStat(acctAlice.Number, wire.StatusOffline, "")
	carol.expectStat(acctAlice.Number, wire.StatusOffline, "")
	if !imip.WaitOnline(acctAlice.Number, false, waitFor) {
		t.Error("alice still on IMIP after the transport exited")
	}
	// The goodbye presences reached her.
	for _, from := range contacts {
		c.expect("unavailable from "+from, isPresence(from, "unavailable"))
	}
	// Nothing secret in the log.
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{srv.Secret(), acctAlice.Password} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the transport's log contains the secret %q", secret)
		}
	}
	// Nor in the database: the password is sealed under the key file.
	for _, p := range []string{"transport.db", "transport.db-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(acctAlice.Password)) {
			t.Errorf("%s holds alice's IMIP password in clear", p)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "transport.db.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want created with mode 0600", fi, err)
	}
}

// waitGateway polls the gateway's disco#info until the component answers
// (a server bounces stanzas for a component that is not connected).
func waitGateway(t *testing.T, c *client, tr *transport, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		r := c.iq("get", tr.domain.String(), `<query xmlns="http://jabber.org/protocol/disco#info"/>`)
		if r.Type == "result" {
			return
		}
		select {
		case err := <-exited:
			t.Fatalf("imip-transport exited before connecting: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not answer disco#info within %v: %s", waitFor, r.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCheckConfig runs the binary's -check-config and -version.
func TestCheckConfig(t *testing.T) {
	bin := buildTransport(t)
	shipped, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(t.TempDir(), "unknown.toml")
	// An unknown key in a section of its own: wherever the shipped file
	// ends, strict decoding names it.
	if err := os.WriteFile(unknown, append(shipped, "\n[paint]\ncolour_scheme = \"blue\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "absent.toml")
	cases := []struct {
		args       []string
		wantOK     bool
		wantStdout string
		wantStderr []string
	}{
		0: {[]string{"-config", shippedConfig, "-check-config"}, true, "configuration ok", nil},
		1: {[]string{"-config", unknown, "-check-config"}, false, "", []string{"unknown key", "paint.colour_scheme"}},
		2: {[]string{"-config", missing, "-check-config"}, false, "", []string{"absent.toml"}},
		3: {[]string{"-version"}, true, "imip-transport ", nil},
		4: {[]string{"-no-such-flag"}, false, "", []string{"no-such-flag"}},
	}
	for i, tc := range cases {
		code, stdout, stderr := runBinary(t, bin, tc.args...)
		if (code == 0) != tc.wantOK {
			t.Errorf("%d: %v: exit %d (ok wanted: %v); stderr %q", i, tc.args, code, tc.wantOK, stderr)
		}
		if !strings.Contains(stdout, tc.wantStdout) {
			t.Errorf("%d: %v: stdout %q lacks %q", i, tc.args, stdout, tc.wantStdout)
		}
		for _, w := range tc.wantStderr {
			if !strings.Contains(stderr, w) {
				t.Errorf("%d: %v: stderr %q lacks %q", i, tc.args, stderr, w)
			}
		}
	}
	// -version prints a version after the name.
	_, stdout, _ := runBinary(t, bin, "-version")
	if v := strings.TrimSpace(strings.TrimPrefix(stdout, "imip-transport ")); v == "" || strings.Contains(v, "\n") {
		t.Errorf("-version printed %q, want \"imip-transport VERSION\"", stdout)
	}
}
