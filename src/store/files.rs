//! Uploaded files' metadata, on any SQL backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::sql::file_columns;
use super::{json_ids, now, FileRecord, FileStore, NewFile, SqlStore, StoreResult};

#[async_trait]
impl<DB> FileStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    Option<i64>: for<'q> Param<'q, DB>,
    String: for<'q> Param<'q, DB>,
    DateTime<Utc>: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    for<'q> Option<&'q str>: Param<'q, DB>,
    Option<i32>: for<'q> Param<'q, DB>,
    FileRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (i64, i64): for<'r> FromRow<'r, DB::Row>,
{
    async fn create_file(&self, f: NewFile) -> StoreResult<FileRecord> {
        Ok(sqlx::query_as(concat!(
            "INSERT INTO files (uploader_id, storage_key, kind, content_type, size, width, height, sha256, created_at,
                                name, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             RETURNING ",
            file_columns!()
        ))
        .bind(f.uploader_id)
        .bind(f.storage_key.as_str())
        .bind(f.kind)
        .bind(f.content_type)
        .bind(f.size)
        .bind(f.width)
        .bind(f.height)
        .bind(f.sha256.as_str())
        .bind(now())
        .bind(f.name.as_deref())
        .bind(f.duration_ms)
        .fetch_one(self.writer())
        .await?)
    }

    async fn file(&self, id: i64) -> StoreResult<Option<FileRecord>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            file_columns!(),
            "
             FROM files WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn files_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<FileRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(concat!("SELECT ", file_columns!(), " FROM files WHERE id IN ({})"), DB::ID_SET);
        Ok(sqlx::query_as(&sql).bind(json_ids(ids)).fetch_all(self.reader()).await?)
    }

    async fn shared_with(&self, file_id: i64, user: i64) -> StoreResult<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT m.id FROM messages m
             WHERE (m.file_id = $1 OR m.id IN (SELECT message_id FROM message_files WHERE file_id = $1))
               AND m.recalled_at IS NULL AND (
                (m.group_id IS NULL AND (m.from_user_id = $2 OR m.to_user_id = $2))
                OR EXISTS (SELECT 1 FROM group_members gm
                           WHERE gm.group_id = m.group_id AND gm.user_id = $2 AND gm.joined_seq < m.seq)
                OR EXISTS (SELECT 1 FROM group_member_periods p
                           WHERE p.group_id = m.group_id AND p.user_id = $2 AND p.from_seq < m.seq AND m.seq <= p.to_seq)
             ) LIMIT 1",
        )
        .bind(file_id)
        .bind(user)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.is_some())
    }

    async fn only_in_recalled(&self, file_id: i64) -> StoreResult<bool> {
        let (recalled, live): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(CASE WHEN recalled_at IS NOT NULL THEN 1 END), COUNT(CASE WHEN recalled_at IS NULL THEN 1 END)
             FROM messages WHERE file_id = $1 OR id IN (SELECT message_id FROM message_files WHERE file_id = $1)",
        )
        .bind(file_id)
        .fetch_one(self.reader())
        .await?;
        Ok(recalled > 0 && live == 0)
    }

    async fn take_unreferenced(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> StoreResult<Vec<FileRecord>> {
        Ok(sqlx::query_as(concat!(
            "DELETE FROM files WHERE id IN (
                SELECT id FROM files WHERE referenced_at IS NULL AND created_at < $1 ORDER BY id LIMIT $2
             ) AND referenced_at IS NULL
             RETURNING ",
            file_columns!()
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(self.writer())
        .await?)
    }
}
