package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExampleAccountsDecode(t *testing.T) {
	f, err := os.Open("accounts.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	accts, err := imipserver.DecodeAccounts(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(accts) != 2 || accts[0].Number != "1001001" || accts[1].Nick != "bob" {
		t.Errorf("accounts %+v", accts)
	}
}

func TestAddAccount(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	key := filepath.Join(t.TempDir(), "imipd.key")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name    string
		args    []string
		stdin   string
		ok      bool
		wantPW  string
		warning bool
	}{
		{"stdin", []string{"-number", "1001", "-nick", "a", "-password-stdin"}, "from-stdin\r\nignored", true, "from-stdin", false},
		{"file", []string{"-number", "1002", "-nick", "b", "-password-file", pwFile}, "", true, "from-file", false},
		{"argv warns", []string{"-number", "1003", "-password", "argv-pw"}, "", true, "argv-pw", true},
		{"no password", []string{"-number", "1004"}, "", false, "", false},
		{"two sources", []string{"-number", "1005", "-password", "x", "-password-stdin"}, "y", false, "", false},
		{"bad number", []string{"-number", "12a", "-password-stdin"}, "x", false, "", false},
		{"empty stdin", []string{"-number", "1006", "-password-stdin"}, "", false, "", false},
		{"quote in nick", []string{"-number", "1007", "-nick", `a"b`, "-password-stdin"}, "x", false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"add-account", "-data", dir, "-key-file", key}, tc.args...)
			code := run(t.Context(), args, strings.NewReader(tc.stdin), &out, &errOut, nil)
			if (code == 0) != tc.ok {
				t.Fatalf("%d: exit %d, stderr %q", i, code, errOut.String())
			}
			if strings.Contains(errOut.String(), "warning") != tc.warning {
				t.Errorf("%d: stderr %q, warning wanted: %v", i, errOut.String(), tc.warning)
			}
			if !tc.ok {
				return
			}
			st, err := imipserver.OpenSQLite(t.Context(), filepath.Join(dir, dbName), imipserver.SQLiteOptions{KeyFile: key})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			a, err := st.Account(t.Context(), wire.Number(tc.args[1]))
			if err != nil || a.Password != tc.wantPW {
				t.Errorf("%d: stored %+v, %v; want password %q", i, a, err, tc.wantPW)
			}
			if strings.Contains(out.String()+errOut.String(), tc.wantPW) {
				t.Errorf("%d: the password was printed", i)
			}
		})
	}
	for i, tc := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {filepath.Join(dir, dbName), 0o600}, {key, 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != tc.mode {
			t.Errorf("%d: %s mode %v, want %v", i, tc.path, fi.Mode().Perm(), tc.mode)
		}
	}
}

func TestServeFlagsErrors(t *testing.T) {
	key := filepath.Join(t.TempDir(), "imipd.key")
	for i, args := range [][]string{
		{"-key-file", key},     // no -data
		{"-data", t.TempDir()}, // no -key-file
		{"-data", t.TempDir(), "-key-file", key, "-log-level", "loud"},
		{"-data", t.TempDir(), "-key-file", key, "-keepalive", "10ms"},
		{"-data", t.TempDir(), "-key-file", key, "-max-block-size", "10"},
		{"-data", t.TempDir(), "-key-file", key, "-delivery-window", "0"},
		{"-data", t.TempDir(), "-key-file", key, "extra"},
		{"-data", t.TempDir(), "-key-file", key, "-accounts", "does-not-exist.toml"},
		{"-data", t.TempDir(), "-key-file", filepath.Join(t.TempDir(), "missing", "imipd.key")},
		{"add-account", "-data", t.TempDir(), "-number", "1001", "-password", "x"}, // no -key-file
		{"rotate-key", "-data", t.TempDir()},
		{"rotate-key", "-data", t.TempDir(), "-key-file", key}, // no database
	} {
		var errOut bytes.Buffer
		if code := run(t.Context(), args, nil, &bytes.Buffer{}, &errOut, nil); code == 0 || errOut.Len() == 0 {
			t.Errorf("%d: %v: exit %d, stderr %q; want a failure with a message", i, args, code, errOut.String())
		}
	}
}

// TestVersion: -version prints the version and exits 0 without -data or
// -key-file.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"-version"}, nil, &out, &errOut, nil); code != 0 || !strings.HasPrefix(out.String(), "imipd ") || errOut.Len() != 0 {
		t.Errorf("-version: exit %d, stdout %q, stderr %q; want 0 and \"imipd VERSION\"", code, out.String(), errOut.String())
	}
}

// TestServe runs imipd in process, logs in with a demo account, then
// cancels (as SIGTERM does) and checks a clean exit.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-accounts", "accounts.example.toml",
			"-data", filepath.Join(t.TempDir(), "d"), "-key-file", filepath.Join(t.TempDir(), "imipd.key"),
			"-log-level", "debug"}, nil, &bytes.Buffer{}, &errOut, ready)
	}()
	var addr net.Addr
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("imipd exited %d: %s", code, errOut.String())
	}
	nc, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	rd, w := wire.NewReader(nc, wire.Limits{}), wire.NewWriter(nc)
	var b wire.Block
	w.WriteBlock(&wire.Block{Type: "HELO", Headers: []wire.Header{{Name: "ID", Value: "1001"}}})
	if err := rd.ReadBlock(&b); err != nil {
		t.Fatal(err)
	}
	salt := string(b.Body)
	w.WriteBlock(&wire.Block{Type: "LOGN", Arg: "1001001", Headers: []wire.Header{{Name: "ID", Value: "1002"}},
		Body: []byte(wire.AuthDigest(salt, "alice-demo"))})
	if err := rd.ReadBlock(&b); err != nil || b.TypeLine() != "LOGN 1001001" {
		t.Fatalf("login: %v %q", err, b.TypeLine())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("imipd did not stop")
	}
	if strings.Contains(errOut.String(), "alice-demo") {
		t.Errorf("the log holds a password")
	}
}

func TestRotateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	keyDir := t.TempDir()
	key := filepath.Join(keyDir, "imipd.key")
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"add-account", "-data", dir, "-key-file", key, "-number", "1001", "-nick", "a", "-password-stdin"},
		strings.NewReader("rotate-me\n"), &out, &errOut, nil); code != 0 {
		t.Fatalf("add-account: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "key file created") {
		t.Errorf("add-account did not tell of the new key file: %q", errOut.String())
	}
	oldKey, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}

	out.Reset()
	errOut.Reset()
	if code := run(t.Context(), []string{"rotate-key", "-data", dir, "-key-file", key}, nil, &out, &errOut, nil); code != 0 {
		t.Fatalf("rotate-key: exit %d: %s", code, errOut.String())
	}
	if want := "1 password(s) re-sealed under a new key in " + key; !strings.Contains(out.String(), want) {
		t.Errorf("rotate-key printed %q, want %q", out.String(), want)
	}
	if strings.Contains(out.String()+errOut.String(), "rotate-me") {
		t.Errorf("rotate-key printed the password")
	}
	newKey, err := os.ReadFile(key)
	if err != nil || bytes.Equal(newKey, oldKey) {
		t.Fatalf("the key file did not change: %v", err)
	}
	if strings.Contains(out.String()+errOut.String(), strings.TrimSpace(string(newKey))) {
		t.Errorf("rotate-key printed the key")
	}

	oldFile := filepath.Join(keyDir, "old.key")
	if err := os.WriteFile(oldFile, oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := imipserver.OpenSQLite(t.Context(), filepath.Join(dir, dbName), imipserver.SQLiteOptions{KeyFile: oldFile}); err == nil {
		st.Close()
		t.Errorf("the old key still opens the database")
	}
	st, err := imipserver.OpenSQLite(t.Context(), filepath.Join(dir, dbName), imipserver.SQLiteOptions{KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if a, err := st.Account(t.Context(), "1001"); err != nil || a.Password != "rotate-me" {
		t.Errorf("after rotate-key: %+v, %v", a, err)
	}

	// A wrong key is refused, naming the file.
	errOut.Reset()
	if code := run(t.Context(), []string{"rotate-key", "-data", dir, "-key-file", oldFile}, nil, &out, &errOut, nil); code == 0 ||
		!strings.Contains(errOut.String(), oldFile) || !strings.Contains(errOut.String(), "does not open") {
		t.Errorf("rotate-key with the old key: exit %d, stderr %q", code, errOut.String())
	}
}

// imipd warns about a key file that group or others may read.
func TestKeyFileWarning(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	key := filepath.Join(t.TempDir(), "imipd.key")
	args := []string{"add-account", "-data", dir, "-key-file", key, "-number", "1001", "-password-stdin"}
	var errOut bytes.Buffer
	if code := run(t.Context(), args, strings.NewReader("x\n"), &bytes.Buffer{}, &errOut, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "readable by others") {
		t.Errorf("warning for a 0600 key file: %q", errOut.String())
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run(t.Context(), args, strings.NewReader("x\n"), &bytes.Buffer{}, &errOut, nil); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if want := "imipd: key file is readable by others; it unseals the passwords"; !strings.Contains(errOut.String(), want) ||
		!strings.Contains(errOut.String(), "mode=-rw-r--r--") {
		t.Errorf("stderr %q lacks %q with the mode", errOut.String(), want)
	}
}
