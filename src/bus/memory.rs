//! The in-process bus of the embedded mode: a publish goes straight into this node's delivery sink (its hub).

use std::sync::Arc;

use async_trait::async_trait;

use super::Bus;
use crate::delivery::{Delivery, DeliverySink};

pub struct MemoryBus {
    sink: Arc<dyn DeliverySink>,
}

impl MemoryBus {
    /// A bus that hands every publish to `sink` (this node's hub) at once.
    pub fn new(sink: impl DeliverySink) -> Self {
        Self { sink: Arc::new(sink) }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, users: &[i64], delivery: &Arc<Delivery>) {
        self.sink.deliver_many(users, delivery);
    }
    async fn subscribe(&self, _user_id: i64) {}
    fn release(&self, _user_id: i64) {}
    fn is_ready(&self) -> bool {
        true
    }
    fn name(&self) -> &'static str {
        "memory"
    }
}
