//! What every request passes through: a request id and tracing span, metrics by route template, the JSON error
//! mapping, HTTP's own answers (304, `HEAD`, `Allow`), the security headers, and the per-IP rate limit of the
//! credential endpoints.

use std::net::IpAddr;
use std::time::Instant;

use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use tracing::Instrument;

use super::routes::Matched;
use crate::error::AppError;
use crate::error::ErrorCode;
use crate::state::AppState;

const REQUEST_ID: &str = "x-request-id";

/// Accepts a caller's request id when it is short and plain, so ids can be correlated across a proxy.
fn incoming_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    (!v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| v.to_string())
}

/// The pages a browser renders (the web client) may load their own scripts, styles and media, talk to this
/// origin's API and WebSocket, and be framed by nobody.
const APP_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                       media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; \
                       form-action 'self'; frame-ancestors 'none'";
/// Swagger UI (`/docs`) ships its script and styles inline, so they are allowed there and nowhere else.
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
                        img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                        frame-ancestors 'none'";

/// Wraps every request: tags it with a request id (echoed in `x-request-id`), logs it in a span (the path,
/// never the query, which may carry a token), records its metrics under its route template, and turns any
/// error — the node's own or one poem raised before a handler ran — into the one JSON error shape. What HTTP
/// answers itself passes through as HTTP says: a `304 Not Modified` stays a 304, `HEAD` is answered as `GET`
/// without the body, and a 405 names the allowed methods in `Allow`. Every response gets the security headers.
pub async fn observe<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let state = req.data::<AppState>().cloned();
    let request_id = incoming_request_id(&req).unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %path);
    let head = method == Method::HEAD;
    if head {
        req.set_method(Method::GET);
    }
    // The embedded web client's files: conditional requests are answered here (poem's static files compare
    // `If-None-Match` as a bare string and send an unquoted ETag, so a browser's quoted one never matched).
    let static_file = path == "/" || path.starts_with("/web/") || path.starts_with("/app/");
    let if_none_match = if static_file { req.headers_mut().remove(header::IF_NONE_MATCH) } else { None };

    let mut resp = match next.call(req).instrument(span.clone()).await {
        Ok(r) => r.into_response(),
        // A 1xx–3xx "error" is an answer HTTP defines (poem's static files say 304 this way), not a failure.
        Err(e) if !e.status().is_client_error() && !e.status().is_server_error() => e.into_response(),
        Err(e) => span.in_scope(|| AppError::from_poem(e).to_response()),
    };
    let matched = state.as_ref().map(|s| s.routes.find(&path));
    if let (Some(Matched::Route { methods, .. }), StatusCode::METHOD_NOT_ALLOWED) = (matched, resp.status()) {
        let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            resp.headers_mut().insert(header::ALLOW, v);
        }
    }
    if static_file && resp.status() == StatusCode::OK {
        revalidate(&mut resp, if_none_match.as_ref().and_then(|v| v.to_str().ok()));
    }
    if head {
        resp.set_body(Body::empty());
    }
    security_headers(&path, &mut resp);
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    if let (Some(state), Some(matched)) = (&state, matched) {
        let route = super::routes::RouteTable::label_of(matched);
        state.metrics.observe_http(route, method.as_str(), status, elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        tracing::debug!(status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "request finished");
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    Ok(resp)
}

/// Quotes a static file's ETag (RFC 9110 §8.8.3) and turns the reply into `304 Not Modified` when the request's
/// `If-None-Match` names it (weak comparison, lists and `*` included).
fn revalidate(resp: &mut Response, if_none_match: Option<&str>) {
    let Some(tag) = resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(opaque_tag) else { return };
    let quoted = format!("\"{tag}\"");
    if let Ok(v) = HeaderValue::from_str(&quoted) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    let matches = if_none_match.is_some_and(|inm| inm.split(',').any(|t| t.trim() == "*" || opaque_tag(t) == tag));
    if matches {
        let mut not_modified = Response::builder().status(StatusCode::NOT_MODIFIED).finish();
        for name in [header::ETAG, header::CACHE_CONTROL, header::LAST_MODIFIED] {
            if let Some(v) = resp.headers().get(&name) {
                not_modified.headers_mut().insert(name, v.clone());
            }
        }
        *resp = not_modified;
    }
}

/// An entity tag without its weakness prefix and quotes.
fn opaque_tag(t: &str) -> String {
    t.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

/// `nosniff` and no referrer everywhere; no framing anywhere; a content security policy on the pages.
fn security_headers(path: &str, resp: &mut Response) {
    let headers = resp.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let html =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if html || path == "/" || path.starts_with("/web") || path.starts_with("/app") || path.starts_with("/docs") {
        let csp = if path.starts_with("/docs") { DOCS_CSP } else { APP_CSP };
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    }
}

/// The client's address: the socket peer, or, when the node is configured to trust its proxy, the **last**
/// `X-Forwarded-For` hop — the address that proxy saw. The hops before it are whatever the client sent (a proxy
/// appends to the header, as nginx's `$proxy_add_x_forwarded_for` does), so taking the first would let any client
/// pose as a new address on every request and walk around the per-address limits.
pub fn client_ip(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        if let Some(ip) = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    req.remote_addr().as_socket_addr().map(|a| a.ip())
}

/// Refuses a credential request with 429 (and `Retry-After`) once its client IP is over the limit.
pub async fn limit_by_ip<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    if let Some(state) = req.data::<AppState>() {
        if let Some(ip) = client_ip(&req, state.config.trust_forwarded_for) {
            state.limits.check_ip(ip)?;
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// The endpoints whose bodies are uploads: `POST /api/messages/upload`, `PUT /api/user/avatar`,
/// `PUT /api/groups/{groupId}/avatar`.
fn is_upload(path: &str) -> bool {
    path == "/api/messages/upload"
        || path == "/api/user/avatar"
        || path.strip_prefix("/api/groups/").and_then(|r| r.strip_suffix("/avatar")).is_some_and(|id| !id.contains('/'))
}

/// The largest refused body still read to its end before the 413 (see [`limit_body`]), and for how long at most.
const DRAIN_MAX: u64 = 4 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Refuses a body over `LIMIT` bytes: at once with 413 when `Content-Length` says so, and otherwise (chunked
/// bodies) by cutting the stream at the limit, which the body parser then reports as invalid.
/// The upload endpoints (media and avatars) are exempt: they stream and enforce their own limits as bytes
/// arrive.
pub async fn limit_body<const LIMIT: usize, E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    if is_upload(req.uri().path()) {
        return next.call(req).await.map(IntoResponse::into_response);
    }
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > LIMIT as u64 => {
            // Read (and drop) a body of moderate size before answering: refusing it unread makes the server
            // close a connection with unread data, the kernel resets it, and the client sees a reset instead
            // of this 413. Larger bodies, or ones arriving too slowly, are refused at once.
            if n <= DRAIN_MAX {
                use tokio::io::AsyncReadExt;
                let mut body = req.take_body().into_async_read();
                let _ =
                    tokio::time::timeout(DRAIN_TIME, tokio::io::copy(&mut (&mut body).take(n), &mut tokio::io::sink()))
                        .await;
            }
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is {n} bytes; at most {LIMIT} are accepted"),
            )
            .into());
        }
        Some(_) => {}
        None => {
            use tokio::io::AsyncReadExt;
            let body = req.take_body().into_async_read().take(LIMIT as u64);
            req.set_body(poem::Body::from_async_read(body));
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}
