-- A group's membership changes (members added, removed, the group dissolved) bump its conversation's
-- members_version, under the same row lock that orders them against the group's sends. A node keeps the member
-- list of the groups it sends to, with its version, and a send returns the list only when the version it sees is
-- not the one the node holds: a 500-member group's send no longer reads and ships 500 ids every time.
ALTER TABLE conversations ADD COLUMN members_version BIGINT NOT NULL DEFAULT 0;
