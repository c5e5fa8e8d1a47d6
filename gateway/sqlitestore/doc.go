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
// The file holds every user's IMIP password in clear: the imip-md5 login
// hashes the server's fresh salt with the password, so the gateway needs the
// password itself, not a hash of it. Queued messages are stored in clear
// too, until they are delivered or bounced.
// Open therefore creates the file with mode 0600 and tightens the mode of an
// existing file that is readable by group or others; SQLite gives its -wal
// and -shm files the same mode.
// Keep the directory private and its backups as protected as the file.
package sqlitestore
