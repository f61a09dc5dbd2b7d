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
    texts = "SELECT value FROM jsonb_array_elements_text($1::jsonb)"
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
