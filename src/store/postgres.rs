//! The Postgres backend: the source of truth in cluster mode.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::batch::{AckBatcher, AckKey, AckWriter, BatchWriter, Batcher};
use super::{MessageRecord, NewMessage, StoreError, StoreHealth, StoreResult};

/// A Postgres connection pool; every node of a cluster shares the database behind it.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    batcher: Option<Batcher>,
    acks: Option<AckBatcher>,
}

/// Concurrent group-commit transactions per node. Two: one batch fills while the other waits on its commit,
/// and batches stay large (1:1 closed loop, 16 senders, one node: 1 → 4,320 msg/s, 2 → 4,350, 4 → 4,150,
/// as more slots mean smaller batches and more statements for the same messages).
const COMMITTERS: usize = 2;

impl PgStore {
    /// Connects and applies pending migrations (idempotent; concurrent nodes serialise on sqlx's advisory lock).
    pub async fn connect(url: &str, pool_size: u32) -> anyhow::Result<Self> {
        let opts: PgConnectOptions = url.parse()?;
        // No ping before each use: it doubled the round trips of every statement. A connection that broke
        // (the server restarted) fails its next statement instead, and the pool replaces it.
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let plain = Self { pool: pool.clone(), batcher: None, acks: None };
        let batcher = Batcher::spawn(PgBatches(plain), COMMITTERS);
        let acks = AckBatcher::spawn(PgAcks(pool.clone()));
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

/// Moves many delivered cursors in one statement that is prepared once (arrays in, whatever their length: a
/// multi-row VALUES list is new SQL text for every batch size, parsed and planned again each time), and commits
/// without waiting for its WAL flush: the transaction-local `synchronous_commit = off` (the write lands with the
/// next flush, within 200 ms). A cursor lost to a crash in that window only means those messages are delivered
/// again, which at-least-once allows and clients deduplicate; messages, seqs and read cursors keep fully durable
/// commits. Rows go in [`AckKey`] order.
const ACKS_SQL: &str = "INSERT INTO delivery_cursors (user_id, device_id, conversation_id, delivered_seq)
    SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[])
    WHERE (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
    ON CONFLICT (user_id, device_id, conversation_id)
    DO UPDATE SET delivered_seq = excluded.delivered_seq
    WHERE delivery_cursors.delivered_seq < excluded.delivered_seq";

struct PgAcks(PgPool);

#[async_trait]
impl AckWriter for PgAcks {
    async fn write_acks(&self, acks: &[(AckKey, i64)]) -> StoreResult<()> {
        let mut sorted: Vec<&(AckKey, i64)> = acks.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        sqlx::query(ACKS_SQL)
            .bind(sorted.iter().map(|(k, _)| k.user).collect::<Vec<i64>>())
            .bind(sorted.iter().map(|(k, _)| k.device.as_str()).collect::<Vec<&str>>())
            .bind(sorted.iter().map(|(k, _)| k.conversation.as_str()).collect::<Vec<&str>>())
            .bind(sorted.iter().map(|(_, s)| *s).collect::<Vec<i64>>())
            .execute(&self.0)
            .await?;
        Ok(())
    }
}

/// A direct text message in one statement: the friendship check and the client_msg_id check gate the seq
/// allocation (so a refused send allocates nothing), then the message and both parties' conversation rows. The
/// sender has read up to their own message; the recipient's row is only created if missing (an update that
/// changes nothing still writes a row version). Parameters: conversation, from, to, low, high, kind, body,
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
    ), sender AS (
        INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
        SELECT $2, $1, last_seq, 0 FROM conv
        ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = excluded.read_seq
        WHERE user_conversations.read_seq < excluded.read_seq
    ), recipient AS (
        INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
        SELECT $3, $1, 0, 0 FROM conv
        ON CONFLICT (user_id, conversation_id) DO NOTHING
    )
    SELECT * FROM msg"
);

/// Group commit on Postgres: a batch of plain direct messages (the common case under load) is one
/// autocommitted statement, [`DIRECT_MANY_SQL`]; anything else goes through the generic batch path.
struct PgBatches(PgStore);

#[async_trait]
impl BatchWriter for PgBatches {
    async fn insert_batch(&self, batch: &[NewMessage]) -> Vec<StoreResult<(MessageRecord, Vec<i64>)>> {
        if batch.len() > 1 && batch.iter().all(NewMessage::is_plain_direct) {
            match insert_direct_many(&self.0.pool, batch).await {
                Ok(results) => return results,
                // A repeated client_msg_id inside the batch (the unique index refused the statement, which
                // wrote nothing), or a lost race: the generic path sorts it out message by message.
                Err(e) => tracing::debug!(error = %e, size = batch.len(), "batched direct insert fell back"),
            }
        }
        self.0.insert_batch(batch).await
    }
}

/// Runs [`DIRECT_MANY_SQL`] for a batch of plain direct messages. A message without a row back was refused
/// (not friends, or its client_msg_id is already stored; the caller looks that up), exactly as for a lone send.
async fn insert_direct_many(
    pool: &PgPool,
    batch: &[NewMessage],
) -> StoreResult<Vec<StoreResult<(MessageRecord, Vec<i64>)>>> {
    use sqlx::{FromRow, Row};
    let n = batch.len();
    let (mut conv, mut from, mut to, mut low, mut high) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut kind, mut body, mut cmid) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for m in batch {
        let crate::domain::ConversationId::Direct { low: l, high: h } = m.conversation_id else {
            return Err(StoreError::Db(sqlx::Error::Protocol("not a direct message".into())));
        };
        conv.push(m.conversation_id.to_string());
        from.push(m.from_user_id);
        to.push(m.to_user_id.unwrap_or_default());
        low.push(l);
        high.push(h);
        kind.push(m.kind);
        body.push(m.body.as_deref());
        cmid.push(m.client_msg_id.as_deref());
    }
    let rows = sqlx::query(DIRECT_MANY_SQL)
        .bind(&conv)
        .bind(&from)
        .bind(&to)
        .bind(&low)
        .bind(&high)
        .bind(&kind)
        .bind(&body)
        .bind(&cmid)
        .bind(super::now())
        .fetch_all(pool)
        .await
        .map_err(StoreError::classify)?;
    let mut results: Vec<StoreResult<(MessageRecord, Vec<i64>)>> =
        (0..n).map(|_| Err(StoreError::NotFriends)).collect();
    for row in rows {
        let ord: i64 = row.try_get("ord")?;
        let message = MessageRecord::from_row(&row)?;
        let i = usize::try_from(ord - 1).ok().filter(|&i| i < n).ok_or_else(|| {
            StoreError::Db(sqlx::Error::Protocol(format!("batched insert returned position {ord} of {n}")))
        })?;
        results[i] = Ok((message, vec![high[i], low[i]]));
    }
    Ok(results)
}

/// [`DIRECT_SQL`] for many messages at once: one statement, one round trip and one commit for a whole batch.
/// Messages are checked like a lone send (friendship; client_msg_id not yet stored); each conversation's seq
/// moves once by the number of its accepted messages, which take the seqs in arrival order, so conversations
/// stay gapless. Conversation rows are locked in id order (concurrent batches cannot deadlock), and a
/// conversation's `user_conversations` rows are only written under its row lock; each row at most once (a
/// sender's row moves to its last message, a recipient's is created if missing, unless it also sent). Two messages in one batch
/// with one client_msg_id make the unique index refuse the whole statement (nothing is written); the caller
/// then takes the careful path. Parameters: arrays conversation, from, to, low, high, kind, body,
/// client_msg_id (one element per message), then now. Each row returned carries `ord`, the message's
/// 1-based position in the arrays.
const DIRECT_MANY_SQL: &str = concat!(
    "WITH input AS (
        SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::text[],
                             $8::text[])
               WITH ORDINALITY AS t(conv, from_id, to_id, low, high, kind, body, cmid, ord)
    ), ok AS (
        SELECT i.*, row_number() OVER (PARTITION BY i.conv ORDER BY i.ord) AS k
        FROM input i
        WHERE EXISTS (SELECT 1 FROM friendships f WHERE f.user_id = i.from_id AND f.friend_id = i.to_id)
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.from_user_id = i.from_id AND m.client_msg_id = i.cmid)
    ), counts AS (
        SELECT conv, min(low) AS low, min(high) AS high, count(*) AS n FROM ok GROUP BY conv
    ), conv AS (
        INSERT INTO conversations (id, kind, group_id, user_low, user_high, last_seq, created_at, updated_at)
        SELECT conv, 'direct', NULL, low, high, n, $9, $9 FROM counts ORDER BY conv
        ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + excluded.last_seq, updated_at = $9
        RETURNING id, last_seq
    ), planned AS (
        SELECT ok.*, conv.last_seq - counts.n + ok.k AS seq
        FROM ok JOIN counts ON counts.conv = ok.conv JOIN conv ON conv.id = ok.conv
    ), msg AS (
        INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id,
                              client_msg_id, created_at)
        SELECT conv, seq, from_id, to_id, NULL, kind, body, NULL, cmid, $9 FROM planned ORDER BY ord
        RETURNING ",
    super::sql::message_columns!(),
    "
    ), senders AS (
        INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
        SELECT from_id, conv, max(seq), 0 FROM planned GROUP BY from_id, conv ORDER BY conv, from_id
        ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = excluded.read_seq
        WHERE user_conversations.read_seq < excluded.read_seq
    ), recipients AS (
        INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
        SELECT DISTINCT to_id, conv, 0::int8, 0::int8 FROM planned p
        WHERE NOT EXISTS (SELECT 1 FROM planned s WHERE s.from_id = p.to_id AND s.conv = p.conv)
        ON CONFLICT (user_id, conversation_id) DO NOTHING
    )
    SELECT planned.ord, msg.* FROM msg JOIN planned ON planned.conv = msg.conversation_id AND planned.seq = msg.seq"
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
