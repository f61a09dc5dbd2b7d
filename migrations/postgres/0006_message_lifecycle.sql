-- The message lifecycle (DESIGN.md §7). Every change to a conversation is a row of `messages` with the next seq:
-- content (`text`, `image`, `video`, `voice`, `file`, `merged`) and events (`recall`, `edit`, `reaction`,
-- `system`), the events naming what they change in `target_id`. A content row also holds its current state
-- (latest text, `edited_at`, `recalled_at`/`recalled_by`), which recall and edit update in the transaction that
-- appends their event. `meta` is JSON for what only some rows carry (mentions, forwarded, merged items, a
-- reaction's emoji and direction, a system event).
ALTER TABLE messages DROP CONSTRAINT messages_kind_check;
ALTER TABLE messages ADD CONSTRAINT messages_kind_check CHECK (kind IN
    ('text', 'image', 'video', 'voice', 'file', 'merged', 'recall', 'edit', 'reaction', 'system'));
-- Voice notes and files of any type (DESIGN.md §7): a file's original name (sanitised) and a voice note's
-- duration read from its container.
ALTER TABLE files DROP CONSTRAINT files_kind_check;
ALTER TABLE files ADD CONSTRAINT files_kind_check CHECK (kind IN ('image', 'video', 'voice', 'file'));
ALTER TABLE files ADD COLUMN name TEXT, ADD COLUMN duration_ms BIGINT;
ALTER TABLE messages
    ADD COLUMN target_id   BIGINT,
    ADD COLUMN reply_to_id BIGINT,
    ADD COLUMN edited_at   TIMESTAMPTZ,
    ADD COLUMN recalled_at TIMESTAMPTZ,
    ADD COLUMN recalled_by BIGINT,
    ADD COLUMN meta        TEXT;
CREATE INDEX messages_target ON messages (target_id) WHERE target_id IS NOT NULL;

-- Who reacted to a content message with what; at most one row per (message, emoji, user).
CREATE TABLE message_reactions (
    message_id BIGINT      NOT NULL,
    emoji      TEXT        NOT NULL,
    user_id    BIGINT      NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, emoji, user_id)
);

-- Messages a user deleted for themselves: gone from their history, previews and unread counts.
CREATE TABLE hidden_messages (
    user_id         BIGINT NOT NULL,
    message_id      BIGINT NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    hidden_at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX hidden_messages_conversation ON hidden_messages (user_id, conversation_id, seq);
CREATE INDEX hidden_messages_recent ON hidden_messages (user_id, hidden_at);

-- Per device: the newest hide it was told of, so a device that was away hears of hides made meanwhile.
CREATE TABLE device_hide_cursors (
    user_id   BIGINT NOT NULL,
    device_id TEXT   NOT NULL,
    hidden_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Who a message mentions (user 0: everyone), for `Conversation.mention_unread`.
CREATE TABLE message_mentions (
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    user_id         BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq, user_id)
);

-- Files a merged forward's items show: shared with the forward's conversation as a message's own file is.
CREATE TABLE message_files (
    message_id BIGINT NOT NULL,
    file_id    BIGINT NOT NULL,
    PRIMARY KEY (message_id, file_id)
);
CREATE INDEX message_files_file ON message_files (file_id);
