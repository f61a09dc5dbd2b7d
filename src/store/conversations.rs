//! A user's own side of their conversations (DESIGN.md §8) — muted, pinned, draft, cleared — on any SQL backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::{ConversationStore, SettingsChange, SqlStore, StoreResult, UserConversationRecord};

const SIDE: &str = "SELECT uc.conversation_id, c.kind, c.group_id, c.user_low, c.user_high, c.last_seq, uc.read_seq,
                           uc.visible_from_seq, c.updated_at, uc.muted, uc.pinned, uc.draft, uc.cleared_seq
                    FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id
                    WHERE uc.user_id = $1 AND uc.conversation_id = $2";

#[async_trait]
impl<DB> ConversationStore for SqlStore<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Param<'q, DB>,
    Option<i64>: for<'q> Param<'q, DB>,
    Option<bool>: for<'q> Param<'q, DB>,
    DateTime<Utc>: for<'q> Param<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    for<'q> Option<&'q str>: Param<'q, DB>,
    UserConversationRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (i64, i64, i64): for<'r> FromRow<'r, DB::Row>,
{
    async fn update_settings(
        &self,
        user: i64,
        conversation_id: &str,
        change: &SettingsChange,
        create_direct: Option<(i64, i64)>,
    ) -> StoreResult<Option<UserConversationRecord>> {
        let mut tx = self.writer().begin().await?;
        if let Some((low, high)) = create_direct {
            let now = super::now();
            sqlx::query(
                "INSERT INTO conversations (id, kind, group_id, user_low, user_high, last_seq, created_at, updated_at)
                 VALUES ($1, 'direct', NULL, $2, $3, 0, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(conversation_id)
            .bind(low)
            .bind(high)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
                 VALUES ($1, $2, 0, 0) ON CONFLICT (user_id, conversation_id) DO NOTHING",
            )
            .bind(user)
            .bind(conversation_id)
            .execute(&mut *tx)
            .await?;
        }
        let (set_draft, draft) = match &change.draft {
            Some(d) => (1_i64, d.as_deref()),
            None => (0, None),
        };
        sqlx::query(
            "UPDATE user_conversations SET muted = COALESCE($3, muted), pinned = COALESCE($4, pinned),
                    draft = CASE WHEN $5 = 1 THEN $6 ELSE draft END
             WHERE user_id = $1 AND conversation_id = $2",
        )
        .bind(user)
        .bind(conversation_id)
        .bind(change.muted)
        .bind(change.pinned)
        .bind(set_draft)
        .bind(draft)
        .execute(&mut *tx)
        .await?;
        let side: Option<UserConversationRecord> =
            sqlx::query_as(SIDE).bind(user).bind(conversation_id).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(side)
    }

    async fn clear(&self, user: i64, conversation_id: &str) -> StoreResult<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE user_conversations SET
                    visible_from_seq = (SELECT last_seq FROM conversations WHERE id = $2),
                    read_seq = (SELECT last_seq FROM conversations WHERE id = $2),
                    cleared_seq = (SELECT last_seq FROM conversations WHERE id = $2),
                    draft = NULL
             WHERE user_id = $1 AND conversation_id = $2
             RETURNING cleared_seq",
        )
        .bind(user)
        .bind(conversation_id)
        .fetch_optional(self.writer())
        .await?;
        Ok(row.map(|r| r.0))
    }

    async fn read_cursors(&self, conversation_id: &str) -> StoreResult<Vec<(i64, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT uc.user_id, uc.read_seq, COALESCE(gm.joined_seq, 0)
             FROM user_conversations uc JOIN conversations c ON c.id = uc.conversation_id
             LEFT JOIN group_members gm ON gm.group_id = c.group_id AND gm.user_id = uc.user_id
             WHERE uc.conversation_id = $1 ORDER BY uc.user_id",
        )
        .bind(conversation_id)
        .fetch_all(self.reader())
        .await?)
    }

    async fn senders_between(
        &self,
        conversation_id: &str,
        reader: i64,
        after: i64,
        until: i64,
    ) -> StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as(
            "SELECT DISTINCT from_user_id FROM messages
             WHERE conversation_id = $1 AND seq > $2 AND seq <= $3 AND from_user_id <> $4
               AND kind IN ('text', 'image', 'video', 'voice', 'file', 'merged')
               AND from_user_id IN (SELECT user_id FROM user_conversations WHERE conversation_id = $1)",
        )
        .bind(conversation_id)
        .bind(after)
        .bind(until)
        .bind(reader)
        .fetch_all(self.reader())
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}
