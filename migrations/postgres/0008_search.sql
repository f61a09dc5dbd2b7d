-- Message search (DESIGN.md §10). The server tokenizes (src/domain/search.rs) and stores each content message's
-- tokens as a `tsvector` built from the token list as it is (`array_to_tsvector`: no parser, no dictionary),
-- without positions (a query's CJK runs are checked on the text instead). NULL: nothing to find (events,
-- recalled messages, files without a caption).
ALTER TABLE messages ADD COLUMN search tsvector;
CREATE INDEX messages_search ON messages USING gin (search) WHERE search IS NOT NULL;

-- Messages stored before this migration are indexed by the server at startup, in chunks from `next_id` to
-- `last_id`; the row is gone when that is done. Messages written after it are indexed as they are written.
CREATE TABLE search_backfill (
    next_id BIGINT NOT NULL,
    last_id BIGINT NOT NULL
);
INSERT INTO search_backfill (next_id, last_id) SELECT 1, COALESCE(MAX(id), 0) FROM messages;

