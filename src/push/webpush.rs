//! Web Push (RFC 8030) to any browser's push service: the payload encrypted as `aes128gcm` (RFC 8291, by the
//! `web-push-native` crate), the request signed with VAPID (RFC 8292), sent with `reqwest` over rustls.

use std::time::Duration;

use async_trait::async_trait;

use super::{Delivery, PushMessage, PushSender, VapidKey};
use crate::domain::push::{retry_after, Answer};

/// The longest one push request may take, connection included: a push service that does not answer by then is
/// tried again later, and a node shutting down is not held up by it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends Web Push messages signed with the node's VAPID key.
#[derive(Clone)]
pub struct WebPushSender {
    client: reqwest::Client,
    vapid: VapidKey,
}

impl WebPushSender {
    pub fn new(vapid: VapidKey) -> anyhow::Result<WebPushSender> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // A push service answers; it does not send the server elsewhere (and a redirect must not turn a
            // push into a request to some other host).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gochat/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebPushSender { client, vapid })
    }
}

#[async_trait]
impl PushSender for WebPushSender {
    async fn send(&self, message: &PushMessage) -> Delivery {
        let retry = Delivery { answer: Answer::Retry, retry_after: None };
        let body = match web_push_native::encrypt(
            message.payload.clone(),
            &message.p256dh,
            web_push_native::Auth::from_slice(&message.auth),
        ) {
            Ok(body) => body,
            Err(e) => {
                tracing::warn!(error = %e, "push payload could not be encrypted");
                return Delivery { answer: Answer::Rejected, retry_after: None };
            }
        };
        let authorization = match self.vapid.authorization(&message.endpoint, chrono::Utc::now()) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "VAPID token could not be signed");
                return retry;
            }
        };
        let request = self
            .client
            .post(message.endpoint.clone())
            .header("TTL", message.ttl.as_secs().to_string())
            .header("Urgency", message.urgency.as_str())
            .header("Topic", message.topic.as_str())
            .header("Content-Encoding", "aes128gcm")
            .header("Content-Type", "application/octet-stream")
            .header("Authorization", authorization)
            .body(body);
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, chrono::Utc::now()));
                let answer = Answer::of(status);
                if answer == Answer::Rejected {
                    let host = message.endpoint.host_str().unwrap_or_default().to_string();
                    let text = response.text().await.unwrap_or_default();
                    tracing::warn!(status, %host, body = %text.chars().take(200).collect::<String>(), "push refused");
                }
                Delivery { answer, retry_after: after }
            }
            Err(e) => {
                tracing::debug!(error = %e, host = message.endpoint.host_str().unwrap_or_default(), "push failed");
                retry
            }
        }
    }
}
