//! Groups and their membership, on any SQL backend. Every membership or role change locks the group's
//! conversation row (see [`lock_for_membership_change`]) and checks its preconditions under that lock, so the
//! group invariant (exactly one owner, who is a member, named by `owner_id`) holds however changes race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, FromRow, IntoArguments};

use super::dialect::{Dialect, Param};
use super::sql::message_columns;
use super::{
    json_ids, now, GroupChanged, GroupRecord, GroupStore, InviteRecord, MemberRecord, MessageRecord, SqlStore,
    StoreError, StoreResult,
};
use crate::domain::group::{self, GroupChange};
use crate::domain::model::{GroupRole, MessageExtras};

const GROUP_COLUMNS: &str =
    "id, name, owner_id, create_user_id, created_at, dissolved_at, announcement, avatar_key, muted_all";
const INVITE_COLUMNS: &str = "code, group_id, created_by, created_at, expires_at, max_uses, uses, revoked_at";

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
    bool: for<'q> Param<'q, DB>,
    Option<DateTime<Utc>>: for<'q> Param<'q, DB>,
    GroupRecord: for<'r> FromRow<'r, DB::Row>,
    MemberRecord: for<'r> FromRow<'r, DB::Row>,
    InviteRecord: for<'r> FromRow<'r, DB::Row>,
    MessageRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    async fn create_group(&self, name: &str, owner: i64, members: &[i64]) -> StoreResult<GroupRecord> {
        let now = now();
        let mut tx = self.writer().begin().await?;
        let group: GroupRecord = sqlx::query_as(&format!(
            "INSERT INTO chat_groups (name, owner_id, create_user_id, created_at) VALUES ($1, $2, $2, $3)
                 RETURNING {GROUP_COLUMNS}"
        ))
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
        Ok(sqlx::query_as(&format!("SELECT {GROUP_COLUMNS} FROM chat_groups WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn groups_of(&self, user: i64) -> StoreResult<Vec<GroupRecord>> {
        Ok(sqlx::query_as(
            "SELECT g.id, g.name, g.owner_id, g.create_user_id, g.created_at, g.dissolved_at, g.announcement,
                    g.avatar_key, g.muted_all
             FROM group_members m JOIN chat_groups g ON g.id = m.group_id
             WHERE m.user_id = $1 AND g.dissolved_at IS NULL ORDER BY g.id DESC",
        )
        .bind(user)
        .fetch_all(self.reader())
        .await?)
    }

    async fn members(&self, group: i64) -> StoreResult<Vec<MemberRecord>> {
        Ok(sqlx::query_as(
            "SELECT m.user_id, u.username, u.nickname, m.role, m.joined_seq, u.avatar_key, m.muted_until
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
            "SELECT m.user_id, u.username, u.nickname, m.role, m.joined_seq, u.avatar_key, m.muted_until
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

    async fn change(
        &self,
        group: i64,
        actor: i64,
        change: &GroupChange,
        max_members: i64,
    ) -> StoreResult<GroupChanged> {
        let now = now();
        let conversation = format!("g:{group}");
        let mut tx = self.writer().begin().await?;
        // Only a change of who is in moves `members_version` (and so makes nodes re-read the member list).
        let membership = matches!(change, GroupChange::Add { .. } | GroupChange::Remove { .. } | GroupChange::Dissolve);
        let Some(last_seq) = Self::lock_for_membership_change(&mut tx, &conversation, membership).await? else {
            return Ok(GroupChanged::Gone);
        };
        let record: Option<GroupRecord> =
            sqlx::query_as(&format!("SELECT {GROUP_COLUMNS} FROM chat_groups WHERE id = $1"))
                .bind(group)
                .fetch_optional(&mut *tx)
                .await?;
        if record.as_ref().is_none_or(|g| g.dissolved_at.is_some()) {
            return Ok(GroupChanged::Gone);
        }
        let Some(actor_role) = Self::role_in(&mut tx, group, actor).await? else {
            return Ok(GroupChanged::NotMember);
        };
        let target_role = match change.target() {
            Some(t) => Self::role_in(&mut tx, group, t).await?,
            None => None,
        };
        if let Err(refusal) = group::check(change, actor, actor_role, target_role) {
            return Ok(GroupChanged::Refused(refusal));
        }
        let mut affected: Vec<i64> = Vec::new();
        let mut former: Vec<i64> = Vec::new();
        match change {
            GroupChange::Edit { name, announcement } => {
                if let Some(name) = name {
                    sqlx::query("UPDATE chat_groups SET name = $2 WHERE id = $1")
                        .bind(group)
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(text) = announcement {
                    sqlx::query("UPDATE chat_groups SET announcement = $2, announcement_at = $3 WHERE id = $1")
                        .bind(group)
                        .bind(Some(text.as_str()).filter(|t| !t.is_empty()))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            GroupChange::Avatar { key } => {
                sqlx::query("UPDATE chat_groups SET avatar_key = $2 WHERE id = $1")
                    .bind(group)
                    .bind(key.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Add { users } => {
                affected = Self::add_in(&mut tx, group, users, last_seq, now).await?;
                if Self::member_count_in(&mut tx, group).await? > max_members {
                    return Ok(GroupChanged::Full);
                }
            }
            GroupChange::Join { .. } => {
                return Err(StoreError::Inconsistent("a join goes through GroupStore::join".into()));
            }
            GroupChange::Remove { user } => {
                Self::remove_in(&mut tx, group, *user, last_seq).await?;
                former.push(*user);
            }
            GroupChange::Transfer { to } => {
                Self::set_role_in(&mut tx, group, actor, GroupRole::Admin).await?;
                Self::set_role_in(&mut tx, group, *to, GroupRole::Owner).await?;
                sqlx::query("UPDATE chat_groups SET owner_id = $2 WHERE id = $1")
                    .bind(group)
                    .bind(*to)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::SetRole { user, admin } => {
                Self::set_role_in(&mut tx, group, *user, if *admin { GroupRole::Admin } else { GroupRole::Member })
                    .await?;
            }
            GroupChange::MuteAll { on } => {
                sqlx::query("UPDATE chat_groups SET muted_all = $2 WHERE id = $1")
                    .bind(group)
                    .bind(*on)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::MuteMember { user, until } => {
                sqlx::query("UPDATE group_members SET muted_until = $3 WHERE group_id = $1 AND user_id = $2")
                    .bind(group)
                    .bind(*user)
                    .bind(*until)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Dissolve => {
                sqlx::query("UPDATE chat_groups SET dissolved_at = $2 WHERE id = $1 AND dissolved_at IS NULL")
                    .bind(group)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let members: Vec<(i64,)> =
                    sqlx::query_as("DELETE FROM group_members WHERE group_id = $1 RETURNING user_id")
                        .bind(group)
                        .fetch_all(&mut *tx)
                        .await?;
                former = members.into_iter().map(|m| m.0).collect();
                sqlx::query("DELETE FROM user_conversations WHERE conversation_id = $1")
                    .bind(conversation.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE group_invites SET revoked_at = $2 WHERE group_id = $1 AND revoked_at IS NULL")
                    .bind(group)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let events = group::system_events(change, actor, &affected);
        let done = Self::finish(&mut tx, group, actor, last_seq, events, former, now).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn join(&self, code: &str, user: i64, max_members: i64) -> StoreResult<GroupChanged> {
        let now = now();
        let Some(invite) = self.invite(code).await? else { return Ok(GroupChanged::InviteInvalid) };
        let group = invite.group_id;
        let conversation = format!("g:{group}");
        let mut tx = self.writer().begin().await?;
        let Some(last_seq) = Self::lock_for_membership_change(&mut tx, &conversation, true).await? else {
            return Ok(GroupChanged::InviteInvalid);
        };
        // Read again under the lock: the invite's uses and the group's life are what they are at this seq.
        let invite: Option<InviteRecord> =
            sqlx::query_as(&format!("SELECT {INVITE_COLUMNS} FROM group_invites WHERE code = $1"))
                .bind(code)
                .fetch_optional(&mut *tx)
                .await?;
        let record: Option<GroupRecord> =
            sqlx::query_as(&format!("SELECT {GROUP_COLUMNS} FROM chat_groups WHERE id = $1"))
                .bind(group)
                .fetch_optional(&mut *tx)
                .await?;
        let (Some(invite), Some(record)) = (invite, record) else { return Ok(GroupChanged::InviteInvalid) };
        if record.dissolved_at.is_some() {
            return Ok(GroupChanged::InviteInvalid);
        }
        if Self::role_in(&mut tx, group, user).await?.is_some() {
            // Already in (the link may be used up by their own join): nothing changes, and no use is counted.
            let recipients = Self::member_ids_in(&mut tx, group).await?;
            return Ok(GroupChanged::Done { group: record, messages: Vec::new(), recipients, former: Vec::new() });
        }
        if !invite.usable(now) {
            return Ok(GroupChanged::InviteInvalid);
        }
        Self::add_in(&mut tx, group, &[user], last_seq, now).await?;
        if Self::member_count_in(&mut tx, group).await? > max_members {
            return Ok(GroupChanged::Full);
        }
        sqlx::query("UPDATE group_invites SET uses = uses + 1 WHERE code = $1").bind(code).execute(&mut *tx).await?;
        let change = GroupChange::Join { code: code.to_string() };
        let events = group::system_events(&change, user, &[user]);
        let done = Self::finish(&mut tx, group, user, last_seq, events, Vec::new(), now).await?;
        tx.commit().await?;
        Ok(done)
    }

    async fn create_invite(
        &self,
        group: i64,
        by: i64,
        code: &str,
        expires_at: Option<DateTime<Utc>>,
        max_uses: Option<i64>,
    ) -> StoreResult<InviteRecord> {
        Ok(sqlx::query_as(&format!(
            "INSERT INTO group_invites (code, group_id, created_by, created_at, expires_at, max_uses, uses)
             VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING {INVITE_COLUMNS}"
        ))
        .bind(code)
        .bind(group)
        .bind(by)
        .bind(now())
        .bind(expires_at)
        .bind(max_uses)
        .fetch_one(self.writer())
        .await
        .map_err(StoreError::classify)?)
    }

    async fn invites(&self, group: i64) -> StoreResult<Vec<InviteRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {INVITE_COLUMNS} FROM group_invites WHERE group_id = $1 ORDER BY created_at DESC, code"
        ))
        .bind(group)
        .fetch_all(self.reader())
        .await?)
    }

    async fn invite(&self, code: &str) -> StoreResult<Option<InviteRecord>> {
        Ok(sqlx::query_as(&format!("SELECT {INVITE_COLUMNS} FROM group_invites WHERE code = $1"))
            .bind(code)
            .fetch_optional(self.reader())
            .await?)
    }

    async fn revoke_invite(&self, group: i64, code: &str) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE group_invites SET revoked_at = $3 WHERE group_id = $1 AND code = $2 AND revoked_at IS NULL",
        )
        .bind(group)
        .bind(code)
        .bind(now())
        .execute(self.writer())
        .await?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn member_count(&self, group: i64) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
            .bind(group)
            .fetch_one(self.reader())
            .await?;
        Ok(n)
    }
}

/// The steps of a group change, each inside the caller's transaction.
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
    bool: for<'q> Param<'q, DB>,
    Option<DateTime<Utc>>: for<'q> Param<'q, DB>,
    GroupRecord: for<'r> FromRow<'r, DB::Row>,
    MemberRecord: for<'r> FromRow<'r, DB::Row>,
    InviteRecord: for<'r> FromRow<'r, DB::Row>,
    MessageRecord: for<'r> FromRow<'r, DB::Row>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    /// For a group change: locks a group conversation's row until the transaction ends, bumps its
    /// `members_version` when `membership` changes (who is in), and returns its last seq (none: no such
    /// conversation). Every group send locks the same row when it allocates a seq, so changes made under this lock
    /// are ordered against sends: a message goes exactly to the members at its seq. (A node that caches a group's
    /// members by version sees the bump.)
    async fn lock_for_membership_change(
        tx: &mut sqlx::Transaction<'_, DB>,
        conversation_id: &str,
        membership: bool,
    ) -> StoreResult<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "UPDATE conversations SET members_version = members_version + $2 WHERE id = $1 RETURNING last_seq",
        )
        .bind(conversation_id)
        .bind(i64::from(membership))
        .fetch_optional(&mut **tx)
        .await?;
        Ok(row.map(|r| r.0))
    }

    /// A user's role in a group, read inside the caller's transaction.
    async fn role_in(tx: &mut sqlx::Transaction<'_, DB>, group: i64, user: i64) -> StoreResult<Option<GroupRole>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2")
                .bind(group)
                .bind(user)
                .fetch_optional(&mut **tx)
                .await?;
        Ok(row.map(|r| GroupRole::parse(&r.0)))
    }

    async fn set_role_in(
        tx: &mut sqlx::Transaction<'_, DB>,
        group: i64,
        user: i64,
        role: GroupRole,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2")
            .bind(group)
            .bind(user)
            .bind(role.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    async fn member_ids_in(tx: &mut sqlx::Transaction<'_, DB>, group: i64) -> StoreResult<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT user_id FROM group_members WHERE group_id = $1")
            .bind(group)
            .fetch_all(&mut **tx)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    async fn member_count_in(tx: &mut sqlx::Transaction<'_, DB>, group: i64) -> StoreResult<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM group_members WHERE group_id = $1")
            .bind(group)
            .fetch_one(&mut **tx)
            .await?;
        Ok(n)
    }

    /// Adds members who see messages after `last_seq`; returns those newly added.
    async fn add_in(
        tx: &mut sqlx::Transaction<'_, DB>,
        group: i64,
        users: &[i64],
        last_seq: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<i64>> {
        let conversation = format!("g:{group}");
        let added: Vec<(i64,)> = sqlx::query_as(&format!(
            "INSERT INTO group_members (group_id, user_id, role, joined_seq, joined_at)
             SELECT $2, ids.value, 'member', $3, $4 FROM ({ids}) AS ids WHERE true ON CONFLICT DO NOTHING RETURNING user_id",
            ids = DB::ID_SET
        ))
        .bind(json_ids(users))
        .bind(group)
        .bind(last_seq)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        let added: Vec<i64> = added.into_iter().map(|a| a.0).collect();
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
        .execute(&mut **tx)
        .await?;
        Ok(added)
    }

    /// Ends a membership, recording the period it covered (up to `last_seq`).
    async fn remove_in(tx: &mut sqlx::Transaction<'_, DB>, group: i64, user: i64, last_seq: i64) -> StoreResult<()> {
        let conversation = format!("g:{group}");
        let gone: Option<(i64,)> =
            sqlx::query_as("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2 RETURNING joined_seq")
                .bind(group)
                .bind(user)
                .fetch_optional(&mut **tx)
                .await?;
        let Some((joined_seq,)) = gone else { return Ok(()) };
        sqlx::query(
            "INSERT INTO group_member_periods (group_id, user_id, from_seq, to_seq) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(user)
        .bind(joined_seq)
        .bind(last_seq)
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM user_conversations WHERE user_id = $1 AND conversation_id = $2")
            .bind(user)
            .bind(conversation.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Appends a change's `system` messages after `last_seq` and reads what the change left: the group and its
    /// members (the messages' recipients).
    async fn finish(
        tx: &mut sqlx::Transaction<'_, DB>,
        group: i64,
        actor: i64,
        last_seq: i64,
        events: Vec<crate::domain::model::SystemEvent>,
        former: Vec<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<GroupChanged> {
        let conversation = format!("g:{group}");
        let mut messages = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            let seq = last_seq + 1 + i as i64;
            let meta = MessageExtras { system: Some(event), ..Default::default() }.to_meta();
            sqlx::query("UPDATE conversations SET last_seq = $2, updated_at = $3 WHERE id = $1")
                .bind(conversation.as_str())
                .bind(seq)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            let message: MessageRecord = sqlx::query_as(concat!(
                "INSERT INTO messages (conversation_id, seq, from_user_id, to_user_id, group_id, kind, body, file_id,
                                       client_msg_id, created_at, meta)
                 VALUES ($1, $2, $3, NULL, $4, 'system', NULL, NULL, NULL, $5, $6)
                 RETURNING ",
                message_columns!()
            ))
            .bind(conversation.as_str())
            .bind(seq)
            .bind(actor)
            .bind(group)
            .bind(now)
            .bind(meta.as_deref())
            .fetch_one(&mut **tx)
            .await?;
            messages.push(message);
        }
        let record: GroupRecord = sqlx::query_as(&format!("SELECT {GROUP_COLUMNS} FROM chat_groups WHERE id = $1"))
            .bind(group)
            .fetch_one(&mut **tx)
            .await?;
        let recipients = Self::member_ids_in(tx, group).await?;
        Ok(GroupChanged::Done { group: record, messages, recipients, former })
    }
}
