//! The node's shared state: a cheap-to-clone handle passed to every handler with `.data()`. No globals, so one
//! process can run several nodes (the tests do).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::service::accounts::Accounts;
use crate::service::ratelimit::RateLimits;
use crate::store::Stores;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub stores: Stores,
    pub accounts: Accounts,
    pub limits: RateLimits,
    pub metrics: Metrics,
    draining: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(config: Config, stores: Stores, accounts: Accounts, limits: RateLimits, metrics: Metrics) -> Self {
        Self { config: Arc::new(config), stores, accounts, limits, metrics, draining: Arc::new(AtomicBool::new(false)) }
    }

    /// Marks the node as shutting down: `/readyz` turns 503 so load balancers stop sending it traffic.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
