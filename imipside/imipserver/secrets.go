package imipserver

// The account passwords at rest in SQLiteStore: sealed under the key file
// (internal/seal), each bound to its account's number.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"github.com/pressly/goose/v3"

	"imip-transport/internal/seal"
)

// sealVersion is the goose version of the Go migration that seals the
// passwords of a database made before sealing.
const sealVersion = 2

// passwordPurpose is the additional data of a sealed password besides its
// number.
const passwordPurpose = "imipd accounts.password"

// sealMigration is migration 2: accounts.password (clear TEXT) becomes
// password_sealed (BLOB, see package seal), and the sealing table gets the
// key check. Down unseals them again with the same key.
func (s *SQLiteStore) sealMigration() *goose.Migration {
	return goose.NewGoMigration(sealVersion,
		&goose.GoFunc{RunTx: s.sealUp},
		&goose.GoFunc{RunTx: s.sealDown})
}

// numberValue is a row of queryPairs: a number and a password, sealed or
// not.
type numberValue struct {
	number string
	value  []byte
}

// queryPairs returns the rows of a query of a number and a password.
func queryPairs(ctx context.Context, tx *sql.Tx, q string) ([]numberValue, error) {
	rows, err := tx.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	var out []numberValue
	for rows.Next() {
		var r numberValue
		if err := rows.Scan(&r.number, &r.value); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, r)
	}
	return out, errors.Join(rows.Err(), rows.Close())
}

func (s *SQLiteStore) sealUp(ctx context.Context, tx *sql.Tx) error {
	plain, err := queryPairs(ctx, tx, "SELECT number, password FROM accounts")
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "ALTER TABLE accounts ADD COLUMN password_sealed BLOB NOT NULL DEFAULT x''"); err != nil {
		return err
	}
	for _, r := range plain {
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET password_sealed = ? WHERE number = ?",
			s.key.Seal(r.value, passwordPurpose, r.number), r.number); err != nil {
			return err
		}
	}
	for _, q := range []string{
		"ALTER TABLE accounts DROP COLUMN password",
		`CREATE TABLE sealing (
			id        INTEGER PRIMARY KEY CHECK (id = 1),
			key_check BLOB    NOT NULL -- a constant sealed under the key: tells a wrong key from a damaged row
		)`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO sealing (id, key_check) VALUES (1, ?)", s.key.NewCheck()); err != nil {
		return err
	}
	s.sealedOnOpen = len(plain)
	return nil
}

func (s *SQLiteStore) sealDown(ctx context.Context, tx *sql.Tx) error {
	if err := s.verifyKey(ctx, tx); err != nil {
		return err
	}
	sealed, err := queryPairs(ctx, tx, "SELECT number, password_sealed FROM accounts")
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "ALTER TABLE accounts ADD COLUMN password TEXT NOT NULL DEFAULT ''"); err != nil {
		return err
	}
	for _, r := range sealed {
		pw, err := s.openPassword(r.number, r.value)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET password = ? WHERE number = ?", pw, r.number); err != nil {
			return err
		}
	}
	for _, q := range []string{"ALTER TABLE accounts DROP COLUMN password_sealed", "DROP TABLE sealing"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func (s *SQLiteStore) openPassword(number string, sealed []byte) (string, error) {
	pw, err := s.key.Open(sealed, passwordPurpose, number)
	if err != nil {
		return "", fmt.Errorf("password of %s: %w", number, err)
	}
	return string(pw), nil
}

// storedCheck returns the database's key check, or nil when it has none
// (it predates sealing, or is new).
func (s *SQLiteStore) storedCheck(ctx context.Context) ([]byte, error) {
	var n int
	if err := s.db.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'sealing'").Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	var check []byte
	if err := s.db.QueryRowContext(ctx, "SELECT key_check FROM sealing WHERE id = 1").Scan(&check); err != nil {
		return nil, fmt.Errorf("key check: %w", err)
	}
	return check, nil
}

// errRekeyed is returned, wrapped, by a write that finds the database sealed
// under another key than the store's.
var errRekeyed = errors.New("the database's key changed since it was opened (was rotate-key run while imipd ran?): restart with the new key file")

// verifyKey makes sure, inside tx, that the database is still sealed under
// s.key.
func (s *SQLiteStore) verifyKey(ctx context.Context, tx *sql.Tx) error {
	var check []byte
	if err := tx.QueryRowContext(ctx, "SELECT key_check FROM sealing WHERE id = 1").Scan(&check); err != nil {
		return fmt.Errorf("key check: %w", err)
	}
	if !s.key.Verifies(check) {
		return fmt.Errorf("%w: %w", seal.ErrWrongKey, errRekeyed)
	}
	return nil
}

// RotateSQLiteKey re-seals every password of the database at path under a
// new key, which then replaces o.KeyFile, and returns how many it re-sealed.
// imipd must not run meanwhile (a running one refuses to write passwords
// afterwards).
//
// The new key is written to o.KeyFile+".new" (mode 0600, synced); one
// transaction re-seals every password and the key check; the new key file
// is renamed over the old one; the database is vacuumed and its WAL
// truncated, so that no value sealed under the old key stays in the files.
// A crash between the commit and the rename is completed by the next
// OpenSQLite; after a crash before the commit, remove the ".new" file. The
// old key no longer opens the database. The key file and the database must
// exist.
func RotateSQLiteKey(ctx context.Context, path string, o SQLiteOptions) (int, error) {
	if _, err := os.Stat(path); err != nil {
		return 0, fmt.Errorf("imipserver: sqlite rotate key: %w", err)
	}
	s, err := openSQLite(ctx, path, o, false)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	n, err := s.rotate(ctx)
	if err != nil {
		return n, fmt.Errorf("imipserver: sqlite rotate key of %s: %w", path, err)
	}
	return n, nil
}

func (s *SQLiteStore) rotate(ctx context.Context) (int, error) {
	staged, err := seal.Stage(s.key.Path())
	if err != nil {
		return 0, err
	}
	n, err := s.reseal(ctx, staged.Key)
	if err != nil {
		return 0, errors.Join(err, staged.Discard())
	}
	if err := staged.Commit(); err != nil {
		return n, err
	}
	s.key = staged.Key
	if err := s.scrub(ctx); err != nil {
		return n, fmt.Errorf("the key was rotated, but values sealed under the old key may remain in the file's free pages: %w", err)
	}
	return n, nil
}

// reseal re-seals every password and the key check under next, in one
// transaction.
func (s *SQLiteStore) reseal(ctx context.Context, next *seal.Key) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	if err := s.verifyKey(ctx, tx); err != nil {
		return 0, err
	}
	sealed, err := queryPairs(ctx, tx, "SELECT number, password_sealed FROM accounts")
	if err != nil {
		return 0, err
	}
	for _, r := range sealed {
		pw, err := s.openPassword(r.number, r.value)
		if err != nil {
			return 0, err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET password_sealed = ? WHERE number = ?",
			next.Seal([]byte(pw), passwordPurpose, r.number), r.number); err != nil {
			return 0, err
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE sealing SET key_check = ? WHERE id = 1", next.NewCheck()); err != nil {
		return 0, err
	}
	return len(sealed), tx.Commit()
}

// scrub rewrites the database without its free pages (VACUUM) and
// truncates its WAL, so that values replaced by the last writes are gone
// from the files.
func (s *SQLiteStore) scrub(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	var busy, frames, done int
	if err := s.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if busy != 0 {
		return errors.New("checkpoint: another connection uses the database; its WAL keeps old pages until the next checkpoint")
	}
	return nil
}
