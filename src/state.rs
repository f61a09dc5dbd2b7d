//! The node's shared state: a cheap-to-clone handle passed to every handler with `.data()`. No globals, so one
//! process can run several nodes (the tests do).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::api::routes::RouteTable;
use crate::bus::SharedBus;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::accounts::Accounts;
use crate::service::friends::Friends;
use crate::service::groups::Groups;
use crate::service::health::Health;
use crate::service::media::Media;
use crate::service::messaging::Messaging;
use crate::service::ratelimit::RateLimits;
use crate::ws::hub::Hub;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub health: Health,
    pub accounts: Accounts,
    pub friends: Friends,
    pub groups: Groups,
    pub media: Media,
    pub messaging: Messaging,
    pub limits: RateLimits,
    pub metrics: Metrics,
    pub hub: Hub,
    pub bus: SharedBus,
    /// The route templates (metrics labels, `Allow` headers).
    pub routes: Arc<RouteTable>,
    /// Most sockets this node accepts (configured, or derived from its open-file limit).
    pub socket_capacity: usize,
    pub(crate) draining: Arc<AtomicBool>,
    pub(crate) stop: watch::Receiver<bool>,
}

impl AppState {
    /// Marks the node as shutting down: `/readyz` turns 503 so load balancers stop sending it traffic, and new
    /// sockets are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Becomes true when the node shuts down; long-lived tasks (sockets) end on it.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
