-- Several transport instances on one database (internal/cluster): the
-- instances, the component connections they hold (one row per slot of the
-- XMPP server's route for the component domain) and which instance owns
-- each user's IMIP session. An instance is alive while it holds its
-- session-level advisory lock (IMIP, id); the rows of a dead one are
-- cleared by the others.

-- +goose Up
CREATE TABLE cluster_instances (
    id       SERIAL  PRIMARY KEY,
    name     TEXT    NOT NULL,
    started  BIGINT  NOT NULL, -- Unix nanoseconds, UTC
    stopping BOOLEAN NOT NULL DEFAULT false
);

CREATE TABLE cluster_slots (
    slot     INTEGER NOT NULL PRIMARY KEY,
    instance INTEGER REFERENCES cluster_instances (id) ON DELETE SET NULL
);

CREATE TABLE cluster_owners (
    jid      TEXT    NOT NULL PRIMARY KEY REFERENCES registrations (jid) ON DELETE CASCADE,
    instance INTEGER NOT NULL REFERENCES cluster_instances (id) ON DELETE CASCADE,
    since    BIGINT  NOT NULL -- Unix nanoseconds, UTC
);

CREATE INDEX cluster_owners_instance ON cluster_owners (instance);

-- +goose Down
DROP TABLE cluster_owners;
DROP TABLE cluster_slots;
DROP TABLE cluster_instances;
