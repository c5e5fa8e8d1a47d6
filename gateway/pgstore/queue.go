package pgstore

// Batched writes (Apply), the message queues and the online flag.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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
// returns nil.
func (s *Store) Apply(ctx context.Context, ops []gateway.Op) error {
	if err := gateway.CheckOps(ops); err != nil {
		return fmt.Errorf("pgstore: apply: %w", err)
	}
	if len(ops) == 0 {
		return nil
	}
	accepted := s.now().UnixNano()
	ids := make([]int64, len(ops)) // ids[i]: the row of ops[i], an OpPutMessage
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		a := applier{ctx: ctx, tx: tx}
		for i, op := range ops {
			id, err := a.apply(op, accepted)
			if err != nil {
				return fmt.Errorf("op %d (%T): %w", i, op, err)
			}
			ids[i] = id
		}
		return nil
	}, "apply %d ops", len(ops))
	if err != nil {
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

// applier runs the ops of one transaction. Its statements are prepared once
// per transaction, and closed with it.
type applier struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	known map[string]bool // JID -> registered, as seen in this transaction
}

func (a *applier) exec(query string, args ...any) (sql.Result, error) {
	st, ok := a.stmts[query]
	if !ok {
		var err error
		if st, err = a.tx.PrepareContext(a.ctx, query); err != nil {
			return nil, err
		}
		if a.stmts == nil {
			a.stmts = map[string]*sql.Stmt{}
		}
		a.stmts[query] = st
	}
	return st.ExecContext(a.ctx, args...)
}

// registered reports whether jid has a registration. Registrations do not
// change within the transaction, so the answer is kept.
func (a *applier) registered(jid string) (bool, error) {
	if ok, seen := a.known[jid]; seen {
		return ok, nil
	}
	var one int
	err := a.tx.QueryRowContext(a.ctx, isRegistered, jid).Scan(&one)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, err
	}
	if a.known == nil {
		a.known = map[string]bool{}
	}
	a.known[jid] = err == nil
	return err == nil, nil
}

// apply performs op; for a stored OpPutMessage it returns the new row's id.
func (a *applier) apply(op gateway.Op, accepted int64) (int64, error) {
	switch op := op.(type) {
	case gateway.OpPutMessage:
		m := op.Msg
		if ok, err := a.registered(m.JID); !ok || err != nil {
			return 0, err
		}
		var stamp sql.NullInt64
		if !m.Stamp.IsZero() {
			stamp = sql.NullInt64{Int64: m.Stamp.UnixMicro(), Valid: true}
		}
		var id int64
		err := a.tx.QueryRowContext(a.ctx, insertMessage, m.JID, int64(m.Dir), string(m.Peer), m.StanzaID,
			m.Resource, m.Nick, m.Body, stamp, accepted, m.Receipt, int64(m.Tries)).Scan(&id)
		return id, err
	case gateway.OpDeleteMessage:
		_, err := a.exec(deleteMessage, op.ID)
		return 0, err
	case gateway.OpTouchMessage:
		_, err := a.exec(touchMessage, int64(op.Tries), op.ID)
		return 0, err
	case gateway.OpPutContact:
		if ok, err := a.registered(op.JID); !ok || err != nil {
			return 0, err
		}
		c := op.Contact
		_, err := a.exec(upsertContact, op.JID, string(c.Number), c.Nick,
			c.InList, c.PendingOut, c.OutText, c.PendingIn, c.InText)
		return 0, err
	case gateway.OpDeleteContact:
		_, err := a.exec(deleteContact, op.JID, string(op.Number))
		return 0, err
	case gateway.OpSetOnline:
		_, err := a.exec(setOnline, op.Online, accepted, op.JID)
		return 0, err
	}
	// CheckOps let through an op this package does not know.
	return 0, fmt.Errorf("%w: %T not supported", gateway.ErrBadOp, op)
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
