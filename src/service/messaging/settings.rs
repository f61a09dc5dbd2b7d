//! A user's own side of a conversation (DESIGN.md §8): muted, pinned, draft, and clearing it for themselves.

use super::Messaging;
use crate::domain::frame::ServerFrame;
use crate::domain::model::Conversation;
use crate::domain::ConversationId;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::store::SettingsChange;

impl Messaging {
    /// Changes the caller's settings of a conversation (DESIGN.md §8) and tells their other devices
    /// (`conversation_updated`). A direct conversation with a friend that has no message yet gets the caller's
    /// side (to keep a draft or a pin).
    /// `draft`: `Some("")` (or only blanks) removes it; none leaves it.
    pub async fn update_settings(
        &self,
        user: i64,
        conversation_id: &str,
        muted: Option<bool>,
        pinned: Option<bool>,
        draft: Option<&str>,
    ) -> AppResult<Conversation> {
        let draft = draft.map(crate::domain::text::draft).transpose()?;
        let change = SettingsChange { muted, pinned, draft };
        let access = self.access(user, conversation_id).await?;
        // A side of a direct conversation not yet written in is made only with a friend (a draft to them);
        // anyone else's is 404 like any conversation the caller has no side of.
        let create = match access.conversation {
            ConversationId::Direct { low, high } => {
                let peer = access.conversation.peer_of(user).unwrap_or_default();
                self.stores.friends.are_friends(user, peer).await?.then_some((low, high))
            }
            ConversationId::Group(_) => None,
        };
        let row = self
            .stores
            .conversations
            .update_settings(user, conversation_id, &change, create)
            .await?
            .ok_or_else(|| AppError::new(ErrorCode::ConversationNotFound, "no such conversation of yours"))?;
        let conversation = self
            .conversation_views(user, vec![row])
            .await?
            .pop()
            .ok_or_else(|| AppError::new(ErrorCode::ConversationNotFound, "no such conversation of yours"))?;
        self.events
            .publish(&[user], &ServerFrame::ConversationUpdated { conversation: Box::new(conversation.clone()) })
            .await;
        Ok(conversation)
    }

    /// Clears a conversation for the caller (DESIGN.md §8): its history up to now is hidden on all their
    /// devices, it counts as read and leaves their list until the next message. Their devices get
    /// `conversation_cleared`.
    pub async fn clear(&self, user: i64, conversation_id: &str) -> AppResult<()> {
        self.access(user, conversation_id).await?;
        let Some(seq) = self.stores.conversations.clear(user, conversation_id).await? else {
            return Err(AppError::new(ErrorCode::ConversationNotFound, "no such conversation of yours"));
        };
        let frame = ServerFrame::ConversationCleared { conversation_id: conversation_id.to_string(), seq };
        self.events.publish(&[user], &frame).await;
        Ok(())
    }
}
