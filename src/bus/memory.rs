//! The in-process bus of the embedded mode: a publish goes straight into this node's hub.

use std::sync::Arc;

use async_trait::async_trait;

use super::Bus;
use crate::ws::hub::{Delivery, Hub};

pub struct MemoryBus {
    hub: Hub,
}

impl MemoryBus {
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, users: &[i64], delivery: &Arc<Delivery>) {
        self.hub.deliver_many(users, delivery);
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
