//! [`SqlStore`]: every aggregate's store, written once for any SQL backend with a [`super::dialect::Dialect`]
//! (each aggregate's implementation is in its own module: `users`, `friends`, `messages`, `groups`, `files`).
//! A backend module opens the pools and picks its send writer; everything else is shared.

use async_trait::async_trait;
use sqlx::{Database, Executor, IntoArguments, Pool};

use super::dialect::Dialect;
use super::{StoreHealth, StoreResult};

/// Cursor rows per upsert statement: 4 parameters each keeps a statement far below both databases' parameter
/// limits (SQLite 32,766; Postgres 65,535).
pub(crate) const ACK_ROWS_PER_STATEMENT: usize = 1000;

/// The columns each record type is read with, in its field order; one list per record, shared by every query.
macro_rules! user_columns {
    () => {
        "id, username, nickname, sex, password_hash, token_version, created_at, avatar_key, push_previews"
    };
}
macro_rules! message_columns {
    () => {
        "id, conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id, client_msg_id, created_at, \
         target_id, reply_to_id, edited_at, recalled_at, recalled_by, meta"
    };
}
macro_rules! file_columns {
    () => {
        "id, uploader_id, storage_key, kind, content_type, size, width, height, sha256, created_at, referenced_at, \
         name, duration_ms"
    };
}
macro_rules! request_columns {
    () => {
        "id, from_user_id, to_user_id, message, status, created_at"
    };
}
/// The end of every statement that marks devices' push outbox rows (`INSERT INTO push_state (user_id,
/// device_id, conversation_id, seq, first_at, quiet_since) SELECT …`): a row already there moves to the newest
/// change and the time of it; one that had nothing pending starts a new burst (its first change, no retry
/// time, no failed attempts). Rows a statement upserts must be distinct (Postgres refuses to change one row
/// twice in a statement).
macro_rules! push_upsert {
    () => {
        " ON CONFLICT (user_id, device_id, conversation_id) DO UPDATE SET
            first_at    = CASE WHEN push_state.seq > push_state.sent_seq THEN push_state.first_at ELSE excluded.first_at END,
            not_before  = CASE WHEN push_state.seq > push_state.sent_seq THEN push_state.not_before ELSE NULL END,
            attempts    = CASE WHEN push_state.seq > push_state.sent_seq THEN push_state.attempts ELSE 0 END,
            seq         = CASE WHEN excluded.seq > push_state.seq THEN excluded.seq ELSE push_state.seq END,
            silent      = FALSE,
            quiet_since = excluded.quiet_since"
    };
}
pub(crate) use {file_columns, message_columns, push_upsert, request_columns, user_columns};

/// The stores on one SQL database: writes go through `writer`, reads through `reader` (the same pool on
/// Postgres; on SQLite one writer connection and a few read-only ones).
pub struct SqlStore<DB: Database> {
    writer: Pool<DB>,
    reader: Pool<DB>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self { writer: self.writer.clone(), reader: self.reader.clone() }
    }
}

impl<DB: Database> SqlStore<DB> {
    pub(crate) fn new(writer: Pool<DB>, reader: Pool<DB>) -> Self {
        Self { writer, reader }
    }

    pub(crate) fn writer(&self) -> &Pool<DB> {
        &self.writer
    }

    pub(crate) fn reader(&self) -> &Pool<DB> {
        &self.reader
    }
}

#[async_trait]
impl<DB> StoreHealth for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
{
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.reader()).await?;
        Ok(())
    }
    fn backend(&self) -> &'static str {
        DB::BACKEND
    }
}
