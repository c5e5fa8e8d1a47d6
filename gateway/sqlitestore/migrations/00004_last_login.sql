-- When the gateway last logged the user in to IMIP (OpSetOnline with
-- Online true): shown by `imip-transport users show`.

-- +goose Up
ALTER TABLE registrations ADD COLUMN last_login INTEGER; -- Unix nanoseconds, UTC; NULL when never

-- +goose Down
ALTER TABLE registrations DROP COLUMN last_login;
