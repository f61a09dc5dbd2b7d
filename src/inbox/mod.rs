//! Each user's inbox: where a device that was away finds what it missed.

mod database;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::database::DatabaseInbox;
pub use self::redis::RedisInbox;
use crate::store::MessageRecord;

/// A conversation a device is behind in: it has seen up to `after` and the conversation is at `upto`.
#[derive(Debug, Clone)]
pub struct Want {
    pub conversation_id: String,
    pub after: i64,
    pub upto: i64,
}

/// What a device missed, read oldest first.
///
/// **At-least-once, never lossy.** The database is the truth; an inbox may keep a hot copy (Redis streams), but a
/// copy that was trimmed, expired, wiped or never written only makes a read fall back to the database.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Adds a freshly stored message to each listed user's hot copy (best effort; may return before the copy is
    /// written, but a copy is queued ahead of any publish issued after this returns).
    async fn append(&self, users: &[i64], message: &MessageRecord);
    /// The messages after each want's cursor, up to its `upto`, oldest first, at most `limit` in all. Within a
    /// conversation the result is a gapless run starting right after the cursor.
    async fn read(&self, user: i64, wants: &[Want], limit: usize) -> anyhow::Result<Vec<MessageRecord>>;
    /// Returns once every append made before this call is in the hot copy (or failed to get there).
    async fn flush(&self) {}
    fn name(&self) -> &'static str;
}

pub type SharedInbox = Arc<dyn Inbox>;

/// Merges per-conversation runs into one oldest-first list of at most `limit`. Message ids grow with commit order
/// and a conversation's commits are serialised, so within a conversation id order is seq order and the cut keeps
/// each conversation's run gapless.
pub(crate) fn merge(mut all: Vec<MessageRecord>, limit: usize) -> Vec<MessageRecord> {
    all.sort_by_key(|m| m.id);
    all.dedup_by_key(|m| m.id);
    all.truncate(limit);
    all
}
