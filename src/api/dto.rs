//! Request and reply bodies of the REST API, as DESIGN.md names their fields.

use chrono::{DateTime, Utc};
use poem_openapi::Object;

use crate::domain::schema::{fields, Int, Str};

pub use crate::domain::model::{User, UserSummary};

#[derive(Debug, Object)]
pub struct RegisterRequest {
    /// 3–32 of `[A-Za-z0-9_.-]`, unique case-insensitively.
    pub username: Str<fields::Username>,
    /// 8–128 characters.
    pub password: Str<fields::Password>,
    /// 1–64 characters, something visible, no control characters.
    pub nickname: Str<fields::Name>,
    /// 0 male (default), 1 female.
    #[oai(nullable)]
    pub sex: Option<Int<0, 1>>,
}

#[derive(Debug, Object)]
pub struct LoginRequest {
    pub username: Str<fields::LoginName>,
    pub password: Str<fields::PasswordAttempt>,
}

#[derive(Debug, Object)]
pub struct LoginReply {
    /// A JWT for `Authorization: Bearer …` and `/ws?token=…`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

/// A one-time WebSocket ticket: pass it as `/ws?token=<ticket>` within 30 s; it works once.
#[derive(Debug, Object)]
pub struct WsTicket {
    /// 43 characters of base64url.
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
pub struct UpdateProfileRequest {
    /// 1–64 characters, something visible, no control characters; absent or null: unchanged.
    #[oai(nullable)]
    pub nickname: Option<Str<fields::Name>>,
    /// 0 male, 1 female; absent or null: unchanged.
    #[oai(nullable)]
    pub sex: Option<Int<0, 1>>,
    /// Whether push notifications may show the first 100 characters of a message (DESIGN.md §11); absent or
    /// null: unchanged.
    #[oai(nullable)]
    pub push_previews: Option<bool>,
}

#[derive(Debug, Object)]
pub struct ChangePasswordRequest {
    pub old_password: Str<fields::PasswordAttempt>,
    /// 8–128 characters.
    pub new_password: Str<fields::Password>,
}

#[derive(Debug, Object)]
pub struct FriendRequestBody {
    pub to_user_id: i64,
    /// An optional note, up to 200 characters.
    #[oai(nullable)]
    pub message: Option<Str<fields::Note>>,
}

#[derive(Debug, Object)]
pub struct RequestIdBody {
    pub request_id: i64,
}

#[derive(Debug, Object)]
pub struct AcceptedFriend {
    pub friend: UserSummary,
}

#[derive(Debug, Object)]
pub struct ReadBody {
    pub conversation_id: Str<fields::ConversationId>,
    /// Everything up to and including this seq has been read (at most the conversation's last seq).
    pub seq: Int<1, { i64::MAX }>,
}

/// The body of `PUT /api/messages/{messageId}`.
#[derive(Debug, Object)]
pub struct EditBody {
    /// The new text: 1–4000 characters, something visible, no control characters but tab and line breaks.
    pub text: Str<fields::Text>,
    /// Up to 64 characters, unique per sender: a retry with the same value returns the first edit.
    #[oai(nullable)]
    pub client_msg_id: Option<Str<fields::ClientMsgId>>,
}

/// The body of `POST /api/messages/forward`: messages of one conversation to a friend or a group (its OpenAPI
/// schema, which also says exactly one of the two, is `api::messages::ForwardRequest`'s).
#[derive(Debug, Object)]
pub struct ForwardBody {
    /// 1–100 messages of one conversation the caller can read.
    #[oai(validator(min_items = 1, max_items = 100))]
    pub message_ids: Vec<i64>,
    /// The friend to forward to (exactly one of `to_user_id` and `group_id`).
    #[oai(nullable)]
    pub to_user_id: Option<i64>,
    #[oai(nullable)]
    pub group_id: Option<i64>,
    /// One `merged` message holding them all, instead of one message each.
    #[oai(nullable)]
    pub merged: Option<bool>,
}
