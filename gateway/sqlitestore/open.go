package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/pressly/goose/v3"

	"imip-transport/gateway"

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
}

var _ gateway.Store = (*Store)(nil)

// Open opens the SQLite database at path, creating the file with mode 0600
// if it does not exist, and applies the pending schema migrations.
// It fails if the file's schema is newer than this program knows.
// The caller must Close the Store.
func Open(ctx context.Context, path string) (*Store, error) {
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
	s := &Store{db: db, now: time.Now}
	if err := s.setup(ctx); err != nil {
		db.Close()
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

// setup checks the connection settings and migrates the schema.
func (s *Store) setup(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL (is the file on a network file system?)", mode)
	}
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
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
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	return nil
}

// Close closes the database. Calls in progress may fail.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlitestore: close: %w", err)
	}
	return nil
}
