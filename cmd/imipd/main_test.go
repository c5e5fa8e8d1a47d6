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
			args := append([]string{"add-account", "-data", dir}, tc.args...)
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
			st, err := imipserver.OpenSQLite(t.Context(), filepath.Join(dir, dbName))
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
	}{{dir, 0o700}, {filepath.Join(dir, dbName), 0o600}} {
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
	for i, args := range [][]string{
		{}, // no -data
		{"-data", t.TempDir(), "-log-level", "loud"},
		{"-data", t.TempDir(), "-keepalive", "10ms"},
		{"-data", t.TempDir(), "-max-block-size", "10"},
		{"-data", t.TempDir(), "-delivery-window", "0"},
		{"-data", t.TempDir(), "extra"},
		{"-data", t.TempDir(), "-accounts", "does-not-exist.toml"},
	} {
		var errOut bytes.Buffer
		if code := run(t.Context(), args, nil, &bytes.Buffer{}, &errOut, nil); code == 0 || errOut.Len() == 0 {
			t.Errorf("%d: %v: exit %d, stderr %q; want a failure with a message", i, args, code, errOut.String())
		}
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
			"-data", filepath.Join(t.TempDir(), "d"), "-log-level", "debug"}, nil, &bytes.Buffer{}, &errOut, ready)
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
