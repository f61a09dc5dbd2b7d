//! The objects of the API contract (DESIGN.md §3), shared by REST replies, WebSocket frames and the bus.

use chrono::{DateTime, Utc};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

use super::schema::{fields, Str};

/// An account as the owner sees it (never the password hash).
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    /// 0 male, 1 female.
    pub sex: i16,
    pub created_at: DateTime<Utc>,
    /// The 256×256 avatar (any signed-in user may read it), when one was set.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Whether push notifications may show message text (DESIGN.md §11; off until the user turns it on).
    #[serde(default)]
    pub push_previews: bool,
}

/// The short form of a user, in lists and events.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    pub sex: i16,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// The name the caller gave this friend (seen only by the caller).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum FriendRequestStatus {
    Pending,
    Accepted,
    Rejected,
}

impl FriendRequestStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "accepted" => Self::Accepted,
            "rejected" => Self::Rejected,
            _ => Self::Pending,
        }
    }
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct FriendRequest {
    pub id: i64,
    pub from_user: UserSummary,
    pub to_user: UserSummary,
    pub message: String,
    pub status: FriendRequestStatus,
    pub created_at: DateTime<Utc>,
}

/// What a row of a conversation's stream is (DESIGN.md §7): **content** (`text`, `image`, `video`, `voice`,
/// `file`, `merged`) or an
/// **event** that changes an earlier message (`recall`, `edit`, `reaction`), naming it in `target_id`. Every
/// kind takes the conversation's next `seq` and is delivered the same way.
#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    Video,
    Voice,
    File,
    /// A merged forward: `items` are the forwarded messages.
    Merged,
    Recall,
    Edit,
    Reaction,
    /// A change to a group (a join, leave, rename, …): `system` says what.
    System,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Voice => "voice",
            Self::File => "file",
            Self::Merged => "merged",
            Self::Recall => "recall",
            Self::Edit => "edit",
            Self::Reaction => "reaction",
            Self::System => "system",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "image" => Self::Image,
            "video" => Self::Video,
            "voice" => Self::Voice,
            "file" => Self::File,
            "merged" => Self::Merged,
            "recall" => Self::Recall,
            "edit" => Self::Edit,
            "reaction" => Self::Reaction,
            "system" => Self::System,
            _ => Self::Text,
        }
    }
    /// Content is what people send; events change content and never count as unread.
    pub fn is_content(self) -> bool {
        matches!(self, Self::Text | Self::Image | Self::Video | Self::Voice | Self::File | Self::Merged)
    }
}

/// What a sender may send (`POST /api/messages/send`, the WebSocket `send` frame).
#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum SendType {
    Text,
    Image,
    Video,
    Voice,
    File,
}

impl SendType {
    pub fn as_str(self) -> &'static str {
        self.message_type().as_str()
    }
    pub fn message_type(self) -> MessageType {
        match self {
            Self::Text => MessageType::Text,
            Self::Image => MessageType::Image,
            Self::Video => MessageType::Video,
            Self::Voice => MessageType::Voice,
            Self::File => MessageType::File,
        }
    }
}

/// A quoted message as it is now (DESIGN.md §7): the text cut to 100 characters, and none once it is recalled.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageRef {
    pub id: i64,
    pub seq: i64,
    pub from_user_id: i64,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub recalled: bool,
}

/// Whom a group message mentions.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Mentions {
    pub user_ids: Vec<i64>,
    /// `@all`: every member (owner and admins only).
    pub all: bool,
}

/// The users who reacted to a message with one emoji, in the order they reacted.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reaction {
    pub emoji: String,
    pub user_ids: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ReactionOp {
    Add,
    Remove,
}

/// What a `reaction` event did: `from_user_id` added or removed `emoji` on the message `target_id`.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReactionChange {
    pub emoji: String,
    pub op: ReactionOp,
}

/// A forwarded message inside a merged forward, as it was when forwarded.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct MessageSnapshot {
    pub id: i64,
    pub from_user_id: i64,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    pub created_at: DateTime<Utc>,
}

/// What only some messages carry, stored with the message as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageExtras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Mentions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<ReactionChange>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<MessageSnapshot>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemEvent>,
}

impl MessageExtras {
    pub fn is_empty(&self) -> bool {
        self.mentions.is_none()
            && self.reaction.is_none()
            && !self.forwarded
            && self.items.is_none()
            && self.system.is_none()
    }
    /// The JSON stored in `messages.meta`, or none when there is nothing to store.
    pub fn to_meta(&self) -> Option<String> {
        if self.is_empty() {
            None
        } else {
            serde_json::to_string(self).ok()
        }
    }
    /// Reads `messages.meta`; what cannot be read counts as nothing.
    pub fn from_meta(meta: Option<&str>) -> Self {
        meta.and_then(|m| serde_json::from_str(m).ok()).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Image,
    Video,
    Voice,
    /// Any type, always downloaded as an attachment.
    File,
}

impl FileKind {
    pub fn parse(s: &str) -> Self {
        match s {
            "video" => Self::Video,
            "voice" => Self::Voice,
            "file" => Self::File,
            _ => Self::Image,
        }
    }
}

/// An uploaded image, video, voice note or file.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct FileInfo {
    pub id: i64,
    /// Where to download it (authenticated).
    pub url: String,
    pub content_type: String,
    pub size: i64,
    pub kind: FileKind,
    /// Image width in pixels, when known.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i32>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i32>,
    /// A `file`'s original name, sanitised.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A voice note's length in milliseconds, read from its container.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// A message in a conversation. `seq` is gapless from 1 within the conversation. Content messages are given in
/// their current state (latest text, `edited_at`, reactions, `recalled_at`); events carry `target_id`.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub conversation_id: String,
    pub seq: i64,
    pub from_user_id: i64,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_user_id: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<i64>,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// A content message's current text or caption (none once recalled); an `edit` event's new text.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The message an event changes (`recall`, `edit`, `reaction`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<i64>,
    /// The message this one answers, as it is now.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<MessageRef>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Mentions>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled_by: Option<i64>,
    /// A content message's reactions, by emoji in the order first used.
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    /// What a `reaction` event did.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<ReactionChange>,
    /// Forwarded from another conversation.
    #[serde(default)]
    pub forwarded: bool,
    /// A `merged` message's forwarded messages, oldest first.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<MessageSnapshot>>,
    /// What a `system` message records.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemEvent>,
}

/// What changed in a group (DESIGN.md §9), as a `system` message of its stream records it.
#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SystemKind {
    /// `actor_id` added `user_ids`.
    Added,
    /// `actor_id` joined with an invite link.
    Joined,
    /// `actor_id` left.
    Left,
    /// `actor_id` removed `user_ids`.
    Removed,
    /// `actor_id` renamed the group to `name`.
    Renamed,
    /// `actor_id` set the announcement to `text` (none: cleared it).
    Announcement,
    /// `actor_id` made `user_ids[0]` the owner.
    OwnerChanged,
    /// `actor_id` made `user_ids[0]` an admin.
    AdminAdded,
    /// `actor_id` made `user_ids[0]` a plain member.
    AdminRemoved,
    /// `actor_id` muted everyone but the owner and admins.
    MutedAll,
    /// `actor_id` lifted the mute on everyone.
    UnmutedAll,
    /// `actor_id` muted `user_ids[0]` until `until`.
    MemberMuted,
    /// `actor_id` lifted the mute on `user_ids[0]`.
    MemberUnmuted,
    /// `actor_id` changed the group's avatar.
    AvatarChanged,
}

/// The facts of a `system` message.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct SystemEvent {
    pub kind: SystemKind,
    pub actor_id: i64,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ids: Option<Vec<i64>>,
    /// A rename's new name.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An announcement's text.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A member mute's end.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// The body of `POST /api/messages/send` and of the WebSocket `send` frame.
// Its OpenAPI schema, which also states the rules across fields, is `api::messages::SendRequest`'s.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(rename = "SendMessageFields")]
pub struct SendMessage {
    /// The recipient of a direct message (exactly one of `to_user_id` and `group_id`).
    #[oai(nullable)]
    pub to_user_id: Option<i64>,
    /// The group of a group message.
    #[oai(nullable)]
    pub group_id: Option<i64>,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: SendType,
    /// 1–4000 characters, for `text` messages (an optional caption of `image` and `video` ones): something
    /// visible, no control characters but tab and line breaks.
    #[oai(nullable)]
    pub text: Option<Str<fields::Text>>,
    /// An uploaded file of the matching kind, for `image` and `video` messages.
    #[oai(nullable)]
    pub file_id: Option<i64>,
    /// Up to 64 characters, unique per sender: a retry with the same value returns the first message.
    #[oai(nullable)]
    pub client_msg_id: Option<Str<fields::ClientMsgId>>,
    /// The message this one answers: a content message of the same conversation that the sender can see.
    #[oai(nullable)]
    #[serde(default)]
    pub reply_to_id: Option<i64>,
    /// Group messages: members to mention (at most 100, each a member of the group).
    #[oai(nullable, validator(max_items = 100))]
    #[serde(default)]
    pub mention_user_ids: Option<Vec<i64>>,
    /// Group messages: mention everyone (the group's owner and admins only).
    #[oai(nullable)]
    #[serde(default)]
    pub mention_all: Option<bool>,
}

#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Delivered,
    Read,
}

#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum ConversationType {
    Direct,
    Group,
}

/// A conversation in the caller's list.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Conversation {
    pub conversation_id: String,
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: ConversationType,
    /// The other user, for a direct conversation.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<UserSummary>,
    /// The group, for a group conversation.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupSummary>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Message>,
    pub last_seq: i64,
    /// How far the caller has read.
    pub read_seq: i64,
    /// Content messages from others after `read_seq` that are neither recalled nor deleted for the caller
    /// (events never count).
    pub unread_count: i64,
    /// One of the unread messages mentions the caller or everyone.
    pub mention_unread: bool,
    /// No notifications for it (mentions of the caller still notify); it still counts unread.
    pub muted: bool,
    /// Listed first.
    pub pinned: bool,
    /// The caller's unsent text, synced across their devices.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
}

/// A page of a conversation's history, ascending by `seq`.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    /// More messages lie beyond this page in the direction paged (older for `before_seq` or no cursor, newer
    /// for `after_seq`).
    pub has_more: bool,
}

/// A page of search results (DESIGN.md §10), newest first.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct SearchPage {
    pub results: Vec<Message>,
    /// Older matches lie beyond this page: ask again with `before_id` set to the last result's id.
    pub has_more: bool,
}

/// Who has read a message and who has not yet (DESIGN.md §10 "readers"): the conversation's current parties
/// other than its sender who could see it (a member who joined after it is in neither list), by user id.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageReaders {
    pub read: Vec<i64>,
    pub unread: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum GroupRole {
    Owner,
    Admin,
    Member,
}

impl GroupRole {
    pub fn parse(s: &str) -> Self {
        match s {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            _ => Self::Member,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

/// A role the owner may give a member (ownership itself moves with `PUT /api/groups/{groupId}/owner`).
#[derive(Debug, Clone, Copy, Enum, Serialize, Deserialize, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum AssignableRole {
    Admin,
    Member,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct GroupMember {
    pub user_id: i64,
    pub username: String,
    pub nickname: String,
    pub role: GroupRole,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// The member may not send until then.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<DateTime<Utc>>,
}

/// A group with its members (owner first, then admins, then members by joining order).
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    pub create_user_id: i64,
    pub created_at: DateTime<Utc>,
    pub members: Vec<GroupMember>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    /// Up to 2,000 characters, set by the owner or an admin.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announcement: Option<String>,
    /// Only the owner and admins may send.
    #[serde(default)]
    pub muted_all: bool,
}

/// A group as the conversation list shows it.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct GroupSummary {
    pub id: i64,
    pub name: String,
    pub owner_id: i64,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}
