package pgstore

// Batched writes (Apply), the message queues and the online flag.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"imip-transport/gateway"
	"imip-transport/imipside/wire"
)

const (
	msgColumns = "id, jid, dir, peer, stanza_id, resource, nick, body, stamp, accepted, receipt, tries"

	insertMessage = `INSERT INTO messages
		(jid, dir, peer, stanza_id, resource, nick, body, stamp, accepted, receipt, tries)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		RETURNING id`
	deleteMessage = "DELETE FROM messages WHERE id = $1"
	touchMessage  = "UPDATE messages SET tries = $1 WHERE id = $2"
	deleteContact = "DELETE FROM contacts WHERE jid = $1 AND number = $2"
	setOnline     = "UPDATE registrations SET online = $1, last_login = CASE WHEN $1 THEN $2 ELSE last_login END WHERE jid = $3"
	isRegistered  = "SELECT 1 FROM registrations WHERE jid = $1"
)

// Apply performs ops in one transaction (one fsync), in order; see
// gateway.Store. Ops on an unregistered JID are skipped; an OpPutMessage so
// skipped gets ID 0. Msg.ID and Msg.Accepted are set only when Apply
// Apply applies ops in one transaction: all or nothing. It takes three
// round trips whatever the batch's size: the registered JIDs among the
// ops' (locked FOR KEY SHARE, so a concurrent DeleteRegistration waits),
// then every op pipelined in one pgx batch, then the commit. Ops of a JID
// that is not registered are skipped, as in sqlitestore.
func (s *Store) Apply(ctx context.Context, ops []gateway.Op) (err error) {
	if err := gateway.CheckOps(ops); err != nil {
		return fmt.Errorf("pgstore: apply: %w", err)
	}
	if len(ops) == 0 {
		return nil
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("pgstore: apply %d ops: %w", len(ops), err)
		}
	}()
	accepted := s.now().UnixNano()
	ids := make([]int64, len(ops))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreClosed(tx.Rollback(context.WithoutCancel(ctx))))
		}
	}()
	var jids []string
	for _, op := range ops {
		switch op := op.(type) {
		case gateway.OpPutMessage:
			jids = append(jids, op.Msg.JID)
		case gateway.OpPutContact:
			jids = append(jids, op.JID)
		}
	}
	known := map[string]bool{}
	if len(jids) > 0 {
		rows, err := tx.Query(ctx, "SELECT jid FROM registrations WHERE jid = ANY($1) FOR KEY SHARE", jids)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, j := range found {
			known[j] = true
		}
	}
	var b pgx.Batch
	for i, op := range ops {
		switch op := op.(type) {
		case gateway.OpPutMessage:
			m := op.Msg
			if !known[m.JID] {
				continue
			}
			var stamp *int64
			if !m.Stamp.IsZero() {
				us := m.Stamp.UnixMicro()
				stamp = &us
			}
			b.Queue(insertMessage, m.JID, int64(m.Dir), string(m.Peer), m.StanzaID,
				m.Resource, m.Nick, m.Body, stamp, accepted, m.Receipt, int64(m.Tries)).
				QueryRow(func(row pgx.Row) error { return row.Scan(&ids[i]) })
		case gateway.OpDeleteMessage:
			b.Queue(deleteMessage, op.ID)
		case gateway.OpTouchMessage:
			b.Queue(touchMessage, int64(op.Tries), op.ID)
		case gateway.OpPutContact:
			if !known[op.JID] {
				continue
			}
			c := op.Contact
			b.Queue(upsertContact, op.JID, string(c.Number), c.Nick,
				c.InList, c.PendingOut, c.OutText, c.PendingIn, c.InText)
		case gateway.OpDeleteContact:
			b.Queue(deleteContact, op.JID, string(op.Number))
		case gateway.OpSetOnline:
			b.Queue(setOnline, op.Online, accepted, op.JID)
		default:
			return fmt.Errorf("%w: %T not supported", gateway.ErrBadOp, op)
		}
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	for i, op := range ops {
		if put, ok := op.(gateway.OpPutMessage); ok {
			put.Msg.ID, put.Msg.Accepted = ids[i], time.Time{}
			if ids[i] != 0 {
				put.Msg.Accepted = time.Unix(0, accepted).UTC()
			}
		}
	}
	return nil
}

func ignoreClosed(err error) error {
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return err
}

// applier runs the contact writes of SaveContacts in its transaction.
type applier struct {
	ctx context.Context
	tx  *sql.Tx
}

func (a *applier) exec(query string, args ...any) (sql.Result, error) {
	return a.tx.ExecContext(a.ctx, query, args...)
}

// Messages returns the queued messages of bareJID, ordered by ID.
func (s *Store) Messages(ctx context.Context, bareJID string) ([]gateway.QueuedMessage, error) {
	return s.queryMessages(ctx, bareJID, "SELECT "+msgColumns+" FROM messages WHERE jid = $1 ORDER BY id", bareJID)
}

// MessagesPage returns at most limit (all if limit <= 0) of bareJID's
// queued messages in direction dir whose ID is above after, ordered by ID.
func (s *Store) MessagesPage(ctx context.Context, bareJID string, dir gateway.Direction, after int64, limit int) ([]gateway.QueuedMessage, error) {
	var lim any // NULL: no limit
	if limit > 0 {
		lim = int64(limit)
	}
	return s.queryMessages(ctx, bareJID,
		"SELECT "+msgColumns+" FROM messages WHERE jid = $1 AND id > $2 AND dir = $3 ORDER BY id LIMIT $4",
		bareJID, after, int64(dir), lim)
}

func (s *Store) queryMessages(ctx context.Context, bareJID, query string, args ...any) ([]gateway.QueuedMessage, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: messages of %q: %w", bareJID, err)
	}
	defer rows.Close()
	ms := []gateway.QueuedMessage{}
	for rows.Next() {
		var (
			m             gateway.QueuedMessage
			dir, tries    int64
			peer          string
			stamp         sql.NullInt64
			acceptedNanos int64
		)
		if err := rows.Scan(&m.ID, &m.JID, &dir, &peer, &m.StanzaID, &m.Resource, &m.Nick, &m.Body,
			&stamp, &acceptedNanos, &m.Receipt, &tries); err != nil {
			return nil, fmt.Errorf("pgstore: messages of %q: %w", bareJID, err)
		}
		m.Dir, m.Peer, m.Tries = gateway.Direction(dir), wire.Number(peer), int(tries)
		if stamp.Valid {
			m.Stamp = time.UnixMicro(stamp.Int64).UTC()
		}
		m.Accepted = time.Unix(0, acceptedNanos).UTC()
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: messages of %q: %w", bareJID, err)
	}
	return ms, nil
}

// QueuedJIDs returns the JIDs with queued messages, ordered by JID.
func (s *Store) QueuedJIDs(ctx context.Context) ([]string, error) {
	return s.jids(ctx, "SELECT DISTINCT jid COLLATE \"C\" AS jid FROM messages ORDER BY 1", "queued JIDs")
}

// OnlineJIDs returns the JIDs whose online flag is set, ordered by JID.
func (s *Store) OnlineJIDs(ctx context.Context) ([]string, error) {
	return s.jids(ctx, "SELECT jid FROM registrations WHERE online ORDER BY jid COLLATE \"C\"", "online JIDs")
}

func (s *Store) jids(ctx context.Context, query, what string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", what, err)
	}
	defer rows.Close()
	jids := []string{}
	for rows.Next() {
		var jid string
		if err := rows.Scan(&jid); err != nil {
			return nil, fmt.Errorf("pgstore: %s: %w", what, err)
		}
		jids = append(jids, jid)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: %s: %w", what, err)
	}
	return jids, nil
}
