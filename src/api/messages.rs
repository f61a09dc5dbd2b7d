//! `/api/messages/*` and `/api/conversations`: sending, history, read cursors, the conversation list.

use std::borrow::Cow;

use crate::domain::schema::{fields, Int, Str};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::Value;

use super::auth::BearerAuth;
use super::dto::{EditBody, ForwardBody, ReadBody};
use super::ApiTags;
use crate::domain::model::{Conversation, HistoryPage, Message, MessageReaders, SearchPage, SendMessage};
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
enum Forwarded {
    /// The new messages, in the order of their sources.
    #[oai(status = 201)]
    Created(Json<Vec<Message>>),
}

#[derive(ApiResponse)]
enum Changed {
    /// The event that records the change (or, for a repeat, the earlier one).
    #[oai(status = 200)]
    Ok(Json<Message>),
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
    async fn send(&self, state: Data<&AppState>, auth: BearerAuth, body: Json<SendRequest>) -> Result<Sent, AppError> {
        let (message, created) = state.messaging.send(auth.user_id(), body.0 .0).await?;
        Ok(if created { Sent::Created(Json(message)) } else { Sent::Repeated(Json(message)) })
    }

    /// A page of a conversation's messages, ascending by seq. Without cursors: the latest page.
    #[oai(path = "/api/messages/history", method = "get", operation_id = "messageHistory")]
    async fn history(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        conversation_id: Query<Str<fields::ConversationId>>,
        /// Messages before this seq (newest first, returned ascending).
        before_seq: Query<Option<Int<1, { i64::MAX }>>>,
        /// Messages after this seq (oldest first).
        after_seq: Query<Option<Int<0, { i64::MAX }>>>,
        /// 1–100, default 50.
        limit: Query<Option<Int<1, 100>>>,
    ) -> Result<Json<HistoryPage>, AppError> {
        let (before, after, limit) = (before_seq.0.map(|v| v.0), after_seq.0.map(|v| v.0), limit.0.map(|v| v.0));
        let page = state.messaging.history(auth.user_id(), &conversation_id, before, after, limit).await?;
        Ok(Json(page))
    }

    /// Search the caller's messages (DESIGN.md §10), newest first. Chinese, Japanese and Korean text matches
    /// without spaces (two or more such characters match where they stand in that order, one matches any
    /// message holding it); other words match case-insensitively, the last one also as a prefix; emoji match
    /// themselves; `%` and `_` are plain characters. Only what the caller can see: their side of each
    /// conversation from when they joined it, never recalled messages or ones they deleted for themselves.
    #[oai(path = "/api/messages/search", method = "get", operation_id = "searchMessages")]
    async fn search(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// 1–100 characters.
        q: Query<Str<fields::MessageQuery>>,
        /// Only this conversation.
        conversation_id: Query<Option<Str<fields::ConversationId>>>,
        /// 1–50, default 20.
        limit: Query<Option<Int<1, 50>>>,
        /// Only messages older than this one (the last result's id of the previous page).
        before_id: Query<Option<Int<1, { i64::MAX }>>>,
    ) -> Result<Json<SearchPage>, AppError> {
        let conversation = conversation_id.0.as_ref().map(|c| c.as_str());
        let page = state
            .messaging
            .search(auth.user_id(), &q, conversation, limit.0.map(|v| v.0), before_id.0.map(|v| v.0))
            .await?;
        Ok(Json(page))
    }

    /// Who has read a message and who has not yet (DESIGN.md §10): the conversation's parties but its sender,
    /// without members who joined after it. For a client's "3 unread" under a group message.
    #[oai(path = "/api/messages/:messageId/readers", method = "get", operation_id = "messageReaders")]
    async fn readers(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<i64>,
    ) -> Result<Json<MessageReaders>, AppError> {
        Ok(Json(state.messaging.readers(auth.user_id(), message_id.0).await?))
    }

    /// Mark a conversation read up to `seq`; the other side gets a `read` receipt.
    #[oai(path = "/api/messages/read", method = "post", operation_id = "markRead")]
    async fn read(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ReadBody>,
    ) -> Result<NoContent, AppError> {
        state.messaging.mark_read(auth.user_id(), &body.conversation_id, body.seq.0).await?;
        Ok(NoContent::Done)
    }

    /// Recall a message: its sender within `GOCHAT_RECALL_WINDOW`, a group's owner or admins at any time. Its
    /// text and file are gone everywhere afterwards; the reply is the `recall` event.
    #[oai(path = "/api/messages/:messageId/recall", method = "post", operation_id = "recallMessage")]
    async fn recall(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<i64>,
    ) -> Result<Changed, AppError> {
        let (event, _) = state.messaging.recall(auth.user_id(), message_id.0, None).await?;
        Ok(Changed::Ok(Json(event)))
    }

    /// Edit one's own text message within `GOCHAT_EDIT_WINDOW`; the reply is the `edit` event.
    #[oai(path = "/api/messages/:messageId", method = "put", operation_id = "editMessage")]
    async fn edit(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<i64>,
        body: Json<EditBody>,
    ) -> Result<Changed, AppError> {
        let cmid = body.0.client_msg_id.as_deref();
        let (event, _) = state.messaging.edit(auth.user_id(), message_id.0, &body.0.text, cmid).await?;
        Ok(Changed::Ok(Json(event)))
    }

    /// Delete a message for me: gone from my history, previews and unread counts on all my devices.
    #[oai(path = "/api/messages/:messageId", method = "delete", operation_id = "hideMessage")]
    async fn hide(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<i64>,
    ) -> Result<NoContent, AppError> {
        state.messaging.hide(auth.user_id(), message_id.0).await?;
        Ok(NoContent::Done)
    }

    /// React to a message with one emoji (at most 20 different ones per message); repeating it changes nothing.
    #[oai(path = "/api/messages/:messageId/reactions/:emoji", method = "put", operation_id = "addReaction")]
    async fn add_reaction(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<i64>,
        emoji: Path<Str<fields::Emoji>>,
    ) -> Result<Changed, AppError> {
        let (event, _) = state.messaging.react(auth.user_id(), message_id.0, &emoji.0, true).await?;
        Ok(Changed::Ok(Json(event)))
    }

    /// Take back one's reaction; repeating it changes nothing (404 `reaction_not_found` if there never was one).
    #[oai(path = "/api/messages/:messageId/reactions/:emoji", method = "delete", operation_id = "removeReaction")]
    async fn remove_reaction(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "messageId")] message_id: Path<i64>,
        emoji: Path<Str<fields::Emoji>>,
    ) -> Result<Changed, AppError> {
        let (event, _) = state.messaging.react(auth.user_id(), message_id.0, &emoji.0, false).await?;
        Ok(Changed::Ok(Json(event)))
    }

    /// Forward messages of one conversation to a friend or a group: one message each, or one `merged` message.
    #[oai(path = "/api/messages/forward", method = "post", operation_id = "forwardMessages")]
    async fn forward(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<ForwardRequest>,
    ) -> Result<Forwarded, AppError> {
        let b = body.0 .0;
        let merged = b.merged.unwrap_or(false);
        let sent = state.messaging.forward(auth.user_id(), &b.message_ids, b.to_user_id, b.group_id, merged).await?;
        Ok(Forwarded::Created(Json(sent)))
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

    /// Change the caller's settings of a conversation: muted (no notifications but for mentions; it still counts
    /// unread), pinned (listed first), the draft ("" removes it). The caller's other devices get
    /// `conversation_updated`.
    #[oai(
        path = "/api/conversations/:conversation_id/settings",
        method = "put",
        operation_id = "updateConversationSettings"
    )]
    async fn update_settings(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        conversation_id: Path<Str<fields::ConversationId>>,
        body: Json<SettingsBody>,
    ) -> Result<Json<Conversation>, AppError> {
        let (muted, pinned, draft) = (body.muted, body.pinned, body.draft.as_deref());
        Ok(Json(state.messaging.update_settings(auth.user_id(), &conversation_id.0, muted, pinned, draft).await?))
    }

    /// Clear a conversation for the caller: its history up to now is hidden on all their devices (which get
    /// `conversation_cleared`), it counts as read, and it leaves their list until the next message.
    #[oai(path = "/api/conversations/:conversation_id", method = "delete", operation_id = "clearConversation")]
    async fn clear(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        conversation_id: Path<Str<fields::ConversationId>>,
    ) -> Result<NoContent, AppError> {
        state.messaging.clear(auth.user_id(), &conversation_id.0).await?;
        Ok(NoContent::Done)
    }
}

/// `PUT /api/conversations/{conversation_id}/settings`: the settings to change (absent or null: unchanged).
#[derive(Debug, poem_openapi::Object)]
pub struct SettingsBody {
    #[oai(nullable)]
    muted: Option<bool>,
    #[oai(nullable)]
    pinned: Option<bool>,
    /// Up to 4,000 characters, no controls but tab and line breaks; "" (or only blanks) removes it.
    #[oai(nullable)]
    draft: Option<Str<fields::Draft>>,
}

/// The body of `POST /api/messages/send`: [`SendMessage`], with a schema that also states its rules across
/// fields, so that a body the schema allows is never refused for a rule it hides: exactly one of `to_user_id`
/// and `group_id`; a `text` message has `text` and no `file_id`; an `image` or `video` message has a `file_id`.
/// (Whether the file is the caller's and of the right kind depends on what was uploaded, not on the body.)
pub struct SendRequest(pub SendMessage);

impl Type for SendRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "SendMessage".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference("SendMessage".into())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>("SendMessage".into(), |registry| {
            <SendMessage as Type>::register(registry);
            let mut schema = registry.schemas.remove("SendMessageFields").unwrap_or_else(|| MetaSchema::new("object"));
            schema.title = Some("SendMessage".into());
            schema.description = Some(
                "A message to send: exactly one of `to_user_id` and `group_id` (mentions only with `group_id`); a \
                 `text` message has `text` and no \
                 `file_id`; an `image`, `video`, `voice` or `file` message has the `file_id` of an upload of that \
                 kind (and may have `text` as a caption). The same object is the `message` of the WebSocket `send` frame.",
            );
            let object = |required: &'static str, properties: Vec<(&'static str, MetaSchemaRef)>| {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    required: vec![required],
                    properties,
                    ..MetaSchema::new("object")
                }))
            };
            // Present and not null.
            let integer = || MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("integer", "int64")));
            let string = || MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")));
            // Absent (or null, which reads as absent).
            let absent = || {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    nullable: true,
                    enum_items: vec![Value::Null],
                    ..MetaSchema::new_with_format("integer", "int64")
                }))
            };
            // Only these values (an absent field is allowed too).
            let nothing = |values: &[Value]| {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    nullable: values.contains(&Value::Null),
                    enum_items: values.to_vec(),
                    ..MetaSchema::ANY
                }))
            };
            let kinds = |kinds: &[&str]| {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    enum_items: kinds.iter().map(|k| Value::from(*k)).collect(),
                    ..MetaSchema::new("string")
                }))
            };
            let one_of = |one_of| MetaSchemaRef::Inline(Box::new(MetaSchema { one_of, ..MetaSchema::ANY }));
            schema.all_of = vec![
                one_of(vec![
                    // Mentions are for group messages only.
                    object(
                        "to_user_id",
                        vec![
                            ("to_user_id", integer()),
                            ("group_id", absent()),
                            ("mention_user_ids", nothing(&[Value::Null, Value::Array(vec![])])),
                            ("mention_all", nothing(&[Value::Null, Value::Bool(false)])),
                        ],
                    ),
                    object("group_id", vec![("group_id", integer()), ("to_user_id", absent())]),
                ]),
                one_of(vec![
                    object("text", vec![("type", kinds(&["text"])), ("text", string()), ("file_id", absent())]),
                    object("file_id", vec![("type", kinds(&["image", "video", "voice", "file"])), ("file_id", integer())]),
                ]),
            ];
            schema
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromJSON for SendRequest {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        SendMessage::parse_from_json(value).map(SendRequest).map_err(ParseError::propagate)
    }
}

impl ToJSON for SendRequest {
    fn to_json(&self) -> Option<Value> {
        self.0.to_json()
    }
}

/// The body of `POST /api/messages/forward`: [`ForwardBody`], with a schema that also states that exactly one of
/// `to_user_id` and `group_id` is given (so that a body the schema allows is never refused for it).
pub struct ForwardRequest(pub ForwardBody);

impl Type for ForwardRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "ForwardMessages".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference("ForwardMessages".into())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>("ForwardMessages".into(), |registry| {
            <ForwardBody as Type>::register(registry);
            let mut schema = registry.schemas.remove("ForwardBody").unwrap_or_else(|| MetaSchema::new("object"));
            schema.title = Some("ForwardMessages".into());
            schema.description =
                Some("Messages of one conversation to forward: exactly one of `to_user_id` and `group_id`.");
            let integer = || MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("integer", "int64")));
            let absent = || {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    nullable: true,
                    enum_items: vec![Value::Null],
                    ..MetaSchema::new_with_format("integer", "int64")
                }))
            };
            let object = |required: &'static str, properties: Vec<(&'static str, MetaSchemaRef)>| {
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    required: vec![required],
                    properties,
                    ..MetaSchema::new("object")
                }))
            };
            schema.one_of = vec![
                object("to_user_id", vec![("to_user_id", integer()), ("group_id", absent())]),
                object("group_id", vec![("group_id", integer()), ("to_user_id", absent())]),
            ];
            schema
        });
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromJSON for ForwardRequest {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        ForwardBody::parse_from_json(value).map(ForwardRequest).map_err(ParseError::propagate)
    }
}

impl ToJSON for ForwardRequest {
    fn to_json(&self) -> Option<Value> {
        self.0.to_json()
    }
}
