//! Friend requests and friendships, on any SQL backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::sql::request_columns;
use super::{
    json_ids, now, FriendRecord, FriendRequestRecord, FriendStore, SqlStore, StoreError, StoreResult, UserRecord,
};

#[async_trait]
impl<DB> FriendStore for SqlStore<DB>
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
    FriendRequestRecord: for<'r> FromRow<'r, DB::Row>,
    UserRecord: for<'r> FromRow<'r, DB::Row>,
    FriendRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (i64, String): for<'r> FromRow<'r, DB::Row>,
{
    async fn create_request(&self, from: i64, to: i64, message: &str) -> StoreResult<FriendRequestRecord> {
        let row: Option<FriendRequestRecord> = sqlx::query_as(concat!(
            "INSERT INTO friend_requests (from_user_id, to_user_id, message, status, created_at, updated_at)
             SELECT $1, $2, $3, 'pending', $4, $4
             WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE (user_id = $1 AND blocked_id = $2)
                                                     OR (user_id = $2 AND blocked_id = $1))
             RETURNING ",
            request_columns!()
        ))
        .bind(from)
        .bind(to)
        .bind(message)
        .bind(now())
        .fetch_optional(self.writer())
        .await
        .map_err(StoreError::classify)?;
        row.ok_or(StoreError::Blocked)
    }

    async fn request_by_id(&self, id: i64) -> StoreResult<Option<FriendRequestRecord>> {
        Ok(sqlx::query_as(concat!("SELECT ", request_columns!(), " FROM friend_requests WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn pending_request(&self, from: i64, to: i64) -> StoreResult<Option<FriendRequestRecord>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            request_columns!(),
            " FROM friend_requests
             WHERE from_user_id = $1 AND to_user_id = $2 AND status = 'pending'"
        ))
        .bind(from)
        .bind(to)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn list_requests(&self, user: i64, incoming: bool, limit: i64) -> StoreResult<Vec<FriendRequestRecord>> {
        let sql = if incoming {
            concat!(
                "SELECT ",
                request_columns!(),
                " FROM friend_requests
             WHERE to_user_id = $1 ORDER BY id DESC LIMIT $2"
            )
        } else {
            concat!(
                "SELECT ",
                request_columns!(),
                " FROM friend_requests
             WHERE from_user_id = $1 ORDER BY id DESC LIMIT $2"
            )
        };
        Ok(sqlx::query_as(sql).bind(user).bind(limit).fetch_all(self.reader()).await?)
    }

    async fn accept_request(&self, id: i64) -> StoreResult<Option<FriendRequestRecord>> {
        let now = now();
        let mut tx = self.writer().begin().await?;
        let req: Option<FriendRequestRecord> = sqlx::query_as(concat!(
            "UPDATE friend_requests SET status = 'accepted', updated_at = $2 WHERE id = $1 AND status = 'pending'
             RETURNING ",
            request_columns!()
        ))
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(req) = req else { return Ok(None) };
        sqlx::query(
            "INSERT INTO friendships (user_id, friend_id, created_at)
             SELECT pair.a, pair.b, $3 FROM (SELECT $1 AS a, $2 AS b UNION ALL SELECT $2, $1) AS pair
             WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE (user_id = $1 AND blocked_id = $2)
                                                     OR (user_id = $2 AND blocked_id = $1))
             ON CONFLICT DO NOTHING",
        )
        .bind(req.from_user_id)
        .bind(req.to_user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE friend_requests SET status = 'accepted', updated_at = $3
             WHERE from_user_id = $1 AND to_user_id = $2 AND status = 'pending'",
        )
        .bind(req.to_user_id)
        .bind(req.from_user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(req))
    }

    async fn reject_request(&self, id: i64) -> StoreResult<Option<FriendRequestRecord>> {
        Ok(sqlx::query_as(concat!(
            "UPDATE friend_requests SET status = 'rejected', updated_at = $2 WHERE id = $1 AND status = 'pending'
             RETURNING ",
            request_columns!()
        ))
        .bind(id)
        .bind(now())
        .fetch_optional(self.writer())
        .await?)
    }

    async fn are_friends(&self, a: i64, b: i64) -> StoreResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT user_id FROM friendships WHERE user_id = $1 AND friend_id = $2")
                .bind(a)
                .bind(b)
                .fetch_optional(self.reader())
                .await?;
        Ok(row.is_some())
    }

    async fn friends(&self, user: i64) -> StoreResult<Vec<FriendRecord>> {
        Ok(sqlx::query_as(
            "SELECT u.id, u.username, u.nickname, u.sex, u.password_hash, u.token_version, u.created_at, u.avatar_key, u.push_previews,
                    f.remark
             FROM friendships f JOIN users u ON u.id = f.friend_id
             WHERE f.user_id = $1 ORDER BY u.username_lower",
        )
        .bind(user)
        .fetch_all(self.reader())
        .await?)
    }

    async fn remarks(&self, user: i64, ids: &[i64]) -> StoreResult<Vec<(i64, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT friend_id, remark FROM friendships WHERE user_id = $2 AND remark IS NOT NULL AND friend_id IN ({})",
            DB::ID_SET
        );
        Ok(sqlx::query_as(&sql).bind(json_ids(ids)).bind(user).fetch_all(self.reader()).await?)
    }

    async fn set_remark(&self, user: i64, friend: i64, remark: Option<&str>) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE friendships SET remark = $3 WHERE user_id = $1 AND friend_id = $2")
            .bind(user)
            .bind(friend)
            .bind(remark)
            .execute(self.writer())
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn block(&self, user: i64, other: i64) -> StoreResult<bool> {
        let now = now();
        let mut tx = self.writer().begin().await?;
        sqlx::query("INSERT INTO blocks (user_id, blocked_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(user)
            .bind(other)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // Requests first: an accept racing this block holds the request row, so the friendship it makes is
        // committed (and deleted below) before this goes on, or the accept finds the request settled.
        sqlx::query(
            "UPDATE friend_requests SET status = 'rejected', updated_at = $3
             WHERE status = 'pending' AND ((from_user_id = $1 AND to_user_id = $2)
                                        OR (from_user_id = $2 AND to_user_id = $1))",
        )
        .bind(user)
        .bind(other)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let ended = sqlx::query(
            "DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
        )
        .bind(user)
        .bind(other)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DB::rows_affected(&ended) > 0)
    }

    async fn unblock(&self, user: i64, other: i64) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM blocks WHERE user_id = $1 AND blocked_id = $2")
            .bind(user)
            .bind(other)
            .execute(self.writer())
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn blocked_by(&self, user: i64) -> StoreResult<Vec<UserRecord>> {
        Ok(sqlx::query_as(
            "SELECT u.id, u.username, u.nickname, u.sex, u.password_hash, u.token_version, u.created_at, u.avatar_key, u.push_previews
             FROM blocks b JOIN users u ON u.id = b.blocked_id
             WHERE b.user_id = $1 ORDER BY b.created_at DESC, u.id",
        )
        .bind(user)
        .fetch_all(self.reader())
        .await?)
    }

    async fn blocked_either(&self, a: i64, b: i64) -> StoreResult<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT user_id FROM blocks WHERE (user_id = $1 AND blocked_id = $2) OR (user_id = $2 AND blocked_id = $1)
             LIMIT 1",
        )
        .bind(a)
        .bind(b)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.is_some())
    }

    async fn remove_friendship(&self, a: i64, b: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "DELETE FROM friendships WHERE (user_id = $1 AND friend_id = $2) OR (user_id = $2 AND friend_id = $1)",
        )
        .bind(a)
        .bind(b)
        .execute(self.writer())
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }
}
