package main

// migrate-store: copy a store into another (SQLite <-> PostgreSQL).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"

	"imip-transport/gateway"
	"imip-transport/internal/storelock"
)

// migrateBatch is the number of queued messages copied per transaction.
const migrateBatch = 500

// migrateStore is `imip-transport migrate-store -from DRIVER:WHERE -to
// DRIVER:WHERE`: it copies the registrations (passwords re-sealed under
// the target's key), contact lists, was-online flags and queued messages.
// Both stores must be out of use (the transport stopped).
func migrateStore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("imip-transport migrate-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "source store: sqlite:PATH or postgres:DSN")
	to := fs.String("to", "", "target store: sqlite:PATH or postgres:DSN")
	fromKey := fs.String("from-key", "", "key file of the source store (storage.key_file)")
	toKey := fs.String("to-key", "", "key file of the target store (default: -from-key); created if absent and the target holds no sealed password")
	fromPW := fs.String("from-password-file", "", "PostgreSQL password file of the source (optional)")
	toPW := fs.String("to-password-file", "", "PostgreSQL password file of the target (optional)")
	force := fs.Bool("force", false, "delete every registration (with its contacts and messages) of a non-empty target first")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || *from == "" || *to == "" || *fromKey == "" {
		fmt.Fprintln(stderr, "usage: imip-transport migrate-store -from sqlite:PATH|postgres:DSN -to sqlite:PATH|postgres:DSN -from-key FILE [-to-key FILE] [-from-password-file F] [-to-password-file F] [-force]")
		return 2
	}
	if *toKey == "" {
		*toKey = *fromKey
	}
	src, err := storeSpec(*from, *fromKey, *fromPW)
	if err == nil {
		var dst StorageConfig
		dst, err = storeSpec(*to, *toKey, *toPW)
		if err == nil {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			err = copyStore(ctx, src, dst, *force, stdout)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "imip-transport migrate-store:", err)
		return 1
	}
	return 0
}

// storeSpec parses DRIVER:WHERE into a storage configuration.
func storeSpec(spec, keyFile, passwordFile string) (StorageConfig, error) {
	driver, where, ok := strings.Cut(spec, ":")
	s := StorageConfig{Driver: driver, KeyFile: keyFile, PasswordFile: passwordFile}
	var errs []error
	switch {
	case !ok || where == "":
		return s, fmt.Errorf("store %q: want sqlite:PATH or postgres:DSN", spec)
	case driver == "sqlite":
		s.Path = where
		if passwordFile != "" {
			errs = append(errs, errors.New("a password file is for a postgres store"))
		}
	case driver == "postgres":
		s.DSN = where
		errs = s.checkPostgres()
	default:
		return s, fmt.Errorf("store %q: driver %q is not supported (use sqlite or postgres)", spec, driver)
	}
	return s, errors.Join(errs...)
}

func copyStore(ctx context.Context, srcCfg, dstCfg StorageConfig, force bool, stdout io.Writer) (err error) {
	if srcCfg.lockPath() == dstCfg.lockPath() && srcCfg.where() == dstCfg.where() {
		return errors.New("source and target are the same store")
	}
	locked := map[string]bool{}
	for _, c := range []StorageConfig{srcCfg, dstCfg} {
		if locked[c.lockPath()] {
			continue
		}
		locked[c.lockPath()] = true
		lock, err := storelock.Acquire(c.lockPath())
		if errors.Is(err, storelock.ErrLocked) {
			return fmt.Errorf("a transport is running on %s, stop it first: %w", c.where(), err)
		}
		if err != nil {
			return err
		}
		defer func() { _ = lock.Release() }()
	}
	src, err := openStore(ctx, srcCfg, nil)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, err := openStore(ctx, dstCfg, nil)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer func() {
		if cerr := dst.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	old, err := dst.Registrations(ctx)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if len(old) > 0 && !force {
		return fmt.Errorf("the target %s holds %d registration(s): refusing to mix stores (-force deletes them first)", dstCfg.where(), len(old))
	}
	for _, r := range old {
		if err := dst.DeleteRegistration(ctx, r.JID); err != nil {
			return fmt.Errorf("target: %w", err)
		}
	}
	regs, err := src.Registrations(ctx)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	online, err := src.OnlineJIDs(ctx)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	var contacts, messages int
	for _, r := range regs {
		// PutRegistration seals the password under the target's key.
		if err := dst.PutRegistration(ctx, r); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		cs, err := src.Contacts(ctx, r.JID)
		if err != nil {
			return fmt.Errorf("source: %w", err)
		}
		if err := dst.SaveContacts(ctx, r.JID, cs); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		contacts += len(cs)
		n, err := copyQueue(ctx, src, dst, r.JID)
		messages += n
		if err != nil {
			return err
		}
	}
	var ops []gateway.Op
	for _, j := range online {
		ops = append(ops, gateway.OpSetOnline{JID: j, Online: true})
	}
	if err := dst.Apply(ctx, ops); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	fmt.Fprintf(stdout, "imip-transport migrate-store: copied %d registration(s), %d contact(s), %d queued message(s) from %s to %s\n",
		len(regs), contacts, messages, srcCfg.where(), dstCfg.where())
	return nil
}

// copyQueue copies jid's queued messages in order, migrateBatch per
// transaction (they get new IDs and acceptance times in the target).
func copyQueue(ctx context.Context, src, dst gateway.Store, jid string) (int, error) {
	ms, err := src.Messages(ctx, jid)
	if err != nil {
		return 0, fmt.Errorf("source: %w", err)
	}
	for start := 0; start < len(ms); start += migrateBatch {
		end := min(start+migrateBatch, len(ms))
		ops := make([]gateway.Op, 0, end-start)
		for i := start; i < end; i++ {
			m := ms[i]
			ops = append(ops, gateway.OpPutMessage{Msg: &m})
		}
		if err := dst.Apply(ctx, ops); err != nil {
			return start, fmt.Errorf("target: %w", err)
		}
	}
	return len(ms), nil
}
