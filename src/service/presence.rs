//! Presence (DESIGN.md §8): whether a user is online and when they were last seen, visible to their friends,
//! and `presence` frames to their friends when it changes. A user is online while any of their devices holds a
//! socket on a live node ([`crate::presence`]). Going offline is debounced: a user who lost their last socket
//! is announced offline only if no socket came back within `GOCHAT_PRESENCE_GRACE`, so a page reload or a
//! switch between networks shows no blip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::frame::ServerFrame;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::presence::SharedPresence;
use crate::service::events::Events;
use crate::store::{FriendStore, UserStore};

/// One user's presence as a friend sees it.
#[derive(Debug, Clone, poem_openapi::Object, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PresenceStatus {
    pub user_id: i64,
    pub online: bool,
    /// When they were last online (none while online, or when never recorded).
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Presence {
    registry: SharedPresence,
    users: Arc<dyn UserStore>,
    friends: Arc<dyn FriendStore>,
    events: Events,
    grace: Duration,
    /// Users whose offline announcement waits out the grace: the close it was scheduled for (a number unique on
    /// this node) and the token that cancels it.
    pending: Arc<Mutex<HashMap<i64, (u64, CancellationToken)>>>,
    closes: Arc<std::sync::atomic::AtomicU64>,
    /// Orders this node's changes of one user's record: the record always ends as the hub's last state.
    changes: Arc<tokio::sync::Mutex<()>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Presence {
    pub fn new(
        registry: SharedPresence,
        users: Arc<dyn UserStore>,
        friends: Arc<dyn FriendStore>,
        events: Events,
        grace: Duration,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            registry,
            users,
            friends,
            events,
            grace,
            pending: Arc::default(),
            closes: Arc::default(),
            changes: Arc::default(),
            tasks,
            shutdown,
        }
    }

    pub fn registry(&self) -> &SharedPresence {
        &self.registry
    }

    /// A socket of `user` opened or closed on this node; `here` tells whether the user still has one here (read
    /// under this node's presence lock, so that the record ends as the last change left it). Announces the user
    /// online to their friends when they were offline, or schedules the offline announcement after the grace.
    pub async fn changed(&self, user: i64, here: impl Fn() -> bool) {
        let _order = self.changes.lock().await;
        let here = here();
        if here {
            let was_pending = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&user);
            let was_online = match was_pending {
                Some((_, token)) => {
                    // Back within the grace: the friends never saw them leave.
                    token.cancel();
                    true
                }
                None => self.registry.online(&[user]).await.map(|o| !o.is_empty()).unwrap_or(false),
            };
            if let Err(e) = self.registry.set_here(user, true).await {
                tracing::warn!(user, error = %e, "presence: recording a socket failed");
            }
            if !was_online {
                self.announce(user, true, None).await;
            }
        } else {
            if let Err(e) = self.registry.set_here(user, false).await {
                tracing::warn!(user, error = %e, "presence: recording a closed socket failed");
            }
            let token = self.shutdown.child_token();
            let close = self.closes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, old)) = pending.insert(user, (close, token.clone())) {
                old.cancel();
            }
            drop(pending);
            let this = self.clone();
            self.tasks.spawn(async move {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(this.grace) => {}
                }
                {
                    let mut pending = this.pending.lock().unwrap_or_else(|e| e.into_inner());
                    // Only the latest close of the user announces (an earlier one's task was cancelled with it).
                    if pending.get(&user).is_none_or(|(c, _)| *c != close) {
                        return;
                    }
                    pending.remove(&user);
                }
                this.gone_unless_online(&[user]).await;
            });
        }
    }

    /// Announces offline those of `users` who are not online on any live node, recording when they were last
    /// seen.
    async fn gone_unless_online(&self, users: &[i64]) {
        let online = self.registry.online(users).await.unwrap_or_default();
        let gone: Vec<i64> = users.iter().copied().filter(|u| !online.contains(u)).collect();
        if gone.is_empty() {
            return;
        }
        let now = crate::store::now();
        if let Err(e) = self.users.set_last_seen(&gone, now).await {
            tracing::warn!(error = %e, "presence: recording last seen failed");
        }
        for user in gone {
            self.announce(user, false, Some(now)).await;
        }
    }

    async fn announce(&self, user: i64, online: bool, last_seen_at: Option<DateTime<Utc>>) {
        let friends = match self.friends.friends(user).await {
            Ok(f) => f.into_iter().map(|f| f.user.id).collect::<Vec<i64>>(),
            Err(e) => {
                tracing::warn!(user, error = %e, "presence: reading friends failed");
                return;
            }
        };
        if !friends.is_empty() {
            self.events.publish(&friends, &ServerFrame::Presence { user_id: user, online, last_seen_at }).await;
        }
    }

    /// Refreshes this node's liveness and takes offline the users of nodes that died. Runs every
    /// [`crate::presence::heartbeat_every`] until the node stops; then removes this node's records and announces
    /// its users offline (unless another node has them).
    pub async fn run(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                _ = tick.tick() => match self.registry.heartbeat().await {
                    Ok(orphans) if !orphans.is_empty() => {
                        tracing::info!(users = orphans.len(), "presence: a node died; its users go offline");
                        self.gone_unless_online(&orphans).await;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "presence: heartbeat failed"),
                },
            }
        }
        match self.registry.leave().await {
            Ok(users) => self.gone_unless_online(&users).await,
            Err(e) => tracing::warn!(error = %e, "presence: leaving failed; the records expire with this node"),
        }
    }

    /// The presence of `ids` for `viewer`: friends only (and the viewer), else 403 `not_friends`.
    pub async fn of(&self, viewer: i64, ids: &[i64]) -> AppResult<Vec<PresenceStatus>> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for &id in &ids {
            if id != viewer && !self.friends.are_friends(viewer, id).await? {
                return Err(AppError::new(ErrorCode::NotFriends, format!("user {id} is not your friend")));
            }
        }
        let online = self.registry.online(&ids).await.map_err(AppError::internal)?;
        let seen: HashMap<i64, Option<DateTime<Utc>>> = self.users.last_seen(&ids).await?.into_iter().collect();
        Ok(ids
            .into_iter()
            .map(|id| {
                let on = online.contains(&id);
                PresenceStatus {
                    user_id: id,
                    online: on,
                    last_seen_at: if on { None } else { seen.get(&id).copied().flatten() },
                }
            })
            .collect())
    }
}
