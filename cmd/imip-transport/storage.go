package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"imip-transport/gateway"
	"imip-transport/gateway/pgstore"
	"imip-transport/gateway/sqlitestore"
)

// checkPostgres checks the postgres driver's settings and reads the
// password file (every command that opens the store needs it).
func (s *StorageConfig) checkPostgres() []error {
	var errs []error
	if s.Path != "" {
		errs = append(errs, errors.New("storage.path is for the sqlite driver; the postgres driver uses storage.dsn"))
	}
	if s.DSN == "" {
		errs = append(errs, errors.New("storage.dsn is required for the postgres driver"))
	} else if _, err := pgconn.ParseConfig(s.DSN); err != nil {
		// pgconn's parse errors leave the password out.
		errs = append(errs, fmt.Errorf("storage.dsn: %w", err))
	}
	if s.KeyFile == "" {
		errs = append(errs, errors.New("storage.key_file is required: the key that seals the IMIP passwords in the database (created on first run)"))
	} else if err := checkKeyFile(s.KeyFile); err != nil {
		errs = append(errs, fmt.Errorf("storage.key_file: %w", err))
	}
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("storage.password_file: %w", err))
		}
		s.Password = strings.TrimSpace(string(b))
		if s.Password == "" && err == nil {
			errs = append(errs, errors.New("storage.password_file is empty"))
		}
	}
	return errs
}

// lockPath is the path the store lock (internal/storelock) is taken
// beside: the SQLite file, or for PostgreSQL the key file, which every
// process using the database on this host needs.
func (s *StorageConfig) lockPath() string {
	if s.Driver == "postgres" {
		return s.KeyFile
	}
	return s.Path
}

// where names the store in messages (never with the DSN's password).
func (s *StorageConfig) where() string {
	if s.Driver == "postgres" {
		if c, err := pgconn.ParseConfig(s.DSN); err == nil {
			return fmt.Sprintf("postgres:%s@%s/%s", c.User, c.Host, c.Database)
		}
		return "postgres"
	}
	return s.Path
}

// rotateStoreKey re-seals the configured store's passwords under a new key.
func rotateStoreKey(ctx context.Context, s StorageConfig, log *slog.Logger) (int, error) {
	if s.Driver == "postgres" {
		return pgstore.RotateKey(ctx, s.DSN, pgstore.Options{KeyFile: s.KeyFile, Password: s.Password, Logger: log})
	}
	return sqlitestore.RotateKey(ctx, s.Path, sqlitestore.Options{KeyFile: s.KeyFile, Logger: log})
}

// openStore opens the configured store.
func openStore(ctx context.Context, s StorageConfig, log *slog.Logger) (gateway.Store, error) {
	if s.Driver == "postgres" {
		return pgstore.Open(ctx, s.DSN, pgstore.Options{KeyFile: s.KeyFile, Password: s.Password, Logger: log})
	}
	return sqlitestore.Open(ctx, s.Path, sqlitestore.Options{KeyFile: s.KeyFile, Logger: log})
}
