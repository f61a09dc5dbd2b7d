-- Message search (DESIGN.md §10). The server tokenizes (src/domain/search.rs) and stores each content message's
-- tokens, space-separated, in this FTS5 index under the message's id. The `ascii` tokenizer splits only on ASCII
-- spaces and punctuation but `$` (text tokens hold none; a conversation's token starts with `$`) and keeps every
-- other character, so the index holds exactly the server's tokens. Contentless (the text is in `messages`), without positions (a query's CJK runs are checked on
-- the text instead), and with deletes for recalls and edits.
CREATE VIRTUAL TABLE message_search USING fts5(
    tokens, tokenize = "ascii tokenchars '$'", detail = 'none', content = '', contentless_delete = 1
);

-- Messages stored before this migration are indexed by the server at startup, in chunks from `next_id` to
-- `last_id`; the row is gone when that is done. Messages written after it are indexed as they are written.
CREATE TABLE search_backfill (
    next_id BIGINT NOT NULL,
    last_id BIGINT NOT NULL
);
INSERT INTO search_backfill (next_id, last_id) SELECT 1, COALESCE(MAX(id), 0) FROM messages;

