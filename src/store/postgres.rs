//! The Postgres backend: the source of truth in cluster mode.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::batch::{AckBatcher, Batcher};
use super::{StoreHealth, StoreResult};

/// A Postgres connection pool; every node of a cluster shares the database behind it.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    batcher: Option<Batcher>,
    acks: Option<AckBatcher>,
}

/// Concurrent group-commit transactions per node: enough to keep the database busy while one batch waits on
/// a commit, few enough to leave pool connections for reads.
const COMMITTERS: usize = 4;

impl PgStore {
    /// Connects and applies pending migrations (idempotent; concurrent nodes serialise on sqlx's advisory lock).
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let opts: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let plain = Self { pool: pool.clone(), batcher: None, acks: None };
        let batcher = Batcher::spawn(plain.clone(), COMMITTERS);
        let acks = AckBatcher::spawn(plain);
        Ok(Self { pool, batcher: Some(batcher), acks: Some(acks) })
    }

    fn batcher(&self) -> Option<&Batcher> {
        self.batcher.as_ref()
    }

    fn ack_batcher(&self) -> Option<&AckBatcher> {
        self.acks.as_ref()
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }
    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

super::sql::impl_sql_stores!(
    PgStore,
    sqlx::Postgres,
    ids = "SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)",
    texts = "SELECT value FROM jsonb_array_elements_text($1::jsonb)",
    direct = Some(DIRECT_SQL)
);

/// A direct text message in one statement: the friendship check and the client_msg_id check gate the seq
/// allocation (so a refused send allocates nothing), then the message and both parties' conversation rows. The
/// sender has read up to their own message. Parameters: conversation, from, to, low, high, kind, body,
/// client_msg_id, now.
const DIRECT_SQL: &str = concat!(
    "WITH ok AS (
        SELECT 1 FROM friendships WHERE user_id = $2 AND friend_id = $3
          AND NOT EXISTS (SELECT 1 FROM messages WHERE from_user_id = $2 AND client_msg_id = $8)
    ), conv AS (
        INSERT INTO conversations (id, kind, group_id, user_low, user_high, last_seq, created_at, updated_at)
        SELECT $1, 'direct', NULL, $4, $5, 1, $9, $9 FROM ok
        ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + 1, updated_at = $9
        RETURNING last_seq
    ), msg AS (
        INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id,
                              client_msg_id, created_at)
        SELECT $1, last_seq, $2, $3, NULL, $6, $7, NULL, $8, $9 FROM conv
        RETURNING ",
    super::sql::message_columns!(),
    "
    ), parties AS (
        INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
        SELECT $2, $1, last_seq, 0 FROM conv UNION ALL SELECT $3, $1, 0, 0 FROM conv
        ON CONFLICT (user_id, conversation_id) DO UPDATE
        SET read_seq = GREATEST(excluded.read_seq, user_conversations.read_seq)
    )
    SELECT * FROM msg"
);

#[async_trait]
impl StoreHealth for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "postgres"
    }
}
