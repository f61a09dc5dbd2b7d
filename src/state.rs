//! The node's shared state: one cheap handle (an `Arc`) registered once with the router and passed to every
//! handler and socket. No globals, so one process can run several nodes (the tests do).

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
use crate::service::presence::Presence;
use crate::service::push::Push;
use crate::service::ratelimit::RateLimits;
use crate::ws::hub::Hub;

/// A handle to the node's state; cloning it copies one pointer.
#[derive(Clone)]
pub struct AppState(Arc<Parts>);

/// What the node's handlers and sockets share.
pub struct Parts {
    pub config: Arc<Config>,
    pub health: Health,
    pub accounts: Accounts,
    pub friends: Friends,
    pub groups: Groups,
    pub presence: Presence,
    pub push: Push,
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
    /// The node's long-lived tasks (sockets, the bus subscriber, periodic jobs): joined on shutdown.
    pub tasks: TaskTracker,
    pub(crate) draining: Arc<AtomicBool>,
    pub(crate) shutdown: CancellationToken,
}

impl Deref for AppState {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl AppState {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }

    /// Marks the node as shutting down: `/readyz` turns 503 so load balancers stop sending it traffic, and new
    /// sockets are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Cancelled when the node shuts down; long-lived tasks (sockets, periodic jobs) end on it.
    pub fn shutdown_signal(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}
