//! `/api/user/*` and `/api/users/search`: accounts.

use poem::web::Data;
use poem::{Endpoint, EndpointExt, Request};
use poem_openapi::param::Query;
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

    /// Change the caller's nickname and/or sex.
    #[oai(path = "/api/user/profile", method = "put", operation_id = "updateProfile")]
    async fn update_profile(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<UpdateProfileRequest>,
    ) -> Result<Json<User>, AppError> {
        let nickname = body.nickname.as_deref().map(Nickname::parse).transpose()?;
        let sex = body.sex.map(|s| Sex::parse(s.0)).transpose()?;
        Ok(Json(state.accounts.update_profile(auth.user_id(), nickname, sex).await?.into()))
    }

    /// Change the password; every token issued before stops working (401 `token_revoked`).
    #[oai(path = "/api/user/password", method = "put", operation_id = "changePassword")]
    async fn change_password(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ChangePasswordRequest>,
    ) -> Result<NoContent, AppError> {
        let new = Password::parse(&body.new_password)?;
        state.accounts.change_password(auth.user_id(), &body.old_password, new).await?;
        Ok(NoContent::Done)
    }

    /// Find users whose username starts with `q` (case-insensitive; at most 20).
    #[oai(path = "/api/users/search", method = "get", operation_id = "searchUsers")]
    async fn search(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
        q: Query<Str<fields::UserQuery>>,
    ) -> Result<Json<Vec<UserSummary>>, AppError> {
        let users = state.accounts.search(&q).await?;
        Ok(Json(users.into_iter().map(Into::into).collect()))
    }
}
