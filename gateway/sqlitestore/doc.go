// Package sqlitestore implements gateway.Store on an SQLite file, with the
// pure-Go driver modernc.org/sqlite (no cgo).
//
// [Open] creates the file if needed and brings its schema up to date with
// the versioned migrations embedded in the binary (pressly/goose).
// The database runs in WAL mode with synchronous=FULL, so a write is on disk
// when its method returns, and with foreign keys on, so deleting a
// registration deletes its contacts.
// All access goes through a single connection: calls are serialised, which
// is ample for registrations and contact lists (a write per list change, not
// per message).
//
// # Secrets
//
// The file holds every user's IMIP password in clear: the imip-md5 login
// hashes the server's fresh salt with the password, so the gateway needs the
// password itself, not a hash of it.
// Open therefore creates the file with mode 0600 and tightens the mode of an
// existing file that is readable by group or others; SQLite gives its -wal
// and -shm files the same mode.
// Keep the directory private and its backups as protected as the file.
package sqlitestore
