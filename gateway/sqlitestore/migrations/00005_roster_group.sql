-- The roster group the user chose for their new IMIP contacts (the
-- settings command); '' means the gateway's configured group.

-- +goose Up
ALTER TABLE registrations ADD COLUMN roster_group TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE registrations DROP COLUMN roster_group;
