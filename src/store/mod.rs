//! Persistence: one narrow trait per aggregate, implemented for Postgres and SQLite. The only module with SQL.

pub(crate) mod batch;
mod conversations;
mod dialect;
mod files;
mod friends;
mod groups;
mod messages;
mod postgres;
mod push;
mod search;
mod sql;
mod sqlite;
mod users;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};

pub use dialect::Dialect;
pub use push::{PushJob, PushRelease, PushStore, PushSubscriptionRecord, PushView};
pub use sql::SqlStore;

use crate::metrics::Metrics;

/// A store failure: a uniqueness conflict the caller can act on, or a database fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    /// The file a message refers to is gone (or is not the sender's).
    #[error("the file is not available")]
    FileGone,
    /// The sender already has a message with this client_msg_id (found before anything was written).
    #[error("repeated client_msg_id")]
    Repeated,
    /// The sender and recipient of a direct message are not (or no longer) friends.
    #[error("not friends")]
    NotFriends,
    /// The sender is not (or no longer) a member of the group it sends to.
    #[error("not a member of the group")]
    NotMember,
    /// The sender is muted in the group, or the group is muted for plain members (DESIGN.md §9).
    #[error("muted in the group")]
    Muted,
    /// One of the two users blocked the other.
    #[error("blocked")]
    Blocked,
    /// Adding these members would exceed the group's limit.
    #[error("the group is full")]
    GroupFull,
    /// A batch's transaction could not begin or commit; every message in it that had not failed on its own fails
    /// with this cause (the batcher then tries each of them alone).
    #[error("the batch's transaction failed: {0}")]
    BatchFailed(String),
    /// The database answered something the store cannot place (a batch row for no message of the batch).
    #[error("inconsistent answer from the database: {0}")]
    Inconsistent(String),
    /// The store is shut down: its writers have stopped.
    #[error("the store is closed")]
    Closed,
    /// The database cannot be reached (refused or lost connections, no connection free in time, the server
    /// shutting down): nothing was done, and the same request may succeed shortly.
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if unreachable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Db(e)
        }
    }
}

/// Whether a database error means the database could not be reached, as opposed to a statement it refused: I/O
/// and TLS failures, a conversation broken off mid-protocol (a proxy or balancer that accepts the connection and
/// closes it answers the opening `SSLRequest` with nothing: "unexpected response from SSLRequest"), a pool with no
/// connection to give in time (or closed), and the server's own "connection exception" (SQLSTATE class 08),
/// shutdown (57P01–57P03) and "too many connections" (53300) answers.
pub fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some(c) if c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300"))
        }
        _ => false,
    }
}

impl StoreError {
    /// A failure of the database or of a whole batch rather than a refusal of this message: worth trying once
    /// more on its own.
    pub(crate) fn is_fault(&self) -> bool {
        matches!(
            self,
            StoreError::Db(_) | StoreError::BatchFailed(_) | StoreError::Inconsistent(_) | StoreError::Unavailable(_)
        )
    }

    /// What every message of a batch fails with when the batch's transaction could not begin or commit
    /// (`context` names which): [`StoreError::Unavailable`] when the database cannot be reached, else
    /// [`StoreError::BatchFailed`]. Called once per message, as each gets an error of its own.
    pub(crate) fn batch_failure(e: &sqlx::Error, context: &str) -> impl Fn() -> StoreError {
        let unavailable = unreachable(e);
        let message = format!("{context}{e}");
        move || {
            if unavailable {
                StoreError::Unavailable(message.clone())
            } else {
                StoreError::BatchFailed(message.clone())
            }
        }
    }

    /// Turns a unique-constraint violation into [`StoreError::Conflict`]; everything else stays a fault.
    pub(crate) fn classify(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.constraint().unwrap_or("unique").to_string());
            }
        }
        StoreError::from(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The present instant at the precision both databases keep (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A user account as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    pub sex: i16,
    pub password_hash: String,
    pub token_version: i64,
    pub created_at: DateTime<Utc>,
    /// The media store's key of the avatar thumbnail.
    pub avatar_key: Option<String>,
    /// Whether the user's push notifications may show message text (DESIGN.md §11).
    pub push_previews: bool,
}

/// A friend, with the remark the user gave them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FriendRecord {
    #[sqlx(flatten)]
    pub user: UserRecord,
    pub remark: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub nickname: String,
    pub sex: i16,
    pub password_hash: String,
}

/// Accounts. Usernames are unique case-insensitively; `create_user` reports a taken name as
/// [`StoreError::Conflict`], whatever the race.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, new: NewUser) -> StoreResult<UserRecord>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>>;
    /// Looks a user up by the case-folded username.
    async fn user_by_username(&self, username_lower: &str) -> StoreResult<Option<UserRecord>>;
    async fn update_profile(
        &self,
        id: i64,
        nickname: Option<&str>,
        sex: Option<i16>,
        push_previews: Option<bool>,
    ) -> StoreResult<Option<UserRecord>>;
    /// Stores a new hash and bumps `token_version`, returning the new version — only while the version is still
    /// `expected` (the one under which the old password was checked); `None` when another change came first.
    async fn set_password(&self, id: i64, password_hash: &str, expected: i64) -> StoreResult<Option<i64>>;
    /// Users whose case-folded username starts with `query_folded` or whose case-folded nickname contains it:
    /// username matches first, each part in username order.
    async fn search_users(&self, query_folded: &str, limit: i64) -> StoreResult<Vec<UserRecord>>;
    /// Sets the user's avatar (the media store's key of its thumbnail); none for an unknown user.
    async fn set_avatar(&self, id: i64, key: &str) -> StoreResult<Option<UserRecord>>;
    /// Records when these users were last seen online.
    async fn set_last_seen(&self, ids: &[i64], at: DateTime<Utc>) -> StoreResult<()>;
    /// When each of these users was last seen online (none: never since it was recorded).
    async fn last_seen(&self, ids: &[i64]) -> StoreResult<Vec<(i64, Option<DateTime<Utc>>)>>;
    /// The current token version of a user, or `None` for an unknown user.
    async fn token_version(&self, id: i64) -> StoreResult<Option<i64>>;
    /// The users among `ids` that exist, in no particular order.
    async fn users_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<UserRecord>>;
    /// Stores a one-time WebSocket ticket by its hash (and drops tickets that expired before `now`).
    async fn create_ticket(
        &self,
        ticket_hash: &str,
        user_id: i64,
        token_version: i64,
        token_expires_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Takes a ticket (it works once, across every node): its user, token version and the expiry of the token
    /// it was issued for; `None` when unknown, used or expired at `now`.
    async fn take_ticket(
        &self,
        ticket_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(i64, i64, DateTime<Utc>)>>;
}

/// A friend request as stored; `status` is `pending`, `accepted` or `rejected`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FriendRequestRecord {
    pub id: i64,
    pub from_user_id: i64,
    pub to_user_id: i64,
    pub message: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// Friend requests and friendships. A friendship is symmetric: both directions exist or neither does.
#[async_trait]
pub trait FriendStore: Send + Sync {
    /// Files a pending request; [`StoreError::Conflict`] when one from `from` to `to` is already pending,
    /// [`StoreError::Blocked`] when either blocked the other (checked in the same statement, so a block made
    /// meanwhile is never passed).
    async fn create_request(&self, from: i64, to: i64, message: &str) -> StoreResult<FriendRequestRecord>;
    async fn request_by_id(&self, id: i64) -> StoreResult<Option<FriendRequestRecord>>;
    async fn pending_request(&self, from: i64, to: i64) -> StoreResult<Option<FriendRequestRecord>>;
    /// Requests to (`incoming`) or from the user, newest first.
    async fn list_requests(&self, user: i64, incoming: bool, limit: i64) -> StoreResult<Vec<FriendRequestRecord>>;
    /// Accepts a pending request and creates the friendship (and settles a pending request the other way),
    /// atomically. `None` when the request is not pending.
    async fn accept_request(&self, id: i64) -> StoreResult<Option<FriendRequestRecord>>;
    /// `None` when the request is not pending.
    async fn reject_request(&self, id: i64) -> StoreResult<Option<FriendRequestRecord>>;
    async fn are_friends(&self, a: i64, b: i64) -> StoreResult<bool>;
    /// The user's friends with the remarks the user gave them, by username.
    async fn friends(&self, user: i64) -> StoreResult<Vec<FriendRecord>>;
    /// The remarks `user` gave to those of `ids` who are their friends.
    async fn remarks(&self, user: i64, ids: &[i64]) -> StoreResult<Vec<(i64, String)>>;
    /// Sets (none: removes) the remark `user` gives `friend`; false when they are not friends.
    async fn set_remark(&self, user: i64, friend: i64, remark: Option<&str>) -> StoreResult<bool>;
    /// `user` blocks `other`: ends their friendship and settles pending requests between them, atomically.
    /// Returns whether a friendship ended.
    async fn block(&self, user: i64, other: i64) -> StoreResult<bool>;
    /// False when `other` was not blocked by `user`.
    async fn unblock(&self, user: i64, other: i64) -> StoreResult<bool>;
    /// The users `user` blocked, most recent first.
    async fn blocked_by(&self, user: i64) -> StoreResult<Vec<UserRecord>>;
    /// Whether either of the two blocked the other.
    async fn blocked_either(&self, a: i64, b: i64) -> StoreResult<bool>;
    /// Ends a friendship on both sides; false when there was none.
    async fn remove_friendship(&self, a: i64, b: i64) -> StoreResult<bool>;
}

/// A message as stored.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct MessageRecord {
    pub id: i64,
    pub conversation_id: String,
    pub seq: i64,
    pub from_user_id: i64,
    pub to_user_id: Option<i64>,
    pub group_id: Option<i64>,
    pub kind: String,
    pub body: Option<String>,
    pub file_id: Option<i64>,
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
    // The lifecycle columns (DESIGN.md §7): absent from inbox copies written before them, hence the defaults,
    // and left out of a copy when empty, so that a plain message's copy is no larger than before them.
    /// The message an event changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled_by: Option<i64>,
    /// [`crate::domain::model::MessageExtras`] as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
}

/// A message to append to a conversation.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: crate::domain::ConversationId,
    pub from_user_id: i64,
    pub to_user_id: Option<i64>,
    pub group_id: Option<i64>,
    pub kind: &'static str,
    pub body: Option<String>,
    pub file_id: Option<i64>,
    pub client_msg_id: Option<String>,
    /// The message this one answers (checked by the service: same conversation, visible, content).
    pub reply_to_id: Option<i64>,
    /// [`crate::domain::model::MessageExtras`] as JSON.
    pub meta: Option<String>,
    /// Users the message mentions, `0` standing for everyone (recorded for `mention_unread`).
    pub mentions: Vec<i64>,
    /// A forward: its files need not be the sender's own uploads (the service checked the sender can read them).
    pub forwarded: bool,
    /// Files a merged forward's items show, shared with the conversation like `file_id`.
    pub item_files: Vec<i64>,
}

impl NewMessage {
    /// Nothing but text or a file: no reply, mentions or extras.
    fn is_bare(&self) -> bool {
        self.reply_to_id.is_none()
            && self.meta.is_none()
            && self.mentions.is_empty()
            && !self.forwarded
            && self.item_files.is_empty()
    }

    /// A bare direct message without a file: the common case, which some backends append in a single statement.
    pub fn is_plain_direct(&self) -> bool {
        self.to_user_id.is_some() && self.group_id.is_none() && self.file_id.is_none() && self.is_bare()
    }

    /// A bare group message without a file, which some backends append in batches of one statement.
    pub fn is_plain_group(&self) -> bool {
        self.group_id.is_some() && self.to_user_id.is_none() && self.file_id.is_none() && self.is_bare()
    }
}

/// What an event does to the message it targets (DESIGN.md §7).
#[derive(Debug, Clone)]
pub enum EventAction {
    /// Removes the target's text, file, mentions, reactions and the text of its edits.
    Recall,
    /// Replaces the target's text.
    Edit { text: String },
    /// Adds or removes the actor's reaction; a change that changes nothing appends no event.
    React { emoji: String, add: bool, max_distinct: i64 },
}

/// An event to append to the target's conversation, under the lock that orders its sends.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub target: MessageRecord,
    pub actor: i64,
    pub action: EventAction,
    pub client_msg_id: Option<String>,
    /// [`crate::domain::model::MessageExtras`] as JSON (a reaction's emoji and direction).
    pub meta: Option<String>,
}

/// Why an event was not appended.
#[derive(Debug)]
pub enum EventOutcome {
    /// Appended (or, `created` false, an earlier event with the same `client_msg_id`). `unseen`: recipients who
    /// cannot see the target (they joined the group after it, or hid it), to whom an edit's text is not shown.
    Done { appended: Appended, unseen: Vec<i64> },
    /// The target was recalled meanwhile.
    TargetRecalled,
    /// The reaction already was as asked; the actor's latest event about that emoji, if any.
    Unchanged(Option<MessageRecord>),
    /// A new emoji would exceed the message's distinct emoji limit.
    TooManyReactions,
}

/// The outcome of [`MessageStore::append`].
#[derive(Debug, Clone)]
pub struct Appended {
    pub message: MessageRecord,
    /// False when an earlier send with the same `client_msg_id` is returned.
    pub created: bool,
    /// Who receives it: both parties of a direct message, or every member of the group when the seq was
    /// allocated (empty when not `created`).
    pub recipients: Vec<i64>,
}

/// A group as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRecord {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    pub create_user_id: i64,
    pub created_at: DateTime<Utc>,
    pub dissolved_at: Option<DateTime<Utc>>,
    pub announcement: Option<String>,
    pub avatar_key: Option<String>,
    pub muted_all: bool,
}

/// A member of a group, with the user's names.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MemberRecord {
    pub user_id: i64,
    pub username: String,
    pub nickname: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
    pub joined_seq: i64,
    pub avatar_key: Option<String>,
    pub muted_until: Option<DateTime<Utc>>,
}

/// An invite link of a group as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InviteRecord {
    pub code: String,
    pub group_id: i64,
    pub created_by: i64,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl InviteRecord {
    /// Whether the code still admits someone at `now`: not revoked, not expired, not used up.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none()
            && self.expires_at.is_none_or(|t| t > now)
            && self.max_uses.is_none_or(|m| self.uses < m)
    }
}

/// What [`GroupStore::change`] and [`GroupStore::join`] did.
#[derive(Debug)]
pub enum GroupChanged {
    /// Applied. `messages`: the `system` messages it appended (none when nothing changed); `recipients`: the
    /// members after the change, who receive them; `former`: users whose membership it ended.
    Done { group: GroupRecord, messages: Vec<MessageRecord>, recipients: Vec<i64>, former: Vec<i64> },
    /// The rules refuse it (checked under the group's lock).
    Refused(crate::domain::group::Refusal),
    /// The actor is not a member.
    NotMember,
    /// No such group, or it was dissolved.
    Gone,
    /// The invite is unknown, revoked, expired or used up, or its group is gone.
    InviteInvalid,
    /// The group would exceed its member limit.
    Full,
}

/// Groups and their membership. Every membership or role change locks the group's conversation row, as every
/// group send does, so a message's recipients are exactly the members when its seq was allocated, and the
/// change's preconditions are checked against the state under that lock.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates the group, its conversation, and the memberships (`owner` plus `members`), atomically.
    async fn create_group(&self, name: &str, owner: i64, members: &[i64]) -> StoreResult<GroupRecord>;
    async fn group(&self, id: i64) -> StoreResult<Option<GroupRecord>>;
    /// Groups the user belongs to (not dissolved), newest first.
    async fn groups_of(&self, user: i64) -> StoreResult<Vec<GroupRecord>>;
    async fn members(&self, group: i64) -> StoreResult<Vec<MemberRecord>>;
    async fn member(&self, group: i64, user: i64) -> StoreResult<Option<MemberRecord>>;
    /// Whether `user` was a member of the group once (a membership period ended).
    async fn was_member(&self, group: i64, user: i64) -> StoreResult<bool>;
    /// Makes a change under the group's lock: reads the actor's and the target's roles there, checks them with
    /// [`crate::domain::group::check`], applies the change and appends its `system` messages
    /// ([`crate::domain::group::system_events`]) with the conversation's next seqs, in one transaction.
    async fn change(
        &self,
        group: i64,
        actor: i64,
        change: &crate::domain::group::GroupChange,
        max_members: i64,
    ) -> StoreResult<GroupChanged>;
    /// Joins `user` to the group of an invite: under the group's lock the invite must still be usable, the
    /// group alive and not full; a use is counted only when the user was not a member already.
    async fn join(&self, code: &str, user: i64, max_members: i64) -> StoreResult<GroupChanged>;
    async fn create_invite(
        &self,
        group: i64,
        by: i64,
        code: &str,
        expires_at: Option<DateTime<Utc>>,
        max_uses: Option<i64>,
    ) -> StoreResult<InviteRecord>;
    /// A group's invites, newest first.
    async fn invites(&self, group: i64) -> StoreResult<Vec<InviteRecord>>;
    async fn invite(&self, code: &str) -> StoreResult<Option<InviteRecord>>;
    /// Revokes an invite of the group; false when there was none (or it was revoked already).
    async fn revoke_invite(&self, group: i64, code: &str) -> StoreResult<bool>;
    async fn member_count(&self, group: i64) -> StoreResult<i64>;
}

/// An uploaded file's metadata; the bytes live in the media store under `storage_key`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileRecord {
    pub id: i64,
    pub uploader_id: i64,
    pub storage_key: String,
    /// `image`, `video`, `voice` or `file`.
    pub kind: String,
    pub content_type: String,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    pub referenced_at: Option<DateTime<Utc>>,
    /// A `file`'s original name, sanitised.
    pub name: Option<String>,
    /// A `voice` note's length, read from its container.
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewFile {
    pub uploader_id: i64,
    pub storage_key: String,
    pub kind: &'static str,
    pub content_type: &'static str,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub sha256: String,
    pub name: Option<String>,
    pub duration_ms: Option<i64>,
}

/// Uploaded files' metadata and who may read them.
#[async_trait]
pub trait FileStore: Send + Sync {
    async fn create_file(&self, new: NewFile) -> StoreResult<FileRecord>;
    async fn file(&self, id: i64) -> StoreResult<Option<FileRecord>>;
    async fn files_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<FileRecord>>;
    /// Whether `user` took part in a conversation where the file was sent, at the time it was sent: a party of
    /// the direct conversation, or a member of the group then (now or in an ended membership) — by a message
    /// that was not recalled.
    async fn shared_with(&self, file_id: i64, user: i64) -> StoreResult<bool>;
    /// Whether every message that used the file was recalled (and at least one did): nobody may read it then.
    async fn only_in_recalled(&self, file_id: i64) -> StoreResult<bool>;
    /// Deletes up to `limit` files never referenced by a message and created before `before`; returns them so
    /// their bytes can be removed.
    async fn take_unreferenced(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<Vec<FileRecord>>;
}

/// A user's side of a conversation, with the conversation's head.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserConversationRecord {
    pub conversation_id: String,
    pub kind: String,
    pub group_id: Option<i64>,
    pub user_low: Option<i64>,
    pub user_high: Option<i64>,
    pub last_seq: i64,
    pub read_seq: i64,
    pub visible_from_seq: i64,
    pub updated_at: DateTime<Utc>,
    pub muted: bool,
    pub pinned: bool,
    pub draft: Option<String>,
    /// Cleared for the user up to this seq (0: never); out of their list until a message comes after it.
    pub cleared_seq: i64,
}

/// A change to a user's settings of one conversation; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub muted: Option<bool>,
    pub pinned: Option<bool>,
    /// `Some(None)` removes the draft.
    pub draft: Option<Option<String>>,
}

/// A user's own side of their conversations (DESIGN.md §8): settings and clearing.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Applies `change` to the user's side of the conversation, creating that side for a direct conversation
    /// with `peer` (`create_direct`) when it has none yet; none when the user has no side of it.
    async fn update_settings(
        &self,
        user: i64,
        conversation_id: &str,
        change: &SettingsChange,
        create_direct: Option<(i64, i64)>,
    ) -> StoreResult<Option<UserConversationRecord>>;
    /// Clears the conversation for the user up to its last seq: what came before is no longer theirs to see,
    /// counts as read, and the conversation leaves their list until the next message. Returns the seq it was
    /// cleared to; none when they have no side of it.
    async fn clear(&self, user: i64, conversation_id: &str) -> StoreResult<Option<i64>>;
    /// Every side of the conversation as `(user_id, read_seq, joined_seq)`, in user id order: for a group, its
    /// current members and the seq their membership began after (0 in a direct conversation).
    async fn read_cursors(&self, conversation_id: &str) -> StoreResult<Vec<(i64, i64, i64)>>;
    /// The distinct senders of the content messages with `seq` in `(after, until]` of the conversation (those a
    /// read up to `until` covers), other than `reader`, who still have a side of it (a member who left is not
    /// told who reads the group).
    async fn senders_between(
        &self,
        conversation_id: &str,
        reader: i64,
        after: i64,
        until: i64,
    ) -> StoreResult<Vec<i64>>;
}

/// Messages, conversations and cursors.
///
/// Guarantees: [`MessageStore::append`] allocates the conversation's next `seq` in the same transaction that
/// inserts the message, so `seq` is gapless and unique per conversation however many nodes append at once; a
/// repeated `(from_user_id, client_msg_id)` returns the first message and allocates nothing.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Durably appends a message, returning it and whether it is new (false: an earlier send with the same
    /// `client_msg_id`). For a direct conversation both users get their side of it.
    async fn append(&self, new: NewMessage) -> StoreResult<Appended>;
    /// The sender's message with this `client_msg_id`, if stored.
    async fn message_by_client_id(&self, from: i64, client_msg_id: &str) -> StoreResult<Option<MessageRecord>>;
    /// Messages with `seq` in `(after, before)` that the user may see (`seq > visible_from`): the `limit`
    /// newest of them when `newest` is set, else the `limit` oldest; always returned in ascending `seq`.
    async fn messages_between(
        &self,
        conversation_id: &str,
        after: i64,
        before: i64,
        limit: i64,
        newest: bool,
    ) -> StoreResult<Vec<MessageRecord>>;
    /// A page of history for `viewer`: as [`MessageStore::messages_between`] without what they hid.
    async fn history(
        &self,
        viewer: i64,
        conversation_id: &str,
        after: i64,
        before: i64,
        limit: i64,
        newest: bool,
    ) -> StoreResult<Vec<MessageRecord>>;
    /// The user's conversations with their heads, most recently active first.
    async fn user_conversations(&self, user: i64) -> StoreResult<Vec<UserConversationRecord>>;
    async fn user_conversation(&self, user: i64, conversation_id: &str) -> StoreResult<Option<UserConversationRecord>>;
    /// The preview of each listed conversation for `user`: its last content message or recall not hidden by
    /// them (edits and reactions are not shown in a preview).
    async fn last_messages(&self, user: i64, conversation_ids: &[String]) -> StoreResult<Vec<MessageRecord>>;
    /// Moves the user's read cursor forward to `seq` (never back); false when it did not move.
    async fn mark_read(&self, user: i64, conversation_id: &str, seq: i64) -> StoreResult<bool>;
    /// Moves a device's delivered cursor forward to `seq` (never back). The move is written in the background
    /// (batched with others) shortly after this returns; a crash before that only re-sends those messages.
    async fn ack(&self, user: i64, device: &str, conversation_id: &str, seq: i64) -> StoreResult<()>;
    /// A device's delivered cursor per conversation.
    async fn device_cursors(&self, user: i64, device: &str) -> StoreResult<Vec<(String, i64)>>;
    /// Appends an event that changes `target` (recall, edit, reaction) with the conversation's next seq, and
    /// applies the change to the target in the same transaction. Refused with [`StoreError::NotMember`] /
    /// [`StoreError::NotFriends`] when the actor may no longer write to the conversation.
    async fn append_event(&self, event: NewEvent) -> StoreResult<EventOutcome>;
    /// The messages with these ids (in no particular order).
    async fn messages_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<MessageRecord>>;
    /// Reactions to these messages: `(message_id, emoji, user_id)` in the order they were made.
    async fn reactions_of(&self, ids: &[i64]) -> StoreResult<Vec<(i64, String, i64)>>;
    /// The events that target `target` (recalls, edits, reactions), in seq order.
    async fn events_of(&self, target: i64) -> StoreResult<Vec<MessageRecord>>;
    /// Hides messages of one conversation for `user` (delete for me); returns the ids newly hidden.
    async fn hide(&self, user: i64, conversation_id: &str, messages: &[(i64, i64)]) -> StoreResult<Vec<i64>>;
    /// What `user` hid since `device` last asked, as `(conversation_id, message_id)` oldest first, and moves the
    /// device's cursor to now (a device asking for the first time is told nothing: its catch-up leaves hidden
    /// messages out).
    async fn hides_for_device(&self, user: i64, device: &str) -> StoreResult<Vec<(String, i64)>>;
    /// Which of these message ids `user` hid.
    async fn hidden_among(&self, user: i64, ids: &[i64]) -> StoreResult<Vec<i64>>;
    /// Per conversation of `user`: unread content messages from others (not recalled, not hidden) after
    /// `max(read_seq, visible_from_seq)`, and 1 when one of them mentions the user or everyone (else 0).
    async fn unread(&self, user: i64) -> StoreResult<Vec<(String, i64, i64)>>;
}

/// Message search (DESIGN.md §10).
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Content messages `viewer` can see (their side of the conversation from `visible_from_seq`, not recalled,
    /// not hidden by them) matching every term of `query` and holding each of its CJK runs, with `id <
    /// before_id`, newest first, at most `limit`; only in `conversation_id` when given. An empty query finds
    /// nothing.
    async fn search(
        &self,
        viewer: i64,
        query: &crate::domain::search::SearchQuery,
        conversation_id: Option<&str>,
        before_id: i64,
        limit: i64,
    ) -> StoreResult<Vec<MessageRecord>>;
}

/// Reachability of the database, for `/readyz`.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    fn backend(&self) -> &'static str;
}

/// The stores of one node, each behind its narrow trait.
#[derive(Clone)]
pub struct Stores {
    pub users: Arc<dyn UserStore>,
    pub friends: Arc<dyn FriendStore>,
    pub messages: Arc<dyn MessageStore>,
    pub groups: Arc<dyn GroupStore>,
    pub conversations: Arc<dyn ConversationStore>,
    pub files: Arc<dyn FileStore>,
    pub search: Arc<dyn SearchStore>,
    pub push: Arc<dyn PushStore>,
    pub health: Arc<dyn StoreHealth>,
    /// The background writers (group commit, delivered cursors) behind `messages`.
    writers: batch::Writers,
}

impl Stores {
    /// The stores of one database: `store` for every aggregate but messages, which go through `messages` (the
    /// same store behind its batching writers).
    fn assemble<S>(store: Arc<S>, messages: Arc<dyn MessageStore>, writers: batch::Writers) -> Self
    where
        S: UserStore
            + FriendStore
            + GroupStore
            + ConversationStore
            + FileStore
            + SearchStore
            + PushStore
            + StoreHealth
            + 'static,
    {
        Stores {
            users: store.clone(),
            friends: store.clone(),
            messages,
            groups: store.clone(),
            conversations: store.clone(),
            files: store.clone(),
            search: store.clone(),
            push: store.clone(),
            health: store,
            writers,
        }
    }

    /// Connects to `url` (`postgres://…` or `sqlite://…`) and applies pending migrations. The node's metrics are
    /// not fed (see [`Stores::open_observed`]).
    pub async fn open(url: &str, pool_size: u32) -> anyhow::Result<Stores> {
        Self::open_observed(url, pool_size, &Metrics::new()).await
    }

    /// [`Stores::open`], counting in `metrics` which path each batch of sends took
    /// (`gochat_store_send_batches_total`).
    pub async fn open_observed(url: &str, pool_size: u32, metrics: &Metrics) -> anyhow::Result<Stores> {
        if url.starts_with("postgres") {
            postgres::open(url, pool_size, metrics).await
        } else {
            sqlite::open(url, metrics).await
        }
    }

    /// Writes what the background writers hold (queued sends are committed, queued delivered cursors written)
    /// and stops them; appends and acks after this fail with [`StoreError::Closed`]. Returns once they are done.
    pub async fn close(&self) {
        self.writers.close().await;
    }
}

/// Encodes ids as a JSON array: both backends expand it into a set in SQL (see each backend's `ID_LIST`).
pub(crate) fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

/// Encodes strings as a JSON array, like [`json_ids`].
pub(crate) fn json_strings(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::{unreachable, StoreError};

    #[test]
    fn a_connection_that_cannot_be_made_or_kept_is_unreachable_and_a_refused_statement_is_not() {
        let io = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        for e in [
            sqlx::Error::Io(io()),
            // What sqlx says when a proxy accepts the connection and closes it before the server speaks.
            sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into()),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
        ] {
            assert!(unreachable(&e), "{e}");
            assert!(matches!(StoreError::from(e), StoreError::Unavailable(_)));
        }
        for e in [sqlx::Error::RowNotFound, sqlx::Error::ColumnNotFound("x".into())] {
            assert!(!unreachable(&e), "{e}");
        }
    }
}
