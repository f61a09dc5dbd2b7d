//! Finding messages (DESIGN.md §10): search across or inside the caller's conversations, and who has read one
//! of them.

use super::Messaging;
use crate::domain::model::{MessageReaders, MessageType, SearchPage};
use crate::domain::search::message_query;
use crate::error::{AppError, AppResult, ErrorCode};

/// Largest page of search results (DESIGN.md §10).
pub const MAX_SEARCH_PAGE: i64 = 50;
/// Search page size when none is asked for.
pub const DEFAULT_SEARCH_PAGE: i64 = 20;

impl Messaging {
    /// Content messages the caller can see that match `q` (DESIGN.md §10), newest first, older than
    /// `before_id` when given, only in `conversation_id` when given.
    ///
    /// Errors: 422 `invalid_query` (empty, over 100 characters, controls), 422 `invalid_limit` (outside 1–50),
    /// 400 `invalid_parameter` (`before_id` below 1);
    /// with `conversation_id`, as history for a conversation the caller has no side of.
    pub async fn search(
        &self,
        user: i64,
        q: &str,
        conversation_id: Option<&str>,
        limit: Option<i64>,
        before_id: Option<i64>,
    ) -> AppResult<SearchPage> {
        let query = message_query(q)?;
        let limit = limit.unwrap_or(DEFAULT_SEARCH_PAGE);
        if !(1..=MAX_SEARCH_PAGE).contains(&limit) {
            return Err(AppError::new(ErrorCode::InvalidLimit, "limit must be 1 to 50"));
        }
        if before_id.is_some_and(|b| b < 1) {
            return Err(AppError::new(ErrorCode::InvalidParameter, "before_id must be a message id (1 or more)"));
        }
        if let Some(c) = conversation_id {
            self.access(user, c).await?;
        }
        let before = before_id.unwrap_or(i64::MAX);
        let mut rows = self.stores.search.search(user, &query, conversation_id, before, limit + 1).await?;
        let has_more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(SearchPage { results: self.render(rows).await?, has_more })
    }

    /// Who of the message's conversation has read it (`read_seq` at or past its seq) and who has not: every
    /// current party but its sender, leaving out members who joined after it. Asked by anyone who can see the
    /// message; 404 `message_not_found` otherwise (as for a message that does not exist).
    pub async fn readers(&self, user: i64, id: i64) -> AppResult<MessageReaders> {
        let record = self.visible_message(user, id).await?;
        if !MessageType::parse(&record.kind).is_content() {
            return Err(AppError::new(ErrorCode::MessageNotFound, "no such message"));
        }
        let (mut read, mut unread) = (Vec::new(), Vec::new());
        for (member, read_seq, joined) in self.stores.conversations.read_cursors(&record.conversation_id).await? {
            if member == record.from_user_id || joined >= record.seq {
                continue;
            }
            if read_seq >= record.seq {
                read.push(member);
            } else {
                unread.push(member);
            }
        }
        Ok(MessageReaders { read, unread })
    }
}
