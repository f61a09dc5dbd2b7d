//! The SQLite backend: the embedded default, one file under the data directory.

use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Sqlite;

use super::batch::{AckBatcher, Batched, Batcher, Writers};
use super::{SqlStore, Stores};
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
    sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
    let reader = SqlitePoolOptions::new()
        .max_connections(4)
        .test_before_acquire(false)
        .connect_with(opts.read_only(true))
        .await?;
    let store = Arc::new(SqlStore::<Sqlite>::new(writer, reader));
    let writers = Writers::default();
    // One committer: SQLite has one writer anyway; batching is what turns many sends into one fsync.
    let batcher = Batcher::spawn(store.as_ref().clone(), 1, &writers);
    let acks = AckBatcher::spawn(store.as_ref().clone(), &writers);
    let messages = Arc::new(Batched::new(store.clone(), batcher, acks));
    Ok(Stores::assemble(store, messages, writers))
}
