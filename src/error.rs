//! The one error type of the node and the one place that turns an error into an HTTP status and JSON body.

use std::fmt;

use poem::http::{header, StatusCode};
use poem::{IntoResponse, Response};
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};

use crate::domain::DomainError;
pub use crate::domain::ErrorCode;

/// The HTTP status of every error code: the one table. (A WebSocket `error` frame carries the code alone; the
/// statuses given here to frame-only codes are what the same refusal would be over HTTP.)
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        BadRequest | InvalidBody | InvalidParameter | InvalidMultipart | NotAWebsocket | InvalidJson | InvalidFrame
        | UnknownType | BinaryNotSupported => StatusCode::BAD_REQUEST,
        Unauthorized | MissingToken | InvalidToken | TokenExpired | TokenRevoked | InvalidTicket
        | InvalidCredentials => StatusCode::UNAUTHORIZED,
        WrongPassword
        | UserMismatch
        | NotFriends
        | CannotMessageSelf
        | CannotBefriendSelf
        | NotGroupMember
        | NotGroupAdmin
        | NotGroupOwner
        | InsufficientRole
        | NotConversationMember
        | FileForbidden
        | Forbidden
        | RecallWindowPassed
        | EditWindowPassed
        | Muted
        | Blocked => StatusCode::FORBIDDEN,
        NotFound | UserNotFound | FriendNotFound | RequestNotFound | GroupNotFound | MemberNotFound
        | ConversationNotFound | FileNotFound | MessageNotFound | ReactionNotFound | InvalidEmoji | InviteInvalid
        | PushDisabled => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        LengthRequired => StatusCode::LENGTH_REQUIRED,
        PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        UsernameTaken | PasswordChanged | AlreadyFriends | RequestPending | RequestNotPending | AlreadyOwner
        | CannotChangeOwner | OwnerMustTransfer | GroupFull | FileKindMismatch | SeqBeyondLast | AlreadyRecalled
        | NotEditable | TargetIsEvent | TooManyReactions | ClientMsgIdReused | InvalidReply | InvalidMention
        | InvalidForward | MuteInPast => StatusCode::CONFLICT,
        PayloadTooLarge | FileTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        UnsupportedContentType | UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        InvalidUsername
        | InvalidPassword
        | InvalidNickname
        | InvalidSex
        | InvalidText
        | InvalidClientMsgId
        | InvalidConversationId
        | InvalidRecipient
        | InvalidMessage
        | InvalidGroupName
        | InvalidMembers
        | InvalidSeq
        | InvalidLimit
        | InvalidQuery
        | InvalidDevice
        | InvalidFile
        | FileRequired
        | MissingFile
        | EmptyFile
        | UnexpectedField
        | VoiceTooLong
        | InvalidAnnouncement
        | InvalidRemark
        | InvalidDraft
        | InvalidInvite
        | InvalidPushEndpoint
        | InvalidPushKeys => StatusCode::UNPROCESSABLE_ENTITY,
        RateLimited | UploadQuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Draining | AtCapacity | Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// What went wrong, as the client is told it: a stable [`ErrorCode`] (whose HTTP status [`status_of`] gives) and
/// a human `message`. Server faults (`Internal`) carry their cause for the log; their body never shows it.
#[derive(Debug)]
pub struct AppError {
    code: ErrorCode,
    message: String,
    retry_after: Option<u64>,
    close_connection: bool,
    source: Option<anyhow::Error>,
}

/// The JSON body of every error reply.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable snake_case code, e.g. `username_taken`.
    pub code: ErrorCode,
    /// Human-readable explanation; wording may change.
    pub message: String,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// An error answered with `code`'s status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after: None, close_connection: false, source: None }
    }
    /// 429 `rate_limited`, to be retried after `retry_after_secs` (at least 1).
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::new(ErrorCode::RateLimited, format!("too many requests; retry in {retry_after_secs} s"))
            .retry_after(retry_after_secs)
    }
    /// Adds a `Retry-After` of `secs` seconds (at least 1).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
    /// A server fault: logged with its cause chain, answered with an opaque 500.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(ErrorCode::Internal, "internal server error");
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
        status_of(self.code)
    }
    pub fn code(&self) -> ErrorCode {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code, message: self.message.clone() }
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
            return Self::new(ErrorCode::MissingToken, "an `Authorization: Bearer <token>` header is required");
        }
        if let Some(e) = err.downcast_ref::<oe::ParseRequestPayloadError>() {
            return Self::new(ErrorCode::InvalidBody, format!("the request body is not valid: {}", e.reason));
        }
        if let Some(e) = err.downcast_ref::<oe::ParseParamError>() {
            return Self::new(ErrorCode::InvalidParameter, format!("parameter `{}`: {}", e.name, e.reason));
        }
        if let Some(e) = err.downcast_ref::<oe::ParsePathError>() {
            return Self::new(ErrorCode::InvalidParameter, format!("path parameter `{}`: {}", e.name, e.reason));
        }
        if let Some(e) = err.downcast_ref::<oe::ParseMultipartError>() {
            return Self::new(ErrorCode::InvalidMultipart, format!("the multipart body is not valid: {}", e.reason));
        }
        if err.is::<oe::ContentTypeError>() {
            return Self::new(ErrorCode::UnsupportedContentType, text);
        }
        // Any other client error of the framework keeps its status where the table has a code for it, and is a
        // plain 400 otherwise.
        let code = match status {
            StatusCode::NOT_FOUND => return Self::new(ErrorCode::NotFound, "no such route"),
            StatusCode::METHOD_NOT_ALLOWED => return Self::new(ErrorCode::MethodNotAllowed, "method not allowed"),
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedContentType,
            StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
            StatusCode::LENGTH_REQUIRED => ErrorCode::LengthRequired,
            StatusCode::PRECONDITION_FAILED => ErrorCode::PreconditionFailed,
            StatusCode::RANGE_NOT_SATISFIABLE => ErrorCode::RangeNotSatisfiable,
            s if s.is_client_error() => ErrorCode::BadRequest,
            _ => return Self::internal(anyhow::anyhow!("{text}")),
        };
        Self::new(code, text)
    }

    /// The one mapping from error to HTTP reply. 5xx causes are logged here and never shown to the client.
    pub fn to_response(&self) -> Response {
        let status = self.status();
        if self.code == ErrorCode::Unavailable {
            // An engine outage, not a bug: one warning per refused request (the outage itself is in /readyz and
            // the metrics), so that ERROR lines stay the ones someone must read.
            match &self.source {
                Some(src) => tracing::warn!(code = %self.code, error = ?src, "request refused"),
                None => tracing::warn!(code = %self.code, message = %self.message, "request refused"),
            }
        } else if status.is_server_error() {
            match &self.source {
                Some(src) => tracing::error!(code = %self.code, error = ?src, "request failed"),
                None => tracing::error!(code = %self.code, message = %self.message, "request failed"),
            }
        }
        let mut resp = Json(self.body()).into_response().with_status(status).into_response();
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
        status_of(self.code)
    }
    fn as_response(&self) -> Response {
        self.to_response()
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::from(crate::store::StoreError::from(e))
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        AppError::new(e.code, e.message)
    }
}

/// How long a client should wait before trying again while the database is unreachable: about what a restart of
/// Postgres or a failover takes to start answering.
const UNAVAILABLE_RETRY_SECS: u64 = 2;

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "the database is unreachable");
                AppError::new(ErrorCode::Unavailable, "the database is unreachable; try again shortly")
                    .retry_after(UNAVAILABLE_RETRY_SECS)
            }
            e => AppError::internal(e),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        // A database that cannot be reached is a 503 whichever layer wrapped it.
        let unreachable = e.chain().any(|cause| {
            matches!(cause.downcast_ref::<crate::store::StoreError>(), Some(crate::store::StoreError::Unavailable(_)))
                || cause.downcast_ref::<sqlx::Error>().is_some_and(crate::store::unreachable)
        });
        if unreachable {
            return AppError::from(crate::store::StoreError::Unavailable(format!("{e:#}")));
        }
        AppError::internal(e)
    }
}

/// Every error status an endpoint of this API may answer with, documented once for the OpenAPI document; each
/// description ends with the codes [`status_of`] gives that status.
const DOCUMENTED: &[(u16, &str)] = &[
    (400, "Malformed request: bad JSON, wrong types, missing fields, bad parameters"),
    (401, "Missing, invalid, expired or revoked token; wrong credentials"),
    (403, "Authenticated but not allowed to touch this resource"),
    (404, "No such resource (or not visible to the caller)"),
    (409, "Conflicts with the current state"),
    (413, "Payload too large"),
    (415, "Unsupported media type"),
    (422, "Well-formed but invalid values"),
    (429, "Rate limited; see `Retry-After`"),
    (500, "Server fault (opaque body; the cause is in the server log)"),
    (503, "Not ready, or at capacity"),
];

/// [`DOCUMENTED`] with each status's codes appended, built once (the registry wants `'static` text).
fn documented() -> &'static [(u16, &'static str)] {
    static TABLE: std::sync::OnceLock<Vec<(u16, &'static str)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        DOCUMENTED
            .iter()
            .map(|(status, text)| {
                let codes: Vec<String> = ErrorCode::ALL
                    .iter()
                    .filter(|c| status_of(**c).as_u16() == *status)
                    .map(|c| format!("`{}`", c.as_str()))
                    .collect();
                let full = format!("{text}. Codes: {}.", codes.join(", "));
                (*status, &*Box::leak(full.into_boxed_str()))
            })
            .collect()
    })
}

impl ApiResponse for AppError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: documented()
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
