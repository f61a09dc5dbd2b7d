//! Typed settings: defaults, loading from the environment and an optional TOML file, and validation that names
//! the offending key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration value that could not be used; `key` is the environment-variable name of the setting.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), message: message.into() }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: Secret,
    pub region: String,
}

/// Every setting of a node. Build it with [`Config::load`] (environment + file) or [`Config::from_pairs`].
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: CredentialUrl,
    pub redis_url: Option<CredentialUrl>,
    /// A PEM file of the CA certificates a `rediss://` server's certificate must chain to (else the system's
    /// roots).
    pub redis_ca_file: Option<PathBuf>,
    pub redis_prefix: String,
    pub s3: Option<S3Config>,
    /// `None` in embedded mode means "generate one into the data dir on first start".
    pub jwt_secret: Option<Secret>,
    pub token_ttl: Duration,
    pub log: String,
    pub log_format: LogFormat,
    /// Interval of the WebSocket heartbeat (Ping and app-level `ping`).
    pub heartbeat: Duration,
    /// A WebSocket silent for this long is closed.
    pub idle_timeout: Duration,
    /// Login/registration attempts allowed per client IP per minute.
    pub auth_rate_per_ip: u32,
    /// Login attempts allowed per username per minute.
    pub auth_rate_per_username: u32,
    /// Honour `X-Forwarded-For` for the client address (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Upper bound of a group's size.
    pub max_group_members: u32,
    /// Database connection pool size (Postgres).
    pub db_pool_size: u32,
    /// The whole budget of a graceful stop: connections drain for this less the writers' flush budget, then the
    /// writers flush (see `startup::Application::run_until_stopped`).
    pub shutdown_grace: Duration,
    /// How long a stopping node keeps serving while `/readyz` says it is draining, before it closes its listener
    /// and sockets: time for load balancers that only probe readiness to stop sending it traffic.
    pub drain_delay: Duration,
    /// How long a sender may recall their message (DESIGN.md §7; a group's owner and admins may at any time).
    pub recall_window: Duration,
    /// How long a sender may edit their text message (DESIGN.md §7).
    pub edit_window: Duration,
    /// How long a node's presence records outlive its last heartbeat (it heartbeats three times as often): the
    /// users of a node that dies go offline within a third more than this (DESIGN.md §8: within 60 s).
    pub presence_ttl: Duration,
    /// How long a user who lost their last socket stays online for their friends before going offline (a page
    /// reload or a network switch shows no blip).
    pub presence_grace: Duration,
    /// Most WebSockets this node holds; further upgrades get 503 `at_capacity`. `None`: derived at start-up
    /// from the process's open-file limit (see [`crate::startup::socket_capacity`]).
    pub max_connections: Option<u32>,
    /// Uploads no message referenced within this age are deleted.
    pub upload_ttl: Duration,
    /// Uploads allowed per user per minute.
    pub upload_rate_per_min: u32,
    /// Upload volume allowed per user per hour, in MiB.
    pub upload_mib_per_hour: u32,
    /// Messages a user may send per second, REST and WebSocket together (twice as many in a burst).
    pub send_rate_per_sec: u32,
    /// Invite link previews and joins a user may attempt per minute (codes are unguessable; this bounds
    /// probing).
    pub invite_rate_per_min: u32,
    /// Frames a WebSocket client may send per second (twice as many in a burst).
    pub ws_frame_rate_per_sec: u32,
    /// The VAPID private key (RFC 8292) every node signs pushes with: a P-256 scalar, base64url. `None`: in
    /// embedded mode, generated once into the data dir; with Postgres, push notifications are off.
    pub vapid_private_key: Option<Secret>,
    /// The contact push services may reach the operator at (`mailto:` or `https:`), sent in every VAPID token.
    pub vapid_subject: String,
    /// How long a message may wait for a connected device's acknowledgement before the device is pushed to.
    pub push_ack_wait: Duration,
    /// Accept `http` push endpoints on loopback addresses (tests and development only: a push service on this
    /// machine). Off, every endpoint must be `https` and not loopback.
    pub push_allow_loopback: bool,
}

/// The recognised keys, as environment variables; a TOML file uses the same names, either verbatim or lower-case
/// without the `GOCHAT_` prefix (`listen = "127.0.0.1:8080"`).
pub const KEYS: &[&str] = &[
    "GOCHAT_LISTEN",
    "GOCHAT_DATA_DIR",
    "GOCHAT_DATABASE_URL",
    "GOCHAT_REDIS_URL",
    "GOCHAT_REDIS_PREFIX",
    "GOCHAT_REDIS_CA_FILE",
    "GOCHAT_S3_ENDPOINT",
    "GOCHAT_S3_BUCKET",
    "GOCHAT_S3_ACCESS_KEY",
    "GOCHAT_S3_SECRET_KEY",
    "GOCHAT_S3_REGION",
    "GOCHAT_JWT_SECRET",
    "GOCHAT_TOKEN_TTL",
    "GOCHAT_LOG",
    "GOCHAT_LOG_FORMAT",
    "GOCHAT_HEARTBEAT",
    "GOCHAT_IDLE_TIMEOUT",
    "GOCHAT_AUTH_RATE_PER_IP",
    "GOCHAT_AUTH_RATE_PER_USERNAME",
    "GOCHAT_TRUST_FORWARDED_FOR",
    "GOCHAT_MAX_GROUP_MEMBERS",
    "GOCHAT_DB_POOL_SIZE",
    "GOCHAT_SHUTDOWN_GRACE",
    "GOCHAT_DRAIN_DELAY",
    "GOCHAT_RECALL_WINDOW",
    "GOCHAT_EDIT_WINDOW",
    "GOCHAT_PRESENCE_TTL",
    "GOCHAT_PRESENCE_GRACE",
    "GOCHAT_MAX_CONNECTIONS",
    "GOCHAT_UPLOAD_TTL",
    "GOCHAT_UPLOAD_RATE_PER_MIN",
    "GOCHAT_SEND_RATE",
    "GOCHAT_INVITE_RATE_PER_MIN",
    "GOCHAT_WS_FRAME_RATE",
    "GOCHAT_UPLOAD_MIB_PER_HOUR",
    "GOCHAT_VAPID_PRIVATE_KEY",
    "GOCHAT_VAPID_SUBJECT",
    "GOCHAT_PUSH_ACK_WAIT",
    "GOCHAT_PUSH_ALLOW_LOOPBACK",
];

impl Config {
    /// Loads the TOML file (if given), then lets the environment override it.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut pairs = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| err("--config", format!("cannot read {}: {e}", path.display())))?;
            pairs.extend(parse_toml(&text)?);
        }
        for (k, v) in std::env::vars() {
            if k.starts_with("GOCHAT_") && KEYS.contains(&k.as_str()) {
                pairs.insert(k, v);
            }
        }
        Self::from_pairs(pairs)
    }

    /// Builds a configuration from `GOCHAT_*` keys; unknown keys are refused so typos do not pass silently.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Config, ConfigError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let k = k.as_ref();
            if !KEYS.contains(&k) {
                return Err(err(k, "unknown setting"));
            }
            map.insert(k.to_string(), v.into());
        }
        let get = |k: &str| map.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());

        let listen = match get("GOCHAT_LISTEN") {
            Some(v) => {
                v.parse().map_err(|_| err("GOCHAT_LISTEN", format!("`{v}` is not an address like 0.0.0.0:8080")))?
            }
            None => SocketAddr::from(([0, 0, 0, 0], 8080)),
        };
        let data_dir = PathBuf::from(get("GOCHAT_DATA_DIR").unwrap_or("./data"));
        let database_url = match get("GOCHAT_DATABASE_URL") {
            Some(v) if v.starts_with("postgres://") || v.starts_with("postgresql://") || v.starts_with("sqlite:") => {
                CredentialUrl(v.to_string())
            }
            Some(v) => {
                return Err(err(
                    "GOCHAT_DATABASE_URL",
                    format!("`{}` must start with postgres:// or sqlite://", redact(v)),
                ))
            }
            None => CredentialUrl(format!("sqlite://{}", data_dir.join("gochat.db").display())),
        };
        let redis_url = match get("GOCHAT_REDIS_URL") {
            Some(v) if v.starts_with("redis://") || v.starts_with("rediss://") => Some(CredentialUrl(v.to_string())),
            Some(v) => return Err(err("GOCHAT_REDIS_URL", format!("`{}` must start with redis://", redact(v)))),
            None => None,
        };
        let redis_prefix = get("GOCHAT_REDIS_PREFIX").unwrap_or("gochat:").to_string();
        let redis_ca_file = get("GOCHAT_REDIS_CA_FILE").map(PathBuf::from);
        if let Some(ca) = &redis_ca_file {
            if !redis_url.as_ref().is_some_and(|u| u.starts_with("rediss://")) {
                return Err(err("GOCHAT_REDIS_CA_FILE", "only applies to a rediss:// GOCHAT_REDIS_URL"));
            }
            if !ca.is_file() {
                return Err(err("GOCHAT_REDIS_CA_FILE", format!("{} is not a readable file", ca.display())));
            }
        }

        let s3_keys = ["GOCHAT_S3_ENDPOINT", "GOCHAT_S3_BUCKET", "GOCHAT_S3_ACCESS_KEY", "GOCHAT_S3_SECRET_KEY"];
        let s3 = if s3_keys.iter().any(|k| get(k).is_some()) {
            for k in s3_keys {
                if get(k).is_none() {
                    return Err(err(k, "required when any GOCHAT_S3_* setting is given"));
                }
            }
            let endpoint = get("GOCHAT_S3_ENDPOINT").unwrap_or_default().to_string();
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(err("GOCHAT_S3_ENDPOINT", "must be an http:// or https:// URL"));
            }
            Some(S3Config {
                endpoint,
                bucket: get("GOCHAT_S3_BUCKET").unwrap_or_default().to_string(),
                access_key: get("GOCHAT_S3_ACCESS_KEY").unwrap_or_default().to_string(),
                secret_key: Secret(get("GOCHAT_S3_SECRET_KEY").unwrap_or_default().to_string()),
                region: get("GOCHAT_S3_REGION").unwrap_or("us-east-1").to_string(),
            })
        } else {
            None
        };

        let jwt_secret = get("GOCHAT_JWT_SECRET").map(|s| Secret(s.to_string()));
        if let Some(s) = &jwt_secret {
            if s.len() < 32 {
                return Err(err("GOCHAT_JWT_SECRET", "must be at least 32 characters"));
            }
        }
        let is_postgres = database_url.starts_with("postgres");
        if is_postgres && jwt_secret.is_none() {
            return Err(err("GOCHAT_JWT_SECRET", "required with a Postgres database (all nodes must share it)"));
        }

        let token_ttl = duration(get("GOCHAT_TOKEN_TTL"), "GOCHAT_TOKEN_TTL", Duration::from_secs(7 * 86400))?;
        let log = get("GOCHAT_LOG").unwrap_or("info").to_string();
        let log_format = match get("GOCHAT_LOG_FORMAT") {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(v) => return Err(err("GOCHAT_LOG_FORMAT", format!("`{v}` is neither `text` nor `json`"))),
        };
        let heartbeat = duration(get("GOCHAT_HEARTBEAT"), "GOCHAT_HEARTBEAT", Duration::from_secs(30))?;
        let idle_timeout = duration(get("GOCHAT_IDLE_TIMEOUT"), "GOCHAT_IDLE_TIMEOUT", Duration::from_secs(75))?;
        if idle_timeout <= heartbeat {
            return Err(err("GOCHAT_IDLE_TIMEOUT", "must be longer than GOCHAT_HEARTBEAT"));
        }
        let shutdown_grace = duration(get("GOCHAT_SHUTDOWN_GRACE"), "GOCHAT_SHUTDOWN_GRACE", Duration::from_secs(20))?;
        let vapid_subject = get("GOCHAT_VAPID_SUBJECT").unwrap_or("mailto:admin@localhost").to_string();
        if !(vapid_subject.starts_with("mailto:") || vapid_subject.starts_with("https://")) {
            return Err(err("GOCHAT_VAPID_SUBJECT", "must be a mailto: or https: URL (RFC 8292 §2.1)"));
        }
        let vapid_private_key = get("GOCHAT_VAPID_PRIVATE_KEY").map(|s| Secret(s.to_string()));
        if let Some(key) = &vapid_private_key {
            crate::push::VapidKey::from_base64url(key, &vapid_subject).map_err(|why| {
                err("GOCHAT_VAPID_PRIVATE_KEY", format!("{why}; expected a P-256 private key, 32 bytes base64url"))
            })?;
        }
        let push_ack_wait = duration(get("GOCHAT_PUSH_ACK_WAIT"), "GOCHAT_PUSH_ACK_WAIT", Duration::from_secs(10))?;
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&push_ack_wait) {
            return Err(err("GOCHAT_PUSH_ACK_WAIT", "must be 1s to 10m"));
        }

        Ok(Config {
            listen,
            data_dir,
            database_url,
            redis_url,
            redis_ca_file,
            redis_prefix,
            s3,
            jwt_secret,
            token_ttl,
            log,
            log_format,
            heartbeat,
            idle_timeout,
            auth_rate_per_ip: number(get("GOCHAT_AUTH_RATE_PER_IP"), "GOCHAT_AUTH_RATE_PER_IP", 30, 1..=1_000_000)?,
            auth_rate_per_username: number(
                get("GOCHAT_AUTH_RATE_PER_USERNAME"),
                "GOCHAT_AUTH_RATE_PER_USERNAME",
                10,
                1..=1_000_000,
            )?,
            trust_forwarded_for: boolean(get("GOCHAT_TRUST_FORWARDED_FOR"), "GOCHAT_TRUST_FORWARDED_FOR")?,
            max_group_members: number(get("GOCHAT_MAX_GROUP_MEMBERS"), "GOCHAT_MAX_GROUP_MEMBERS", 2000, 2..=100_000)?,
            db_pool_size: number(get("GOCHAT_DB_POOL_SIZE"), "GOCHAT_DB_POOL_SIZE", 16, 1..=1000)?,
            shutdown_grace,
            drain_delay: match get("GOCHAT_DRAIN_DELAY") {
                Some("0") | Some("0s") => Duration::ZERO,
                v => {
                    let d = duration(v, "GOCHAT_DRAIN_DELAY", Duration::ZERO)?;
                    if d > Duration::from_secs(60) {
                        return Err(err("GOCHAT_DRAIN_DELAY", "must be 0s to 60s"));
                    }
                    d
                }
            },
            recall_window: duration(get("GOCHAT_RECALL_WINDOW"), "GOCHAT_RECALL_WINDOW", Duration::from_secs(120))?,
            edit_window: duration(get("GOCHAT_EDIT_WINDOW"), "GOCHAT_EDIT_WINDOW", Duration::from_secs(48 * 3600))?,
            presence_ttl: {
                let ttl = duration(get("GOCHAT_PRESENCE_TTL"), "GOCHAT_PRESENCE_TTL", Duration::from_secs(30))?;
                if !(Duration::from_secs(3)..=Duration::from_secs(45)).contains(&ttl) {
                    return Err(err(
                        "GOCHAT_PRESENCE_TTL",
                        "must be 3s to 45s (a dead node's users go offline within 60 s)",
                    ));
                }
                ttl
            },
            presence_grace: duration(get("GOCHAT_PRESENCE_GRACE"), "GOCHAT_PRESENCE_GRACE", Duration::from_secs(5))?,
            max_connections: match get("GOCHAT_MAX_CONNECTIONS") {
                Some(v) => Some(number(Some(v), "GOCHAT_MAX_CONNECTIONS", 0, 1..=10_000_000)?),
                None => None,
            },
            upload_ttl: duration(get("GOCHAT_UPLOAD_TTL"), "GOCHAT_UPLOAD_TTL", Duration::from_secs(86400))?,
            upload_rate_per_min: number(
                get("GOCHAT_UPLOAD_RATE_PER_MIN"),
                "GOCHAT_UPLOAD_RATE_PER_MIN",
                60,
                1..=1_000_000,
            )?,
            upload_mib_per_hour: number(
                get("GOCHAT_UPLOAD_MIB_PER_HOUR"),
                "GOCHAT_UPLOAD_MIB_PER_HOUR",
                2048,
                1..=10_000_000,
            )?,
            send_rate_per_sec: number(get("GOCHAT_SEND_RATE"), "GOCHAT_SEND_RATE", 20, 1..=10_000_000)?,
            invite_rate_per_min: number(
                get("GOCHAT_INVITE_RATE_PER_MIN"),
                "GOCHAT_INVITE_RATE_PER_MIN",
                30,
                1..=10_000_000,
            )?,
            ws_frame_rate_per_sec: number(get("GOCHAT_WS_FRAME_RATE"), "GOCHAT_WS_FRAME_RATE", 100, 1..=10_000_000)?,
            vapid_private_key,
            vapid_subject,
            push_ack_wait,
            push_allow_loopback: boolean(get("GOCHAT_PUSH_ALLOW_LOOPBACK"), "GOCHAT_PUSH_ALLOW_LOOPBACK")?,
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres")
    }
}

/// Hides a password in a URL before it is echoed back in an error.
/// A secret setting (the JWT secret, the S3 secret key): `Debug` shows `<redacted>`, so it never reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A URL that may carry credentials (`postgres://user:password@host/db`): `Debug` shows it with the
/// credentials replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialUrl(String);

impl CredentialUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for CredentialUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CredentialUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact(&self.0))
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

fn number(v: Option<&str>, key: &str, default: u32, range: std::ops::RangeInclusive<u32>) -> Result<u32, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let n: u32 = v.parse().map_err(|_| err(key, format!("`{v}` is not a whole number")))?;
    if !range.contains(&n) {
        return Err(err(key, format!("{n} is outside {}..={}", range.start(), range.end())));
    }
    Ok(n)
}

fn boolean(v: Option<&str>, key: &str) -> Result<bool, ConfigError> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") | Some("0") | Some("no") => Ok(false),
        Some("true") | Some("1") | Some("yes") => Ok(true),
        Some(other) => Err(err(key, format!("`{other}` is not true or false"))),
    }
}

/// Parses `90`, `90s`, `250ms`, `15m`, `12h`, `7d`.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86400)?),
        _ => return None,
    };
    (d > Duration::ZERO).then_some(d)
}

fn duration(v: Option<&str>, key: &str, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => parse_duration(v)
            .ok_or_else(|| err(key, format!("`{v}` is not a positive duration like 30s, 15m, 12h or 7d"))),
    }
}

/// Reads a flat TOML table whose keys are the `GOCHAT_*` names or their short lower-case forms.
fn parse_toml(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| err("--config", format!("invalid TOML: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let key = if k.starts_with("GOCHAT_") { k.clone() } else { format!("GOCHAT_{}", k.to_ascii_uppercase()) };
        if !KEYS.contains(&key.as_str()) {
            return Err(err(&k, "unknown setting in the config file"));
        }
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => return Err(err(&key, "must be a string, number or boolean")),
        };
        out.insert(key, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_configuration_gives_an_embedded_node() {
        let c = Config::from_pairs(Vec::<(&str, &str)>::new()).unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert!(c.database_url.starts_with("sqlite://"));
        assert!(c.redis_url.is_none() && c.s3.is_none());
        assert_eq!(c.token_ttl, Duration::from_secs(7 * 86400));
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let e = Config::from_pairs([("GOCHAT_TOKEN_TTL", "soon")]).unwrap_err();
        assert_eq!(e.key, "GOCHAT_TOKEN_TTL");
        let e = Config::from_pairs([("GOCHAT_LISTEN", "nowhere")]).unwrap_err();
        assert_eq!(e.key, "GOCHAT_LISTEN");
        let e = Config::from_pairs([("GOCHAT_DATABASE_URL", "postgres://u:pw@h/db")]).unwrap_err();
        assert_eq!(e.key, "GOCHAT_JWT_SECRET");
        let e = Config::from_pairs([("GOCHAT_S3_BUCKET", "b")]).unwrap_err();
        assert_eq!(e.key, "GOCHAT_S3_ENDPOINT");
        let e = Config::from_pairs([("GOCHAT_VAPID_PRIVATE_KEY", "not-a-key")]).unwrap_err();
        assert_eq!(e.key, "GOCHAT_VAPID_PRIVATE_KEY");
        let e = Config::from_pairs([("GOCHAT_VAPID_SUBJECT", "ops@example.com")]).unwrap_err();
        assert_eq!(e.key, "GOCHAT_VAPID_SUBJECT");
        let e = Config::from_pairs([("GOCHAT_PUSH_ACK_WAIT", "1h")]).unwrap_err();
        assert_eq!(e.key, "GOCHAT_PUSH_ACK_WAIT");
        let key = crate::push::VapidKey::generate("mailto:a@b").private_base64url();
        let c = Config::from_pairs([("GOCHAT_VAPID_PRIVATE_KEY", key.as_str())]).unwrap();
        assert!(!format!("{c:?}").contains(&key), "the VAPID key is a secret");
    }

    #[test]
    fn a_toml_file_takes_short_and_long_keys() {
        let m = parse_toml("listen = \"127.0.0.1:9000\"\nGOCHAT_TOKEN_TTL = \"12h\"\nheartbeat = 5").unwrap();
        let c = Config::from_pairs(m).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.token_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(c.heartbeat, Duration::from_secs(5));
        assert_eq!(parse_toml("bogus = 1").unwrap_err().key, "bogus");
    }

    #[test]
    fn secrets_and_credentials_never_show_in_debug_output() {
        let c = Config::from_pairs([
            ("GOCHAT_DATABASE_URL", "postgres://gochat:db-pass-123@db/gochat"),
            ("GOCHAT_REDIS_URL", "redis://:redis-pass-456@cache:6379"),
            ("GOCHAT_JWT_SECRET", "jwt-secret-jwt-secret-jwt-secret-789"),
            ("GOCHAT_S3_ENDPOINT", "http://minio:9000"),
            ("GOCHAT_S3_BUCKET", "media"),
            ("GOCHAT_S3_ACCESS_KEY", "access"),
            ("GOCHAT_S3_SECRET_KEY", "s3-secret-000"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["db-pass-123", "redis-pass-456", "jwt-secret-jwt", "s3-secret-000"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("postgres://***@db/gochat"), "the rest of a URL stays readable: {shown}");
        assert_eq!(c.database_url.as_str(), "postgres://gochat:db-pass-123@db/gochat");
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604800)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("3 weeks"), None);
    }
}
