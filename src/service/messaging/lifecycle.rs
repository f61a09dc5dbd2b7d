//! What changes a message after it was sent (DESIGN.md §7): recall, edit and reactions, each an event with the
//! conversation's next seq, delivered like a message; and delete-for-me, which changes only the caller's view.

use chrono::Utc;

use super::{destination, Messaging};
use crate::delivery::Delivery;
use crate::domain::frame::ServerFrame;
use crate::domain::model::{
    GroupRole, Message, MessageExtras, MessageSnapshot, MessageType, ReactionChange, ReactionOp,
};
use crate::domain::{ClientMsgId, MessageText};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::store::{EventAction, EventOutcome, MessageRecord, NewEvent, NewMessage, StoreError};

/// Most messages one forward takes (DESIGN.md §7).
pub const MAX_FORWARD: usize = 100;
/// Most distinct emoji on one message (DESIGN.md §7).
pub const MAX_DISTINCT_REACTIONS: i64 = 20;
/// Longest emoji accepted, in characters (the OpenAPI document's `maxLength`): a family of four with skin tones
/// is 11; this bounds what a single "grapheme" may smuggle in.
pub const MAX_EMOJI_CHARS: usize = 16;

/// A reaction's emoji: exactly one emoji of Unicode's recommended set (UTS #51: a pictograph with its variation
/// selector, skin tone, ZWJ sequence, keycap or flag), as looked up by the `emojis` crate, not plain text and
/// not an emoji padded with invisible characters (those would let one user fill a message's 20 reaction slots
/// with look-alikes). Returns the fully qualified form, so `❤` and `❤️` are one reaction. Anything else names
/// no reaction: 404 `invalid_emoji`.
pub fn parse_emoji(s: &str) -> AppResult<String> {
    let bad = || AppError::new(ErrorCode::InvalidEmoji, "a reaction is one emoji");
    if s.chars().count() > MAX_EMOJI_CHARS {
        return Err(bad());
    }
    emojis::get(s).map(|e| e.as_str().to_string()).ok_or_else(bad)
}

impl Messaging {
    /// The message `id` as the caller may see it: 404 `message_not_found` when it does not exist or lies outside
    /// what the caller can see (another conversation, before they joined, deleted for them).
    pub(super) async fn visible_message(&self, user: i64, id: i64) -> AppResult<MessageRecord> {
        let not_found = || AppError::new(ErrorCode::MessageNotFound, "no such message");
        let message = self.stores.messages.messages_by_ids(&[id]).await?.pop().ok_or_else(not_found)?;
        let access = match self.access(user, &message.conversation_id).await {
            Ok(a) => a,
            Err(e) if e.status().is_client_error() => return Err(not_found()),
            Err(e) => return Err(e),
        };
        if message.seq <= access.visible_from || !self.stores.messages.hidden_among(user, &[id]).await?.is_empty() {
            return Err(not_found());
        }
        Ok(message)
    }

    /// A content message the caller may change: an event is 409 `target_is_event`, a recalled one 409
    /// `already_recalled`.
    async fn changeable(&self, user: i64, id: i64) -> AppResult<MessageRecord> {
        let message = self.visible_message(user, id).await?;
        if !MessageType::parse(&message.kind).is_content() {
            return Err(AppError::new(ErrorCode::TargetIsEvent, "recalls, edits and reactions cannot be changed"));
        }
        if message.recalled_at.is_some() {
            return Err(AppError::new(ErrorCode::AlreadyRecalled, "that message was recalled"));
        }
        Ok(message)
    }

    /// Recalls a message: its sender within the recall window, a group's owner or admins at any time. Its text,
    /// file, quote, mentions, reactions and the text of its edits are removed in the transaction that appends
    /// the `recall` event, which is returned.
    /// Recalling a message one already recalled returns that recall again (a retry after a lost reply).
    pub async fn recall(&self, user: i64, id: i64, client_msg_id: Option<&str>) -> AppResult<(Message, bool)> {
        self.limits.check_send(user)?;
        let seen = self.visible_message(user, id).await?;
        if seen.recalled_at.is_some() && seen.recalled_by == Some(user) {
            let events = self.stores.messages.events_of(id).await?;
            if let Some(recall) = events.into_iter().find(|e| e.kind == MessageType::Recall.as_str()) {
                return Ok((self.render(vec![recall]).await?.remove(0), false));
            }
        }
        let target = self.changeable(user, id).await?;
        let moderator = match target.group_id {
            Some(g) => matches!(self.groups.role_of(g, user).await?, Some(GroupRole::Owner | GroupRole::Admin)),
            None => false,
        };
        if !moderator {
            if target.from_user_id != user {
                return Err(AppError::new(
                    ErrorCode::Forbidden,
                    "only the sender or a group's owner or admins may recall it",
                ));
            }
            if Utc::now() - target.created_at > chrono::Duration::from_std(self.windows.recall).unwrap_or_default() {
                return Err(AppError::new(ErrorCode::RecallWindowPassed, "the time to recall this message has passed"));
            }
        }
        self.append_event(user, target, EventAction::Recall, client_msg_id, MessageExtras::default()).await
    }

    /// Replaces the text of the caller's own text message within the edit window; returns the `edit` event.
    pub async fn edit(
        &self,
        user: i64,
        id: i64,
        text: &str,
        client_msg_id: Option<&str>,
    ) -> AppResult<(Message, bool)> {
        self.limits.check_send(user)?;
        let text = MessageText::parse(text)?.into_string();
        let target = self.changeable(user, id).await?;
        if target.from_user_id != user {
            return Err(AppError::new(ErrorCode::Forbidden, "only the sender may edit a message"));
        }
        if target.kind != MessageType::Text.as_str() {
            return Err(AppError::new(ErrorCode::NotEditable, "only text messages can be edited"));
        }
        if Utc::now() - target.created_at > chrono::Duration::from_std(self.windows.edit).unwrap_or_default() {
            return Err(AppError::new(ErrorCode::EditWindowPassed, "the time to edit this message has passed"));
        }
        self.append_event(user, target, EventAction::Edit { text }, client_msg_id, MessageExtras::default()).await
    }

    /// Adds (`add`) or removes the caller's reaction `emoji`; idempotent per user and emoji: a change that
    /// changes nothing returns the caller's latest event about that emoji and appends nothing.
    pub async fn react(&self, user: i64, id: i64, emoji: &str, add: bool) -> AppResult<(Message, bool)> {
        self.limits.check_send(user)?;
        let emoji = parse_emoji(emoji)?;
        let target = self.changeable(user, id).await?;
        let extras = MessageExtras {
            reaction: Some(ReactionChange {
                emoji: emoji.clone(),
                op: if add { ReactionOp::Add } else { ReactionOp::Remove },
            }),
            ..Default::default()
        };
        let action = EventAction::React { emoji, add, max_distinct: MAX_DISTINCT_REACTIONS };
        self.append_event(user, target, action, None, extras).await
    }

    /// Hides the caller's view of a message (delete for me) on all their devices: gone from their history,
    /// previews and unread counts; the other devices are told with `messages_hidden`.
    /// Hiding a message one already hid changes nothing and succeeds (a retry after a lost reply).
    pub async fn hide(&self, user: i64, id: i64) -> AppResult<()> {
        if !self.stores.messages.hidden_among(user, &[id]).await?.is_empty() {
            return Ok(());
        }
        let message = self.visible_message(user, id).await?;
        let hidden = self.stores.messages.hide(user, &message.conversation_id, &[(message.id, message.seq)]).await?;
        if !hidden.is_empty() {
            let frame = ServerFrame::MessagesHidden { conversation_id: message.conversation_id, message_ids: hidden };
            self.events.publish(&[user], &frame).await;
        }
        Ok(())
    }

    /// Forwards messages of one conversation the caller can read to a friend or a group: one new message per
    /// source (`forwarded`), or with `merged` one `merged` message whose `items` are their snapshots. Files go
    /// by reference: the destination's members may then download them. Sources are taken in seq order.
    pub async fn forward(
        &self,
        user: i64,
        message_ids: &[i64],
        to_user_id: Option<i64>,
        group_id: Option<i64>,
        merged: bool,
    ) -> AppResult<Vec<Message>> {
        let mut ids = message_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() || ids.len() > MAX_FORWARD {
            return Err(AppError::new(ErrorCode::InvalidForward, "forward 1 to 100 messages"));
        }
        self.limits.check_send(user)?;
        let (conversation, to, group) = destination(user, to_user_id, group_id)?;
        let mut sources = Vec::with_capacity(ids.len());
        for id in &ids {
            // Each one visible to the caller (one query each is fine at ≤ 100; a forward is rare).
            let source = self.changeable(user, *id).await?;
            if sources.first().is_some_and(|f: &MessageRecord| f.conversation_id != source.conversation_id) {
                return Err(AppError::new(
                    ErrorCode::InvalidForward,
                    "the messages of one forward come from one conversation",
                ));
            }
            sources.push(source);
        }
        sources.sort_by_key(|m| m.seq);
        let rendered = self.render(sources.clone()).await?;
        let base = |kind: &'static str| NewMessage {
            conversation_id: conversation,
            from_user_id: user,
            to_user_id: to,
            group_id: group,
            kind,
            body: None,
            file_id: None,
            client_msg_id: None,
            reply_to_id: None,
            meta: None,
            mentions: Vec::new(),
            forwarded: true,
            item_files: Vec::new(),
        };
        let mut out = Vec::new();
        if merged {
            let items: Vec<MessageSnapshot> = rendered.iter().map(snapshot).collect();
            let item_files = items
                .iter()
                .filter_map(|i| i.file.as_ref().map(|f| f.id))
                .chain(
                    rendered
                        .iter()
                        .flat_map(|m| m.items.iter().flatten().filter_map(|i| i.file.as_ref().map(|f| f.id))),
                )
                .collect();
            let extras = MessageExtras { forwarded: true, items: Some(items), ..Default::default() };
            let new = NewMessage { meta: extras.to_meta(), item_files, ..base(MessageType::Merged.as_str()) };
            out.push(self.commit(user, new, None).await?.0);
        } else {
            for (source, shown) in sources.into_iter().zip(rendered) {
                let item_files = shown.items.iter().flatten().filter_map(|i| i.file.as_ref().map(|f| f.id)).collect();
                let extras = MessageExtras { forwarded: true, items: shown.items, ..Default::default() };
                let new = NewMessage {
                    body: source.body,
                    file_id: source.file_id,
                    meta: extras.to_meta(),
                    item_files,
                    ..base(MessageType::parse(&source.kind).as_str())
                };
                out.push(self.commit(user, new, shown.file).await?.0);
            }
        }
        Ok(out)
    }

    /// What the user hid on other devices since `device` was last here, as `messages_hidden` frames (one per
    /// conversation, oldest first).
    pub async fn hides_for_device(&self, user: i64, device: &str) -> AppResult<Vec<ServerFrame>> {
        let mut frames: Vec<ServerFrame> = Vec::new();
        for (conversation, id) in self.stores.messages.hides_for_device(user, device).await? {
            match frames.iter_mut().find(
                |f| matches!(f, ServerFrame::MessagesHidden { conversation_id, .. } if *conversation_id == conversation),
            ) {
                Some(ServerFrame::MessagesHidden { message_ids, .. }) => message_ids.push(id),
                _ => frames.push(ServerFrame::MessagesHidden { conversation_id: conversation, message_ids: vec![id] }),
            }
        }
        Ok(frames)
    }

    async fn append_event(
        &self,
        user: i64,
        target: MessageRecord,
        action: EventAction,
        client_msg_id: Option<&str>,
        extras: MessageExtras,
    ) -> AppResult<(Message, bool)> {
        let client_msg_id = client_msg_id.map(ClientMsgId::parse).transpose()?.map(ClientMsgId::into_string);
        let group = target.group_id;
        let (target_id, kind) = (target.id, event_kind(&action));
        let event = NewEvent { target, actor: user, action, client_msg_id, meta: extras.to_meta() };
        let (appended, unseen) = match self.stores.messages.append_event(event).await {
            Ok(EventOutcome::Done { appended, unseen }) => (appended, unseen),
            Ok(EventOutcome::TargetRecalled) => {
                return Err(AppError::new(ErrorCode::AlreadyRecalled, "that message was recalled"))
            }
            Ok(EventOutcome::TooManyReactions) => {
                return Err(AppError::new(ErrorCode::TooManyReactions, "a message has at most 20 different reactions"))
            }
            Ok(EventOutcome::Unchanged(Some(earlier))) => {
                return Ok((self.render(vec![earlier]).await?.remove(0), false))
            }
            Ok(EventOutcome::Unchanged(None)) => {
                return Err(AppError::new(ErrorCode::ReactionNotFound, "you have not reacted with that emoji"))
            }
            Err(StoreError::NotFriends) => {
                return Err(AppError::new(ErrorCode::NotFriends, "you can only message your friends"))
            }
            Err(StoreError::NotMember | StoreError::Muted) => {
                if let Some(g) = group {
                    return Err(self.groups.sending_refusal(g, user).await);
                }
                return Err(AppError::new(ErrorCode::NotGroupMember, "you are not a member of this group"));
            }
            Err(e) => return Err(e.into()),
        };
        if !appended.created && (appended.message.kind != kind || appended.message.target_id != Some(target_id)) {
            // The key named another change (or a message): answering with that would hide that this one
            // was never made.
            return Err(AppError::new(
                ErrorCode::ClientMsgIdReused,
                "this client_msg_id was used for something else; use a new one for each change",
            ));
        }
        let mut rendered = self.render(vec![appended.message.clone()]).await?;
        let message = rendered.remove(0);
        if appended.created {
            self.metrics.messages_accepted.inc();
            self.inbox.append(&appended.recipients, &appended.message).await;
            // An edit's text goes only to those who can see the message it changes; the others learn only
            // that something they cannot see was edited.
            let (blind, sighted): (Vec<i64>, Vec<i64>) =
                appended.recipients.iter().partition(|r| message.text.is_some() && unseen.contains(r));
            let delivery = Delivery::from_frame(&ServerFrame::Message { message: message.clone() });
            self.events.publish_delivery(&sighted, &delivery).await;
            if !blind.is_empty() {
                let redacted = Message { text: None, ..message.clone() };
                let delivery = Delivery::from_frame(&ServerFrame::Message { message: redacted });
                self.events.publish_delivery(&blind, &delivery).await;
            }
        }
        Ok((message, appended.created))
    }
}

/// The stored kind of the event an action appends.
fn event_kind(action: &EventAction) -> &'static str {
    match action {
        EventAction::Recall => MessageType::Recall.as_str(),
        EventAction::Edit { .. } => MessageType::Edit.as_str(),
        EventAction::React { .. } => MessageType::Reaction.as_str(),
    }
}

/// A message as a merged forward shows it.
fn snapshot(m: &Message) -> MessageSnapshot {
    MessageSnapshot {
        id: m.id,
        from_user_id: m.from_user_id,
        kind: m.kind,
        text: m.text.clone(),
        file: m.file.clone(),
        created_at: m.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_emoji;

    #[test]
    fn a_reaction_is_exactly_one_emoji_grapheme() {
        for ok in ["👍", "❤️", "😂", "👨‍👩‍👧‍👦", "👍🏽", "🇨🇳", "1️⃣", "🙏", "🏳️‍🌈"]
        {
            assert_eq!(parse_emoji(ok).unwrap(), ok, "{ok:?}");
        }
        assert_eq!(parse_emoji("❤").unwrap(), "❤️", "one reaction whether qualified or not");
        assert_eq!(parse_emoji("1\u{20e3}").unwrap(), "1️⃣");
        // Found by a hostile run: look-alikes padded with invisible characters counted as distinct reactions.
        for bad in [
            "",
            "a",
            "ok",
            "👍👍",
            "中",
            "👍 ",
            " ",
            "\u{200d}",
            "1",
            "+1",
            ":thumbsup:",
            "👍\u{FE0F}\u{FE0F}",
            "👍\u{FE0E}",
            "👍\u{200D}",
            "👍\u{E0020}",
            "👍\u{E0061}\u{E007F}",
            "👍\u{301}",
            "😀\u{200d}😀",
        ] {
            assert!(parse_emoji(bad).is_err(), "{bad:?}");
        }
    }
}
