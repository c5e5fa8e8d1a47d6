package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"imip-transport/gateway"
	"imip-transport/imipside/wire"
	"imip-transport/roster"
)

const regColumns = "jid, number, password_sealed, allow_remove, created, updated, roster_group"

// regSelect are the columns scanRegistration reads.
const regSelect = regColumns + ", last_login"

type scanner interface{ Scan(dest ...any) error }

// scanRegistration reads a row of regSelect and opens its password.
func (s *Store) scanRegistration(row scanner) (gateway.Registration, error) {
	var (
		r                gateway.Registration
		number           string
		sealed           []byte
		created, updated int64
		lastLogin        sql.NullInt64
	)
	if err := row.Scan(&r.JID, &number, &sealed, &r.AllowRemove, &created, &updated, &r.Group, &lastLogin); err != nil {
		return gateway.Registration{}, err
	}
	pw, err := s.openPassword(r.JID, sealed)
	if err != nil {
		return gateway.Registration{}, err
	}
	r.Password = pw
	r.Number = wire.Number(number)
	r.Created = time.Unix(0, created).UTC()
	r.Updated = time.Unix(0, updated).UTC()
	if lastLogin.Valid {
		r.LastLogin = time.Unix(0, lastLogin.Int64).UTC()
	}
	return r, nil
}

func notFound(bareJID string) error {
	return fmt.Errorf("sqlitestore: registration %q: %w", bareJID, gateway.ErrNotFound)
}

// Registration returns the registration of bareJID, or an error wrapping
// gateway.ErrNotFound.
func (s *Store) Registration(ctx context.Context, bareJID string) (gateway.Registration, error) {
	row := s.db.QueryRowContext(ctx, "SELECT "+regSelect+" FROM registrations WHERE jid = ?", bareJID)
	r, err := s.scanRegistration(row)
	if errors.Is(err, sql.ErrNoRows) {
		return gateway.Registration{}, notFound(bareJID)
	}
	if err != nil {
		return gateway.Registration{}, fmt.Errorf("sqlitestore: registration %q: %w", bareJID, err)
	}
	return r, nil
}

// PutRegistration inserts r or updates the registration with r.JID.
// A change of number drops the saved contact list, which belonged to the
// other IMIP account.
// The password is sealed under the Store's key, bound to r.JID. A database
// whose key was rotated by another process since Open is refused with an
// error wrapping seal.ErrWrongKey, so that no password is sealed under a
// key that no longer opens the database.
func (s *Store) PutRegistration(ctx context.Context, r gateway.Registration) error {
	if r.JID == "" || r.Number == "" {
		return errors.New("sqlitestore: registration needs a JID and a number")
	}
	now := s.now().UnixNano()
	sealed := s.sealPassword(r.JID, r.Password)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := s.verifyKey(ctx, tx); err != nil {
			return err
		}
		var old string
		err := tx.QueryRowContext(ctx, "SELECT number FROM registrations WHERE jid = ?", r.JID).Scan(&old)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case old != string(r.Number):
			if _, err := tx.ExecContext(ctx, "DELETE FROM contacts WHERE jid = ?", r.JID); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO registrations (`+regColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (jid) DO UPDATE SET
				number = excluded.number,
				password_sealed = excluded.password_sealed,
				allow_remove = excluded.allow_remove,
				updated = excluded.updated,
				roster_group = excluded.roster_group`,
			r.JID, string(r.Number), sealed, r.AllowRemove, now, now, r.Group)
		return err
	}, "put registration %q", r.JID)
}

// DeleteRegistration deletes the registration of bareJID, its contacts and
// its queued messages (by foreign-key cascade), or returns an error wrapping
// gateway.ErrNotFound.
func (s *Store) DeleteRegistration(ctx context.Context, bareJID string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM registrations WHERE jid = ?", bareJID)
	if err != nil {
		return fmt.Errorf("sqlitestore: delete registration %q: %w", bareJID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlitestore: delete registration %q: %w", bareJID, err)
	} else if n == 0 {
		return notFound(bareJID)
	}
	return nil
}

// Registrations returns all registrations, ordered by JID.
func (s *Store) Registrations(ctx context.Context) ([]gateway.Registration, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+regSelect+" FROM registrations ORDER BY jid")
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: registrations: %w", err)
	}
	defer rows.Close()
	var rs []gateway.Registration
	for rows.Next() {
		r, err := s.scanRegistration(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlitestore: registrations: %w", err)
		}
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlitestore: registrations: %w", err)
	}
	return rs, nil
}

const (
	contactColumns = "number, nick, in_list, pending_out, out_text, pending_in, in_text"

	// upsertContact writes one contact row, whatever was there.
	upsertContact = `INSERT INTO contacts (jid, ` + contactColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (jid, number) DO UPDATE SET
			nick = excluded.nick,
			in_list = excluded.in_list,
			pending_out = excluded.pending_out,
			out_text = excluded.out_text,
			pending_in = excluded.pending_in,
			in_text = excluded.in_text`
)

func scanContact(row scanner) (roster.Contact, error) {
	var (
		c      roster.Contact
		number string
	)
	if err := row.Scan(&number, &c.Nick, &c.InList, &c.PendingOut, &c.OutText, &c.PendingIn, &c.InText); err != nil {
		return roster.Contact{}, err
	}
	c.Number = wire.Number(number)
	return c, nil
}

// Contacts returns the saved contact list of bareJID, ordered by number.
func (s *Store) Contacts(ctx context.Context, bareJID string) ([]roster.Contact, error) {
	cs, err := contacts(ctx, s.db, bareJID)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: contacts of %q: %w", bareJID, err)
	}
	return cs, nil
}

// contacts reads the contact list of bareJID through q (the database or a
// transaction), ordered by number; never nil.
func contacts(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, bareJID string) ([]roster.Contact, error) {
	rows, err := q.QueryContext(ctx, "SELECT "+contactColumns+" FROM contacts WHERE jid = ? ORDER BY number", bareJID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cs := []roster.Contact{}
	for rows.Next() {
		c, err := scanContact(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// SaveContacts replaces the contact list of bareJID with cs in one
// transaction, writing only the rows that differ from the stored list: new
// and changed contacts are written, contacts missing from cs deleted, equal
// ones left untouched.
// It returns an error wrapping gateway.ErrNotFound when bareJID is not
// registered; duplicate or empty numbers are an error and change nothing.
func (s *Store) SaveContacts(ctx context.Context, bareJID string, cs []roster.Contact) error {
	seen := make(map[wire.Number]bool, len(cs))
	for _, c := range cs {
		if c.Number == "" {
			return fmt.Errorf("sqlitestore: save contacts of %q: contact without a number", bareJID)
		}
		if seen[c.Number] {
			return fmt.Errorf("sqlitestore: save contacts of %q: number %s twice", bareJID, c.Number)
		}
		seen[c.Number] = true
	}
	var missing bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, isRegistered, bareJID).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			missing = true
			return nil
		}
		if err != nil {
			return err
		}
		old, err := contacts(ctx, tx, bareJID)
		if err != nil {
			return err
		}
		stored := make(map[wire.Number]roster.Contact, len(old))
		for _, c := range old {
			stored[c.Number] = c
		}
		a := applier{ctx: ctx, s: s, tx: tx}
		for _, c := range cs {
			was, ok := stored[c.Number]
			delete(stored, c.Number)
			if ok && was == c {
				continue
			}
			if _, err := a.exec(upsertContact, bareJID, string(c.Number), c.Nick,
				c.InList, c.PendingOut, c.OutText, c.PendingIn, c.InText); err != nil {
				return fmt.Errorf("contact %s: %w", c.Number, err)
			}
		}
		for n := range stored {
			if _, err := a.exec(deleteContact, bareJID, string(n)); err != nil {
				return fmt.Errorf("contact %s: %w", n, err)
			}
		}
		return nil
	}, "save contacts of %q", bareJID)
	if err == nil && missing {
		return notFound(bareJID)
	}
	return err
}

// inTx runs fn in a write transaction and commits it, or rolls it back when
// fn fails. Errors are prefixed with the package and the formatted what.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error, what string, args ...any) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("sqlitestore: %s: %w", fmt.Sprintf(what, args...), err)
		}
	}()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, rollback(tx))
	}
	return tx.Commit()
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}
