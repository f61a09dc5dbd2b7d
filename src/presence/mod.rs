//! Who is online (DESIGN.md §8): each node records which users have sockets on it; a user is online while some
//! live node records them. In a cluster the records live in Redis with a per-node liveness key that expires, so
//! the users of a node that dies go offline when its key does; on the embedded default one process holds them.

mod memory;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::memory::MemoryPresence;
pub use self::redis::RedisPresence;

/// How often a node refreshes its liveness and looks for dead nodes, given how long its liveness lasts
/// (`GOCHAT_PRESENCE_TTL`): three heartbeats per TTL, so one missed heartbeat never takes a live node's users
/// offline, and a dead node's users go offline within a TTL and a heartbeat (40 s by default, inside the 60 s
/// of DESIGN.md §8).
pub fn heartbeat_every(ttl: std::time::Duration) -> std::time::Duration {
    ttl / 3
}

/// The nodes' records of who has sockets where.
#[async_trait]
pub trait PresenceRegistry: Send + Sync {
    /// Records whether `user` has a socket on this node.
    async fn set_here(&self, user: i64, here: bool) -> anyhow::Result<()>;
    /// Which of `users` have a socket on a live node.
    async fn online(&self, users: &[i64]) -> anyhow::Result<Vec<i64>>;
    /// Refreshes this node's liveness, and removes the records of nodes whose liveness ran out; returns the
    /// users those nodes had, each claimed by exactly one node (which then announces them offline).
    async fn heartbeat(&self) -> anyhow::Result<Vec<i64>>;
    /// Removes this node's records (it is stopping); returns the users it had.
    async fn leave(&self) -> anyhow::Result<Vec<i64>>;
    fn name(&self) -> &'static str;
}

pub type SharedPresence = Arc<dyn PresenceRegistry>;
