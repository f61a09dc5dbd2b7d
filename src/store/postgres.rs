//! The Postgres backend: the source of truth in cluster mode. It opens the pool and adds the fast paths of the
//! send path ([`PgSendWriter`]) and of delivered cursors ([`PgAcks`]) to the generic SQL stores.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus::IntCounterVec;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Postgres;

use super::batch::{AckBatcher, AckKey, AckWriter, BatchWriter, Batched, Batcher, Writers};
use super::{MessageRecord, NewMessage, SqlStore, StoreError, StoreResult, Stores};
use crate::metrics::Metrics;

/// The member lists of the groups this node sent to, each with the `members_version` it was read at. A send
/// passes the version it holds and gets the list back only when the group's version moved (see
/// [`GROUP_MANY_SQL`]).
#[derive(Default)]
struct MemberCache {
    groups: std::collections::HashMap<i64, (i64, std::sync::Arc<[i64]>)>,
    ids: usize,
}

/// Most member ids the cache holds (8 MB); past it the cache starts again empty, and sends read lists afresh.
const MAX_CACHED_MEMBER_IDS: usize = 1_000_000;

impl MemberCache {
    fn get(&self, group: i64) -> Option<(i64, std::sync::Arc<[i64]>)> {
        self.groups.get(&group).cloned()
    }

    fn put(&mut self, group: i64, version: i64, members: std::sync::Arc<[i64]>) {
        if self.ids + members.len() > MAX_CACHED_MEMBER_IDS {
            self.groups.clear();
            self.ids = 0;
        }
        self.ids += members.len();
        if let Some((_, old)) = self.groups.insert(group, (version, members)) {
            self.ids -= old.len();
        }
    }
}

/// Concurrent group-commit transactions per node. Two: a send arriving while a batch commits need not wait for
/// that commit; under load the batcher makes plain direct batches take turns rather than split the load into
/// smaller ones (see [`Batcher`]).
const COMMITTERS: usize = 2;

/// Connects, applies pending migrations (idempotent; concurrent nodes serialise on sqlx's advisory lock) and
/// starts the background writers.
pub(super) async fn open(url: &str, pool_size: u32, metrics: &Metrics) -> anyhow::Result<Stores> {
    let opts: PgConnectOptions = url.parse()?;
    // No ping before each use: it doubled the round trips of every statement. A connection that broke
    // (the server restarted) fails its next statement instead, and the pool replaces it.
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .test_before_acquire(false)
        // A request waits at most this for a connection: while the database is unreachable, requests answer 503
        // `unavailable` within it instead of hanging (and a pool this busy is overloaded, which 503 also says).
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(opts)
        .await?;
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    let store = Arc::new(SqlStore::<Postgres>::new(pool.clone(), pool.clone()));
    let backfilled = store.backfill_search().await?;
    if backfilled > 0 {
        tracing::info!(messages = backfilled, "indexed the messages stored before search existed");
    }
    let writers = Writers::default();
    let sends = PgSendWriter {
        store: store.clone(),
        pool: pool.clone(),
        members: Default::default(),
        paths: metrics.store_send_batches.clone(),
    };
    let batcher = Batcher::spawn(sends, COMMITTERS, &writers);
    let acks = AckBatcher::spawn(PgAcks(pool), &writers);
    let messages = Arc::new(Batched::new(store.clone(), batcher, acks));
    Ok(Stores::assemble(store, messages, writers))
}

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

/// Shared by the batch statements ([`DIRECT_MANY_SQL`], [`GROUP_MANY_SQL`]): the seq each accepted message
/// takes (its conversation's new `last_seq`, less the conversation's count of accepted messages, plus the message's
/// place `k` among them).
macro_rules! planned_cte {
    () => {
        "planned AS (
        SELECT ok.*, conv.last_seq - counts.n + ok.k AS seq
        FROM ok JOIN counts ON counts.conv = ok.conv JOIN conv ON conv.id = ok.conv
    )"
    };
}

/// Shared by the batch statements: each sender's read cursor moves to their last message of the batch in each
/// conversation (rows in conversation order, like every other lock taken).
macro_rules! senders_cte {
    () => {
        "senders AS (
        INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
        SELECT from_id, conv, max(seq), 0 FROM planned GROUP BY from_id, conv ORDER BY conv, from_id
        ON CONFLICT (user_id, conversation_id) DO UPDATE SET read_seq = excluded.read_seq
        WHERE user_conversations.read_seq < excluded.read_seq"
    };
}

/// A direct text message in one statement: the friendship check and the client_msg_id check gate the seq
/// allocation (so a refused send allocates nothing), then the message and both parties' conversation rows. The
/// sender has read up to their own message; the recipient's row is only created if missing (an update that
/// changes nothing still writes a row version). Parameters: conversation, from, to, low, high, kind, body,
/// client_msg_id, now, search tokens (`store::search::tokens_of`).
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
                              client_msg_id, created_at, search)
        SELECT $1, last_seq, $2, $3, NULL, $6, $7, NULL, $8, $9, array_to_tsvector(string_to_array($10, ' '))
        FROM conv
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
    ), push AS (
        INSERT INTO push_state (user_id, device_id, conversation_id, seq, first_at, quiet_since)
        SELECT s.user_id, s.device_id, $1, last_seq, $9, $9 FROM conv JOIN push_subscriptions s ON s.user_id = $3
        WHERE $3 <> $2",
    super::sql::push_upsert!(),
    "
    )
    SELECT * FROM msg"
);

type Outcome = StoreResult<(MessageRecord, Vec<i64>)>;

/// The send path on Postgres: group commit with the fast paths. A batch is split by kind: its plain direct
/// messages are one autocommitted statement ([`DIRECT_SQL`] for one, [`DIRECT_MANY_SQL`] for more), its plain
/// group messages one short transaction ([`insert_group_many`]), and anything else (media messages) goes through
/// the generic batch path of [`SqlStore`]. The parts run at once, each on its own connection. The direct and group
/// parts touch disjoint rows (`d:` and `g:`); the generic part may share a conversation with either, but every
/// part locks its rows in id order, so two parts that meet on a row commit one after the other and never deadlock.
/// A fast path that refuses its part as a whole (two sends with one `client_msg_id` in a batch, a lost race)
/// hands it to the generic path. Each part is counted by the path that wrote it:
/// `gochat_store_send_batches_total{path="direct|direct_many|group_many|generic|fallback"}`.
struct PgSendWriter {
    store: Arc<SqlStore<Postgres>>,
    pool: PgPool,
    members: std::sync::Mutex<MemberCache>,
    paths: IntCounterVec,
}

impl PgSendWriter {
    fn count(&self, path: &str) {
        self.paths.with_label_values(&[path]).inc();
    }
}

#[async_trait]
impl BatchWriter for PgSendWriter {
    async fn insert_batch(&self, batch: &[NewMessage]) -> Vec<Outcome> {
        let (mut direct, mut group, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for (i, m) in batch.iter().enumerate() {
            if m.is_plain_direct() {
                direct.push(i);
            } else if m.is_plain_group() {
                group.push(i);
            } else {
                rest.push(i);
            }
        }
        let pick = |part: &[usize]| part.iter().map(|&i| batch[i].clone()).collect::<Vec<NewMessage>>();
        let (direct_batch, group_batch, rest_batch) = (pick(&direct), pick(&group), pick(&rest));
        let (direct_results, group_results, rest_results) = tokio::join!(
            async {
                match direct_batch.as_slice() {
                    [] => return Vec::new(),
                    // A lone direct message (light load): one autocommitted statement, one round trip.
                    [one] => {
                        self.count("direct");
                        return vec![insert_direct(&self.pool, one).await];
                    }
                    _ => match insert_direct_many(&self.pool, &direct_batch).await {
                        Ok(results) => {
                            self.count("direct_many");
                            return results;
                        }
                        // A repeated client_msg_id inside the batch (the unique index refused the statement,
                        // which wrote nothing), or a lost race: the generic path sorts it out message by message.
                        Err(e) => {
                            tracing::debug!(error = %e, size = direct_batch.len(), "batched direct insert fell back")
                        }
                    },
                }
                self.count("fallback");
                self.store.insert_batch(&direct_batch).await
            },
            async {
                if group_batch.is_empty() {
                    return Vec::new();
                }
                match insert_group_many(&self.pool, &self.members, &group_batch).await {
                    Ok(results) => {
                        self.count("group_many");
                        return results;
                    }
                    Err(e) => tracing::debug!(error = %e, size = group_batch.len(), "batched group insert fell back"),
                }
                self.count("fallback");
                self.store.insert_batch(&group_batch).await
            },
            async {
                if rest_batch.is_empty() {
                    return Vec::new();
                }
                self.count("generic");
                self.store.insert_batch(&rest_batch).await
            },
        );
        let mut results: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
        for (part, outcomes) in [(direct, direct_results), (group, group_results), (rest, rest_results)] {
            for (i, outcome) in part.into_iter().zip(outcomes) {
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Inconsistent("a message of the batch has no result".into()))))
            .collect()
    }

    /// Plain direct messages: a batch of them is one statement whose cost is mostly fixed (executor start-up,
    /// protocol, commit), so a larger batch is cheaper per message.
    fn gathers_until_commit(&self, message: &NewMessage) -> bool {
        message.is_plain_direct()
    }
}

/// Appends a batch of plain group messages in one transaction of two statements: the first locks the batch's
/// conversation rows (in id order, as membership changes and every other writer lock them), the second,
/// [`GROUP_MANY_SQL`], does the rest under a snapshot taken after the locks are held, so the membership it
/// checks and the members it returns as recipients are exactly those at the seqs it allocates. A message
/// without a row back was refused (the sender is not a member, the group is dissolved, or its client_msg_id is
/// already stored; the caller looks that up). `Err` only when nothing was committed (the caller may retry the
/// batch another way); a failed commit answers every message with its error instead.
async fn insert_group_many(
    pool: &PgPool,
    cache: &std::sync::Mutex<MemberCache>,
    batch: &[NewMessage],
) -> StoreResult<Vec<Outcome>> {
    use sqlx::{FromRow, Row};
    let n = batch.len();
    // The member lists this node holds for the batch's groups, taken now: a list the statement does not send
    // back is the one taken here, whatever the cache does meanwhile.
    let held: std::collections::HashMap<i64, (i64, std::sync::Arc<[i64]>)> = {
        let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        batch.iter().filter_map(|m| m.group_id).filter_map(|g| cache.get(g).map(|h| (g, h))).collect()
    };
    let known: Vec<i64> = batch.iter().map(|m| m.group_id.and_then(|g| held.get(&g)).map_or(-1, |h| h.0)).collect();
    let conversations: Vec<String> = batch.iter().map(|m| m.conversation_id.to_string()).collect();
    let (mut group, mut from, mut kind, mut body, mut cmid) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for m in batch {
        group.push(m.group_id.unwrap_or_default());
        from.push(m.from_user_id);
        kind.push(m.kind);
        body.push(m.body.as_deref());
        cmid.push(m.client_msg_id.as_deref());
    }
    let mut tx = pool.begin().await?;
    let mut locked = conversations.clone();
    locked.sort();
    locked.dedup();
    sqlx::query("SELECT 1 FROM conversations WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&locked)
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(GROUP_MANY_SQL)
        .bind(conversations)
        .bind(&group)
        .bind(&from)
        .bind(&kind)
        .bind(&body)
        .bind(&cmid)
        .bind(super::now())
        .bind(&known)
        .bind(
            batch
                .iter()
                .map(|m| super::search::tokens_of(m.kind, m.body.as_deref(), &m.conversation_id.to_string()))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
    let mut results: Vec<Outcome> = (0..n).map(|_| Err(StoreError::NotMember)).collect();
    let mut fresh: Vec<(i64, i64, std::sync::Arc<[i64]>)> = Vec::new();
    for row in rows {
        let ord: i64 = row.try_get("ord")?;
        let version: i64 = row.try_get("members_version")?;
        let listed: Option<Vec<i64>> = row.try_get("members")?;
        let message = MessageRecord::from_row(&row)?;
        let i = usize::try_from(ord - 1)
            .ok()
            .filter(|&i| i < n)
            .ok_or_else(|| StoreError::Inconsistent(format!("batched insert returned position {ord} of {n}")))?;
        let group = message.group_id.unwrap_or_default();
        let members: std::sync::Arc<[i64]> = match (listed, held.get(&group)) {
            (Some(list), _) => {
                let list: std::sync::Arc<[i64]> = list.into();
                fresh.push((group, version, list.clone()));
                list
            }
            (None, Some((v, list))) if *v == version => list.clone(),
            _ => {
                return Err(StoreError::Inconsistent(format!(
                    "group {group}: members at version {version} neither sent nor held"
                )))
            }
        };
        results[i] = Ok((message, members.to_vec()));
    }
    if let Err(e) = tx.commit().await {
        let failed = StoreError::batch_failure(&e, "");
        return Ok((0..n).map(|_| Err(failed())).collect());
    }
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    for (group, version, list) in fresh {
        cache.put(group, version, list);
    }
    Ok(results)
}

/// The second statement of [`insert_group_many`], run while the batch's conversation rows are locked. Each
/// message is checked like a lone send (the sender is a member and not muted, which a dissolved group has none of; the
/// client_msg_id is not yet stored); each conversation's seq moves once by its number of accepted messages,
/// which take the seqs in arrival order; each sender's read cursor moves to their last message. Each row
/// returned carries `ord` (the message's 1-based position in the arrays), the group's `members_version`, and
/// `members` (the group's members, the message's recipients) unless the caller already holds them: `known` is,
/// per message, the version of the member list the caller holds (-1 for none), and when it equals the group's
/// version `members` is NULL. Two messages in one batch with one client_msg_id make the unique index refuse the
/// whole statement. Parameters: arrays conversation, group, from, kind, body, client_msg_id, then now, then the
/// arrays known and search tokens.
const GROUP_MANY_SQL: &str = concat!(
    "WITH input AS (
        SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $8::int8[],
                             $9::text[])
               WITH ORDINALITY AS t(conv, group_id, from_id, kind, body, cmid, known, tok, ord)
    ), ok AS (
        SELECT i.*, row_number() OVER (PARTITION BY i.conv ORDER BY i.ord) AS k
        FROM input i
        WHERE EXISTS (SELECT 1 FROM group_members g WHERE g.group_id = i.group_id AND g.user_id = i.from_id)
          -- Mutes (DESIGN.md §9), each on a partial index that holds only what is muted, so an unmuted group
          -- costs two probes of empty indexes.
          AND NOT EXISTS (SELECT 1 FROM group_members g WHERE g.group_id = i.group_id AND g.user_id = i.from_id
                                                          AND g.muted_until IS NOT NULL AND g.muted_until > $7)
          AND NOT EXISTS (SELECT 1 FROM chat_groups cg JOIN group_members g ON g.group_id = cg.id
                          WHERE cg.id = i.group_id AND cg.muted_all AND g.user_id = i.from_id AND g.role = 'member')
          AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.from_user_id = i.from_id AND m.client_msg_id = i.cmid)
    ), counts AS (
        SELECT conv, min(group_id) AS group_id, min(known) AS known, count(*) AS n FROM ok GROUP BY conv
    ), conv AS (
        UPDATE conversations c SET last_seq = c.last_seq + counts.n, updated_at = $7
        FROM counts WHERE c.id = counts.conv
        RETURNING c.id, c.last_seq, c.members_version
    ), ",
    planned_cte!(),
    ", msg AS (
        INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id,
                              client_msg_id, created_at, search)
        SELECT conv, seq, from_id, NULL, group_id, kind, body, NULL, cmid, $7,
               array_to_tsvector(string_to_array(tok, ' '))
        FROM planned ORDER BY ord
        RETURNING ",
    super::sql::message_columns!(),
    "
    ), ",
    senders_cte!(),
    "
    ), push AS (
        INSERT INTO push_state (user_id, device_id, conversation_id, seq, first_at, quiet_since)
        SELECT s.user_id, s.device_id, p.conv, max(p.seq), $7, $7
        FROM planned p JOIN group_members g ON g.group_id = p.group_id
                       JOIN push_subscriptions s ON s.user_id = g.user_id
        WHERE g.user_id <> p.from_id
        GROUP BY s.user_id, s.device_id, p.conv",
    super::sql::push_upsert!(),
    "
    ), members AS (
        SELECT counts.conv, conv.members_version,
               CASE WHEN conv.members_version = counts.known THEN NULL
                    ELSE (SELECT array_agg(g.user_id) FROM group_members g WHERE g.group_id = counts.group_id)
               END AS members
        FROM counts JOIN conv ON conv.id = counts.conv
    )
    SELECT planned.ord, members.members_version, members.members, msg.*
    FROM msg JOIN planned ON planned.conv = msg.conversation_id AND planned.seq = msg.seq
             JOIN members ON members.conv = planned.conv"
);

/// Runs [`DIRECT_MANY_SQL`] for a batch of plain direct messages. A message without a row back was refused
/// (not friends, or its client_msg_id is already stored; the caller looks that up), exactly as for a lone send.
async fn insert_direct_many(pool: &PgPool, batch: &[NewMessage]) -> StoreResult<Vec<Outcome>> {
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
            return Err(StoreError::Inconsistent("a batch of direct messages holds another kind".into()));
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
        .bind(
            batch
                .iter()
                .map(|m| super::search::tokens_of(m.kind, m.body.as_deref(), &m.conversation_id.to_string()))
                .collect::<Vec<_>>(),
        )
        .fetch_all(pool)
        .await
        .map_err(StoreError::classify)?;
    let mut results: Vec<Outcome> = (0..n).map(|_| Err(StoreError::NotFriends)).collect();
    for row in rows {
        let ord: i64 = row.try_get("ord")?;
        let message = MessageRecord::from_row(&row)?;
        let i = usize::try_from(ord - 1)
            .ok()
            .filter(|&i| i < n)
            .ok_or_else(|| StoreError::Inconsistent(format!("batched insert returned position {ord} of {n}")))?;
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
                             $8::text[], $10::text[])
               WITH ORDINALITY AS t(conv, from_id, to_id, low, high, kind, body, cmid, tok, ord)
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
    ), ",
    planned_cte!(),
    ", msg AS (
        INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id,
                              client_msg_id, created_at, search)
        SELECT conv, seq, from_id, to_id, NULL, kind, body, NULL, cmid, $9, array_to_tsvector(string_to_array(tok, ' '))
        FROM planned ORDER BY ord
        RETURNING ",
    super::sql::message_columns!(),
    "
    ), ",
    senders_cte!(),
    "
    ), recipients AS (
        INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
        SELECT DISTINCT to_id, conv, 0::int8, 0::int8 FROM planned p
        WHERE NOT EXISTS (SELECT 1 FROM planned s WHERE s.from_id = p.to_id AND s.conv = p.conv)
        ON CONFLICT (user_id, conversation_id) DO NOTHING
    ), push AS (
        INSERT INTO push_state (user_id, device_id, conversation_id, seq, first_at, quiet_since)
        SELECT s.user_id, s.device_id, p.conv, max(p.seq), $9, $9
        FROM planned p JOIN push_subscriptions s ON s.user_id = p.to_id
        WHERE p.to_id <> p.from_id
        GROUP BY s.user_id, s.device_id, p.conv",
    super::sql::push_upsert!(),
    "
    )
    SELECT planned.ord, msg.* FROM msg JOIN planned ON planned.conv = msg.conversation_id AND planned.seq = msg.seq"
);

/// Runs [`DIRECT_SQL`] for one plain direct message: friendship check, seq allocation, insert and both parties'
/// conversation rows at once. No row back means not friends, or a message with this client_msg_id already exists
/// (the caller looks it up).
async fn insert_direct(pool: &PgPool, new: &NewMessage) -> Outcome {
    let crate::domain::ConversationId::Direct { low, high } = new.conversation_id else {
        return Err(StoreError::Inconsistent("a direct send names a group conversation".into()));
    };
    let row: Option<MessageRecord> = sqlx::query_as(DIRECT_SQL)
        .bind(new.conversation_id.to_string())
        .bind(new.from_user_id)
        .bind(new.to_user_id.unwrap_or_default())
        .bind(low)
        .bind(high)
        .bind(new.kind)
        .bind(new.body.as_deref())
        .bind(new.client_msg_id.as_deref())
        .bind(super::now())
        .bind(super::search::tokens_of(new.kind, new.body.as_deref(), &new.conversation_id.to_string()))
        .fetch_optional(pool)
        .await
        .map_err(StoreError::classify)?;
    row.map(|m| (m, vec![high, low])).ok_or(StoreError::NotFriends)
}
