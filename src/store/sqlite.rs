//! The SQLite backend: the embedded default, one file under the data directory.

use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use async_trait::async_trait;

use super::batch::{AckBatcher, AckKey, AckWriter, BatchWriter, Batched, Batcher, Writers};
use super::{MessageRecord, NewMessage, SqlStore, StoreResult, Stores};
use crate::metrics::Metrics;

/// Opens (creating it 0600 if missing) the database file in WAL mode with one writer connection and a few readers,
/// applies pending migrations and starts the background writers. SQLite admits one writer at a time anyway;
/// funnelling writes through a single pooled connection queues them in-process instead of failing them with
/// `SQLITE_BUSY`, while readers proceed concurrently against the WAL. (`metrics` is unused: SQLite has one send
/// path, the generic one.)
pub(super) async fn open(url: &str, _metrics: &Metrics) -> anyhow::Result<Stores> {
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a reply to a send is given only after the message is on disk, even across power loss.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let file = opts.get_filename().to_path_buf();
    if let Some(parent) = file.parent() {
        if !parent.as_os_str().is_empty() {
            crate::private_fs::create_dir(parent)?;
        }
    }
    // Created 0600 before SQLite opens it; SQLite gives its -wal and -shm files the database file's mode.
    if !file.exists() && file.as_os_str() != ":memory:" {
        crate::private_fs::file_options().open(&file)?;
    } else if file.exists() {
        crate::private_fs::restrict_file(&file)?;
    }
    // (In-process connections cannot go stale: no ping to their worker thread before each use.)
    let writer =
        SqlitePoolOptions::new().max_connections(1).test_before_acquire(false).connect_with(opts.clone()).await?;
    renumber_legacy_migrations(&writer).await?;
    sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(opts.read_only(true))
        .await?;
    let store = Arc::new(SqlStore::<Sqlite>::new(writer, reader));
    let backfilled = store.backfill_search().await?;
    if backfilled > 0 {
        tracing::info!(messages = backfilled, "indexed the messages stored before search existed");
    }
    let writers = Writers::default();
    // One committer: SQLite has one writer anyway; batching is what turns many sends into one fsync.
    let batcher = Batcher::spawn(store.as_ref().clone(), 1, &writers);
    let acks = AckBatcher::spawn(store.as_ref().clone(), &writers);
    let messages = Arc::new(Batched::new(store.clone(), batcher, acks));
    Ok(Stores::assemble(store, messages, writers))
}

/// SQLite's group commit is the generic batch path (its one writer needs no other).
#[async_trait]
impl BatchWriter for SqlStore<Sqlite> {
    async fn insert_batch(&self, batch: &[NewMessage]) -> Vec<StoreResult<(MessageRecord, Vec<i64>)>> {
        SqlStore::insert_batch(self, batch).await
    }
}

/// SQLite's delivered cursors go through the generic multi-row upsert.
#[async_trait]
impl AckWriter for SqlStore<Sqlite> {
    async fn write_acks(&self, acks: &[(AckKey, i64)]) -> StoreResult<()> {
        SqlStore::write_acks(self, acks).await
    }
}

/// SQLite's migrations carry the same numbers as Postgres's (migrations/README.md). A database migrated while
/// SQLite's were numbered `0002`–`0004` has its record of them moved to `0003`–`0005` before the migrator runs
/// (the files are unchanged, so their recorded checksums still match); a database that is new or already
/// renumbered is left alone.
async fn renumber_legacy_migrations(pool: &SqlitePool) -> anyhow::Result<()> {
    // (On a new database the table does not exist yet: nothing to do.)
    let legacy: Option<(i64,)> =
        sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE version = 2 AND description = 'members version'")
            .fetch_optional(pool)
            .await
            .unwrap_or(None);
    if legacy.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for version in [4_i64, 3, 2] {
        sqlx::query("UPDATE _sqlx_migrations SET version = $1 + 1 WHERE version = $1")
            .bind(version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!("renumbered the record of SQLite migrations 2-4 to 3-5 (the numbers Postgres uses)");
    Ok(())
}
