//! The node's VAPID key (RFC 8292): the P-256 key pair that identifies this server to push services. Browsers
//! bind a subscription to its public key (`applicationServerKey`), so every node of a cluster must hold the same
//! one, and it must never change (existing subscriptions would stop working).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;

/// How long a VAPID token is valid (RFC 8292 §2: at most 24 hours).
const TOKEN_LIFETIME_SECS: i64 = 12 * 3600;

/// A VAPID key pair and the contact (`sub`) sent with it.
#[derive(Clone)]
pub struct VapidKey {
    secret: p256::SecretKey,
    public: String,
    signing: jsonwebtoken::EncodingKey,
    subject: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey").field("public", &self.public).field("subject", &self.subject).finish()
    }
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: i64,
    sub: &'a str,
}

impl VapidKey {
    /// The key whose private scalar is `private` (32 bytes, base64url, as `web-push generate-vapid-keys`
    /// prints it). The error says what is wrong, for a message naming the setting.
    pub fn from_base64url(private: &str, subject: &str) -> Result<VapidKey, String> {
        let bytes =
            URL_SAFE_NO_PAD.decode(private.trim().trim_end_matches('=')).map_err(|_| "not base64url".to_string())?;
        if bytes.len() != 32 {
            return Err(format!("{} bytes where a P-256 private key has 32", bytes.len()));
        }
        let secret = p256::SecretKey::from_slice(&bytes).map_err(|_| "not a P-256 private key".to_string())?;
        Self::from_secret(secret, subject)
    }

    /// A new random key.
    pub fn generate(subject: &str) -> VapidKey {
        Self::from_secret(p256::SecretKey::random(&mut rand::rngs::OsRng), subject).expect("a fresh P-256 key encodes")
    }

    fn from_secret(secret: p256::SecretKey, subject: &str) -> Result<VapidKey, String> {
        let der = secret.to_pkcs8_der().map_err(|e| format!("cannot encode the key: {e}"))?;
        let public = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(VapidKey {
            signing: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
            secret,
            public,
            subject: subject.to_string(),
        })
    }

    /// The private scalar, base64url (what [`VapidKey::from_base64url`] reads).
    pub fn private_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.to_bytes())
    }

    /// The public key as browsers take it for `applicationServerKey`: the uncompressed point, base64url.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header of a push to `endpoint` (RFC 8292 §3): `vapid t=<ES256 JWT>, k=<public key>`,
    /// the token's audience the endpoint's origin, valid for 12 hours from `now`.
    pub fn authorization(
        &self,
        endpoint: &url::Url,
        now: DateTime<Utc>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let audience = endpoint.origin().ascii_serialization();
        let claims = Claims { aud: &audience, exp: now.timestamp() + TOKEN_LIFETIME_SECS, sub: &self.subject };
        let token =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256), &claims, &self.signing)?;
        Ok(format!("vapid t={token}, k={}", self.public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_through_its_base64url_form() {
        let key = VapidKey::generate("mailto:ops@example.com");
        let again = VapidKey::from_base64url(&key.private_base64url(), "mailto:ops@example.com").unwrap();
        assert_eq!(key.public_key(), again.public_key());
        assert_eq!(URL_SAFE_NO_PAD.decode(key.public_key()).unwrap().len(), 65);
    }

    #[test]
    fn a_malformed_key_is_refused_with_a_reason() {
        assert!(VapidKey::from_base64url("not base64!", "mailto:a@b").unwrap_err().contains("base64url"));
        assert!(VapidKey::from_base64url("AAAA", "mailto:a@b").unwrap_err().contains("32"));
        let zero = URL_SAFE_NO_PAD.encode([0u8; 32]);
        assert!(VapidKey::from_base64url(&zero, "mailto:a@b").is_err());
    }

    #[test]
    fn the_token_is_an_es256_jwt_for_the_endpoints_origin_that_the_public_key_verifies() {
        let key = VapidKey::generate("mailto:ops@example.com");
        let endpoint = url::Url::parse("https://push.example.net:8443/wpush/v2/abc").unwrap();
        let now = Utc::now();
        let header = key.authorization(&endpoint, now).unwrap();
        let (t, k) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(k, key.public_key());
        let point = URL_SAFE_NO_PAD.decode(k).unwrap();
        let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(&x, &y).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_audience(&["https://push.example.net:8443"]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(t, &decoding, &validation).unwrap();
        assert_eq!(data.claims["sub"], "mailto:ops@example.com");
        assert_eq!(data.claims["exp"].as_i64().unwrap(), now.timestamp() + TOKEN_LIFETIME_SECS);
    }
}
