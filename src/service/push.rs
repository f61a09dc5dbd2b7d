//! Push notifications (DESIGN.md §11): devices' subscriptions, and the dispatcher that turns the push outbox into
//! Web Push messages.
//!
//! **What is sent, and when.** Every message that may concern a subscribed device (a content message from
//! someone else, or a recall) marks that device's row of the conversation in the outbox, in the message's own
//! transaction (`store::push`). A row is taken once the conversation has been quiet for [`QUIET`] (at most
//! [`MAX_HOLD`] after its first change), so a burst is one push. Then, for the device:
//! * nothing, if the device acknowledged the messages on a socket (its delivered cursor reached them);
//! * wait until `GOCHAT_PUSH_ACK_WAIT` after the first change, if the user has a socket open anywhere (the
//!   device may be that socket and acknowledge; a dropped connection that never does still gets its push);
//! * nothing for a muted conversation unless an unread message mentions the user or everyone;
//! * otherwise one notification per conversation: the unread count, the sender and, only if the user allowed
//!   previews, the text's first 100 characters; `Topic` per conversation, so the push service keeps only the
//!   newest for a device that is away. A recall, or everything read elsewhere, sends a silent update that
//!   replaces (or closes) a notification the device was shown.
//!
//! **Who sends.** Every node runs the dispatcher; each row is claimed atomically with a lease
//! (`FOR UPDATE SKIP LOCKED` on Postgres), so exactly one node sends each push, and nothing depends on which
//! node committed the message or on Redis. A row whose node dies mid-send is taken again when the lease runs
//! out (the only case where a device may get a push twice; the topic makes the second replace the first); rows
//! not yet claimed wait in the database and go out from whichever node runs next, a restarted one included.
//!
//! **Failures.** 404/410 drops the subscription; 429 and 5xx are tried again after `Retry-After` or an
//! exponential backoff, at most [`MAX_ATTEMPTS`] times; other refusals give the push up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::push::{self as rules, Answer, Notification, NotificationKind};
use crate::domain::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::metrics::Metrics;
use crate::presence::SharedPresence;
use crate::push::{PushMessage, PushSender, Urgency};
use crate::store::{now, PushJob, PushRelease, PushStore, PushSubscriptionRecord, PushView};

/// How long a conversation must be quiet before its pending push goes: messages less than this apart are one
/// burst, one notification.
pub const QUIET: Duration = Duration::from_secs(1);
/// The longest a push waits for a burst to end: a conversation that never goes quiet still notifies this often.
pub const MAX_HOLD: Duration = Duration::from_secs(5);
/// How long a claim holds a row: more than one attempt can take (10 s request timeout) with room to spare, and
/// the longest a node's death delays the pushes it had claimed.
const LEASE: Duration = Duration::from_secs(60);
/// How often a node looks for due rows when it found none: the delay a push adds to [`QUIET`] at most.
const POLL: Duration = Duration::from_millis(500);
/// Pushes in flight per node: push services answer in tens of milliseconds, so this sustains thousands a second,
/// and a slow service holds only its own share.
const CONCURRENCY: usize = 64;
/// Attempts of one push refused with 429/5xx (or unanswered) before it is given up: with the exponential
/// backoff, about eight minutes of a push service's trouble.
const MAX_ATTEMPTS: i32 = 8;
/// The longest wait between attempts, `Retry-After` included.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long a push service keeps a notification for a device that is offline (RFC 8030 §5.2): a day; after
/// that the app's own catch-up shows what came.
const TTL: Duration = Duration::from_secs(86_400);

/// Push subscriptions and the dispatcher. Cloning is cheap.
#[derive(Clone)]
pub struct Push {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn PushStore>,
    /// `None`: push is off (a cluster without `GOCHAT_VAPID_PRIVATE_KEY`).
    sender: Option<(Arc<dyn PushSender>, String)>,
    presence: SharedPresence,
    metrics: Metrics,
    ack_wait: Duration,
    allow_loopback: bool,
}

/// A device's subscription as the API takes it.
pub struct NewSubscription<'a> {
    pub device_id: &'a str,
    pub endpoint: &'a str,
    pub p256dh: &'a str,
    pub auth: &'a str,
}

impl Push {
    /// `sender` with the VAPID public key browsers subscribe with; `None` turns push off.
    pub fn new(
        store: Arc<dyn PushStore>,
        sender: Option<(Arc<dyn PushSender>, String)>,
        presence: SharedPresence,
        metrics: Metrics,
        ack_wait: Duration,
        allow_loopback: bool,
    ) -> Push {
        Push { inner: Arc::new(Inner { store, sender, presence, metrics, ack_wait, allow_loopback }) }
    }

    fn disabled() -> AppError {
        AppError::new(
            ErrorCode::PushDisabled,
            "push notifications are off on this server (no GOCHAT_VAPID_PRIVATE_KEY is configured)",
        )
    }

    /// The VAPID public key (base64url of the uncompressed point); 404 `push_disabled` when push is off.
    pub fn public_key(&self) -> AppResult<String> {
        self.inner.sender.as_ref().map(|s| s.1.clone()).ok_or_else(Self::disabled)
    }

    /// Stores the device's subscription (replacing its earlier one). 422 `invalid_device`,
    /// `invalid_push_endpoint` or `invalid_push_keys` for what breaks the rules of `domain::push`.
    pub async fn subscribe(&self, user_id: i64, new: NewSubscription<'_>) -> AppResult<()> {
        if self.inner.sender.is_none() {
            return Err(Self::disabled());
        }
        device_id(new.device_id)?;
        let endpoint = rules::endpoint(new.endpoint, self.inner.allow_loopback)?;
        rules::keys(new.p256dh, new.auth)?;
        let record = PushSubscriptionRecord {
            user_id,
            device_id: new.device_id.to_string(),
            endpoint: endpoint.to_string(),
            p256dh: new.p256dh.trim_end_matches('=').to_string(),
            auth: new.auth.trim_end_matches('=').to_string(),
            created_at: now(),
        };
        Ok(self.inner.store.subscribe(&record).await?)
    }

    /// Removes the device's subscription, if it has one.
    pub async fn unsubscribe(&self, user_id: i64, device_id: &str) -> AppResult<()> {
        self::device_id(device_id)?;
        self.inner.store.unsubscribe(user_id, device_id).await?;
        Ok(())
    }

    /// Removes every subscription of the user: after a password change, the devices signed in before are
    /// signed out and stop receiving notifications until they sign in and subscribe again.
    pub async fn forget_devices(&self, user_id: i64) -> AppResult<()> {
        Ok(self.inner.store.unsubscribe_all(user_id).await?)
    }

    /// The dispatcher: claims due outbox rows and sends their pushes, until `shutdown`. Pushes in flight then
    /// are abandoned; their rows are claimed again once their lease runs out.
    pub async fn run(self, tasks: TaskTracker, shutdown: CancellationToken) {
        let Some((sender, _)) = self.inner.sender.clone() else { return };
        let permits = Arc::new(Semaphore::new(CONCURRENCY));
        loop {
            let free = permits.available_permits();
            let jobs = if free == 0 {
                Vec::new()
            } else {
                let t = now();
                let before = |d: Duration| t - chrono::Duration::from_std(d).unwrap_or_default();
                let lease = t + chrono::Duration::from_std(LEASE).unwrap_or_default();
                match self.inner.store.claim(t, before(QUIET), before(MAX_HOLD), lease, free as i64).await {
                    Ok(jobs) => jobs,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming pushes failed");
                        Vec::new()
                    }
                }
            };
            let idle = jobs.is_empty();
            for job in jobs {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (this, sender, shutdown) = (self.clone(), sender.clone(), shutdown.clone());
                tasks.spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = this.handle(sender.as_ref(), &job) => {}
                    }
                    drop(permit);
                });
            }
            if idle {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Decides and sends one claimed row's push, and hands the row back.
    async fn handle(&self, sender: &dyn PushSender, job: &PushJob) {
        let release = match self.decide_and_send(sender, job).await {
            Ok(Some(release)) => release,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, user = job.user_id, "push could not be prepared; trying again later");
                PushRelease::Retry { at: now() + chrono::Duration::seconds(5) }
            }
        };
        if let Err(e) = self.inner.store.release(job, release).await {
            tracing::warn!(error = %e, "push outbox row could not be handed back; its lease will run out");
        }
    }

    /// What to do with a claimed row; `None` when it is gone with its subscription.
    async fn decide_and_send(
        &self,
        sender: &dyn PushSender,
        job: &PushJob,
    ) -> Result<Option<PushRelease>, crate::store::StoreError> {
        let store = &self.inner.store;
        let handled = |shown| Some(PushRelease::Handled { seq: job.seq, shown });
        let Some(subscription) = store.subscription(job.user_id, &job.device_id).await? else { return Ok(None) };
        let Some(view) = store.push_view(job).await? else { return Ok(handled(false)) };
        if view.delivered_seq >= job.seq {
            // The device has it all, on a socket: the app shows it, and closes what it had shown.
            return Ok(handled(false));
        }
        let wait_until = job.first_at + chrono::Duration::from_std(self.inner.ack_wait).unwrap_or_default();
        if now() < wait_until && self.user_connected(job.user_id).await {
            return Ok(Some(PushRelease::Later { at: wait_until }));
        }
        let Some((notification, urgency)) = compose(job, &view) else { return Ok(handled(job.shown)) };
        let shown = notification.kind == NotificationKind::Message;
        let (Ok(endpoint), Ok((p256dh, auth))) = (
            rules::endpoint(&subscription.endpoint, self.inner.allow_loopback),
            rules::keys(&subscription.p256dh, &subscription.auth),
        ) else {
            // Stored under other rules (loopback allowed then): no longer sendable.
            store.drop_gone(job.user_id, &job.device_id, &subscription.endpoint).await?;
            return Ok(None);
        };
        let message = PushMessage {
            endpoint,
            p256dh,
            auth,
            payload: serde_json::to_vec(&notification).unwrap_or_default(),
            ttl: TTL,
            urgency,
            topic: rules::topic(&job.conversation_id),
        };
        let delivery = sender.send(&message).await;
        let count = |result: &str| self.inner.metrics.push_sent.with_label_values(&[result]).inc();
        Ok(match delivery.answer {
            Answer::Accepted => {
                count("sent");
                handled(shown)
            }
            Answer::Gone => {
                count("gone");
                store.drop_gone(job.user_id, &job.device_id, &subscription.endpoint).await?;
                None
            }
            Answer::Retry if job.attempts + 1 < MAX_ATTEMPTS => {
                count("retried");
                let wait = rules::backoff(job.attempts as u32 + 1, delivery.retry_after, MAX_BACKOFF);
                Some(PushRelease::Retry { at: now() + chrono::Duration::from_std(wait).unwrap_or_default() })
            }
            Answer::Retry | Answer::Rejected => {
                count("rejected");
                handled(job.shown)
            }
        })
    }

    async fn user_connected(&self, user: i64) -> bool {
        match self.inner.presence.online(&[user]).await {
            Ok(online) => online.contains(&user),
            // Unknown: assume connected, so the ack wait decides (a push at most `ack_wait` late, never one a
            // connected device did not need).
            Err(_) => true,
        }
    }
}

/// 422 `invalid_device` unless `d` is a device id (`domain::push::valid_device_id`).
fn device_id(d: &str) -> AppResult<()> {
    if rules::valid_device_id(d) {
        Ok(())
    } else {
        Err(AppError::new(ErrorCode::InvalidDevice, "device_id must be 1 to 64 of [A-Za-z0-9._-]"))
    }
}

/// The notification for a device, from the conversation as the user sees it; `None` when nothing is to be sent
/// (muted without a mention, or nothing unread and nothing shown to take back).
fn compose(job: &PushJob, view: &PushView) -> Option<(Notification, Urgency)> {
    let recall = view.changed_kind.as_deref() == Some("recall");
    let mut notification = Notification {
        kind: NotificationKind::Clear,
        conversation_id: job.conversation_id.clone(),
        seq: job.seq,
        unread: view.unread,
        mention: view.mention,
        silent: true,
        group_name: view.group_name.clone(),
        sender_name: None,
        message_type: None,
        text: None,
    };
    let Some((newest, sender_name)) = view.newest.as_ref().filter(|_| view.unread > 0) else {
        // Nothing unread (recalled, or read elsewhere): close what the device shows, if anything.
        return job.shown.then_some((notification, Urgency::Low));
    };
    if view.muted && !view.mention {
        return None;
    }
    notification.kind = NotificationKind::Message;
    notification.silent = recall || job.silent;
    notification.sender_name = Some(sender_name.clone());
    notification.message_type = Some(newest.kind.clone());
    if view.previews && newest.kind == "text" {
        notification.text = newest.body.as_deref().map(rules::preview);
    }
    let urgency = if notification.silent { Urgency::Low } else { Urgency::High };
    Some((notification, urgency))
}
