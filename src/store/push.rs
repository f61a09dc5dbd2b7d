//! Push subscriptions and the push outbox (DESIGN.md §11), on any SQL backend. The outbox rows are written in the
//! transaction of the message that concerns them ([`note_in`], and Postgres's send statements); this module
//! also claims, reads and hands them back.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::sql::{message_columns, push_upsert};
use super::{MessageRecord, SqlStore, StoreResult};

/// Marks the push outbox rows of the devices `message` may concern (every subscribed device of a recipient
/// other than its author), in the transaction that stores it, so a committed message's push is never lost.
/// Postgres's send fast paths do the same in their own statements (`store::postgres`).
pub(crate) async fn note_in<DB>(tx: &mut sqlx::Transaction<'_, DB>, message: &MessageRecord) -> StoreResult<()>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    Option<i64>: for<'q> Param<'q, DB>,
    DateTime<Utc>: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
{
    sqlx::query(concat!(
        "INSERT INTO push_state (user_id, device_id, conversation_id, seq, first_at, quiet_since)
         SELECT s.user_id, s.device_id, $1, $2, $3, $3 FROM push_subscriptions s
         WHERE s.user_id <> $4
           AND (s.user_id = $5 OR s.user_id IN (SELECT m.user_id FROM group_members m WHERE m.group_id = $6))",
        push_upsert!()
    ))
    .bind(message.conversation_id.as_str())
    .bind(message.seq)
    .bind(message.created_at)
    .bind(message.from_user_id)
    .bind(message.to_user_id)
    .bind(message.group_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A device's Web Push subscription, its keys as the browser gave them (base64url).
#[derive(Debug, Clone, FromRow)]
pub struct PushSubscriptionRecord {
    pub user_id: i64,
    pub device_id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
    pub created_at: DateTime<Utc>,
}

/// A claimed outbox row: the device's notifications of one conversation are due for changes up to `seq`.
#[derive(Debug, Clone, FromRow)]
pub struct PushJob {
    pub id: i64,
    pub user_id: i64,
    pub device_id: String,
    pub conversation_id: String,
    /// The latest change that may concern the device.
    pub seq: i64,
    /// Changes up to here were handled before.
    pub sent_seq: i64,
    /// The device was last sent a visible notification of this conversation.
    pub shown: bool,
    /// When the oldest unhandled change happened.
    pub first_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: i32,
    /// Only a read is pending: the update replaces what the device shows without alerting.
    pub silent: bool,
}

/// How a claimed row is handed back.
#[derive(Debug, Clone, Copy)]
pub enum PushRelease {
    /// Changes up to `seq` are handled; `shown`: a visible notification is now showing on the device.
    Handled { seq: i64, shown: bool },
    /// Decide again at `at` (the device may still acknowledge the messages).
    Later { at: DateTime<Utc> },
    /// The push failed; try again at `at`, one more failed attempt counted.
    Retry { at: DateTime<Utc> },
}

/// What the conversation looks like to the user, for their notification.
#[derive(Debug, Clone)]
pub struct PushView {
    pub muted: bool,
    /// The group's name, for a group conversation.
    pub group_name: Option<String>,
    /// The device's delivered cursor there (0 if it never acknowledged anything there).
    pub delivered_seq: i64,
    /// Unread content messages from others (not recalled, not hidden).
    pub unread: i64,
    /// One of them mentions the user or everyone.
    pub mention: bool,
    /// The newest of them, with its sender's nickname.
    pub newest: Option<(MessageRecord, String)>,
    /// The type of the message at the job's `seq` (`recall` for a recall).
    pub changed_kind: Option<String>,
    /// The user allows previews of message text.
    pub previews: bool,
}

/// Push subscriptions and the outbox.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Stores the device's subscription, replacing an earlier one of the same device; any other device that had
    /// the same endpoint loses it (a browser that signs in as someone else takes its endpoint along).
    async fn subscribe(&self, sub: &PushSubscriptionRecord) -> StoreResult<()>;
    /// Removes the device's subscription and its outbox rows; whether there was one.
    async fn unsubscribe(&self, user: i64, device: &str) -> StoreResult<bool>;
    /// The user read the conversation: each device of theirs that was last sent a visible notification of it
    /// gets its row pending again (as for the newest change there), so the dispatcher sends the silent update
    /// that closes or replaces that notification (a device that acknowledged everything is skipped then).
    async fn note_read(&self, user: i64, conversation_id: &str) -> StoreResult<()>;
    /// Removes every subscription of the user (their password changed: the devices signed in before are signed
    /// out, and must not keep receiving their notifications).
    async fn unsubscribe_all(&self, user: i64) -> StoreResult<()>;
    /// Removes the device's subscription if it still has `endpoint` (the push service said it is gone).
    async fn drop_gone(&self, user: i64, device: &str, endpoint: &str) -> StoreResult<()>;
    async fn subscription(&self, user: i64, device: &str) -> StoreResult<Option<PushSubscriptionRecord>>;
    /// Atomically claims up to `limit` pending rows, until `lease_until`: rows no other claim holds (or whose
    /// lease ran out before `now`) that are ready: their `not_before` passed, or, without one, the conversation
    /// was quiet since `quiet_before` or its oldest change is older than `waited_before`. Two nodes never claim
    /// one row at once.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        quiet_before: DateTime<Utc>,
        waited_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<PushJob>>;
    /// Hands a claimed row back.
    async fn release(&self, job: &PushJob, how: PushRelease) -> StoreResult<()>;
    /// The conversation as the job's user and device see it now; none when the user has no side of it.
    async fn push_view(&self, job: &PushJob) -> StoreResult<Option<PushView>>;
}

#[async_trait]
impl<DB> PushStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    bool: for<'q> Param<'q, DB>,
    String: for<'q> Param<'q, DB>,
    DateTime<Utc>: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    MessageRecord: for<'r> FromRow<'r, DB::Row>,
    PushSubscriptionRecord: for<'r> FromRow<'r, DB::Row>,
    PushJob: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (bool,): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    (i64, i64): for<'r> FromRow<'r, DB::Row>,
    (bool, i64, i64, Option<String>): for<'r> FromRow<'r, DB::Row>,
{
    async fn subscribe(&self, sub: &PushSubscriptionRecord) -> StoreResult<()> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM push_subscriptions WHERE endpoint = $1 AND NOT (user_id = $2 AND device_id = $3)")
            .bind(sub.endpoint.as_str())
            .bind(sub.user_id)
            .bind(sub.device_id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO push_subscriptions (user_id, device_id, endpoint, p256dh, auth, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, device_id) DO UPDATE
             SET endpoint = excluded.endpoint, p256dh = excluded.p256dh, auth = excluded.auth,
                 created_at = excluded.created_at",
        )
        .bind(sub.user_id)
        .bind(sub.device_id.as_str())
        .bind(sub.endpoint.as_str())
        .bind(sub.p256dh.as_str())
        .bind(sub.auth.as_str())
        .bind(sub.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn unsubscribe(&self, user: i64, device: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM push_subscriptions WHERE user_id = $1 AND device_id = $2")
            .bind(user)
            .bind(device)
            .execute(self.writer())
            .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn note_read(&self, user: i64, conversation_id: &str) -> StoreResult<()> {
        let t = super::now();
        sqlx::query(
            "UPDATE push_state SET sent_seq = seq - 1, first_at = $3, quiet_since = $3, not_before = NULL, attempts = 0,
                                   silent = TRUE
             WHERE user_id = $1 AND conversation_id = $2 AND shown AND seq <= sent_seq",
        )
        .bind(user)
        .bind(conversation_id)
        .bind(t)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    async fn unsubscribe_all(&self, user: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM push_subscriptions WHERE user_id = $1").bind(user).execute(self.writer()).await?;
        Ok(())
    }

    async fn drop_gone(&self, user: i64, device: &str, endpoint: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM push_subscriptions WHERE user_id = $1 AND device_id = $2 AND endpoint = $3")
            .bind(user)
            .bind(device)
            .bind(endpoint)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn subscription(&self, user: i64, device: &str) -> StoreResult<Option<PushSubscriptionRecord>> {
        Ok(sqlx::query_as(
            "SELECT user_id, device_id, endpoint, p256dh, auth, created_at
             FROM push_subscriptions WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user)
        .bind(device)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn claim(
        &self,
        now: DateTime<Utc>,
        quiet_before: DateTime<Utc>,
        waited_before: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<PushJob>> {
        // The claim condition is checked again by the UPDATE itself: on Postgres a row another node claimed
        // between the subquery and the update is re-read after its lock and left alone.
        const FREE: &str = "seq > sent_seq AND (claimed_until IS NULL OR claimed_until < $1)";
        let sql = format!(
            "UPDATE push_state SET claimed_until = $4
             WHERE id IN (SELECT id FROM push_state
                          WHERE {FREE}
                            AND CASE WHEN not_before IS NOT NULL THEN not_before <= $1
                                     ELSE quiet_since <= $2 OR first_at <= $3 END
                          ORDER BY id LIMIT $5{})
               AND {FREE}
             RETURNING id, user_id, device_id, conversation_id, seq, sent_seq, shown, first_at, attempts, silent",
            DB::SKIP_LOCKED
        );
        Ok(sqlx::query_as(&sql)
            .bind(now)
            .bind(quiet_before)
            .bind(waited_before)
            .bind(lease_until)
            .bind(limit)
            .fetch_all(self.writer())
            .await?)
    }

    async fn release(&self, job: &PushJob, how: PushRelease) -> StoreResult<()> {
        let query = match how {
            // Changes that came while the row was claimed are still pending; they count from the newest of them
            // (the oldest one's time is not kept), so they wait their turn like a new burst.
            PushRelease::Handled { seq, shown } => sqlx::query(
                "UPDATE push_state
                 SET sent_seq = CASE WHEN sent_seq > $2 THEN sent_seq ELSE $2 END, shown = $3, attempts = 0, silent = FALSE,
                     not_before = NULL, claimed_until = NULL,
                     first_at = CASE WHEN seq > $2 THEN quiet_since ELSE first_at END
                 WHERE id = $1",
            )
            .bind(job.id)
            .bind(seq)
            .bind(shown),
            PushRelease::Later { at } => {
                sqlx::query("UPDATE push_state SET not_before = $2, claimed_until = NULL WHERE id = $1")
                    .bind(job.id)
                    .bind(at)
            }
            PushRelease::Retry { at } => sqlx::query(
                "UPDATE push_state SET not_before = $2, attempts = attempts + 1, claimed_until = NULL WHERE id = $1",
            )
            .bind(job.id)
            .bind(at),
        };
        query.execute(self.writer()).await?;
        Ok(())
    }

    async fn push_view(&self, job: &PushJob) -> StoreResult<Option<PushView>> {
        let (user, conversation) = (job.user_id, job.conversation_id.as_str());
        let side: Option<(bool, i64, i64, Option<String>)> = sqlx::query_as(
            "SELECT uc.muted, uc.read_seq, uc.visible_from_seq, g.name
             FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id
             LEFT JOIN chat_groups g ON g.id = c.group_id
             WHERE uc.user_id = $1 AND uc.conversation_id = $2",
        )
        .bind(user)
        .bind(conversation)
        .fetch_optional(self.reader())
        .await?;
        let Some((muted, read_seq, visible_from_seq, group_name)) = side else { return Ok(None) };
        let after = read_seq.max(visible_from_seq);
        let delivered: Option<(i64,)> = sqlx::query_as(
            "SELECT delivered_seq FROM delivery_cursors WHERE user_id = $1 AND device_id = $2 AND conversation_id = $3",
        )
        .bind(user)
        .bind(job.device_id.as_str())
        .bind(conversation)
        .fetch_optional(self.reader())
        .await?;
        // Unread as `MessageStore::unread` counts it, for this one conversation.
        const UNREAD: &str = "FROM messages m
             WHERE m.conversation_id = $2 AND m.seq > $3 AND m.from_user_id <> $1
               AND m.kind NOT IN ('recall', 'edit', 'reaction', 'system') AND m.recalled_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.message_id = m.id)";
        let (unread, mention): (i64, i64) = sqlx::query_as(&format!(
            "SELECT COUNT(*), CAST(COALESCE(MAX(CASE WHEN EXISTS (
                        SELECT 1 FROM message_mentions mm
                        WHERE mm.conversation_id = m.conversation_id AND mm.seq = m.seq AND mm.user_id IN (0, $1))
                    THEN 1 ELSE 0 END), 0) AS BIGINT)
             {UNREAD}"
        ))
        .bind(user)
        .bind(conversation)
        .bind(after)
        .fetch_one(self.reader())
        .await?;
        let newest: Option<MessageRecord> =
            sqlx::query_as(&format!("SELECT {} {UNREAD} ORDER BY m.seq DESC LIMIT 1", message_columns!()))
                .bind(user)
                .bind(conversation)
                .bind(after)
                .fetch_optional(self.reader())
                .await?;
        let newest = match newest {
            Some(m) => {
                let name: Option<(String,)> = sqlx::query_as("SELECT nickname FROM users WHERE id = $1")
                    .bind(m.from_user_id)
                    .fetch_optional(self.reader())
                    .await?;
                Some((m, name.map(|n| n.0).unwrap_or_default()))
            }
            None => None,
        };
        let changed: Option<(String,)> =
            sqlx::query_as("SELECT kind FROM messages WHERE conversation_id = $1 AND seq = $2")
                .bind(conversation)
                .bind(job.seq)
                .fetch_optional(self.reader())
                .await?;
        let previews: Option<(bool,)> = sqlx::query_as("SELECT push_previews FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(self.reader())
            .await?;
        Ok(Some(PushView {
            muted,
            group_name,
            delivered_seq: delivered.map_or(0, |d| d.0),
            unread,
            mention: mention != 0,
            newest,
            changed_kind: changed.map(|c| c.0),
            previews: previews.is_some_and(|p| p.0),
        }))
    }
}
