package sqlitestore

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
	"testing/fstest"

	"github.com/pressly/goose/v3"

	"imip-transport/gateway"
	"imip-transport/internal/seal"
)

// Distinctive passwords, searched for in the raw files.
const (
	alicePW = "Zebra-Quartz-4711"
	bobPW   = "Ocelot-Mango-0815"
)

func sealedAlice() gateway.Registration {
	return gateway.Registration{JID: "alice@localhost", Number: "6340564", Password: alicePW}
}

func sealedBob() gateway.Registration {
	return gateway.Registration{JID: "bob@localhost", Number: "5", Password: bobPW}
}

// rawDB opens the file with database/sql alone, as someone who copied it
// would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fileBytes returns the database file and its WAL, as a copy would hold
// them.
func fileBytes(t *testing.T, path string) []byte {
	t.Helper()
	var all []byte
	for _, p := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

func rawSealed(t *testing.T, db *sql.DB, jid string) []byte {
	t.Helper()
	var b []byte
	if err := db.QueryRowContext(ctx, "SELECT password_sealed FROM registrations WHERE jid = ?", jid).Scan(&b); err != nil {
		t.Fatalf("raw password_sealed of %s: %v", jid, err)
	}
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPasswordsSealedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw.db")
	var logged bytes.Buffer
	s, err := Open(ctx, path, Options{KeyFile: keyFor(path), Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, sealedAlice())
	if r, err := s.Registration(ctx, "alice@localhost"); err != nil || r.Password != alicePW {
		t.Errorf("Registration = %+v, %v; want the clear password back", r, err)
	}
	if fi, err := os.Stat(keyFor(path)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want created with mode 0600", fi, err)
	}
	if !strings.Contains(logged.String(), "storage key file created") || strings.Contains(logged.String(), "passwords sealed") {
		t.Errorf("log %q lacks the key file's creation, or tells of passwords sealed in a new database", logged.String())
	}

	// Read while the store is open (the value is in the WAL) and after.
	for round := range 2 {
		db := rawDB(t, path)
		b := rawSealed(t, db, "alice@localhost")
		if bytes.Contains(b, []byte(alicePW)) || len(b) != len(alicePW)+seal.Overhead || b[0] != seal.Version {
			t.Errorf("%d: raw password_sealed is %d bytes, version %d, or holds the password", round, len(b), b[0])
		}
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM pragma_table_info('registrations') WHERE name = 'password'").Scan(&n); err != nil || n != 0 {
			t.Errorf("%d: registrations still has a password column: %d, %v", round, n, err)
		}
		db.Close()
		if bytes.Contains(fileBytes(t, path), []byte(alicePW)) {
			t.Errorf("%d: the database files hold the clear password", round)
		}
		s.Close()
	}
	if strings.Contains(logged.String(), alicePW) {
		t.Errorf("the log holds the password")
	}
}

// A database sealed under one key, opened with another, fails with an
// error naming the key file, and is left as it was.
func TestWrongKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.db")
	s := openAt(t, path)
	mustPut(t, s, sealedAlice())
	s.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	other := filepath.Join(dir, "other.key")
	if _, err := seal.Create(other); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, path, Options{KeyFile: other})
	if err == nil {
		s2.Close()
		t.Fatal("Open with another key = nil error")
	}
	if !errors.Is(err, seal.ErrWrongKey) || !strings.Contains(err.Error(), other) || !strings.HasPrefix(err.Error(), "sqlitestore: ") {
		t.Errorf("Open with another key = %v; want sqlitestore: ... seal.ErrWrongKey naming %s", err, other)
	}

	missing := filepath.Join(dir, "missing.key")
	if s2, err := Open(ctx, path, Options{KeyFile: missing}); !errors.Is(err, seal.ErrNoKey) || !strings.Contains(err.Error(), missing) {
		if s2 != nil {
			s2.Close()
		}
		t.Errorf("Open with a missing key file = %v; want seal.ErrNoKey naming %s", err, missing)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a new key file was created for a sealed database")
	}
	if s2, err := Open(ctx, path, Options{}); err == nil {
		s2.Close()
		t.Errorf("Open without a key file = nil error")
	}

	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Errorf("the refused opens changed the database file (%v)", err)
	}
	s = openAt(t, path)
	if r, err := s.Registration(ctx, "alice@localhost"); err != nil || r.Password != alicePW {
		t.Errorf("with the right key: %+v, %v", r, err)
	}
}

// A sealed value is bound to its row: moved to another registration, it
// does not open.
func TestSwappedSealedValuesDoNotOpen(t *testing.T) {
	s, path := openTemp(t)
	mustPut(t, s, sealedAlice())
	mustPut(t, s, sealedBob())
	db := rawDB(t, path)
	a, b := rawSealed(t, db, "alice@localhost"), rawSealed(t, db, "bob@localhost")
	for jid, v := range map[string][]byte{"alice@localhost": b, "bob@localhost": a} {
		if _, err := db.ExecContext(ctx, "UPDATE registrations SET password_sealed = ? WHERE jid = ?", v, jid); err != nil {
			t.Fatal(err)
		}
	}
	for _, jid := range []string{"alice@localhost", "bob@localhost"} {
		r, err := s.Registration(ctx, jid)
		if !errors.Is(err, seal.ErrOpen) || !strings.Contains(err.Error(), jid) {
			t.Errorf("Registration(%s) after the swap = %+v, %v; want seal.ErrOpen naming the JID", jid, r, err)
		}
		if err != nil && (strings.Contains(err.Error(), alicePW) || strings.Contains(err.Error(), bobPW)) {
			t.Errorf("the error quotes a password: %v", err)
		}
	}
	if rs, err := s.Registrations(ctx); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Registrations after the swap = %v, %v; want seal.ErrOpen", rs, err)
	}
}

func TestRotateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.db")
	s := openAt(t, path)
	mustPut(t, s, sealedAlice())
	mustPut(t, s, sealedBob())
	db := rawDB(t, path)
	oldSealed := rawSealed(t, db, "alice@localhost")
	db.Close()
	s.Close()
	oldKey := filepath.Join(dir, "old.key")
	copyFile(t, keyFor(path), oldKey)

	n, err := RotateKey(ctx, path, Options{KeyFile: keyFor(path)})
	if err != nil || n != 2 {
		t.Fatalf("RotateKey = %d, %v; want 2 re-sealed", n, err)
	}
	if _, err := os.Stat(keyFor(path) + seal.NewSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the staged key file was left: %v", err)
	}
	if fi, err := os.Stat(keyFor(path)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new key file: %v, %v; want mode 0600", fi, err)
	}
	if bytes.Contains(fileBytes(t, path), oldSealed) {
		t.Errorf("the value sealed under the old key is still in the files")
	}

	s2, err := Open(ctx, path, Options{KeyFile: oldKey})
	if err == nil {
		s2.Close()
		t.Fatal("the old key still opens the database")
	}
	if !errors.Is(err, seal.ErrWrongKey) {
		t.Errorf("Open with the old key = %v, want seal.ErrWrongKey", err)
	}

	s = openAt(t, path)
	for _, want := range []gateway.Registration{sealedAlice(), sealedBob()} {
		if r, err := s.Registration(ctx, want.JID); err != nil || r.Password != want.Password || r.Number != want.Number {
			t.Errorf("after the rotation, Registration(%s) = %+v, %v", want.JID, r, err)
		}
	}
	s.Close()

	// A rotation that committed and stopped before the rename: the key file
	// holds the old key, the ".new" file the new one. Open completes it.
	copyFile(t, keyFor(path), keyFor(path)+seal.NewSuffix)
	copyFile(t, oldKey, keyFor(path))
	var logged bytes.Buffer
	s3, err := Open(ctx, path, Options{KeyFile: keyFor(path), Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatalf("Open after an interrupted rotation: %v", err)
	}
	if r, err := s3.Registration(ctx, "bob@localhost"); err != nil || r.Password != bobPW {
		t.Errorf("after recovery: %+v, %v", r, err)
	}
	s3.Close()
	if !strings.Contains(logged.String(), "interrupted") {
		t.Errorf("log %q does not tell of the completed rotation", logged.String())
	}
	if _, err := os.Stat(keyFor(path) + seal.NewSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the staged key file was left after recovery: %v", err)
	}
	openAt(t, path).Close() // the key file itself opens it now
}

func TestRotateKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.db")
	if _, err := RotateKey(ctx, path, Options{KeyFile: keyFor(path)}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RotateKey of a missing database = %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RotateKey created the database")
	}
	openAt(t, path).Close()
	if _, err := RotateKey(ctx, path, Options{KeyFile: filepath.Join(dir, "absent.key")}); !errors.Is(err, seal.ErrNoKey) {
		t.Errorf("RotateKey with a missing key file = %v, want seal.ErrNoKey", err)
	}
	// A leftover staged key (a rotation that failed before its commit) is
	// not overwritten; the database keeps its key.
	if err := os.WriteFile(keyFor(path)+seal.NewSuffix, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RotateKey(ctx, path, Options{KeyFile: keyFor(path)}); err == nil || !strings.Contains(err.Error(), "another rotation") {
		t.Errorf("RotateKey with a staged key present = %v, want a refusal", err)
	}
	openAt(t, path).Close()
}

// A store left open while another process rotates the key refuses to seal
// passwords under its old key.
func TestRotationUnderAnOpenStore(t *testing.T) {
	s, path := openTemp(t)
	mustPut(t, s, sealedAlice())
	if _, err := RotateKey(ctx, path, Options{KeyFile: keyFor(path)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRegistration(ctx, sealedBob()); !errors.Is(err, seal.ErrWrongKey) || !strings.Contains(err.Error(), "rotate-key") {
		t.Errorf("PutRegistration after a rotation elsewhere = %v, want seal.ErrWrongKey", err)
	}
	if _, err := s.Registration(ctx, "alice@localhost"); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Registration after a rotation elsewhere = %v, want seal.ErrOpen", err)
	}
	s.Close()
	s = openAt(t, path)
	if _, err := s.Registration(ctx, "bob@localhost"); !errors.Is(err, gateway.ErrNotFound) {
		t.Errorf("the refused registration was stored: %v", err)
	}
}

// A database of version 2 with clear passwords is sealed when opened with a
// key, and no clear password is left in its files.
func TestSealClearDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw.db")
	if err := prepareFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	sqlFS := fstest.MapFS{}
	for _, name := range []string{"00001_init.sql", "00002_queues.sql"} {
		b, err := fs.ReadFile(migrations, "migrations/"+name)
		if err != nil {
			t.Fatal(err)
		}
		sqlFS[name] = &fstest.MapFile{Data: b}
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sqlFS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO registrations (jid, number, password, allow_remove, created, updated, online)
			VALUES ('alice@localhost', '6340564', '` + alicePW + `', 0, 1000, 2000, 1)`,
		`INSERT INTO registrations (jid, number, password, allow_remove, created, updated)
			VALUES ('bob@localhost', '5', 'old-` + bobPW + `', 0, 1000, 2000)`,
		// An older password, overwritten: its bytes stay in the file's
		// pages until they are rewritten.
		`UPDATE registrations SET password = '` + bobPW + `' WHERE jid = 'bob@localhost'`,
		`INSERT INTO messages (jid, dir, peer, body, accepted) VALUES ('alice@localhost', 1, '5', 'hi', 3000)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	if !bytes.Contains(fileBytes(t, path), []byte(alicePW)) {
		t.Fatal("the clear database does not hold the password: the test proves nothing")
	}

	var logged bytes.Buffer
	s, err := Open(ctx, path, Options{KeyFile: keyFor(path), Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []gateway.Registration{sealedAlice(), sealedBob()} {
		if r, err := s.Registration(ctx, want.JID); err != nil || r.Password != want.Password {
			t.Errorf("Registration(%s) = %+v, %v", want.JID, r, err)
		}
	}
	if got := mustJIDs(t, s.OnlineJIDs, "OnlineJIDs"); len(got) != 1 {
		t.Errorf("OnlineJIDs = %q, want alice", got)
	}
	if got := mustMessages(t, s, "alice@localhost"); len(got) != 1 || got[0].Body != "hi" {
		t.Errorf("Messages = %+v", got)
	}
	if !strings.Contains(logged.String(), "passwords sealed") || !strings.Contains(logged.String(), "count=2") {
		t.Errorf("log %q does not tell of the 2 passwords sealed", logged.String())
	}
	for _, pw := range []string{alicePW, bobPW, "old-" + bobPW} {
		if bytes.Contains(fileBytes(t, path), []byte(pw)) || strings.Contains(logged.String(), pw) {
			t.Errorf("a clear password is left in the files or the log")
		}
	}
	s.Close()
	for _, pw := range []string{alicePW, bobPW} {
		if bytes.Contains(fileBytes(t, path), []byte(pw)) {
			t.Errorf("a clear password is in the files after Close")
		}
	}
}
