//! Summary-first catch-up after a long absence (DESIGN.md §12) over real WebSockets; on Postgres the messages
//! are sent on one node and the device catches up on another.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::{uniq, TestEnv, TestNode, Ws};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn direct(a: i64, b: i64) -> String {
    format!("d:{}:{}", a.min(b), a.max(b))
}

async fn send(node: &TestNode, token: &str, body: Value) -> Value {
    let r = node.post("/api/messages/send", Some(token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// Reads a summary-first catch-up: the `summary`, then `sync` frames until one without `more`. Returns the
/// summary's conversations and the seqs each conversation's tail brought, in arrival order.
async fn summary_and_tails(ws: &mut Ws) -> (Vec<Value>, BTreeMap<String, Vec<i64>>) {
    let summary = ws.recv_type("summary").await;
    let mut tails: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    loop {
        let s = ws.recv_type("sync").await;
        assert!(s.get("conversation_id").is_none(), "tails carry no conversation_id: {s}");
        for m in s["messages"].as_array().unwrap() {
            tails.entry(m["conversation_id"].as_str().unwrap().into()).or_default().push(m["seq"].as_i64().unwrap());
        }
        if s["more"] != true {
            break;
        }
    }
    (summary["conversations"].as_array().unwrap().clone(), tails)
}

/// Pages a conversation on demand from `after` until the server says the range is done.
async fn pages(ws: &mut Ws, conversation: &str, mut after: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        ws.send(json!({"type": "sync", "conversation_id": conversation, "after_seq": after})).await;
        let page = ws.recv_type("sync").await;
        assert_eq!(page["conversation_id"], conversation, "{page}");
        let got: Vec<i64> = page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert!(got.len() <= 100);
        seqs.extend(&got);
        if page["more"] != true {
            return seqs;
        }
        after = *got.last().expect("a page with more holds messages");
    }
}

backend_tests! {
    async fn summary_first_catch_up_delivers_every_head_and_tail_then_pages_fill_to_the_cursor(backend) {
        let env = TestEnv::new(backend).await;
        let n1 = env.node().await;
        let n2 = if env.is_cluster() { Some(env.node().await) } else { None };
        let n2 = n2.as_ref().unwrap_or(&n1);
        let (a, ta) = n1.user(&uniq("ca")).await;
        let (b, tb) = n1.user(&uniq("cb")).await;
        let (c, tc) = n1.user(&uniq("cc")).await;
        n1.befriend((a, &ta), (b, &tb)).await;
        n1.befriend((a, &ta), (c, &tc)).await;
        let g = n1.post("/api/groups", Some(&ta), json!({"name": "away", "member_ids": [b, c]})).await.body["id"].as_i64().unwrap();
        let (ab, ac, gc) = (direct(a, b), direct(a, c), format!("g:{g}"));
        // The phone was here once and has everything so far.
        let mut phone = n2.ws(&ta, "phone").await;
        let first = phone.recv_type("sync").await;
        for m in first["messages"].as_array().unwrap() {
            phone.ack(m["conversation_id"].as_str().unwrap(), m["seq"].as_i64().unwrap()).await;
        }
        drop(phone);
        tokio::time::sleep(Duration::from_millis(300)).await;

        // While away (sent on n1): 150 from b, 5 from c, 60 in the group, and a recall in the middle of ab.
        for i in 0..150 {
            send(&n1, &tb, json!({"to_user_id": a, "type": "text", "text": format!("b {i}")})).await;
        }
        for i in 0..5 {
            send(&n1, &tc, json!({"to_user_id": a, "type": "text", "text": format!("c {i}")})).await;
        }
        for i in 0..60 {
            let token = if i % 2 == 0 { &tb } else { &tc };
            send(&n1, token, json!({"group_id": g, "type": "text", "text": format!("g {i}"), "mention_user_ids": if i == 7 { json!([a]) } else { json!([]) }})).await;
        }
        let history = n1.get(&format!("/api/messages/history?conversation_id={ab}&limit=100"), &tb).await;
        let middle = history.body["messages"][10]["id"].clone();
        assert_eq!(n1.post(&format!("/api/messages/{middle}/recall"), Some(&tb), json!(null)).await.status, StatusCode::OK);
        let heads = |list: &Value| -> BTreeMap<String, i64> {
            list.as_array().unwrap().iter().map(|c| (c["conversation_id"].as_str().unwrap().to_owned(), c["last_seq"].as_i64().unwrap())).collect()
        };
        let last = heads(&n1.get("/api/conversations", &ta).await.body);
        let (ab_last, ac_last, g_last) = (last[&ab], last[&ac], last[&gc]);
        assert_eq!(ab_last, 151, "150 messages and the recall");

        // Back, summary first, tail 20.
        let mut phone = n2.ws_with(&ta, "phone", "&sync=summary&tail=20").await;
        let (summary, tails) = summary_and_tails(&mut phone).await;
        let listed: BTreeMap<String, &Value> = summary.iter().map(|c| (c["conversation_id"].as_str().unwrap().to_owned(), c)).collect();
        assert_eq!(listed.keys().cloned().collect::<BTreeSet<_>>(), [ab.clone(), ac.clone(), gc.clone()].into());
        assert_eq!(listed[&ab]["unread_count"], 149, "150 less the recalled one");
        assert_eq!(listed[&ac]["unread_count"], 5);
        assert_eq!((listed[&gc]["unread_count"].as_i64(), listed[&gc]["mention_unread"].as_bool()), (Some(60), Some(true)));
        assert_eq!(listed[&ac]["last_message"]["text"], "c 4");
        // Each tail is the newest 20 seqs (fewer where fewer came), gapless, in order, each once.
        assert_eq!(tails[&ab], ((ab_last - 19)..=ab_last).collect::<Vec<_>>());
        assert_eq!(tails[&ac], (1..=ac_last).collect::<Vec<_>>());
        assert_eq!(tails[&gc], ((g_last - 19)..=g_last).collect::<Vec<_>>());

        // Live messages continue right after the tail.
        send(&n1, &tb, json!({"to_user_id": a, "type": "text", "text": "live"})).await;
        let live = phone.recv_type("message").await;
        assert_eq!(live["message"]["seq"], ab_last + 1);

        // Older ones on demand: pages from the old cursor fill exactly up to the tail, nothing twice.
        let older = pages(&mut phone, &ab, 0).await;
        assert_eq!(older, (1..=(ab_last - 20)).collect::<Vec<_>>());
        let older = pages(&mut phone, &gc, 0).await;
        assert_eq!(older, (1..=(g_last - 20)).collect::<Vec<_>>());
        // Without a hole (the tail was all of it) a page reads up to what the socket was sent, like history.
        assert_eq!(pages(&mut phone, &ac, 3).await, [4, 5]);
        // A conversation that is not the caller's is refused like its history; half a request is a bad frame.
        phone.send(json!({"type": "sync", "conversation_id": direct(b, c), "after_seq": 0})).await;
        assert_eq!(phone.recv_type("error").await["code"], "not_conversation_member");
        phone.send(json!({"type": "sync", "conversation_id": ab})).await;
        assert_eq!(phone.recv_type("error").await["code"], "invalid_frame");

        // Acked, the next summary-first connect has nothing to say but an empty sync.
        for (conv, seq) in [(&ab, ab_last + 1), (&ac, ac_last), (&gc, g_last)] {
            phone.ack(conv, seq).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(phone);
        let mut phone = n1.ws_with(&ta, "phone", "&sync=summary").await;
        let (summary, tails) = summary_and_tails(&mut phone).await;
        assert!(summary.is_empty() && tails.is_empty(), "{summary:?} {tails:?}");

        // Without sync=summary a new device gets everything, as before.
        let mut laptop = n1.ws(&ta, "laptop").await;
        let all = laptop.collect(151 + 5 + 61).await;
        let distinct: BTreeSet<(String, i64)> = all.iter().map(|m| (m["conversation_id"].as_str().unwrap().to_owned(), m["seq"].as_i64().unwrap())).collect();
        assert_eq!(distinct.len(), all.len(), "nothing twice");
    }

    async fn bad_catch_up_parameters_are_refused_before_the_upgrade(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (_a, ta) = node.user(&uniq("cq")).await;
        for query in ["&sync=everything", "&sync=summary&tail=0", "&sync=summary&tail=101", "&sync=summary&tail=x"] {
            let url = format!("{}{query}", node.ws_url(&ta, "d")).replace("ws://", "http://");
            let r = reqwest::Client::new()
                .get(url)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], "invalid_parameter", "{query}");
        }
    }
}
