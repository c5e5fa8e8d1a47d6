-- +goose Up
-- The schema imipd had before it used goose, when PRAGMA user_version = 1
-- recorded it. IF NOT EXISTS: on such a database this step changes nothing
-- and goose only records version 1, the data stays as it is.
CREATE TABLE IF NOT EXISTS accounts (
    number   TEXT PRIMARY KEY,
    password TEXT NOT NULL, -- in clear: imip-md5 hashes salt+password at each login
    nick     TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS contacts (
    owner   TEXT NOT NULL,
    contact TEXT NOT NULL,
    PRIMARY KEY (owner, contact)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contacts_by_contact ON contacts (contact, owner);

CREATE TABLE IF NOT EXISTS requests (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    sender    TEXT NOT NULL,
    recipient TEXT NOT NULL,
    text      TEXT NOT NULL,
    created   INTEGER NOT NULL, -- Unix seconds
    UNIQUE (sender, recipient)
);
CREATE INDEX IF NOT EXISTS requests_by_recipient ON requests (recipient, seq);

-- id is the Message-ID of the mesg-ack extension ("m" + id): AUTOINCREMENT
-- never reuses one, also after a delete.
CREATE TABLE IF NOT EXISTS messages (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    sender    TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sent      INTEGER NOT NULL, -- Unix seconds: the Timo header
    text      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_recipient ON messages (recipient, id);

-- +goose Down
DROP TABLE messages;
DROP TABLE requests;
DROP TABLE contacts;
DROP TABLE accounts;
