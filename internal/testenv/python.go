package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Python is the interpreter python3-slixmpp installs for; a python3
// earlier on PATH may be another interpreter without slixmpp.
const Python = "/usr/bin/python3"

var slixmppCheck = sync.OnceValue(func() error {
	if _, err := os.Stat(Python); err != nil {
		return fmt.Errorf("%s not found (run .ci/install-deps.sh): %w", Python, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, Python, "-c", "import slixmpp").CombinedOutput()
	if err != nil {
		return fmt.Errorf("python3-slixmpp not installed (run .ci/install-deps.sh): %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
})

// SlixmppAvailable reports whether /usr/bin/python3 can import slixmpp.
func SlixmppAvailable() error { return slixmppCheck() }

// RunPython writes script to a temporary file and runs it with
// /usr/bin/python3 and args, killing it after timeout (or when ctx ends).
// It returns the combined stdout and stderr; the error is non-nil on a
// non-zero exit or a timeout. It skips or fails t per the skip policy when
// python3-slixmpp is missing.
func RunPython(ctx context.Context, t testing.TB, timeout time.Duration, script string, args ...string) (string, error) {
	t.Helper()
	SkipUnavailable(t, SlixmppAvailable())
	path := filepath.Join(t.TempDir(), "script.py")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatalf("testenv: write python script: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Python, append([]string{"-u", path}, args...)...)
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), fmt.Errorf("testenv: python script: %w (after %v)", ctx.Err(), timeout)
	}
	if err != nil {
		return out.String(), fmt.Errorf("testenv: python script: %w", err)
	}
	return out.String(), nil
}
