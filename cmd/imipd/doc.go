// Command imipd is a reference IMIP/1.0 server, for demos, tests and anyone
// who needs an IMIP network to talk to.
//
// Serve:
//
//	imipd -listen 127.0.0.1:11319 -accounts accounts.toml -data ./imipd-data -key-file ./imipd.key
//
// State (accounts, contact lists, pending requests, messages held for
// offline users) lives in DIR/imipd.db, a SQLite database; accounts.toml,
// when given, is upserted into it at every start. SIGINT or SIGTERM stops
// the server gracefully.
//
// The passwords in the database are sealed (AES-256-GCM) under the key in
// the -key-file file, which is created with mode 0600 on first run (its
// directory must exist and must not be writable by others). Keep it, and its
// backups, apart from the data directory: a copy of the database without
// it reveals no password, and without it the passwords are lost. imipd
// warns when the key file is readable by group or others.
//
// Add or update one account from the shell:
//
//	imipd add-account -data ./imipd-data -key-file ./imipd.key -number 1003003 -nick carol -password-stdin
//
// The password comes from -password-file or -password-stdin; -password
// takes it from the command line (visible to other local users) and warns.
//
// Replace the key, with the server stopped:
//
//	imipd rotate-key -data ./imipd-data -key-file ./imipd.key
//
// It writes a new key to F.new, re-seals every password in one transaction,
// renames F.new over F and vacuums the database; the old key no longer
// opens it.
//
// imipd -version prints the version (make build and make dist stamp the
// output of `git describe --tags --always --dirty`) and exits. imipd does
// not handle SIGHUP (it ends the process, as for any Go program that does
// not catch it): there is nothing to reload.
package main
