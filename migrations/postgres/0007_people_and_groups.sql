-- People, conversations and groups (DESIGN.md §8, §9).

-- Avatars: the storage key of the 256 px thumbnail the server made (NULL: none). `nickname_fold` is the nickname
-- case-folded by the server (Unicode), for user search by nickname substring; rows from before this migration
-- get lower(nickname) here and the server's folding the next time their nickname changes.
ALTER TABLE users ADD COLUMN avatar_key TEXT, ADD COLUMN nickname_fold TEXT;
UPDATE users SET nickname_fold = lower(nickname);
ALTER TABLE users ALTER COLUMN nickname_fold SET NOT NULL;
ALTER TABLE users ADD COLUMN last_seen_at TIMESTAMPTZ;

-- The name I gave a friend, seen only by me.
ALTER TABLE friendships ADD COLUMN remark TEXT;

-- Who blocked whom: a blocked user's friend requests and direct messages are refused.
CREATE TABLE blocks (
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, blocked_id),
    CHECK (user_id <> blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);

-- Per-user conversation settings. `cleared_seq`: the conversation was cleared for the user up to this seq; it
-- stays out of their list until a message comes after it.
ALTER TABLE user_conversations
    ADD COLUMN muted       BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN pinned      BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN draft       TEXT,
    ADD COLUMN cleared_seq BIGINT  NOT NULL DEFAULT 0;

-- Groups: announcement, avatar, mute-all; per-member mutes with an expiry.
ALTER TABLE chat_groups
    ADD COLUMN announcement    TEXT,
    ADD COLUMN announcement_at TIMESTAMPTZ,
    ADD COLUMN avatar_key      TEXT,
    ADD COLUMN muted_all       BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE group_members ADD COLUMN muted_until TIMESTAMPTZ;
-- Sends check mutes on these: they hold only what is muted, so an unmuted group costs two probes of empty indexes.
CREATE INDEX group_members_muted ON group_members (group_id, user_id) WHERE muted_until IS NOT NULL;
CREATE INDEX chat_groups_muted_all ON chat_groups (id) WHERE muted_all;

-- Invite links. `code` is 128 random bits, base64url.
CREATE TABLE group_invites (
    code       TEXT PRIMARY KEY,
    group_id   BIGINT      NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    created_by BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    max_uses   BIGINT,
    uses       BIGINT      NOT NULL DEFAULT 0,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX group_invites_group ON group_invites (group_id, created_at);

-- System messages (joins, leaves, renames, …) carry their facts in `meta`; nothing else changes in `messages`.
