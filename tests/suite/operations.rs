//! Operations over real HTTP: health, readiness, metrics, request ids, docs, the CLI and configuration errors.

use std::time::Duration;

use crate::common::{uniq, TestEnv};
use reqwest::{Method, StatusCode};
use serde_json::json;

backend_tests! {
    async fn health_readiness_and_metrics_answer(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let h = node.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.body["status"], "ok");
        let r = node.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["status"], "ready");
        let key = if backend == crate::common::Backend::Sqlite { "database (sqlite)" } else { "database (postgres)" };
        assert_eq!(r.body["checks"][key], "ok");

        node.login("nobody-here", "password123").await;
        let m = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
        assert!(m.contains("gochat_build_info"), "{m}");
        assert!(m.contains(r#"gochat_http_requests_total{method="POST",route="/api/user/login",status="401"} 1"#), "{m}");
        assert!(m.contains("gochat_http_request_duration_seconds_bucket"));
    }

    async fn every_reply_carries_a_request_id_and_echoes_a_given_one(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let r = node.http.get(node.url("/healthz")).send().await.unwrap();
        assert_eq!(r.headers()["x-request-id"].len(), 16);
        let r = node.http.get(node.url("/healthz")).header("x-request-id", "trace-abc-123").send().await.unwrap();
        assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
        let r = node.http.get(node.url("/healthz")).header("x-request-id", "bad id with spaces").send().await.unwrap();
        assert_ne!(r.headers()["x-request-id"], "bad id with spaces");
    }

    async fn swagger_ui_and_the_spec_are_served(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let docs = node.http.get(node.url("/docs")).send().await.unwrap();
        assert_eq!(docs.status(), StatusCode::OK);
        let html = docs.text().await.unwrap();
        assert!(html.contains("swagger"), "Swagger UI page");
        for external in ["src=\"http", "href=\"http", "src='http", "href='http"] {
            assert!(!html.contains(external), "Swagger UI works offline: no assets from the internet");
        }
        assert!(html.contains("SwaggerUIBundle"), "the bundle is inline");
        let spec: serde_json::Value = node.http.get(node.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert!(spec["paths"]["/api/user/register"]["post"].is_object());
        let root = node.http.get(node.url("/")).send().await.unwrap();
        assert_eq!(root.status(), StatusCode::OK, "the web client is served at /");
    }

    async fn a_node_stops_gracefully_and_reports_draining_meanwhile(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        assert_eq!(node.call(Method::GET, "/readyz", None, None).await.status, StatusCode::OK);
        let url = node.url("/healthz");
        node.stop().await;
        assert!(reqwest::get(url).await.is_err(), "the listener is closed after shutdown");
    }

    async fn a_stopping_node_answers_not_ready_for_the_drain_delay_before_it_closes(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_DRAIN_DELAY", "1500ms")]).await;
        let (_, token) = node.user(&uniq("dr")).await;
        let asked = std::time::Instant::now();
        node.request_stop();
        let r = node.http.get(node.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["checks"]["node"], "draining", "{body}");
        // Still serving meanwhile, so a balancer that has not yet probed loses nothing.
        assert_eq!(node.get("/api/user/profile", &token).await.status, StatusCode::OK);
        let url = node.url("/healthz");
        while reqwest::get(&url).await.is_ok() {
            assert!(asked.elapsed() < Duration::from_secs(10), "the node never closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(asked.elapsed() >= Duration::from_millis(1500), "closed after the delay: {:?}", asked.elapsed());
    }

    async fn a_graceful_stop_under_load_writes_every_ack_it_took_so_nothing_acked_is_sent_again(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("sa")).await;
        let (b, tb) = node.user(&uniq("sb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let mut phone = node.ws(&tb, "phone").await;
        assert_eq!(phone.recv_type("sync").await["messages"].as_array().unwrap().len(), 0);
        // Under load: 16 concurrent senders while the phone acks every message as it arrives.
        let total = 400;
        let sends = async {
            for round in 0..total / 16 {
                let texts: Vec<String> = (0..16).map(|i| format!("m{round}-{i}")).collect();
                futures_util::future::join_all(texts.iter().map(|t| node.send_text(&ta, b, t))).await;
            }
        };
        let (_, got) = tokio::join!(sends, phone.collect(total));
        let last = got.iter().map(|m| m["seq"].as_i64().unwrap()).max().unwrap();
        assert_eq!(last, total as i64);
        // Every ack is in the node's hands once the socket answers a ping sent after them.
        phone.send(json!({"type": "ping"})).await;
        phone.recv_type("pong").await;
        let conversation = got[0]["conversation_id"].as_str().unwrap().to_string();
        // The device goes, and the node stops at once: the last acks may still be queued in the node.
        drop(phone);
        node.stop().await;

        // When the stop returns, the cursor is written: a process exiting now loses nothing.
        let stores = gochat::store::Stores::open(&env.database_url, 1).await.unwrap();
        let cursors = stores.messages.device_cursors(b, "phone").await.unwrap();
        assert_eq!(cursors, vec![(conversation, last)], "the last ack is durable when the stop returns");
        // And a node started afterwards sends the phone nothing again.
        let node = env.node().await;
        let mut phone = node.ws(&tb, "phone").await;
        let sync = phone.recv_type("sync").await;
        assert_eq!(sync["messages"].as_array().unwrap().len(), 0, "acked messages are not sent again: {sync}");
        assert_eq!(phone.recv_within(Duration::from_millis(300)).await, None);
    }
}

/// The binary itself, stopped by a real SIGTERM while a device acks: it exits 0, and everything it took is written.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_binary_cleanly_and_every_ack_it_took_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gochat"))
        .env("GOCHAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("GOCHAT_DATA_DIR", dir.path())
        .env("GOCHAT_LOG", "warn")
        .env("GOCHAT_SEND_RATE", "1000000")
        .env("GOCHAT_WS_FRAME_RATE", "1000000")
        .env("GOCHAT_AUTH_RATE_PER_IP", "1000000")
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Killed if the test fails before it exits.
    struct Reap(Option<std::process::Child>);
    impl Drop for Reap {
        fn drop(&mut self) {
            if let Some(c) = &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut child = Reap(Some(child));
    let node = crate::common::TestNode::external(([127, 0, 0, 1], port).into());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.http.get(node.url("/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        assert!(tokio::time::Instant::now() < deadline, "the binary did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (a, ta) = node.user(&uniq("ka")).await;
    let (b, tb) = node.user(&uniq("kb")).await;
    node.befriend((a, &ta), (b, &tb)).await;
    let mut phone = node.ws(&tb, "phone").await;
    phone.recv_type("sync").await;
    let total = 200;
    let sends = async {
        for round in 0..total / 10 {
            let texts: Vec<String> = (0..10).map(|i| format!("m{round}-{i}")).collect();
            futures_util::future::join_all(texts.iter().map(|t| node.send_text(&ta, b, t))).await;
        }
    };
    let (_, got) = tokio::join!(sends, phone.collect(total));
    phone.send(json!({"type": "ping"})).await;
    phone.recv_type("pong").await;
    let conversation = got[0]["conversation_id"].as_str().unwrap().to_string();

    // SAFETY: kill only sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let mut running = child.0.take().unwrap();
    let waited = tokio::task::spawn_blocking(move || {
        let status = running.wait();
        (running, status)
    });
    let (running, status) =
        tokio::time::timeout(Duration::from_secs(30), waited).await.expect("exits in time").unwrap();
    child.0 = Some(running);
    let status = status.unwrap();
    assert!(status.success(), "a SIGTERM is a clean exit: {status}");
    let url = format!("sqlite://{}", dir.path().join("gochat.db").display());
    let stores = gochat::store::Stores::open(&url, 1).await.unwrap();
    let cursors = stores.messages.device_cursors(b, "phone").await.unwrap();
    assert_eq!(cursors, vec![(conversation, total as i64)], "the last ack is on disk after the process exits");
}

#[test]
fn the_binary_names_the_bad_key_of_a_configuration_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gochat"))
        .env("GOCHAT_TOKEN_TTL", "forever")
        .env("GOCHAT_DATA_DIR", std::env::temp_dir().join("gochat-config-test"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GOCHAT_TOKEN_TTL"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gochat.toml");
    std::fs::write(&file, "listen = \"not-an-address\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gochat")).arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GOCHAT_LISTEN"));
}

#[test]
fn every_subcommand_has_help() {
    for args in [vec!["--help"], vec!["serve", "--help"], vec!["migrate", "--help"], vec!["openapi", "--help"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gochat")).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[test]
fn migrate_prepares_an_empty_database_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gochat"))
        .arg("migrate")
        .env("GOCHAT_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("gochat.db").exists());
}
