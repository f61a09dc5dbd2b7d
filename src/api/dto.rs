//! Request and reply bodies of the REST API, as DESIGN.md names their fields.

use chrono::{DateTime, Utc};
use poem_openapi::Object;

use crate::store::UserRecord;

/// An account as others and the owner see it (never the password hash).
#[derive(Debug, Clone, Object)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    /// 0 male, 1 female.
    pub sex: i16,
    pub created_at: DateTime<Utc>,
}

/// The short form of a user, in lists.
#[derive(Debug, Clone, Object)]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub nickname: String,
    pub sex: i16,
}

impl From<UserRecord> for User {
    fn from(u: UserRecord) -> Self {
        User { id: u.id, username: u.username, nickname: u.nickname, sex: u.sex, created_at: u.created_at }
    }
}

impl From<UserRecord> for UserSummary {
    fn from(u: UserRecord) -> Self {
        UserSummary { id: u.id, username: u.username, nickname: u.nickname, sex: u.sex }
    }
}

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
