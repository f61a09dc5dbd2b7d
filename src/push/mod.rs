//! Sending push messages to devices (DESIGN.md §11). The service decides what to send and when; a
//! [`PushSender`] only delivers one encrypted message to one device's push service and reports the answer, so
//! another kind of push (FCM's or APNs' own APIs) is another sender, and the send path stays as it is.

mod vapid;
mod webpush;

use std::time::Duration;

use async_trait::async_trait;

pub use self::vapid::VapidKey;
pub use self::webpush::WebPushSender;
use crate::domain::push::Answer;

/// RFC 8030 §5.3: how soon the device should be woken for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A silent update (a recall, a read elsewhere).
    Low,
    /// A message the user is told about.
    High,
}

impl Urgency {
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Low => "low",
            Urgency::High => "high",
        }
    }
}

/// One push message to one device.
#[derive(Debug, Clone)]
pub struct PushMessage {
    /// The subscription's endpoint (checked when it was stored).
    pub endpoint: url::Url,
    /// The subscription's keys (RFC 8291 §3).
    pub p256dh: p256::PublicKey,
    pub auth: [u8; 16],
    /// The plaintext the device receives (JSON); encrypted by the sender.
    pub payload: Vec<u8>,
    /// How long the push service keeps it for a device that is offline (RFC 8030 §5.2).
    pub ttl: Duration,
    pub urgency: Urgency,
    /// Replaces an undelivered push of the same topic (RFC 8030 §5.4).
    pub topic: String,
}

/// What the push service said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub answer: Answer,
    /// Its `Retry-After`, with a 429 or 503.
    pub retry_after: Option<Duration>,
}

/// Delivers push messages.
#[async_trait]
pub trait PushSender: Send + Sync {
    /// Sends `message` once. A failure to reach the service is an [`Answer::Retry`], never an error: the caller
    /// decides whether and when to try again.
    async fn send(&self, message: &PushMessage) -> Delivery;
}
