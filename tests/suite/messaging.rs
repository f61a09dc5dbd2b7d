//! 1:1 messaging and the delivery contract over real HTTP and WebSockets, on both backend sets (SQLite +
//! in-process bus, Postgres + Redis). On Postgres the parties sit on different nodes, as in a cluster.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{uniq, TestEnv, TestNode};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Two nodes on a cluster environment; the same node twice on SQLite (an embedded node is alone).
async fn two_nodes(env: &TestEnv) -> (TestNode, Option<TestNode>) {
    let first = env.node().await;
    let second = if env.is_cluster() { Some(env.node().await) } else { None };
    (first, second)
}

fn seqs(ms: &[Value]) -> Vec<i64> {
    ms.iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

backend_tests! {
    async fn a_message_reaches_the_recipient_and_the_senders_other_device_and_receipts_come_back(backend) {
        let env = TestEnv::new(backend).await;
        let (n1, n2) = two_nodes(&env).await;
        let n2 = n2.as_ref().unwrap_or(&n1);
        let (a, ta) = n1.user(&uniq("ma")).await;
        let (b, tb) = n1.user(&uniq("mb")).await;
        n1.befriend((a, &ta), (b, &tb)).await;
        let mut a_phone = n1.ws(&ta, "phone").await;
        let mut a_laptop = n2.ws(&ta, "laptop").await;
        let mut b_phone = n2.ws(&tb, "phone").await;
        for ws in [&mut a_phone, &mut a_laptop, &mut b_phone] {
            let s = ws.recv_type("sync").await;
            assert_eq!((s["messages"].as_array().unwrap().len(), s["more"].as_bool()), (0, Some(false)));
        }

        a_phone.send(json!({"type": "send", "message": {"to_user_id": b, "type": "text", "text": "hello B", "client_msg_id": "c-1"}})).await;
        let sent = a_phone.recv_type("sent").await;
        assert_eq!(sent["client_msg_id"], "c-1");
        let m = &sent["message"];
        let conv = format!("d:{}:{}", a.min(b), a.max(b));
        assert_eq!(m["conversation_id"], conv.as_str());
        assert_eq!((m["seq"].as_i64(), m["from_user_id"].as_i64(), m["to_user_id"].as_i64()), (Some(1), Some(a), Some(b)));
        assert_eq!((m["type"].as_str(), m["text"].as_str()), (Some("text"), Some("hello B")));

        let got = b_phone.recv_type("message").await;
        assert_eq!(got["message"]["id"], m["id"]);
        let echo = a_laptop.recv_type("message").await;
        assert_eq!(echo["message"]["id"], m["id"], "the sender's other device gets it too");

        b_phone.ack(&conv, 1).await;
        let r = a_phone.recv_type("receipt").await;
        assert_eq!((r["status"].as_str(), r["user_id"].as_i64(), r["seq"].as_i64()), (Some("delivered"), Some(b), Some(1)));
        assert_eq!(a_laptop.recv_type("receipt").await["status"], "delivered");

        let read = n2.post("/api/messages/read", Some(&tb), json!({"conversation_id": conv, "seq": 1})).await;
        assert_eq!(read.status, StatusCode::NO_CONTENT);
        let r = a_phone.recv_type("receipt").await;
        assert_eq!((r["status"].as_str(), r["user_id"].as_i64()), (Some("read"), Some(b)));

        // Typing goes to the other side only.
        b_phone.send(json!({"type": "typing", "conversation_id": conv})).await;
        let t = a_phone.recv_type("typing").await;
        assert_eq!((t["conversation_id"].as_str(), t["user_id"].as_i64()), (Some(conv.as_str()), Some(b)));

        // Application-level heartbeat.
        b_phone.send(json!({"type": "ping"})).await;
        assert_eq!(b_phone.recv_type("pong").await["type"], "pong");
        let wire = n1.metric("gochat_deliveries_total", "path=\"live\"") + n2.metric("gochat_deliveries_total", "path=\"live\"");
        assert!(wire >= 2.0, "live deliveries are counted: {wire}");
    }

    async fn an_offline_user_gets_300_messages_in_order_in_sync_batches_and_nothing_again_after_acking(backend) {
        let env = TestEnv::new(backend).await;
        let (n1, n2) = two_nodes(&env).await;
        let n2 = n2.as_ref().unwrap_or(&n1);
        let (a, ta) = n1.user(&uniq("oa")).await;
        let (b, tb) = n1.user(&uniq("ob")).await;
        n1.befriend((a, &ta), (b, &tb)).await;
        for i in 0..300 {
            n1.send_text(&ta, b, &format!("m{i}")).await;
        }
        let mut b_ws = n2.ws(&tb, "phone").await;
        let got = b_ws.collect(300).await;
        assert_eq!(seqs(&got), (1..=300).collect::<Vec<_>>(), "all 300, in seq order");
        assert_eq!(got[0]["text"], "m0");
        assert_eq!(got[299]["text"], "m299");
        drop(b_ws);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let mut again = n1.ws(&tb, "phone").await;
        let s = again.recv_type("sync").await;
        assert_eq!(s["messages"].as_array().unwrap().len(), 0, "acked messages are not sent again: {s}");
        assert_eq!(again.recv_within(Duration::from_millis(300)).await, None);
        // Another device has its own cursor and gets everything.
        let mut tablet = n2.ws(&tb, "tablet").await;
        assert_eq!(tablet.collect(300).await.len(), 300);
    }

    async fn unacked_messages_are_delivered_again_on_reconnect(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ua")).await;
        let (b, tb) = node.user(&uniq("ub")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let mut b_ws = node.ws(&tb, "d").await;
        b_ws.recv_type("sync").await;
        for i in 0..3 {
            node.send_text(&ta, b, &format!("u{i}")).await;
        }
        for _ in 0..3 {
            b_ws.recv_type("message").await; // received but never acked
        }
        drop(b_ws);
        let mut b_ws = node.ws(&tb, "d").await;
        let s = b_ws.recv_type("sync").await;
        assert_eq!(seqs(s["messages"].as_array().unwrap()), vec![1, 2, 3], "at-least-once: unacked comes again");
    }

    async fn concurrent_senders_get_gapless_seqs_and_retries_make_exactly_one_message(backend) {
        let env = TestEnv::new(backend).await;
        let (n1, n2) = two_nodes(&env).await;
        let n1 = std::sync::Arc::new(n1);
        let mut nodes = vec![n1.clone()];
        nodes.extend(n2.map(std::sync::Arc::new));
        let (a, ta) = n1.user(&uniq("ca")).await;
        let (b, tb) = n1.user(&uniq("cb")).await;
        n1.befriend((a, &ta), (b, &tb)).await;
        let per_sender = if env.is_cluster() { 500 } else { 250 };
        let mut tasks = Vec::new();
        // Each sender runs 10 concurrent loops, alternating nodes.
        for (me, token, peer) in [(a, ta.clone(), b), (b, tb.clone(), a)] {
            for w in 0..10 {
                let nodes = nodes.clone();
                let token = token.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_sender / 10 {
                        let node = &nodes[(w + i) % nodes.len()];
                        let body = json!({"to_user_id": peer, "type": "text", "text": format!("{me}-{w}-{i}"), "client_msg_id": format!("{w}-{i}")});
                        let r = node.post("/api/messages/send", Some(&token), body).await;
                        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let conv = format!("d:{}:{}", a.min(b), a.max(b));
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = n1.get(&format!("/api/messages/history?conversation_id={conv}&after_seq={after}&limit=100"), &ta).await;
            let ms = page.body["messages"].as_array().unwrap().clone();
            after = ms.last().map_or(after, |m| m["seq"].as_i64().unwrap());
            all.extend(ms);
            if !page.body["has_more"].as_bool().unwrap() {
                break;
            }
        }
        let total = 2 * per_sender;
        assert_eq!(seqs(&all), (1..=total as i64).collect::<Vec<_>>(), "seq 1..{total}, no gap, no duplicate");

        // 20 concurrent retries of one client_msg_id, spread over the nodes: exactly one message.
        let mut retries = Vec::new();
        for i in 0..20 {
            let node = nodes[i % nodes.len()].clone();
            let ta = ta.clone();
            retries.push(tokio::spawn(async move {
                let body = json!({"to_user_id": b, "type": "text", "text": "once", "client_msg_id": "the-one"});
                node.post("/api/messages/send", Some(&ta), body).await
            }));
        }
        let mut ids = HashSet::new();
        let mut created = 0;
        for r in retries {
            let r = r.await.unwrap();
            assert!(r.status == StatusCode::CREATED || r.status == StatusCode::OK, "{}", r.body);
            created += (r.status == StatusCode::CREATED) as usize;
            ids.insert(r.body["id"].as_i64().unwrap());
        }
        assert_eq!((ids.len(), created), (1, 1), "one message, one 201, the rest 200 with it");
        let last = n1.get(&format!("/api/messages/history?conversation_id={conv}&limit=2"), &ta).await;
        assert_eq!(last.body["messages"][1]["seq"].as_i64(), Some(total as i64 + 1), "the retries used no seq");
    }

    async fn conversations_list_last_message_and_unread_counts(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("la")).await;
        let (b, tb) = node.user(&uniq("lb")).await;
        let (c, tc) = node.user(&uniq("lc")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        for i in 0..3 {
            node.send_text(&tb, a, &format!("from b {i}")).await;
        }
        node.send_text(&tc, a, "from c").await;
        let list = node.get("/api/conversations", &ta).await;
        assert_eq!(list.status, StatusCode::OK);
        let convs = list.body.as_array().unwrap();
        assert_eq!(convs.len(), 2);
        assert_eq!(convs[0]["peer"]["id"], c, "most recent first");
        assert_eq!(convs[0]["type"], "direct");
        assert_eq!(convs[0]["last_message"]["text"], "from c");
        assert_eq!((convs[1]["unread_count"].as_i64(), convs[1]["last_seq"].as_i64(), convs[1]["read_seq"].as_i64()), (Some(3), Some(3), Some(0)));
        let conv_b = convs[1]["conversation_id"].as_str().unwrap().to_string();
        node.post("/api/messages/read", Some(&ta), json!({"conversation_id": conv_b, "seq": 2})).await;
        let list = node.get("/api/conversations", &ta).await;
        assert_eq!(list.body[1]["unread_count"], 1);
        // Replying marks the conversation read for the sender.
        node.send_text(&ta, b, "reply").await;
        let list = node.get("/api/conversations", &ta).await;
        assert_eq!((list.body[0]["conversation_id"].as_str(), list.body[0]["unread_count"].as_i64()), (Some(conv_b.as_str()), Some(0)));
        // Read cursors never move back.
        node.post("/api/messages/read", Some(&ta), json!({"conversation_id": conv_b, "seq": 1})).await;
        assert_eq!(node.get("/api/conversations", &ta).await.body[0]["read_seq"], 4);
        let b_view = node.get("/api/conversations", &tb).await;
        assert_eq!(b_view.body[0]["unread_count"], 1, "B has the reply unread");
    }

    async fn history_pages_both_ways(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ha")).await;
        let (b, tb) = node.user(&uniq("hb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        for i in 1..=25 {
            node.send_text(&ta, b, &format!("h{i}")).await;
        }
        let conv = format!("d:{}:{}", a.min(b), a.max(b));
        let latest = node.get(&format!("/api/messages/history?conversation_id={conv}&limit=10"), &tb).await;
        assert_eq!(seqs(latest.body["messages"].as_array().unwrap()), (16..=25).collect::<Vec<_>>());
        assert_eq!(latest.body["has_more"], true);
        let older = node.get(&format!("/api/messages/history?conversation_id={conv}&before_seq=16&limit=10"), &tb).await;
        assert_eq!(seqs(older.body["messages"].as_array().unwrap()), (6..=15).collect::<Vec<_>>());
        let oldest = node.get(&format!("/api/messages/history?conversation_id={conv}&before_seq=6&limit=10"), &tb).await;
        assert_eq!(seqs(oldest.body["messages"].as_array().unwrap()), (1..=5).collect::<Vec<_>>());
        assert_eq!(oldest.body["has_more"], false);
        let newer = node.get(&format!("/api/messages/history?conversation_id={conv}&after_seq=20"), &tb).await;
        assert_eq!(seqs(newer.body["messages"].as_array().unwrap()), (21..=25).collect::<Vec<_>>());
        assert_eq!(newer.body["has_more"], false);
        let window = node.get(&format!("/api/messages/history?conversation_id={conv}&after_seq=3&before_seq=7"), &tb).await;
        assert_eq!(seqs(window.body["messages"].as_array().unwrap()), vec![4, 5, 6]);
    }

    async fn bad_message_input_over_http_gets_clear_errors(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ba")).await;
        let (b, tb) = node.user(&uniq("bb")).await;
        let (c, tc) = node.user(&uniq("bc")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.send_text(&ta, b, "hi").await;
        let conv_ab = format!("d:{}:{}", a.min(b), a.max(b));
        let send = "/api/messages/send";
        let cases: Vec<(Value, StatusCode, &str)> = vec![
            (json!({"to_user_id": c, "type": "text", "text": "hi"}), StatusCode::FORBIDDEN, "not_friends"),
            (json!({"to_user_id": a, "type": "text", "text": "me"}), StatusCode::FORBIDDEN, "cannot_message_self"),
            (json!({"type": "text", "text": "nobody"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_recipient"),
            (json!({"to_user_id": b, "group_id": 1, "type": "text", "text": "both"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_recipient"),
            (json!({"to_user_id": b, "type": "text", "text": ""}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_text"),
            (json!({"to_user_id": b, "type": "text"}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_text"),
            (json!({"to_user_id": b, "type": "text", "text": "x".repeat(4001)}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_text"),
            (json!({"to_user_id": b, "type": "text", "text": "x", "client_msg_id": "c".repeat(65)}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_client_msg_id"),
            (json!({"to_user_id": b, "type": "image", "file_id": 1}), StatusCode::NOT_FOUND, "file_not_found"),
            (json!({"to_user_id": b, "type": "image"}), StatusCode::UNPROCESSABLE_ENTITY, "file_required"),
            (json!({"to_user_id": b, "type": "sticker", "text": "x"}), StatusCode::BAD_REQUEST, "invalid_body"),
            (json!({"to_user_id": "b", "type": "text", "text": "x"}), StatusCode::BAD_REQUEST, "invalid_body"),
        ];
        for (body, status, code) in cases {
            let r = node.post(send, Some(&ta), body.clone()).await;
            assert_eq!((r.status, r.code()), (status, code), "{body}");
        }
        assert_eq!(node.send_text(&ta, b, &"x".repeat(4000)).await["seq"], 2, "4000 characters are fine");

        let hist = |q: String| format!("/api/messages/history?{q}");
        let cases = vec![
            (hist(format!("conversation_id={conv_ab}")), &tc, StatusCode::FORBIDDEN, "not_conversation_member"),
            (hist("conversation_id=g:1".into()), &ta, StatusCode::NOT_FOUND, "group_not_found"),
            (hist("conversation_id=nonsense".into()), &ta, StatusCode::UNPROCESSABLE_ENTITY, "invalid_conversation_id"),
            (hist(format!("conversation_id={conv_ab}&limit=0")), &ta, StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit"),
            (hist(format!("conversation_id={conv_ab}&limit=101")), &ta, StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit"),
            (hist(format!("conversation_id={conv_ab}&before_seq=-1")), &ta, StatusCode::UNPROCESSABLE_ENTITY, "invalid_seq"),
            (hist(format!("conversation_id={conv_ab}&after_seq=-5")), &ta, StatusCode::UNPROCESSABLE_ENTITY, "invalid_seq"),
            (hist(format!("conversation_id={conv_ab}&after_seq=abc")), &ta, StatusCode::BAD_REQUEST, "invalid_parameter"),
            (hist(format!("conversation_id={conv_ab}&before_seq=99999999999999999999999")), &ta, StatusCode::BAD_REQUEST, "invalid_parameter"),
            (hist(String::new()), &ta, StatusCode::BAD_REQUEST, "invalid_parameter"),
        ];
        for (path, token, status, code) in cases {
            let r = node.get(&path, token).await;
            assert_eq!((r.status, r.code()), (status, code), "{path}");
        }
        let read = "/api/messages/read";
        for (body, status, code) in [
            (json!({"conversation_id": conv_ab, "seq": 3}), StatusCode::CONFLICT, "seq_beyond_last"),
            (json!({"conversation_id": conv_ab, "seq": 0}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_seq"),
            (json!({"conversation_id": "d:1", "seq": 1}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_conversation_id"),
            (json!({"conversation_id": conv_ab}), StatusCode::BAD_REQUEST, "invalid_body"),
        ] {
            let r = node.post(read, Some(&tb), body.clone()).await;
            assert_eq!((r.status, r.code()), (status, code), "{body}");
        }
        let r = node.post(read, Some(&tc), json!({"conversation_id": conv_ab, "seq": 1})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_conversation_member"));
        let r = node.call(Method::GET, "/api/conversations", None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }

    async fn bad_socket_input_gets_errors_and_leaves_the_node_and_other_sessions_unaffected(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("sa")).await;
        let (b, tb) = node.user(&uniq("sb")).await;
        let (c, _) = node.user(&uniq("sc")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let mut bystander = node.ws(&tb, "d").await;
        bystander.recv_type("sync").await;
        let mut ws = node.ws(&ta, "d").await;
        ws.recv_type("sync").await;

        let expect_error = |f: Value, code: &str| {
            assert_eq!((f["type"].as_str(), f["code"].as_str()), (Some("error"), Some(code)), "{f}");
        };
        ws.send_raw("{not json".into()).await;
        expect_error(ws.recv().await, "invalid_json");
        ws.send(json!({"type": "launch_missiles"})).await;
        expect_error(ws.recv().await, "unknown_type");
        ws.send(json!({"no_type": 1})).await;
        expect_error(ws.recv().await, "invalid_frame");
        ws.send(json!({"type": "ack", "conversation_id": 5})).await;
        expect_error(ws.recv().await, "invalid_frame");
        ws.send(json!({"type": "ack", "conversation_id": "zz", "seq": 1})).await;
        expect_error(ws.recv().await, "invalid_conversation_id");
        ws.send(json!({"type": "ack", "conversation_id": format!("d:{}:{}", a.min(b), a.max(b)), "seq": 7})).await;
        expect_error(ws.recv().await, "invalid_seq");
        ws.send(json!({"type": "send", "message": {"to_user_id": c, "type": "text", "text": "hi", "client_msg_id": "s1"}})).await;
        expect_error(ws.recv().await, "not_friends");
        ws.send(json!({"type": "typing", "conversation_id": format!("d:{}:{}", b.min(c), b.max(c))})).await;
        expect_error(ws.recv().await, "not_conversation_member");
        use futures_util::SinkExt;
        ws.stream.send(tokio_tungstenite::tungstenite::Message::Binary(vec![1, 2, 3].into())).await.unwrap();
        expect_error(ws.recv().await, "binary_not_supported");
        // The socket still works after all that.
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.recv().await["type"], "pong");

        // A 1 MiB frame closes the socket with 1009 (message too big).
        // (The server may cut the connection while the client is still writing the frame.)
        let big = format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(1 << 20));
        let _ = ws.stream.send(tokio_tungstenite::tungstenite::Message::Text(big.into())).await;
        let code = ws.closed_within(Duration::from_secs(5)).await.expect("closed");
        assert!(code == Some(1009) || code.is_none(), "closed with {code:?}");

        // Other sessions and the node are unaffected.
        node.send_text(&ta, b, "still here").await;
        assert_eq!(bystander.recv_type("message").await["message"]["text"], "still here");
        assert_eq!(node.call(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    }

    async fn the_socket_refuses_bad_tokens_before_the_upgrade(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ta")).await;
        let url = |q: &str| format!("ws://{}/ws{q}", node.addr);
        for (q, status) in [
            ("".to_string(), 401),
            ("?token=garbage".to_string(), 401),
            (format!("?token={ta}&userId={}", a + 1), 403),
            (format!("?token={ta}&device=bad%20device"), 422),
        ] {
            match tokio_tungstenite::connect_async(url(&q)).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    assert_eq!(resp.status().as_u16(), status, "{q}");
                    let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
                    assert!(body["code"].is_string(), "{body}");
                }
                other => panic!("{q}: expected an HTTP refusal, got {other:?}"),
            }
        }
        assert!(tokio_tungstenite::connect_async(url(&format!("?token={ta}&userId={a}"))).await.is_ok());
        // A plain GET without the upgrade is a clear 4xx too.
        let r = node.get(&format!("/ws?token={ta}"), &ta).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "not_a_websocket"));
    }

    async fn a_full_node_refuses_new_sockets_with_503_and_keeps_serving_the_ones_it_has(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_MAX_CONNECTIONS", "2")]).await;
        let (a, ta) = node.user(&uniq("fa")).await;
        let (b, tb) = node.user(&uniq("fb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let mut first = node.ws(&ta, "one").await;
        let mut second = node.ws(&tb, "one").await;
        first.recv_type("sync").await;
        second.recv_type("sync").await;
        match tokio_tungstenite::connect_async(node.ws_url(&tb, "two")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 503);
                let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).unwrap();
                assert_eq!(body["code"], "at_capacity");
            }
            other => panic!("expected 503, got {other:?}"),
        }
        node.send_text(&ta, b, "still served").await;
        assert_eq!(second.recv_type("message").await["message"]["text"], "still served");
        drop(first);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut third = node.ws(&ta, "two").await;
        assert_eq!(third.recv_type("sync").await["type"], "sync", "room again once a socket left");
    }

    async fn a_client_that_stops_answering_is_dropped_after_the_idle_timeout(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_HEARTBEAT", "300ms"), ("GOCHAT_IDLE_TIMEOUT", "1s")]).await;
        let (_, ta) = node.user(&uniq("ia")).await;
        let mut ws = node.ws(&ta, "d").await;
        ws.recv_type("sync").await;
        // Not reading means not answering the server's pings either.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let code = ws.closed_within(Duration::from_secs(3)).await.expect("dropped");
        assert!(code == Some(1001) || code.is_none(), "{code:?}");
        // A client that keeps talking stays.
        let mut chatty = node.ws(&ta, "e").await;
        for _ in 0..6 {
            chatty.send(json!({"type": "ping"})).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(chatty.recv_type("sync").await["type"], "sync");
        assert_eq!(chatty.recv_type("pong").await["type"], "pong");
    }

    async fn the_server_pings_at_every_heartbeat_and_a_pong_is_accepted_without_reply(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_HEARTBEAT", "300ms"), ("GOCHAT_IDLE_TIMEOUT", "1s")]).await;
        let (_, ta) = node.user(&uniq("hb")).await;
        let mut ws = node.ws(&ta, "d").await;
        assert_eq!(ws.recv_type("sync").await["type"], "sync");
        // Well past the idle timeout: an app-level ping arrives every heartbeat, each answered with `pong`, and
        // the server writes nothing back for a pong (no `error`, no `pong` of its own).
        let started = tokio::time::Instant::now();
        let mut pings = 0;
        while started.elapsed() < Duration::from_millis(2500) {
            match ws.recv_within(Duration::from_millis(600)).await {
                Some(f) => {
                    assert_eq!(f, json!({"type": "ping"}), "only heartbeats on an idle socket");
                    pings += 1;
                    ws.send(json!({"type": "pong"})).await;
                }
                None => panic!("no heartbeat within two intervals"),
            }
        }
        assert!(pings >= 5, "{pings} pings in 2.5 s at a 300 ms heartbeat");
        ws.send(json!({"type": "ping"})).await;
        assert_eq!(ws.recv_type("pong").await["type"], "pong", "still open and answering");
    }

    async fn a_client_that_never_reads_is_disconnected_when_its_queue_fills(backend) {
        let env = TestEnv::new(backend).await;
        let node = std::sync::Arc::new(env.node().await);
        let (a, ta) = node.user(&uniq("qa")).await;
        let (b, tb) = node.user(&uniq("qb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let _stuck = node.ws(&tb, "stuck").await; // never read again
        let text = "y".repeat(4000);
        let mut tasks = Vec::new();
        for w in 0..8 {
            let (node, ta, text) = (node.clone(), ta.clone(), text.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0..250 {
                    let body = json!({"to_user_id": b, "type": "text", "text": text, "client_msg_id": format!("{w}-{i}")});
                    node.post("/api/messages/send", Some(&ta), body).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while node.metric("gochat_ws_slow_consumer_disconnects_total", "") < 1.0 {
            assert!(tokio::time::Instant::now() < deadline, "the stuck socket was never evicted");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while node.metric("gochat_ws_connections", "") > 0.0 {
            assert!(tokio::time::Instant::now() < deadline, "the stuck socket was not closed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // It resyncs everything on reconnect.
        let mut fresh = node.ws(&tb, "stuck").await;
        assert_eq!(fresh.collect(2000).await.len(), 2000);
    }
}
