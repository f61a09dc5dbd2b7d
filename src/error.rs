//! The one error type of the node and the one place that turns an error into an HTTP status and JSON body.

use std::fmt;

use poem::http::{header, StatusCode};
use poem::{IntoResponse, Response};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};

/// What went wrong, as the client is told it: a stable snake_case `code`, a human `message`, and the HTTP status
/// that goes with it. Server faults (`Internal`) carry their cause for the log; their body never shows it.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
    close_connection: bool,
    source: Option<anyhow::Error>,
}

/// The JSON body of every error reply.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable snake_case code, e.g. `username_taken`.
    pub code: String,
    /// Human-readable explanation; wording may change.
    pub message: String,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None, close_connection: false, source: None }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn payload_too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }
    pub fn unsupported_media_type(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, message)
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {retry_after_secs} s"),
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }
    /// 429 with a code of its own (a quota rather than a request rate).
    pub fn quota(code: &'static str, message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, code, message);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }
    /// A server fault: logged with its cause chain, answered with an opaque 500.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal server error");
        e.source = Some(source.into());
        e
    }

    /// Asks for the connection to be closed after this reply: the request body was not read to its end, so the
    /// connection cannot carry another request.
    pub fn closing_connection(mut self) -> Self {
        self.close_connection = true;
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn code(&self) -> &'static str {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.to_string(), message: self.message.clone() }
    }

    /// Classifies an error raised by poem or poem-openapi before a handler ran (bad JSON, a missing header, an
    /// unknown route) so that it gets the same `{code, message}` body as the node's own errors.
    pub fn from_poem(err: poem::Error) -> Self {
        use poem_openapi::error as oe;
        if err.is::<AppError>() {
            return err.downcast::<AppError>().unwrap_or_else(|e| AppError::internal(anyhow::anyhow!("{e}")));
        }
        let status = err.status();
        let text = err.to_string();
        if err.is::<oe::AuthorizationError>() {
            return Self::unauthorized("missing_token", "an `Authorization: Bearer <token>` header is required");
        }
        if let Some(e) = err.downcast_ref::<oe::ParseRequestPayloadError>() {
            return Self::bad_request("invalid_body", format!("the request body is not valid: {}", e.reason));
        }
        if let Some(e) = err.downcast_ref::<oe::ParseParamError>() {
            return Self::bad_request("invalid_parameter", format!("parameter `{}`: {}", e.name, e.reason));
        }
        if let Some(e) = err.downcast_ref::<oe::ParsePathError>() {
            return Self::bad_request("invalid_parameter", format!("path parameter `{}`: {}", e.name, e.reason));
        }
        if let Some(e) = err.downcast_ref::<oe::ParseMultipartError>() {
            return Self::bad_request("invalid_multipart", format!("the multipart body is not valid: {}", e.reason));
        }
        if err.is::<oe::ContentTypeError>() {
            return Self::unsupported_media_type("unsupported_content_type", text);
        }
        match status {
            StatusCode::NOT_FOUND => Self::not_found("not_found", "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(status, "method_not_allowed", "method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => Self::payload_too_large("payload_too_large", text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::unsupported_media_type("unsupported_content_type", text),
            StatusCode::UNAUTHORIZED => Self::unauthorized("unauthorized", text),
            s if s.is_client_error() => Self { status: s, ..Self::bad_request("bad_request", text) },
            _ => Self::internal(anyhow::anyhow!("{text}")),
        }
    }

    /// The one mapping from error to HTTP reply. 5xx causes are logged here and never shown to the client.
    pub fn to_response(&self) -> Response {
        if self.status.is_server_error() {
            match &self.source {
                Some(src) => tracing::error!(code = self.code, error = ?src, "request failed"),
                None => tracing::error!(code = self.code, message = %self.message, "request failed"),
            }
        }
        let mut resp = Json(self.body()).into_response().with_status(self.status).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        if self.close_connection {
            resp.headers_mut().insert(header::CONNECTION, poem::http::HeaderValue::from_static("close"));
        }
        resp
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(src) = &self.source {
            write!(f, " ({src:#})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {}

impl poem::error::ResponseError for AppError {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn as_response(&self) -> Response {
        self.to_response()
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::internal(e)
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        AppError::internal(e)
    }
}

/// Every error status an endpoint of this API may answer with, documented once for the OpenAPI document.
const DOCUMENTED: &[(u16, &str)] = &[
    (400, "Malformed request: bad JSON, wrong types, missing fields, bad parameters"),
    (401, "Missing, invalid, expired or revoked token; wrong credentials"),
    (403, "Authenticated but not allowed to touch this resource"),
    (404, "No such resource (or not visible to the caller)"),
    (409, "Conflicts with the current state, e.g. `username_taken`"),
    (413, "Payload too large"),
    (415, "Unsupported media type"),
    (422, "Well-formed but invalid values, e.g. `invalid_username`"),
    (429, "Rate limited; see `Retry-After`"),
    (500, "Server fault (opaque body; the cause is in the server log)"),
    (503, "Not ready, or at capacity"),
];

impl ApiResponse for AppError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: <Json<ErrorBody> as Payload>::CONTENT_TYPE,
                        schema: <Json<ErrorBody> as Payload>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorBody as poem_openapi::types::Type>::register(registry);
    }
}
