package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLoadSecretCreatesThenReuses(t *testing.T) {
	dir := t.TempDir()
	s1, err := loadSecret(dir)
	if err != nil {
		t.Fatalf("loadSecret (first) = %v", err)
	}
	if len(s1) != 48 {
		t.Errorf("secret %q: length %d, want 48 hex digits", s1, len(s1))
	}
	st, err := os.Stat(filepath.Join(dir, secretFile))
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("secret file mode = %v, want 0600", mode)
	}
	s2, err := loadSecret(dir)
	if err != nil {
		t.Fatalf("loadSecret (second) = %v", err)
	}
	if s2 != s1 {
		t.Errorf("second loadSecret = %q, want the stored %q", s2, s1)
	}
	if s3, _ := loadSecret(t.TempDir()); s3 == s1 {
		t.Errorf("two state directories got the same secret %q", s3)
	}
}

func TestLoadSecretEmptyFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, secretFile), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := loadSecret(dir); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("loadSecret(empty file) = %q, %v; want an 'is empty' error", s, err)
	}
}

func TestStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", ".stack")
	abs, err := stateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(abs) {
		t.Errorf("stateDir(%q) = %q, not absolute", dir, abs)
	}
	st, err := os.Stat(abs)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("stateDir(%q): stat = %v, %v; want a 0700 directory", dir, st, err)
	}
}

func TestCheckPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	free := freePort(t)

	// A PID file naming this (running) process stands for a left-behind Prosody.
	pidFile := filepath.Join(t.TempDir(), "prosody.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := checkPorts([]portUse{{"-imip-port", "imipd", free}}, pidFile); err != nil {
		t.Errorf("checkPorts(free port %d) = %v, want nil", free, err)
	}
	err = checkPorts([]portUse{{"-imip-port", "imipd", free}, {"-c2s-port", "Prosody clients", busyPort}}, pidFile)
	if err == nil {
		t.Fatalf("checkPorts(busy port %d) = nil, want an error", busyPort)
	}
	msg := err.Error()
	for _, want := range []string{
		"port " + strconv.Itoa(busyPort) + " (Prosody clients)", "-c2s-port N",
		"PID " + strconv.Itoa(os.Getpid()), "kill " + strconv.Itoa(os.Getpid()),
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("checkPorts error %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "port "+strconv.Itoa(free)+" ") {
		t.Errorf("checkPorts error %q names the free port %d", msg, free)
	}
}

func TestStalePID(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		content string // "" = no file
		want    int
	}{
		0: {"", 0},
		1: {strconv.Itoa(os.Getpid()), os.Getpid()},
		2: {"not-a-pid", 0},
		3: {"-5", 0},
		4: {"2147483646", 0}, // no such process
	}
	for i, c := range cases {
		path := filepath.Join(dir, strconv.Itoa(i)+".pid")
		if c.content != "" {
			if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got := stalePID(path); got != c.want {
			t.Errorf("%d: stalePID(%q) = %d, want %d", i, c.content, got, c.want)
		}
	}
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
