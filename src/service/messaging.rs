//! Messaging: the send path (authorise → persist with the next seq → inbox → publish), history, read and
//! delivered cursors with their receipts, the conversation list, typing, and catching a device up. What later
//! changes a message (recall, edit, reactions, delete for me) is in [`lifecycle`].

mod catchup;
mod lifecycle;
mod search;
mod settings;

pub use catchup::{Page, DEFAULT_TAIL, MAX_TAIL};
pub use search::{DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use crate::delivery::Delivery;
use crate::domain::frame::ServerFrame;
use crate::domain::model::{
    Conversation, ConversationType, FileInfo, GroupRole, GroupSummary, HistoryPage, Mentions, Message, MessageExtras,
    MessageRef, MessageType, Reaction, ReceiptStatus, SendMessage, SendType, UserSummary,
};
use crate::domain::{ClientMsgId, ConversationHead, ConversationId, MessageText};
use crate::error::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::inbox::{SharedInbox, Want};
use crate::metrics::Metrics;
use crate::service::events::Events;
use crate::service::groups::Groups;
use crate::service::media::Media;
use crate::service::ratelimit::RateLimits;
use crate::service::receipts::ReadReceipts;
use crate::service::views;
use crate::store::{MessageRecord, NewMessage, StoreError, Stores, UserConversationRecord};

/// Largest history page.
pub const MAX_PAGE: i64 = 100;
/// History page size when none is asked for.
pub const DEFAULT_PAGE: i64 = 50;

/// Least time between two `typing` frames of one user in one conversation (on one node): a client sends one per
/// keystroke burst, and the other party's indicator lasts longer than this.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(3);

/// Typing gates kept before the expired ones are swept: typing users of a few seconds, far below it.
const TYPING_GATES: usize = 10_000;

/// Most users one message may mention.
pub const MAX_MENTIONS: usize = 100;
/// Characters of a quoted message's text in a reply's `reply_to` (DESIGN.md §7).
pub const QUOTE_CHARS: usize = 100;

/// How long after sending a message its sender may still change it (DESIGN.md §7).
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub recall: Duration,
    pub edit: Duration,
}

/// What a user may see of a conversation.
#[derive(Debug, Clone)]
pub struct Access {
    pub conversation: ConversationId,
    /// The user sees messages with `seq > visible_from`.
    pub visible_from: i64,
    pub last_seq: i64,
    pub read_seq: i64,
}

#[derive(Clone)]
pub struct Messaging {
    stores: Stores,
    groups: Groups,
    events: Events,
    inbox: SharedInbox,
    metrics: Metrics,
    limits: RateLimits,
    windows: Windows,
    receipts: ReadReceipts,
    /// When each (user, conversation) last had a `typing` frame sent, for [`TYPING_INTERVAL`].
    typing: Arc<Mutex<HashMap<(i64, String), Instant>>>,
}

impl Messaging {
    /// Wires the service to its peers (one argument per collaborator, all made once at startup).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stores: Stores,
        groups: Groups,
        events: Events,
        inbox: SharedInbox,
        metrics: Metrics,
        limits: RateLimits,
        windows: Windows,
        receipts: ReadReceipts,
    ) -> Self {
        Self { stores, groups, events, inbox, metrics, limits, windows, receipts, typing: Arc::default() }
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Whether and how far `user` may see `conversation_id`: 422 for a malformed id, 403 for someone else's.
    pub async fn access(&self, user: i64, conversation_id: &str) -> AppResult<Access> {
        let conversation: ConversationId = conversation_id.parse()?;
        let row = self.stores.messages.user_conversation(user, conversation_id).await?;
        match (conversation, row) {
            (ConversationId::Direct { low, high }, row) => {
                if user != low && user != high {
                    return Err(AppError::new(ErrorCode::NotConversationMember, "this is not your conversation"));
                }
                Ok(access_of(conversation, row.as_ref()))
            }
            (ConversationId::Group(_), Some(row)) => Ok(access_of(conversation, Some(&row))),
            (ConversationId::Group(g), None) => {
                // Not a member now: 404 or 403 as for a send (a stranger learns nothing of the group).
                self.groups.check_sender(g, user).await?;
                Err(AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group"))
            }
        }
    }

    /// Sends a message: validated, authorised, durable with its seq before this returns, then appended to the
    /// recipients' inboxes and published to every device of both parties. A repeated `client_msg_id` returns the
    /// first message with `false` and publishes nothing again.
    pub async fn send(&self, from: i64, req: SendMessage) -> AppResult<(Message, bool)> {
        self.limits.check_send(from)?;
        let client_msg_id =
            req.client_msg_id.as_deref().map(ClientMsgId::parse).transpose()?.map(ClientMsgId::into_string);
        // The text of a text message, or an image's or video's optional caption ("" for none): the same rules.
        let text = match (req.kind, req.text.as_deref()) {
            (SendType::Text, None) => {
                return Err(AppError::new(ErrorCode::InvalidText, "a text message needs text of 1 to 4000 characters"))
            }
            (SendType::Text, Some(t)) => Some(MessageText::parse(t)?.into_string()),
            (_, caption) => {
                caption.filter(|t| !t.is_empty()).map(MessageText::parse).transpose()?.map(MessageText::into_string)
            }
        };
        let file = match req.kind {
            SendType::Text => {
                if req.file_id.is_some() {
                    return Err(AppError::new(
                        ErrorCode::InvalidFile,
                        "file_id goes with image, video, voice and file messages only",
                    ));
                }
                None
            }
            SendType::Image | SendType::Video | SendType::Voice | SendType::File => {
                let file_id = req.file_id.ok_or_else(|| {
                    AppError::new(ErrorCode::FileRequired, "an image, video, voice or file message needs a file_id")
                })?;
                let file = match self.stores.files.file(file_id).await? {
                    Some(f) if f.uploader_id == from => f,
                    _ => return Err(AppError::new(ErrorCode::FileNotFound, "no such file among your uploads")),
                };
                if file.kind != req.kind.as_str() {
                    // 409: the body is fine; the file it names is of the other kind.
                    return Err(AppError::new(
                        ErrorCode::FileKindMismatch,
                        format!("file {file_id} is of kind {}, not {}", file.kind, req.kind.as_str()),
                    ));
                }
                Some(file)
            }
        };
        let (conversation, to_user_id, group_id) = destination(from, req.to_user_id, req.group_id)?;
        let mentions = self.mentions(from, group_id, req.mention_user_ids.as_deref(), req.mention_all).await?;
        if let Some(reply_to) = req.reply_to_id {
            self.check_reply(from, &conversation, reply_to).await?;
        }
        let mentioned: Vec<i64> = match &mentions {
            Some(m) if m.all => vec![0],
            Some(m) => m.user_ids.clone(),
            None => Vec::new(),
        };
        let new = NewMessage {
            conversation_id: conversation,
            from_user_id: from,
            to_user_id,
            group_id,
            kind: req.kind.as_str(),
            body: text,
            file_id: file.as_ref().map(|f| f.id),
            client_msg_id,
            reply_to_id: req.reply_to_id,
            meta: MessageExtras { mentions, ..Default::default() }.to_meta(),
            mentions: mentioned,
            forwarded: false,
            item_files: Vec::new(),
        };
        self.commit(from, new, file.as_ref().map(Media::info)).await
    }

    /// Appends an authorised message, then hands it to the recipients' inboxes and publishes it. A repeated
    /// `client_msg_id` returns the first message with `false` and publishes nothing again. `file` is the
    /// message's own file, when the caller has it (a bare message is then given without another query).
    async fn commit(&self, from: i64, new: NewMessage, file: Option<FileInfo>) -> AppResult<(Message, bool)> {
        let (group_id, to_user_id) = (new.group_id, new.to_user_id);
        let appended = match self.stores.messages.append(new).await {
            Ok(a) => a,
            Err(StoreError::NotFriends) => return Err(self.direct_refusal(from, to_user_id).await),
            Err(StoreError::NotMember | StoreError::Muted) => {
                if let Some(group) = group_id {
                    // 404 for an unknown or dissolved group, 403 for a former member or a muted one.
                    return Err(self.groups.sending_refusal(group, from).await);
                }
                return Err(AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group"));
            }
            Err(StoreError::FileGone) => {
                return Err(AppError::new(ErrorCode::FileNotFound, "no such file among your uploads"))
            }
            Err(e) => return Err(e.into()),
        };
        if !appended.created {
            if !MessageType::parse(&appended.message.kind).is_content() {
                return Err(AppError::new(
                    ErrorCode::ClientMsgIdReused,
                    "this client_msg_id was used for a change to a message; use a new one for each send",
                ));
            }
            let mut rendered = self.render(vec![appended.message]).await?;
            return Ok((rendered.remove(0), false));
        }
        self.metrics.messages_accepted.inc();
        let message =
            if appended.message.reply_to_id.is_some() || (appended.message.file_id.is_some() && file.is_none()) {
                self.render(vec![appended.message.clone()]).await?.remove(0)
            } else {
                let mut message = views::message(appended.message.clone());
                message.file = file;
                message
            };
        let delivery = Delivery::from_frame(&ServerFrame::Message { message: message.clone() });
        // Neither waits for Redis: both are queued on the node's one write pipeline, the inbox copy ahead of the
        // publish (a reader who sees the publish and a gap finds the copy), and the sender's reply only waits for
        // the commit above, which is what makes the message durable.
        self.inbox.append(&appended.recipients, &appended.message).await;
        self.events.publish_delivery(&appended.recipients, &delivery).await;
        Ok((message, true))
    }

    /// A page of history, ascending by seq: the newest `limit` before `before_seq` (or the latest), or the
    /// oldest `limit` after `after_seq`.
    pub async fn history(
        &self,
        user: i64,
        conversation_id: &str,
        before_seq: Option<i64>,
        after_seq: Option<i64>,
        limit: Option<i64>,
    ) -> AppResult<HistoryPage> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(AppError::new(ErrorCode::InvalidLimit, "limit must be 1 to 100"));
        }
        if before_seq.is_some_and(|s| s < 1) || after_seq.is_some_and(|s| s < 0) {
            return Err(AppError::new(ErrorCode::InvalidSeq, "before_seq must be positive and after_seq not negative"));
        }
        let access = self.access(user, conversation_id).await?;
        let after = after_seq.unwrap_or(0).max(access.visible_from);
        let before = before_seq.unwrap_or(i64::MAX);
        let newest = after_seq.is_none();
        let mut rows = self.stores.messages.history(user, conversation_id, after, before, limit + 1, newest).await?;
        let has_more = rows.len() as i64 > limit;
        if has_more {
            if newest {
                rows.remove(0);
            } else {
                rows.pop();
            }
        }
        self.redact_unseen_edits(user, &mut rows).await?;
        Ok(HistoryPage { messages: self.render(rows).await?, has_more })
    }

    /// Why a direct message (or change) to `to` was refused for want of a friendship: 403 `blocked` when
    /// either of the two blocked the other (blocking ends the friendship), else 403 `not_friends`.
    pub(crate) async fn direct_refusal(&self, from: i64, to: Option<i64>) -> AppError {
        if let Some(to) = to {
            if self.stores.friends.blocked_either(from, to).await.unwrap_or(false) {
                return AppError::new(ErrorCode::Blocked, "one of you blocked the other");
            }
        }
        AppError::new(ErrorCode::NotFriends, "you can only message your friends")
    }

    /// Moves the read cursor to `seq` and sends a `read` receipt to the other party (and the reader's devices).
    pub async fn mark_read(&self, user: i64, conversation_id: &str, seq: i64) -> AppResult<()> {
        let access = self.access(user, conversation_id).await?;
        if seq < 1 {
            return Err(AppError::new(ErrorCode::InvalidSeq, "seq must be at least 1"));
        }
        if seq > access.last_seq {
            return Err(AppError::new(
                ErrorCode::SeqBeyondLast,
                format!("the conversation's last seq is {}; nothing after it can be read", access.last_seq),
            ));
        }
        if self.stores.messages.mark_read(user, conversation_id, seq).await? {
            // A notification the user's other devices still show for what they just read is taken back (its
            // silent update goes through the push outbox). Best effort: the read itself is done.
            if let Err(e) = self.stores.push.note_read(user, conversation_id).await {
                tracing::warn!(error = %e, "a read could not take back shown push notifications");
            }
            let receipt = ServerFrame::Receipt {
                conversation_id: conversation_id.to_string(),
                user_id: user,
                status: ReceiptStatus::Read,
                seq,
            };
            if access.conversation.is_group() {
                // The reader's devices now; the senders of what the read covers, batched (not every member).
                self.events.publish(&[user], &receipt).await;
                let after = access.read_seq.max(access.visible_from);
                let senders = self.stores.conversations.senders_between(conversation_id, user, after, seq).await?;
                self.receipts.read(conversation_id, user, seq, &senders);
            } else {
                let mut to = self.others(user, &access.conversation).await;
                to.push(user);
                self.events.publish(&to, &receipt).await;
            }
        }
        Ok(())
    }

    /// A device confirmed everything up to `seq` (cumulative): move its cursor and tell the sender side.
    pub async fn ack(&self, user: i64, device: &str, conversation: &ConversationId, seq: i64) -> AppResult<()> {
        let id = conversation.to_string();
        self.stores.messages.ack(user, device, &id, seq).await?;
        if !conversation.is_group() {
            let receipt =
                ServerFrame::Receipt { conversation_id: id, user_id: user, status: ReceiptStatus::Delivered, seq };
            self.events.publish(&self.others(user, conversation).await, &receipt).await;
        }
        Ok(())
    }

    /// Tells the other party that `user` is typing. Authorised like a send (a friend, or a member of the
    /// group), and counted against the user's send rate, so that nobody else's screen can be flooded with it.
    pub async fn typing(&self, user: i64, conversation_id: &str) -> AppResult<()> {
        let access = self.access(user, conversation_id).await?;
        if let Some(peer) = access.conversation.peer_of(user) {
            if !self.stores.friends.are_friends(user, peer).await? {
                return Err(AppError::new(ErrorCode::NotFriends, "you can only message your friends"));
            }
        }
        self.limits.check_send(user)?;
        if !self.typing_due(user, conversation_id) {
            return Ok(());
        }
        let frame = ServerFrame::Typing { conversation_id: conversation_id.to_string(), user_id: user };
        self.events.publish(&self.others(user, &access.conversation).await, &frame).await;
        Ok(())
    }

    /// Whether a `typing` frame of `user` in the conversation may go out now (none in the last
    /// [`TYPING_INTERVAL`]); records it when so.
    fn typing_due(&self, user: i64, conversation_id: &str) -> bool {
        let now = Instant::now();
        let mut gates = self.typing.lock().unwrap_or_else(|e| e.into_inner());
        if gates.len() >= TYPING_GATES {
            gates.retain(|_, at| now.duration_since(*at) < TYPING_INTERVAL);
        }
        match gates.get_mut(&(user, conversation_id.to_owned())) {
            Some(at) if now.duration_since(*at) < TYPING_INTERVAL => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                gates.insert((user, conversation_id.to_owned()), now);
                true
            }
        }
    }

    /// The users other than `user` whom events about the conversation concern.
    async fn others(&self, user: i64, conversation: &ConversationId) -> Vec<i64> {
        match conversation {
            ConversationId::Direct { .. } => conversation.peer_of(user).into_iter().collect(),
            ConversationId::Group(g) => {
                self.groups.member_ids(*g).await.unwrap_or_default().into_iter().filter(|m| *m != user).collect()
            }
        }
    }

    /// The caller's conversations, pinned first, then most recently active, with last message and unread count.
    pub async fn conversations(&self, user: i64) -> AppResult<Vec<Conversation>> {
        let rows = self.stores.messages.user_conversations(user).await?;
        self.conversation_views(user, rows).await
    }

    /// The caller's conversations as the API gives them (one query per kind of detail, for all of them).
    pub(crate) async fn conversation_views(
        &self,
        user: i64,
        rows: Vec<UserConversationRecord>,
    ) -> AppResult<Vec<Conversation>> {
        let ids: Vec<String> = rows.iter().map(|r| r.conversation_id.clone()).collect();
        let lasts = self.stores.messages.last_messages(user, &ids).await?;
        let unread: HashMap<String, (i64, bool)> =
            self.stores.messages.unread(user).await?.into_iter().map(|(c, n, m)| (c, (n, m != 0))).collect();
        let mut last: HashMap<String, Message> =
            self.render(lasts).await?.into_iter().map(|m| (m.conversation_id.clone(), m)).collect();
        let peer_ids: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.conversation_id.parse::<ConversationId>().ok().and_then(|c| c.peer_of(user)))
            .collect();
        let peers = views::summaries(
            self.stores.users.users_by_ids(&peer_ids).await?,
            self.stores.friends.remarks(user, &peer_ids).await?,
        );
        let peers: HashMap<i64, UserSummary> = peers.into_iter().map(|u| (u.id, u)).collect();
        let mut groups: HashMap<i64, GroupSummary> = HashMap::new();
        for g in rows.iter().filter_map(|r| r.group_id) {
            if let Some(rec) = self.groups.record(g).await? {
                let avatar_url = rec.avatar_key.as_deref().map(views::avatar_url);
                groups.insert(g, GroupSummary { id: rec.id, name: rec.name, owner_id: rec.owner_id, avatar_url });
            }
        }
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let conversation: ConversationId = r.conversation_id.parse().ok()?;
                let (unread_count, mention_unread) = unread.get(&r.conversation_id).copied().unwrap_or((0, false));
                Some(Conversation {
                    kind: if conversation.is_group() { ConversationType::Group } else { ConversationType::Direct },
                    peer: conversation.peer_of(user).and_then(|p| peers.get(&p).cloned()),
                    group: r.group_id.and_then(|g| groups.get(&g).cloned()),
                    last_message: last.remove(&r.conversation_id).filter(|m| m.seq > r.visible_from_seq),
                    last_seq: r.last_seq,
                    read_seq: r.read_seq,
                    unread_count,
                    mention_unread,
                    muted: r.muted,
                    pinned: r.pinned,
                    draft: r.draft,
                    conversation_id: r.conversation_id,
                })
            })
            .collect())
    }

    /// The heads of every conversation of the user (for a device's catch-up).
    pub async fn heads(&self, user: i64) -> AppResult<Vec<ConversationHead>> {
        let records = self.stores.messages.user_conversations(user).await?;
        Ok(records
            .into_iter()
            .map(|r| ConversationHead {
                conversation_id: r.conversation_id,
                last_seq: r.last_seq,
                visible_from_seq: r.visible_from_seq,
            })
            .collect())
    }

    /// A device's delivered cursors.
    pub async fn cursors(&self, user: i64, device: &str) -> AppResult<HashMap<String, i64>> {
        Ok(self.stores.messages.device_cursors(user, device).await?.into_iter().collect())
    }

    /// What the device missed, oldest first, at most `limit`.
    ///
    /// The inbox may hold copies written before a message was edited or recalled: every content message is
    /// given in its current state, so a recalled one's text and file are never served again; what the user
    /// deleted for themselves is left out.
    pub async fn catch_up(&self, user: i64, wants: &[Want], limit: usize) -> AppResult<Vec<Message>> {
        Ok(self.catch_up_read(user, wants, limit).await?.0)
    }

    /// As [`Self::catch_up`], with the highest seq read (before leaving out what the user hid).
    async fn catch_up_read(&self, user: i64, wants: &[Want], limit: usize) -> AppResult<(Vec<Message>, Option<i64>)> {
        let records = self.inbox.read(user, wants, limit).await?;
        let last_read = records.iter().map(|r| r.seq).max();
        let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
        let hidden = self.stores.messages.hidden_among(user, &ids).await?;
        let content: Vec<i64> = records
            .iter()
            .filter(|r| MessageType::parse(&r.kind).is_content() || r.kind == "edit")
            .map(|r| r.id)
            .collect();
        let mut current: HashMap<i64, MessageRecord> =
            self.stores.messages.messages_by_ids(&content).await?.into_iter().map(|m| (m.id, m)).collect();
        let mut records: Vec<MessageRecord> = records
            .into_iter()
            .filter(|r| !hidden.contains(&r.id))
            .map(|r| current.remove(&r.id).unwrap_or(r))
            .collect();
        self.redact_unseen_edits(user, &mut records).await?;
        Ok((self.render(records).await?, last_read))
    }

    /// Turns stored messages into API messages: their files' details, reactions and quoted messages (one query
    /// for each, for all of them).
    pub async fn render(&self, records: Vec<MessageRecord>) -> AppResult<Vec<Message>> {
        // A recalled message has no file, whatever its row still names.
        let records: Vec<MessageRecord> = records
            .into_iter()
            .map(|mut r| {
                if r.recalled_at.is_some() {
                    r.file_id = None;
                }
                r
            })
            .collect();
        let file_ids: Vec<i64> = records.iter().filter_map(|r| r.file_id).collect();
        let files: HashMap<i64, FileInfo> = if file_ids.is_empty() {
            HashMap::new()
        } else {
            self.stores.files.files_by_ids(&file_ids).await?.iter().map(|f| (f.id, Media::info(f))).collect()
        };
        let content: Vec<i64> =
            records.iter().filter(|r| MessageType::parse(&r.kind).is_content()).map(|r| r.id).collect();
        let mut reactions: HashMap<i64, Vec<Reaction>> = HashMap::new();
        for (message, emoji, user) in self.stores.messages.reactions_of(&content).await? {
            let list = reactions.entry(message).or_default();
            match list.iter_mut().find(|r| r.emoji == emoji) {
                Some(r) => r.user_ids.push(user),
                None => list.push(Reaction { emoji, user_ids: vec![user] }),
            }
        }
        let quoted_ids: Vec<i64> = records.iter().filter_map(|r| r.reply_to_id).collect();
        let quoted: HashMap<i64, MessageRef> =
            self.stores.messages.messages_by_ids(&quoted_ids).await?.into_iter().map(|q| (q.id, quote(&q))).collect();
        Ok(records
            .into_iter()
            .map(|r| {
                let file = r.file_id.and_then(|id| files.get(&id).cloned());
                let reply_to = r.reply_to_id.and_then(|id| quoted.get(&id).cloned());
                let reactions = reactions.remove(&r.id).unwrap_or_default();
                let mut m = views::message(r);
                m.file = file;
                m.reply_to = reply_to;
                m.reactions = reactions;
                m
            })
            .collect())
    }

    /// Blanks the text of edits to messages `user` cannot see: sent before they joined the group, or hidden by
    /// them (the edit tells them only that something they cannot see changed).
    async fn redact_unseen_edits(&self, user: i64, records: &mut [MessageRecord]) -> AppResult<()> {
        let targets: Vec<i64> = records
            .iter()
            .filter(|r| r.kind == MessageType::Edit.as_str() && r.body.is_some())
            .filter_map(|r| r.target_id)
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let hidden = self.stores.messages.hidden_among(user, &targets).await?;
        let seqs: HashMap<i64, (String, i64)> = self
            .stores
            .messages
            .messages_by_ids(&targets)
            .await?
            .into_iter()
            .map(|t| (t.id, (t.conversation_id, t.seq)))
            .collect();
        let mut visible_from: HashMap<String, i64> = HashMap::new();
        for (conversation, _) in seqs.values() {
            if !visible_from.contains_key(conversation) {
                let from =
                    self.stores.messages.user_conversation(user, conversation).await?.map_or(0, |r| r.visible_from_seq);
                visible_from.insert(conversation.clone(), from);
            }
        }
        for r in records.iter_mut().filter(|r| r.kind == MessageType::Edit.as_str()) {
            let Some(target) = r.target_id else { continue };
            let unseen = hidden.contains(&target)
                || seqs.get(&target).is_none_or(|(c, seq)| *seq <= visible_from.get(c).copied().unwrap_or(0));
            if unseen {
                r.body = None;
            }
        }
        Ok(())
    }

    /// Checks a send's mentions: group messages only, each a member, `all` for the owner and admins.
    async fn mentions(
        &self,
        from: i64,
        group: Option<i64>,
        user_ids: Option<&[i64]>,
        all: Option<bool>,
    ) -> AppResult<Option<Mentions>> {
        let all = all.unwrap_or(false);
        let mut user_ids: Vec<i64> = user_ids.unwrap_or_default().to_vec();
        if !all && user_ids.is_empty() {
            return Ok(None);
        }
        let Some(group) = group else {
            return Err(AppError::new(ErrorCode::InvalidMention, "only group messages mention people"));
        };
        if user_ids.len() > MAX_MENTIONS {
            return Err(AppError::new(ErrorCode::InvalidMention, "a message mentions at most 100 users"));
        }
        user_ids.sort_unstable();
        user_ids.dedup();
        // One read of the members with their roles serves every check below.
        let roles = self.groups.roles(group).await?;
        let role = roles.iter().find(|m| m.0 == from).map(|m| m.1);
        let members: Vec<i64> = roles.iter().map(|m| m.0).collect();
        if role.is_none() {
            // Refused as a send to the group would be (404 for a stranger, 403 for a former member).
            self.groups.check_sender(group, from).await?;
            return Err(AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group"));
        }
        if let Some(stranger) = user_ids.iter().find(|u| !members.contains(u)) {
            return Err(AppError::new(
                ErrorCode::InvalidMention,
                format!("user {stranger} is not a member of the group"),
            ));
        }
        if all && !matches!(role, Some(GroupRole::Owner | GroupRole::Admin)) {
            return Err(AppError::new(ErrorCode::InsufficientRole, "only the owner or an admin may mention everyone"));
        }
        Ok(Some(Mentions { user_ids, all }))
    }

    /// Checks what a reply quotes: a content message of the same conversation that the sender can see. Who may
    /// write to the conversation is checked first, so that a stranger learns nothing of its messages.
    async fn check_reply(&self, from: i64, conversation: &ConversationId, reply_to: i64) -> AppResult<()> {
        match *conversation {
            ConversationId::Group(g) => self.groups.check_sender(g, from).await?,
            ConversationId::Direct { .. } => {
                let peer = conversation.peer_of(from).unwrap_or_default();
                if !self.stores.friends.are_friends(from, peer).await? {
                    return Err(AppError::new(ErrorCode::NotFriends, "you can only message your friends"));
                }
            }
        }
        if !self.stores.messages.hidden_among(from, &[reply_to]).await?.is_empty() {
            return Err(AppError::new(ErrorCode::InvalidReply, "you deleted that message"));
        }
        let id = conversation.to_string();
        let visible_from = self.stores.messages.user_conversation(from, &id).await?.map_or(0, |r| r.visible_from_seq);
        let quoted = self.stores.messages.messages_by_ids(&[reply_to]).await?.pop();
        match quoted {
            Some(q) if q.conversation_id == id && q.seq > visible_from => {
                if !MessageType::parse(&q.kind).is_content() {
                    return Err(AppError::new(ErrorCode::InvalidReply, "a reply quotes a message, not an event"));
                }
                if q.recalled_at.is_some() {
                    return Err(AppError::new(ErrorCode::InvalidReply, "that message was recalled"));
                }
                Ok(())
            }
            _ => Err(AppError::new(
                ErrorCode::InvalidReply,
                "reply_to_id names no message of this conversation you can see",
            )),
        }
    }
}

/// Where a message goes: exactly one of a friend (`to_user_id`, not oneself) or a group. Friendship and
/// membership are checked by the append itself, in the transaction that allocates the seq (under the lock
/// that orders it against membership changes).
fn destination(
    from: i64,
    to_user_id: Option<i64>,
    group_id: Option<i64>,
) -> AppResult<(ConversationId, Option<i64>, Option<i64>)> {
    Ok(match (to_user_id, group_id) {
        (Some(to), None) => {
            if to == from {
                // 403, not 422: the body is well-formed; what it asks is not allowed for this caller.
                return Err(AppError::new(ErrorCode::CannotMessageSelf, "you cannot message yourself"));
            }
            // Friendship is checked by the append itself, in the same transaction that allocates the seq.
            (ConversationId::direct(from, to), Some(to), None)
        }
        // Membership is checked by the append itself, under the lock that orders it against membership
        // changes (a refusal is then told apart as an unknown group or a non-member below).
        (None, Some(group)) => (ConversationId::group(group), None, Some(group)),
        _ => return Err(AppError::new(ErrorCode::InvalidRecipient, "give exactly one of to_user_id and group_id")),
    })
}

/// At most [`QUOTE_CHARS`] characters of `text`, cut between grapheme clusters (never inside an emoji
/// sequence or between a letter and its accent).
fn cut(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    for g in unicode_segmentation::UnicodeSegmentation::graphemes(text, true) {
        count += g.chars().count();
        if count > QUOTE_CHARS {
            break;
        }
        out.push_str(g);
    }
    out
}

/// A reply's snapshot of the message it quotes, as that message is now.
fn quote(q: &MessageRecord) -> MessageRef {
    let recalled = q.recalled_at.is_some();
    MessageRef {
        id: q.id,
        seq: q.seq,
        from_user_id: q.from_user_id,
        kind: MessageType::parse(&q.kind),
        text: if recalled { None } else { q.body.as_deref().map(cut) },
        recalled,
    }
}

fn access_of(conversation: ConversationId, row: Option<&UserConversationRecord>) -> Access {
    Access {
        conversation,
        visible_from: row.map_or(0, |r| r.visible_from_seq),
        last_seq: row.map_or(0, |r| r.last_seq),
        read_seq: row.map_or(0, |r| r.read_seq),
    }
}
