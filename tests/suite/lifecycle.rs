//! The message lifecycle (DESIGN.md §7) over real HTTP and WebSockets, on both backend sets (on Postgres the
//! devices sit on different nodes): recall, edit, reactions, replies, mentions and delete-for-me, each change an
//! event in the conversation's seq stream that reaches offline devices like any message.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{uniq, TestEnv, TestNode};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn path_emoji(e: &str) -> String {
    e.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn react(node: &TestNode, token: &str, id: i64, emoji: &str) -> crate::common::Reply {
    node.put(&format!("/api/messages/{id}/reactions/{}", path_emoji(emoji)), token, json!(null)).await
}

async fn group_of(node: &TestNode, owner: &str, members: &[i64]) -> i64 {
    let r = node.post("/api/groups", Some(owner), json!({"name": "team", "member_ids": members})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn send(node: &TestNode, token: &str, body: Value) -> Value {
    let r = node.post("/api/messages/send", Some(token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// Everything a fresh device of the user receives in its catch-up, in order.
async fn synced(node: &TestNode, token: &str, device: &str) -> Vec<Value> {
    let mut ws = node.ws(token, device).await;
    let mut all = Vec::new();
    loop {
        let s = ws.recv_type("sync").await;
        all.extend(s["messages"].as_array().unwrap().iter().cloned());
        if s["more"] != true {
            return all;
        }
    }
}

fn unread(list: &Value, conversation: &str) -> (i64, bool) {
    let c = list.as_array().unwrap().iter().find(|c| c["conversation_id"] == conversation).expect("listed");
    (c["unread_count"].as_i64().unwrap(), c["mention_unread"].as_bool().unwrap())
}

backend_tests! {
    async fn an_offline_device_gets_every_message_and_later_change_once_in_order_with_recalled_text_nowhere(backend) {
        let env = TestEnv::new(backend).await;
        let n1 = env.node().await;
        let n2 = if env.is_cluster() { Some(env.node().await) } else { None };
        let n2 = n2.as_ref().unwrap_or(&n1);
        let (a, ta) = n1.user(&uniq("la")).await;
        let (b, tb) = n1.user(&uniq("lb")).await;
        n1.befriend((a, &ta), (b, &tb)).await;
        // b's phone has been here before and is now away.
        assert!(synced(n2, &tb, "phone").await.is_empty());

        let first = send(&n1, &ta, json!({"to_user_id": b, "type": "text", "text": "secret plans"})).await;
        let second = send(&n1, &ta, json!({"to_user_id": b, "type": "text", "text": "see you at 8"})).await;
        let (m1, m2) = (first["id"].as_i64().unwrap(), second["id"].as_i64().unwrap());
        let r = n1.post(&format!("/api/messages/{m1}/recall"), Some(&ta), json!(null)).await;
        assert_eq!((r.status, &r.body["type"], &r.body["target_id"]), (StatusCode::OK, &json!("recall"), &json!(m1)), "{}", r.body);
        let r = n1.put(&format!("/api/messages/{m2}"), &ta, json!({"text": "see you at 9"})).await;
        assert_eq!((r.status, &r.body["type"], &r.body["text"]), (StatusCode::OK, &json!("edit"), &json!("see you at 9")), "{}", r.body);
        assert_eq!(react(&n1, &ta, m2, "👍").await.status, StatusCode::OK);
        let r = react(n2, &tb, m2, "❤️").await;
        assert_eq!((r.status, &r.body["reaction"]), (StatusCode::OK, &json!({"emoji": "❤️", "op": "add"})), "{}", r.body);

        let check = |got: &[Value]| {
            let kinds: Vec<&str> = got.iter().map(|m| m["type"].as_str().unwrap()).collect();
            assert_eq!(kinds, ["text", "text", "recall", "edit", "reaction", "reaction"], "{got:?}");
            assert_eq!(got.iter().map(|m| m["seq"].as_i64().unwrap()).collect::<Vec<_>>(), (1..=6).collect::<Vec<_>>());
            let ids: HashSet<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
            assert_eq!(ids.len(), 6, "each once");
            assert!(!serde_json::to_string(got).unwrap().contains("secret"), "the recalled text is served nowhere");
            assert_eq!((got[0].get("text"), got[0]["recalled_by"].as_i64()), (None, Some(a)));
            assert_eq!((got[1]["text"].as_str(), got[1]["edited_at"].is_string()), (Some("see you at 9"), true));
            let reactions: Vec<&str> = got[1]["reactions"].as_array().unwrap().iter().map(|r| r["emoji"].as_str().unwrap()).collect();
            assert_eq!(reactions, ["👍", "❤️"]);
        };
        check(&synced(n2, &tb, "phone").await);
        let history = n2.get(&format!("/api/messages/history?conversation_id={}", first["conversation_id"].as_str().unwrap()), &tb).await;
        check(history.body["messages"].as_array().unwrap());

        if env.is_cluster() {
            // Redis loses everything: the database answers, the same way.
            let mut redis = env.redis().await;
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", env.redis_prefix)).query_async(&mut redis).await.unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await.unwrap();
            }
            check(&synced(&n1, &tb, "tablet").await);
        }
    }

    async fn recall_follows_the_window_and_the_roles_and_refuses_with_a_code_each(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_RECALL_WINDOW", "1s")]).await;
        let (a, ta) = node.user(&uniq("ra")).await;
        let (b, tb) = node.user(&uniq("rb")).await;
        let (c, tc) = node.user(&uniq("rc")).await;
        let (_, stranger) = node.user(&uniq("rs")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        let group = group_of(&node, &ta, &[b, c]).await;
        let recall = |id: i64, token: String| {
            let node = &node;
            async move { node.post(&format!("/api/messages/{id}/recall"), Some(&token), json!(null)).await }
        };
        let direct = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "oops"})).await["id"].as_i64().unwrap();
        let by_b = send(&node, &tb, json!({"group_id": group, "type": "text", "text": "b says"})).await["id"].as_i64().unwrap();
        let by_c = send(&node, &tc, json!({"group_id": group, "type": "text", "text": "c says"})).await["id"].as_i64().unwrap();
        let quick = send(&node, &tc, json!({"group_id": group, "type": "text", "text": "quick"})).await["id"].as_i64().unwrap();

        let r = recall(direct, tb.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "the recipient may not recall");
        let r = recall(by_b, tc.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"), "a plain member may not recall another's");
        let r = recall(direct, stranger.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "message_not_found"), "a stranger learns nothing");
        let r = recall(i64::from(i32::MAX), ta.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "message_not_found"));
        let r = recall(quick, tc.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "the sender within the window: {}", r.body);
        let event = r.body["id"].as_i64().unwrap();
        let r = recall(quick, tc.clone()).await;
        assert_eq!((r.status, r.body["id"].as_i64()), (StatusCode::OK, Some(event)), "a retry gets the same recall");
        let r = recall(quick, ta.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "already_recalled"), "someone else's second recall");
        let r = recall(event, tc.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "target_is_event"));

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = recall(direct, ta.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "recall_window_passed"));
        let r = recall(by_c, tc.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "recall_window_passed"));
        // The owner, and an admin, any time.
        let r = recall(by_c, ta.clone()).await;
        assert_eq!((r.status, r.body["recalled_by"].as_i64(), r.body["from_user_id"].as_i64()), (StatusCode::OK, None, Some(a)), "{}", r.body);
        let r = node.put(&format!("/api/groups/{group}/members/{b}/role"), &ta, json!({"role": "admin"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let late = send(&node, &tc, json!({"group_id": group, "type": "text", "text": "late"})).await["id"].as_i64().unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(recall(late, tb.clone()).await.status, StatusCode::OK, "an admin recalls a member's message");
        let page = node.get(&format!("/api/messages/history?conversation_id=g:{group}"), &tc).await;
        let recalled: Vec<i64> = page.body["messages"].as_array().unwrap().iter()
            .filter(|m| m["recalled_at"].is_string()).map(|m| m["id"].as_i64().unwrap()).collect();
        assert_eq!(recalled, [by_c, quick, late]);
    }

    async fn a_recalled_image_cannot_be_downloaded_and_a_reply_quoting_it_goes_blank(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ia")).await;
        let (b, tb) = node.user(&uniq("ib")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let file = crate::media::upload(&node, &ta, "cat.png", "image/png", &crate::media::png(2000)).await;
        let file_id = file["id"].as_i64().unwrap();
        let image = send(&node, &ta, json!({"to_user_id": b, "type": "image", "file_id": file_id, "text": "my cat"})).await;
        let image_id = image["id"].as_i64().unwrap();
        assert_eq!(crate::media::download(&node, Some(&tb), file_id, None).await.status(), StatusCode::OK);
        let reply = send(&node, &tb, json!({"to_user_id": a, "type": "text", "text": "cute!", "reply_to_id": image_id})).await;
        assert_eq!(reply["reply_to"], json!({"id": image_id, "seq": 1, "from_user_id": a, "type": "image", "text": "my cat", "recalled": false}));

        let r = node.post(&format!("/api/messages/{image_id}/recall"), Some(&ta), json!(null)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        for token in [&ta, &tb] {
            let got = crate::media::download(&node, Some(token), file_id, None).await;
            assert_eq!(got.status(), StatusCode::NOT_FOUND, "nobody reads a recalled file");
        }
        let page = node.get(&format!("/api/messages/history?conversation_id={}", image["conversation_id"].as_str().unwrap()), &tb).await;
        let ms = page.body["messages"].as_array().unwrap();
        assert_eq!((ms[0].get("file"), ms[0].get("text")), (None, None), "{}", ms[0]);
        assert_eq!(ms[1]["reply_to"], json!({"id": image_id, "seq": 1, "from_user_id": a, "type": "image", "recalled": true}));
        // A reply to it now, or to an event, or to another conversation's message, is refused.
        for target in [image_id, ms[2]["id"].as_i64().unwrap(), i64::from(i32::MAX)] {
            let r = node.post("/api/messages/send", Some(&tb), json!({"to_user_id": a, "type": "text", "text": "re", "reply_to_id": target})).await;
            assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "invalid_reply"), "{}", r.body);
        }
    }

    async fn reactions_are_idempotent_per_user_and_emoji_and_only_single_emoji_are_accepted(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("xa")).await;
        let (b, tb) = node.user(&uniq("xb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let m = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "hi"})).await;
        let id = m["id"].as_i64().unwrap();
        let first = react(&node, &tb, id, "👍").await;
        let again = react(&node, &tb, id, "👍").await;
        assert_eq!((first.status, again.status), (StatusCode::OK, StatusCode::OK));
        assert_eq!(first.body["id"], again.body["id"], "a repeat returns the same event");
        let gone = node.delete(&format!("/api/messages/{id}/reactions/{}", path_emoji("👍")), &tb).await;
        assert_eq!((gone.status, &gone.body["reaction"]["op"]), (StatusCode::OK, &json!("remove")), "{}", gone.body);
        let gone_again = node.delete(&format!("/api/messages/{id}/reactions/{}", path_emoji("👍")), &tb).await;
        assert_eq!(gone_again.body["id"], gone.body["id"]);
        let never = node.delete(&format!("/api/messages/{id}/reactions/{}", path_emoji("🎉")), &tb).await;
        assert_eq!((never.status, never.code()), (StatusCode::NOT_FOUND, "reaction_not_found"));
        for bad in ["👍👍", "ok", "a", "中", "%20"] {
            let r = node.put(&format!("/api/messages/{id}/reactions/{}", if bad == "%20" { bad.to_string() } else { path_emoji(bad) }), &tb, json!(null)).await;
            assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invalid_emoji"), "{bad}: {}", r.body);
        }
        // At most 20 distinct emoji on one message; more of an emoji already there is fine.
        let emoji = ["😀", "😁", "😂", "🤣", "😃", "😄", "😅", "😆", "😉", "😊", "😋", "😎", "😍", "😘", "🥰", "😗", "😙", "🥲", "😚", "🙂"];
        for e in emoji {
            assert_eq!(react(&node, &tb, id, e).await.status, StatusCode::OK, "{e}");
        }
        let r = react(&node, &tb, id, "🙃").await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "too_many_reactions"));
        assert_eq!(react(&node, &ta, id, "😀").await.status, StatusCode::OK);
        let page = node.get(&format!("/api/messages/history?conversation_id={}", m["conversation_id"].as_str().unwrap()), &ta).await;
        let reactions = page.body["messages"][0]["reactions"].as_array().unwrap().clone();
        assert_eq!(reactions.len(), 20);
        assert_eq!(reactions[0], json!({"emoji": "😀", "user_ids": [b, a]}));
        // A reaction to an event is refused.
        let event = page.body["messages"][1]["id"].as_i64().unwrap();
        let r = react(&node, &ta, event, "😀").await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "target_is_event"));
    }

    async fn only_the_sender_edits_their_text_within_the_window(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_EDIT_WINDOW", "2s")]).await;
        let (a, ta) = node.user(&uniq("ea")).await;
        let (b, tb) = node.user(&uniq("eb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let m = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "helo"})).await;
        let id = m["id"].as_i64().unwrap();
        let path = format!("/api/messages/{id}");
        let edit = |token: &String, body: Value| {
            let (node, path, token) = (&node, &path, token.clone());
            async move { node.put(path, &token, body).await }
        };
        let r = edit(&tb, json!({"text": "hijack"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
        for bad in [json!({"text": ""}), json!({"text": "\u{200B} "}), json!({"text": "a\u{0}b"})] {
            let r = edit(&ta, bad.clone()).await;
            assert!(r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::BAD_REQUEST, "{bad}: {} {}", r.status, r.body);
        }
        let r = edit(&ta, json!({"text": "hello", "client_msg_id": "e-1"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let again = edit(&ta, json!({"text": "hello", "client_msg_id": "e-1"})).await;
        assert_eq!(again.body["id"], r.body["id"], "an edit is idempotent by client_msg_id");
        let page = node.get(&format!("/api/messages/history?conversation_id={}", m["conversation_id"].as_str().unwrap()), &tb).await;
        assert_eq!(page.body["messages"].as_array().unwrap().len(), 2, "one edit event");
        assert_eq!(page.body["messages"][0]["text"], "hello");
        let file = crate::media::upload(&node, &ta, "p.png", "image/png", &crate::media::png(1000)).await;
        let image = send(&node, &ta, json!({"to_user_id": b, "type": "image", "file_id": file["id"]})).await;
        let r = node.put(&format!("/api/messages/{}", image["id"]), &ta, json!({"text": "caption"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "not_editable"));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let r = edit(&ta, json!({"text": "too late"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "edit_window_passed"));
    }

    async fn fifty_concurrent_reactions_edits_and_recalls_on_one_conversation_leave_seq_gapless(backend) {
        let env = TestEnv::new(backend).await;
        let n1 = env.node().await;
        let n2 = if env.is_cluster() { Some(env.node().await) } else { None };
        let n2 = n2.as_ref().unwrap_or(&n1);
        let (a, ta) = n1.user(&uniq("ca")).await;
        let (b, tb) = n1.user(&uniq("cb")).await;
        let (c, tc) = n1.user(&uniq("cc")).await;
        n1.befriend((a, &ta), (b, &tb)).await;
        n1.befriend((a, &ta), (c, &tc)).await;
        let group = group_of(&n1, &ta, &[b, c]).await;
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(send(&n1, &ta, json!({"group_id": group, "type": "text", "text": format!("m{i}")})).await["id"].as_i64().unwrap());
        }
        let emoji = ["👍", "❤️", "😂", "🎉", "🙏"];
        let mut tasks = Vec::new();
        for i in 0..50usize {
            let node = if i % 2 == 0 { &n1 } else { n2 };
            let (token, id) = match i % 3 { 0 => (&ta, ids[i % 10]), 1 => (&tb, ids[i % 10]), _ => (&tc, ids[i % 10]) };
            let ta = &ta;
            tasks.push(async move {
                match i % 5 {
                    0 => node.post(&format!("/api/messages/{id}/recall"), Some(ta), json!(null)).await.status,
                    1 => node.put(&format!("/api/messages/{id}"), ta, json!({"text": format!("edit {i}")})).await.status,
                    _ => react(node, token, id, emoji[i % 5]).await.status,
                }
            });
        }
        let statuses = futures_util::future::join_all(tasks).await;
        assert!(statuses.iter().all(|s| s.is_success() || *s == StatusCode::CONFLICT), "{statuses:?}");
        let mut seqs = Vec::new();
        let mut before = None::<i64>;
        loop {
            let url = match before {
                Some(s) => format!("/api/messages/history?conversation_id=g:{group}&limit=100&before_seq={s}"),
                None => format!("/api/messages/history?conversation_id=g:{group}&limit=100"),
            };
            let page = n2.get(&url, &tc).await;
            let ms = page.body["messages"].as_array().unwrap();
            seqs.splice(0..0, ms.iter().map(|m| m["seq"].as_i64().unwrap()));
            if page.body["has_more"] != true { break; }
            before = ms.first().and_then(|m| m["seq"].as_i64());
        }
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "gapless");
        assert!(seqs.len() > 20, "the events took seqs: {}", seqs.len());
    }

    async fn unread_counts_count_content_from_others_through_events_recalls_and_delete_for_me(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ua")).await;
        let (b, tb) = node.user(&uniq("ub")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let m1 = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "one"})).await;
        let conv = m1["conversation_id"].as_str().unwrap().to_string();
        let m2 = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "two"})).await;
        let m3 = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "three"})).await;
        let list = |t: String| { let node = &node; async move { node.get("/api/conversations", &t).await.body } };
        assert_eq!(unread(&list(tb.clone()).await, &conv), (3, false));
        assert_eq!(unread(&list(ta.clone()).await, &conv), (0, false), "one's own messages never count");
        // b reacting and a editing add events, not unread messages.
        react(&node, &tb, m1["id"].as_i64().unwrap(), "👍").await;
        node.put(&format!("/api/messages/{}", m2["id"]), &ta, json!({"text": "two!"})).await;
        assert_eq!(unread(&list(tb.clone()).await, &conv), (3, false));
        assert_eq!(unread(&list(ta.clone()).await, &conv), (0, false), "b's reaction is not unread for a");
        // A recalled one stops counting; so does one b deleted for themselves.
        node.post(&format!("/api/messages/{}/recall", m3["id"]), Some(&ta), json!(null)).await;
        assert_eq!(unread(&list(tb.clone()).await, &conv), (2, false));
        let mut other_device = node.ws(&tb, "laptop").await;
        other_device.recv_type("sync").await;
        let r = node.delete(&format!("/api/messages/{}", m1["id"]), &tb).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let hidden = other_device.recv_type("messages_hidden").await;
        assert_eq!(hidden["message_ids"], json!([m1["id"]]));
        assert_eq!(unread(&list(tb.clone()).await, &conv), (1, false));
        let page = node.get(&format!("/api/messages/history?conversation_id={conv}"), &tb).await;
        assert!(page.body["messages"].as_array().unwrap().iter().all(|m| m["id"] != m1["id"]), "gone from b's history");
        let page = node.get(&format!("/api/messages/history?conversation_id={conv}"), &ta).await;
        assert!(page.body["messages"].as_array().unwrap().iter().any(|m| m["id"] == m1["id"]), "still in a's");
        let r = node.delete(&format!("/api/messages/{}", m1["id"]), &tb).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "deleting it again changes nothing and succeeds");
        // Reading up to the end clears it.
        let last = list(tb.clone()).await.as_array().unwrap()[0]["last_seq"].as_i64().unwrap();
        node.post("/api/messages/read", Some(&tb), json!({"conversation_id": conv, "seq": last})).await;
        assert_eq!(unread(&list(tb.clone()).await, &conv), (0, false));
        // The preview is the last thing worth showing: the recall, not the reaction or edit after it.
        let preview = list(ta.clone()).await.as_array().unwrap()[0]["last_message"].clone();
        assert_eq!(preview["type"], "recall", "{preview}");
    }

    async fn mentions_set_and_clear_mention_unread_and_only_members_can_be_mentioned(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ma")).await;
        let (b, tb) = node.user(&uniq("mb")).await;
        let (c, tc) = node.user(&uniq("mc")).await;
        let (outsider, _) = node.user(&uniq("mo")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        let group = group_of(&node, &ta, &[b, c]).await;
        let conv = format!("g:{group}");
        let m = send(&node, &tc, json!({"group_id": group, "type": "text", "text": "@b look", "mention_user_ids": [b]})).await;
        assert_eq!(m["mentions"], json!({"user_ids": [b], "all": false}));
        assert_eq!(unread(&node.get("/api/conversations", &tb).await.body, &conv), (1, true));
        assert_eq!(unread(&node.get("/api/conversations", &ta).await.body, &conv), (1, false));
        node.post("/api/messages/read", Some(&tb), json!({"conversation_id": conv, "seq": m["seq"]})).await;
        assert_eq!(unread(&node.get("/api/conversations", &tb).await.body, &conv), (0, false));
        let r = node.post("/api/messages/send", Some(&tc), json!({"group_id": group, "type": "text", "text": "@all", "mention_all": true})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "insufficient_role"), "a plain member cannot mention everyone");
        send(&node, &ta, json!({"group_id": group, "type": "text", "text": "@all meeting", "mention_all": true})).await;
        assert_eq!(unread(&node.get("/api/conversations", &tb).await.body, &conv), (1, true));
        assert_eq!(unread(&node.get("/api/conversations", &tc).await.body, &conv), (1, true));
        for (body, code) in [
            (json!({"group_id": group, "type": "text", "text": "x", "mention_user_ids": [outsider]}), "invalid_mention"),
            (json!({"to_user_id": b, "type": "text", "text": "x", "mention_user_ids": [b]}), "invalid_mention"),
        ] {
            let r = node.post("/api/messages/send", Some(&ta), body).await;
            assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, code), "{}", r.body);
        }
        let r = node.post("/api/messages/send", Some(&ta), json!({"group_id": group, "type": "text", "text": "x", "mention_user_ids": (0..101).collect::<Vec<i64>>()})).await;
        assert!(r.status.is_client_error(), "{}", r.status);
        // The WebSocket send frame takes the same fields.
        let mut ws = node.ws(&tc, "phone").await;
        ws.recv_type("sync").await;
        ws.send(json!({"type": "send", "message": {"group_id": group, "type": "text", "text": "re @b", "mention_user_ids": [b], "reply_to_id": m["id"], "client_msg_id": "w-1"}})).await;
        let sent = ws.recv_type("sent").await;
        assert_eq!(sent["message"]["mentions"]["user_ids"], json!([b]), "{sent}");
        assert_eq!(sent["message"]["reply_to"]["id"], m["id"]);
    }

    async fn a_forwarded_image_is_readable_by_the_new_group_and_still_not_by_a_stranger(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("fa")).await;
        let (b, tb) = node.user(&uniq("fb")).await;
        let (c, tc) = node.user(&uniq("fc")).await;
        let (_, stranger) = node.user(&uniq("fs")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((b, &tb), (c, &tc)).await;
        let file = crate::media::upload(&node, &ta, "cat.png", "image/png", &crate::media::png(1500)).await;
        let file_id = file["id"].as_i64().unwrap();
        let image = send(&node, &ta, json!({"to_user_id": b, "type": "image", "file_id": file_id, "text": "cat"})).await;
        let note = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "isn't it cute"})).await;
        assert_eq!(crate::media::download(&node, Some(&tc), file_id, None).await.status(), StatusCode::FORBIDDEN);
        // b, who did not upload it, forwards it into a group with c.
        let group = group_of(&node, &tb, &[c]).await;
        let r = node.post("/api/messages/forward", Some(&tb), json!({"message_ids": [note["id"], image["id"]], "group_id": group})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let sent = r.body.as_array().unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!((&sent[0]["type"], &sent[0]["text"], &sent[0]["forwarded"]), (&json!("image"), &json!("cat"), &json!(true)), "in seq order");
        assert_eq!((&sent[1]["text"], sent[1]["from_user_id"].as_i64()), (&json!("isn't it cute"), Some(b)));
        assert_eq!(sent[0]["file"]["id"], file_id);
        assert_eq!(crate::media::download(&node, Some(&tc), file_id, None).await.status(), StatusCode::OK, "shared by the forward");
        assert_eq!(crate::media::download(&node, Some(&stranger), file_id, None).await.status(), StatusCode::FORBIDDEN);

        // Merged: one message with both as items.
        let r = node.post("/api/messages/forward", Some(&tb), json!({"message_ids": [image["id"], note["id"]], "to_user_id": c, "merged": true})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let merged = &r.body[0];
        assert_eq!((&merged["type"], merged["items"].as_array().map(Vec::len)), (&json!("merged"), Some(2)), "{merged}");
        assert_eq!(merged["items"][0]["file"]["id"], file_id);
        assert_eq!(merged["items"][1]["text"], "isn't it cute");
        let page = node.get(&format!("/api/messages/history?conversation_id={}", merged["conversation_id"].as_str().unwrap()), &tc).await;
        assert_eq!(page.body["messages"][0]["items"], merged["items"]);

        // What cannot be forwarded.
        for (body, status, code) in [
            (json!({"message_ids": [image["id"]], "to_user_id": a}), StatusCode::NOT_FOUND, "message_not_found"),
            (json!({"message_ids": (1..=101).collect::<Vec<i64>>(), "to_user_id": b}), StatusCode::BAD_REQUEST, ""),
            (json!({"message_ids": [], "to_user_id": b}), StatusCode::BAD_REQUEST, ""),
            (json!({"message_ids": [image["id"], sent[0]["id"]], "to_user_id": a}), StatusCode::CONFLICT, "invalid_forward"),
            (json!({"message_ids": [image["id"]], "to_user_id": stranger_id(&node, &stranger).await}), StatusCode::FORBIDDEN, "not_friends"),
        ] {
            let token = if code == "message_not_found" { &tc } else { &tb };
            let r = node.post("/api/messages/forward", Some(token), body.clone()).await;
            assert!(r.status == status || (status == StatusCode::BAD_REQUEST && r.status == StatusCode::UNPROCESSABLE_ENTITY), "{body}: {} {}", r.status, r.body);
            if !code.is_empty() {
                assert_eq!(r.code(), code, "{body}");
            }
        }
    }

    /// Found by a hostile run: a reply's target was checked before the sender's right to write, so a stranger
    /// could tell a group's live message ids from recalled ones.
    async fn a_reply_from_someone_who_may_not_write_reveals_nothing_of_what_it_quotes(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("pa")).await;
        let (b, tb) = node.user(&uniq("pb")).await;
        let (_, outsider) = node.user(&uniq("po")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let group = group_of(&node, &ta, &[b]).await;
        let live = send(&node, &ta, json!({"group_id": group, "type": "text", "text": "live"})).await["id"].clone();
        let gone = send(&node, &ta, json!({"group_id": group, "type": "text", "text": "gone"})).await["id"].clone();
        node.post(&format!("/api/messages/{gone}/recall"), Some(&ta), json!(null)).await;
        for target in [&live, &gone, &json!(i64::from(i32::MAX))] {
            let r = node.post("/api/messages/send", Some(&outsider), json!({"group_id": group, "type": "text", "text": "x", "reply_to_id": target})).await;
            assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"), "{target}: {}", r.body);
            let r = node.post("/api/messages/send", Some(&outsider), json!({"to_user_id": a, "type": "text", "text": "x", "reply_to_id": target})).await;
            assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_friends"), "{target}: {}", r.body);
        }
        node.delete(&format!("/api/groups/{group}/members/{b}"), &tb).await;
        for target in [&live, &gone] {
            let r = node.post("/api/messages/send", Some(&tb), json!({"group_id": group, "type": "text", "text": "x", "reply_to_id": target})).await;
            assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_member"), "{target}: {}", r.body);
        }
    }

    /// Found by a hostile run: an edit to a message sent before a member joined, or one they deleted for
    /// themselves, carried its new text to them; and a reply could quote a message one had deleted.
    async fn an_edit_shows_its_text_only_to_those_who_can_see_the_message_it_changes(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ra")).await;
        let (b, tb) = node.user(&uniq("rb")).await;
        let (c, tc) = node.user(&uniq("rc")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        let group = group_of(&node, &ta, &[b]).await;
        let early = send(&node, &ta, json!({"group_id": group, "type": "text", "text": "before c"})).await["id"].as_i64().unwrap();
        node.post(&format!("/api/groups/{group}/members"), Some(&ta), json!({"user_ids": [c]})).await;
        let mut c_phone = node.ws(&tc, "phone").await;
        c_phone.recv_type("sync").await;
        let r = node.put(&format!("/api/messages/{early}"), &ta, json!({"text": "SECRET edit"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // Live, as a `message` frame or (when the device is not yet sure of its place) a `sync` batch.
        let live = loop {
            let f = c_phone.recv().await;
            match f["type"].as_str() {
                Some("message") => break f["message"].clone(),
                Some("sync") if !f["messages"].as_array().unwrap().is_empty() => break f["messages"][0].clone(),
                _ => {}
            }
        };
        assert_eq!((&live["type"], live.get("text")), (&json!("edit"), None), "{live}");
        c_phone.ack(&format!("g:{group}"), live["seq"].as_i64().unwrap()).await;
        node.put(&format!("/api/messages/{early}"), &ta, json!({"text": "SECRET again"})).await;
        let live = c_phone.recv_type("message").await;
        assert_eq!((&live["message"]["type"], live["message"].get("text")), (&json!("edit"), None), "{live}");
        let page = node.get(&format!("/api/messages/history?conversation_id=g:{group}"), &tc).await;
        assert!(!page.body.to_string().contains("SECRET"), "{}", page.body);
        assert!(synced(&node, &tc, "tablet").await.iter().all(|m| m.get("text").is_none()));
        let page = node.get(&format!("/api/messages/history?conversation_id=g:{group}"), &tb).await;
        assert!(page.body.to_string().contains("SECRET edit"), "b saw the message and sees its edit");
        // b deletes it for themselves: its later edits are blank for b.
        assert_eq!(node.delete(&format!("/api/messages/{early}"), &tb).await.status, StatusCode::NO_CONTENT);
        node.put(&format!("/api/messages/{early}"), &ta, json!({"text": "SECOND edit"})).await;
        let page = node.get(&format!("/api/messages/history?conversation_id=g:{group}"), &tb).await;
        assert!(!page.body.to_string().contains("SECOND"), "{}", page.body);
        let r = node.post("/api/messages/send", Some(&tb), json!({"group_id": group, "type": "text", "text": "re", "reply_to_id": early})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "invalid_reply"));
    }

    /// Found by a hostile run: sends and changes shared one client_msg_id space, so a retry could return another
    /// operation's result and silently drop this one; and a repeated recall or delete failed though it had worked.
    async fn a_client_msg_id_names_one_operation_and_repeated_recalls_and_deletes_succeed(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ia")).await;
        let (b, tb) = node.user(&uniq("ib")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let m1 = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "one", "client_msg_id": "X1"})).await["id"].as_i64().unwrap();
        let m2 = send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "two"})).await["id"].as_i64().unwrap();
        let r = node.put(&format!("/api/messages/{m2}"), &ta, json!({"text": "new", "client_msg_id": "X1"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "client_msg_id_reused"), "{}", r.body);
        assert_eq!(node.put(&format!("/api/messages/{m1}"), &ta, json!({"text": "n1", "client_msg_id": "E"})).await.status, StatusCode::OK);
        let r = node.put(&format!("/api/messages/{m2}"), &ta, json!({"text": "n2", "client_msg_id": "E"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "client_msg_id_reused"), "{}", r.body);
        let r = node.post("/api/messages/send", Some(&ta), json!({"to_user_id": b, "type": "text", "text": "three", "client_msg_id": "E"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "client_msg_id_reused"), "{}", r.body);
        let first = node.post(&format!("/api/messages/{m2}/recall"), Some(&ta), json!(null)).await;
        let again = node.post(&format!("/api/messages/{m2}/recall"), Some(&ta), json!(null)).await;
        assert_eq!((first.status, again.status), (StatusCode::OK, StatusCode::OK), "{}", again.body);
        assert_eq!(first.body["id"], again.body["id"]);
        for _ in 0..2 {
            assert_eq!(node.delete(&format!("/api/messages/{m1}"), &tb).await.status, StatusCode::NO_CONTENT);
        }
    }

    /// Found by a hostile run: `messages_hidden` reached only the devices online at the time.
    async fn a_device_that_was_away_hears_of_the_messages_deleted_for_me_meanwhile(backend) {
        let env = TestEnv::new(backend).await;
        let n1 = env.node().await;
        let n2 = if env.is_cluster() { Some(env.node().await) } else { None };
        let n2 = n2.as_ref().unwrap_or(&n1);
        let (a, ta) = n1.user(&uniq("ha")).await;
        let (b, tb) = n1.user(&uniq("hb")).await;
        n1.befriend((a, &ta), (b, &tb)).await;
        let m1 = send(&n1, &ta, json!({"to_user_id": b, "type": "text", "text": "one"})).await;
        let m2 = send(&n1, &ta, json!({"to_user_id": b, "type": "text", "text": "two"})).await;
        let mut tablet = n2.ws(&tb, "tablet").await;
        let got = tablet.recv_type("sync").await;
        assert_eq!(got["messages"].as_array().unwrap().len(), 2);
        tablet.ack(m1["conversation_id"].as_str().unwrap(), 2).await;
        drop(tablet);
        for m in [&m2, &m1] {
            assert_eq!(n1.delete(&format!("/api/messages/{}", m["id"]), &tb).await.status, StatusCode::NO_CONTENT);
        }
        let mut tablet = n2.ws(&tb, "tablet").await;
        let told = tablet.recv_type("messages_hidden").await;
        assert_eq!(told["message_ids"], json!([m2["id"], m1["id"]]), "{told}");
        drop(tablet);
        // Told once: the next visit brings nothing new.
        let mut tablet = n2.ws(&tb, "tablet").await;
        let next = tablet.recv().await;
        assert_ne!(next["type"], "messages_hidden", "{next}");
    }
}

async fn stranger_id(node: &TestNode, token: &str) -> i64 {
    node.get("/api/user/profile", token).await.body["id"].as_i64().unwrap()
}
