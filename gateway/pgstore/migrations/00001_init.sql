-- +goose Up
CREATE TABLE registrations (
    jid          TEXT    NOT NULL PRIMARY KEY,
    number       TEXT    NOT NULL,
    password     TEXT    NOT NULL, -- replaced by password_sealed in version 3
    allow_remove BOOLEAN NOT NULL DEFAULT false,
    created      BIGINT  NOT NULL, -- Unix nanoseconds, UTC
    updated      BIGINT  NOT NULL
);

CREATE TABLE contacts (
    jid         TEXT    NOT NULL REFERENCES registrations (jid) ON DELETE CASCADE,
    number      TEXT    NOT NULL,
    nick        TEXT    NOT NULL DEFAULT '',
    in_list     BOOLEAN NOT NULL DEFAULT false,
    pending_out BOOLEAN NOT NULL DEFAULT false,
    out_text    TEXT    NOT NULL DEFAULT '',
    pending_in  BOOLEAN NOT NULL DEFAULT false,
    in_text     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (jid, number)
);

-- +goose Down
DROP TABLE contacts;
DROP TABLE registrations;
