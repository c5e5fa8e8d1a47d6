-- Durable delivery: the queued messages and the "was online" flag.

-- +goose Up
ALTER TABLE registrations ADD COLUMN online BOOLEAN NOT NULL DEFAULT false;

CREATE INDEX registrations_online ON registrations (jid) WHERE online;

-- An identity column is never reused, even after the highest id is deleted,
-- so a late delete of a delivered message can never hit a newer one.
CREATE TABLE messages (
    id        BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    jid       TEXT     NOT NULL REFERENCES registrations (jid) ON DELETE CASCADE,
    dir       SMALLINT NOT NULL CHECK (dir IN (1, 2)), -- 1 to IMIP, 2 to XMPP
    peer      TEXT     NOT NULL,
    stanza_id TEXT     NOT NULL DEFAULT '',
    resource  TEXT     NOT NULL DEFAULT '',
    nick      TEXT     NOT NULL DEFAULT '',
    body      TEXT     NOT NULL DEFAULT '',
    stamp     BIGINT,                      -- Unix microseconds, UTC; NULL when none
    accepted  BIGINT   NOT NULL,           -- Unix nanoseconds, UTC
    receipt   BOOLEAN  NOT NULL DEFAULT false,
    tries     INTEGER  NOT NULL DEFAULT 0
);

CREATE INDEX messages_jid ON messages (jid, id);

-- +goose Down
DROP INDEX messages_jid;
DROP TABLE messages;
DROP INDEX registrations_online;
ALTER TABLE registrations DROP COLUMN online;
