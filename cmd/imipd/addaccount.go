package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"imip-transport/imipside/imipserver"
	"imip-transport/imipside/wire"
)

// addAccount is `imipd add-account`: it creates or updates one account in
// the data directory's database.
func addAccount(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("imipd add-account", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data directory (created 0700)")
	keyFile := fs.String("key-file", "", keyFileUsage)
	number := fs.String("number", "", "the account's IMIP number (digits)")
	nick := fs.String("nick", "", "the account's nickname")
	pwFile := fs.String("password-file", "", "read the password from the first line of this file")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	pwArg := fs.String("password", "", "the password itself (INSECURE: visible in the process list and shell history)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("imipd add-account: unexpected argument %q", fs.Arg(0))
	}
	if *data == "" || *keyFile == "" || *number == "" {
		return errors.New("imipd add-account: -data, -key-file and -number are required")
	}
	sources := 0
	for _, set := range []bool{*pwFile != "", *pwStdin, *pwArg != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return errors.New("imipd add-account: give exactly one of -password-file, -password-stdin, -password")
	}
	var pw string
	switch {
	case *pwFile != "":
		f, err := os.Open(*pwFile)
		if err != nil {
			return fmt.Errorf("imipd add-account: %w", err)
		}
		pw, err = readPassword(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("imipd add-account: %w", err)
		}
	case *pwStdin:
		var err error
		if pw, err = readPassword(stdin); err != nil {
			return fmt.Errorf("imipd add-account: %w", err)
		}
	default:
		fmt.Fprintln(stderr, "imipd add-account: warning: -password exposes the password to other local users; prefer -password-file or -password-stdin")
		pw = *pwArg
	}
	a := imipserver.Account{Number: wire.Number(*number), Password: pw, Nick: *nick}
	if err := a.Validate(); err != nil {
		return fmt.Errorf("imipd add-account: %w", err)
	}
	st, err := openStore(ctx, *data, *keyFile, stderrLogger(stderr))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.PutAccount(ctx, a); err != nil {
		return fmt.Errorf("imipd add-account: %w", err)
	}
	fmt.Fprintf(stdout, "account %s (%q) saved\n", a.Number, a.Nick)
	return nil
}

// stderrLogger logs the store's notices (a key file created, passwords
// sealed) and warnings to stderr, for the commands other than serve.
func stderrLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, nil))
}

// rotateKey is `imipd rotate-key`: it re-seals every password of the data
// directory's database under a new key, which replaces the key file.
func rotateKey(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("imipd rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "data directory, holding "+dbName)
	keyFile := fs.String("key-file", "", "the key file to replace; it must open the database")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("imipd rotate-key: unexpected argument %q", fs.Arg(0))
	}
	if *data == "" || *keyFile == "" {
		return errors.New("imipd rotate-key: -data and -key-file are required")
	}
	log := stderrLogger(stderr)
	warnKeyFile(*keyFile, log)
	path := filepath.Join(*data, dbName)
	n, err := imipserver.RotateSQLiteKey(ctx, path, imipserver.SQLiteOptions{KeyFile: *keyFile, Logger: log})
	if err != nil {
		return fmt.Errorf("imipd rotate-key: %w", err)
	}
	fmt.Fprintf(stdout, "imipd rotate-key: %d password(s) re-sealed under a new key in %s; the old key no longer opens %s. Back up the new key file.\n", n, *keyFile, path)
	return nil
}
