package sqlitestore

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

	"imip-transport/gateway"
	"imip-transport/internal/seal"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// BusyTimeout is how long a statement waits for a lock held by another
// process on the same file before it fails.
const BusyTimeout = 5 * time.Second

// fileMode is the mode of the database file: it holds passwords.
const fileMode = 0o600

// Store is a gateway.Store on an SQLite file.
// Its methods are safe for concurrent use and block until SQLite answers or
// their context is done.
type Store struct {
	db  *sql.DB
	now func() time.Time
	log *slog.Logger
	// key seals the passwords (see package doc, "Secrets").
	key *seal.Key
	// sealedOnOpen counts the clear passwords that Open sealed.
	sealedOnOpen int
	// stmts are the statements of the write path, prepared once on db at
	// Open and used in each transaction through Tx.StmtContext (preparing
	// them per transaction cost about a tenth of the transport's CPU at
	// 2,000 messages/s).
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
}

// hotStatements are the write path's statements, prepared at Open.
var hotStatements = []string{insertMessage, deleteMessage, touchMessage, upsertContact, deleteContact, isRegistered, setOnline}

// prepare prepares the hot statements on the database (at Open: with one
// connection, preparing on the database inside a transaction would wait
// for the transaction's own connection).
func (s *Store) prepare(ctx context.Context) error {
	s.stmts = make(map[string]*sql.Stmt, len(hotStatements))
	for _, q := range hotStatements {
		st, err := s.db.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("preparing statements: %w", err)
		}
		s.stmts[q] = st
	}
	return nil
}

// stmt returns query prepared on the database, or nil when it is not one
// of the hot statements.
func (s *Store) stmt(query string) *sql.Stmt {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	return s.stmts[query]
}

var _ gateway.Store = (*Store)(nil)

// Options are the settings of [Open].
type Options struct {
	// KeyFile is the file of the key that seals the IMIP passwords
	// (required). When it does not exist and the database holds no sealed
	// password yet, Open creates it with a new key, mode 0600, in a
	// directory that must exist and must not be writable by others.
	KeyFile string
	// Logger receives a line when Open creates the key file, seals the clear
	// passwords of an older database, or completes an interrupted rotation
	// (nil: no log). Nothing secret is logged.
	Logger *slog.Logger
}

// Open opens the SQLite database at path, creating the file with mode 0600
// if it does not exist, finds the key that seals its passwords in
// o.KeyFile (creating it for a database without sealed passwords) and
// applies the pending schema migrations, which seal the passwords of a
// database made before sealing.
// It fails if the file's schema is newer than this program knows, and, with
// an error wrapping seal.ErrWrongKey that names the key file, if the key
// does not open the database; nothing is changed then.
// The caller must Close the Store.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	return open(ctx, path, o, true)
}

// open is Open; create says whether a missing key file may be created.
func open(ctx context.Context, path string, o Options, create bool) (*Store, error) {
	if path == "" || path == ":memory:" || strings.ContainsRune(path, '?') || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlitestore: unsupported database path %q (a plain file name is needed)", path)
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}
	dsn := path + "?_txlock=immediate" +
		fmt.Sprintf("&_pragma=busy_timeout(%d)", BusyTimeout.Milliseconds()) +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	// One connection: SQLite has a single writer anyway, and the pragmas
	// above are per connection, applied when it is made.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{db: db, now: time.Now, log: log}
	if err := s.setup(ctx, o.KeyFile, create); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	return s, nil
}

// prepareFile creates path with mode 0600, or removes group and other
// permissions from an existing file and its WAL companions.
func prepareFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return fmt.Errorf("sqlitestore: %w", err)
	}
	defer f.Close()
	if err := tighten(f); err != nil {
		return err
	}
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		g, err := os.OpenFile(path+suffix, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("sqlitestore: %w", err)
		}
		err = tighten(g)
		g.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func tighten(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sqlitestore: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("sqlitestore: %s is not a regular file", f.Name())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if err := f.Chmod(perm &^ 0o077); err != nil {
			return fmt.Errorf("sqlitestore: restricting the mode of %s: %w", f.Name(), err)
		}
	}
	return nil
}

// setup checks the connection settings, finds the key and migrates the
// schema.
func (s *Store) setup(ctx context.Context, keyFile string, create bool) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL (is the file on a network file system?)", mode)
	}
	p, err := s.provider()
	if err != nil {
		return err
	}
	srcs := p.ListSources()
	known := srcs[len(srcs)-1].Version
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if current > known {
		return fmt.Errorf("schema version %d is newer than this program's %d", current, known)
	}
	check, err := s.storedCheck(ctx)
	if err != nil {
		return err
	}
	key, outcome, err := seal.Unlock(keyFile, check, create)
	if err != nil {
		return err
	}
	s.key = key
	switch outcome {
	case seal.Created:
		s.log.Info("storage key file created", "key_file", keyFile)
	case seal.Recovered:
		s.log.Warn("storage key: completed a key rotation that was interrupted before the key file was renamed", "key_file", keyFile)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	for _, r := range res {
		if r.Source != nil && r.Source.Version == sealVersion && r.Direction == "up" {
			if s.sealedOnOpen > 0 {
				s.log.Info("storage: IMIP passwords sealed under the key file", "key_file", keyFile, "count", s.sealedOnOpen)
			}
			// Also with none left: deleted ones may stay in free pages.
			if err := s.scrub(ctx); err != nil {
				s.log.Warn("storage: the clear passwords may remain in the file's free pages", "err", err)
			}
		}
	}
	return nil
}

// provider returns the goose provider of the embedded SQL migrations and
// the sealing migration, which seals with s.key.
func (s *Store) provider() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys, goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(s.sealMigration()))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Close closes the database. Calls in progress may fail.
func (s *Store) Close() error {
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		_ = st.Close()
	}
	s.stmts = nil
	s.stmtMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlitestore: close: %w", err)
	}
	return nil
}

// SchemaVersion returns the database's schema version (the newest migration
// applied; Open applies them all).
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	p, err := s.provider()
	if err != nil {
		return 0, err
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlitestore: schema version: %w", err)
	}
	return v, nil
}
