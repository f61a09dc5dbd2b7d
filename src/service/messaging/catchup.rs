//! Summary-first catch-up after a long absence (DESIGN.md §12): the heads of the conversations that changed,
//! their newest messages, and older ones a page at a time when the device asks.

use std::collections::HashMap;

use super::Messaging;
use crate::domain::model::Conversation;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::inbox::Want;

/// Largest `tail` a device may ask for; the default is [`DEFAULT_TAIL`].
pub const MAX_TAIL: i64 = 100;
/// Newest messages sent per changed conversation after a `summary` (DESIGN.md §12).
pub const DEFAULT_TAIL: i64 = 20;

/// One page of an on-demand read: the messages and whether the range holds more after them.
pub struct Page {
    pub messages: Vec<crate::domain::model::Message>,
    pub more: bool,
}

impl Messaging {
    /// The user's conversations with something after `written(c)` (the device's cursor, or what its socket was
    /// sent): their list entries (last message, unread, mention flag) for `summary`, and for each the read of its
    /// newest `tail` seqs, in the list's order. A read covers at most `tail` seqs of one conversation.
    pub async fn summary(
        &self,
        user: i64,
        written: impl Fn(&str) -> i64,
        tail: i64,
    ) -> AppResult<(Vec<Conversation>, Vec<Want>)> {
        let changed: Vec<_> = self
            .stores
            .messages
            .user_conversations(user)
            .await?
            .into_iter()
            .filter(|r| r.last_seq > written(&r.conversation_id).max(r.visible_from_seq))
            .collect();
        let mut floors: HashMap<String, i64> = changed
            .iter()
            .map(|r| (r.conversation_id.clone(), written(&r.conversation_id).max(r.visible_from_seq)))
            .collect();
        let views = self.conversation_views(user, changed).await?;
        let wants = views
            .iter()
            .map(|c| Want {
                conversation_id: c.conversation_id.clone(),
                after: (c.last_seq - tail).max(floors.remove(&c.conversation_id).unwrap_or(0)),
                upto: c.last_seq,
            })
            .collect();
        Ok((views, wants))
    }

    /// Up to `limit` of the conversation's messages with seq in `(after_seq, upto]` that the user may see,
    /// oldest first, and whether the range holds more. 422 `invalid_seq` for a negative `after_seq`; the
    /// conversation's access errors as for history.
    pub async fn page(
        &self,
        user: i64,
        conversation_id: &str,
        after_seq: i64,
        upto: i64,
        limit: usize,
    ) -> AppResult<Page> {
        if after_seq < 0 {
            return Err(AppError::new(ErrorCode::InvalidSeq, "after_seq must not be negative"));
        }
        let access = self.access(user, conversation_id).await?;
        let after = after_seq.max(access.visible_from);
        let upto = upto.min(access.last_seq);
        if upto <= after {
            return Ok(Page { messages: Vec::new(), more: false });
        }
        let want = Want { conversation_id: conversation_id.to_owned(), after, upto };
        let (messages, last_read) = self.catch_up_read(user, &[want], limit).await?;
        Ok(Page { messages, more: last_read.is_some_and(|s| s < upto) })
    }
}
