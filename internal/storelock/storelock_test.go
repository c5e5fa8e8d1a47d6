package storelock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("STORELOCK_HOLD") != "" {
		// The helper process: hold the lock until stdin closes.
		l, err := Acquire(os.Getenv("STORELOCK_HOLD"))
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("held\n")
		buf := make([]byte, 1)
		_, _ = os.Stdin.Read(buf)
		_ = l.Release()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

func TestAcquireRelease(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	l, err := Acquire(db)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(db)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("second Acquire: %v, want ErrLocked naming our pid", err)
	}
	if fi, err := os.Stat(Path(db)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, %v; want mode 0600", fi, err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	l2, err := Acquire(db)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = l2.Release()
}

// A lock held by another process refuses us; once that process is gone
// (the kernel releases it), we get it.
func TestOtherProcess(t *testing.T) {
	db := filepath.Join(t.TempDir(), "t.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORELOCK_HOLD="+db)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := stdout.Read(buf)
	if got := string(buf[:n]); got != "held\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper: %q", got)
	}
	_, err = Acquire(db)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("Acquire while another process holds it: %v", err)
	}
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("helper did not exit")
	}
	l, err := Acquire(db)
	if err != nil {
		t.Fatalf("Acquire after the holder exited: %v", err)
	}
	_ = l.Release()
}

func TestShared(t *testing.T) {
	db := filepath.Join(t.TempDir(), "db")
	a, err := AcquireShared(db)
	if err != nil {
		t.Fatal(err)
	}
	b, err := AcquireShared(db)
	if err != nil {
		t.Fatalf("a second shared holder was refused: %v", err)
	}
	if _, err := Acquire(db); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire beside shared holders = %v; want ErrLocked", err)
	}
	_ = a.Release()
	if _, err := Acquire(db); !errors.Is(err, ErrLocked) {
		t.Fatalf("Acquire beside one shared holder = %v; want ErrLocked", err)
	}
	_ = b.Release()
	c, err := Acquire(db)
	if err != nil {
		t.Fatalf("Acquire once the shared holders left: %v", err)
	}
	if _, err := AcquireShared(db); !errors.Is(err, ErrLocked) {
		t.Fatalf("AcquireShared beside Acquire = %v; want ErrLocked", err)
	}
	_ = c.Release()
}
