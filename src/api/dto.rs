//! Request and reply bodies of the REST API, as DESIGN.md names their fields.

use chrono::{DateTime, Utc};
use poem_openapi::Object;

pub use crate::domain::model::{User, UserSummary};

#[derive(Debug, Object)]
pub struct RegisterRequest {
    /// 3–32 of `[A-Za-z0-9_.-]`, unique case-insensitively.
    pub username: String,
    /// 8–128 characters.
    pub password: String,
    /// 1–64 characters.
    pub nickname: String,
    /// 0 male (default), 1 female.
    pub sex: Option<i64>,
}

#[derive(Debug, Object)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Object)]
pub struct LoginReply {
    /// A JWT for `Authorization: Bearer …` and `/ws?token=…`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Debug, Object)]
pub struct UpdateProfileRequest {
    pub nickname: Option<String>,
    pub sex: Option<i64>,
}

#[derive(Debug, Object)]
pub struct ChangePasswordRequest {
    pub old_password: String,
    /// 8–128 characters.
    pub new_password: String,
}

#[derive(Debug, Object)]
pub struct FriendRequestBody {
    pub to_user_id: i64,
    /// An optional note, up to 200 characters.
    pub message: Option<String>,
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
    pub conversation_id: String,
    /// Everything up to and including this seq has been read.
    pub seq: i64,
}
