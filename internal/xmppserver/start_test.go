package xmppserver_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"imip-transport/internal/testenv"
	"imip-transport/internal/xmppserver"
)

// A configuration Prosody rejects makes StartProsody fail fast, and the
// error carries what Prosody printed.
func TestStartProsodyBadConfig(t *testing.T) {
	testenv.SkipUnavailable(t, xmppserver.ProsodyAvailable(""))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	srv, err := xmppserver.StartProsody(ctx, xmppserver.ProsodyOptions{
		Dir:         t.TempDir(),
		ExtraConfig: "this is not lua (",
	})
	if err == nil {
		_ = srv.Close(ctx)
		t.Fatal("StartProsody with a broken config succeeded")
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("failure took %v", d)
	}
	if !strings.Contains(err.Error(), "prosody.out") || !strings.Contains(err.Error(), "prosody.cfg.lua") {
		t.Errorf("error lacks the log tail naming the config: %v", err)
	}
}

func TestStartProsodyMissingBinary(t *testing.T) {
	_, err := xmppserver.StartProsody(context.Background(), xmppserver.ProsodyOptions{Binary: "/nonexistent/prosody"})
	if err == nil {
		t.Fatal("StartProsody with a missing binary succeeded")
	}
	if !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "not installed") {
		t.Errorf("error = %v, want a not-installed error", err)
	}
}

func TestAddUserProsodyFile(t *testing.T) {
	testenv.SkipUnavailable(t, xmppserver.ProsodyAvailable(""))
	srv := testenv.Prosody(t, xmppserver.ProsodyOptions{Domain: "localhost"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pw := `p"w\]]--ü` // SASLprep forbids control characters, so no newline.
	if err := srv.AddUser(ctx, "Bob.Smith", pw); err != nil {
		t.Fatal(err)
	}
	// Lower-cased like nodeprep; the odd password survives Lua quoting.
	testenv.DialClient(ctx, t, srv, "bob.smith", pw, "")
}

// ejabberd refuses an unknown module at startup; StartEjabberd must notice
// the node's exit, clean up and return the log tail.
func TestStartEjabberdBadConfig(t *testing.T) {
	_, err := xmppserver.EjabberdAvailable("")
	testenv.SkipUnavailable(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	srv, err := xmppserver.StartEjabberd(ctx, xmppserver.EjabberdOptions{
		ExtraModules: []string{"mod_does_not_exist"},
	})
	if err == nil {
		_ = srv.Close(ctx)
		t.Fatal("StartEjabberd with an unknown module succeeded")
	}
	t.Logf("failed after %v", time.Since(began))
	if !strings.Contains(err.Error(), "mod_does_not_exist") {
		t.Errorf("error lacks the log tail naming the module: %v", err)
	}
}

// A fixed port that is already taken fails the start quickly with
// Prosody's own message, instead of probing whoever holds the port.
func TestStartProsodyPortTaken(t *testing.T) {
	testenv.SkipUnavailable(t, xmppserver.ProsodyAvailable(""))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	srv, err := xmppserver.StartProsody(ctx, xmppserver.ProsodyOptions{
		Dir:     t.TempDir(),
		C2SPort: ln.Addr().(*net.TCPAddr).Port,
	})
	if err == nil {
		_ = srv.Close(ctx)
		t.Fatal("StartProsody on a taken port succeeded")
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("failure took %v", d)
	}
	if !strings.Contains(err.Error(), "Failed to open server port") {
		t.Errorf("error lacks Prosody's port message: %v", err)
	}
}
