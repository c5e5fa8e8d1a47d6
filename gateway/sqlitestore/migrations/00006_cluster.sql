-- The tables of several transport instances on one database. Only the
-- PostgreSQL store runs a cluster (internal/cluster); they exist here too
-- so that both stores keep the same schema versions (migrate-store copies
-- between them), and stay empty.

-- +goose Up
CREATE TABLE cluster_instances (
    id       INTEGER PRIMARY KEY,
    name     TEXT    NOT NULL,
    started  INTEGER NOT NULL,
    stopping INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE cluster_slots (
    slot     INTEGER NOT NULL PRIMARY KEY,
    instance INTEGER REFERENCES cluster_instances (id) ON DELETE SET NULL
);

CREATE TABLE cluster_owners (
    jid      TEXT    NOT NULL PRIMARY KEY REFERENCES registrations (jid) ON DELETE CASCADE,
    instance INTEGER NOT NULL REFERENCES cluster_instances (id) ON DELETE CASCADE,
    since    INTEGER NOT NULL
);

-- +goose Down
DROP TABLE cluster_owners;
DROP TABLE cluster_slots;
DROP TABLE cluster_instances;
