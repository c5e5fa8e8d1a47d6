// Package pgstore implements gateway.Store on PostgreSQL, with
// github.com/jackc/pgx/v5: one pgxpool pool of at most [MaxConns]
// connections, used natively by Apply and through database/sql (pgx's
// stdlib adapter on the same pool) by the migrations, which the same tool
// as gateway/sqlitestore runs (pressly/goose), and the other methods.
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
// committer's batch) is one transaction per batch, with all its ops
// pipelined in one pgx batch, so a batch is durable when Apply returns nil
// (PostgreSQL's synchronous_commit decides what "durable" means: keep it
// on). Ops of a JID that is not registered are skipped, as in sqlitestore;
// the registered ones are locked FOR KEY SHARE for the transaction, so a
// concurrent DeleteRegistration waits for the batch.
//
// Listings are ordered bytewise (COLLATE "C"), as in SQLite, whatever the
// database's collation.
package pgstore
