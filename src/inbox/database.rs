//! The database-backed inbox: the messages table itself, read per conversation from the device's cursor.

use std::sync::Arc;

use async_trait::async_trait;

use super::{merge, Inbox, Want};
use crate::store::{MessageRecord, MessageStore};

#[derive(Clone)]
pub struct DatabaseInbox {
    messages: Arc<dyn MessageStore>,
}

impl DatabaseInbox {
    pub fn new(messages: Arc<dyn MessageStore>) -> Self {
        Self { messages }
    }

    pub(crate) async fn read_want(&self, w: &Want, limit: usize) -> anyhow::Result<Vec<MessageRecord>> {
        Ok(self
            .messages
            .messages_between(&w.conversation_id, w.after, w.upto.saturating_add(1), limit as i64, false)
            .await?)
    }
}

#[async_trait]
impl Inbox for DatabaseInbox {
    async fn append(&self, _users: &[i64], _message: &MessageRecord) {}

    async fn read(&self, _user: i64, wants: &[Want], limit: usize) -> anyhow::Result<Vec<MessageRecord>> {
        let mut all = Vec::new();
        for w in wants {
            all.extend(self.read_want(w, limit).await?);
        }
        Ok(merge(all, limit))
    }

    fn name(&self) -> &'static str {
        "database"
    }
}
