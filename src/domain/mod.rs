//! Pure types and rules of the chat domain: parse-don't-validate newtypes and identifiers, no I/O.

mod conversation;
pub mod error;
pub mod frame;
pub mod group;
pub mod model;
pub mod push;
pub mod schema;
pub mod search;
pub mod text;
mod user;

pub use conversation::{ConversationHead, ConversationId};
pub use error::{DomainError, ErrorCode};
pub use text::{ClientMsgId, MessageText};
pub use user::{fold, user_query, Nickname, Password, Sex, Username};

/// Largest id the API hands out: JSON numbers stay exact in JavaScript below 2^53.
pub const MAX_ID: i64 = (1 << 53) - 1;
