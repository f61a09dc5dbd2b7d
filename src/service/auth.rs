//! Credentials: argon2id password hashing off the async executor, JWT issue/verification with revocation (token
//! versions cached per node, invalidated by the revocation event), and one-time WebSocket tickets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::error::{AppError, AppResult};
use crate::store::UserStore;

/// Hashes and verifies passwords with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane).
///
/// Hashing runs on a few dedicated threads (one per core, at most four), fed by a bounded queue. Not on tokio's
/// blocking pool: that pool grows to hundreds of threads under a login storm, and the allocator keeps a 19 MiB
/// arena per thread that ever hashed (a node once sat near a gigabyte after a registration burst). A fixed
/// set of threads bounds that memory to a few tens of MiB and leaves the executor to the chat traffic.
#[derive(Clone)]
pub struct PasswordHasherPool {
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// A real hash of a random password, verified against on unknown usernames so that login takes the same
    /// time whether or not the user exists.
    decoy: Arc<String>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Hash jobs waiting for a thread. A queued job is ~100 bytes; beyond this many, callers wait for room.
const QUEUE: usize = 1024;

impl PasswordHasherPool {
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).clamp(1, 4);
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            // The threads end when every sender (every clone of this pool) is dropped.
            let _ = std::thread::Builder::new().name(format!("gochat-argon2-{i}")).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
        }
        let salt = SaltString::generate(&mut OsRng);
        let decoy = Argon2::default()
            .hash_password(rand::random::<[u8; 16]>().as_slice(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self { jobs, decoy: Arc::new(decoy) }
    }

    /// Runs `f` on a hashing thread.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let jobs = self.jobs.clone();
        // `send` blocks only while the queue is full; do that wait off the executor.
        tokio::task::spawn_blocking(move || jobs.send(job))
            .await
            .map_err(AppError::internal)?
            .map_err(|_| AppError::internal(anyhow::anyhow!("password hashing threads are gone")))?;
        rx.await.map_err(AppError::internal)
    }

    pub async fn hash(&self, password: &str) -> AppResult<String> {
        let password = password.to_string();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AppError::internal(anyhow::anyhow!("argon2: {e}")))
        })
        .await?
    }

    /// True when `password` matches `hash`; `None` for `hash` verifies against a decoy and returns false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> AppResult<bool> {
        let password = password.to_string();
        let (hash, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.decoy.as_str().to_string(), false),
        };
        self.run(move || {
            let ok = PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false);
            ok && real
        })
        .await
    }
}

impl Default for PasswordHasherPool {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id, as a string (the JWT `sub` claim is a string).
    sub: String,
    /// The user's token version when the token was issued; a password change bumps it, revoking older tokens.
    ver: i64,
    iat: i64,
    exp: i64,
}

/// Who a verified token speaks for, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    /// The user's token version the credential was issued under; a later version revokes it.
    pub token_version: i64,
    /// When the credential expires (the token's `exp`).
    pub expires_at: DateTime<Utc>,
}

/// How long a node trusts a cached token version without asking the database again. A revocation reaches every
/// node at once as an event on the bus; this bounds how long a token stays usable on a node that missed that
/// event (the bus is at-most-once).
pub const TOKEN_VERSION_STALENESS: Duration = Duration::from_secs(10);
/// Users whose token version a node caches at once (a few MB at most); beyond it the cache starts over.
const MAX_CACHED_VERSIONS: usize = 200_000;
/// How long a WebSocket ticket from `POST /api/ws/ticket` may wait to be used (once).
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// Each user's current token version as this node last learnt it, with when. Versions only grow: a stale read
/// that finishes after a revocation event cannot lower what the event set.
#[derive(Clone, Default)]
pub struct TokenVersions {
    entries: Arc<Mutex<HashMap<i64, (i64, Instant)>>>,
}

impl TokenVersions {
    fn fresh(&self, user_id: i64, now: Instant) -> Option<i64> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&user_id).filter(|(_, at)| now.duration_since(*at) < TOKEN_VERSION_STALENESS).map(|(v, _)| *v)
    }

    /// Records that `user_id`'s tokens are at `version` (from the database, or a revocation event).
    pub fn learn(&self, user_id: i64, version: i64, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_VERSIONS && !entries.contains_key(&user_id) {
            entries.clear();
        }
        let e = entries.entry(user_id).or_insert((version, now));
        *e = (e.0.max(version), now);
    }
}

/// Issues and verifies HS256 JWTs. Verification checks signature and expiry, then the user's current token
/// version (cached for at most [`TOKEN_VERSION_STALENESS`], refreshed at once by a revocation event), so a
/// password change revokes every token issued before it, on every node.
#[derive(Clone)]
pub struct TokenService {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    ttl: Duration,
    users: Arc<dyn UserStore>,
    versions: TokenVersions,
}

impl TokenService {
    pub fn new(secret: &[u8], ttl: Duration, users: Arc<dyn UserStore>) -> Self {
        Self {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            ttl,
            users,
            versions: TokenVersions::default(),
        }
    }

    /// The node's cache of token versions, for the revocation events that update it.
    pub fn versions(&self) -> &TokenVersions {
        &self.versions
    }

    pub fn issue(&self, user_id: i64, token_version: i64) -> AppResult<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let exp = now + chrono::Duration::from_std(self.ttl).map_err(AppError::internal)?;
        let claims =
            Claims { sub: user_id.to_string(), ver: token_version, iat: now.timestamp(), exp: exp.timestamp() };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AppError::internal)?;
        Ok((token, DateTime::from_timestamp(exp.timestamp(), 0).unwrap_or(exp)))
    }

    /// Verifies a bearer token: 401 `invalid_token`, `token_expired` or `token_revoked` when it does not hold.
    pub async fn verify(&self, token: &str) -> AppResult<Principal> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                AppError::new(ErrorCode::TokenExpired, "the token has expired; log in again")
            }
            _ => AppError::new(ErrorCode::InvalidToken, "the token is not valid"),
        })?;
        let claims = data.claims;
        let user_id: i64 =
            claims.sub.parse().map_err(|_| AppError::new(ErrorCode::InvalidToken, "the token is not valid"))?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0)
            .ok_or_else(|| AppError::new(ErrorCode::InvalidToken, "the token is not valid"))?;
        let current = self.current_version(user_id).await?;
        check_version(user_id, claims.ver, current, expires_at)
    }

    /// The user's token version: cached when fresh, else read (and cached). `None` for an unknown user.
    async fn current_version(&self, user_id: i64) -> AppResult<Option<i64>> {
        if let Some(v) = self.versions.fresh(user_id, Instant::now()) {
            return Ok(Some(v));
        }
        let read_at = Instant::now();
        let v = self.users.token_version(user_id).await?;
        if let Some(v) = v {
            self.versions.learn(user_id, v, read_at);
        }
        Ok(v)
    }

    /// Issues a one-time WebSocket ticket for a verified principal (`POST /api/ws/ticket`): 32 random bytes,
    /// base64url, valid [`TICKET_TTL`]. Only its SHA-256 is stored, so the table holds nothing usable.
    pub async fn issue_ticket(&self, who: Principal) -> AppResult<(String, DateTime<Utc>)> {
        use base64::Engine as _;
        let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(TICKET_TTL).map_err(AppError::internal)?;
        self.users
            .create_ticket(&ticket_hash(&ticket), who.user_id, who.token_version, who.expires_at, expires_at, now)
            .await?;
        Ok((ticket, expires_at))
    }

    /// Verifies what a client passed to `/ws` as `token`: a one-time ticket (no dots) or a JWT.
    pub async fn verify_token_or_ticket(&self, credential: &str) -> AppResult<Principal> {
        if credential.contains('.') {
            return self.verify(credential).await;
        }
        let invalid = || AppError::new(ErrorCode::InvalidTicket, "the ticket is unknown, used or expired");
        if credential.len() != 43 {
            return Err(invalid());
        }
        let (user_id, ver, token_expires_at) =
            self.users.take_ticket(&ticket_hash(credential), Utc::now()).await?.ok_or_else(invalid)?;
        let current = self.current_version(user_id).await?;
        check_version(user_id, ver, current, token_expires_at)
    }
}

fn ticket_hash(ticket: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(ticket.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn check_version(user_id: i64, ver: i64, current: Option<i64>, expires_at: DateTime<Utc>) -> AppResult<Principal> {
    match current {
        Some(v) if v == ver => Ok(Principal { user_id, token_version: ver, expires_at }),
        Some(_) => Err(AppError::new(ErrorCode::TokenRevoked, "the token was revoked by a password change")),
        None => Err(AppError::new(ErrorCode::InvalidToken, "the token's user does not exist")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_versions_only_grow_and_go_stale() {
        let v = TokenVersions::default();
        let t0 = Instant::now();
        v.learn(1, 3, t0);
        v.learn(1, 2, t0);
        assert_eq!(v.fresh(1, t0), Some(3), "a stale read cannot lower a version an event set");
        assert_eq!(v.fresh(1, t0 + TOKEN_VERSION_STALENESS), None, "then the database is asked again");
        assert_eq!(v.fresh(2, t0), None);
    }
}
