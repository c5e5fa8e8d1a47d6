-- When the gateway last logged the user in to IMIP.

-- +goose Up
ALTER TABLE registrations ADD COLUMN last_login BIGINT; -- Unix nanoseconds, UTC; NULL when never

-- +goose Down
ALTER TABLE registrations DROP COLUMN last_login;
