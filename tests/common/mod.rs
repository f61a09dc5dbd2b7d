//! The black-box test harness: real nodes on port 0 against a fresh SQLite file or a fresh Postgres database per
//! test, driven over real HTTP (and WebSockets). Several nodes can share one environment.
#![allow(dead_code)]

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

/// One database (and data dir) that one or more nodes share.
pub struct TestEnv {
    pub backend: Backend,
    pub database_url: String,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn new(backend: Backend) -> TestEnv {
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
        TestEnv { backend, database_url, dir }
    }

    /// The configuration of a node on this environment, with generous rate limits.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        vec![
            ("GOCHAT_LISTEN".into(), "127.0.0.1:0".into()),
            ("GOCHAT_DATA_DIR".into(), self.dir.path().display().to_string()),
            ("GOCHAT_DATABASE_URL".into(), self.database_url.clone()),
            ("GOCHAT_JWT_SECRET".into(), JWT_SECRET.into()),
            ("GOCHAT_AUTH_RATE_PER_IP".into(), "1000000".into()),
            ("GOCHAT_AUTH_RATE_PER_USERNAME".into(), "1000000".into()),
            ("GOCHAT_SHUTDOWN_GRACE".into(), "2s".into()),
        ]
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
        let task = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        TestNode { base: format!("http://{addr}"), http: reqwest::Client::new(), shutdown, task: Some(task) }
    }
}

/// A running node and an HTTP client for it.
pub struct TestNode {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: ShutdownHandle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

/// A status and its JSON body (`Value::Null` when the body is empty or not JSON).
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestNode {
    /// Stops the node gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.shutdown();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and raw body.
    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((ct, bytes)) = body {
            req = req.header("content-type", ct).body(bytes);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert!(!status.is_server_error(), "server error {status} for {path}: {}", String::from_utf8_lossy(&bytes));
        Reply { status, body, headers }
    }

    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let body = body.map(|b| ("application/json", serde_json::to_vec(&b).unwrap()));
        self.raw(method, path, token, body).await
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
        self.post("/api/user/register", None, json!({"username": username, "password": password, "nickname": username}))
            .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.post("/api/user/login", None, json!({"username": username, "password": password})).await
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
