//! `/api/user/*` and `/api/users/search`: accounts.

use poem::web::Data;
use poem::{Endpoint, EndpointExt, Request};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::auth::BearerAuth;
use super::dto::{
    ChangePasswordRequest, LoginReply, LoginRequest, RegisterRequest, UpdateProfileRequest, User, UserSummary, WsTicket,
};
use super::middleware::{client_ip, limit_by_ip};
use super::ApiTags;
use crate::domain::schema::{fields, Str};
use crate::domain::{Nickname, Password, Sex, Username};
use crate::error::AppError;
use crate::service::accounts::Registration;
use crate::service::presence::PresenceStatus;
use crate::state::AppState;

pub struct UserApi;

#[derive(ApiResponse)]
enum Created {
    /// The new account.
    #[oai(status = 201)]
    User(Json<User>),
}

#[derive(ApiResponse)]
enum TicketCreated {
    /// The ticket; it works once, within 30 s.
    #[oai(status = 201)]
    Ticket(Json<WsTicket>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

fn ip_limited(ep: impl Endpoint + 'static) -> impl Endpoint {
    ep.around(limit_by_ip)
}

#[OpenApi(tag = "ApiTags::User")]
impl UserApi {
    /// Create an account.
    #[oai(path = "/api/user/register", method = "post", operation_id = "register", transform = "ip_limited")]
    async fn register(&self, state: Data<&AppState>, body: Json<RegisterRequest>) -> Result<Created, AppError> {
        let r = Registration {
            username: Username::parse(&body.username)?,
            password: Password::parse(&body.password)?,
            nickname: Nickname::parse(&body.nickname)?,
            sex: body.sex.map(|s| Sex::parse(s.0)).transpose()?.unwrap_or_default(),
        };
        let user = state.accounts.register(r).await?;
        Ok(Created::User(Json(user.into())))
    }

    /// Exchange username and password for a token.
    #[oai(path = "/api/user/login", method = "post", operation_id = "login", transform = "ip_limited")]
    async fn login(
        &self,
        req: &Request,
        state: Data<&AppState>,
        body: Json<LoginRequest>,
    ) -> Result<Json<LoginReply>, AppError> {
        let client = client_ip(req, state.config.trust_forwarded_for);
        let out = state.accounts.login(&body.username, &body.password, client).await?;
        Ok(Json(LoginReply { token: out.token, expires_at: out.expires_at, user: out.user.into() }))
    }

    /// A fresh token for a valid one, so a client stays signed in without the password (the old token keeps
    /// working until it expires; a password change revokes both).
    #[oai(path = "/api/user/token", method = "post", operation_id = "refreshToken")]
    async fn refresh(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Json<LoginReply>, AppError> {
        let out = state.accounts.refresh(auth.0).await?;
        Ok(Json(LoginReply { token: out.token, expires_at: out.expires_at, user: out.user.into() }))
    }

    /// A one-time ticket that opens one WebSocket within 30 s (`/ws?token=<ticket>`), so the long-lived token
    /// never travels in a URL, where proxies and browsers log it.
    #[oai(path = "/api/ws/ticket", method = "post", operation_id = "createWsTicket")]
    async fn ws_ticket(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<TicketCreated, AppError> {
        let (ticket, expires_at) = state.accounts.tokens().issue_ticket(auth.0).await?;
        Ok(TicketCreated::Ticket(Json(WsTicket { ticket, expires_at })))
    }

    /// The caller's own profile.
    #[oai(path = "/api/user/profile", method = "get", operation_id = "getProfile")]
    async fn profile(&self, state: Data<&AppState>, auth: BearerAuth) -> Result<Json<User>, AppError> {
        Ok(Json(state.accounts.profile(auth.user_id()).await?.into()))
    }

    /// Change the caller's nickname, sex and whether push notifications show message text.
    #[oai(path = "/api/user/profile", method = "put", operation_id = "updateProfile")]
    async fn update_profile(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<UpdateProfileRequest>,
    ) -> Result<Json<User>, AppError> {
        let nickname = body.nickname.as_deref().map(Nickname::parse).transpose()?;
        let sex = body.sex.map(|s| Sex::parse(s.0)).transpose()?;
        Ok(Json(state.accounts.update_profile(auth.user_id(), nickname, sex, body.0.push_previews).await?.into()))
    }

    /// Change the password; every token issued before stops working (401 `token_revoked`), and every push
    /// subscription of the account is removed (each device subscribes again when it signs in).
    #[oai(path = "/api/user/password", method = "put", operation_id = "changePassword")]
    async fn change_password(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ChangePasswordRequest>,
    ) -> Result<NoContent, AppError> {
        let new = Password::parse(&body.new_password)?;
        state.accounts.change_password(auth.user_id(), &body.old_password, new).await?;
        state.push.forget_devices(auth.user_id()).await?;
        Ok(NoContent::Done)
    }

    /// Find users whose username starts with `q` or whose nickname contains it (case-insensitive, any script:
    /// `张` finds 张三); username matches first, at most 20. Friends carry the caller's remark.
    #[oai(path = "/api/users/search", method = "get", operation_id = "searchUsers")]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        q: Query<Str<fields::UserQuery>>,
    ) -> Result<Json<Vec<UserSummary>>, AppError> {
        let users = state.accounts.search(&q).await?;
        Ok(Json(state.friends.with_remarks(auth.user_id(), users).await?))
    }

    /// Set the caller's avatar: an image (JPEG, PNG, GIF or WebP up to 10 MiB) in the multipart field `file`,
    /// stored as a 256×256 JPEG with its metadata (EXIF, GPS) stripped.
    #[oai(path = "/api/user/avatar", method = "put", operation_id = "setAvatar")]
    async fn set_avatar(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        req: &Request,
        body: super::files::UploadBody,
    ) -> Result<Json<User>, AppError> {
        let key = receive_avatar(&state, auth.user_id(), req, body).await?;
        Ok(Json(state.accounts.set_avatar(auth.user_id(), &key).await?))
    }

    /// An avatar (`avatar_url` of a user or group): a 256×256 JPEG, readable by every signed-in user. Its name is
    /// its content's hash, so it is cached for good.
    #[oai(path = "/api/avatars/:name", method = "get", operation_id = "getAvatar")]
    async fn avatar(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
        name: Path<String>,
    ) -> Result<AvatarBody, AppError> {
        let stream = state.media.avatar(&name.0).await?;
        Ok(AvatarBody::Image(
            poem_openapi::payload::Binary(poem::Body::from_bytes_stream(stream)),
            "private, max-age=31536000, immutable".to_string(),
        ))
    }

    /// Whether friends are online, and when they were last seen (friends only: anyone else is 403
    /// `not_friends`). `user_ids` is a comma-separated list of 1 to 100 ids.
    #[oai(path = "/api/presence", method = "get", operation_id = "getPresence")]
    async fn presence(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        user_ids: Query<Str<fields::IdList>>,
    ) -> Result<Json<Vec<PresenceStatus>>, AppError> {
        let ids = crate::domain::schema::parse_id_list(&user_ids.0)?;
        Ok(Json(state.presence.of(auth.user_id(), &ids).await?))
    }
}

#[derive(ApiResponse)]
enum AvatarBody {
    /// The avatar.
    #[oai(status = 200, content_type = "image/jpeg")]
    Image(poem_openapi::payload::Binary<poem::Body>, #[oai(header = "Cache-Control")] String),
}

/// Reads an avatar upload and makes its thumbnail; returns the thumbnail's key in the media store.
pub(super) async fn receive_avatar(
    state: &AppState,
    user: i64,
    req: &Request,
    body: super::files::UploadBody,
) -> Result<String, AppError> {
    let declared = req.header(poem::http::header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let received = super::files::receive_upload(state, user, body.0, declared, false)
        .await
        .map_err(AppError::closing_connection)?;
    state.media.save_avatar(user, received, declared).await
}
