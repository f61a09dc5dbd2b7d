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
}

impl DomainError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<DomainError> for crate::error::AppError {
    fn from(e: DomainError) -> Self {
        crate::error::AppError::invalid(e.code, e.message)
    }
}

/// Largest id the API hands out: JSON numbers stay exact in JavaScript below 2^53.
pub const MAX_ID: i64 = (1 << 53) - 1;
