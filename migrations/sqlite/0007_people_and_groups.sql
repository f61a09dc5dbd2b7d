-- People, conversations and groups (DESIGN.md §8, §9). See the Postgres migration of the same number.
ALTER TABLE users ADD COLUMN avatar_key TEXT;
ALTER TABLE users ADD COLUMN nickname_fold TEXT NOT NULL DEFAULT '';
UPDATE users SET nickname_fold = lower(nickname);
ALTER TABLE users ADD COLUMN last_seen_at TEXT;

ALTER TABLE friendships ADD COLUMN remark TEXT;

CREATE TABLE blocks (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT   NOT NULL,
    PRIMARY KEY (user_id, blocked_id),
    CHECK (user_id <> blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id);

ALTER TABLE user_conversations ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE user_conversations ADD COLUMN draft TEXT;
ALTER TABLE user_conversations ADD COLUMN cleared_seq BIGINT NOT NULL DEFAULT 0;

ALTER TABLE chat_groups ADD COLUMN announcement TEXT;
ALTER TABLE chat_groups ADD COLUMN announcement_at TEXT;
ALTER TABLE chat_groups ADD COLUMN avatar_key TEXT;
ALTER TABLE chat_groups ADD COLUMN muted_all INTEGER NOT NULL DEFAULT 0;
ALTER TABLE group_members ADD COLUMN muted_until TEXT;
CREATE INDEX group_members_muted ON group_members (group_id, user_id) WHERE muted_until IS NOT NULL;
CREATE INDEX chat_groups_muted_all ON chat_groups (id) WHERE muted_all;

CREATE TABLE group_invites (
    code       TEXT PRIMARY KEY,
    group_id   BIGINT NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    created_by BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT   NOT NULL,
    expires_at TEXT,
    max_uses   BIGINT,
    uses       BIGINT NOT NULL DEFAULT 0,
    revoked_at TEXT
);
CREATE INDEX group_invites_group ON group_invites (group_id, created_at);
