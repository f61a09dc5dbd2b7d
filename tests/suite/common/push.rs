//! A push service for the tests, as browsers' push services are: an HTTP server on a loopback port that takes
//! `POST /push/{subscription}`, records what came and answers as told (201 unless a test scripts otherwise).
//! And a browser's side of a subscription: the key pair and secret it subscribes with, and the RFC 8291
//! decryption of what it receives, written here from the RFC with RustCrypto's primitives, independently of the
//! server's `web-push-native`, and checked against the RFC's own example.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Path};
use poem::{handler, post, EndpointExt, Request, Response, Route, Server};
use serde_json::Value;
use sha2::Sha256;

/// One request the push service received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str).unwrap_or_default()
    }
}

/// An answer to give: a status and a `Retry-After` (the value `endless` instead: a body that never ends).
type Answer = (u16, Option<String>);

#[derive(Default)]
struct State {
    received: Mutex<HashMap<String, Vec<Received>>>,
    /// Per subscription, the answers to give next (status, Retry-After), then 201.
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
}

#[handler]
fn receive(req: &Request, Path(name): Path<String>, body: Vec<u8>, state: Data<&Arc<State>>) -> Response {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let answer = state.script.lock().unwrap().get_mut(&name).and_then(VecDeque::pop_front);
    state.received.lock().unwrap().entry(name).or_default().push(Received { at: Instant::now(), headers, body });
    let (status, retry_after) = answer.unwrap_or((201, None));
    let mut response = Response::builder().status(poem::http::StatusCode::from_u16(status).unwrap());
    if retry_after.as_deref() == Some("endless") {
        // A hostile "push service": a refusal whose body streams on and on.
        let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        let body = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
        return response.body(poem::Body::from_bytes_stream(body));
    }
    if let Some(r) = retry_after {
        response = response.header("Retry-After", r);
    }
    response.finish()
}

/// A running test push service.
pub struct PushService {
    pub origin: String,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for PushService {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl PushService {
    pub async fn start() -> PushService {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let state = Arc::new(State::default());
        let app = Route::new().at("/push/:name", post(receive)).data(state.clone());
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        PushService { origin: format!("http://{addr}"), state, server }
    }

    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/push/{name}", self.origin)
    }

    /// The next answers for subscription `name` (then 201 again).
    pub fn answer(&self, name: &str, answers: &[(u16, Option<&str>)]) {
        let answers = answers.iter().map(|(s, r)| (*s, r.map(str::to_string))).collect();
        self.state.script.lock().unwrap().insert(name.to_string(), answers);
    }

    pub fn received(&self, name: &str) -> Vec<Received> {
        self.state.received.lock().unwrap().get(name).cloned().unwrap_or_default()
    }

    /// What subscription `name` received once it has `count` requests, or after `within` whatever it has.
    pub async fn wait_for(&self, name: &str, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received(name);
            if got.len() >= count || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A browser's side of a push subscription (RFC 8291 §3): its P-256 key pair and authentication secret.
pub struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    pub fn new() -> Browser {
        Browser { secret: p256::SecretKey::random(&mut rand::rngs::OsRng), auth: rand::random() }
    }

    pub fn p256dh(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    pub fn auth(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.auth)
    }

    /// The subscription body for `POST /api/push/subscriptions`.
    pub fn subscription(&self, device: &str, endpoint: &str) -> Value {
        serde_json::json!({"device_id": device, "endpoint": endpoint, "keys": {"p256dh": self.p256dh(), "auth": self.auth()}})
    }

    /// Decrypts an `aes128gcm` push body (RFC 8291 §3.4, RFC 8188 §2) and reads it as JSON.
    pub fn open(&self, body: &[u8]) -> Value {
        serde_json::from_slice(&decrypt(&self.secret, &self.auth, body)).expect("the payload is JSON")
    }
}

/// RFC 8291 §3.4 decryption of a single-record `aes128gcm` body: header `salt(16) rs(4) idlen(1) keyid`, where
/// the key id is the server's ephemeral public key.
pub fn decrypt(ua_secret: &p256::SecretKey, auth: &[u8; 16], body: &[u8]) -> Vec<u8> {
    let salt = &body[..16];
    let id_len = body[20] as usize;
    let as_public_bytes = &body[21..21 + id_len];
    let ciphertext = &body[21 + id_len..];
    let as_public = p256::PublicKey::from_sec1_bytes(as_public_bytes).expect("the key id is a P-256 point");
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    let ua_public = ua_secret.public_key().to_encoded_point(false);
    // IKM = HKDF(auth_secret, ecdh_secret, "WebPush: info" || 0x00 || ua_public || as_public, 32)
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_public.as_bytes());
    key_info.extend_from_slice(as_public_bytes);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes()).expand(&key_info, &mut ikm).unwrap();
    // CEK and nonce from the salt (RFC 8188 §2.2, §2.3).
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).unwrap();
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).unwrap();
    let cipher = aes_gcm::Aes128Gcm::new_from_slice(&cek).unwrap();
    let mut plain = cipher.decrypt(aes_gcm::Nonce::from_slice(&nonce), ciphertext).expect("the payload decrypts");
    // The last record ends with the delimiter 0x02, then any zero padding.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    assert_eq!(plain.pop(), Some(2), "the single record is the last one");
    plain
}

/// Checks the request's VAPID authorization (RFC 8292): `vapid t=<JWT>, k=<key>`, the key the server publishes,
/// an ES256 token that key verifies, for the push service's origin, expiring within 24 hours, with `subject`.
pub fn verify_vapid(request: &Received, server_key: &str, origin: &str, subject: &str) {
    let header = request.header("authorization");
    let rest = header.strip_prefix("vapid ").unwrap_or_else(|| panic!("a VAPID authorization: {header}"));
    let mut params = HashMap::new();
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=').unwrap();
        params.insert(k.to_string(), v.to_string());
    }
    assert_eq!(params["k"], server_key, "the key the server publishes");
    let point = URL_SAFE_NO_PAD.decode(&params["k"]).unwrap();
    let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..]));
    let key = jsonwebtoken::DecodingKey::from_ec_components(&x, &y).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[origin]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let token = jsonwebtoken::decode::<Value>(&params["t"], &key, &validation).expect("a valid VAPID token");
    assert_eq!(token.claims["sub"], subject);
    let exp = token.claims["exp"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(exp > now && exp <= now + 24 * 3600, "expires within 24 hours: {exp} vs {now}");
}

#[test]
fn the_test_decryption_reads_rfc_8291s_example() {
    let secret =
        p256::SecretKey::from_slice(&URL_SAFE_NO_PAD.decode("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94").unwrap())
            .unwrap();
    let auth: [u8; 16] = URL_SAFE_NO_PAD.decode("BTBZMqHH6r4Tts7J_aSIgg").unwrap().try_into().unwrap();
    let body = URL_SAFE_NO_PAD
        .decode(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
        )
        .unwrap();
    assert_eq!(decrypt(&secret, &auth, &body), b"When I grow up, I want to be a watermelon");
}

/// Waits `d` and returns how many requests subscription `name` got meanwhile (for "nothing is sent").
pub async fn quiet_for(service: &PushService, name: &str, d: Duration) -> usize {
    tokio::time::sleep(d).await;
    service.received(name).len()
}
