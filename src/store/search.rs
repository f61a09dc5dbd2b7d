//! Message search (DESIGN.md §10) on any SQL backend: the index kept in step with every write that changes what
//! a message says (send, edit, recall), the query, and the startup backfill of messages stored before the index
//! existed. Tokens come from `domain::search`; each backend stores and matches them as its [`Dialect`] says.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::sql::message_columns;
use super::{MessageRecord, SearchStore, SqlStore, StoreResult};
use crate::domain::search::{conversation_token, index_tokens, SearchQuery};

/// Messages the backfill indexes per transaction: short enough that sends wait for it only briefly (SQLite has
/// one writer), long enough that a million messages take a few hundred transactions.
const BACKFILL_CHUNK: i64 = 5000;

/// The tokens a message is indexed by: those of the text of a content message that says something (a text
/// message, or the caption of a picture, video or file) and its conversation's token; none for events and for
/// what has no text.
pub(crate) fn tokens_of(kind: &str, body: Option<&str>, conversation_id: &str) -> Option<String> {
    match kind {
        "text" | "image" | "video" | "voice" | "file" => {
            body.and_then(index_tokens).map(|tokens| format!("{tokens} {}", conversation_token(conversation_id)))
        }
        _ => None,
    }
}

/// Most conversations a search names in its index expression: a viewer in at most this many is searched
/// through their conversations' tokens (the index intersects the query's terms with them, however common the
/// terms are); one in more has enough of the messages for a walk of the matches, newest first, to fill a page
/// soon (README, Benchmarks).
const SCOPED_CONVERSATIONS: usize = 100;

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    String: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
{
    /// Indexes a message just written (or rewritten by an edit, after [`Self::unindex_in`]) in the caller's
    /// transaction.
    pub(crate) async fn index_in(
        tx: &mut sqlx::Transaction<'_, DB>,
        id: i64,
        kind: &str,
        body: Option<&str>,
        conversation_id: &str,
    ) -> StoreResult<()> {
        if let (Some(tokens), Some(body)) = (tokens_of(kind, body, conversation_id), body) {
            sqlx::query(DB::SEARCH_INDEX).bind(id).bind(tokens).bind(body).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Takes a message out of the index in the caller's transaction (a recall; an edit before reindexing).
    pub(crate) async fn unindex_in(tx: &mut sqlx::Transaction<'_, DB>, id: i64) -> StoreResult<()> {
        sqlx::query(DB::SEARCH_UNINDEX).bind(id).execute(&mut **tx).await?;
        Ok(())
    }
}

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    String: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    (i64, i64): for<'r> FromRow<'r, DB::Row>,
    (i64, String, Option<String>, String): for<'r> FromRow<'r, DB::Row>,
{
    /// Indexes the messages stored before the index existed (the range the migration recorded), a chunk per
    /// transaction, and forgets the range when done. Each chunk first takes the range's row lock, so nodes
    /// starting together take turns, and (SQLite) the write lock, so no edit or recall interleaves with a chunk;
    /// on Postgres the index statement only writes tokens for the text it read.
    pub(crate) async fn backfill_search(&self) -> StoreResult<u64> {
        let mut indexed = 0u64;
        loop {
            let mut tx = self.writer().begin().await?;
            let range: Option<(i64, i64)> =
                sqlx::query_as("UPDATE search_backfill SET next_id = next_id RETURNING next_id, last_id")
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((next, last)) = range else {
                tx.commit().await?;
                break;
            };
            if next > last {
                sqlx::query("DELETE FROM search_backfill").execute(&mut *tx).await?;
                tx.commit().await?;
                break;
            }
            let until = next.saturating_add(BACKFILL_CHUNK - 1).min(last);
            let rows: Vec<(i64, String, Option<String>, String)> = sqlx::query_as(
                "SELECT id, kind, body, conversation_id FROM messages
                 WHERE id >= $1 AND id <= $2 AND body IS NOT NULL AND recalled_at IS NULL",
            )
            .bind(next)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?;
            for (id, kind, body, conversation) in rows {
                if tokens_of(&kind, body.as_deref(), &conversation).is_some() {
                    Self::unindex_in(&mut tx, id).await?;
                    Self::index_in(&mut tx, id, &kind, body.as_deref(), &conversation).await?;
                    indexed += 1;
                }
            }
            sqlx::query("UPDATE search_backfill SET next_id = $1").bind(until + 1).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        Ok(indexed)
    }
}

#[async_trait]
impl<DB> SearchStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    String: for<'q> Param<'q, DB>,
    DateTime<Utc>: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    MessageRecord: for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    DB: sqlx::database::HasStatementCache,
{
    async fn search(
        &self,
        viewer: i64,
        query: &SearchQuery,
        conversation_id: Option<&str>,
        before_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<MessageRecord>> {
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let scope: Vec<String> = match conversation_id {
            Some(c) => vec![conversation_token(c)],
            None => {
                let mine: Vec<(String,)> =
                    sqlx::query_as("SELECT conversation_id FROM user_conversations WHERE user_id = $1 LIMIT $2")
                        .bind(viewer)
                        .bind(SCOPED_CONVERSATIONS as i64 + 1)
                        .fetch_all(self.reader())
                        .await?;
                if mine.is_empty() {
                    return Ok(Vec::new());
                }
                if mine.len() > SCOPED_CONVERSATIONS {
                    Vec::new()
                } else {
                    mine.iter().map(|(c,)| conversation_token(c)).collect()
                }
            }
        };
        // Only the viewer's side of each conversation, from where it became visible to them (joining a group,
        // clearing a conversation), never recalled (also unindexed) or hidden by them.
        let mut sql = format!(
            "SELECT {columns} FROM messages WHERE id IN (
                 SELECT {id} FROM {from}
                 JOIN user_conversations uc ON uc.user_id = $1 AND uc.conversation_id = m.conversation_id
                 WHERE {matches} AND {id} < $3 AND m.seq > uc.visible_from_seq AND m.recalled_at IS NULL
                   AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.message_id = m.id)",
            columns = message_columns!(),
            id = DB::SEARCH_ID,
            from = DB::SEARCH_FROM,
            matches = DB::SEARCH_MATCH,
        );
        let mut n = 4;
        if conversation_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND m.conversation_id = ${n}"));
        }
        for _ in &query.runs {
            n += 1;
            sql.push_str(&format!(" AND m.body LIKE ${n}"));
        }
        sql.push_str(&format!(" ORDER BY {} DESC LIMIT $4) ORDER BY id DESC", DB::SEARCH_ID));
        // Planned for each query's own terms (not a cached generic plan): on Postgres whether to walk the
        // newest messages or intersect the index depends on how common the terms are, and a generic plan chose
        // the walk for a term in no message (219 ms at 1,000,000 messages instead of 0.3).
        let mut q = sqlx::query_as::<DB, MessageRecord>(&sql)
            .persistent(false)
            .bind(viewer)
            .bind(DB::search_expression(query, &scope))
            .bind(before_id)
            .bind(limit);
        if let Some(c) = conversation_id {
            q = q.bind(c.to_owned());
        }
        for run in &query.runs {
            // A CJK run holds no `%`, `_` or case, so LIKE is a plain substring test on both backends.
            q = q.bind(format!("%{run}%"));
        }
        Ok(q.fetch_all(self.reader()).await?)
    }
}
