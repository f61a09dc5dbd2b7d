//! Messages, conversations and delivered cursors, on any SQL backend: the generic send path (seq allocation,
//! batches under savepoints) that every backend has, whatever faster paths it adds (see `postgres.rs`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::batch::{settle_append, AckKey};
use super::dialect::{Dialect, Param};
use super::sql::{message_columns, ACK_ROWS_PER_STATEMENT};
use super::{
    json_ids, json_strings, now, Appended, EventAction, EventOutcome, MessageRecord, MessageStore, NewEvent,
    NewMessage, SqlStore, StoreError, StoreResult, UserConversationRecord,
};

impl<DB> SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    Option<i64>: for<'q> Param<'q, DB>,
    String: for<'q> Param<'q, DB>,
    DateTime<Utc>: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    for<'q> Option<&'q str>: Param<'q, DB>,
    MessageRecord: for<'r> FromRow<'r, DB::Row>,
    UserConversationRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (i64, i64): for<'r> FromRow<'r, DB::Row>,
    (String, i64): for<'r> FromRow<'r, DB::Row>,
    (String, i64, i64): for<'r> FromRow<'r, DB::Row>,
    (i64, String, i64): for<'r> FromRow<'r, DB::Row>,
    (i64, i64, i64): for<'r> FromRow<'r, DB::Row>,
{
    /// Checks a direct message's friendship, allocates the next seq (the conversation row stays locked until
    /// commit, which serialises appends to one conversation) and inserts the message, inside the caller's
    /// transaction. With `check_repeat`, a repeated client_msg_id is found before anything is written
    /// (`Repeated`), which is exact on a backend with a single writer; without it, the unique index finds
    /// it and the caller's savepoint returns the allocated seq.
    async fn insert_one(
        tx: &mut sqlx::Transaction<'_, DB>,
        new: &NewMessage,
        now: chrono::DateTime<chrono::Utc>,
        check_repeat: bool,
    ) -> StoreResult<(MessageRecord, Vec<i64>)> {
        let conversation_id = new.conversation_id.to_string();
        let (kind, group_id, low, high) = match new.conversation_id {
            crate::domain::ConversationId::Direct { low, high } => ("direct", None, Some(low), Some(high)),
            crate::domain::ConversationId::Group(g) => ("group", Some(g), None, None),
        };
        if let Some(to) = new.to_user_id {
            let (friends, repeat): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM friendships WHERE user_id = $1 AND friend_id = $2),
                        (SELECT COUNT(*) FROM messages WHERE from_user_id = $1 AND client_msg_id = $3)",
            )
            .bind(new.from_user_id)
            .bind(to)
            .bind(if check_repeat { new.client_msg_id.as_deref() } else { None })
            .fetch_one(&mut **tx)
            .await?;
            if friends == 0 {
                return Err(StoreError::NotFriends);
            }
            if repeat != 0 {
                return Err(StoreError::Repeated);
            }
        }
        // A group message: lock the group's conversation row first (membership changes lock it too), so
        // the members read next are the members at the seq allocated after. An unknown group has no row,
        // and a dissolved one no members: both are refused before anything is allocated.
        let members: Option<Vec<i64>> = match group_id {
            Some(g) => {
                let locked: Option<(i64,)> =
                    sqlx::query_as("UPDATE conversations SET updated_at = updated_at WHERE id = $1 RETURNING last_seq")
                        .bind(conversation_id.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                if locked.is_none() {
                    return Err(StoreError::NotMember);
                }
                // The members, each with whether it is the sender and muted now (DESIGN.md §9).
                let members: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT m.user_id, CAST(CASE WHEN m.user_id = $2 AND ((m.muted_until IS NOT NULL AND m.muted_until > $3)
                                                  OR (g.muted_all AND m.role = 'member')) THEN 1 ELSE 0 END AS BIGINT)
                     FROM group_members m JOIN chat_groups g ON g.id = m.group_id WHERE m.group_id = $1",
                )
                .bind(g)
                .bind(new.from_user_id)
                .bind(now)
                .fetch_all(&mut **tx)
                .await?;
                if !members.iter().any(|m| m.0 == new.from_user_id) {
                    return Err(StoreError::NotMember);
                }
                if members.iter().any(|m| m.1 != 0) {
                    return Err(StoreError::Muted);
                }
                Some(members.into_iter().map(|m| m.0).collect())
            }
            None => None,
        };
        let (seq,): (i64,) = sqlx::query_as(
            "INSERT INTO conversations (id, kind, group_id, user_low, user_high, last_seq, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)
             ON CONFLICT (id) DO UPDATE SET last_seq = conversations.last_seq + 1, updated_at = $6
             RETURNING last_seq",
        )
        .bind(conversation_id.as_str())
        .bind(kind)
        .bind(group_id)
        .bind(low)
        .bind(high)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        // The files, if any, must still exist and be the sender's (or, for a forward, one the service checked
        // they can read); referencing them protects them from cleanup (which deletes only unreferenced files,
        // so it either ran before and we fail, or waits for us).
        for file_id in new.file_id.iter().chain(&new.item_files) {
            let found: Option<(i64,)> = sqlx::query_as(
                "UPDATE files SET referenced_at = COALESCE(referenced_at, $3)
                 WHERE id = $1 AND (uploader_id = $2 OR $4 = 1) RETURNING id",
            )
            .bind(*file_id)
            .bind(new.from_user_id)
            .bind(now)
            .bind(i64::from(new.forwarded))
            .fetch_optional(&mut **tx)
            .await?;
            if found.is_none() {
                return Err(StoreError::FileGone);
            }
        }
        let recipients: Vec<i64> = match members {
            Some(members) => members,
            None => vec![high.unwrap_or_default(), low.unwrap_or_default()],
        };
        let msg: MessageRecord = sqlx::query_as(
            concat!("INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id, client_msg_id, created_at, reply_to_id, meta)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             RETURNING ", message_columns!()),
        )
        .bind(conversation_id.as_str())
        .bind(seq)
        .bind(new.from_user_id)
        .bind(new.to_user_id)
        .bind(new.group_id)
        .bind(new.kind)
        .bind(new.body.as_deref())
        .bind(new.file_id)
        .bind(new.client_msg_id.as_deref())
        .bind(now)
        .bind(new.reply_to_id)
        .bind(new.meta.as_deref())
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::classify)?;
        Self::index_in(tx, msg.id, new.kind, new.body.as_deref(), &msg.conversation_id).await?;
        crate::store::push::note_in(tx, &msg).await?;
        for &file_id in &new.item_files {
            sqlx::query("INSERT INTO message_files (message_id, file_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(msg.id)
                .bind(file_id)
                .execute(&mut **tx)
                .await?;
        }
        for &user in &new.mentions {
            sqlx::query("INSERT INTO message_mentions (conversation_id, seq, user_id) VALUES ($1, $2, $3)")
                .bind(conversation_id.as_str())
                .bind(seq)
                .bind(user)
                .execute(&mut **tx)
                .await?;
        }
        // Both sides of a direct conversation exist from its first message; and sending implies having
        // read the conversation up to one's own message. One statement for both.
        let peer = match (low, high) {
            (Some(l), Some(h)) => Some(if l == new.from_user_id { h } else { l }),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
             SELECT $1, $2, $3, 0 UNION ALL SELECT $4, $2, 0, 0 WHERE $4 IS NOT NULL
             ON CONFLICT (user_id, conversation_id) DO UPDATE
             SET read_seq = CASE WHEN excluded.read_seq > user_conversations.read_seq
                                 THEN excluded.read_seq ELSE user_conversations.read_seq END",
        )
        .bind(new.from_user_id)
        .bind(conversation_id.as_str())
        .bind(seq)
        .bind(peer)
        .execute(&mut **tx)
        .await?;
        Ok((msg, recipients))
    }

    /// An event's work inside the caller's transaction: lock the conversation row (which orders it with the
    /// conversation's sends and membership changes), check that the actor may still write to the conversation
    /// and that the target is not recalled, change the target, then append the event with the next seq.
    async fn event_in(
        tx: &mut sqlx::Transaction<'_, DB>,
        event: &NewEvent,
        now: DateTime<Utc>,
    ) -> StoreResult<EventOutcome> {
        let target = &event.target;
        let conversation = target.conversation_id.as_str();
        let locked: Option<(i64,)> =
            sqlx::query_as("UPDATE conversations SET updated_at = updated_at WHERE id = $1 RETURNING last_seq")
                .bind(conversation)
                .fetch_optional(&mut **tx)
                .await?;
        if locked.is_none() {
            return Err(StoreError::NotMember);
        }
        // Members who joined after the target was sent cannot see it (nor can whoever hid it).
        let mut unseen: Vec<i64> = Vec::new();
        let (recipients, to_user_id) = match (target.group_id, conversation.parse::<crate::domain::ConversationId>()) {
            (Some(group), _) => {
                // The members, when they joined, and whether each is the actor and muted now (DESIGN.md §9).
                let members: Vec<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT m.user_id, m.joined_seq,
                            CAST(CASE WHEN m.user_id = $2 AND ((m.muted_until IS NOT NULL AND m.muted_until > $3)
                                                  OR (g.muted_all AND m.role = 'member')) THEN 1 ELSE 0 END AS BIGINT)
                     FROM group_members m JOIN chat_groups g ON g.id = m.group_id WHERE m.group_id = $1",
                )
                .bind(group)
                .bind(event.actor)
                .bind(now)
                .fetch_all(&mut **tx)
                .await?;
                unseen.extend(members.iter().filter(|m| m.1 >= target.seq).map(|m| m.0));
                if !members.iter().any(|m| m.0 == event.actor) {
                    return Err(StoreError::NotMember);
                }
                // A muted member may take back their words, not say new ones (an edit's text, a reaction).
                if !matches!(event.action, EventAction::Recall) && members.iter().any(|m| m.2 != 0) {
                    return Err(StoreError::Muted);
                }
                (members.into_iter().map(|m| m.0).collect(), None)
            }
            (None, Ok(crate::domain::ConversationId::Direct { low, high })) => {
                let peer = if event.actor == low { high } else { low };
                // Taking back one's own words needs no friendship; anything that says something new does.
                if !matches!(event.action, EventAction::Recall) {
                    let (friends,): (i64,) =
                        sqlx::query_as("SELECT COUNT(*) FROM friendships WHERE user_id = $1 AND friend_id = $2")
                            .bind(event.actor)
                            .bind(peer)
                            .fetch_one(&mut **tx)
                            .await?;
                    if friends == 0 {
                        return Err(StoreError::NotFriends);
                    }
                }
                (vec![high, low], Some(peer))
            }
            _ => return Err(StoreError::Inconsistent(format!("message {} has no conversation", target.id))),
        };
        let (recalled,): (i64,) = sqlx::query_as(
            "SELECT CAST(CASE WHEN recalled_at IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM messages WHERE id = $1",
        )
        .bind(target.id)
        .fetch_one(&mut **tx)
        .await?;
        if recalled != 0 {
            return Ok(EventOutcome::TargetRecalled);
        }
        let mut body: Option<&str> = None;
        match &event.action {
            EventAction::Recall => {
                sqlx::query(
                    // The file id stays, so that a download can tell a recalled file (404) from one never
                    // shared (403); every read treats a recalled message as having no file.
                    "UPDATE messages SET body = NULL, meta = NULL, reply_to_id = NULL,
                            recalled_at = $2, recalled_by = $3 WHERE id = $1",
                )
                .bind(target.id)
                .bind(now)
                .bind(event.actor)
                .execute(&mut **tx)
                .await?;
                Self::unindex_in(tx, target.id).await?;
                sqlx::query("UPDATE messages SET body = NULL WHERE target_id = $1 AND kind = 'edit'")
                    .bind(target.id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM message_reactions WHERE message_id = $1")
                    .bind(target.id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("DELETE FROM message_mentions WHERE conversation_id = $1 AND seq = $2")
                    .bind(conversation)
                    .bind(target.seq)
                    .execute(&mut **tx)
                    .await?;
            }
            EventAction::Edit { text } => {
                sqlx::query("UPDATE messages SET body = $2, edited_at = $3 WHERE id = $1")
                    .bind(target.id)
                    .bind(text.as_str())
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                // Only text messages are edited (the service checks), and their new text is what search finds.
                Self::unindex_in(tx, target.id).await?;
                Self::index_in(tx, target.id, "text", Some(text.as_str()), &target.conversation_id).await?;
                body = Some(text.as_str());
            }
            EventAction::React { emoji, add, max_distinct } => {
                let changed = if *add {
                    let (mine, distinct, this): (i64, i64, i64) = sqlx::query_as(
                        "SELECT (SELECT COUNT(*) FROM message_reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3),
                                (SELECT COUNT(DISTINCT emoji) FROM message_reactions WHERE message_id = $1),
                                (SELECT COUNT(*) FROM message_reactions WHERE message_id = $1 AND emoji = $2)",
                    )
                    .bind(target.id)
                    .bind(emoji.as_str())
                    .bind(event.actor)
                    .fetch_one(&mut **tx)
                    .await?;
                    if mine == 0 && this == 0 && distinct >= *max_distinct {
                        return Ok(EventOutcome::TooManyReactions);
                    }
                    if mine == 0 {
                        sqlx::query(
                            "INSERT INTO message_reactions (message_id, emoji, user_id, created_at) VALUES ($1, $2, $3, $4)",
                        )
                        .bind(target.id)
                        .bind(emoji.as_str())
                        .bind(event.actor)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    }
                    mine == 0
                } else {
                    let done = sqlx::query(
                        "DELETE FROM message_reactions WHERE message_id = $1 AND emoji = $2 AND user_id = $3",
                    )
                    .bind(target.id)
                    .bind(emoji.as_str())
                    .bind(event.actor)
                    .execute(&mut **tx)
                    .await?;
                    DB::rows_affected(&done) > 0
                };
                if !changed {
                    let earlier: Vec<MessageRecord> = sqlx::query_as(concat!(
                        "SELECT ",
                        message_columns!(),
                        " FROM messages WHERE target_id = $1 AND kind = 'reaction' AND from_user_id = $2
                          ORDER BY seq DESC"
                    ))
                    .bind(target.id)
                    .bind(event.actor)
                    .fetch_all(&mut **tx)
                    .await?;
                    let latest = earlier.into_iter().find(|m| {
                        crate::domain::model::MessageExtras::from_meta(m.meta.as_deref())
                            .reaction
                            .is_some_and(|r| &r.emoji == emoji)
                    });
                    return Ok(EventOutcome::Unchanged(latest));
                }
            }
        }
        let (seq,): (i64,) =
            sqlx::query_as("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq")
                .bind(conversation)
                .fetch_one(&mut **tx)
                .await?;
        let kind = match event.action {
            EventAction::Recall => "recall",
            EventAction::Edit { .. } => "edit",
            EventAction::React { .. } => "reaction",
        };
        let message: MessageRecord = sqlx::query_as(concat!(
            "INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id,
                                   client_msg_id, created_at, target_id, meta)
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10, $11)
             RETURNING ",
            message_columns!()
        ))
        .bind(conversation)
        .bind(seq)
        .bind(event.actor)
        .bind(to_user_id)
        .bind(target.group_id)
        .bind(kind)
        .bind(body)
        .bind(event.client_msg_id.as_deref())
        .bind(now)
        .bind(target.id)
        .bind(event.meta.as_deref())
        .fetch_one(&mut **tx)
        .await
        .map_err(StoreError::classify)?;
        if matches!(event.action, EventAction::Recall) {
            // A recall replaces what a device's notification shows.
            crate::store::push::note_in(tx, &message).await?;
        }
        let hid: Vec<(i64,)> = sqlx::query_as("SELECT user_id FROM hidden_messages WHERE message_id = $1")
            .bind(target.id)
            .fetch_all(&mut **tx)
            .await?;
        unseen.extend(hid.into_iter().map(|h| h.0));
        unseen.sort_unstable();
        unseen.dedup();
        Ok(EventOutcome::Done { appended: Appended { message, created: true, recipients }, unseen })
    }

    /// Appends a batch in one transaction (group commit: one durable commit for many sends). Messages are
    /// taken in conversation-id order, so concurrent batches lock conversation rows in the same order and
    /// cannot deadlock; within a conversation the arrival order is kept. A message that can fail after its
    /// seq is allocated runs under a savepoint, whose rollback returns the seq, so every conversation stays
    /// gapless whatever fails.
    pub(crate) async fn insert_batch(&self, batch: &[NewMessage]) -> Vec<StoreResult<(MessageRecord, Vec<i64>)>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let now = now();
        if batch.iter().any(|m| m.is_plain_direct()) {
            // Optimistic: direct messages without savepoints, their repeats found before writing (exact with
            // one writer, as on SQLite; elsewhere a rare race of two sends with one client_msg_id in different
            // batches makes the unique index refuse one). On any failure nothing is committed and the batch
            // runs again carefully.
            if let Some(results) = self.run_batch(batch, now, true).await {
                return results;
            }
        }
        self.run_batch(batch, now, false).await.unwrap_or_else(|| {
            batch.iter().map(|_| Err(StoreError::BatchFailed("the batch could not run".into()))).collect()
        })
    }

    /// Appends a batch in one transaction (group commit: one durable commit for many sends). Messages are
    /// taken in conversation-id order, so concurrent batches lock conversation rows in the same order and
    /// cannot deadlock; within a conversation the arrival order is kept. In careful mode, a message that
    /// can fail after its seq is allocated runs under a savepoint, whose rollback returns the seq, so every
    /// conversation stays gapless whatever fails. In optimistic mode, plain direct messages run without a
    /// savepoint (with repeats checked first) and any failure of
    /// theirs other than a refusal abandons the whole transaction (`None`) for the caller to run it again
    /// carefully.
    async fn run_batch(
        &self,
        batch: &[NewMessage],
        now: chrono::DateTime<chrono::Utc>,
        optimistic: bool,
    ) -> Option<Vec<StoreResult<(MessageRecord, Vec<i64>)>>> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_cached_key(|&i| batch[i].conversation_id.to_string());
        let mut results: Vec<Option<StoreResult<_>>> = (0..batch.len()).map(|_| None).collect();
        let mut tx = match self.writer().begin().await {
            Ok(tx) => tx,
            Err(e) => {
                let failed = StoreError::batch_failure(&e, "");
                return Some(batch.iter().map(|_| Err(failed())).collect());
            }
        };
        for i in order {
            let new = &batch[i];
            if optimistic && new.is_plain_direct() {
                let r = Self::insert_one(&mut tx, new, now, true).await;
                match r {
                    // (A refusal wrote nothing and leaves the transaction usable.)
                    r @ (Ok(_) | Err(StoreError::NotFriends) | Err(StoreError::Repeated)) => results[i] = Some(r),
                    Err(_) => {
                        let _ = tx.rollback().await;
                        return None;
                    }
                }
                continue;
            }
            // In a batch every message runs under a savepoint: a statement the database refuses aborts
            // the whole transaction otherwise, and the commit would quietly roll back the others too.
            let guarded = batch.len() > 1
                || new.client_msg_id.is_some()
                || new.file_id.is_some()
                || !new.item_files.is_empty()
                || new.group_id.is_some();
            if guarded {
                if let Err(e) = sqlx::query("SAVEPOINT one").execute(&mut *tx).await {
                    results[i] = Some(Err(e.into()));
                    continue;
                }
            }
            let r = Self::insert_one(&mut tx, new, now, false).await;
            if guarded {
                let end = if r.is_ok() { "RELEASE SAVEPOINT one" } else { "ROLLBACK TO SAVEPOINT one" };
                let _ = sqlx::query(end).execute(&mut *tx).await;
                if r.is_err() {
                    let _ = sqlx::query("RELEASE SAVEPOINT one").execute(&mut *tx).await;
                }
            }
            results[i] = Some(r);
        }
        if let Err(e) = tx.commit().await {
            let failed = StoreError::batch_failure(&e, "commit failed: ");
            return Some(
                results
                    .into_iter()
                    .map(|r| match r {
                        Some(Err(e)) => Err(e),
                        _ => Err(failed()),
                    })
                    .collect(),
            );
        }
        Some(
            results
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| Err(StoreError::Inconsistent("a message of the batch was not run".into())))
                })
                .collect(),
        )
    }

    /// Moves delivered cursors forward (never back), in one statement per
    /// [`ACK_ROWS_PER_STATEMENT`] rows: the generic [`super::batch::AckWriter`].
    pub(crate) async fn write_acks(&self, acks: &[(AckKey, i64)]) -> StoreResult<()> {
        let mut sorted: Vec<&(AckKey, i64)> = acks.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        // One multi-row upsert per chunk instead of a round trip per cursor: a busy group produces a
        // cursor move per member per message. Keys are unique within a batch (the batcher keeps the
        // highest seq per cursor), as one statement may not update a row twice.
        // One statement (the usual case) commits by itself; more need a transaction around them.
        let single = sorted.len() <= ACK_ROWS_PER_STATEMENT;
        let mut tx = if single { None } else { Some(self.writer().begin().await?) };
        for chunk in sorted.chunks(ACK_ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4))
                .collect();
            let sql = format!(
                "INSERT INTO delivery_cursors (user_id, device_id, conversation_id, delivered_seq) VALUES {}
                 ON CONFLICT (user_id, device_id, conversation_id)
                 DO UPDATE SET delivered_seq = excluded.delivered_seq
                 WHERE delivery_cursors.delivered_seq < excluded.delivered_seq",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for (k, seq) in chunk {
                q = q.bind(k.user).bind(k.device.as_str()).bind(k.conversation.as_str()).bind(*seq);
            }
            match tx.as_mut() {
                Some(tx) => q.execute(&mut **tx).await?,
                None => q.execute(self.writer()).await?,
            };
        }
        if let Some(tx) = tx {
            tx.commit().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<DB> MessageStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    Option<i64>: for<'q> Param<'q, DB>,
    String: for<'q> Param<'q, DB>,
    DateTime<Utc>: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    for<'q> Option<&'q str>: Param<'q, DB>,
    MessageRecord: for<'r> FromRow<'r, DB::Row>,
    UserConversationRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (i64, i64): for<'r> FromRow<'r, DB::Row>,
    (String, i64): for<'r> FromRow<'r, DB::Row>,
    (String, i64, i64): for<'r> FromRow<'r, DB::Row>,
    (i64, String, i64): for<'r> FromRow<'r, DB::Row>,
    (i64, i64, i64): for<'r> FromRow<'r, DB::Row>,
{
    /// Appends one message on its own (no batching: see `batch::Batched` for the writer the node uses).
    async fn append(&self, new: NewMessage) -> StoreResult<Appended> {
        let inserted = self
            .insert_batch(std::slice::from_ref(&new))
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::Inconsistent("a batch of one had no result".into())));
        settle_append(self, &new, inserted).await
    }

    async fn message_by_client_id(&self, from: i64, client_msg_id: &str) -> StoreResult<Option<MessageRecord>> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            message_columns!(),
            "
             FROM messages WHERE from_user_id = $1 AND client_msg_id = $2"
        ))
        .bind(from)
        .bind(client_msg_id)
        .fetch_optional(self.writer())
        .await?)
    }

    async fn messages_between(
        &self,
        conversation_id: &str,
        after: i64,
        before: i64,
        limit: i64,
        newest: bool,
    ) -> StoreResult<Vec<MessageRecord>> {
        let sql = if newest {
            concat!(
                "SELECT ",
                message_columns!(),
                "
             FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq DESC LIMIT $4"
            )
        } else {
            concat!(
                "SELECT ",
                message_columns!(),
                "
             FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq < $3 ORDER BY seq ASC LIMIT $4"
            )
        };
        let mut rows: Vec<MessageRecord> = sqlx::query_as(sql)
            .bind(conversation_id)
            .bind(after)
            .bind(before)
            .bind(limit)
            .fetch_all(self.reader())
            .await?;
        if newest {
            rows.reverse();
        }
        Ok(rows)
    }

    async fn history(
        &self,
        viewer: i64,
        conversation_id: &str,
        after: i64,
        before: i64,
        limit: i64,
        newest: bool,
    ) -> StoreResult<Vec<MessageRecord>> {
        let sql = format!(
            "SELECT {} FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq < $3
               AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $5 AND h.message_id = messages.id)
             ORDER BY seq {} LIMIT $4",
            message_columns!(),
            if newest { "DESC" } else { "ASC" }
        );
        let mut rows: Vec<MessageRecord> = sqlx::query_as(&sql)
            .bind(conversation_id)
            .bind(after)
            .bind(before)
            .bind(limit)
            .bind(viewer)
            .fetch_all(self.reader())
            .await?;
        if newest {
            rows.reverse();
        }
        Ok(rows)
    }

    async fn user_conversations(&self, user: i64) -> StoreResult<Vec<UserConversationRecord>> {
        Ok(sqlx::query_as(
            "SELECT uc.conversation_id, c.kind, c.group_id, c.user_low, c.user_high, c.last_seq, uc.read_seq,
                    uc.visible_from_seq, c.updated_at, uc.muted, uc.pinned, uc.draft, uc.cleared_seq
             FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id
             WHERE uc.user_id = $1
               AND (uc.cleared_seq = 0 OR c.last_seq > uc.cleared_seq OR uc.draft IS NOT NULL OR uc.pinned)
             ORDER BY uc.pinned DESC, c.updated_at DESC, c.id",
        )
        .bind(user)
        .fetch_all(self.reader())
        .await?)
    }

    async fn user_conversation(&self, user: i64, conversation_id: &str) -> StoreResult<Option<UserConversationRecord>> {
        Ok(sqlx::query_as(
            "SELECT uc.conversation_id, c.kind, c.group_id, c.user_low, c.user_high, c.last_seq, uc.read_seq,
                    uc.visible_from_seq, c.updated_at, uc.muted, uc.pinned, uc.draft, uc.cleared_seq
             FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id
             WHERE uc.user_id = $1 AND uc.conversation_id = $2",
        )
        .bind(user)
        .bind(conversation_id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn last_messages(&self, user: i64, conversation_ids: &[String]) -> StoreResult<Vec<MessageRecord>> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Walks each conversation back from its end on the (conversation_id, seq) index, past edits, reactions
        // and what the user hid, to the first message a preview shows.
        // One backward index walk per listed conversation, stopping at the first that qualifies (a correlated
        // MAX over `conversation_id IN (…)` was planned as a scan of every listed conversation's messages: 0.5 s
        // for 200 conversations holding 10,000 messages).
        let sql = format!(
            "SELECT {} FROM messages m
             WHERE m.id IN (
                 SELECT (SELECT p.id FROM messages p
                         WHERE p.conversation_id = c.value AND p.kind NOT IN ('edit', 'reaction')
                           AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $2 AND h.message_id = p.id)
                         ORDER BY p.seq DESC LIMIT 1)
                 FROM ({}) c)",
            message_columns!(),
            DB::TEXT_SET
        );
        Ok(sqlx::query_as(&sql).bind(json_strings(conversation_ids)).bind(user).fetch_all(self.reader()).await?)
    }

    async fn mark_read(&self, user: i64, conversation_id: &str, seq: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE user_conversations SET read_seq = $3 WHERE user_id = $1 AND conversation_id = $2 AND read_seq < $3",
        )
        .bind(user)
        .bind(conversation_id)
        .bind(seq)
        .execute(self.writer())
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn ack(&self, user: i64, device: &str, conversation_id: &str, seq: i64) -> StoreResult<()> {
        let key = AckKey { user, device: device.to_string(), conversation: conversation_id.to_string() };
        self.write_acks(&[(key, seq)]).await
    }

    async fn device_cursors(&self, user: i64, device: &str) -> StoreResult<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT conversation_id, delivered_seq FROM delivery_cursors WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user)
        .bind(device)
        .fetch_all(self.reader())
        .await?)
    }

    async fn append_event(&self, event: NewEvent) -> StoreResult<EventOutcome> {
        if let Some(cmid) = event.client_msg_id.as_deref() {
            if let Some(first) = self.message_by_client_id(event.actor, cmid).await? {
                let appended = Appended { message: first, created: false, recipients: Vec::new() };
                return Ok(EventOutcome::Done { appended, unseen: Vec::new() });
            }
        }
        let mut tx = self.writer().begin().await?;
        let outcome = Self::event_in(&mut tx, &event, now()).await;
        match outcome {
            Ok(done @ EventOutcome::Done { .. }) => match tx.commit().await {
                Ok(()) => Ok(done),
                Err(e) => Err(StoreError::classify(e)),
            },
            Ok(other) => {
                let _ = tx.rollback().await;
                Ok(other)
            }
            Err(StoreError::Conflict(_)) if event.client_msg_id.is_some() => {
                // The same client_msg_id won a race on another node: return what it appended.
                let _ = tx.rollback().await;
                let cmid = event.client_msg_id.as_deref().unwrap_or_default();
                match self.message_by_client_id(event.actor, cmid).await? {
                    Some(first) => {
                        let appended = Appended { message: first, created: false, recipients: vec![] };
                        Ok(EventOutcome::Done { appended, unseen: Vec::new() })
                    }
                    None => Err(StoreError::Inconsistent("a conflicting client_msg_id vanished".into())),
                }
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    async fn messages_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<MessageRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT {} FROM messages WHERE id IN ({})", message_columns!(), DB::ID_SET);
        Ok(sqlx::query_as(&sql).bind(json_ids(ids)).fetch_all(self.reader()).await?)
    }

    async fn events_of(&self, target: i64) -> StoreResult<Vec<MessageRecord>> {
        Ok(sqlx::query_as(concat!("SELECT ", message_columns!(), " FROM messages WHERE target_id = $1 ORDER BY seq"))
            .bind(target)
            .fetch_all(self.reader())
            .await?)
    }

    async fn reactions_of(&self, ids: &[i64]) -> StoreResult<Vec<(i64, String, i64)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT message_id, emoji, user_id FROM message_reactions WHERE message_id IN ({})
             ORDER BY created_at, emoji, user_id",
            DB::ID_SET
        );
        Ok(sqlx::query_as(&sql).bind(json_ids(ids)).fetch_all(self.reader()).await?)
    }

    async fn hide(&self, user: i64, conversation_id: &str, messages: &[(i64, i64)]) -> StoreResult<Vec<i64>> {
        let mut tx = self.writer().begin().await?;
        let mut hidden = Vec::new();
        let at = now();
        for &(id, seq) in messages {
            let done = sqlx::query(
                "INSERT INTO hidden_messages (user_id, message_id, conversation_id, seq, hidden_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (user_id, message_id) DO NOTHING",
            )
            .bind(user)
            .bind(id)
            .bind(conversation_id)
            .bind(seq)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if DB::rows_affected(&done) > 0 {
                hidden.push(id);
            }
        }
        tx.commit().await?;
        Ok(hidden)
    }

    async fn hides_for_device(&self, user: i64, device: &str) -> StoreResult<Vec<(String, i64)>> {
        // Reads only, in the usual case (a reconnect with nothing new): a reconnect storm writes nothing.
        // A device new here has no cursor, so nothing compares greater: its catch-up leaves out what the user hid.
        let hides: Vec<(String, i64)> = sqlx::query_as(
            "SELECT conversation_id, message_id FROM hidden_messages
             WHERE user_id = $1
               AND hidden_at > (SELECT hidden_at FROM device_hide_cursors WHERE user_id = $1 AND device_id = $2)
             ORDER BY hidden_at, message_id",
        )
        .bind(user)
        .bind(device)
        .fetch_all(self.reader())
        .await?;
        let (known,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM device_hide_cursors WHERE user_id = $1 AND device_id = $2")
                .bind(user)
                .bind(device)
                .fetch_one(self.reader())
                .await?;
        if known == 0 || !hides.is_empty() {
            // Up to the newest hide there is (a hide committed meanwhile with an older time would be missed: the
            // times come from one clock per node, and a hide takes one statement).
            sqlx::query(
                "INSERT INTO device_hide_cursors (user_id, device_id, hidden_at)
                 VALUES ($1, $2, COALESCE((SELECT MAX(hidden_at) FROM hidden_messages WHERE user_id = $1), $3))
                 ON CONFLICT (user_id, device_id) DO UPDATE SET hidden_at = excluded.hidden_at",
            )
            .bind(user)
            .bind(device)
            .bind(now())
            .execute(self.writer())
            .await?;
        }
        Ok(hides)
    }

    async fn hidden_among(&self, user: i64, ids: &[i64]) -> StoreResult<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT message_id FROM hidden_messages WHERE user_id = $2 AND message_id IN ({})", DB::ID_SET);
        let rows: Vec<(i64,)> = sqlx::query_as(&sql).bind(json_ids(ids)).bind(user).fetch_all(self.reader()).await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn unread(&self, user: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT uc.conversation_id, COUNT(*),
                    CAST(MAX(CASE WHEN EXISTS (SELECT 1 FROM message_mentions mm
                                               WHERE mm.conversation_id = m.conversation_id AND mm.seq = m.seq
                                                 AND mm.user_id IN (0, $1)) THEN 1 ELSE 0 END) AS BIGINT)
             FROM user_conversations uc
             JOIN messages m ON m.conversation_id = uc.conversation_id
                            AND m.seq > CASE WHEN uc.read_seq > uc.visible_from_seq
                                             THEN uc.read_seq ELSE uc.visible_from_seq END
             WHERE uc.user_id = $1 AND m.from_user_id <> $1
               AND m.kind NOT IN ('recall', 'edit', 'reaction', 'system')
               AND m.recalled_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.user_id = $1 AND h.message_id = m.id)
             GROUP BY uc.conversation_id",
        )
        .bind(user)
        .fetch_all(self.reader())
        .await?)
    }
}
