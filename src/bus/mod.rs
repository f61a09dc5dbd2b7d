//! The bus between nodes: deliveries addressed to users, carried to whichever node holds their sockets.

mod memory;
mod redis;
mod writer;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::memory::MemoryBus;
pub use self::redis::RedisBus;
pub use self::writer::RedisWriter;
use crate::delivery::Delivery;

/// Publishes deliveries by user id and feeds this node's hub with those for its users.
///
/// **At-most-once.** A publish can be lost (Redis restarts, a subscriber reconnects); nothing relies on it
/// alone. Every message is durable in the database first and carries a gapless per-conversation `seq`, so a
/// session that sees a gap, or is told to resync after a bus reconnect, catches up from the inbox.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes one delivery to every listed user. May return before the delivery has left this node (Redis
    /// publishes are queued and pipelined); deliveries leave in the order they were published. Nothing is reported
    /// back: a publish that fails is counted and logged where it fails, and is at-most-once anyway.
    async fn publish(&self, users: &[i64], delivery: &Arc<Delivery>);
    /// Makes sure this node receives `user_id`'s deliveries; returns once the subscription is live (or the bus
    /// is down, in which case the reconnect resubscribes and resyncs).
    async fn subscribe(&self, user_id: i64);
    /// This node may no longer need `user_id`'s deliveries (its last socket here closed).
    fn release(&self, user_id: i64);
    /// Returns once every delivery published before this call has left this node (or failed to). Used when a
    /// node stops, so that what it accepted last is not left in its queue.
    async fn flush(&self) {}
    /// False while the bus is disconnected.
    fn is_ready(&self) -> bool;
    fn name(&self) -> &'static str;
}

pub type SharedBus = Arc<dyn Bus>;
