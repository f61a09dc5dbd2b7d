//! The black-box test harness: real nodes on port 0 against a fresh SQLite file or a fresh Postgres database per
//! test, driven over real HTTP (and WebSockets). Several nodes can share one environment.
#![allow(dead_code)]

pub mod proxy;
pub mod push;

use std::time::Duration;

use gochat::config::Config;
use gochat::startup::{Application, ShutdownHandle};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed test twice: in `sqlite::<name>` and `postgres::<name>`.
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($b:ident) $body:block )*) => {
        $( $(#[$meta])* async fn $name($b: $crate::common::Backend) $body )*
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::common::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::common::Backend::Postgres).await } )*
        }
    };
}

/// The admin URL of the throwaway Postgres cluster `scripts/test.sh` provisions.
pub fn postgres_admin_url() -> String {
    std::env::var("GOCHAT_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "GOCHAT_TEST_POSTGRES_URL is not set. Run the suite with `scripts/test.sh`, which provisions a \
             throwaway Postgres (and Redis) and runs every test on both backends."
        )
    })
}

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// The Redis of the throwaway cluster `scripts/test.sh` provisions.
pub fn redis_url() -> String {
    std::env::var("GOCHAT_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("GOCHAT_TEST_REDIS_URL is not set. Run the suite with `scripts/test.sh`, which provisions Redis.")
    })
}

/// One database (and data dir, and in cluster mode a Redis namespace) that one or more nodes share. SQLite runs
/// with the in-process bus; Postgres with Redis, as a cluster would.
pub struct TestEnv {
    pub backend: Backend,
    pub database_url: String,
    pub redis_prefix: String,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
        if let Ok(filter) = std::env::var("GOCHAT_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("gochat.db").display()),
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("gochat_t_{:016x}", rand::random::<u64>());
                let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect to test Postgres");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
                let _ = conn.close().await;
                let (base, _) = admin.rsplit_once('/').expect("admin URL ends with /<db>");
                format!("{base}/{name}")
            }
        };
        let redis_prefix = format!("t{:012x}:", rand::random::<u64>() & 0xffff_ffff_ffff);
        TestEnv { backend, database_url, redis_prefix, dir }
    }

    /// This environment's S3 bucket (cluster mode).
    pub fn bucket(&self) -> String {
        format!("gochat-{}", self.redis_prefix.trim_end_matches(':'))
    }

    pub fn is_cluster(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// A Redis connection for poking at the cluster's Redis from a test.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    /// The configuration of a node on this environment, with generous rate limits.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("GOCHAT_LISTEN".into(), "127.0.0.1:0".into()),
            ("GOCHAT_DATA_DIR".into(), self.dir.path().display().to_string()),
            ("GOCHAT_DATABASE_URL".into(), self.database_url.clone()),
            ("GOCHAT_JWT_SECRET".into(), JWT_SECRET.into()),
            ("GOCHAT_AUTH_RATE_PER_IP".into(), "1000000".into()),
            ("GOCHAT_AUTH_RATE_PER_USERNAME".into(), "1000000".into()),
            ("GOCHAT_SEND_RATE".into(), "1000000".into()),
            ("GOCHAT_WS_FRAME_RATE".into(), "1000000".into()),
            ("GOCHAT_INVITE_RATE_PER_MIN".into(), "1000000".into()),
            ("GOCHAT_SHUTDOWN_GRACE".into(), "2s".into()),
        ];
        if self.is_cluster() {
            pairs.push(("GOCHAT_REDIS_URL".into(), redis_url()));
            pairs.push(("GOCHAT_REDIS_PREFIX".into(), self.redis_prefix.clone()));
            let s3 = |k: &str| {
                std::env::var(k).unwrap_or_else(|_| {
                    panic!("{k} is not set. Run the suite with `scripts/test.sh`, which provisions an S3 server.")
                })
            };
            pairs.push(("GOCHAT_S3_ENDPOINT".into(), s3("GOCHAT_TEST_S3_ENDPOINT")));
            pairs.push(("GOCHAT_S3_ACCESS_KEY".into(), s3("GOCHAT_TEST_S3_ACCESS_KEY")));
            pairs.push(("GOCHAT_S3_SECRET_KEY".into(), s3("GOCHAT_TEST_S3_SECRET_KEY")));
            pairs.push(("GOCHAT_S3_BUCKET".into(), self.bucket()));
        }
        pairs
    }

    pub async fn node(&self) -> TestNode {
        self.node_with(&[]).await
    }

    /// A node with some settings overridden.
    pub async fn node_with(&self, overrides: &[(&str, &str)]) -> TestNode {
        let mut pairs = self.config_pairs();
        for (k, v) in overrides {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        let config = Config::from_pairs(pairs).expect("valid test config");
        let app = Application::build(config).await.expect("node starts");
        let addr = app.local_addr();
        let shutdown = app.shutdown_handle();
        let app_metrics = app.state().metrics.clone();
        let task = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        TestNode {
            base: format!("http://{addr}"),
            addr,
            http: reqwest::Client::new(),
            shutdown: Some(shutdown),
            task: Some(task),
            metrics: app_metrics,
        }
    }
}

/// A node running the `gochat` binary in a process of its own, on the environment's backends (so a test can kill
/// it with SIGKILL); killed when dropped.
pub struct NodeProcess {
    child: std::process::Child,
    pub node: TestNode,
}

impl NodeProcess {
    /// Starts the binary with the environment's settings and `settings`, and waits until it is ready.
    pub async fn spawn(env: &TestEnv, settings: &[(&str, &str)]) -> NodeProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gochat"));
        for (k, v) in env.config_pairs() {
            cmd.env(k, v);
        }
        cmd.env("GOCHAT_LISTEN", format!("127.0.0.1:{port}")).env("GOCHAT_LOG", "warn");
        for (k, v) in settings {
            cmd.env(k, v);
        }
        let process =
            NodeProcess { child: cmd.spawn().unwrap(), node: TestNode::external(([127, 0, 0, 1], port).into()) };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let ready = |n: &TestNode| n.http.get(n.url("/readyz")).send();
        while ready(&process.node).await.map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(tokio::time::Instant::now() < deadline, "the node process did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        process
    }

    /// Kills the process with SIGKILL (no shutdown of any kind) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running node and an HTTP client for it.
pub struct TestNode {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub metrics: gochat::metrics::Metrics,
    pub http: reqwest::Client,
    /// `None` for a node in another process (see [`TestNode::external`]).
    shutdown: Option<ShutdownHandle>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(s) = &self.shutdown {
            s.shutdown();
        }
    }
}

/// A status and its JSON body (`Value::Null` when the body is empty or not JSON), as the shared client returns it.
pub use gochat_client::Reply;

impl TestNode {
    /// A client of a node running in another process at `addr` (its metrics are not this process's to read).
    pub fn external(addr: std::net::SocketAddr) -> TestNode {
        TestNode {
            base: format!("http://{addr}"),
            addr,
            http: reqwest::Client::new(),
            shutdown: None,
            task: None,
            metrics: gochat::metrics::Metrics::new(),
        }
    }

    /// Asks the node to stop, as SIGTERM does, without waiting for it.
    pub fn request_stop(&self) {
        if let Some(s) = &self.shutdown {
            s.shutdown();
        }
    }

    /// Stops the node gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = &self.shutdown {
            s.shutdown();
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The shared client of this node (`gochat-client`), over this node's HTTP client.
    pub fn client(&self) -> gochat_client::Client {
        gochat_client::Client::with_http(self.base.clone(), self.http.clone())
    }

    /// Sends a request with an optional bearer token and raw body. A 5xx fails the test.
    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Reply {
        let reply = self.client().raw(method, path, token, body).await.expect("request sent");
        assert!(!reply.status.is_server_error(), "server error {} for {path}: {}", reply.status, reply.body);
        reply
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let reply = self.client().call(method, path, token, body).await.expect("request sent");
        assert!(!reply.status.is_server_error(), "server error {} for {path}: {}", reply.status, reply.body);
        reply
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn register(&self, username: &str, password: &str) -> Reply {
        self.client().register(username, password).await.expect("request sent")
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.client().login(username, password).await.expect("request sent")
    }

    /// Registers `username` (password `password123`) and logs in: returns (user id, token).
    pub async fn user(&self, username: &str) -> (i64, String) {
        let r = self.register(username, "password123").await;
        assert_eq!(r.status, StatusCode::CREATED, "register {username}: {}", r.body);
        let l = self.login(username, "password123").await;
        assert_eq!(l.status, StatusCode::OK, "login {username}: {}", l.body);
        (r.body["id"].as_i64().unwrap(), l.body["token"].as_str().unwrap().to_string())
    }
}

/// A random suffix for unique names.
pub fn uniq(prefix: &str) -> String {
    format!("{prefix}{:06x}", rand::random::<u32>() & 0xffffff)
}

impl TestNode {
    /// Makes two users friends (request by `a`, accepted by `b`).
    pub async fn befriend(&self, a: (i64, &str), b: (i64, &str)) {
        let r = self.post("/api/friends/request", Some(a.1), json!({"to_user_id": b.0})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let id = r.body["id"].as_i64().unwrap();
        let r = self.post("/api/friends/accept", Some(b.1), json!({"request_id": id})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }

    /// Sends a text message over HTTP and returns the stored message.
    pub async fn send_text(&self, token: &str, to: i64, text: &str) -> Value {
        let r =
            self.post("/api/messages/send", Some(token), json!({"to_user_id": to, "type": "text", "text": text})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    pub fn ws_url(&self, token: &str, device: &str) -> String {
        self.client().ws_url(token, device)
    }

    /// Opens a WebSocket as `device` and reads its `hello`.
    pub async fn ws(&self, token: &str, device: &str) -> Ws {
        self.ws_with(token, device, "").await
    }

    /// As [`Self::ws`], with more query parameters (`&sync=summary&tail=5`).
    pub async fn ws_with(&self, token: &str, device: &str, query: &str) -> Ws {
        let url = format!("{}{query}", self.ws_url(token, device));
        let (stream, _) = tokio_tungstenite::connect_async(url).await.expect("ws connects");
        let mut ws = Ws { stream };
        let hello = ws.recv().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        ws
    }

    /// The value of a metric series (summed over label sets that contain `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        self.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| l[name.len()..].starts_with(['{', ' ']) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A test's WebSocket client.
pub struct Ws {
    pub stream: WsStream,
}

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMsg;

impl Ws {
    pub async fn send(&mut self, v: Value) {
        self.stream.send(WsMsg::Text(v.to_string().into())).await.expect("ws send");
    }

    pub async fn send_raw(&mut self, text: String) {
        self.stream.send(WsMsg::Text(text.into())).await.expect("ws send");
    }

    /// The next JSON frame (control frames skipped), waiting at most 10 s.
    pub async fn recv(&mut self) -> Value {
        self.recv_within(Duration::from_secs(10)).await.expect("a frame within 10 s")
    }

    /// The next JSON frame within `d`, or `None` on silence. Panics on close.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()?;
            match next {
                Some(Ok(WsMsg::Text(t))) => return Some(serde_json::from_str(&t).expect("server frames are JSON")),
                Some(Ok(WsMsg::Close(f))) => panic!("socket closed: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error: {e}"),
                None => panic!("socket ended"),
            }
        }
    }

    /// Waits for a frame of type `ty`, skipping others (typing, receipts, ...) but not `message`/`sync` unless
    /// asked for.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let f = self.recv().await;
            if f["type"] == ty {
                return f;
            }
            assert!(
                !(f["type"] == "message" || f["type"] == "sync") || ty == "message" || ty == "sync",
                "expected {ty}, got {f}"
            );
        }
    }

    /// Reads until the socket closes; returns the close code (None if it ended without a close frame).
    pub async fn closed_within(&mut self, d: Duration) -> Result<Option<u16>, &'static str> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Err("still open"),
                Ok(Some(Ok(WsMsg::Close(f)))) => return Ok(f.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_))) | Ok(None) => return Ok(None),
            }
        }
    }

    pub async fn ack(&mut self, conversation_id: &str, seq: i64) {
        self.send(json!({"type": "ack", "conversation_id": conversation_id, "seq": seq})).await;
    }

    /// Collects messages from `message` and `sync` frames until `count` arrived, acking each sync batch and each
    /// live message; returns them in arrival order. Other frames are skipped.
    pub async fn collect(&mut self, count: usize) -> Vec<Value> {
        let mut got = Vec::new();
        let mut syncs = 0;
        while got.len() < count {
            let f = self.recv().await;
            match f["type"].as_str() {
                Some("sync") => {
                    syncs += 1;
                    let batch = f["messages"].as_array().unwrap().clone();
                    assert!(batch.len() <= 100, "sync batches are bounded");
                    let mut last: std::collections::BTreeMap<String, i64> = Default::default();
                    for m in &batch {
                        last.insert(m["conversation_id"].as_str().unwrap().into(), m["seq"].as_i64().unwrap());
                    }
                    for (c, s) in last {
                        self.ack(&c, s).await;
                    }
                    got.extend(batch);
                }
                Some("message") => {
                    let m = f["message"].clone();
                    self.ack(m["conversation_id"].as_str().unwrap(), m["seq"].as_i64().unwrap()).await;
                    got.push(m);
                }
                _ => {}
            }
        }
        let _ = syncs;
        got
    }
}
