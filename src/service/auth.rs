//! Credentials: argon2id password hashing off the async executor, and JWT issue/verification with revocation.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};
use crate::store::UserStore;

/// Hashes and verifies passwords with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane).
///
/// Hashing runs on a few dedicated threads (one per core, at most four), fed by a bounded queue. Not on tokio's
/// blocking pool: that pool grows to hundreds of threads under a login storm, and the allocator keeps a 19 MiB
/// arena per thread that ever hashed, which is how a node once sat at 900 MB after 100 registrations. A fixed
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

/// Who a verified token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
}

/// Issues and verifies HS256 JWTs. Verification checks signature and expiry, then the user's current token
/// version in the database, so a password change revokes every token issued before it, on every node.
#[derive(Clone)]
pub struct TokenService {
    encoding: Arc<EncodingKey>,
    decoding: Arc<DecodingKey>,
    ttl: Duration,
    users: Arc<dyn UserStore>,
}

impl TokenService {
    pub fn new(secret: &[u8], ttl: Duration, users: Arc<dyn UserStore>) -> Self {
        Self {
            encoding: Arc::new(EncodingKey::from_secret(secret)),
            decoding: Arc::new(DecodingKey::from_secret(secret)),
            ttl,
            users,
        }
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
                AppError::unauthorized("token_expired", "the token has expired; log in again")
            }
            _ => AppError::unauthorized("invalid_token", "the token is not valid"),
        })?;
        let claims = data.claims;
        let user_id: i64 =
            claims.sub.parse().map_err(|_| AppError::unauthorized("invalid_token", "the token is not valid"))?;
        match self.users.token_version(user_id).await? {
            Some(v) if v == claims.ver => Ok(Principal { user_id }),
            Some(_) => Err(AppError::unauthorized("token_revoked", "the token was revoked by a password change")),
            None => Err(AppError::unauthorized("invalid_token", "the token's user does not exist")),
        }
    }
}
