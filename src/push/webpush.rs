//! Web Push (RFC 8030) to any browser's push service: the payload encrypted as `aes128gcm` (RFC 8291, by the
//! `web-push-native` crate), the request signed with VAPID (RFC 8292), sent with `reqwest` over rustls.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Delivery, PushMessage, PushSender, VapidKey};
use crate::domain::push::{reachable, retry_after, Answer};

/// The longest one push request may take, connection included: a push service that does not answer by then is
/// tried again later, and a node shutting down is not held up by it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most of a refusal's body read (for the log): a push service explains in a line; whatever sends more is not
/// given the node's memory.
const MAX_REFUSAL_BYTES: usize = 512;

/// Resolves push services' host names, keeping only addresses the server may connect to
/// (`domain::push::reachable`): a subscriber's name cannot lead the node into its own network. The connection
/// goes to the addresses kept here, so there is no second lookup to race.
struct PublicAddresses {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<std::net::SocketAddr> =
                found.into_iter().filter(|a| reachable(a.ip(), allow_loopback)).collect();
            if kept.is_empty() {
                return Err(format!("{host} resolves only to addresses a push may not go to").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends Web Push messages signed with the node's VAPID key.
#[derive(Clone)]
pub struct WebPushSender {
    client: reqwest::Client,
    vapid: VapidKey,
}

impl WebPushSender {
    /// A sender signing with `vapid`; `allow_loopback` as `GOCHAT_PUSH_ALLOW_LOOPBACK`.
    pub fn new(vapid: VapidKey, allow_loopback: bool) -> anyhow::Result<WebPushSender> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicAddresses { allow_loopback }))
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
                    let body = refusal_excerpt(response).await;
                    // (Debug-formatted: escaped, so a push service cannot write lines into the log.)
                    tracing::warn!(status, %host, body = ?body, "push refused");
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

/// The first [`MAX_REFUSAL_BYTES`] of a response's body, read chunk by chunk and no further, as text.
async fn refusal_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_REFUSAL_BYTES {
        match tokio::time::timeout(Duration::from_secs(2), response.chunk()).await {
            Ok(Ok(Some(chunk))) => bytes.extend_from_slice(&chunk[..chunk.len().min(MAX_REFUSAL_BYTES - bytes.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use reqwest::dns::Resolve;

    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_only_inside_is_refused_and_loopback_only_when_allowed() {
        let name = |n: &str| reqwest::dns::Name::from_str(n).unwrap();
        let strict = PublicAddresses { allow_loopback: false };
        assert!(strict.resolve(name("localhost")).await.is_err(), "localhost resolves to loopback only");
        let loose = PublicAddresses { allow_loopback: true };
        let addrs: Vec<_> = loose.resolve(name("localhost")).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
