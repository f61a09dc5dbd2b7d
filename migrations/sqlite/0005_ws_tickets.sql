-- One-time WebSocket tickets (POST /api/ws/ticket): a client trades its bearer token for a ticket that opens one
-- socket within 30 s, so the long-lived token never travels in a URL. Only the ticket's SHA-256 is stored; times
-- are Unix seconds.
CREATE TABLE ws_tickets (
    ticket_hash      TEXT   PRIMARY KEY,
    user_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_version    BIGINT NOT NULL,
    token_expires_at BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL
);
CREATE INDEX ws_tickets_expires_at ON ws_tickets (expires_at);
