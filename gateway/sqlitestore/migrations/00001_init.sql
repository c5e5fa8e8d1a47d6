-- +goose Up
CREATE TABLE registrations (
    jid          TEXT    NOT NULL PRIMARY KEY,
    number       TEXT    NOT NULL,
    password     TEXT    NOT NULL, -- in clear: imip-md5 hashes salt+password at each login
    allow_remove INTEGER NOT NULL DEFAULT 0,
    created      INTEGER NOT NULL, -- Unix nanoseconds, UTC
    updated      INTEGER NOT NULL
) STRICT;

CREATE TABLE contacts (
    jid         TEXT    NOT NULL REFERENCES registrations (jid) ON DELETE CASCADE,
    number      TEXT    NOT NULL,
    nick        TEXT    NOT NULL DEFAULT '',
    in_list     INTEGER NOT NULL DEFAULT 0,
    pending_out INTEGER NOT NULL DEFAULT 0,
    out_text    TEXT    NOT NULL DEFAULT '',
    pending_in  INTEGER NOT NULL DEFAULT 0,
    in_text     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (jid, number)
) STRICT, WITHOUT ROWID;

-- +goose Down
DROP TABLE contacts;
DROP TABLE registrations;
