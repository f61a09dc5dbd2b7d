-- Message search (DESIGN.md §10). The server tokenizes (src/domain/search.rs) and stores each content message's
-- tokens as a `tsvector` built from the token list as it is (`array_to_tsvector`: no parser, no dictionary),
-- without positions (a query's CJK runs are checked on the text instead). NULL: nothing to find (events,
-- recalled messages, files without a caption).
ALTER TABLE messages ADD COLUMN search tsvector;
-- New entries wait in the index's pending list until it is merged (by autovacuum or when it fills); every search
-- scans that list, so it is kept to 512 kB (the default 4 MB cost ~11 ms per search at 1,000,000 messages).
CREATE INDEX messages_search ON messages USING gin (search) WITH (gin_pending_list_limit = 512)
    WHERE search IS NOT NULL;

-- Messages stored before this migration are indexed by the server at startup, in chunks from `next_id` to
-- `last_id`; the row is gone when that is done. Messages written after it are indexed as they are written.
CREATE TABLE search_backfill (
    next_id BIGINT NOT NULL,
    last_id BIGINT NOT NULL
);
INSERT INTO search_backfill (next_id, last_id) SELECT 1, COALESCE(MAX(id), 0) FROM messages;

