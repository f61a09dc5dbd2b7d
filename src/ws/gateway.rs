//! `GET /ws`: authenticates before the upgrade, enforces the node's connection cap, then hands the socket to a
//! session.

use poem::http::StatusCode;
use poem::web::websocket::{WebSocket, WebSocketConfig};
use poem::web::Query;
use poem::{FromRequest, IntoResponse, Request, Response};
use serde::Deserialize;

use super::session::{self, CatchUpMode};
use crate::error::AppError;
use crate::error::ErrorCode;
use crate::service::messaging::{DEFAULT_TAIL, MAX_TAIL};
use crate::state::AppState;

/// Largest frame a client may send; bigger ones close the socket with 1009.
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest frame the transport reads whole. A frame over [`MAX_FRAME`] but within this is read to its end and
/// then refused with a clean 1009 close; only beyond this is the connection dropped with its rest unread (which
/// the peer sees as a reset). Bounds what one socket can make the node buffer.
const MAX_TRANSPORT_FRAME: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
pub struct WsQuery {
    token: Option<String>,
    /// Optional; when present it must be the token's user.
    #[serde(rename = "userId")]
    user_id: Option<String>,
    /// A stable id of the client device (its delivered cursors are kept per device); `default` when absent.
    device: Option<String>,
    /// `summary`: summary-first catch-up (DESIGN.md §12); absent: everything missed (§4).
    sync: Option<String>,
    /// With `sync=summary`: the newest seqs sent per changed conversation, 1 to 100 (default 20).
    tail: Option<String>,
}

fn parse_mode(sync: Option<&str>, tail: Option<&str>) -> Result<CatchUpMode, AppError> {
    let tail = match tail {
        None => DEFAULT_TAIL,
        Some(t) => match t.parse::<i64>() {
            Ok(n) if (1..=MAX_TAIL).contains(&n) => n,
            _ => return Err(AppError::new(ErrorCode::InvalidParameter, format!("tail must be 1 to {MAX_TAIL}"))),
        },
    };
    match sync {
        None => Ok(CatchUpMode::Full),
        Some("summary") => Ok(CatchUpMode::Summary { tail }),
        Some(_) => Err(AppError::new(ErrorCode::InvalidParameter, "sync must be `summary` or absent")),
    }
}

fn parse_device(d: Option<&str>) -> Result<String, AppError> {
    match d {
        None => Ok("default".into()),
        Some(d) if crate::domain::push::valid_device_id(d) => Ok(d.to_string()),
        Some(_) => Err(AppError::new(ErrorCode::InvalidDevice, "device must be 1 to 64 of [A-Za-z0-9._-]")),
    }
}

/// The socket configuration: small buffers (a mostly idle socket should cost a few KiB), a write buffer that
/// collects the frames a session feeds in one go until it flushes, and the frame limit.
///
/// The read buffer is what an idle socket costs most (README, "Measurements behind the tunables"), and it is the
/// unit the socket is read in, not a frame limit: frames
/// of any size up to the limit are assembled from several reads, and client frames are mostly acks well under
/// 256 B. The write buffer (8 KiB) only fills while a session feeds a burst
/// (a group's messages) before one flush; an idle socket's stays as small as the frames it was sent.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(MAX_TRANSPORT_FRAME))
        .max_frame_size(Some(MAX_TRANSPORT_FRAME))
}

#[poem::handler]
pub async fn gateway(req: &Request) -> Response {
    match upgrade(req).await {
        Ok(r) => r,
        Err(e) => e.to_response(),
    }
}

async fn upgrade(req: &Request) -> Result<Response, AppError> {
    let state = req.data::<AppState>().cloned().ok_or_else(|| AppError::internal(anyhow::anyhow!("no state")))?;
    let Query(q) = Query::<WsQuery>::from_request_without_body(req)
        .await
        .map_err(|e| AppError::new(ErrorCode::InvalidParameter, e.to_string()))?;
    let bearer = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let token = q.token.or(bearer).ok_or_else(|| {
        AppError::new(
            ErrorCode::MissingToken,
            "pass a ticket from POST /api/ws/ticket as /ws?token=<ticket> (or the token, or an Authorization header)",
        )
    })?;
    let principal = state.accounts.tokens().verify_token_or_ticket(&token).await?;
    // REST allows a few seconds of clock leeway; a socket lives until the expiry, so one that would close at once
    // is not opened.
    if principal.expires_at <= chrono::Utc::now() {
        return Err(AppError::new(ErrorCode::TokenExpired, "the token has expired; refresh it or log in again"));
    }
    if let Some(claimed) = &q.user_id {
        if claimed.parse::<i64>().ok() != Some(principal.user_id) {
            return Err(AppError::new(ErrorCode::UserMismatch, "userId does not match the token"));
        }
    }
    let device = parse_device(q.device.as_deref())?;
    let mode = parse_mode(q.sync.as_deref(), q.tail.as_deref())?;
    if state.is_draining() {
        return Err(AppError::new(ErrorCode::Draining, "this node is shutting down; reconnect to another"));
    }
    if state.hub.connections() >= state.socket_capacity {
        return Err(AppError::new(ErrorCode::AtCapacity, "this node holds all the sockets it can; try another"));
    }
    let ws = WebSocket::from_request_without_body(req)
        .await
        .map_err(|e| AppError::new(ErrorCode::NotAWebsocket, format!("a WebSocket upgrade is required: {e}")))?;
    let resp = ws
        .config(socket_config())
        .on_upgrade(move |socket| {
            // Tracked, so that a shutdown waits for the socket to close (it does on the node's shutdown signal).
            let tasks = state.tasks.clone();
            tasks.track_future(session::run(state, principal, device, mode, socket))
        })
        .into_response();
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(AppError::new(ErrorCode::NotAWebsocket, "a WebSocket upgrade is required"));
    }
    Ok(resp)
}
