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
        "id, username, nickname, sex, password_hash, token_version, created_at, avatar_key"
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
pub(crate) use {file_columns, message_columns, request_columns, user_columns};

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
