package imipserver_test

import (
	"bytes"
	"database/sql"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pressly/goose/v3"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
	"imip-transport/internal/seal"
)

// Distinctive passwords, searched for in the raw files.
const (
	alicePW = "Zebra-Quartz-4711"
	bobPW   = "Ocelot-Mango-0815"
)

func keyOf(path string) imipserver.SQLiteOptions {
	return imipserver.SQLiteOptions{KeyFile: path + ".key"}
}

// rawSealed reads an account's password_sealed with database/sql alone, as
// someone who copied the file would.
func rawSealed(t *testing.T, path, number string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b []byte
	if err := db.QueryRow("SELECT password_sealed FROM accounts WHERE number = ?", number).Scan(&b); err != nil {
		t.Fatalf("raw password_sealed of %s: %v", number, err)
	}
	return b
}

// filesHold reports whether the database file or its WAL holds b.
func filesHold(t *testing.T, path string, b []byte) bool {
	t.Helper()
	for _, p := range []string{path, path + "-wal"} {
		data, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if bytes.Contains(data, b) {
			return true
		}
	}
	return false
}

func putAccounts(t *testing.T, st *imipserver.SQLiteStore) {
	t.Helper()
	for _, a := range []imipserver.Account{
		{Number: alice, Password: alicePW, Nick: "alice"},
		{Number: bob, Password: bobPW, Nick: "bob"},
	} {
		if err := st.PutAccount(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
}

func wantPasswords(t *testing.T, st *imipserver.SQLiteStore) {
	t.Helper()
	for n, pw := range map[string]string{string(alice): alicePW, string(bob): bobPW} {
		if a, err := st.Account(t.Context(), wire.Number(n)); err != nil || a.Password != pw {
			t.Errorf("Account(%s) = %+v, %v; want the password back", n, a, err)
		}
	}
}

func TestSQLitePasswordsSealedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imipd.db")
	var logged bytes.Buffer
	st, err := imipserver.OpenSQLite(t.Context(), path, imipserver.SQLiteOptions{
		KeyFile: path + ".key", Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	putAccounts(t, st)
	wantPasswords(t, st)
	if fi, err := os.Stat(path + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want created with mode 0600", fi, err)
	}
	if !strings.Contains(logged.String(), "key file created") || strings.Contains(logged.String(), "passwords sealed") {
		t.Errorf("log %q lacks the key file's creation, or tells of passwords sealed in a new database", logged.String())
	}
	for round := range 2 { // open, then closed
		b := rawSealed(t, path, string(alice))
		if bytes.Contains(b, []byte(alicePW)) || len(b) != len(alicePW)+seal.Overhead || b[0] != seal.Version {
			t.Errorf("%d: raw password_sealed is %d bytes, version %d, or holds the password", round, len(b), b[0])
		}
		if filesHold(t, path, []byte(alicePW)) || filesHold(t, path, []byte(bobPW)) {
			t.Errorf("%d: the database files hold a clear password", round)
		}
		st.Close()
	}
}

func TestSQLiteWrongOrMissingKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "imipd.db")
	st := openSQLite(t, path)
	putAccounts(t, st)
	st.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.key")
	if _, err := seal.Create(other); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.key")
	for i, tc := range []struct {
		key  string
		want error
	}{{other, seal.ErrWrongKey}, {missing, seal.ErrNoKey}, {"", seal.ErrNoKey}} {
		st, err := imipserver.OpenSQLite(t.Context(), path, imipserver.SQLiteOptions{KeyFile: tc.key})
		if err == nil {
			st.Close()
			t.Errorf("%d: OpenSQLite with key file %q = nil error", i, tc.key)
			continue
		}
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.key) || !strings.HasPrefix(err.Error(), "imipserver: ") {
			t.Errorf("%d: OpenSQLite with key file %q = %v; want imipserver: ... %v naming the file", i, tc.key, err, tc.want)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a new key file was created for a sealed database")
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(before, after) {
		t.Errorf("the refused opens changed the database file (%v)", err)
	}
	st = openSQLite(t, path)
	defer st.Close()
	wantPasswords(t, st)
}

// A sealed password is bound to its account: moved to another, it does not
// open.
func TestSQLiteSwappedPasswordsDoNotOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "imipd.db")
	st := openSQLite(t, path)
	defer st.Close()
	putAccounts(t, st)
	a, b := rawSealed(t, path, string(alice)), rawSealed(t, path, string(bob))
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for n, v := range map[string][]byte{string(alice): b, string(bob): a} {
		if _, err := db.Exec("UPDATE accounts SET password_sealed = ? WHERE number = ?", v, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{string(alice), string(bob)} {
		acct, err := st.Account(t.Context(), wire.Number(n))
		if !errors.Is(err, seal.ErrOpen) || !strings.Contains(err.Error(), n) {
			t.Errorf("Account(%s) after the swap = %+v, %v; want seal.ErrOpen naming the number", n, acct, err)
		}
		if err != nil && (strings.Contains(err.Error(), alicePW) || strings.Contains(err.Error(), bobPW)) {
			t.Errorf("the error quotes a password: %v", err)
		}
	}
}

func TestSQLiteRotateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "imipd.db")
	st := openSQLite(t, path)
	putAccounts(t, st)
	st.Close()
	oldSealed := rawSealed(t, path, string(alice))
	oldKey, err := os.ReadFile(path + ".key")
	if err != nil {
		t.Fatal(err)
	}
	oldKeyFile := filepath.Join(dir, "old.key")
	if err := os.WriteFile(oldKeyFile, oldKey, 0o600); err != nil {
		t.Fatal(err)
	}

	n, err := imipserver.RotateSQLiteKey(t.Context(), path, keyOf(path))
	if err != nil || n != 2 {
		t.Fatalf("RotateSQLiteKey = %d, %v; want 2 re-sealed", n, err)
	}
	if filesHold(t, path, oldSealed) {
		t.Errorf("the value sealed under the old key is still in the files")
	}
	if _, err := os.Stat(path + ".key" + seal.NewSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the staged key file was left: %v", err)
	}
	if st, err := imipserver.OpenSQLite(t.Context(), path, imipserver.SQLiteOptions{KeyFile: oldKeyFile}); !errors.Is(err, seal.ErrWrongKey) {
		if st != nil {
			st.Close()
		}
		t.Errorf("OpenSQLite with the old key = %v, want seal.ErrWrongKey", err)
	}
	st = openSQLite(t, path)
	wantPasswords(t, st)

	// Rotated by another process while open: no password is sealed under
	// the old key afterwards.
	if _, err := imipserver.RotateSQLiteKey(t.Context(), path, keyOf(path)); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAccount(t.Context(), imipserver.Account{Number: carol, Password: "c", Nick: "carol"}); !errors.Is(err, seal.ErrWrongKey) {
		t.Errorf("PutAccount after a rotation elsewhere = %v, want seal.ErrWrongKey", err)
	}
	st.Close()

	// Committed, not renamed: the next open completes the rotation.
	newKey, err := os.ReadFile(path + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".key"+seal.NewSuffix, newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".key", oldKey, 0o600); err != nil {
		t.Fatal(err)
	}
	st = openSQLite(t, path)
	defer st.Close()
	wantPasswords(t, st)
	if got, err := os.ReadFile(path + ".key"); err != nil || !bytes.Equal(got, newKey) {
		t.Errorf("the key file was not replaced by the staged key: %v", err)
	}

	if _, err := imipserver.RotateSQLiteKey(t.Context(), filepath.Join(dir, "absent.db"), keyOf(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RotateSQLiteKey of a missing database = %v", err)
	}
	if _, err := imipserver.RotateSQLiteKey(t.Context(), path, imipserver.SQLiteOptions{KeyFile: filepath.Join(dir, "absent.key")}); !errors.Is(err, seal.ErrNoKey) {
		t.Errorf("RotateSQLiteKey with a missing key file = %v, want seal.ErrNoKey", err)
	}
}

// A database of imipd before sealing (the legacy user_version schema, and
// goose version 1) has its clear passwords sealed at open, and none is left
// in its files.
func TestSQLiteSealsClearDatabase(t *testing.T) {
	for _, gooseV1 := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "imipd.db")
		createLegacy(t, path, 1,
			`INSERT INTO accounts (number, password, nick) VALUES ('1001001', 'old-`+alicePW+`', 'alice'), ('1002002', '`+bobPW+`', 'bob')`,
			`UPDATE accounts SET password = '`+alicePW+`' WHERE number = '1001001'`,
		)
		if gooseV1 { // the release before sealing ran goose's 00001_init.sql
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			p, err := goose.NewProvider(goose.DialectSQLite3, db, os.DirFS("migrations"), goose.WithDisableGlobalRegistry(true))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.UpTo(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}
		if !filesHold(t, path, []byte(alicePW)) {
			t.Fatal("the clear database does not hold the password: the test proves nothing")
		}
		var logged bytes.Buffer
		st, err := imipserver.OpenSQLite(t.Context(), path, imipserver.SQLiteOptions{
			KeyFile: path + ".key", Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		if err != nil {
			t.Fatalf("goose v1 %v: %v", gooseV1, err)
		}
		wantPasswords(t, st)
		if v, err := st.SchemaVersion(t.Context()); err != nil || v != latestSchema {
			t.Errorf("goose v1 %v: schema version %d, %v", gooseV1, v, err)
		}
		if !strings.Contains(logged.String(), "passwords sealed") || !strings.Contains(logged.String(), "count=2") {
			t.Errorf("goose v1 %v: log %q does not tell of the 2 passwords sealed", gooseV1, logged.String())
		}
		for _, pw := range []string{alicePW, bobPW, "old-" + alicePW} {
			if filesHold(t, path, []byte(pw)) || strings.Contains(logged.String(), pw) {
				t.Errorf("goose v1 %v: a clear password is left in the files or the log", gooseV1)
			}
		}
		st.Close()
	}
}
