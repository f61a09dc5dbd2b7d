//! Pure types and rules of the chat domain: parse-don't-validate newtypes and identifiers, no I/O.

mod conversation;
pub mod frame;
pub mod model;
pub mod schema;
pub mod text;
mod user;

pub use conversation::ConversationId;
pub use text::{ClientMsgId, MessageText};
pub use user::{Nickname, Password, Sex, Username};

/// A value that broke a domain rule; `code` is the stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    pub code: &'static str,
    pub message: String,
    /// The value is well-formed but names nothing that can exist (a conversation of a user with themselves, an
    /// id beyond the ids handed out): answered as "not found" rather than "invalid".
    pub names_nothing: bool,
}

impl DomainError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), names_nothing: false }
    }
    pub fn names_nothing(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), names_nothing: true }
    }
}

impl From<DomainError> for crate::error::AppError {
    fn from(e: DomainError) -> Self {
        if e.names_nothing {
            crate::error::AppError::not_found(e.code, e.message)
        } else {
            crate::error::AppError::invalid(e.code, e.message)
        }
    }
}

/// Largest id the API hands out: JSON numbers stay exact in JavaScript below 2^53.
pub const MAX_ID: i64 = (1 << 53) - 1;
