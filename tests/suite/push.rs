//! Push notifications (DESIGN.md §11) against a push service on a loopback port: each push's VAPID token is
//! verified with the server's public key and its payload decrypted with the subscription's private key by the
//! tests' own RFC 8291 code. On Postgres the nodes share the database and Redis, as a cluster's do.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::push::{quiet_for, verify_vapid, Browser, PushService};
use crate::common::{uniq, NodeProcess, TestEnv, TestNode};

const SUBJECT: &str = "mailto:ops@gochat.test";
/// Longer than a burst's quiet time (1 s) and a poll (0.5 s), with room for a slow machine.
const PUSH_WITHIN: Duration = Duration::from_secs(8);

/// The settings of a node that pushes to the test service: a VAPID key shared by the nodes of a test, loopback
/// endpoints allowed, and a short ack wait.
fn push_settings(key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GOCHAT_VAPID_PRIVATE_KEY", key.to_string()),
        ("GOCHAT_VAPID_SUBJECT", SUBJECT.to_string()),
        ("GOCHAT_PUSH_ALLOW_LOOPBACK", "true".to_string()),
        ("GOCHAT_PUSH_ACK_WAIT", "2s".to_string()),
    ]
}

async fn push_node(env: &TestEnv, key: &str) -> TestNode {
    let settings = push_settings(key);
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.node_with(&pairs).await
}

fn new_key() -> String {
    gochat::push::VapidKey::generate(SUBJECT).private_base64url()
}

async fn subscribe(node: &TestNode, token: &str, browser: &Browser, device: &str, endpoint: &str) {
    let r = node.post("/api/push/subscriptions", Some(token), browser.subscription(device, endpoint)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn send(node: &TestNode, token: &str, body: Value) -> Value {
    let r = node.post("/api/messages/send", Some(token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn server_key(node: &TestNode, token: &str) -> String {
    let r = node.get("/api/push/vapid-public-key", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["key"].as_str().unwrap().to_string()
}

backend_tests! {
    async fn the_vapid_key_is_served_and_subscriptions_refuse_bad_input_with_stable_codes(backend) {
        let env = TestEnv::new(backend).await;
        let key = new_key();
        let node = push_node(&env, &key).await;
        let (_, t) = node.user(&uniq("pk")).await;
        let published = server_key(&node, &t).await;
        assert_eq!(published, gochat::push::VapidKey::from_base64url(&key, SUBJECT).unwrap().public_key());
        let browser = Browser::new();
        let good = browser.subscription("phone", "https://push.example.com/wpush/abc");
        let with = |path: &str, value: Value| {
            let mut body = good.clone();
            body.pointer_mut(path).map(|v| *v = value).unwrap();
            body
        };
        let long = format!("https://push.example.com/{}", "a".repeat(2100));
        // The browser's point with one bit of y flipped: well-formed, 65 bytes, not on the curve.
        let off_curve = {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let mut point = b64.decode(browser.p256dh()).unwrap();
            point[40] ^= 1;
            b64.encode(point)
        };
        let cases = [
            (with("/endpoint", json!("http://push.example.com/wpush/abc")), "invalid_push_endpoint"),
            (with("/endpoint", json!("ftp://push.example.com/x")), "invalid_push_endpoint"),
            (with("/endpoint", json!("not a url")), "invalid_push_endpoint"),
            (with("/endpoint", json!("https://169.254.169.254/latest/meta-data")), "invalid_push_endpoint"),
            (with("/endpoint", json!("https://[fd00::1]/x")), "invalid_push_endpoint"),
            (with("/endpoint", json!(long)), "invalid_push_endpoint"),
            (with("/keys/p256dh", json!("AAAA")), "invalid_push_keys"),
            (with("/keys/p256dh", json!(off_curve)), "invalid_push_keys"),
            (with("/keys/auth", json!("c2hvcnQ")), "invalid_push_keys"),
            (with("/device_id", json!("has space")), "invalid_device"),
        ];
        for (body, code) in cases {
            let r = node.post("/api/push/subscriptions", Some(&t), body.clone()).await;
            assert!(r.status.is_client_error(), "{body}: {}", r.status);
            assert_eq!(r.code(), code, "{body}: {}", r.body);
        }
        // A loopback endpoint is refused unless the node allows it (tests and development).
        let strict = env.node_with(&[("GOCHAT_VAPID_PRIVATE_KEY", key.as_str())]).await;
        let loopback = browser.subscription("phone", "http://127.0.0.1:9/push/x");
        for endpoint in ["http://127.0.0.1:9/push/x", "https://127.0.0.1/x", "https://[::1]/x", "https://localhost/x"] {
            let r = strict.post("/api/push/subscriptions", Some(&t), browser.subscription("phone", endpoint)).await;
            assert_eq!(r.code(), "invalid_push_endpoint", "{endpoint}: {}", r.body);
        }
        assert_eq!(node.post("/api/push/subscriptions", Some(&t), loopback).await.status, StatusCode::CREATED);
        assert_eq!(node.post("/api/push/subscriptions", None, good.clone()).await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(node.post("/api/push/subscriptions", Some(&t), good).await.status, StatusCode::CREATED);
        assert_eq!(node.delete("/api/push/subscriptions/phone", &t).await.status, StatusCode::NO_CONTENT);
        assert_eq!(node.delete("/api/push/subscriptions/phone", &t).await.status, StatusCode::NO_CONTENT);
        assert_eq!(node.delete("/api/push/subscriptions/bad%20id", &t).await.code(), "invalid_device");
        // Without a key configured, a cluster sends no pushes (its nodes could not agree on one); the embedded
        // default makes one in its data dir.
        let unconfigured = env.node().await;
        if env.is_cluster() {
            let r = unconfigured.get("/api/push/vapid-public-key", &t).await;
            assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "push_disabled"));
            let r = unconfigured.post("/api/push/subscriptions", Some(&t), browser.subscription("phone", "https://push.example.com/x")).await;
            assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "push_disabled"));
        } else {
            assert_eq!(server_key(&unconfigured, &t).await.len(), 87, "a generated key, base64url of 65 bytes");
        }
    }

    async fn an_offline_device_gets_one_signed_encrypted_push_per_burst_and_the_sender_none(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let node = push_node(&env, &new_key()).await;
        let (a, ta) = node.user(&uniq("pa")).await;
        let (b, tb) = node.user(&uniq("pb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let (phone, own) = (Browser::new(), Browser::new());
        subscribe(&node, &tb, &phone, "phone", &service.endpoint("b")).await;
        subscribe(&node, &ta, &own, "phone", &service.endpoint("a")).await;
        let key = server_key(&node, &tb).await;

        let mut last = Value::Null;
        for i in 0..5 {
            last = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": format!("secret {i}")})).await;
        }
        let conversation = last["conversation_id"].as_str().unwrap().to_string();
        let got = service.wait_for("b", 1, PUSH_WITHIN).await;
        assert_eq!(got.len(), 1, "one push for the burst");
        assert_eq!(quiet_for(&service, "b", Duration::from_secs(2)).await, 1, "and only one");
        let push = &got[0];
        verify_vapid(push, &key, &service.origin, SUBJECT);
        assert_eq!(push.header("content-encoding"), "aes128gcm");
        assert_eq!(push.header("ttl"), "86400");
        assert_eq!(push.header("urgency"), "high");
        assert_eq!(push.header("topic").len(), 32);
        let payload = phone.open(&push.body);
        assert_eq!(payload["type"], "message");
        assert_eq!(payload["conversation_id"], conversation.as_str());
        assert_eq!(payload["unread"], 5);
        assert_eq!(payload["seq"], last["seq"]);
        assert_eq!(payload["mention"], false);
        assert_eq!(payload["message_type"], "text");
        assert!(payload["sender_name"].as_str().unwrap().starts_with("pa"), "{payload}");
        assert!(payload.get("text").is_none(), "no preview unless the user allows it: {payload}");
        assert_eq!(service.received("a").len(), 0, "never to the sender's own devices");

        // Previews allowed: the text's first 100 characters.
        let r = node.put("/api/user/profile", &tb, json!({"push_previews": true})).await;
        assert_eq!(r.body["push_previews"], true, "{}", r.body);
        let long = format!("你好，世界 {}", "长".repeat(120));
        send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": long})).await;
        let got = service.wait_for("b", 2, PUSH_WITHIN).await;
        assert_eq!(got.len(), 2);
        let payload = phone.open(&got[1].body);
        assert_eq!(payload["unread"], 6);
        assert_eq!(payload["text"].as_str().unwrap(), long.chars().take(100).collect::<String>());
        assert_eq!(got[1].header("topic"), got[0].header("topic"), "one topic per conversation");
        assert!(node.metric("gochat_push_sent_total", "result=\"sent\"") >= 2.0);

        // A password change signs every device out, and their subscriptions go with them.
        let r = node.put("/api/user/password", &tb, json!({"old_password": "password123", "new_password": "another-pass-1"})).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "still there?"})).await;
        assert_eq!(quiet_for(&service, "b", Duration::from_secs(3)).await, 2, "no push after the password change");
    }

    async fn a_device_that_acks_gets_no_push_and_one_that_stops_acking_gets_one_after_the_wait(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let key = new_key();
        let node = push_node(&env, &key).await;
        // On Postgres the recipient's sockets are on another node.
        let other_node;
        let other = if env.is_cluster() {
            other_node = push_node(&env, &key).await;
            &other_node
        } else {
            &node
        };
        let (a, ta) = node.user(&uniq("aa")).await;
        let (b, tb) = node.user(&uniq("ab")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let (laptop, tablet) = (Browser::new(), Browser::new());
        subscribe(&node, &tb, &laptop, "laptop", &service.endpoint("laptop")).await;
        subscribe(&node, &tb, &tablet, "tablet", &service.endpoint("tablet")).await;
        let mut acking = other.ws(&tb, "laptop").await;
        let mut silent = other.ws(&tb, "tablet").await;
        // Caught up (nothing missed), so the message comes live.
        acking.recv_type("sync").await;
        silent.recv_type("sync").await;
        let sent_at = Instant::now();
        let m = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "are you there"})).await;
        let frame = acking.recv_type("message").await;
        acking.ack(frame["message"]["conversation_id"].as_str().unwrap(), frame["message"]["seq"].as_i64().unwrap()).await;
        // The tablet's socket gets the message too, and never acknowledges it (a connection gone quiet).
        assert_eq!(silent.recv_type("message").await["message"]["id"], m["id"]);
        let got = service.wait_for("tablet", 1, PUSH_WITHIN).await;
        assert_eq!(got.len(), 1, "the device that never acknowledged is pushed to");
        assert!(got[0].at - sent_at >= Duration::from_secs(2), "after the ack wait: {:?}", got[0].at - sent_at);
        assert_eq!(tablet.open(&got[0].body)["seq"], m["seq"]);
        assert_eq!(quiet_for(&service, "laptop", Duration::from_secs(1)).await, 0, "the acking device gets none");
    }

    async fn a_muted_conversation_pushes_only_mentions(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let node = push_node(&env, &new_key()).await;
        let (a, ta) = node.user(&uniq("ma")).await;
        let (b, tb) = node.user(&uniq("mb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let r = node.post("/api/groups", Some(&ta), json!({"name": "team", "member_ids": [b]})).await;
        let group = r.body["id"].as_i64().unwrap();
        let phone = Browser::new();
        subscribe(&node, &tb, &phone, "phone", &service.endpoint("b")).await;
        let r = node.put(&format!("/api/conversations/g:{group}/settings"), &tb, json!({"muted": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        send(&node, &ta, json!({"group_id": group, "type": "text", "text": "lunch?"})).await;
        assert_eq!(quiet_for(&service, "b", Duration::from_secs(3)).await, 0, "muted: no push");
        send(&node, &ta, json!({"group_id": group, "type": "text", "text": "@b you?", "mention_user_ids": [b]})).await;
        let got = service.wait_for("b", 1, PUSH_WITHIN).await;
        assert_eq!(got.len(), 1, "a mention reaches a muted conversation");
        let payload = phone.open(&got[0].body);
        assert_eq!((payload["mention"].clone(), payload["unread"].clone()), (json!(true), json!(2)));
        assert_eq!(payload["group_name"], "team");
    }

    async fn a_recall_sends_a_silent_update_that_replaces_the_notification(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let node = push_node(&env, &new_key()).await;
        let (a, ta) = node.user(&uniq("ra")).await;
        let (b, tb) = node.user(&uniq("rb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let phone = Browser::new();
        subscribe(&node, &tb, &phone, "phone", &service.endpoint("b")).await;
        let m = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "oops"})).await;
        assert_eq!(service.wait_for("b", 1, PUSH_WITHIN).await.len(), 1);
        let r = node.post(&format!("/api/messages/{}/recall", m["id"]), Some(&ta), json!(null)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let got = service.wait_for("b", 2, PUSH_WITHIN).await;
        assert_eq!(got.len(), 2, "the recall is pushed");
        let payload = phone.open(&got[1].body);
        assert_eq!(payload["type"], "clear", "{payload}");
        assert_eq!((payload["silent"].clone(), payload["unread"].clone()), (json!(true), json!(0)));
        assert_eq!(got[1].header("urgency"), "low");
        assert_eq!(got[1].header("topic"), got[0].header("topic"), "it replaces the notification");
    }

    async fn reading_on_another_device_takes_back_a_shown_notification_quietly(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let node = push_node(&env, &new_key()).await;
        let (a, ta) = node.user(&uniq("ea")).await;
        let (b, tb) = node.user(&uniq("eb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let phone = Browser::new();
        subscribe(&node, &tb, &phone, "phone", &service.endpoint("b")).await;
        send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "one"})).await;
        let m = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "two"})).await;
        assert_eq!(service.wait_for("b", 1, PUSH_WITHIN).await.len(), 1);
        // Read half on the desktop: the phone's notification is replaced, without alerting again.
        node.post("/api/messages/read", Some(&tb), json!({"conversation_id": m["conversation_id"], "seq": m["seq"].as_i64().unwrap() - 1})).await;
        let got = service.wait_for("b", 2, PUSH_WITHIN).await;
        assert_eq!(got.len(), 2, "a read sends an update");
        let payload = phone.open(&got[1].body);
        assert_eq!((payload["type"].clone(), payload["unread"].clone(), payload["silent"].clone()), (json!("message"), json!(1), json!(true)));
        assert_eq!(got[1].header("urgency"), "low");
        // Read the rest: the notification is closed.
        node.post("/api/messages/read", Some(&tb), json!({"conversation_id": m["conversation_id"], "seq": m["seq"]})).await;
        let got = service.wait_for("b", 3, PUSH_WITHIN).await;
        assert_eq!(got.len(), 3);
        assert_eq!(phone.open(&got[2].body)["type"], "clear");
        // Nothing is shown any more: another read sends nothing.
        assert_eq!(quiet_for(&service, "b", Duration::from_secs(2)).await, 3);
    }

    async fn a_refusal_with_an_endless_body_is_given_up_at_once(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let node = push_node(&env, &new_key()).await;
        let (a, ta) = node.user(&uniq("xa")).await;
        let (b, tb) = node.user(&uniq("xb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        subscribe(&node, &tb, &Browser::new(), "phone", &service.endpoint("b")).await;
        service.answer("b", &[(400, Some("endless"))]);
        let sent = Instant::now();
        send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "hello"})).await;
        while node.metric("gochat_push_sent_total", "result=\"rejected\"") < 1.0 {
            assert!(sent.elapsed() < Duration::from_secs(6), "the refusal's body is not read to its (missing) end");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(node.get("/healthz", &tb).await.status, StatusCode::OK);
    }

    async fn gone_subscriptions_are_dropped_and_429_is_retried_after_retry_after(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let node = push_node(&env, &new_key()).await;
        let (a, ta) = node.user(&uniq("ga")).await;
        let (b, tb) = node.user(&uniq("gb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let (old, busy) = (Browser::new(), Browser::new());
        subscribe(&node, &tb, &old, "old", &service.endpoint("old")).await;
        subscribe(&node, &tb, &busy, "busy", &service.endpoint("busy")).await;
        service.answer("old", &[(410, None)]);
        service.answer("busy", &[(429, Some("2")), (503, None)]);
        send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "one"})).await;
        let got = service.wait_for("busy", 3, PUSH_WITHIN + Duration::from_secs(4)).await;
        assert_eq!(got.len(), 3, "429 then 503 are retried until accepted");
        assert!(got[1].at - got[0].at >= Duration::from_secs(2), "not before Retry-After: {:?}", got[1].at - got[0].at);
        assert_eq!(busy.open(&got[2].body)["unread"], 1);
        assert_eq!(service.received("old").len(), 1);
        send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "two"})).await;
        assert_eq!(service.wait_for("busy", 4, PUSH_WITHIN).await.len(), 4);
        assert_eq!(service.received("old").len(), 1, "a subscription the service said is gone gets nothing more");
        assert!(node.metric("gochat_push_sent_total", "result=\"gone\"") >= 1.0);
        assert!(node.metric("gochat_push_sent_total", "result=\"retried\"") >= 2.0);
    }

    async fn two_nodes_never_both_send_the_same_push(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let key = new_key();
        let nodes = [push_node(&env, &key).await, push_node(&env, &key).await];
        let (a, ta) = nodes[0].user(&uniq("na")).await;
        let mut recipients = Vec::new();
        for i in 0..8 {
            let (u, t) = nodes[0].user(&uniq("nr")).await;
            nodes[0].befriend((a, &ta), (u, &t)).await;
            let browser = Browser::new();
            subscribe(&nodes[i % 2], &t, &browser, "phone", &service.endpoint(&format!("r{i}"))).await;
            recipients.push((u, browser));
        }
        for round in 1..=3usize {
            for (i, (u, _)) in recipients.iter().enumerate() {
                send(&nodes[(i + round) % 2], &ta, json!({"to_user_id": u, "type": "text", "text": format!("round {round}")})).await;
            }
            for i in 0..recipients.len() {
                assert_eq!(service.wait_for(&format!("r{i}"), round, PUSH_WITHIN).await.len(), round);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            for (i, (_, browser)) in recipients.iter().enumerate() {
                let got = service.received(&format!("r{i}"));
                assert_eq!(got.len(), round, "recipient {i} got exactly one push in round {round}");
                assert_eq!(browser.open(&got[round - 1].body)["unread"], round as i64);
            }
        }
        let sent: f64 = nodes.iter().map(|n| n.metric("gochat_push_sent_total", "result=\"sent\"")).sum();
        assert_eq!(sent, 24.0, "the nodes together sent each push once");
    }

    async fn pushes_queued_on_a_node_killed_with_sigkill_are_sent_after_it_restarts(backend) {
        let env = TestEnv::new(backend).await;
        let service = PushService::start().await;
        let key = new_key();
        let settings = push_settings(&key);
        let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut process = NodeProcess::spawn(&env, &pairs).await;
        let node = &process.node;
        let (a, ta) = node.user(&uniq("sa")).await;
        let (b, tb) = node.user(&uniq("sb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let phone = Browser::new();
        subscribe(node, &tb, &phone, "phone", &service.endpoint("b")).await;
        for i in 0..3 {
            send(node, &ta, json!({"to_user_id": b, "type": "text", "text": format!("before the stop {i}")})).await;
        }
        // Killed before the burst's quiet second is over: the pushes are queued, none sent.
        process.kill();
        assert_eq!(quiet_for(&service, "b", Duration::from_secs(2)).await, 0);
        let _restarted = push_node(&env, &key).await;
        let got = service.wait_for("b", 1, PUSH_WITHIN).await;
        assert_eq!(got.len(), 1, "the restarted node sends what was queued");
        assert_eq!(phone.open(&got[0].body)["unread"], 3);
    }
}
