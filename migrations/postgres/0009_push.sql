-- Push notifications (DESIGN.md §11).

-- Whether the user's notifications may show the text of a message (off until they turn it on).
ALTER TABLE users ADD COLUMN push_previews BOOLEAN NOT NULL DEFAULT FALSE;

-- One Web Push subscription per device of a user; an endpoint belongs to one device (a browser that signs in as
-- someone else takes its endpoint with it).
CREATE TABLE push_subscriptions (
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id  TEXT        NOT NULL,
    endpoint   TEXT        NOT NULL,
    p256dh     TEXT        NOT NULL,
    auth       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX push_subscriptions_endpoint ON push_subscriptions (endpoint);

-- The push outbox, one row per subscribed device and conversation: `seq` is the latest change there that may
-- concern the device (a content message from someone else, or a recall), `sent_seq` how far the device's
-- notifications are handled. The server writes a message's rows in the transaction that stores it
-- (src/store/push.rs), so a committed message's push is never lost; only subscribed recipients other than the
-- author get one. A row with `seq > sent_seq` is pending: any node claims it (`claimed_until`, a
-- lease), decides, sends and moves `sent_seq`, so a burst is one push and a node that dies loses nothing.
-- `first_at`: the oldest unhandled change; `quiet_since`: the newest (a burst is sent once it has been quiet a
-- moment); `not_before`: a retry's or an ack wait's time; `shown`: the device was last sent a visible
-- notification (a recall or a read elsewhere then sends the silent update that replaces it); `silent`: what is
-- pending is only such an update (a read), nothing to alert about.
CREATE TABLE push_state (
    id              BIGSERIAL   PRIMARY KEY,
    user_id         BIGINT      NOT NULL,
    device_id       TEXT        NOT NULL,
    conversation_id TEXT        NOT NULL,
    seq             BIGINT      NOT NULL,
    sent_seq        BIGINT      NOT NULL DEFAULT 0,
    shown           BOOLEAN     NOT NULL DEFAULT FALSE,
    silent          BOOLEAN     NOT NULL DEFAULT FALSE,
    first_at        TIMESTAMPTZ NOT NULL,
    quiet_since     TIMESTAMPTZ NOT NULL,
    not_before      TIMESTAMPTZ,
    attempts        INT         NOT NULL DEFAULT 0,
    claimed_until   TIMESTAMPTZ,
    UNIQUE (user_id, device_id, conversation_id),
    FOREIGN KEY (user_id, device_id) REFERENCES push_subscriptions (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX push_state_pending ON push_state (id) WHERE seq > sent_seq;
