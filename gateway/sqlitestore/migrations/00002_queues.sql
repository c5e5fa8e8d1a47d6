-- Durable delivery: the queued messages and the "was online" flag.

-- +goose Up
ALTER TABLE registrations ADD COLUMN online INTEGER NOT NULL DEFAULT 0;

-- OnlineJIDs: only the users who were online, usually few.
CREATE INDEX registrations_online ON registrations (jid) WHERE online = 1;

-- AUTOINCREMENT: an id is never reused, even after the highest is deleted,
-- so a late delete of a delivered message can never hit a newer one.
CREATE TABLE messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    jid       TEXT    NOT NULL REFERENCES registrations (jid) ON DELETE CASCADE,
    dir       INTEGER NOT NULL CHECK (dir IN (1, 2)), -- 1 to IMIP, 2 to XMPP
    peer      TEXT    NOT NULL,
    stanza_id TEXT    NOT NULL DEFAULT '',
    resource  TEXT    NOT NULL DEFAULT '',
    nick      TEXT    NOT NULL DEFAULT '',
    body      TEXT    NOT NULL DEFAULT '',
    stamp     INTEGER,                     -- Unix microseconds, UTC; NULL when none
    accepted  INTEGER NOT NULL,            -- Unix nanoseconds, UTC
    receipt   INTEGER NOT NULL DEFAULT 0,
    tries     INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Messages (per JID, by id), QueuedJIDs (distinct jid) and the cascade from
-- registrations.
CREATE INDEX messages_jid ON messages (jid, id);

-- +goose Down
DROP INDEX messages_jid;
DROP TABLE messages;
DROP INDEX registrations_online;
ALTER TABLE registrations DROP COLUMN online;
