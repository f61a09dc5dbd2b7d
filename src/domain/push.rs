//! Push notification rules (DESIGN.md §11), free of I/O: what a subscription may name (its endpoint and keys),
//! what a notification says, how a push service's answer is read (RFC 8030) and when a refused push is tried
//! again.

use std::net::IpAddr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DomainError, ErrorCode};

/// Longest push endpoint accepted, in bytes (push services' URLs are a few hundred bytes).
pub const MAX_ENDPOINT_BYTES: usize = 2048;
/// Characters of a message's text a notification shows, when the user allows previews (DESIGN.md §11).
pub const PREVIEW_CHARS: usize = 100;

/// A device id, as `/ws?device=` and the push subscriptions take it: 1 to 64 of `[A-Za-z0-9._-]`.
pub fn valid_device_id(d: &str) -> bool {
    !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a push endpoint: an absolute `https` URL with a host and no credentials, at most
/// [`MAX_ENDPOINT_BYTES`], whose host is not an address inside a network (private, link-local, unspecified,
/// multicast: the server must not be made to post to its own network); `http` only to a loopback address, and
/// only when `allow_loopback` (tests and development: a push service on this machine). Errors are
/// `invalid_push_endpoint`. (A name that resolves to an internal address is not caught here.)
pub fn endpoint(raw: &str, allow_loopback: bool) -> Result<url::Url, DomainError> {
    let bad = |why: &str| DomainError::new(ErrorCode::InvalidPushEndpoint, format!("endpoint {why}"));
    if raw.len() > MAX_ENDPOINT_BYTES {
        return Err(bad("is longer than 2048 bytes"));
    }
    if !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("must be printable ASCII without spaces"));
    }
    let mut url = url::Url::parse(raw).map_err(|_| bad("is not an absolute URL"))?;
    // One spelling per endpoint (one endpoint belongs to one device): no fragment, no empty query.
    url.set_fragment(None);
    if url.query() == Some("") {
        url.set_query(None);
    }
    if url.port() == Some(0) {
        return Err(bad("has port 0"));
    }
    let Some(host) = url.host() else { return Err(bad("has no host")) };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    let ip = match host {
        url::Host::Domain(_) => None,
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        }),
    };
    let loopback = match (host, ip) {
        (url::Host::Domain(d), _) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        (_, Some(ip)) => canonical(ip).is_loopback(),
        _ => false,
    };
    if !loopback && ip.is_some_and(|ip| !reachable(ip, allow_loopback)) {
        return Err(bad("must not be an address inside a network"));
    }
    match url.scheme() {
        "https" if !loopback || allow_loopback => Ok(url),
        "http" if loopback && allow_loopback => Ok(url),
        "https" | "http" if loopback => Err(bad("must not be a loopback address")),
        _ => Err(bad("must be an https URL")),
    }
}

/// Whether the server may connect to `ip` for a push: never an address inside a network ([`is_internal`]), and
/// a loopback one only when `allow_loopback`. Applied to endpoints given as addresses, and to every address a
/// host name resolves to when a push connects (so a name cannot lead inside either).
pub fn reachable(ip: IpAddr, allow_loopback: bool) -> bool {
    let ip = canonical(ip);
    if ip.is_loopback() {
        return allow_loopback;
    }
    !is_internal(ip)
}

/// An IPv6 address that carries an IPv4 one (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) as that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| IpAddr::V4(std::net::Ipv4Addr::from(((hi as u32) << 16) | lo as u32));
    if let Some(v4) = v6.to_ipv4() {
        // (`to_ipv4` also reads `::1` as 0.0.0.1: keep the IPv6 loopback what it is.)
        return if v6.is_loopback() { ip } else { IpAddr::V4(v4) };
    }
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => v4(hi, lo),
        [0x2002, hi, lo, ..] => v4(hi, lo),
        _ => ip,
    }
}

/// Addresses a push service never has: private, shared (CGNAT), link-local, unspecified, broadcast, multicast,
/// documentation, IPv6 unique-local and link-local.
/// `ip` as [`canonical`] gives it.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_unspecified() || v6.is_multicast() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// A subscription's keys (RFC 8291 §3): the user agent's P-256 public key (`p256dh`, an uncompressed point) and
/// its 16-byte authentication secret (`auth`), each base64url as the browser's `PushSubscription.toJSON()`
/// gives them (padding tolerated). Errors are `invalid_push_keys`.
pub fn keys(p256dh: &str, auth: &str) -> Result<(p256::PublicKey, [u8; 16]), DomainError> {
    let bad = |why: &str| DomainError::new(ErrorCode::InvalidPushKeys, why.to_string());
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    let point = decode(p256dh).map_err(|_| bad("keys.p256dh is not base64url"))?;
    if point.len() != 65 || point[0] != 4 {
        return Err(bad("keys.p256dh must be an uncompressed P-256 point (65 bytes)"));
    }
    let public = p256::PublicKey::from_sec1_bytes(&point).map_err(|_| bad("keys.p256dh is not a point on P-256"))?;
    let secret = decode(auth).map_err(|_| bad("keys.auth is not base64url"))?;
    let secret: [u8; 16] = secret.try_into().map_err(|_| bad("keys.auth must be 16 bytes"))?;
    Ok((public, secret))
}

/// The `Topic` header of a conversation's pushes (RFC 8030 §5.4): a push service keeps only the newest
/// undelivered push of a topic, so a device that was away gets one per conversation. 32 characters of the
/// base64url alphabet (the most the RFC allows), derived from the conversation id without revealing it.
pub fn topic(conversation_id: &str) -> String {
    let digest = Sha256::digest(conversation_id.as_bytes());
    URL_SAFE_NO_PAD.encode(digest)[..32].to_string()
}

/// What a notification says: the JSON the service worker receives, after decryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// `message`: show (or replace) the conversation's notification; `clear`: close it (all of it was recalled
    /// or read elsewhere).
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    pub conversation_id: String,
    /// The conversation change this reflects (its `seq`).
    pub seq: i64,
    /// Content messages from others the user has not read there.
    pub unread: i64,
    /// One of them mentions the user or everyone.
    pub mention: bool,
    /// Replace the shown notification without sound or vibration (a recall, a read elsewhere).
    pub silent: bool,
    /// The group's name, for a group conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// The nickname of who sent the newest unread message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// That message's type (`text`, `image`, …), so the client words a notification without a preview.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// Its first [`PREVIEW_CHARS`] characters, only if the user allowed previews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Message,
    Clear,
}

/// The first [`PREVIEW_CHARS`] characters of a text.
pub fn preview(text: &str) -> String {
    text.chars().take(PREVIEW_CHARS).collect()
}

/// How a push service answered (RFC 8030 §5, §7; RFC 8292 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: accepted.
    Accepted,
    /// 404 or 410: the subscription is gone for good; drop it.
    Gone,
    /// 429 or 5xx (or no answer): try again later.
    Retry,
    /// Any other refusal (400, 401, 403, 413…): this push will not be accepted as it is; give it up.
    Rejected,
}

impl Answer {
    pub fn of(status: u16) -> Answer {
        match status {
            200..=299 => Answer::Accepted,
            404 | 410 => Answer::Gone,
            429 | 500..=599 => Answer::Retry,
            _ => Answer::Rejected,
        }
    }
}

/// Reads a `Retry-After` value (RFC 9110 §10.2.3): seconds, or an HTTP date, as a delay from `now` (never
/// negative). `None` when it is neither.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// How long to wait before trying again a push refused for the `attempts`th time: what the service asked for in
/// `Retry-After` (at least a second), else 2, 4, 8… seconds; at most `cap` either way.
pub fn backoff(attempts: u32, retry_after: Option<Duration>, cap: Duration) -> Duration {
    let wait = match retry_after {
        Some(r) => r.max(Duration::from_secs(1)),
        None => Duration::from_secs(1u64 << attempts.clamp(1, 20)),
    };
    wait.min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_must_be_https_unless_it_is_loopback_and_loopback_is_allowed() {
        assert!(endpoint("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(endpoint("http://push.example.com/x", false).is_err());
        assert!(endpoint("http://push.example.com/x", true).is_err());
        assert!(endpoint("http://127.0.0.1:9/x", false).is_err());
        assert!(endpoint("https://127.0.0.1:9/x", false).is_err());
        assert!(endpoint("https://[::1]/x", false).is_err());
        assert!(endpoint("http://127.0.0.1:9/x", true).is_ok());
        assert!(endpoint("http://localhost:9/x", true).is_ok());
        assert!(endpoint("ftp://push.example.com/x", false).is_err());
        assert!(endpoint("/relative", false).is_err());
        assert!(endpoint("https://push.example.com/a b", false).is_err());
        for internal in [
            "https://10.0.0.5/x",
            "https://192.168.1.1/x",
            "https://172.20.0.1/x",
            "https://169.254.169.254/latest",
            "https://0.0.0.0/x",
            "https://100.64.0.1/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://[::]/x",
            "https://0/x",
            "https://0.0.0.0./x",
            "https://[64:ff9b::a00:1]/x",
            "https://[2002:c0a8:101::]/x",
            "https://255.255.255.255/x",
            "https://224.0.0.1/x",
        ] {
            assert!(endpoint(internal, true).is_err(), "{internal}");
        }
        for loopback in [
            "https://[::ffff:127.0.0.1]/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
            "https://127.1/x",
            "https://[::127.0.0.1]/x",
            "https://[64:ff9b::7f00:1]/x",
            "https://[2002:7f00:1::]/x",
        ] {
            assert!(endpoint(loopback, false).is_err(), "{loopback} is loopback");
        }
        assert!(endpoint("http://app.localhost/x", false).is_err());
        assert!(endpoint("https://localhost./x", false).is_err());
        assert!(endpoint("https://8.8.8.8/x", false).is_ok(), "a public address is allowed");
        assert!(endpoint("https://[2001:4860:4860::8888]/x", false).is_ok(), "a public IPv6 address is allowed");
        assert!(endpoint("https://example.com:0/x", false).is_err(), "port 0");
        let same = |a: &str| endpoint(a, false).unwrap().to_string();
        assert_eq!(same("https://push.example.com/a#frag"), same("https://push.example.com/a?"), "one spelling");
        assert!(reachable("93.184.216.34".parse().unwrap(), false));
        assert!(!reachable("10.1.2.3".parse().unwrap(), true));
        assert!(!reachable("127.0.0.1".parse().unwrap(), false) && reachable("127.0.0.1".parse().unwrap(), true));
        assert!(!reachable("::ffff:127.0.0.1".parse().unwrap(), false));
        assert!(endpoint("https://push.example.com/ü", false).is_err());
        assert!(endpoint("https://user:pw@push.example.com/x", false).is_err());
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_BYTES));
        assert_eq!(endpoint(&long, false).unwrap_err().code, ErrorCode::InvalidPushEndpoint);
    }

    #[test]
    fn keys_must_be_a_point_on_the_curve_and_a_sixteen_byte_secret() {
        // RFC 8291 Appendix A.
        let p256dh = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        let auth = "BTBZMqHH6r4Tts7J_aSIgg";
        assert!(keys(p256dh, auth).is_ok());
        assert!(keys(&format!("{p256dh}="), &format!("{auth}==")).is_ok(), "padding is tolerated");
        let off_curve = format!("{}A", &p256dh[..p256dh.len() - 1]);
        assert_eq!(keys(&off_curve, auth).unwrap_err().code, ErrorCode::InvalidPushKeys);
        assert!(keys("not base64!", auth).is_err());
        assert!(keys(&p256dh[..40], auth).is_err());
        assert!(keys(p256dh, "AAAA").is_err());
    }

    #[test]
    fn a_topic_is_32_base64url_characters_and_differs_by_conversation() {
        let a = topic("d:1:2");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, topic("d:1:3"));
        assert_eq!(a, topic("d:1:2"));
    }

    #[test]
    fn answers_are_read_as_the_rfcs_say() {
        assert_eq!(Answer::of(201), Answer::Accepted);
        assert_eq!(Answer::of(410), Answer::Gone);
        assert_eq!(Answer::of(404), Answer::Gone);
        assert_eq!(Answer::of(429), Answer::Retry);
        assert_eq!(Answer::of(503), Answer::Retry);
        assert_eq!(Answer::of(413), Answer::Rejected);
        assert_eq!(Answer::of(403), Answer::Rejected);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 02 Dec 2026 10:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("Wed, 02 Dec 2026 09:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let cap = Duration::from_secs(600);
        assert_eq!(backoff(1, None, cap), Duration::from_secs(2));
        assert_eq!(backoff(3, None, cap), Duration::from_secs(8));
        assert_eq!(backoff(30, None, cap), cap);
        assert_eq!(backoff(1, Some(Duration::from_secs(5)), cap), Duration::from_secs(5));
        assert_eq!(backoff(4, Some(Duration::from_secs(1)), cap), Duration::from_secs(1));
        assert_eq!(backoff(4, Some(Duration::ZERO), cap), Duration::from_secs(1));
        assert_eq!(backoff(1, Some(Duration::from_secs(7200)), cap), cap);
    }

    #[test]
    fn a_preview_is_the_first_hundred_characters() {
        assert_eq!(preview("你好").as_str(), "你好");
        assert_eq!(preview(&"字".repeat(150)).chars().count(), PREVIEW_CHARS);
    }
}
