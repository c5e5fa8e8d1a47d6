package seal

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustGenerate(t *testing.T) *Key {
	t.Helper()
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k := mustGenerate(t)
	for i, plain := range []string{"", "pa ss\"wörd'; --", strings.Repeat("x", 5000)} {
		s := k.Seal([]byte(plain), "registrations.password", "alice@localhost")
		if len(s) != len(plain)+Overhead || s[0] != Version {
			t.Errorf("%d: sealed %d bytes, version %d; want %d, %d", i, len(s), s[0], len(plain)+Overhead, Version)
		}
		if plain != "" && bytes.Contains(s, []byte(plain)) {
			t.Errorf("%d: the sealed value holds the plain text", i)
		}
		got, err := k.Open(s, "registrations.password", "alice@localhost")
		if err != nil || string(got) != plain {
			t.Errorf("%d: Open = %q, %v", i, got, err)
		}
		if again := k.Seal([]byte(plain), "registrations.password", "alice@localhost"); bytes.Equal(again, s) {
			t.Errorf("%d: two seals of one value are equal (nonce reused?)", i)
		}
	}
}

// A sealed value opens only for its purpose and its row, under its key,
// unchanged.
func TestOpenRefuses(t *testing.T) {
	k := mustGenerate(t)
	s := k.Seal([]byte("secret"), "p", "alice")
	flipped := bytes.Clone(s)
	flipped[len(flipped)-1] ^= 1
	version := bytes.Clone(s)
	version[0] = 2
	for i, tc := range []struct {
		k            *Key
		sealed       []byte
		purpose, row string
	}{
		0: {k, s, "p", "bob"},   // another row
		1: {k, s, "q", "alice"}, // another column
		2: {k, s, "p\x00alice", ""},
		3: {mustGenerate(t), s, "p", "alice"}, // another key
		4: {k, flipped, "p", "alice"},
		5: {k, version, "p", "alice"},
		6: {k, s[:Overhead-1], "p", "alice"},
		7: {k, nil, "p", "alice"},
	} {
		if got, err := tc.k.Open(tc.sealed, tc.purpose, tc.row); !errors.Is(err, ErrOpen) || got != nil {
			t.Errorf("%d: Open = %q, %v; want ErrOpen", i, got, err)
		}
	}
}

func TestCheck(t *testing.T) {
	k, other := mustGenerate(t), mustGenerate(t)
	c := k.NewCheck()
	if !k.Verifies(c) || other.Verifies(c) || k.Verifies(nil) || k.Verifies(k.Seal([]byte(checkText), "x", "")) {
		t.Errorf("Verifies: own %v, other's %v, nil %v, other purpose %v; want true, false, false, false",
			k.Verifies(c), other.Verifies(c), k.Verifies(nil), k.Verifies(k.Seal([]byte(checkText), "x", "")))
	}
}

func TestCreateAndLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.key")
	k, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if k.Path() != path {
		t.Errorf("Path = %q, want %q", k.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 65 {
		t.Fatalf("key file: %v, %v; want mode 0600, 65 bytes", fi, err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".key-*")); len(tmps) != 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
	l, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := l.Open(k.Seal([]byte("pw"), "p", "r"), "p", "r"); err != nil || string(got) != "pw" {
		t.Errorf("the loaded key does not open what the created one sealed: %q, %v", got, err)
	}
	if _, err := Create(path); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create over an existing key file = %v, want fs.ErrExist", err)
	}
	if l2, err := Load(path); err != nil || !l2.Verifies(k.NewCheck()) {
		t.Errorf("the key file changed after a refused Create: %v", err)
	}
}

func TestLoadFormats(t *testing.T) {
	dir := t.TempDir()
	const hexKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	for i, tc := range []struct {
		text string
		ok   bool
	}{
		0: {hexKey + "\n", true},
		1: {hexKey, true},
		2: {hexKey + "\r\n", true},
		3: {strings.ToUpper(hexKey) + "\n", true},
		4: {hexKey[:62] + "\n", false},
		5: {hexKey + "00\n", false},
		6: {hexKey[:63] + "g\n", false},
		7: {"", false},
		8: {hexKey + "\n" + strings.Repeat(" ", 2000), false},
	} {
		p := filepath.Join(dir, "k")
		if err := os.WriteFile(p, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if (err == nil) != tc.ok {
			t.Errorf("%d: Load = %v, want ok %v", i, err, tc.ok)
		}
		if err != nil && strings.Contains(err.Error(), hexKey[:16]) {
			t.Errorf("%d: the error quotes the key: %v", i, err)
		}
	}
	if _, err := Load(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want fs.ErrNotExist", err)
	}
	if _, err := Load(dir); err == nil {
		t.Errorf("Load(a directory) = nil error")
	}
	p := filepath.Join(dir, "k")
	for i, text := range []string{hexKey + "\n", "nonsense"} {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := CheckFile(p); (err == nil) != (i == 0) {
			t.Errorf("%d: CheckFile = %v", i, err)
		}
	}
}

func TestCreateChecksDirectory(t *testing.T) {
	base := t.TempDir()
	loose := filepath.Join(base, "loose")
	if err := os.Mkdir(loose, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct{ path, want string }{
		0: {filepath.Join(base, "missing", "k"), "no such file"},
		1: {filepath.Join(loose, "k"), "writable by others"},
		2: {filepath.Join(file, "k"), "not a directory"},
	} {
		if _, err := Create(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d: Create(%s) = %v, want an error containing %q", i, tc.path, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(loose, "k")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a key was written in a loose directory: %v", err)
	}
}

func TestUnlock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.key")

	if _, _, err := Unlock(path, nil, false); !errors.Is(err, ErrNoKey) {
		t.Errorf("absent, create false: %v, want ErrNoKey", err)
	}
	k, out, err := Unlock(path, nil, true)
	if err != nil || out != Created {
		t.Fatalf("absent, no check: %v, %v; want Created", out, err)
	}
	check := k.NewCheck()
	if k2, out, err := Unlock(path, check, true); err != nil || out != Loaded || !k2.Verifies(check) {
		t.Errorf("present: %v, %v; want Loaded", out, err)
	}

	other := filepath.Join(dir, "other.key")
	if _, err := Create(other); err != nil {
		t.Fatal(err)
	}
	_, _, err = Unlock(other, check, true)
	if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), other) {
		t.Errorf("wrong key: %v, want ErrWrongKey naming %s", err, other)
	}
	if k2, out, err := Unlock(other, nil, true); err != nil || out != Loaded || k2.Verifies(check) {
		t.Errorf("any key opens a database without a check: %v, %v", out, err)
	}

	missing := filepath.Join(dir, "missing.key")
	if _, _, err := Unlock(missing, check, true); !errors.Is(err, ErrNoKey) || !strings.Contains(err.Error(), "restore") {
		t.Errorf("absent key of a sealed database: %v, want ErrNoKey telling to restore", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a key was created for a sealed database")
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "db.key")
	old, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Stage(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + NewSuffix); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("staged key: %v, %v; want mode 0600", fi, err)
	}
	if _, err := Stage(path); err == nil || !strings.Contains(err.Error(), "another rotation") {
		t.Errorf("second Stage = %v, want a refusal", err)
	}
	if err := s.Discard(); err != nil {
		t.Fatal(err)
	}
	if l, err := Load(path); err != nil || !l.Verifies(old.NewCheck()) {
		t.Errorf("Discard changed the key file: %v", err)
	}

	s, err = Stage(path)
	if err != nil {
		t.Fatal(err)
	}
	newCheck := s.Key.NewCheck() // the database commits here
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if s.Key.Path() != path {
		t.Errorf("committed key's Path = %q, want %q", s.Key.Path(), path)
	}
	l, err := Load(path)
	if err != nil || !l.Verifies(newCheck) || l.Verifies(old.NewCheck()) {
		t.Errorf("after Commit the key file holds the old key: %v", err)
	}
	if _, err := os.Stat(path + NewSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left after Commit", path+NewSuffix)
	}
}

// A rotation that committed the database and stopped before the rename is
// completed by the next Unlock.
func TestUnlockCompletesInterruptedRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.key")
	if _, err := Create(path); err != nil {
		t.Fatal(err)
	}
	s, err := Stage(path)
	if err != nil {
		t.Fatal(err)
	}
	check := s.Key.NewCheck()
	k, out, err := Unlock(path, check, true)
	if err != nil || out != Recovered || !k.Verifies(check) || k.Path() != path {
		t.Fatalf("Unlock = %v, %v; want Recovered with the new key at %s", out, err, path)
	}
	if l, err := Load(path); err != nil || !l.Verifies(check) {
		t.Errorf("the key file does not hold the new key: %v", err)
	}
	if _, err := os.Stat(path + NewSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left after the recovery", path+NewSuffix)
	}
}
