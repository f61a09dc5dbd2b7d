//! The HTTP API: thin poem-openapi handlers (one `#[OpenApi]` struct per tag) over the services, their DTOs,
//! authentication, and the middleware every request passes through.

pub mod auth;
pub mod dto;
mod files;
mod friends;
mod groups;
mod health;
mod messages;
pub mod middleware;
mod push;
pub mod routes;
mod user;

use poem_openapi::{OpenApiService, Tags};

#[derive(Tags)]
pub enum ApiTags {
    /// Accounts: registration, login, profile, password, search
    User,
    /// Friend requests and the friend list
    Friends,
    /// Sending messages, history, read cursors and the conversation list
    Messages,
    /// Groups and their membership
    Groups,
    /// Web Push subscriptions (DESIGN.md §11)
    Push,
    /// Liveness, readiness and metrics
    Health,
}

pub type Apis = (
    user::UserApi,
    friends::FriendsApi,
    messages::MessagesApi,
    files::FilesApi,
    groups::GroupsApi,
    push::PushApi,
    health::HealthApi,
);

/// The OpenAPI service of every REST endpoint; its spec is what `gochat openapi` prints and
/// `openapi/openapi.json` holds.
pub fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            user::UserApi,
            friends::FriendsApi,
            messages::MessagesApi,
            files::FilesApi,
            groups::GroupsApi,
            push::PushApi,
            health::HealthApi,
        ),
        "GoChat",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Real-time chat: accounts, friends, 1:1 and group messages, media. Authenticate with \
             `Authorization: Bearer <token>` from `POST /api/user/login`. Errors are `{code, message}` with a \
             stable snake_case `code`. The WebSocket gateway is `GET /ws?token=<jwt>` (see the README).",
    )
    .license(poem_openapi::LicenseObject::new("MIT"))
}

/// The committed form of the spec: pretty JSON with a trailing newline.
pub fn spec_json() -> String {
    let mut s = service().spec();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
