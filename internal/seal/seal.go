// Package seal keeps secrets at rest: it seals values with AES-256-GCM
// under a key kept in a key file, apart from the database that holds the
// sealed values.
//
// Both stores use it for the IMIP passwords, which they cannot hash: the
// imip-md5 login hashes a fresh salt with the password itself.
//
// # Format
//
// A sealed value is one version byte (1), a random 96-bit nonce, the
// ciphertext and a 128-bit tag: [Overhead] bytes more than the value.
// The additional data binds the value to what it is (a purpose such as
// "registrations.password") and to its row (a JID, a number): a value
// moved to another row or column does not open.
//
// AES-256-GCM comes from the standard library (no new dependency, and
// hardware-accelerated on amd64 and arm64). Its random nonces limit a key to
// 2^32 sealed values; passwords are sealed when they are stored, which
// happens at registrations and rotations, far below that.
//
// # Key files
//
// A key file holds the 32-byte key as 64 hexadecimal digits and a newline,
// mode 0600. [Create] makes one in a directory that exists and that others
// may not write to, without ever replacing a file that appeared meanwhile. [Unlock] finds the key of a database from its key check (a
// constant sealed under the key, see [Key.NewCheck]), refuses a key that
// does not open it, and completes a rotation interrupted between the
// database's commit and the key file's rename ([Stage]).
//
// The raw key lives in memory only while the cipher is built; then it is
// overwritten. Nothing in this package prints a key or a value.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

// Version is the first byte of every sealed value: AES-256-GCM with a random
// 96-bit nonce.
const Version byte = 1

// Overhead is how many bytes sealing adds to a value.
const Overhead = 1 + 12 + 16

// NewSuffix is appended to a key file's name for the new key of a rotation
// in progress (see [Stage]).
const NewSuffix = ".new"

var (
	// ErrWrongKey is returned, wrapped, when a key does not open a
	// database's key check: the database was sealed under another key.
	ErrWrongKey = errors.New("seal: wrong key")
	// ErrNoKey is returned, wrapped, when a key file is missing and may not
	// be created.
	ErrNoKey = errors.New("seal: no key file")
	// ErrOpen is returned, wrapped, by [Key.Open] for a value that does not
	// open: damaged, sealed under another key, or moved from another row.
	ErrOpen = errors.New("seal: value does not open")
)

// Key is a loaded key. It is safe for concurrent use.
type Key struct {
	aead cipher.AEAD
	path string
}

// Path returns the key file the key was read from or written to ("" for a
// key from [Generate]).
func (k *Key) Path() string { return k.path }

// newKey builds the cipher from raw and overwrites raw.
func newKey(raw []byte, path string) (*Key, error) {
	defer clear(raw)
	if len(raw) != KeySize {
		return nil, fmt.Errorf("seal: key of %d bytes, want %d", len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Key{aead: aead, path: path}, nil
}

// Generate returns a new random key that no file holds.
func Generate() (*Key, error) {
	k, _, err := generate("")
	return k, err
}

// generate returns a new key and its key file's text, which the caller
// must clear.
func generate(path string) (*Key, []byte, error) {
	raw := make([]byte, KeySize)
	if _, err := io.ReadFull(rand.Reader, raw); err != nil {
		return nil, nil, fmt.Errorf("seal: %w", err)
	}
	text := make([]byte, hex.EncodedLen(KeySize)+1)
	hex.Encode(text, raw)
	text[len(text)-1] = '\n'
	k, err := newKey(raw, path)
	if err != nil {
		clear(text)
		return nil, nil, err
	}
	return k, text, nil
}

// ad is the additional data of a value: the version, the purpose and the
// row. Purposes never hold a NUL byte.
func ad(purpose, row string) []byte {
	b := make([]byte, 0, 2+len(purpose)+len(row))
	b = append(b, Version)
	b = append(b, purpose...)
	b = append(b, 0)
	return append(b, row...)
}

// Seal seals plain for the given purpose (a constant naming the column,
// without NUL bytes) and row (the key of the row that holds it).
func (k *Key) Seal(plain []byte, purpose, row string) []byte {
	out := make([]byte, 1, Overhead+len(plain))
	out[0] = Version
	return k.aead.Seal(out, nil, plain, ad(purpose, row))
}

// Open returns the value sealed in sealed for purpose and row, or an error
// wrapping ErrOpen.
func (k *Key) Open(sealed []byte, purpose, row string) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes, shorter than any sealed value", ErrOpen, len(sealed))
	}
	if sealed[0] != Version {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrOpen, sealed[0])
	}
	plain, err := k.aead.Open(nil, nil, sealed[1:], ad(purpose, row))
	if err != nil {
		return nil, fmt.Errorf("%w under key file %s (damaged, sealed under another key, or moved from another row)", ErrOpen, k.path)
	}
	return plain, nil
}

// The key check: a constant sealed under the key, kept in the database, so
// that a wrong key is told apart from a damaged value, also in a database
// without any password.
const (
	checkPurpose = "key-check"
	checkText    = "imip-transport sealed-secrets key check"
)

// NewCheck returns a new key check for k.
func (k *Key) NewCheck() []byte { return k.Seal([]byte(checkText), checkPurpose, "") }

// Verifies reports whether check is a key check made by k.
func (k *Key) Verifies(check []byte) bool {
	plain, err := k.Open(check, checkPurpose, "")
	return err == nil && string(plain) == checkText
}

// maxKeyFile bounds what Load reads.
const maxKeyFile = 1024

// Load reads the key file at path. A missing file gives an error wrapping
// fs.ErrNotExist. The error never quotes the file's contents.
func Load(path string) (*Key, error) {
	raw, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	return newKey(raw, path)
}

// CheckFile reports whether path holds a well-formed key, as Load would
// read it, without keeping the key: for configuration checks.
func CheckFile(path string) error {
	raw, err := readKeyFile(path)
	clear(raw)
	return err
}

// readKeyFile returns the raw key in the key file at path.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("seal: key file %s is not a regular file", path)
	}
	buf := make([]byte, maxKeyFile+1)
	defer clear(buf)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	text := bytes.TrimSpace(buf[:n])
	raw := make([]byte, KeySize)
	if n > maxKeyFile || len(text) != hex.EncodedLen(KeySize) {
		return nil, fmt.Errorf("seal: key file %s: not a key (want %d hexadecimal digits and a newline)", path, hex.EncodedLen(KeySize))
	}
	if _, err := hex.Decode(raw, text); err != nil {
		clear(raw)
		return nil, fmt.Errorf("seal: key file %s: not a key (want %d hexadecimal digits and a newline)", path, hex.EncodedLen(KeySize))
	}
	return raw, nil
}

// CheckDir reports whether dir can receive a new key file: it must exist,
// be a directory, and not be writable by others (who could replace or
// remove the key; a group may, as with user private groups).
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("seal: directory of the key file: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("seal: %s, the directory of the key file, is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o002 != 0 {
		return fmt.Errorf("seal: %s, the directory of the key file, is writable by others (mode %v): use a private directory", dir, perm)
	}
	return nil
}

// Create makes a new key and writes it to path with mode 0600. path must not
// exist, and its directory must pass [CheckDir]. The file appears whole or
// not at all: the key is written to a temporary file, synced, and linked to
// path, which never replaces a file made by someone else meanwhile.
func Create(path string) (*Key, error) {
	dir := filepath.Dir(path)
	if err := CheckDir(dir); err != nil {
		return nil, err
	}
	k, text, err := generate(path)
	if err != nil {
		return nil, err
	}
	defer clear(text)
	tmp, err := writeTemp(dir, text)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return nil, fmt.Errorf("seal: creating key file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return k, nil
}

// writeTemp writes text to a new file of mode 0600 in dir, synced, and
// returns its name.
func writeTemp(dir string, text []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".key-*.tmp")
	if err != nil {
		return "", fmt.Errorf("seal: writing key file: %w", err)
	}
	name := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(text)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("seal: writing key file: %w", err)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("seal: syncing %s: %w", dir, err)
	}
	return nil
}

// Outcome says how [Unlock] found its key.
type Outcome int

const (
	// Loaded: the key file opened the database (or the database had no
	// key check yet).
	Loaded Outcome = iota + 1
	// Created: there was no key file and no key check; a new key was
	// written.
	Created
	// Recovered: the key file did not open the database, but the new key of
	// an interrupted rotation did; it was moved into the key file's place.
	Recovered
)

// Unlock returns the key of a database whose key check is check (nil when
// the database holds no sealed value yet) from the key file at path:
//
//   - path holds a key that verifies check (or check is nil): that key;
//   - path is missing and check is nil: a new key, written to path by
//     [Create], when create is true;
//   - path is missing and check is not nil: an error wrapping ErrNoKey,
//     since no new key can open what is sealed;
//   - path's key does not verify check, but path+NewSuffix does (a
//     rotation committed the database and stopped before the rename): that
//     key, renamed to path;
//   - otherwise an error wrapping ErrWrongKey, naming path.
//
// Nothing but the key files is touched.
func Unlock(path string, check []byte, create bool) (*Key, Outcome, error) {
	if path == "" {
		return nil, 0, fmt.Errorf("%w: no key file given", ErrNoKey)
	}
	k, err := Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && check != nil:
		return nil, 0, fmt.Errorf("%w: key file %s does not exist, and the database's secrets are sealed under a key: restore the key file from its backup", ErrNoKey, path)
	case errors.Is(err, fs.ErrNotExist) && !create:
		return nil, 0, fmt.Errorf("%w: key file %s does not exist", ErrNoKey, path)
	case errors.Is(err, fs.ErrNotExist):
		k, err := Create(path)
		if err != nil {
			return nil, 0, err
		}
		return k, Created, nil
	case err != nil:
		return nil, 0, err
	}
	if check == nil || k.Verifies(check) {
		return k, Loaded, nil
	}
	if nk, err := Load(path + NewSuffix); err == nil && nk.Verifies(check) {
		if err := os.Rename(nk.path, path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("seal: completing an interrupted rotation: %w (the database is sealed under %s)", err, nk.path)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, 0, err
		}
		nk.path = path
		return nk, Recovered, nil
	}
	return nil, 0, fmt.Errorf("%w: key file %s does not open this database (its secrets were sealed under another key); nothing was changed", ErrWrongKey, path)
}

// Staged is the new key of a rotation, written next to the key file it will
// replace.
type Staged struct {
	// Key is the new key. Its Path is the key file's once Commit returned
	// nil.
	Key  *Key
	path string // the key file
	tmp  string // path + NewSuffix
}

// Stage begins a rotation of the key file at path: it writes a new key to
// path+NewSuffix (mode 0600, synced; when run as root, owned by path's
// owner), which must not exist (another rotation may be running, or one
// failed before its commit).
// The caller re-seals everything under s.Key and commits its database, then
// calls Commit; or calls Discard when the database was not committed.
func Stage(path string) (*Staged, error) {
	old, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("seal: key file: %w", err)
	}
	tmp := path + NewSuffix
	if _, err := os.Lstat(tmp); err == nil {
		return nil, fmt.Errorf("seal: %s exists: another rotation runs, or one failed before it committed; if none runs, remove that file and try again", tmp)
	}
	dir := filepath.Dir(path)
	k, text, err := generate(tmp)
	if err != nil {
		return nil, err
	}
	defer clear(text)
	name, err := writeTemp(dir, text)
	if err != nil {
		return nil, err
	}
	defer os.Remove(name)
	if err := chownLike(name, old); err != nil {
		return nil, err
	}
	if err := os.Link(name, tmp); err != nil {
		return nil, fmt.Errorf("seal: staging the new key: %w", err)
	}
	if err := syncDir(dir); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return &Staged{Key: k, path: path, tmp: tmp}, nil
}

// Commit moves the new key into the key file's place.
func (s *Staged) Commit() error {
	if err := os.Rename(s.tmp, s.path); err != nil {
		return fmt.Errorf("seal: installing the new key: %w (the database is sealed under %s: rename it to %s)", err, s.tmp, s.path)
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return err
	}
	s.Key.path = s.path
	return nil
}

// Discard removes the new key of a rotation whose database was not
// committed.
func (s *Staged) Discard() error {
	if err := os.Remove(s.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("seal: %w", err)
	}
	return nil
}
