//! `/api/messages/*` and `/api/conversations`: sending, history, read cursors, the conversation list.

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::auth::BearerAuth;
use super::dto::ReadBody;
use super::ApiTags;
use crate::domain::model::{Conversation, HistoryPage, Message, SendMessage};
use crate::error::AppError;
use crate::state::AppState;

pub struct MessagesApi;

#[derive(ApiResponse)]
enum Sent {
    /// Stored and on its way.
    #[oai(status = 201)]
    Created(Json<Message>),
    /// A repeat of an earlier `client_msg_id`: the message that send created.
    #[oai(status = 200)]
    Repeated(Json<Message>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[OpenApi(tag = "ApiTags::Messages")]
impl MessagesApi {
    /// Send a message to a friend (`to_user_id`) or a group (`group_id`). Durable before the reply.
    #[oai(path = "/api/messages/send", method = "post", operation_id = "sendMessage")]
    async fn send(&self, state: Data<&AppState>, auth: BearerAuth, body: Json<SendMessage>) -> Result<Sent, AppError> {
        let (message, created) = state.messaging.send(auth.user_id(), body.0).await?;
        Ok(if created { Sent::Created(Json(message)) } else { Sent::Repeated(Json(message)) })
    }

    /// A page of a conversation's messages, ascending by seq. Without cursors: the latest page.
    #[oai(path = "/api/messages/history", method = "get", operation_id = "messageHistory")]
    async fn history(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        conversation_id: Query<String>,
        before_seq: Query<Option<i64>>,
        after_seq: Query<Option<i64>>,
        /// 1–100, default 50.
        limit: Query<Option<i64>>,
    ) -> Result<Json<HistoryPage>, AppError> {
        let page =
            state.messaging.history(auth.user_id(), &conversation_id, before_seq.0, after_seq.0, limit.0).await?;
        Ok(Json(page))
    }

    /// Mark a conversation read up to `seq`; the other side gets a `read` receipt.
    #[oai(path = "/api/messages/read", method = "post", operation_id = "markRead")]
    async fn read(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ReadBody>,
    ) -> Result<NoContent, AppError> {
        state.messaging.mark_read(auth.user_id(), &body.conversation_id, body.seq).await?;
        Ok(NoContent::Done)
    }

    /// The caller's conversations, most recent first, with unread counts.
    #[oai(path = "/api/conversations", method = "get", operation_id = "listConversations")]
    async fn conversations(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
    ) -> Result<Json<Vec<Conversation>>, AppError> {
        Ok(Json(state.messaging.conversations(auth.user_id()).await?))
    }
}
