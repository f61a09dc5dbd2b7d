-- Push notifications (DESIGN.md §11). See the Postgres migration of the same number.
ALTER TABLE users ADD COLUMN push_previews INTEGER NOT NULL DEFAULT 0;

CREATE TABLE push_subscriptions (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id  TEXT   NOT NULL,
    endpoint   TEXT   NOT NULL,
    p256dh     TEXT   NOT NULL,
    auth       TEXT   NOT NULL,
    created_at TEXT   NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX push_subscriptions_endpoint ON push_subscriptions (endpoint);

CREATE TABLE push_state (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         BIGINT  NOT NULL,
    device_id       TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    sent_seq        BIGINT  NOT NULL DEFAULT 0,
    shown           INTEGER NOT NULL DEFAULT 0,
    silent          INTEGER NOT NULL DEFAULT 0,
    first_at        TEXT    NOT NULL,
    quiet_since     TEXT    NOT NULL,
    not_before      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_until   TEXT,
    UNIQUE (user_id, device_id, conversation_id),
    FOREIGN KEY (user_id, device_id) REFERENCES push_subscriptions (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX push_state_pending ON push_state (id) WHERE seq > sent_seq;
