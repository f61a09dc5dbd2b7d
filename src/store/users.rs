//! Accounts and one-time WebSocket tickets, on any SQL backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::sql::user_columns;
use super::{json_ids, like_prefix, now, NewUser, SqlStore, StoreError, StoreResult, UserRecord, UserStore};

#[async_trait]
impl<DB> UserStore for SqlStore<DB>
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
    i16: for<'q> Param<'q, DB>,
    Option<i16>: for<'q> Param<'q, DB>,
    Option<String>: for<'q> Param<'q, DB>,
    Option<bool>: for<'q> Param<'q, DB>,
    UserRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (i64, i64, i64, i64): for<'r> FromRow<'r, DB::Row>,
    (i64, Option<DateTime<Utc>>): for<'r> FromRow<'r, DB::Row>,
{
    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord> {
        let now = now();
        sqlx::query_as(
            concat!("INSERT INTO users (username, username_lower, nickname, sex, password_hash, token_version, created_at, updated_at, nickname_fold)
             VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7)
             RETURNING ", user_columns!()),
        )
        .bind(new.username.as_str())
        .bind(new.username.to_ascii_lowercase())
        .bind(new.nickname.as_str())
        .bind(new.sex)
        .bind(new.password_hash.as_str())
        .bind(now)
        .bind(crate::domain::fold(&new.nickname))
        .fetch_one(self.writer())
        .await
        .map_err(StoreError::classify)
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        Ok(sqlx::query_as(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn user_by_username(&self, username_lower: &str) -> StoreResult<Option<UserRecord>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            "
             FROM users WHERE username_lower = $1"
        ))
        .bind(username_lower)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn update_profile(
        &self,
        id: i64,
        nickname: Option<&str>,
        sex: Option<i16>,
        push_previews: Option<bool>,
    ) -> StoreResult<Option<UserRecord>> {
        Ok(sqlx::query_as(concat!(
            "UPDATE users SET nickname = COALESCE($2, nickname), sex = COALESCE($3, sex), updated_at = $4,
                              nickname_fold = COALESCE($5, nickname_fold),
                              push_previews = COALESCE($6, push_previews)
             WHERE id = $1
             RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(nickname)
        .bind(sex)
        .bind(now())
        .bind(nickname.map(crate::domain::fold))
        .bind(push_previews)
        .fetch_optional(self.writer())
        .await?)
    }

    async fn set_password(&self, id: i64, password_hash: &str, expected: i64) -> StoreResult<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = $3
             WHERE id = $1 AND token_version = $4 RETURNING token_version",
        )
        .bind(id)
        .bind(password_hash)
        .bind(now())
        .bind(expected)
        .fetch_optional(self.writer())
        .await?;
        Ok(row.map(|r| r.0))
    }

    async fn search_users(&self, query_folded: &str, limit: i64) -> StoreResult<Vec<UserRecord>> {
        let mut contains = String::from("%");
        contains.push_str(&like_prefix(query_folded));
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            "
             FROM users WHERE username_lower LIKE $1 ESCAPE '\\' OR nickname_fold LIKE $2 ESCAPE '\\'
             ORDER BY CASE WHEN username_lower LIKE $1 ESCAPE '\\' THEN 0 ELSE 1 END, username_lower LIMIT $3"
        ))
        .bind(like_prefix(query_folded))
        .bind(contains)
        .bind(limit)
        .fetch_all(self.reader())
        .await?)
    }

    async fn set_avatar(&self, id: i64, key: &str) -> StoreResult<Option<UserRecord>> {
        Ok(sqlx::query_as(concat!(
            "UPDATE users SET avatar_key = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            user_columns!()
        ))
        .bind(id)
        .bind(key)
        .bind(now())
        .fetch_optional(self.writer())
        .await?)
    }

    async fn set_last_seen(&self, ids: &[i64], at: DateTime<Utc>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!("UPDATE users SET last_seen_at = $2 WHERE id IN ({})", DB::ID_SET))
            .bind(json_ids(ids))
            .bind(at)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn last_seen(&self, ids: &[i64]) -> StoreResult<Vec<(i64, Option<DateTime<Utc>>)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT id, last_seen_at FROM users WHERE id IN ({})", DB::ID_SET);
        Ok(sqlx::query_as(&sql).bind(json_ids(ids)).fetch_all(self.reader()).await?)
    }

    async fn create_ticket(
        &self,
        ticket_hash: &str,
        user_id: i64,
        token_version: i64,
        token_expires_at: chrono::DateTime<chrono::Utc>,
        expires_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()> {
        // Times as Unix seconds: compared in SQL the same way on both backends.
        sqlx::query("DELETE FROM ws_tickets WHERE expires_at < $1")
            .bind(now.timestamp())
            .execute(self.writer())
            .await?;
        sqlx::query(
            "INSERT INTO ws_tickets (ticket_hash, user_id, token_version, token_expires_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(ticket_hash)
        .bind(user_id)
        .bind(token_version)
        .bind(token_expires_at.timestamp())
        .bind(expires_at.timestamp())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn take_ticket(
        &self,
        ticket_hash: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Option<(i64, i64, chrono::DateTime<chrono::Utc>)>> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "DELETE FROM ws_tickets WHERE ticket_hash = $1
             RETURNING user_id, token_version, token_expires_at, expires_at",
        )
        .bind(ticket_hash)
        .fetch_optional(self.writer())
        .await?;
        Ok(row.filter(|r| r.3 >= now.timestamp()).and_then(|(user, ver, token_exp, _)| {
            chrono::DateTime::from_timestamp(token_exp, 0).map(|t| (user, ver, t))
        }))
    }

    async fn token_version(&self, id: i64) -> StoreResult<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT token_version FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(|r| r.0))
    }
    async fn users_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<UserRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(concat!("SELECT ", user_columns!(), " FROM users WHERE id IN ({})"), DB::ID_SET);
        Ok(sqlx::query_as(&sql).bind(json_ids(ids)).fetch_all(self.reader()).await?)
    }
}
