//! The local hub: which sockets of which users live on this node, and the bounded queue of each.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, Notify};

pub use crate::delivery::{Delivery, DeliverySink, Membership, MessageMeta};
use crate::metrics::Metrics;
use crate::service::auth::TokenVersions;

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

/// Groups whose messages a session must no longer write, shared between the hub (which updates it as
/// membership news arrives) and the session (which checks it before writing).
pub type Revoked = Arc<Mutex<HashSet<i64>>>;

#[derive(Clone)]
struct SessionEntry {
    id: u64,
    tx: mpsc::Sender<Outbound>,
    evict: Arc<Notify>,
    revoked: Revoked,
    /// The token version the socket was opened with, and the signal that it was revoked.
    token_version: i64,
    token_revoked: Arc<Notify>,
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
    versions: TokenVersions,
}

/// A session's place in the hub; dropping it leaves the hub.
pub struct Registration {
    hub: Hub,
    pub user_id: i64,
    pub id: u64,
    pub rx: mpsc::Receiver<Outbound>,
    pub evicted: Arc<Notify>,
    pub revoked: Revoked,
    /// Notified when the token this socket was opened with is revoked.
    pub token_revoked: Arc<Notify>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.user_id, self.id);
    }
}

impl Hub {
    /// A hub whose revocation news also updates `versions`, the node's cache of token versions.
    pub fn new(metrics: Metrics, versions: TokenVersions) -> Self {
        Hub { inner: Arc::new(HubInner { users: RwLock::default(), next_id: AtomicU64::new(1), metrics, versions }) }
    }

    /// Adds a socket of `user_id`, opened with a token of `token_version`.
    pub fn register(&self, user_id: i64, token_version: i64) -> Registration {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let evict = Arc::new(Notify::new());
        let token_revoked = Arc::new(Notify::new());
        let revoked = Revoked::default();
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = SessionEntry {
            id,
            tx,
            evict: evict.clone(),
            revoked: revoked.clone(),
            token_version,
            token_revoked: token_revoked.clone(),
        };
        self.inner.users.write().unwrap_or_else(|e| e.into_inner()).entry(user_id).or_default().push(entry);
        self.inner.metrics.ws_connections.inc();
        Registration { hub: self.clone(), user_id, id, rx, evicted: evict, revoked, token_revoked }
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

    /// Whether any of `user_ids` has a socket here (one look at the hub for all of them).
    pub fn has_any(&self, user_ids: &[i64]) -> bool {
        let users = self.inner.users.read().unwrap_or_else(|e| e.into_inner());
        user_ids.iter().any(|u| users.contains_key(u))
    }

    /// Every user with a socket here.
    pub fn users(&self) -> Vec<i64> {
        self.inner.users.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    pub fn connections(&self) -> usize {
        self.inner.users.read().unwrap_or_else(|e| e.into_inner()).values().map(Vec::len).sum()
    }

    /// Queues a delivery on every socket of `user_id` here. Never waits: a full queue evicts that session.
    /// Membership news takes effect here, before queueing, so a removed member's sessions drop the group's
    /// messages still waiting in their queues.
    pub fn deliver(&self, user_id: i64, delivery: &Arc<Delivery>) {
        self.deliver_many(&[user_id], delivery);
    }

    /// [`Hub::deliver`] to each of `user_ids` that has sockets here, under one look at the hub. A revocation is
    /// acted on here instead of being queued: the node's token version cache learns the new version, and the
    /// user's sockets opened with an older token are told to close.
    pub fn deliver_many(&self, user_ids: &[i64], delivery: &Arc<Delivery>) {
        if let Some((user_id, version)) = delivery.revocation {
            self.inner.versions.learn(user_id, version, std::time::Instant::now());
            let users = self.inner.users.read().unwrap_or_else(|e| e.into_inner());
            for entry in users.get(&user_id).into_iter().flatten().filter(|e| e.token_version < version) {
                entry.token_revoked.notify_one();
            }
            return;
        }
        let users = self.inner.users.read().unwrap_or_else(|e| e.into_inner());
        for user_id in user_ids {
            if let Some(list) = users.get(user_id) {
                self.deliver_to(*user_id, list, delivery);
            }
        }
    }

    fn deliver_to(&self, user_id: i64, list: &[SessionEntry], delivery: &Arc<Delivery>) {
        for entry in list {
            let mut revoked = entry.revoked.lock().unwrap_or_else(|e| e.into_inner());
            match &delivery.membership {
                Some(Membership::Removed(g)) => {
                    revoked.insert(*g);
                }
                Some(Membership::Members(g, members)) if members.contains(&user_id) => {
                    revoked.remove(g);
                }
                _ => {}
            }
            if delivery.group_id.is_some_and(|g| revoked.contains(&g)) {
                continue;
            }
            drop(revoked);
            self.enqueue(entry, Outbound::Deliver(delivery.clone()));
        }
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
            self.enqueue(entry, make());
        }
    }

    fn enqueue(&self, entry: &SessionEntry, out: Outbound) {
        match entry.tx.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                entry.evict.notify_one();
                self.inner.metrics.slow_consumer_disconnects.inc();
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

impl DeliverySink for Hub {
    fn deliver_many(&self, users: &[i64], delivery: &Arc<Delivery>) {
        Hub::deliver_many(self, users, delivery)
    }
    fn has_any(&self, users: &[i64]) -> bool {
        Hub::has_any(self, users)
    }
    fn has_user(&self, user: i64) -> bool {
        Hub::has_user(self, user)
    }
    fn users(&self) -> Vec<i64> {
        Hub::users(self)
    }
    fn resync_all(&self) {
        Hub::resync_all(self)
    }
}
