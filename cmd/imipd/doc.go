// Command imipd is a reference IMIP/1.0 server, for demos, tests and anyone
// who needs an IMIP network to talk to.
//
// Serve:
//
//	imipd -listen 127.0.0.1:11319 -accounts accounts.toml -data ./imipd-data
//
// State (accounts, contact lists, pending requests, messages held for
// offline users) lives in DIR/imipd.db, a SQLite database; accounts.toml,
// when given, is upserted into it at every start. SIGINT or SIGTERM stops
// the server gracefully.
//
// Add or update one account from the shell:
//
//	imipd add-account -data ./imipd-data -number 1003003 -nick carol -password-stdin
//
// The password comes from -password-file or -password-stdin; -password
// takes it from the command line (visible to other local users) and warns.
package main
