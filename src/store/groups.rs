//! Groups and their membership, on any SQL backend. Every membership change locks the group's conversation row (see
//! [`SqlStore::lock_for_membership_change`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::{json_ids, now, GroupRecord, GroupStore, MemberRecord, SqlStore, StoreError, StoreResult};

#[async_trait]
impl<DB> GroupStore for SqlStore<DB>
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
    GroupRecord: for<'r> FromRow<'r, DB::Row>,
    MemberRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    async fn create_group(&self, name: &str, owner: i64, members: &[i64]) -> StoreResult<GroupRecord> {
        let now = now();
        let mut tx = self.writer().begin().await?;
        let group: GroupRecord = sqlx::query_as(
            "INSERT INTO chat_groups (name, owner_id, create_user_id, created_at) VALUES ($1, $2, $2, $3)
             RETURNING id, name, owner_id, create_user_id, created_at, dissolved_at",
        )
        .bind(name)
        .bind(owner)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let conversation = format!("g:{}", group.id);
        sqlx::query(
            "INSERT INTO conversations (id, kind, group_id, last_seq, created_at, updated_at)
             VALUES ($1, 'group', $2, 0, $3, $3)",
        )
        .bind(conversation.as_str())
        .bind(group.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let mut all = vec![owner];
        all.extend(members.iter().copied().filter(|m| *m != owner));
        sqlx::query(&format!(
            "INSERT INTO group_members (group_id, user_id, role, joined_seq, joined_at)
             SELECT $2, ids.value, CASE WHEN ids.value = $3 THEN 'owner' ELSE 'member' END, 0, $4 FROM ({ids}) AS ids WHERE true ON CONFLICT DO NOTHING",
            ids = DB::ID_SET
        ))
        .bind(json_ids(&all))
        .bind(group.id)
        .bind(owner)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
             SELECT ids.value, $2, 0, 0 FROM ({ids}) AS ids WHERE true ON CONFLICT DO NOTHING",
            ids = DB::ID_SET
        ))
        .bind(json_ids(&all))
        .bind(conversation.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(group)
    }

    async fn group(&self, id: i64) -> StoreResult<Option<GroupRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, name, owner_id, create_user_id, created_at, dissolved_at FROM chat_groups WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn groups_of(&self, user: i64) -> StoreResult<Vec<GroupRecord>> {
        Ok(sqlx::query_as(
            "SELECT g.id, g.name, g.owner_id, g.create_user_id, g.created_at, g.dissolved_at
             FROM group_members m JOIN chat_groups g ON g.id = m.group_id
             WHERE m.user_id = $1 AND g.dissolved_at IS NULL ORDER BY g.id DESC",
        )
        .bind(user)
        .fetch_all(self.reader())
        .await?)
    }

    async fn members(&self, group: i64) -> StoreResult<Vec<MemberRecord>> {
        Ok(sqlx::query_as(
            "SELECT m.user_id, u.username, u.nickname, m.role, m.joined_seq
             FROM group_members m JOIN users u ON u.id = m.user_id
             WHERE m.group_id = $1
             ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.joined_at, m.user_id",
        )
        .bind(group)
        .fetch_all(self.reader())
        .await?)
    }

    async fn member(&self, group: i64, user: i64) -> StoreResult<Option<MemberRecord>> {
        Ok(sqlx::query_as(
            "SELECT m.user_id, u.username, u.nickname, m.role, m.joined_seq
             FROM group_members m JOIN users u ON u.id = m.user_id
             WHERE m.group_id = $1 AND m.user_id = $2",
        )
        .bind(group)
        .bind(user)
        .fetch_optional(self.reader())
        .await?)
    }

    async fn was_member(&self, group: i64, user: i64) -> StoreResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT user_id FROM group_member_periods WHERE group_id = $1 AND user_id = $2 LIMIT 1")
                .bind(group)
                .bind(user)
                .fetch_optional(self.reader())
                .await?;
        Ok(row.is_some())
    }

    async fn rename(&self, group: i64, name: &str) -> StoreResult<()> {
        sqlx::query("UPDATE chat_groups SET name = $2 WHERE id = $1")
            .bind(group)
            .bind(name)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    async fn add_members(&self, group: i64, users: &[i64], max_members: i64) -> StoreResult<Vec<i64>> {
        let now = now();
        let conversation = format!("g:{group}");
        let mut tx = self.writer().begin().await?;
        let last_seq = lock_for_membership_change(&mut tx, &conversation).await?;
        let added: Vec<(i64,)> = sqlx::query_as(&format!(
            "INSERT INTO group_members (group_id, user_id, role, joined_seq, joined_at)
             SELECT $2, ids.value, 'member', $3, $4 FROM ({ids}) AS ids WHERE true ON CONFLICT DO NOTHING RETURNING user_id",
            ids = DB::ID_SET
        ))
        .bind(json_ids(users))
        .bind(group)
        .bind(last_seq)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let added: Vec<i64> = added.into_iter().map(|a| a.0).collect();
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
            .bind(group)
            .fetch_one(&mut *tx)
            .await?;
        if count > max_members {
            return Err(StoreError::GroupFull);
        }
        // A returning member sees messages from its re-join on.
        sqlx::query(&format!(
            "INSERT INTO user_conversations (user_id, conversation_id, read_seq, visible_from_seq)
             SELECT ids.value, $2, $3, $3 FROM ({ids}) AS ids WHERE true ON CONFLICT (user_id, conversation_id)
             DO UPDATE SET read_seq = excluded.read_seq, visible_from_seq = excluded.visible_from_seq",
            ids = DB::ID_SET
        ))
        .bind(json_ids(&added))
        .bind(conversation.as_str())
        .bind(last_seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(added)
    }

    async fn remove_member(&self, group: i64, user: i64) -> StoreResult<bool> {
        let conversation = format!("g:{group}");
        let mut tx = self.writer().begin().await?;
        let last_seq = lock_for_membership_change(&mut tx, &conversation).await?;
        let gone: Option<(i64,)> =
            sqlx::query_as("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 RETURNING joined_seq")
                .bind(group)
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((joined_seq,)) = gone else { return Ok(false) };
        sqlx::query(
            "INSERT INTO group_member_periods (group_id, user_id, from_seq, to_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(user)
        .bind(joined_seq)
        .bind(last_seq)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM user_conversations WHERE user_id = $1 AND conversation_id = $2")
            .bind(user)
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_role(&self, group: i64, user: i64, role: &str) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2 AND role <> 'owner'")
                .bind(group)
                .bind(user)
                .bind(role)
                .execute(self.writer())
                .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn transfer(&self, group: i64, from: i64, to: i64) -> StoreResult<()> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("UPDATE group_members SET role = 'admin' WHERE group_id = $1 AND user_id = $2")
            .bind(group)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE group_members SET role = 'owner' WHERE group_id = $1 AND user_id = $2")
            .bind(group)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE chat_groups SET owner_id = $2 WHERE id = $1")
            .bind(group)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dissolve(&self, group: i64) -> StoreResult<Vec<i64>> {
        let conversation = format!("g:{group}");
        let mut tx = self.writer().begin().await?;
        lock_for_membership_change(&mut tx, &conversation).await?;
        sqlx::query("UPDATE chat_groups SET dissolved_at = $2 WHERE id = $1 AND dissolved_at IS NULL")
            .bind(group)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        let members: Vec<(i64,)> = sqlx::query_as("DELETE FROM group_members WHERE group_id = $1 RETURNING user_id")
            .bind(group)
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM user_conversations WHERE conversation_id = $1")
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(members.into_iter().map(|m| m.0).collect())
    }
}

/// For a membership change: locks a group conversation's row until the transaction ends, bumps its
/// `members_version`, and returns its last seq. Every group send locks the same row when it allocates
/// a seq, so membership changes made under this lock are ordered against sends: a message goes exactly
/// to the members at its seq. (A node that caches a group's members by version sees the bump.)
async fn lock_for_membership_change<DB>(tx: &mut sqlx::Transaction<'_, DB>, conversation_id: &str) -> StoreResult<i64>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Param<'q, DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let (last_seq,): (i64,) = sqlx::query_as(
        "UPDATE conversations SET members_version = members_version + 1 WHERE id = $1 RETURNING last_seq",
    )
    .bind(conversation_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(last_seq)
}
