-- A group's membership changes bump its conversation's members_version, under the row lock that orders them
-- against the group's sends (see the Postgres migration 0003, where sends use it to skip re-reading members).
ALTER TABLE conversations ADD COLUMN members_version BIGINT NOT NULL DEFAULT 0;
