package imipserver

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"imip-transport/imipside/wire"
	"imip-transport/internal/seal"
)

//go:embed migrations/*.sql
var migrations embed.FS

// legacyVersion is the last schema version of the hand-written migrations
// imipd used before goose, kept in PRAGMA user_version. Goose's version 1
// is that schema; a database at legacyVersion without goose's table is
// adopted as goose version 1 (00001_init.sql creates only what is missing).
const legacyVersion = 1

// MaxReadConns bounds the connections SQLiteStore reads with, next to its
// one writing connection.
const MaxReadConns = 4

// MaxWriteBatch bounds the message writes SQLiteStore commits in one
// transaction.
const MaxWriteBatch = 256

// SQLiteStore is a durable Store in one SQLite file (WAL journal,
// synchronous=FULL): a method that returned nil has reached the disk.
//
// The account passwords are sealed (AES-256-GCM, see internal/seal) under
// the key in SQLiteOptions.KeyFile, each bound to its account's number: a
// copy of the database without the key file reveals no password, and a
// sealed value moved to another account does not open. Account returns
// the password in clear.
//
// Message writes (PutMessage, DeleteMessages) are group-committed: one
// goroutine applies them, and the writes that arrive while a commit is on
// its way to the disk (up to MaxWriteBatch) share the next transaction and
// its single fsync. A caller still waits until its own write is durable.
type SQLiteStore struct {
	db  *sql.DB // the one writing connection
	rdb *sql.DB // reading connections: reads do not wait for a commit's fsync

	log *slog.Logger
	key *seal.Key // seals the passwords
	// sealedOnOpen counts the clear passwords that the open sealed.
	sealedOnOpen int

	writes    chan *writeOp
	quit      chan struct{} // closed by Close
	stopped   chan struct{} // closed when the writer goroutine returns
	closeOnce sync.Once
}

// SQLiteOptions are the settings of OpenSQLite.
type SQLiteOptions struct {
	// KeyFile is the file of the key that seals the passwords (required).
	// When it does not exist and the database holds no sealed password yet,
	// OpenSQLite creates it with a new key, mode 0600, in a directory that
	// must exist and must not be writable by others.
	KeyFile string
	// Logger receives a line when the key file is created, the clear
	// passwords of an older database are sealed, or an interrupted rotation
	// is completed (nil: no log). Nothing secret is logged.
	Logger *slog.Logger
}

// writeOp is one message write handed to the writer goroutine: a put of
// msg when del is nil, else a delete of the IDs in del.
type writeOp struct {
	msg  Message
	del  []int64
	id   int64 // the put's ID
	err  error
	done chan struct{} // closed when id and err are set
}

var _ Store = (*SQLiteStore)(nil)

// errStoreClosed is returned by writes after Close.
var errStoreClosed = errors.New("imipserver: sqlite: store closed")

// OpenSQLite opens (creating it with mode 0600 when absent) the database at
// path, finds the key that seals its passwords in o.KeyFile (creating it for
// a database without sealed passwords) and brings its schema up to date,
// which seals the passwords of a database made before sealing (migration 2,
// after which the file is vacuumed so that no clear password stays in it).
// A key that does not open the database, or a missing key file for a
// sealed one, is an error wrapping seal.ErrWrongKey or seal.ErrNoKey that
// names the key file; nothing is changed then.
// It blocks on disk I/O. It starts one goroutine, ended by Close.
func OpenSQLite(ctx context.Context, path string, o SQLiteOptions) (*SQLiteStore, error) {
	return openSQLite(ctx, path, o, true)
}

// openSQLite is OpenSQLite; create says whether a missing key file may be
// created.
func openSQLite(ctx context.Context, path string, o SQLiteOptions, create bool) (*SQLiteStore, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("imipserver: sqlite path %q: must not hold '?' or '#'", path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("imipserver: sqlite: %w", err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)"
	// BEGIN IMMEDIATE: a transaction that reads before it writes (the key
	// check) must not fail to upgrade when another process (imipd
	// add-account) wrote meanwhile.
	db, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite: %w", err)
	}
	// One writing connection: SQLite has one writer anyway, and the
	// pragmas above are per connection.
	db.SetMaxOpenConns(1)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &SQLiteStore{
		db:      db,
		log:     log,
		writes:  make(chan *writeOp),
		quit:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if err := s.migrate(ctx, o.KeyFile, create); err != nil {
		db.Close()
		return nil, err
	}
	// Readers see the last commit while the writer's next one reaches the
	// disk (WAL); query_only makes sure they never write.
	s.rdb, err = sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("imipserver: sqlite: %w", err)
	}
	s.rdb.SetMaxOpenConns(MaxReadConns)
	s.rdb.SetMaxIdleConns(MaxReadConns)
	go s.writer()
	return s, nil
}

// migrate finds the key and brings the schema up to date with goose, the
// migration tool of the gateway's store too. It refuses a database newer
// than this program.
func (s *SQLiteStore) migrate(ctx context.Context, keyFile string, create bool) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("imipserver: sqlite: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("imipserver: sqlite: journal mode is %q, not WAL (is the file on a network file system?)", mode)
	}
	var legacy int
	if err := s.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&legacy); err != nil {
		return fmt.Errorf("imipserver: sqlite migrate: %w", err)
	}
	if legacy > legacyVersion {
		return fmt.Errorf("imipserver: sqlite: schema version %d (user_version) is newer than this program knows", legacy)
	}
	p, err := s.provider()
	if err != nil {
		return err
	}
	srcs := p.ListSources()
	known := srcs[len(srcs)-1].Version
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("imipserver: sqlite migrate: %w", err)
	}
	if current > known {
		return fmt.Errorf("imipserver: sqlite: schema version %d is newer than this program's %d", current, known)
	}
	check, err := s.storedCheck(ctx)
	if err != nil {
		return fmt.Errorf("imipserver: sqlite: %w", err)
	}
	key, outcome, err := seal.Unlock(keyFile, check, create)
	if err != nil {
		return fmt.Errorf("imipserver: sqlite: %w", err)
	}
	s.key = key
	switch outcome {
	case seal.Created:
		s.log.Info("imipserver: key file created", "key_file", keyFile)
	case seal.Recovered:
		s.log.Warn("imipserver: completed a key rotation that was interrupted before the key file was renamed", "key_file", keyFile)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("imipserver: sqlite migrate: %w", err)
	}
	for _, r := range res {
		if r.Source != nil && r.Source.Version == sealVersion && r.Direction == "up" {
			if s.sealedOnOpen > 0 {
				s.log.Info("imipserver: passwords sealed under the key file", "key_file", keyFile, "count", s.sealedOnOpen)
			}
			// Also with none left: deleted ones may stay in free pages.
			if err := s.scrub(ctx); err != nil {
				s.log.Warn("imipserver: the clear passwords may remain in the file's free pages", "err", err)
			}
		}
	}
	return nil
}

func (s *SQLiteStore) provider() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys, goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(s.sealMigration()))
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite migrations: %w", err)
	}
	return p, nil
}

// SchemaVersion returns the database's schema version: the last goose
// migration applied.
func (s *SQLiteStore) SchemaVersion(ctx context.Context) (int64, error) {
	p, err := s.provider()
	if err != nil {
		return 0, err
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("imipserver: sqlite: %w", err)
	}
	return v, nil
}

// Account implements Store. A password that does not open (see
// SQLiteStore) is an error wrapping seal.ErrOpen.
func (s *SQLiteStore) Account(ctx context.Context, n wire.Number) (Account, error) {
	a := Account{Number: n}
	var sealed []byte
	err := s.rdb.QueryRowContext(ctx, `SELECT password_sealed, nick FROM accounts WHERE number = ?`, string(n)).
		Scan(&sealed, &a.Nick)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("imipserver: account %s: %w", n, ErrNotFound)
	}
	if err != nil {
		return Account{}, fmt.Errorf("imipserver: sqlite account: %w", err)
	}
	if a.Password, err = s.openPassword(string(n), sealed); err != nil {
		return Account{}, fmt.Errorf("imipserver: sqlite account: %w", err)
	}
	return a, nil
}

// PutAccount implements Store. It seals the password, and refuses, with an
// error wrapping seal.ErrWrongKey, a database whose key was rotated by
// another process since it was opened.
func (s *SQLiteStore) PutAccount(ctx context.Context, a Account) error {
	if err := a.Validate(); err != nil {
		return err
	}
	sealed := s.key.Seal([]byte(a.Password), passwordPurpose, string(a.Number))
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("imipserver: sqlite put account: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	if err := s.verifyKey(ctx, tx); err != nil {
		return fmt.Errorf("imipserver: sqlite put account: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO accounts (number, password_sealed, nick) VALUES (?, ?, ?)
		ON CONFLICT (number) DO UPDATE SET password_sealed = excluded.password_sealed, nick = excluded.nick`,
		string(a.Number), sealed, a.Nick); err != nil {
		return fmt.Errorf("imipserver: sqlite put account: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("imipserver: sqlite put account: %w", err)
	}
	return nil
}

// Contacts implements Store.
func (s *SQLiteStore) Contacts(ctx context.Context, owner wire.Number) ([]wire.Buddy, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT c.contact, COALESCE(a.nick, '') FROM contacts c
		LEFT JOIN accounts a ON a.number = c.contact
		WHERE c.owner = ? ORDER BY length(c.contact), c.contact`, string(owner))
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite contacts: %w", err)
	}
	defer rows.Close()
	var out []wire.Buddy
	for rows.Next() {
		var num, nick string
		if err := rows.Scan(&num, &nick); err != nil {
			return nil, fmt.Errorf("imipserver: sqlite contacts: %w", err)
		}
		out = append(out, wire.Buddy{Number: wire.Number(num), Nick: nick})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("imipserver: sqlite contacts: %w", err)
	}
	return out, nil
}

// Watchers implements Store.
func (s *SQLiteStore) Watchers(ctx context.Context, contact wire.Number) ([]wire.Number, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT owner FROM contacts WHERE contact = ?
		ORDER BY length(owner), owner`, string(contact))
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite watchers: %w", err)
	}
	defer rows.Close()
	var out []wire.Number
	for rows.Next() {
		var num string
		if err := rows.Scan(&num); err != nil {
			return nil, fmt.Errorf("imipserver: sqlite watchers: %w", err)
		}
		out = append(out, wire.Number(num))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("imipserver: sqlite watchers: %w", err)
	}
	return out, nil
}

// HasContact implements Store.
func (s *SQLiteStore) HasContact(ctx context.Context, owner, contact wire.Number) (bool, error) {
	var one int
	err := s.rdb.QueryRowContext(ctx, `SELECT 1 FROM contacts WHERE owner = ? AND contact = ?`,
		string(owner), string(contact)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("imipserver: sqlite has contact: %w", err)
	}
	return true, nil
}

// AddContact implements Store.
func (s *SQLiteStore) AddContact(ctx context.Context, owner, contact wire.Number) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO contacts (owner, contact) VALUES (?, ?)`,
		string(owner), string(contact))
	if err != nil {
		return fmt.Errorf("imipserver: sqlite add contact: %w", err)
	}
	return nil
}

// RemoveContact implements Store.
func (s *SQLiteStore) RemoveContact(ctx context.Context, owner, contact wire.Number) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM contacts WHERE owner = ? AND contact = ?`,
		string(owner), string(contact))
	if err != nil {
		return false, fmt.Errorf("imipserver: sqlite remove contact: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("imipserver: sqlite remove contact: %w", err)
	}
	return n > 0, nil
}

// PutRequest implements Store.
func (s *SQLiteStore) PutRequest(ctx context.Context, r Request) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO requests (sender, recipient, text, created)
		VALUES (?, ?, ?, ?)`, string(r.From), string(r.To), r.Text, r.Time.Unix())
	if err != nil {
		return fmt.Errorf("imipserver: sqlite put request: %w", err)
	}
	return nil
}

// DeleteRequest implements Store.
func (s *SQLiteStore) DeleteRequest(ctx context.Context, from, to wire.Number) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM requests WHERE sender = ? AND recipient = ?`,
		string(from), string(to))
	if err != nil {
		return false, fmt.Errorf("imipserver: sqlite delete request: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("imipserver: sqlite delete request: %w", err)
	}
	return n > 0, nil
}

// Requests implements Store.
func (s *SQLiteStore) Requests(ctx context.Context, to wire.Number) ([]Request, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT sender, text, created FROM requests
		WHERE recipient = ? ORDER BY seq`, string(to))
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite requests: %w", err)
	}
	defer rows.Close()
	var out []Request
	for rows.Next() {
		var from, text string
		var created int64
		if err := rows.Scan(&from, &text, &created); err != nil {
			return nil, fmt.Errorf("imipserver: sqlite requests: %w", err)
		}
		out = append(out, Request{From: wire.Number(from), To: to, Text: text, Time: time.Unix(created, 0).UTC()})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("imipserver: sqlite requests: %w", err)
	}
	return out, nil
}

// PutMessage implements Store. The write is group-committed (see
// SQLiteStore); once handed to the writer goroutine it is applied even if
// ctx ends first.
func (s *SQLiteStore) PutMessage(ctx context.Context, m Message) (int64, error) {
	op := &writeOp{msg: m, done: make(chan struct{})}
	if err := s.write(ctx, op); err != nil {
		return 0, fmt.Errorf("imipserver: sqlite put message: %w", err)
	}
	return op.id, nil
}

// DeleteMessages implements Store. The write is group-committed like
// PutMessage's.
func (s *SQLiteStore) DeleteMessages(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	op := &writeOp{del: ids, done: make(chan struct{})}
	if err := s.write(ctx, op); err != nil {
		return fmt.Errorf("imipserver: sqlite delete messages: %w", err)
	}
	return nil
}

// write hands op to the writer goroutine and waits for its result.
func (s *SQLiteStore) write(ctx context.Context, op *writeOp) error {
	select {
	case s.writes <- op:
	case <-s.quit:
		return errStoreClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the goroutine that applies message writes: it takes one, adds
// every other write already waiting (up to MaxWriteBatch) and commits them
// in one transaction.
func (s *SQLiteStore) writer() {
	defer close(s.stopped)
	batch := make([]*writeOp, 0, MaxWriteBatch)
	for {
		select {
		case op := <-s.writes:
			batch = append(batch[:0], op)
		case <-s.quit:
			return
		}
	more:
		for len(batch) < MaxWriteBatch {
			select {
			case op := <-s.writes:
				batch = append(batch, op)
			default:
				break more
			}
		}
		if err := s.apply(batch); err != nil && len(batch) > 1 {
			// One bad write must not fail the others: apply them one by one.
			for _, op := range batch {
				op.err = s.apply([]*writeOp{op})
			}
		} else {
			for _, op := range batch {
				op.err = err
			}
		}
		for i, op := range batch {
			close(op.done)
			batch[i] = nil
		}
	}
}

// apply runs ops in one transaction. The writes are independent of the
// callers' contexts: several callers share the transaction.
func (s *SQLiteStore) apply(ops []*writeOp) error {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit this is a no-op
	var ins, del *sql.Stmt
	for _, op := range ops {
		if op.del == nil {
			if ins == nil {
				if ins, err = tx.PrepareContext(ctx, `INSERT INTO messages (sender, recipient, sent, text, mkey) VALUES (?, ?, ?, ?, ?)`); err != nil {
					return err
				}
			}
			m := &op.msg
			res, err := ins.ExecContext(ctx, string(m.From), string(m.To), m.Time.Unix(), m.Text, m.Key)
			if err != nil {
				return err
			}
			if op.id, err = res.LastInsertId(); err != nil {
				return err
			}
			continue
		}
		if del == nil {
			if del, err = tx.PrepareContext(ctx, `DELETE FROM messages WHERE id = ?`); err != nil {
				return err
			}
		}
		for _, id := range op.del {
			if _, err := del.ExecContext(ctx, id); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// Messages implements Store.
func (s *SQLiteStore) Messages(ctx context.Context, to wire.Number, after int64, limit int) ([]Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("imipserver: sqlite messages: limit %d is not positive", limit)
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, sender, sent, text, mkey FROM messages
		WHERE recipient = ? AND id > ? ORDER BY id LIMIT ?`, string(to), after, limit)
	if err != nil {
		return nil, fmt.Errorf("imipserver: sqlite messages: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m := Message{To: to}
		var from string
		var sent int64
		if err := rows.Scan(&m.ID, &from, &sent, &m.Text, &m.Key); err != nil {
			return nil, fmt.Errorf("imipserver: sqlite messages: %w", err)
		}
		m.From, m.Time = wire.Number(from), time.Unix(sent, 0).UTC()
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("imipserver: sqlite messages: %w", err)
	}
	return out, nil
}

// CountHeld implements Store.
func (s *SQLiteStore) CountHeld(ctx context.Context, to, from wire.Number) (int, int, error) {
	var fromSender, total int
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(CASE WHEN sender = ? THEN 1 END), COUNT(*)
		FROM messages WHERE recipient = ?`, string(from), string(to)).Scan(&fromSender, &total)
	if err != nil {
		return 0, 0, fmt.Errorf("imipserver: sqlite count held: %w", err)
	}
	return fromSender, total, nil
}

// Close stops the writer goroutine (writes not yet taken by it fail) and
// closes the database. Calls after Close fail.
func (s *SQLiteStore) Close() error {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.stopped
	rerr := s.rdb.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("imipserver: sqlite close: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("imipserver: sqlite close: %w", rerr)
	}
	return nil
}
