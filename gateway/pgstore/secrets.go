package pgstore

// The IMIP passwords at rest: sealed under the key file (internal/seal),
// each bound to its registration's JID.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/pressly/goose/v3"

	"imip-transport/internal/seal"
)

// sealVersion is the goose version of the Go migration that seals the
// passwords of a database made before sealing.
const sealVersion = 3

// passwordPurpose is the additional data of a sealed password besides its
// JID: a sealed value of another column or program does not open as one.
const passwordPurpose = "imip-transport registrations.password"

// sealMigration is migration 3: registrations.password (clear TEXT) becomes
// password_sealed (BLOB, see package seal), and the sealing table gets the
// key check. Down unseals them again with the same key.
func (s *Store) sealMigration() *goose.Migration {
	return goose.NewGoMigration(sealVersion,
		&goose.GoFunc{RunTx: s.sealUp},
		&goose.GoFunc{RunTx: s.sealDown})
}

func (s *Store) sealUp(ctx context.Context, tx *sql.Tx) error {
	type row struct{ jid, password string }
	rows, err := tx.QueryContext(ctx, "SELECT jid, password FROM registrations")
	if err != nil {
		return err
	}
	var plain []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.jid, &r.password); err != nil {
			rows.Close()
			return err
		}
		plain = append(plain, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx,
		"ALTER TABLE registrations ADD COLUMN password_sealed BYTEA NOT NULL DEFAULT ''::bytea"); err != nil {
		return err
	}
	for _, r := range plain {
		if _, err := tx.ExecContext(ctx, "UPDATE registrations SET password_sealed = $1 WHERE jid = $2",
			s.sealPassword(r.jid, r.password), r.jid); err != nil {
			return err
		}
	}
	for _, q := range []string{
		"ALTER TABLE registrations DROP COLUMN password",
		`CREATE TABLE sealing (
			id        INTEGER PRIMARY KEY CHECK (id = 1),
			key_check BYTEA   NOT NULL -- a constant sealed under the key: tells a wrong key from a damaged row
		)`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO sealing (id, key_check) VALUES (1, $1)", s.key.NewCheck()); err != nil {
		return err
	}
	s.sealedOnOpen = len(plain)
	return nil
}

func (s *Store) sealDown(ctx context.Context, tx *sql.Tx) error {
	if err := s.verifyKey(ctx, tx); err != nil {
		return err
	}
	type row struct {
		jid    string
		sealed []byte
	}
	rows, err := tx.QueryContext(ctx, "SELECT jid, password_sealed FROM registrations")
	if err != nil {
		return err
	}
	var sealed []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.jid, &r.sealed); err != nil {
			rows.Close()
			return err
		}
		sealed = append(sealed, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "ALTER TABLE registrations ADD COLUMN password TEXT NOT NULL DEFAULT ''"); err != nil {
		return err
	}
	for _, r := range sealed {
		pw, err := s.openPassword(r.jid, r.sealed)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE registrations SET password = $1 WHERE jid = $2", pw, r.jid); err != nil {
			return err
		}
	}
	for _, q := range []string{"ALTER TABLE registrations DROP COLUMN password_sealed", "DROP TABLE sealing"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) sealPassword(jid, password string) []byte {
	return s.key.Seal([]byte(password), passwordPurpose, jid)
}

func (s *Store) openPassword(jid string, sealed []byte) (string, error) {
	pw, err := s.key.Open(sealed, passwordPurpose, jid)
	if err != nil {
		return "", fmt.Errorf("password of %q: %w", jid, err)
	}
	return string(pw), nil
}

// storedCheck returns the database's key check, or nil when it has none
// (it predates sealing, or is new).
func (s *Store) storedCheck(ctx context.Context) ([]byte, error) {
	var n int
	if err := s.db.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = 'sealing'").Scan(&n); err != nil {
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
// under another key than the Store's.
var errRekeyed = errors.New("the database's key changed since it was opened (was rotate-key run while the transport ran?): restart with the new key file")

// verifyKey makes sure, inside tx, that the database is still sealed under
// s.key: a rotation by another process must not be followed by passwords
// sealed under the old key.
func (s *Store) verifyKey(ctx context.Context, tx *sql.Tx) error {
	var check []byte
	if err := tx.QueryRowContext(ctx, "SELECT key_check FROM sealing WHERE id = 1").Scan(&check); err != nil {
		return fmt.Errorf("key check: %w", err)
	}
	if !s.key.Verifies(check) {
		return fmt.Errorf("%w: %w", seal.ErrWrongKey, errRekeyed)
	}
	return nil
}

// RotateKey re-seals every password of the database at path under a new
// key, which then replaces o.KeyFile, and returns how many it re-sealed.
// The transport must not run meanwhile (a running one refuses to write
// passwords afterwards, see [Store.PutRegistration]).
//
// The steps: the new key is written to o.KeyFile+".new" (mode 0600, synced);
// one transaction re-seals every password and the key check; the new key
// file is renamed over the old one; the database is vacuumed and its WAL
// truncated, so that no value sealed under the old key stays in the files.
// A crash before the commit leaves the old key in use (remove the ".new"
// file before trying again); a crash between the commit and the rename is
// completed by the next Open, which finds the ".new" key opens the
// database. The old key no longer opens it.
//
// The key file must exist; the database must exist and already be sealed
// or sealable under it (a database with clear passwords is sealed under
// RotateKey re-seals every IMIP password of the database at dsn under a new
// key and replaces the key file (see internal/seal). The transport must be
// stopped. It returns the number of passwords re-sealed.
func RotateKey(ctx context.Context, dsn string, o Options) (int, error) {
	s, err := open(ctx, dsn, o, false)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	n, err := s.rotate(ctx)
	if err != nil {
		return n, fmt.Errorf("pgstore: rotate key: %w", err)
	}
	return n, nil
}

func (s *Store) rotate(ctx context.Context) (int, error) {
	staged, err := seal.Stage(s.key.Path())
	if err != nil {
		return 0, err
	}
	var n int
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.verifyKey(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, "SELECT jid, password_sealed FROM registrations")
		if err != nil {
			return err
		}
		resealed := map[string][]byte{}
		for rows.Next() {
			var (
				jid    string
				sealed []byte
			)
			if err := rows.Scan(&jid, &sealed); err != nil {
				rows.Close()
				return err
			}
			pw, err := s.openPassword(jid, sealed)
			if err != nil {
				rows.Close()
				return err
			}
			resealed[jid] = staged.Key.Seal([]byte(pw), passwordPurpose, jid)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for jid, sealed := range resealed {
			if _, err := tx.ExecContext(ctx, "UPDATE registrations SET password_sealed = $1 WHERE jid = $2", sealed, jid); err != nil {
				return err
			}
		}
		n = len(resealed)
		_, err = tx.ExecContext(ctx, "UPDATE sealing SET key_check = $1 WHERE id = 1", staged.Key.NewCheck())
		return err
	}, "re-seal")
	if err != nil {
		return 0, errors.Join(err, staged.Discard())
	}
	if err := staged.Commit(); err != nil {
		return n, err
	}
	s.key = staged.Key
	if err := s.scrub(ctx); err != nil {
		return n, fmt.Errorf("the key was rotated, but values sealed under the old key may remain in dead row versions: %w", err)
	}
	return n, nil
}

// scrub vacuums the registrations table so that row versions holding
// passwords sealed under an old key (or in clear, before version 3) are
// removed from its pages. PostgreSQL's WAL archive and earlier backups keep
// them: see docs/DEPLOYMENT.md.
func (s *Store) scrub(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, "VACUUM registrations"); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return nil
}
