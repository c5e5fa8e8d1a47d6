// Package pgstore implements gateway.Store on PostgreSQL, with
// github.com/jackc/pgx/v5 (a pgxpool pool, used through database/sql so
// that the same migration tool as gateway/sqlitestore, pressly/goose, runs
// the schema).
//
// [Open] brings the schema up to date with the versioned migrations
// embedded in the binary; the versions are those of sqlitestore (1 tables,
// 2 queues, 3 sealed passwords, 4 last login), in PostgreSQL's dialect. A
// database with a newer version is refused.
//
// IMIP passwords are sealed with internal/seal exactly as sqlitestore does
// (same purpose string, the bare JID as associated data, a key check row),
// so a registration moves between the stores with the same key file.
//
// Every write method is one transaction; Apply (the gateway's group
// committer's batch) is one transaction per batch, so a batch is durable
// when Apply returns nil (PostgreSQL's synchronous_commit decides what
// "durable" means: keep it on).
//
// Listings are ordered bytewise (COLLATE "C"), as in SQLite, whatever the
// database's collation.
package pgstore
