package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"imip-transport/gateway"
	"imip-transport/gateway/sqlitestore"
	"imip-transport/internal/seal"
)

const (
	secretFileWarning = "secret file is readable by group or others; it holds the component secret"
	inlineWarning     = "config file holds the component secret (xmpp.secret) and is readable by group or others"
	keyFileWarning    = "key file is readable by group or others; it unseals the stored IMIP passwords"
)

// writeMode writes a file and gives it mode, whatever the umask.
func writeMode(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// secretsConfig is a configuration in dir whose secret is inline (secret
// file "") or in secretFile, with its store and key file in dir.
func secretsConfig(dir, secretFile string) string {
	secret := `secret = "inline-secret"`
	if secretFile != "" {
		secret = fmt.Sprintf("secret_file = %q", secretFile)
	}
	return fmt.Sprintf(`[xmpp]
component = "gw.example"
server = "127.0.0.1:5347"
%s
[imip]
server = "127.0.0.1:11319"
[storage]
driver = "sqlite"
path = %q
key_file = %q
`, secret, filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.key"))
}

func TestPermissionWarnings(t *testing.T) {
	for i, tc := range []struct {
		name                         string
		inline                       bool
		cfgMode, secretMode, keyMode os.FileMode // keyMode 0: no key file yet
		want                         []string
	}{
		{"all private, inline", true, 0o600, 0, 0o600, nil},
		{"all private, secret file", false, 0o644, 0o600, 0o600, nil},
		{"inline secret in a readable config", true, 0o644, 0, 0, []string{inlineWarning}},
		{"group-readable inline config", true, 0o640, 0, 0, []string{inlineWarning}},
		{"readable secret file", false, 0o600, 0o644, 0, []string{secretFileWarning}},
		{"readable key file", false, 0o600, 0o600, 0o644, []string{keyFileWarning}},
		{"everything readable", true, 0o644, 0, 0o604, []string{inlineWarning, keyFileWarning}},
		{"secret file and key", false, 0o644, 0o640, 0o644, []string{secretFileWarning, keyFileWarning}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			secretFile := ""
			if !tc.inline {
				secretFile = filepath.Join(dir, "secret")
				writeMode(t, secretFile, "file-secret\n", tc.secretMode)
			}
			cfg := filepath.Join(dir, "config.toml")
			writeMode(t, cfg, secretsConfig(dir, secretFile), tc.cfgMode)
			if tc.keyMode != 0 {
				if _, err := seal.Create(filepath.Join(dir, "gw.key")); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(dir, "gw.key"), tc.keyMode); err != nil {
					t.Fatal(err)
				}
			}
			var out, errb bytes.Buffer
			if code := run([]string{"-config", cfg, "-check-config"}, &out, &errb); code != 0 {
				t.Fatalf("%d: -check-config exit %d: %s", i, code, errb.String())
			}
			if !strings.Contains(out.String(), "configuration ok") {
				t.Errorf("%d: stdout %q", i, out.String())
			}
			if got := strings.Count(errb.String(), "imip-transport: warning: "); got != len(tc.want) {
				t.Errorf("%d: %d warnings, want %d: %q", i, got, len(tc.want), errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("%d: stderr %q lacks %q", i, errb.String(), w)
				}
			}
			if strings.Contains(errb.String(), "inline-secret") || strings.Contains(errb.String(), "file-secret") {
				t.Errorf("%d: the warnings quote the secret", i)
			}
		})
	}

	// The exact line, with the path and the mode.
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	writeMode(t, secretFile, "file-secret\n", 0o644)
	cfg := filepath.Join(dir, "config.toml")
	writeMode(t, cfg, secretsConfig(dir, secretFile), 0o644)
	var errb bytes.Buffer
	run([]string{"-config", cfg, "-check-config"}, &bytes.Buffer{}, &errb)
	if want := "imip-transport: warning: " + secretFileWarning + ": " + secretFile + " (mode -rw-r--r--)\n"; errb.String() != want {
		t.Errorf("stderr %q, want %q", errb.String(), want)
	}
}

// The warnings are logged at start too, before the store opens.
func TestPermissionWarningsAtStart(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	writeMode(t, secretFile, "file-secret\n", 0o644)
	cfg := filepath.Join(dir, "config.toml")
	text := strings.Replace(secretsConfig(dir, secretFile), filepath.Join(dir, "gw.db"), filepath.Join(dir, "missing", "gw.db"), 1)
	writeMode(t, cfg, text, 0o600)
	var errb bytes.Buffer
	if code := run([]string{"-config", cfg}, &bytes.Buffer{}, &errb); code != 1 {
		t.Fatalf("exit %d, want 1 (the store's directory is missing): %s", code, errb.String())
	}
	want := `level=WARN msg="` + secretFileWarning + `" path=` + secretFile + " mode=-rw-r--r--"
	if !strings.Contains(errb.String(), want) {
		t.Errorf("log %q lacks %q", errb.String(), want)
	}
}

func TestRotateKeyCommand(t *testing.T) {
	dir := t.TempDir()
	// rotate-key does not read the secret file: it may run where the
	// service's credential is not readable.
	cfg := filepath.Join(dir, "config.toml")
	writeMode(t, cfg, secretsConfig(dir, filepath.Join(dir, "absent-secret")), 0o600)
	dbPath, keyFile := filepath.Join(dir, "gw.db"), filepath.Join(dir, "gw.key")
	ctx := context.Background()

	var out, errb bytes.Buffer
	if code := run([]string{"rotate-key", "-config", cfg}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "gw.db") {
		t.Errorf("rotate-key without a database: exit %d, stderr %q; want 1 naming the database", code, errb.String())
	}

	st, err := sqlitestore.Open(ctx, dbPath, sqlitestore.Options{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutRegistration(ctx, gateway.Registration{JID: "a@example.org", Number: "1", Password: "rotate-me"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	oldKey, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"rotate-key", "-config", cfg}, &out, &errb); code != 0 {
		t.Fatalf("rotate-key: exit %d: %s", code, errb.String())
	}
	if want := "1 password(s) re-sealed under a new key in " + keyFile; !strings.Contains(out.String(), want) {
		t.Errorf("rotate-key printed %q, want %q", out.String(), want)
	}
	newKey, err := os.ReadFile(keyFile)
	if err != nil || bytes.Equal(oldKey, newKey) {
		t.Fatalf("the key file did not change: %v", err)
	}
	for _, s := range []string{"rotate-me", strings.TrimSpace(string(oldKey)), strings.TrimSpace(string(newKey))} {
		if strings.Contains(out.String()+errb.String(), s) {
			t.Errorf("rotate-key printed a password or a key")
		}
	}

	oldFile := filepath.Join(dir, "old.key")
	writeMode(t, oldFile, string(oldKey), 0o600)
	if st, err := sqlitestore.Open(ctx, dbPath, sqlitestore.Options{KeyFile: oldFile}); !errors.Is(err, seal.ErrWrongKey) {
		if st != nil {
			st.Close()
		}
		t.Errorf("Open with the old key = %v, want seal.ErrWrongKey", err)
	}
	st, err = sqlitestore.Open(ctx, dbPath, sqlitestore.Options{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.Registration(ctx, "a@example.org"); err != nil || r.Password != "rotate-me" {
		t.Errorf("after rotate-key: %+v, %v", r, err)
	}
	st.Close()

	// A wrong key file is refused, named, and the database keeps its key.
	writeMode(t, cfg, strings.Replace(secretsConfig(dir, ""), keyFile, oldFile, 1), 0o600)
	errb.Reset()
	if code := run([]string{"rotate-key", "-config", cfg}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), oldFile) || !strings.Contains(errb.String(), "does not open") {
		t.Errorf("rotate-key with the old key: exit %d, stderr %q", code, errb.String())
	}
	if code := run([]string{"rotate-key", "-config", cfg, "extra"}, &out, &errb); code != 2 {
		t.Errorf("rotate-key with an extra argument: exit %d, want 2", code)
	}
}
