//! Rate limits, in memory per node: credential requests per client IP, login failures per username and client,
//! password changes and message sends per user (governor token buckets and a small failure ledger).
//!
//! Limits are per node: behind a load balancer of N nodes a client gets at most N times the quota, which still
//! bounds each abuse to a small constant rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;

/// How long a login failure counts against its username and client.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Failures one client (IP address) may make on one username within [`FAILURE_WINDOW`]; then that client waits.
const FAILURES_PER_CLIENT: u32 = 5;
/// Usernames whose failures are remembered at once. Far more than a node sees attacked in a minute; beyond it
/// the ledger forgets the oldest windows first (see [`LoginFailures::record`]), so memory stays bounded.
const MAX_LEDGER: usize = 100_000;
/// Password changes (each costs two argon2 hashes) a user may attempt per minute.
const PASSWORD_CHANGES_PER_MIN: u32 = 5;

#[derive(Clone)]
pub struct RateLimits {
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    logins: Arc<LoginFailures>,
    password_changes: Arc<DefaultKeyedRateLimiter<i64>>,
    sends: Arc<DefaultKeyedRateLimiter<i64>>,
    invites: Arc<DefaultKeyedRateLimiter<i64>>,
}

fn check<K: Hash + Eq + Clone>(limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), AppError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        AppError::too_many_requests(wait.as_secs_f64().ceil() as u64)
    })
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl RateLimits {
    /// `per_ip_per_min` credential requests per client IP per minute (that many as the burst); `failures_per_user`
    /// failed logins per username per minute before clients that failed on it must wait; `sends_per_sec`
    /// messages per user per second (twice that as the burst).
    pub fn new(per_ip_per_min: u32, failures_per_user: u32, sends_per_sec: u32) -> Self {
        let sends = NonZeroU32::new(sends_per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = sends.saturating_mul(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        Self {
            per_ip: Arc::new(RateLimiter::keyed(per_minute(per_ip_per_min))),
            logins: Arc::new(LoginFailures::new(failures_per_user.max(1), FAILURES_PER_CLIENT)),
            password_changes: Arc::new(RateLimiter::keyed(per_minute(PASSWORD_CHANGES_PER_MIN))),
            sends: Arc::new(RateLimiter::keyed(Quota::per_second(sends).allow_burst(burst))),
            invites: Arc::new(RateLimiter::keyed(per_minute(30))),
        }
    }

    /// Allows `per_min` invite link previews and joins per user per minute (30 unless set).
    pub fn with_invites(mut self, per_min: u32) -> Self {
        self.invites = Arc::new(RateLimiter::keyed(per_minute(per_min)));
        self
    }

    /// One invite link preview or join by `user_id`; 429 `rate_limited` beyond the user's rate.
    pub fn check_invite(&self, user_id: i64) -> Result<(), AppError> {
        check(&self.invites, &user_id)
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AppError> {
        check(&self.per_ip, &ip)
    }

    pub fn logins(&self) -> &LoginFailures {
        &self.logins
    }

    pub fn check_password_change(&self, user_id: i64) -> Result<(), AppError> {
        check(&self.password_changes, &user_id)
    }

    /// One message sent by `user_id` (REST or WebSocket); 429 `rate_limited` beyond the user's send rate.
    pub fn check_send(&self, user_id: i64) -> Result<(), AppError> {
        check(&self.sends, &user_id)
    }

    /// Forgets keys whose buckets are full again, so the maps stay as small as the recent traffic.
    pub fn prune(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.password_changes.retain_recent();
        self.password_changes.shrink_to_fit();
        self.sends.retain_recent();
        self.sends.shrink_to_fit();
        self.logins.prune(Instant::now());
    }
}

/// Failed logins per username, and per client within it, in fixed windows of [`FAILURE_WINDOW`].
///
/// The rule (so that guessing stays bounded without handing anyone a lockout of someone else's account): a client
/// that has failed [`FAILURES_PER_CLIENT`] times on a username waits; once a username has `per_user` failures
/// from all clients together, every client that has failed on it waits, while a client that has not failed on
/// it still gets its attempt (the owner, typing the right password on their own device, is never locked out by
/// strangers). Distributed guessing therefore gets `per_user` guesses plus one per further address per window,
/// and each address is held to the per-IP limit of the credential endpoints as well.
pub struct LoginFailures {
    per_user: u32,
    per_client: u32,
    ledger: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    total: u32,
    by_client: HashMap<Option<IpAddr>, u32>,
}

impl LoginFailures {
    pub fn new(per_user: u32, per_client: u32) -> Self {
        Self { per_user, per_client, ledger: Mutex::default() }
    }

    /// Whether `client` may try a password for `username` now: 429 `rate_limited` when not, with the seconds
    /// until the window ends.
    pub fn check(&self, username: &str, client: Option<IpAddr>, now: Instant) -> Result<(), AppError> {
        let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = ledger.get(username).filter(|w| now < w.started + FAILURE_WINDOW) else { return Ok(()) };
        let mine = w.by_client.get(&client).copied().unwrap_or(0);
        if mine >= self.per_client || (mine > 0 && w.total >= self.per_user) {
            let wait = (w.started + FAILURE_WINDOW).saturating_duration_since(now);
            return Err(AppError::too_many_requests(wait.as_secs_f64().ceil() as u64));
        }
        Ok(())
    }

    /// A wrong password for `username` from `client`.
    pub fn record(&self, username: &str, client: Option<IpAddr>, now: Instant) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if ledger.len() >= MAX_LEDGER && !ledger.contains_key(username) {
            ledger.retain(|_, w| now < w.started + FAILURE_WINDOW);
            if ledger.len() >= MAX_LEDGER {
                // Still full of live windows: an attack on very many names at once. Forgetting them all costs
                // each attacked name one window of its budget, which the per-IP limit still bounds.
                ledger.clear();
            }
        }
        let w = ledger.entry(username.to_string()).or_insert_with(|| Window {
            started: now,
            total: 0,
            by_client: HashMap::new(),
        });
        if now >= w.started + FAILURE_WINDOW {
            *w = Window { started: now, total: 0, by_client: HashMap::new() };
        }
        w.total += 1;
        *w.by_client.entry(client).or_default() += 1;
    }

    /// A successful login: this client's failures on `username` are forgiven.
    pub fn forgive(&self, username: &str, client: Option<IpAddr>) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = ledger.get_mut(username) {
            w.by_client.remove(&client);
        }
    }

    fn prune(&self, now: Instant) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.retain(|_, w| now < w.started + FAILURE_WINDOW);
        ledger.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn strangers_guessing_do_not_lock_out_a_client_that_has_not_failed() {
        let f = LoginFailures::new(10, 5);
        let now = Instant::now();
        for n in 0..20 {
            // Twenty addresses guess once each; every one gets its first attempt.
            assert!(f.check("alice", ip(n), now).is_ok());
            f.record("alice", ip(n), now);
        }
        assert!(f.check("alice", ip(3), now).is_err(), "a client that failed waits once the name is under attack");
        assert!(f.check("alice", ip(200), now).is_ok(), "the owner's own device has not failed: it may try");
        assert!(f.check("bob", ip(3), now).is_ok(), "other names are not affected");
        assert!(f.check("alice", ip(3), now + FAILURE_WINDOW).is_ok(), "the window ends");
    }

    #[test]
    fn one_client_gets_a_few_failures_per_window_and_a_success_forgives_them() {
        let f = LoginFailures::new(100, 5);
        let now = Instant::now();
        for _ in 0..5 {
            assert!(f.check("carol", ip(1), now).is_ok());
            f.record("carol", ip(1), now);
        }
        let err = f.check("carol", ip(1), now + Duration::from_secs(20)).unwrap_err();
        assert_eq!((err.code().as_str(), err.status().as_u16()), ("rate_limited", 429));
        f.forgive("carol", ip(1));
        assert!(f.check("carol", ip(1), now).is_ok());
    }

    #[test]
    fn the_ledger_stays_bounded() {
        let f = LoginFailures::new(10, 5);
        let now = Instant::now();
        for n in 0..(MAX_LEDGER + 10) {
            f.record(&format!("user{n}"), ip(1), now);
        }
        assert!(f.ledger.lock().unwrap().len() <= MAX_LEDGER);
    }
}
