//! Credentials: argon2id password hashing off the async executor, and JWT issue/verification with revocation.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};
use crate::store::UserStore;

/// Hashes and verifies passwords with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane).
///
/// Hashing runs on the blocking pool; a semaphore admits at most two hashes per core at once, which keeps the
/// memory of a login storm at about 38 MiB per core and leaves the executor's threads to the chat traffic.
#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against on unknown usernames so that login takes the same
    /// time whether or not the user exists.
    decoy: Arc<String>,
}

impl PasswordHasherPool {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let salt = SaltString::generate(&mut OsRng);
        let decoy = Argon2::default()
            .hash_password(rand::random::<[u8; 16]>().as_slice(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Self { permits: Arc::new(Semaphore::new(cores * 2)), decoy: Arc::new(decoy) }
    }

    pub async fn hash(&self, password: &str) -> AppResult<String> {
        let _permit = self.permits.acquire().await.map_err(AppError::internal)?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| AppError::internal(anyhow::anyhow!("argon2: {e}")))
        })
        .await
        .map_err(AppError::internal)?
    }

    /// True when `password` matches `hash`; `None` for `hash` verifies against a decoy and returns false.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> AppResult<bool> {
        let _permit = self.permits.acquire().await.map_err(AppError::internal)?;
        let password = password.to_string();
        let (hash, real) = match hash {
            Some(h) => (h.to_string(), true),
            None => (self.decoy.as_str().to_string(), false),
        };
        tokio::task::spawn_blocking(move || {
            let ok = PasswordHash::new(&hash)
                .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false);
            ok && real
        })
        .await
        .map_err(AppError::internal)
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
