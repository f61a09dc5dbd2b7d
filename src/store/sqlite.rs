//! The SQLite backend: the embedded default, one file under the data directory.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use super::batch::{AckBatcher, Batcher};
use super::{StoreHealth, StoreResult};

/// SQLite in WAL mode with one writer connection and a few readers. SQLite admits one writer at a time anyway;
/// funnelling writes through a single pooled connection queues them in-process instead of failing them with
/// `SQLITE_BUSY`, while readers proceed concurrently against the WAL.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    batcher: Option<Batcher>,
    acks: Option<AckBatcher>,
}

impl SqliteStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
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
        // One committer: SQLite has one writer anyway; batching is what turns many sends into one fsync.
        let plain = Self { writer: writer.clone(), reader: reader.clone(), batcher: None, acks: None };
        let batcher = Batcher::spawn(plain.clone(), 1);
        let acks = AckBatcher::spawn(plain);
        Ok(Self { writer, reader, batcher: Some(batcher), acks: Some(acks) })
    }

    fn batcher(&self) -> Option<&Batcher> {
        self.batcher.as_ref()
    }

    fn ack_batcher(&self) -> Option<&AckBatcher> {
        self.acks.as_ref()
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }
    fn reader(&self) -> &SqlitePool {
        &self.reader
    }
}

super::sql::impl_sql_stores!(
    SqliteStore,
    sqlx::Sqlite,
    ids = "SELECT value FROM json_each($1)",
    texts = "SELECT value FROM json_each($1)",
    direct = None
);

#[async_trait]
impl StoreHealth for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
