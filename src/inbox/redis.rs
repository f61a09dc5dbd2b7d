//! The Redis-streams inbox of cluster mode: a capped stream per user (`<prefix>inbox:<id>`) holding the recent
//! direct messages addressed to them, and a capped stream per group conversation (`<prefix>inbox:g:<id>`) holding
//! the group's recent messages; a read is one pipelined round trip (the user's stream plus the tail of each
//! wanted group's stream); any conversation the streams do not cover gaplessly is read from the database instead.
//!
//! A group message is written once, not once per member: for a 500-member group that is one XADD instead of
//! 500, and a member's view of the group is the group's stream from their cursor (membership is checked before
//! a read: the caller's wants only name conversations the user may see, from where they may see them).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;

use super::{merge, DatabaseInbox, Inbox, Want};
use crate::bus::RedisWriter;
use crate::metrics::Metrics;
use crate::store::MessageRecord;

/// Entries kept per user stream (approximately, `MAXLEN ~`): a day of busy chatting; older misses come from the
/// database.
const STREAM_LEN: usize = 1000;
/// A stream of a user who receives nothing for this long expires.
const STREAM_TTL: Duration = Duration::from_secs(7 * 86400);
/// How long a catch-up waits for the hot copy before reading the database instead. A stream read takes
/// milliseconds; a Redis that has not answered in a second is away (frozen, partitioned), and waiting for the
/// connection's 5 s response timeout held every catch-up, and the socket's sends behind it, for those 5 s
/// (README, "Under faults": a frozen Redis).
const HOT_READ_TIMEOUT: Duration = Duration::from_secs(1);

pub struct RedisInbox {
    /// For reads; appends go out through `writer`, ahead of the publishes queued after them.
    conn: ConnectionManager,
    writer: RedisWriter,
    prefix: String,
    db: DatabaseInbox,
    metrics: Metrics,
}

impl RedisInbox {
    pub fn new(
        conn: ConnectionManager,
        writer: RedisWriter,
        prefix: &str,
        db: DatabaseInbox,
        metrics: Metrics,
    ) -> Self {
        Self { conn, writer, prefix: prefix.to_string(), db, metrics }
    }

    fn key(&self, user: i64) -> String {
        format!("{}inbox:{user}", self.prefix)
    }

    /// The hot stream of a group conversation (`g:<id>`).
    fn group_key(&self, conversation_id: &str) -> String {
        format!("{}inbox:{conversation_id}", self.prefix)
    }

    /// The hot copies for `user`'s wants, by conversation: the user's own stream, and for each wanted group the
    /// newest entries of its stream (enough to reach back to the want's cursor when the stream still holds it).
    async fn hot(&self, user: i64, wants: &[Want]) -> anyhow::Result<BTreeMap<String, Vec<MessageRecord>>> {
        let mut pipe = redis::pipe();
        pipe.cmd("XRANGE").arg(self.key(user)).arg("-").arg("+");
        let groups: Vec<&Want> = wants.iter().filter(|w| is_group(&w.conversation_id)).collect();
        for w in &groups {
            // Entries land in about seq order; a little slack covers messages committed since the heads were read.
            let count = (w.upto - w.after).clamp(0, STREAM_LEN as i64) + 32;
            pipe.cmd("XREVRANGE").arg(self.group_key(&w.conversation_id)).arg("+").arg("-").arg("COUNT").arg(count);
        }
        let mut conn = self.conn.clone();
        let replies: Vec<StreamRangeReply> = pipe.query_async(&mut conn).await?;
        let mut by_conversation: BTreeMap<String, Vec<MessageRecord>> = BTreeMap::new();
        for (i, reply) in replies.into_iter().enumerate() {
            // The user's stream may only contribute direct conversations; a group's stream only its own.
            let only = if i == 0 { None } else { Some(groups[i - 1].conversation_id.as_str()) };
            for entry in reply.ids {
                let Some(redis::Value::BulkString(bytes)) = entry.map.get("m") else { continue };
                if let Ok(m) = serde_json::from_slice::<MessageRecord>(bytes) {
                    let fits = match only {
                        None => !is_group(&m.conversation_id),
                        Some(c) => m.conversation_id == c,
                    };
                    if fits {
                        by_conversation.entry(m.conversation_id.clone()).or_default().push(m);
                    }
                }
            }
        }
        for run in by_conversation.values_mut() {
            run.sort_by_key(|m| m.seq);
            run.dedup_by_key(|m| m.seq);
        }
        Ok(by_conversation)
    }
}

fn is_group(conversation_id: &str) -> bool {
    conversation_id.starts_with("g:")
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
        let keys: Vec<String> = if message.group_id.is_some() {
            vec![self.group_key(&message.conversation_id)]
        } else {
            users.iter().map(|&u| self.key(u)).collect()
        };
        let mut commands = Vec::with_capacity(keys.len() * 2);
        for key in &keys {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(key).arg("MAXLEN").arg("~").arg(STREAM_LEN).arg("*").arg("m").arg(&json);
            let mut expire = redis::cmd("EXPIRE");
            expire.arg(key).arg(STREAM_TTL.as_secs());
            commands.extend([xadd, expire]);
        }
        self.writer.write(commands).await;
    }

    async fn read(&self, user: i64, wants: &[Want], limit: usize) -> anyhow::Result<Vec<MessageRecord>> {
        let hot = match tokio::time::timeout(HOT_READ_TIMEOUT, self.hot(user, wants)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                self.metrics.bus_errors.inc();
                tracing::warn!(error = %e, "inbox stream unreadable; reading the database");
                BTreeMap::new()
            }
            Err(_) => {
                self.metrics.bus_errors.inc();
                tracing::warn!("inbox stream read timed out; reading the database");
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

    async fn flush(&self) {
        self.writer.flush().await;
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
