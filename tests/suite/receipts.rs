//! Group read receipts that scale and the readers of a message (DESIGN.md §4 `receipt`, §10 readers), and typing
//! throttled and kept to the conversation's parties; on Postgres the devices sit on two nodes.

use std::time::Duration;

use crate::common::{uniq, TestEnv, TestNode, Ws};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn send(node: &TestNode, token: &str, group: i64, text: &str) -> Value {
    let r =
        node.post("/api/messages/send", Some(token), json!({"group_id": group, "type": "text", "text": text})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn readers(node: &TestNode, token: &str, id: &Value) -> (Vec<i64>, Vec<i64>) {
    let r = node.get(&format!("/api/messages/{id}/readers"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids = |k: &str| r.body[k].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect::<Vec<_>>();
    (ids("read"), ids("unread"))
}

/// The frames of `ty` a socket receives within `wait`.
async fn frames_of(ws: &mut Ws, ty: &str, wait: Duration) -> Vec<Value> {
    let until = tokio::time::Instant::now() + wait;
    let mut got = Vec::new();
    while let Some(f) = ws.recv_within(until.saturating_duration_since(tokio::time::Instant::now())).await {
        if f["type"] == ty {
            got.push(f);
        }
    }
    got
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

backend_tests! {
    async fn a_group_read_reaches_the_readers_devices_and_once_batched_only_the_senders_it_covers(backend) {
        let env = TestEnv::new(backend).await;
        let n1 = env.node().await;
        let n2 = if env.is_cluster() { Some(env.node().await) } else { None };
        let n2 = n2.as_ref().unwrap_or(&n1);
        let (o, to) = n1.user(&uniq("ro")).await;
        let (a, ta) = n1.user(&uniq("ra")).await;
        let (b, tb) = n1.user(&uniq("rb")).await;
        let (c, tc) = n1.user(&uniq("rc")).await;
        let (d, td) = n1.user(&uniq("rd")).await;
        for (u, t) in [(a, &ta), (b, &tb), (c, &tc), (d, &td)] {
            n1.befriend((o, &to), (u, t)).await;
        }
        let r = n1.post("/api/groups", Some(&to), json!({"name": "receipts", "member_ids": [a, b, c]})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let g = r.body["id"].as_i64().unwrap();
        let conv = format!("g:{g}");
        let m1 = send(&n1, &to, g, "one").await;
        let m2 = send(&n1, &ta, g, "two").await;
        let m3 = send(&n1, &to, g, "three").await;

        let mut o_ws = n2.ws(&to, "o-phone").await;
        let mut a_ws = n1.ws(&ta, "a-phone").await;
        let mut b_laptop = n2.ws(&tb, "b-laptop").await;
        let mut c_ws = n2.ws(&tc, "c-phone").await;
        for ws in [&mut o_ws, &mut a_ws, &mut b_laptop, &mut c_ws] {
            ws.recv_type("sync").await;
        }
        // b reads from the phone (REST) to m2, then to m3: their laptop hears both at once; the senders of what
        // was read (o of m1 and m3, a of m2) each hear one receipt, merged to m3; c, who sent nothing, none.
        let read = |seq: &Value| json!({"conversation_id": conv, "seq": seq});
        assert_eq!(n1.post("/api/messages/read", Some(&tb), read(&m2["seq"])).await.status, StatusCode::NO_CONTENT);
        assert_eq!(n1.post("/api/messages/read", Some(&tb), read(&m3["seq"])).await.status, StatusCode::NO_CONTENT);
        let own: Vec<i64> = frames_of(&mut b_laptop, "receipt", Duration::from_millis(300)).await.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
        assert_eq!(own, [m2["seq"].as_i64().unwrap(), m3["seq"].as_i64().unwrap()], "the reader's other device");
        for ws in [&mut o_ws, &mut a_ws] {
            let got = frames_of(ws, "receipt", Duration::from_millis(1500)).await;
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!((&got[0]["user_id"], &got[0]["seq"], &got[0]["status"]), (&json!(b), &m3["seq"], &json!("read")));
        }
        assert!(frames_of(&mut c_ws, "receipt", Duration::from_millis(300)).await.is_empty(), "c sent nothing b read");

        // The readers of each message, exact; the sender is in neither list, and sending reads what came before.
        assert_eq!(readers(&n1, &to, &m1["id"]).await, (sorted(vec![a, b]), vec![c]));
        assert_eq!(readers(n2, &tc, &m2["id"]).await, (sorted(vec![o, b]), vec![c]));
        // a reads on two devices, one further than the other: the furthest counts.
        assert_eq!(n2.post("/api/messages/read", Some(&ta), read(&m1["seq"])).await.status, StatusCode::NO_CONTENT);
        assert_eq!(n1.post("/api/messages/read", Some(&ta), read(&m3["seq"])).await.status, StatusCode::NO_CONTENT);
        assert_eq!(readers(&n1, &to, &m3["id"]).await, (sorted(vec![a, b]), vec![c]));

        // A member who joins later is in neither list of earlier messages, and unread for the next one.
        let r = n1.post(&format!("/api/groups/{g}/members"), Some(&to), json!({"user_ids": [d]})).await;
        assert!(r.status.is_success(), "{}", r.body);
        assert_eq!(readers(&n1, &to, &m3["id"]).await, (sorted(vec![a, b]), vec![c]));
        let m4 = send(&n1, &ta, g, "four").await;
        assert_eq!(readers(&n1, &ta, &m4["id"]).await, (vec![], sorted(vec![o, b, c, d])));
        // Nobody learns about messages they cannot see: d of m1, a stranger of anything, nor of a system message.
        let (_, ts) = n1.user(&uniq("rs")).await;
        for (token, id) in [(&td, &m1["id"]), (&ts, &m4["id"]), (&to, &json!(i64::MAX))] {
            let r = n1.get(&format!("/api/messages/{id}/readers"), token).await;
            assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "message_not_found"), "{}", r.body);
        }
        // Found by a hostile run: a member who left still got reads of their messages. Now nothing reaches them.
        let m5 = send(&n1, &tb, g, "five, then I leave").await;
        assert_eq!(n1.delete(&format!("/api/groups/{g}/members/{b}"), &tb).await.status, StatusCode::NO_CONTENT);
        assert_eq!(frames_of(&mut b_laptop, "group_removed", Duration::from_millis(500)).await.len(), 1);
        assert_eq!(n2.post("/api/messages/read", Some(&tc), read(&m5["seq"])).await.status, StatusCode::NO_CONTENT);
        assert!(frames_of(&mut b_laptop, "receipt", Duration::from_millis(1200)).await.is_empty(), "b left");
        let h = n1.get(&format!("/api/messages/history?conversation_id={conv}"), &to).await;
        let system = h.body["messages"].as_array().unwrap().iter().find(|m| m["type"] == "system").unwrap()["id"].clone();
        let r = n1.get(&format!("/api/messages/{system}/readers"), &to).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "message_not_found"), "{}", r.body);
    }

    async fn typing_is_throttled_to_one_frame_per_three_seconds_and_refused_to_non_parties(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (o, to) = node.user(&uniq("to")).await;
        let (a, ta) = node.user(&uniq("ta")).await;
        let (_s, ts) = node.user(&uniq("ts")).await;
        node.befriend((o, &to), (a, &ta)).await;
        let r = node.post("/api/groups", Some(&to), json!({"name": "typing", "member_ids": [a]})).await;
        let g = r.body["id"].as_i64().unwrap();
        let conv = format!("g:{g}");
        let mut o_ws = node.ws(&to, "o").await;
        let mut a_ws = node.ws(&ta, "a").await;
        let mut s_ws = node.ws(&ts, "s").await;
        for ws in [&mut o_ws, &mut a_ws, &mut s_ws] {
            ws.recv_type("sync").await;
        }
        for _ in 0..5 {
            a_ws.send(json!({"type": "typing", "conversation_id": conv})).await;
        }
        let got = frames_of(&mut o_ws, "typing", Duration::from_millis(800)).await;
        assert_eq!(got.len(), 1, "one frame for a burst: {got:?}");
        assert_eq!((&got[0]["user_id"], &got[0]["conversation_id"]), (&json!(a), &json!(conv)));
        assert!(frames_of(&mut a_ws, "typing", Duration::from_millis(100)).await.is_empty(), "not to the typist");
        // A stranger is refused like a send, and nobody hears it.
        s_ws.send(json!({"type": "typing", "conversation_id": conv})).await;
        assert_eq!(s_ws.recv_type("error").await["code"], "group_not_found");
        assert!(frames_of(&mut o_ws, "typing", Duration::from_millis(300)).await.is_empty());
        // After the interval the next burst is heard again.
        tokio::time::sleep(Duration::from_millis(2300)).await;
        a_ws.send(json!({"type": "typing", "conversation_id": conv})).await;
        assert_eq!(frames_of(&mut o_ws, "typing", Duration::from_millis(500)).await.len(), 1);
    }
}
