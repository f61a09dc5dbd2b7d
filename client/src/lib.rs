//! A minimal client of GoChat's REST API (DESIGN §2) and its WebSocket URL, shared by the integration tests and the
//! load generator so that both speak to a node the same way: one place for the request shape (bearer token, JSON
//! body), the registration and friendship flows, and the `/ws?token=…&device=…` URL.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The WebSocket URL of the node at `base` (`http://…` or `https://…`) for `device`, with a token (or a one-time
/// ticket from `POST /api/ws/ticket`) in the query (DESIGN §3).
pub fn ws_url(base: &str, token: &str, device: &str) -> String {
    format!("{}/ws?token={token}&device={device}", base.replacen("http", "ws", 1))
}

/// A node's base URL (`http://host:port`) and the HTTP client that talks to it.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

/// A reply: its status, its JSON body (`Value::Null` when empty or not JSON), and its headers.
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    /// The `code` of an error body (`""` for none).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// The body of a 2xx reply; any other status is an error naming `what`, the status and the body.
    pub fn success(self, what: &str) -> anyhow::Result<Value> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            anyhow::bail!("{what}: {} {}", self.status, self.body)
        }
    }
}

impl Client {
    /// A client of the node at `base` (`http://127.0.0.1:8080`, no trailing slash).
    pub fn new(base: impl Into<String>) -> Self {
        Self::with_http(base, reqwest::Client::new())
    }

    /// A client of the node at `base` that sends through `http` (its own connection pool and options).
    pub fn with_http(base: impl Into<String>, http: reqwest::Client) -> Self {
        Self { http, base: base.into() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The WebSocket URL of `device` with a token (or a one-time ticket) in the query: [`ws_url`].
    pub fn ws_url(&self, token: &str, device: &str) -> String {
        ws_url(&self.base, token, device)
    }

    /// Sends a request with an optional bearer token and an optional raw body with its content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> reqwest::Result<Reply> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, body, headers })
    }

    /// Sends a request with an optional bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Result<Reply> {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap_or_default()));
        self.raw(method, path, token, body).await
    }

    /// `POST /api/user/register` with the username as the nickname.
    pub async fn register(&self, username: &str, password: &str) -> reqwest::Result<Reply> {
        let body = json!({"username": username, "password": password, "nickname": username});
        self.call(Method::POST, "/api/user/register", None, Some(body)).await
    }

    /// `POST /api/user/login`.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Result<Reply> {
        let body = json!({"username": username, "password": password});
        self.call(Method::POST, "/api/user/login", None, Some(body)).await
    }

    /// Registers `username` and logs in: its user id and token.
    pub async fn user(&self, username: &str, password: &str) -> anyhow::Result<(i64, String)> {
        let registered = self.register(username, password).await?.success(&format!("register {username}"))?;
        let logged_in = self.login(username, password).await?.success(&format!("login {username}"))?;
        let id = registered["id"].as_i64().ok_or_else(|| anyhow::anyhow!("register {username}: no id"))?;
        let token = logged_in["token"].as_str().ok_or_else(|| anyhow::anyhow!("login {username}: no token"))?;
        Ok((id, token.to_string()))
    }

    /// Makes two users friends: `a` asks, `b` accepts (unless the request settled at once, `b` having asked
    /// first).
    pub async fn befriend(&self, a: (i64, &str), b: (i64, &str)) -> anyhow::Result<()> {
        let request = self
            .call(Method::POST, "/api/friends/request", Some(a.1), Some(json!({"to_user_id": b.0})))
            .await?
            .success("friend request")?;
        if request["status"] == "pending" {
            self.call(Method::POST, "/api/friends/accept", Some(b.1), Some(json!({"request_id": request["id"]})))
                .await?
                .success("accept")?;
        }
        Ok(())
    }
}
