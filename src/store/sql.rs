//! SQL shared by both backends. Postgres and SQLite accept the same statements here (`$n` parameters,
//! `RETURNING`, `ON CONFLICT`), so each trait is implemented once, by macro, for each backend's pool type.
//! A backend provides `writer()` (the pool writes go through) and `reader()`.

macro_rules! impl_user_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::UserStore for $store {
            async fn create_user(&self, new: $crate::store::NewUser) -> $crate::store::StoreResult<$crate::store::UserRecord> {
                let now = $crate::store::now();
                sqlx::query_as(
                    "INSERT INTO users (username, username_lower, nickname, sex, password_hash, token_version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $6)
                     RETURNING id, username, nickname, sex, password_hash, token_version, created_at",
                )
                .bind(&new.username)
                .bind(new.username.to_ascii_lowercase())
                .bind(&new.nickname)
                .bind(new.sex)
                .bind(&new.password_hash)
                .bind(now)
                .fetch_one(self.writer())
                .await
                .map_err($crate::store::StoreError::classify)
            }

            async fn user_by_id(&self, id: i64) -> $crate::store::StoreResult<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, username, nickname, sex, password_hash, token_version, created_at FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn user_by_username(&self, username_lower: &str) -> $crate::store::StoreResult<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, username, nickname, sex, password_hash, token_version, created_at
                     FROM users WHERE username_lower = $1",
                )
                .bind(username_lower)
                .fetch_optional(self.reader())
                .await?)
            }

            async fn update_profile(
                &self,
                id: i64,
                nickname: Option<&str>,
                sex: Option<i16>,
            ) -> $crate::store::StoreResult<Option<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    "UPDATE users SET nickname = COALESCE($2, nickname), sex = COALESCE($3, sex), updated_at = $4
                     WHERE id = $1
                     RETURNING id, username, nickname, sex, password_hash, token_version, created_at",
                )
                .bind(id)
                .bind(nickname)
                .bind(sex)
                .bind($crate::store::now())
                .fetch_optional(self.writer())
                .await?)
            }

            async fn set_password(&self, id: i64, password_hash: &str) -> $crate::store::StoreResult<i64> {
                let (v,): (i64,) = sqlx::query_as(
                    "UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = $3
                     WHERE id = $1 RETURNING token_version",
                )
                .bind(id)
                .bind(password_hash)
                .bind($crate::store::now())
                .fetch_one(self.writer())
                .await?;
                Ok(v)
            }

            async fn search_users(&self, prefix_lower: &str, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, username, nickname, sex, password_hash, token_version, created_at
                     FROM users WHERE username_lower LIKE $1 ESCAPE '\\' ORDER BY username_lower LIMIT $2",
                )
                .bind($crate::store::like_prefix(prefix_lower))
                .bind(limit)
                .fetch_all(self.reader())
                .await?)
            }

            async fn token_version(&self, id: i64) -> $crate::store::StoreResult<Option<i64>> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT token_version FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(row.map(|r| r.0))
            }
        }
    };
}

pub(crate) use impl_user_store;
