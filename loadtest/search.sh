#!/usr/bin/env bash
# Search benchmark (README, Benchmarks): seeds <database URL> (when empty) with chat-like Chinese and English
# messages through the store layer, times searches (examples/search_bench.rs), then prints the message text's
# size and the search index's size in that database.
#   loadtest/search.sh sqlite:///tmp/search-bench/gochat.db [messages] [conversations]
#   loadtest/search.sh postgres://postgres@127.0.0.1:55433/search_bench [messages] [conversations]
set -euo pipefail
cd "$(dirname "$0")/.."
url=${1:?database URL}; shift
cargo build --release --quiet --example search_bench
target/release/examples/search_bench "$url" "$@"
case "$url" in
  sqlite://*)
    db=${url#sqlite://}; db=${db%%\?*}
    # The FTS5 index is its shadow tables: the segments (_data), their directory (_idx) and the per-row sizes
    # (_docsize); detail=none keeps no positions.
    sqlite3 "$db" "SELECT 'text_bytes', SUM(LENGTH(CAST(body AS BLOB))) FROM messages WHERE kind = 'text';
      SELECT 'index_bytes', (SELECT SUM(LENGTH(block)) FROM message_search_data)
        + (SELECT COALESCE(SUM(LENGTH(term)) + 16 * COUNT(*), 0) FROM message_search_idx)
        + (SELECT COALESCE(SUM(LENGTH(sz)) + 8 * COUNT(*), 0) FROM message_search_docsize);"
    ;;
  postgres*)
    # The tokens column as stored (compressed or not) and its GIN index.
    psql "$url" -Atc "SELECT 'text_bytes', SUM(octet_length(body)) FROM messages WHERE kind = 'text';
      SELECT 'tokens_column_bytes', SUM(pg_column_size(search)) FROM messages;
      SELECT 'gin_index_bytes', pg_relation_size('messages_search');"
    ;;
esac
