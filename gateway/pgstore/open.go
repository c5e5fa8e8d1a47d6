package pgstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"imip-transport/gateway"
	"imip-transport/internal/seal"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MaxConns is the size of the connection pool: the gateway's writes are
// batched by its committer, so few connections are needed.
const MaxConns = 8

// ConnectTimeout bounds the connection to the server when Open is called
// with a context without a deadline.
const ConnectTimeout = 10 * time.Second

// Store is a gateway.Store on a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
	db   *sql.DB
	now  func() time.Time
	log  *slog.Logger
	key  *seal.Key
	// sealedOnOpen: the clear passwords sealed by migration 3 on Open.
	sealedOnOpen int
}

var _ gateway.Store = (*Store)(nil)

// Options are the settings of [Open].
type Options struct {
	// KeyFile is the file of the key that seals the IMIP passwords
	// (internal/seal); created on first use.
	KeyFile string
	// Password, when not empty, replaces the DSN's password (read from
	// storage.password_file). Never logged.
	Password string
	// Logger receives the store's notices; nil discards them.
	Logger *slog.Logger
}

// Open connects to the database named by dsn (a libpq URL or key=value
// string, as pgx parses it), finds the key and migrates the schema.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	return open(ctx, dsn, o, true)
}

func open(ctx context.Context, dsn string, o Options, create bool) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors never include the password.
		return nil, fmt.Errorf("pgstore: dsn: %w", err)
	}
	if o.Password != "" {
		cfg.ConnConfig.Password = o.Password
	}
	cfg.MaxConns = MaxConns
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{pool: pool, db: stdlib.OpenDBFromPool(pool), now: time.Now, log: log}
	if err := s.setup(ctx, o.KeyFile, create); err != nil {
		s.Close()
		return nil, fmt.Errorf("pgstore: open %s@%s/%s: %w", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return s, nil
}

// setup finds the key and migrates the schema.
func (s *Store) setup(ctx context.Context, keyFile string, create bool) error {
	if err := s.pool.Ping(ctx); err != nil {
		return err
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
		if r.Source != nil && r.Source.Version == sealVersion && r.Direction == "up" && s.sealedOnOpen > 0 {
			s.log.Info("storage: IMIP passwords sealed under the key file", "key_file", keyFile, "count", s.sealedOnOpen)
			if err := s.scrub(ctx); err != nil {
				s.log.Warn("storage: the clear passwords may remain in dead row versions", "err", err)
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
	// Instances of a cluster may start together: the migrations run under
	// an advisory lock (goose's), one instance at a time.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, s.db, fsys, goose.WithDisableGlobalRegistry(true),
		goose.WithGoMigrations(s.sealMigration()), goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Close closes the pool. Calls in progress may fail.
func (s *Store) Close() error {
	err := s.db.Close()
	s.pool.Close()
	if err != nil {
		return fmt.Errorf("pgstore: close: %w", err)
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
		return 0, fmt.Errorf("pgstore: schema version: %w", err)
	}
	return v, nil
}
