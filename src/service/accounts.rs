//! Accounts: registration, login, profile, password change and user search.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::domain::frame::ServerFrame;
use crate::domain::model::User;
use crate::domain::text::reject_nul;
use crate::domain::{Nickname, Password, Sex, Username};
use crate::error::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::service::auth::{PasswordHasherPool, Principal, TokenService};
use crate::service::events::Events;
use crate::service::ratelimit::RateLimits;
use crate::store::{NewUser, StoreError, UserRecord, UserStore};

/// Most results a user search returns.
pub const SEARCH_LIMIT: i64 = 20;

#[derive(Clone)]
pub struct Accounts {
    users: Arc<dyn UserStore>,
    hasher: PasswordHasherPool,
    tokens: TokenService,
    limits: RateLimits,
    events: Events,
}

pub struct Registration {
    pub username: Username,
    pub password: Password,
    pub nickname: Nickname,
    pub sex: Sex,
}

pub struct LoginOutcome {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserRecord,
}

impl Accounts {
    pub fn new(
        users: Arc<dyn UserStore>,
        hasher: PasswordHasherPool,
        tokens: TokenService,
        limits: RateLimits,
        events: Events,
    ) -> Self {
        Self { users, hasher, tokens, limits, events }
    }

    /// Creates an account; 409 `username_taken` when the name is taken in any letter case.
    pub async fn register(&self, r: Registration) -> AppResult<UserRecord> {
        let taken = || AppError::new(ErrorCode::UsernameTaken, format!("the username `{}` is taken", r.username));
        // Cheap early answer for the common case; the unique index decides races.
        if self.users.user_by_username(&r.username.canonical()).await?.is_some() {
            return Err(taken());
        }
        let password_hash = self.hasher.hash(r.password.expose()).await?;
        let new = NewUser {
            username: r.username.as_str().to_string(),
            nickname: r.nickname.as_str().to_string(),
            sex: r.sex.value(),
            password_hash,
        };
        match self.users.create_user(new).await {
            Ok(u) => {
                tracing::info!(user_id = u.id, "user registered");
                Ok(u)
            }
            Err(StoreError::Conflict(_)) => Err(taken()),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks credentials and issues a token. Unknown users and wrong passwords get the same 401, in the same
    /// time. Failures are rate limited per username and client (429; see [`crate::service::ratelimit::LoginFailures`]).
    pub async fn login(&self, username: &str, password: &str, client: Option<IpAddr>) -> AppResult<LoginOutcome> {
        reject_nul(username, ErrorCode::InvalidUsername, "username")?;
        reject_nul(password, ErrorCode::InvalidPassword, "password")?;
        let invalid = || AppError::new(ErrorCode::InvalidCredentials, "wrong username or password");
        let canonical = username.to_ascii_lowercase();
        if canonical.is_empty() || canonical.len() > 32 || password.len() > 1024 {
            return Err(invalid());
        }
        let logins = self.limits.logins();
        logins.check(&canonical, client, Instant::now())?;
        let user = self.users.user_by_username(&canonical).await?;
        let ok = self.hasher.verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        match user {
            Some(user) if ok => {
                logins.forgive(&canonical, client);
                let (token, expires_at) = self.tokens.issue(user.id, user.token_version)?;
                Ok(LoginOutcome { token, expires_at, user })
            }
            _ => {
                logins.record(&canonical, client, Instant::now());
                Err(invalid())
            }
        }
    }

    pub async fn profile(&self, user_id: i64) -> AppResult<UserRecord> {
        self.users.user_by_id(user_id).await?.ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))
    }

    pub async fn update_profile(
        &self,
        user_id: i64,
        nickname: Option<Nickname>,
        sex: Option<Sex>,
        push_previews: Option<bool>,
    ) -> AppResult<UserRecord> {
        self.users
            .update_profile(user_id, nickname.as_ref().map(Nickname::as_str), sex.map(Sex::value), push_previews)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))
    }

    /// Replaces the password after checking the old one; every token issued before stops working.
    pub async fn change_password(&self, user_id: i64, old: &str, new: Password) -> AppResult<()> {
        reject_nul(old, ErrorCode::InvalidPassword, "old_password")?;
        self.limits.check_password_change(user_id)?;
        let user = self.profile(user_id).await?;
        if !self.hasher.verify(old, Some(&user.password_hash)).await? {
            return Err(AppError::new(ErrorCode::WrongPassword, "the old password is not correct"));
        }
        let hash = self.hasher.hash(new.expose()).await?;
        // Written only if no other change came between the check of the old password and now: two changes
        // racing with the same old password must not both be told they succeeded.
        let version = self.users.set_password(user_id, &hash, user.token_version).await?.ok_or_else(|| {
            AppError::new(ErrorCode::PasswordChanged, "the password was changed meanwhile; log in again")
        })?;
        // This node refuses the old tokens at once; the event tells every node (their caches, and the user's
        // sockets opened with an old token, which close with 4403).
        self.tokens.versions().learn(user_id, version, Instant::now());
        self.events.publish(&[user_id], &ServerFrame::TokenRevoked { user_id, token_version: version }).await;
        tracing::info!(user_id, "password changed; earlier tokens revoked");
        Ok(())
    }

    /// A fresh token for a valid one (`POST /api/user/token`), so a client stays signed in without storing the
    /// password; the old token keeps working until it expires.
    pub async fn refresh(&self, who: Principal) -> AppResult<LoginOutcome> {
        let user = self.profile(who.user_id).await?;
        let (token, expires_at) = self.tokens.issue(user.id, who.token_version)?;
        Ok(LoginOutcome { token, expires_at, user })
    }

    /// Users whose username starts with `q` or whose nickname contains it (case-insensitive, any script),
    /// username matches first; at most [`SEARCH_LIMIT`].
    pub async fn search(&self, q: &str) -> AppResult<Vec<UserRecord>> {
        let query = crate::domain::user_query(q)?;
        Ok(self.users.search_users(&query, SEARCH_LIMIT).await?)
    }

    /// Sets the user's avatar to a thumbnail already in the media store under `key`.
    pub async fn set_avatar(&self, user: i64, key: &str) -> AppResult<User> {
        self.users
            .set_avatar(user, key)
            .await?
            .map(Into::into)
            .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, "no such user"))
    }

    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }
}
