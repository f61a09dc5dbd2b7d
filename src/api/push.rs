//! `/api/push/*`: Web Push subscriptions and the key browsers subscribe with (DESIGN.md §11).

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::BearerAuth;
use super::ApiTags;
use crate::domain::schema::{fields, Str};
use crate::error::AppError;
use crate::service::push::NewSubscription;
use crate::state::AppState;

pub struct PushApi;

/// The server's VAPID public key.
#[derive(Debug, Object)]
struct VapidPublicKey {
    /// The uncompressed P-256 point, base64url (RFC 8292 §3.2), as `PushManager.subscribe()` takes it for
    /// `applicationServerKey`.
    key: String,
}

/// The subscription's keys, as `PushSubscription.toJSON().keys` gives them (RFC 8291 §3).
#[derive(Debug, Object)]
struct SubscriptionKeys {
    /// The user agent's P-256 public key: an uncompressed point (65 bytes), base64url.
    p256dh: Str<fields::PushKey>,
    /// The authentication secret: 16 bytes, base64url.
    auth: Str<fields::PushKey>,
}

#[derive(Debug, Object)]
struct SubscriptionBody {
    /// The device this browser is (the `device` it opens `/ws` with); its earlier subscription is replaced.
    device_id: Str<fields::DeviceId>,
    /// The push service's URL for this subscription: `https`, at most 2,048 characters. Another device that
    /// had the same endpoint loses it.
    endpoint: Str<fields::PushEndpoint>,
    keys: SubscriptionKeys,
}

#[derive(ApiResponse)]
enum Subscribed {
    /// Stored: this device gets pushes for messages it is not connected for.
    #[oai(status = 201)]
    Done,
}

#[derive(ApiResponse)]
enum NoContent {
    /// Removed (or there was none).
    #[oai(status = 204)]
    Done,
}

#[OpenApi(tag = "ApiTags::Push")]
impl PushApi {
    /// The VAPID public key to subscribe with. 404 `push_disabled` when this server sends no pushes (a cluster
    /// without `GOCHAT_VAPID_PRIVATE_KEY`).
    #[oai(path = "/api/push/vapid-public-key", method = "get", operation_id = "getVapidPublicKey")]
    async fn vapid_public_key(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
    ) -> Result<Json<VapidPublicKey>, AppError> {
        Ok(Json(VapidPublicKey { key: state.push.public_key()? }))
    }

    /// Subscribe a device to Web Push. The device then gets a notification per conversation for messages
    /// that reach it while it has no socket, or that its socket does not acknowledge within
    /// `GOCHAT_PUSH_ACK_WAIT` (default 10 s); never for the caller's own messages; in muted conversations only
    /// for mentions. 422 `invalid_device`, `invalid_push_endpoint` (not `https`, too long, credentials, a
    /// loopback address) or `invalid_push_keys`.
    #[oai(path = "/api/push/subscriptions", method = "post", operation_id = "subscribePush")]
    async fn subscribe(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<SubscriptionBody>,
    ) -> Result<Subscribed, AppError> {
        let new = NewSubscription {
            device_id: &body.device_id,
            endpoint: &body.endpoint,
            p256dh: &body.keys.p256dh,
            auth: &body.keys.auth,
        };
        state.push.subscribe(auth.user_id(), new).await?;
        Ok(Subscribed::Done)
    }

    /// Unsubscribe a device (at logout, or when the browser's subscription ends).
    #[oai(path = "/api/push/subscriptions/:deviceId", method = "delete", operation_id = "unsubscribePush")]
    async fn unsubscribe(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "deviceId")] device_id: Path<Str<fields::DeviceId>>,
    ) -> Result<NoContent, AppError> {
        state.push.unsubscribe(auth.user_id(), &device_id.0).await?;
        Ok(NoContent::Done)
    }
}
