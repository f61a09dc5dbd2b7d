//! What crosses from the services to the sockets: a [`Delivery`] (a server frame serialised once, with what the
//! hub and sessions act on), and the [`DeliverySink`] the bus hands deliveries to. A neutral module, so that the
//! bus and the services know nothing of the WebSocket layer (the hub implements the sink).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::frame::ServerFrame;

/// Where the bus delivers: this node's sockets. Implemented by the WebSocket hub; the bus knows only this trait
/// (as centrifuge's broker knows only its event handler).
pub trait DeliverySink: Send + Sync + 'static {
    /// Queues `delivery` for every socket here of each of `users`; never waits. A revocation is acted on for its
    /// user whatever `users` lists.
    fn deliver_many(&self, users: &[i64], delivery: &Arc<Delivery>);
    /// Whether any of `users` has a socket here.
    fn has_any(&self, users: &[i64]) -> bool;
    /// Whether `user` has a socket here.
    fn has_user(&self, user: i64) -> bool;
    /// Every user with a socket here (to subscribe again after the bus reconnects).
    fn users(&self) -> Vec<i64>;
    /// Something may have been missed (the bus reconnected): every session compares its cursors with the store.
    fn resync_all(&self);
}

/// A frame on its way to sockets: serialised once, shared by every socket it goes to.
#[derive(Debug)]
pub struct Delivery {
    pub json: Arc<str>,
    /// For `message` frames: where the message sits, so a session can deduplicate and spot gaps.
    pub message: Option<MessageMeta>,
    /// For group messages: the group, so a session drops what its user may no longer see.
    pub group_id: Option<i64>,
    /// Membership news the hub acts on the moment the frame reaches this node.
    pub membership: Option<Membership>,
    /// `token_revoked`: the user and their new token version. Acted on by the hub, never written to a socket.
    pub revocation: Option<(i64, i64)>,
}

/// How a frame changes what a user may receive of a group.
#[derive(Debug, Clone)]
pub enum Membership {
    /// `group_removed`: stop writing the group's messages to this user, including any already queued.
    Removed(i64),
    /// `group_updated`: the group's current members.
    Members(i64, Vec<i64>),
}

#[derive(Debug, Clone)]
pub struct MessageMeta {
    pub conversation_id: String,
    pub seq: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Peek {
    message: Option<PeekMessage>,
    group_id: Option<i64>,
    group: Option<PeekGroup>,
    user_id: Option<i64>,
    token_version: Option<i64>,
}

#[derive(Deserialize)]
struct PeekGroup {
    id: i64,
    members: Vec<PeekMember>,
}

#[derive(Deserialize)]
struct PeekMember {
    user_id: i64,
}

#[derive(Deserialize)]
struct PeekMessage {
    conversation_id: String,
    seq: i64,
    created_at: DateTime<Utc>,
    group_id: Option<i64>,
}

impl Delivery {
    pub fn from_frame(frame: &ServerFrame) -> Arc<Delivery> {
        let (mut message, mut group_id, mut membership, mut revocation) = (None, None, None, None);
        match frame {
            ServerFrame::Message { message: m } => {
                message = Some(MessageMeta {
                    conversation_id: m.conversation_id.clone(),
                    seq: m.seq,
                    created_at: m.created_at,
                });
                group_id = m.group_id;
            }
            ServerFrame::GroupRemoved { group_id } => membership = Some(Membership::Removed(*group_id)),
            ServerFrame::GroupUpdated { group } => {
                membership = Some(Membership::Members(group.id, group.members.iter().map(|m| m.user_id).collect()))
            }
            ServerFrame::TokenRevoked { user_id, token_version } => revocation = Some((*user_id, *token_version)),
            _ => {}
        }
        Arc::new(Delivery { json: frame.to_json().into(), message, group_id, membership, revocation })
    }

    /// Rebuilds a delivery from its JSON as it arrives over the bus. Only frames the hub or sessions act on
    /// (`message`, `group_removed`, `group_updated`, `token_revoked`) are looked into.
    pub fn from_json(json: &str) -> Arc<Delivery> {
        let peek = if Self::is_inspected(json) { serde_json::from_str::<Peek>(json).ok() } else { None };
        let Some(peek) = peek else {
            return Arc::new(Delivery {
                json: json.into(),
                message: None,
                group_id: None,
                membership: None,
                revocation: None,
            });
        };
        let revocation = peek.token_version.zip(peek.user_id).map(|(v, u)| (u, v));
        let group_id = peek.message.as_ref().and_then(|p| p.group_id);
        let message = peek.message.map(|p| MessageMeta {
            conversation_id: p.conversation_id,
            seq: p.seq,
            created_at: p.created_at,
        });
        let membership = match (peek.group_id, peek.group) {
            (Some(g), None) => Some(Membership::Removed(g)),
            (None, Some(g)) => Some(Membership::Members(g.id, g.members.into_iter().map(|m| m.user_id).collect())),
            _ => None,
        };
        Arc::new(Delivery { json: json.into(), message, group_id, membership, revocation })
    }

    /// Whether a frame's JSON is one the hub or sessions act on (and so worth parsing).
    fn is_inspected(json: &str) -> bool {
        const INSPECTED: [&str; 4] =
            [r#"{"type":"message""#, r#"{"type":"group_removed""#, r#"{"type":"group_updated""#, TOKEN_REVOKED_PREFIX];
        INSPECTED.iter().any(|p| json.starts_with(p))
    }

    /// Whether a frame's JSON is a revocation, which every node acts on whether or not the user has a socket
    /// there (it updates the node's cached token version).
    pub fn is_revocation_json(json: &str) -> bool {
        json.starts_with(TOKEN_REVOKED_PREFIX)
    }
}

const TOKEN_REVOKED_PREFIX: &str = r#"{"type":"token_revoked""#;
