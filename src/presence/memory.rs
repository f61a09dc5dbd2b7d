//! Presence within one process (the embedded default): a count of this node's users, nothing to expire.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;

use super::PresenceRegistry;

#[derive(Default)]
pub struct MemoryPresence {
    here: Mutex<HashSet<i64>>,
}

impl MemoryPresence {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PresenceRegistry for MemoryPresence {
    async fn set_here(&self, user: i64, here: bool) -> anyhow::Result<()> {
        let mut set = self.here.lock().unwrap_or_else(|e| e.into_inner());
        if here {
            set.insert(user);
        } else {
            set.remove(&user);
        }
        Ok(())
    }

    async fn online(&self, users: &[i64]) -> anyhow::Result<Vec<i64>> {
        let set = self.here.lock().unwrap_or_else(|e| e.into_inner());
        Ok(users.iter().copied().filter(|u| set.contains(u)).collect())
    }

    async fn heartbeat(&self) -> anyhow::Result<Vec<i64>> {
        Ok(Vec::new())
    }

    async fn leave(&self) -> anyhow::Result<Vec<i64>> {
        Ok(self.here.lock().unwrap_or_else(|e| e.into_inner()).drain().collect())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
