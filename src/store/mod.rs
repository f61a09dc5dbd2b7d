//! Persistence: one narrow trait per aggregate, implemented for Postgres and SQLite. The only module with SQL.

mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// A store failure: a uniqueness conflict the caller can act on, or a database fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl StoreError {
    /// Turns a unique-constraint violation into [`StoreError::Conflict`]; everything else stays a fault.
    pub(crate) fn classify(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.constraint().unwrap_or("unique").to_string());
            }
        }
        StoreError::Db(e)
    }
}

impl From<StoreError> for crate::error::AppError {
    fn from(e: StoreError) -> Self {
        crate::error::AppError::internal(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The present instant at the precision both databases keep (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A user account as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    pub sex: i16,
    pub password_hash: String,
    pub token_version: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub nickname: String,
    pub sex: i16,
    pub password_hash: String,
}

/// Accounts. Usernames are unique case-insensitively; `create_user` reports a taken name as
/// [`StoreError::Conflict`], whatever the race.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    /// Looks a user up by the case-folded username.
    async fn user_by_username(&self, username_lower: &str) -> StoreResult<Option<UserRecord>>;
    async fn update_profile(
        &self,
        id: i64,
        nickname: Option<&str>,
        sex: Option<i16>,
    ) -> StoreResult<Option<UserRecord>>;
    /// Stores a new hash and bumps `token_version`, returning the new version.
    async fn set_password(&self, id: i64, password_hash: &str) -> StoreResult<i64>;
    /// Users whose case-folded username starts with `prefix_lower`, in username order.
    async fn search_users(&self, prefix_lower: &str, limit: i64) -> StoreResult<Vec<UserRecord>>;
    /// The current token version of a user, or `None` for an unknown user.
    async fn token_version(&self, id: i64) -> StoreResult<Option<i64>>;
}

/// Reachability of the database, for `/readyz`.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    fn backend(&self) -> &'static str;
}

/// The stores of one node, each behind its narrow trait.
#[derive(Clone)]
pub struct Stores {
    pub users: Arc<dyn UserStore>,
    pub health: Arc<dyn StoreHealth>,
}

impl Stores {
    fn from_backend<S: UserStore + StoreHealth + 'static>(s: S) -> Self {
        let s = Arc::new(s);
        Stores { users: s.clone(), health: s }
    }

    /// Connects to `url` (`postgres://…` or `sqlite://…`) and applies pending migrations.
    pub async fn open(url: &str, pool_size: u32) -> anyhow::Result<Stores> {
        if url.starts_with("postgres") {
            Ok(Self::from_backend(PgStore::connect(url, pool_size).await?))
        } else {
            Ok(Self::from_backend(SqliteStore::connect(url).await?))
        }
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}
