package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// buildStack builds the imip-stack binary into a temporary directory.
func buildStack(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "imip-stack")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startStackBinary runs the binary with its stdout and stderr on one pipe,
// reads until the banner, and returns the command, the pipe's read end and
// the Prosody PID.
func startStackBinary(t *testing.T, bin string) (*exec.Cmd, *os.File, int) {
	t.Helper()
	ports := distinctFreePorts(t, 3)
	dir := filepath.Join(t.TempDir(), ".stack")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-dir", dir, "-c2s-port", strconv.Itoa(ports[0]), "-component-port", strconv.Itoa(ports[1]),
		"-imip-port", strconv.Itoa(ports[2]), "-accounts", "../imipd/accounts.example.toml")
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	banner := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "imip-stack is running") {
				banner <- nil
				return
			}
		}
		banner <- io.ErrUnexpectedEOF
	}()
	select {
	case err := <-banner:
		if err != nil {
			t.Fatal("the stack exited before its banner")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no banner within 30 s")
	}
	pid := stalePID(filepath.Join(dir, "prosody", "prosody.pid"))
	if pid == 0 {
		t.Fatal("no running Prosody PID in the state directory")
	}
	return cmd, r, pid
}

// waitGone waits until process pid no longer exists.
func waitGone(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // ours: started by this test's stack
			t.Fatalf("%s: Prosody %d still running", what, pid)
		}
		time.Sleep(20 * time.Millisecond) // poll for the process to go
	}
}

// `make stack 2>&1 | tee log`, then Ctrl-C: tee dies first, so the stack's
// output is a closed pipe. The stack must still stop its Prosody, and exit
// by itself, not be killed by SIGPIPE.
func TestStackStopsWithClosedStdout(t *testing.T) {
	testenv.SkipUnavailable(t, xmppserver.ProsodyAvailable(""))
	cmd, r, pid := startStackBinary(t, buildStack(t))
	_ = r.Close() // tee is gone
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Errorf("the stack was killed by %v, want it to stop by itself (err %v)", ws.Signal(), err)
	}
	waitGone(t, pid, "after Ctrl-C with a closed stdout")
}

// A stack killed outright (SIGKILL) does not leave its Prosody behind.
func TestStackKilledLeavesNoProsody(t *testing.T) {
	testenv.SkipUnavailable(t, xmppserver.ProsodyAvailable(""))
	cmd, r, pid := startStackBinary(t, buildStack(t))
	defer r.Close()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitGone(t, pid, "after kill -9 of the stack")
}
