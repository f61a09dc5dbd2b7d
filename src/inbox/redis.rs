//! The Redis-streams inbox of cluster mode: a capped stream per user (`<prefix>inbox:<id>`) holding the recent
//! messages addressed to them, read in one XRANGE; any conversation the stream does not cover gaplessly is read
//! from the database instead.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;

use super::{merge, DatabaseInbox, Inbox, Want};
use crate::metrics::Metrics;
use crate::store::MessageRecord;

/// Entries kept per user stream (approximately, `MAXLEN ~`): a day of busy chatting; older misses come from the
/// database.
const STREAM_LEN: usize = 1000;
/// A stream of a user who receives nothing for this long expires.
const STREAM_TTL: Duration = Duration::from_secs(7 * 86400);

pub struct RedisInbox {
    conn: ConnectionManager,
    prefix: String,
    db: DatabaseInbox,
    metrics: Metrics,
}

impl RedisInbox {
    pub fn new(conn: ConnectionManager, prefix: &str, db: DatabaseInbox, metrics: Metrics) -> Self {
        Self { conn, prefix: prefix.to_string(), db, metrics }
    }

    fn key(&self, user: i64) -> String {
        format!("{}inbox:{user}", self.prefix)
    }

    async fn hot(&self, user: i64) -> anyhow::Result<BTreeMap<String, Vec<MessageRecord>>> {
        let mut conn = self.conn.clone();
        let reply: StreamRangeReply =
            redis::cmd("XRANGE").arg(self.key(user)).arg("-").arg("+").query_async(&mut conn).await?;
        let mut by_conversation: BTreeMap<String, Vec<MessageRecord>> = BTreeMap::new();
        for entry in reply.ids {
            let Some(redis::Value::BulkString(bytes)) = entry.map.get("m") else { continue };
            if let Ok(m) = serde_json::from_slice::<MessageRecord>(bytes) {
                by_conversation.entry(m.conversation_id.clone()).or_default().push(m);
            }
        }
        for run in by_conversation.values_mut() {
            run.sort_by_key(|m| m.seq);
            run.dedup_by_key(|m| m.seq);
        }
        Ok(by_conversation)
    }
}

/// The stream's messages of `w`, if they are exactly `after+1 ..= upto` (or the first `limit` of them).
fn covered(run: Option<&Vec<MessageRecord>>, w: &Want, limit: usize) -> Option<Vec<MessageRecord>> {
    let run = run?;
    let picked: Vec<MessageRecord> =
        run.iter().filter(|m| m.seq > w.after && m.seq <= w.upto).take(limit).cloned().collect();
    let expected = ((w.upto - w.after) as usize).min(limit);
    let gapless = picked.iter().enumerate().all(|(i, m)| m.seq == w.after + 1 + i as i64);
    (picked.len() == expected && gapless).then_some(picked)
}

#[async_trait]
impl Inbox for RedisInbox {
    async fn append(&self, users: &[i64], message: &MessageRecord) {
        let Ok(json) = serde_json::to_vec(message) else { return };
        let mut pipe = redis::pipe();
        for &u in users {
            let key = self.key(u);
            pipe.cmd("XADD").arg(&key).arg("MAXLEN").arg("~").arg(STREAM_LEN).arg("*").arg("m").arg(&json).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(STREAM_TTL.as_secs()).ignore();
        }
        let mut conn = self.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            self.metrics.bus_errors.inc();
            tracing::warn!(error = %e, "inbox append failed; readers fall back to the database");
        }
    }

    async fn read(&self, user: i64, wants: &[Want], limit: usize) -> anyhow::Result<Vec<MessageRecord>> {
        let hot = match self.hot(user).await {
            Ok(h) => h,
            Err(e) => {
                self.metrics.bus_errors.inc();
                tracing::warn!(error = %e, "inbox stream unreadable; reading the database");
                BTreeMap::new()
            }
        };
        let mut all = Vec::new();
        for w in wants {
            match covered(hot.get(&w.conversation_id), w, limit) {
                Some(run) => all.extend(run),
                None => all.extend(self.db.read_want(w, limit).await?),
            }
        }
        Ok(merge(all, limit))
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
