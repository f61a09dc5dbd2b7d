//! Rate limits of the credential endpoints, per client IP and per username (governor, in memory per node).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

/// Keyed token buckets. Limits are per node: behind a load balancer of N nodes a client gets at most N times the
/// quota, which still bounds a password-guessing attack to a small constant rate.
#[derive(Clone)]
pub struct RateLimits {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_username: Arc<DefaultKeyedRateLimiter<String>>,
}

fn check<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), AppError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        AppError::too_many_requests(wait.as_secs_f64().ceil() as u64)
    })
}

impl RateLimits {
    /// `per_ip_per_min` / `per_username_per_min` requests per minute, with that many as the burst.
    pub fn new(per_ip_per_min: u32, per_username_per_min: u32) -> Self {
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            per_ip: Arc::new(RateLimiter::keyed(q(per_ip_per_min))),
            per_username: Arc::new(RateLimiter::keyed(q(per_username_per_min))),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AppError> {
        check(&self.per_ip, &ip)
    }

    pub fn check_username(&self, username_lower: &str) -> Result<(), AppError> {
        check(&self.per_username, &username_lower.to_string())
    }

    /// Forgets keys whose buckets are full again, so the maps stay as small as the recent traffic.
    pub fn prune(&self) {
        self.per_ip.retain_recent();
        self.per_username.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_username.shrink_to_fit();
    }
}
