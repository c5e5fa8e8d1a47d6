-- +goose Up
-- A message pushed live (held, see Config.HoldWrites) got its Message-ID
-- before it was stored; mkey keeps it, so a redelivery carries the same
-- Message-ID. Empty: the Message-ID is "m" + id.
ALTER TABLE messages ADD COLUMN mkey TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE messages DROP COLUMN mkey;
