-- The message lifecycle (DESIGN.md §7); see the Postgres migration 0006 for the model. SQLite cannot change a
-- CHECK constraint in place, so `messages` and `files` are rebuilt with the new kinds and columns. `messages`
-- no longer references `files` (as on Postgres since 0002), so that `files` can be rebuilt after it.
CREATE TABLE messages_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT      NOT NULL,
    from_user_id    BIGINT      NOT NULL REFERENCES users (id),
    to_user_id      BIGINT REFERENCES users (id),
    group_id        BIGINT REFERENCES chat_groups (id) ON DELETE CASCADE,
    kind            TEXT        NOT NULL CHECK (kind IN
        ('text', 'image', 'video', 'voice', 'file', 'merged', 'recall', 'edit', 'reaction', 'system')),
    body            TEXT,
    file_id         BIGINT,
    client_msg_id   TEXT,
    created_at      TEXT NOT NULL,
    target_id       BIGINT,
    reply_to_id     BIGINT,
    edited_at       TEXT,
    recalled_at     TEXT,
    recalled_by     BIGINT,
    meta            TEXT,
    UNIQUE (conversation_id, seq)
);
INSERT INTO messages_new (id, conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id,
                          client_msg_id, created_at)
SELECT id, conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id, client_msg_id, created_at
FROM messages;
-- Ids are never reused: the new table continues from the highest id ever handed out, not the highest kept.
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'messages'))
WHERE name = 'messages_new';
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE UNIQUE INDEX messages_client_msg_id ON messages (from_user_id, client_msg_id);
CREATE INDEX messages_file ON messages (file_id) WHERE file_id IS NOT NULL;
CREATE INDEX messages_target ON messages (target_id) WHERE target_id IS NOT NULL;

CREATE TABLE files_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    uploader_id  BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    storage_key  TEXT        NOT NULL UNIQUE,
    kind         TEXT        NOT NULL CHECK (kind IN ('image', 'video', 'voice', 'file')),
    content_type TEXT        NOT NULL,
    size         BIGINT      NOT NULL,
    width        INTEGER,
    height       INTEGER,
    sha256       TEXT        NOT NULL,
    created_at   TEXT NOT NULL,
    referenced_at TEXT,
    name         TEXT,
    duration_ms  BIGINT
);
INSERT INTO files_new (id, uploader_id, storage_key, kind, content_type, size, width, height, sha256, created_at,
                       referenced_at)
SELECT id, uploader_id, storage_key, kind, content_type, size, width, height, sha256, created_at, referenced_at
FROM files;
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'files'))
WHERE name = 'files_new';
DROP TABLE files;
ALTER TABLE files_new RENAME TO files;
CREATE INDEX files_unreferenced ON files (created_at) WHERE referenced_at IS NULL;

CREATE TABLE message_reactions (
    message_id BIGINT NOT NULL,
    emoji      TEXT   NOT NULL,
    user_id    BIGINT NOT NULL,
    created_at TEXT   NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE hidden_messages (
    user_id         BIGINT NOT NULL,
    message_id      BIGINT NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    hidden_at       TEXT NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX hidden_messages_conversation ON hidden_messages (user_id, conversation_id, seq);
CREATE INDEX hidden_messages_recent ON hidden_messages (user_id, hidden_at);

-- Per device: the newest hide it was told of, so a device that was away hears of hides made meanwhile.
CREATE TABLE device_hide_cursors (
    user_id   BIGINT NOT NULL,
    device_id TEXT   NOT NULL,
    hidden_at TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE message_mentions (
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id)
);

CREATE TABLE message_files (
    message_id BIGINT NOT NULL,
    file_id    BIGINT NOT NULL,
    PRIMARY KEY (message_id, file_id)
);
CREATE INDEX message_files_file ON message_files (file_id);
