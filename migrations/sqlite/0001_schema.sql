-- GoChat schema (SQLite). Ids are BIGINT below 2^53; times are TEXT (UTC).

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT        NOT NULL,
    -- lower(username): uniqueness and lookups are case-insensitive
    username_lower  TEXT        NOT NULL,
    nickname        TEXT        NOT NULL,
    sex             SMALLINT    NOT NULL DEFAULT 0,
    password_hash   TEXT        NOT NULL,
    -- bumped on password change; tokens carry it, so older tokens stop working
    token_version   BIGINT      NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX users_username_lower_key ON users (username_lower);
CREATE INDEX users_username_prefix ON users (username_lower);

CREATE TABLE friend_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    from_user_id BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_user_id   BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    message      TEXT        NOT NULL DEFAULT '',
    status       TEXT        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CHECK (from_user_id <> to_user_id)
);
-- at most one pending request per direction
CREATE UNIQUE INDEX friend_requests_one_pending ON friend_requests (from_user_id, to_user_id) WHERE status = 'pending';
CREATE INDEX friend_requests_to ON friend_requests (to_user_id, status);

-- one row per direction: (a, b) and (b, a)
CREATE TABLE friendships (
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    friend_id  BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, friend_id),
    CHECK (user_id <> friend_id)
);

CREATE TABLE chat_groups (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT        NOT NULL,
    owner_id       BIGINT      NOT NULL REFERENCES users (id),
    create_user_id BIGINT      NOT NULL REFERENCES users (id),
    created_at     TEXT NOT NULL,
    -- set when the owner dissolves the group; a dissolved group refuses everything
    dissolved_at   TEXT
);

CREATE TABLE group_members (
    group_id   BIGINT      NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT        NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    -- the group conversation's last_seq when this membership began: the member sees seq > joined_seq
    joined_seq BIGINT      NOT NULL DEFAULT 0,
    joined_at  TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- ended memberships, so a former member keeps access to what it saw while a member (e.g. files)
CREATE TABLE group_member_periods (
    group_id   BIGINT NOT NULL REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    from_seq   BIGINT NOT NULL,
    to_seq     BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id, from_seq)
);

CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,              -- d:<low>:<high> or g:<group id>
    kind            TEXT        NOT NULL CHECK (kind IN ('direct', 'group')),
    group_id        BIGINT REFERENCES chat_groups (id) ON DELETE CASCADE,
    user_low        BIGINT REFERENCES users (id) ON DELETE CASCADE,
    user_high       BIGINT REFERENCES users (id) ON DELETE CASCADE,
    -- the last allocated seq; a send increments it in the same transaction that inserts the message
    last_seq        BIGINT      NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE files (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    uploader_id  BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    storage_key  TEXT        NOT NULL UNIQUE,
    kind         TEXT        NOT NULL CHECK (kind IN ('image', 'video')),
    content_type TEXT        NOT NULL,
    size         BIGINT      NOT NULL,
    width        INTEGER,
    height       INTEGER,
    sha256       TEXT        NOT NULL,
    created_at   TEXT NOT NULL,
    -- set when a message first references the file; unreferenced uploads are cleaned up after an age
    referenced_at TEXT
);
CREATE INDEX files_unreferenced ON files (created_at) WHERE referenced_at IS NULL;

CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT      NOT NULL,
    from_user_id    BIGINT      NOT NULL REFERENCES users (id),
    to_user_id      BIGINT REFERENCES users (id),
    group_id        BIGINT REFERENCES chat_groups (id) ON DELETE CASCADE,
    kind            TEXT        NOT NULL CHECK (kind IN ('text', 'image', 'video')),
    body            TEXT,
    file_id         BIGINT REFERENCES files (id),
    client_msg_id   TEXT,
    created_at      TEXT NOT NULL,
    UNIQUE (conversation_id, seq)
);
-- idempotent sends: one message per (sender, client_msg_id); NULLs are distinct
CREATE UNIQUE INDEX messages_client_msg_id ON messages (from_user_id, client_msg_id);
CREATE INDEX messages_file ON messages (file_id) WHERE file_id IS NOT NULL;

-- a user's side of a conversation: it lists the conversation and holds the read cursor
CREATE TABLE user_conversations (
    user_id         BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id TEXT        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    read_seq        BIGINT      NOT NULL DEFAULT 0,
    -- the user sees messages with seq > visible_from_seq (groups: joined_seq; direct: 0)
    visible_from_seq BIGINT     NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation_id)
);
CREATE INDEX user_conversations_conversation ON user_conversations (conversation_id);
CREATE INDEX friendships_friend ON friendships (friend_id);
CREATE INDEX conversations_updated ON conversations (updated_at);

-- per device: how far it has acked each conversation (cumulative), so sync resumes exactly there
CREATE TABLE delivery_cursors (
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    delivered_seq   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, conversation_id)
);
