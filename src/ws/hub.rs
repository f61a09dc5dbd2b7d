//! The local hub: which sockets of which users live on this node, and the bounded queue of each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::{mpsc, Notify};

use crate::domain::frame::ServerFrame;
use crate::metrics::Metrics;

/// A frame on its way to sockets: serialised once, shared by every socket it goes to.
#[derive(Debug)]
pub struct Delivery {
    pub json: Arc<str>,
    /// For `message` frames: where the message sits, so a session can deduplicate and spot gaps.
    pub message: Option<MessageMeta>,
    /// For group-scoped frames: the group, so a session can drop what it may no longer see.
    pub group_id: Option<i64>,
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
        let (message, group_id) = match frame {
            ServerFrame::Message { message } => (
                Some(MessageMeta {
                    conversation_id: message.conversation_id.clone(),
                    seq: message.seq,
                    created_at: message.created_at,
                }),
                message.group_id,
            ),
            _ => (None, None),
        };
        Arc::new(Delivery { json: frame.to_json().into(), message, group_id })
    }

    /// Rebuilds a delivery from its JSON as it arrives over the bus. Only `message` frames are looked into.
    pub fn from_json(json: &str) -> Arc<Delivery> {
        let peek = if json.starts_with(r#"{"type":"message""#) {
            serde_json::from_str::<Peek>(json).ok().and_then(|p| p.message)
        } else {
            None
        };
        let group_id = peek.as_ref().and_then(|p| p.group_id);
        let message =
            peek.map(|p| MessageMeta { conversation_id: p.conversation_id, seq: p.seq, created_at: p.created_at });
        Arc::new(Delivery { json: json.into(), message, group_id })
    }
}

/// What a session's queue carries.
#[derive(Debug)]
pub enum Outbound {
    Deliver(Arc<Delivery>),
    /// Something may have been missed (the bus reconnected): compare cursors with the store and catch up.
    Resync,
}

/// Capacity of a socket's outgoing queue. Enough to absorb a burst (a 256-message sync or a busy group) while
/// the socket drains; a client that falls this far behind is disconnected and resyncs from its cursor on
/// reconnect, instead of growing the node's memory.
pub const SOCKET_QUEUE: usize = 256;

#[derive(Clone)]
struct SessionEntry {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    evict: Arc<Notify>,
}

/// The sockets of this node by user. Delivery never blocks: a full queue evicts its session.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    users: RwLock<HashMap<i64, Vec<SessionEntry>>>,
    next_id: AtomicU64,
    metrics: Metrics,
}

/// A session's place in the hub; dropping it leaves the hub.
pub struct Registration {
    hub: Hub,
    pub user_id: i64,
    pub id: u64,
    pub rx: mpsc::Receiver<Outbound>,
    pub evicted: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.user_id, self.id);
    }
}

impl Hub {
    pub fn new(metrics: Metrics) -> Self {
        Hub { inner: Arc::new(HubInner { users: RwLock::default(), next_id: AtomicU64::new(1), metrics }) }
    }

    /// Adds a socket of `user_id`.
    pub fn register(&self, user_id: i64) -> Registration {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let evict = Arc::new(Notify::new());
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = SessionEntry { id, tx, evict: evict.clone() };
        self.inner.users.write().unwrap_or_else(|e| e.into_inner()).entry(user_id).or_default().push(entry);
        self.inner.metrics.ws_connections.inc();
        Registration { hub: self.clone(), user_id, id, rx, evicted: evict }
    }

    fn unregister(&self, user_id: i64, id: u64) {
        let mut users = self.inner.users.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = users.get_mut(&user_id) {
            list.retain(|e| e.id != id);
            if list.is_empty() {
                users.remove(&user_id);
            }
        }
        self.inner.metrics.ws_connections.dec();
    }

    pub fn has_user(&self, user_id: i64) -> bool {
        self.inner.users.read().unwrap_or_else(|e| e.into_inner()).contains_key(&user_id)
    }

    /// Every user with a socket here.
    pub fn users(&self) -> Vec<i64> {
        self.inner.users.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    pub fn connections(&self) -> usize {
        self.inner.users.read().unwrap_or_else(|e| e.into_inner()).values().map(Vec::len).sum()
    }

    /// Queues a delivery on every socket of `user_id` here. Never waits: a full queue evicts that session.
    pub fn deliver(&self, user_id: i64, delivery: &Arc<Delivery>) {
        self.send(user_id, || Outbound::Deliver(delivery.clone()));
    }

    /// Tells every session here to compare its cursors with the store (after the bus may have lost publishes).
    pub fn resync_all(&self) {
        for user in self.users() {
            self.send(user, || Outbound::Resync);
        }
    }

    fn send(&self, user_id: i64, make: impl Fn() -> Outbound) {
        let users = self.inner.users.read().unwrap_or_else(|e| e.into_inner());
        let Some(list) = users.get(&user_id) else { return };
        for entry in list {
            match entry.tx.try_send(make()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    entry.evict.notify_one();
                    self.inner.metrics.slow_consumer_disconnects.inc();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
}
