// Package sqlitestore implements gateway.Store on an SQLite file, with the
// pure-Go driver modernc.org/sqlite (no cgo).
//
// [Open] creates the file if needed and brings its schema up to date with
// the versioned migrations embedded in the binary (pressly/goose); an older
// file is upgraded in place, a newer one is refused.
// The database runs in WAL mode with synchronous=FULL, so a write is on disk
// (the WAL fsynced) when its method returns nil, and with foreign keys on,
// so deleting a registration deletes its contacts and its queued messages.
// All access goes through a single connection: calls are serialised, and a
// read waits for a write in progress.
//
// # What is durable when
//
// Each writing method is one transaction, so one fsync.
// [Store.Apply] writes a whole batch of ops (queued messages, single
// contacts, the online flag) in one transaction: all of it is on disk when
// Apply returns nil, none of it when Apply returns an error.
// Messages are not meant to be written one Apply each: the gateway's group
// commit gathers the ops of every user waiting while a transaction runs into
// the next one, so one fsync serves many messages (see
// docs/ARCHITECTURE.md, "Storage: queues and group commit", and the numbers
// in docs/BENCHMARKS.md).
// Message IDs come from an AUTOINCREMENT key: ascending and never reused,
// so a late delete can never remove a newer message.
// [Store.SaveContacts] compares the list with the stored one and writes only
// the rows that differ; OpPutContact and OpDeleteContact write one row.
//
// # Costs
//
// Messages reads one user's queue by the index on (jid, id); OnlineJIDs
// reads a partial index of the users who were online; QueuedJIDs reads the
// whole (jid, id) index, so its cost grows with the number of queued
// messages: it is meant for start-up.
//
// # Secrets
//
// The gateway needs each user's IMIP password itself, not a hash of it: the
// imip-md5 login hashes the server's fresh salt with the password. The file
// therefore holds the passwords sealed (AES-256-GCM, see internal/seal)
// under the key in [Options.KeyFile], a separate file: a copy of the
// database without the key file reveals no password. Each sealed password
// is bound to its registration's JID, so a value moved to another row does
// not open. The Store hands the gateway clear passwords; sealing is its own
// business.
//
// Open creates the key file (mode 0600) when it is missing and the database
// holds no sealed password; a database with sealed passwords and a missing
// or different key file is refused, with an error naming the key file, and
// left untouched. A database made before sealing is sealed by migration 3
// (a Go migration, run by goose like the SQL ones), which replaces the clear
// column with password_sealed and stores a key check; the file is then
// vacuumed and its WAL truncated, so that the clear passwords leave the
// file's free pages too. [RotateKey] re-seals every password under a new
// key.
//
// Queued messages and contact lists are stored in clear, until they are
// delivered or bounced. Open therefore creates the file with mode 0600 and
// tightens the mode of an existing file that is readable by group or
// others; SQLite gives its -wal and -shm files the same mode.
// Keep the directory private, and the key file's backups apart from the
// database's.
package sqlitestore
