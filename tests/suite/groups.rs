//! Groups over real HTTP and WebSockets on both backend sets: every permission row, membership semantics,
//! fan-out to a large group across nodes, and races between membership changes and sends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{uniq, TestEnv, TestNode};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `n` users who are all friends of the first; returns (id, token) pairs.
async fn circle(node: &TestNode, n: usize) -> Vec<(i64, String)> {
    let mut users = Vec::new();
    for i in 0..n {
        users.push(node.user(&uniq(&format!("g{i}_"))).await);
    }
    for u in &users[1..] {
        node.befriend((users[0].0, &users[0].1), (u.0, &u.1)).await;
    }
    users
}

fn seqs(ms: &[Value]) -> Vec<i64> {
    ms.iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

async fn send_group(node: &TestNode, token: &str, group: i64, text: &str) -> crate::common::Reply {
    node.post("/api/messages/send", Some(token), json!({"group_id": group, "type": "text", "text": text})).await
}

backend_tests! {
    async fn owners_admins_and_members_have_exactly_their_rights(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let u = circle(&node, 6).await;
        let (owner, admin, m1, m2, m3, stranger) = (&u[0], &u[1], &u[2], &u[3], &u[4], &u[5]);
        // The admin is friends with m3 as well (to add), not with the stranger.
        node.befriend((admin.0, &admin.1), (m3.0, &m3.1)).await;

        let bad = node.post("/api/groups", Some(&owner.1), json!({"name": " "})).await;
        assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_group_name"));
        let bad = node.post("/api/groups", Some(&owner.1), json!({"name": "x".repeat(65)})).await;
        assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_group_name"));
        let bad = node.post("/api/groups", Some(&admin.1), json!({"name": "g", "member_ids": [stranger.0]})).await;
        assert_eq!((bad.status, bad.code()), (StatusCode::FORBIDDEN, "not_friends"));

        let g = node.post("/api/groups", Some(&owner.1), json!({"name": "Team", "member_ids": [admin.0, m1.0, m2.0, m1.0]})).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
        let gid = g.body["id"].as_i64().unwrap();
        assert_eq!((g.body["owner_id"].as_i64(), g.body["create_user_id"].as_i64()), (Some(owner.0), Some(owner.0)));
        assert_eq!(g.body["members"].as_array().unwrap().len(), 4);
        assert_eq!(g.body["members"][0]["role"], "owner");
        let path = |s: &str| format!("/api/groups/{gid}{s}");

        // Roles: only the owner sets them.
        let r = node.put(&path(&format!("/members/{}/role", admin.0)), &m1.1, json!({"role": "admin"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_owner"));
        let r = node.put(&path(&format!("/members/{}/role", admin.0)), &owner.1, json!({"role": "admin"})).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body["members"].as_array().unwrap().iter().any(|m| m["user_id"] == admin.0 && m["role"] == "admin"));
        let r = node.put(&path(&format!("/members/{}/role", owner.0)), &owner.1, json!({"role": "member"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "cannot_change_owner"));
        let r = node.put(&path(&format!("/members/{}/role", m1.0)), &owner.1, json!({"role": "owner"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"), "only admin and member can be given");
        let r = node.put(&path(&format!("/members/{}/role", m1.0)), &owner.1, json!({"role": "king"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"));
        let r = node.put(&path(&format!("/members/{}/role", stranger.0)), &owner.1, json!({"role": "admin"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "member_not_found"));

        // Rename: owner or admin.
        let r = node.put(&path(""), &m1.1, json!({"name": "Mine"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_admin"));
        let r = node.put(&path(""), &admin.1, json!({"name": "Renamed"})).await;
        assert_eq!((r.status, r.body["name"].as_str()), (StatusCode::OK, Some("Renamed")));

        // Add: owner or admin, friends of the adder.
        let r = node.post(&path("/members"), Some(&m1.1), json!({"user_ids": [m3.0]})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_admin"));
        let r = node.post(&path("/members"), Some(&admin.1), json!({"user_ids": [stranger.0]})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_friends"));
        let r = node.post(&path("/members"), Some(&admin.1), json!({"user_ids": []})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"), "the schema's minItems");
        let r = node.post(&path("/members"), Some(&admin.1), json!({"user_ids": [admin.0]})).await;
        assert_eq!(r.status, StatusCode::OK, "the caller is in already: nothing changes");
        let r = node.post(&path("/members"), Some(&admin.1), json!({"user_ids": [m3.0]})).await;
        assert_eq!((r.status, r.body["members"].as_array().unwrap().len()), (StatusCode::OK, 5));

        // Visibility: members only; a stranger cannot even tell the group exists.
        assert_eq!(node.get(&path(""), &m3.1).await.status, StatusCode::OK);
        let r = node.get(&path(""), &stranger.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"));
        let r = node.get("/api/groups/987654", &owner.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"));
        let r = node.put(&path(""), &stranger.1, json!({"name": "x"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"));
        assert_eq!(node.get("/api/groups", &m3.1).await.body[0]["id"], gid);

        // Remove: the admin removes plain members only, members remove nobody, the owner anyone else.
        let r = node.delete(&path(&format!("/members/{}", m2.0)), &m1.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_admin"));
        let r = node.delete(&path(&format!("/members/{}", owner.0)), &admin.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "insufficient_role"));
        let r = node.delete(&path(&format!("/members/{}", m2.0)), &admin.1).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = node.delete(&path(&format!("/members/{}", m2.0)), &admin.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "member_not_found"));
        let r = node.delete(&path(&format!("/members/{}", admin.0)), &owner.1).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "the owner removes an admin");
        // Leave: anyone but the owner.
        let r = node.delete(&path(&format!("/members/{}", m3.0)), &m3.1).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        let r = node.delete(&path(&format!("/members/{}", owner.0)), &owner.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "owner_must_transfer"));

        // Transfer: owner only, to a member; the old owner becomes an admin and may then leave.
        let r = node.put(&path("/owner"), &m1.1, json!({"user_id": m1.0})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_owner"));
        let r = node.put(&path("/owner"), &owner.1, json!({"user_id": stranger.0})).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "member_not_found"));
        let r = node.put(&path("/owner"), &owner.1, json!({"user_id": m1.0})).await;
        assert_eq!((r.status, r.body["owner_id"].as_i64()), (StatusCode::OK, Some(m1.0)));
        assert!(r.body["members"].as_array().unwrap().iter().any(|m| m["user_id"] == owner.0 && m["role"] == "admin"));
        let r = node.delete(&gid_path(gid), &owner.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_owner"), "dissolving is the owner's");
        assert_eq!(node.delete(&path(&format!("/members/{}", owner.0)), &owner.1).await.status, StatusCode::NO_CONTENT);

        // Dissolve: the group refuses everything and leaves every list.
        assert_eq!(send_group(&node, &m1.1, gid, "last words").await.status, StatusCode::CREATED);
        assert_eq!(node.delete(&gid_path(gid), &m1.1).await.status, StatusCode::NO_CONTENT);
        let r = send_group(&node, &m1.1, gid, "anyone?").await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"));
        let r = node.get(&format!("/api/messages/history?conversation_id=g:{gid}"), &m1.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"));
        assert!(node.get("/api/groups", &m1.1).await.body.as_array().unwrap().is_empty());
        let convs = node.get("/api/conversations", &m1.1).await;
        assert!(convs.body.as_array().unwrap().iter().all(|c| c["conversation_id"] != format!("g:{gid}").as_str()));
    }

    async fn group_messages_reach_members_and_removal_is_immediate(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let u = circle(&node, 4).await;
        let (owner, a, b, outsider) = (&u[0], &u[1], &u[2], &u[3]);
        let g = node.post("/api/groups", Some(&owner.1), json!({"name": "G", "member_ids": [a.0, b.0]})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let conv = format!("g:{gid}");
        let mut a_ws = node.ws(&a.1, "d").await;
        let mut b_ws = node.ws(&b.1, "d").await;
        a_ws.recv_type("sync").await;
        b_ws.recv_type("sync").await;

        // Someone who never belonged cannot tell the group from one that does not exist.
        let r = send_group(&node, &outsider.1, gid, "let me in").await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"));
        let r = node.get(&format!("/api/messages/history?conversation_id={conv}"), &outsider.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "group_not_found"));

        for i in 1..=3 {
            let r = send_group(&node, &owner.1, gid, &format!("hello {i}")).await;
            assert_eq!((r.status, r.body["seq"].as_i64(), r.body["group_id"].as_i64()), (StatusCode::CREATED, Some(i), Some(gid)));
        }
        assert_eq!(seqs(&a_ws.collect(3).await), vec![1, 2, 3]);
        assert_eq!(seqs(&b_ws.collect(3).await), vec![1, 2, 3]);

        // Read receipts in a group carry the reader and reach the reader's devices (the senders of what was read
        // get theirs batched: tests/suite/search.rs), not every member.
        node.post("/api/messages/read", Some(&a.1), json!({"conversation_id": conv, "seq": 3})).await;
        let r = a_ws.recv_type("receipt").await;
        assert_eq!((r["status"].as_str(), r["user_id"].as_i64(), r["conversation_id"].as_str()), (Some("read"), Some(a.0), Some(conv.as_str())));
        assert!(b_ws.recv_within(Duration::from_millis(800)).await.is_none_or(|f| f["type"] != "receipt"), "b sent none of it");
        let list = node.get("/api/conversations", &b.1).await;
        let c = list.body.as_array().unwrap().iter().find(|c| c["conversation_id"] == conv.as_str()).unwrap().clone();
        assert_eq!((c["type"].as_str(), c["group"]["name"].as_str(), c["unread_count"].as_i64()), (Some("group"), Some("G"), Some(3)));

        // Removal: effective before the reply.
        let r = node.delete(&format!("/api/groups/{gid}/members/{}", b.0), &owner.1).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(b_ws.recv_type("group_removed").await["group_id"], gid);
        for i in 4..=6 {
            send_group(&node, &owner.1, gid, &format!("after {i}")).await;
        }
        // Seq 4 is the `removed` system message.
        assert_eq!(seqs(&a_ws.collect(4).await), vec![4, 5, 6, 7]);
        let r = send_group(&node, &b.1, gid, "still here?").await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_member"));
        let r = node.get(&format!("/api/messages/history?conversation_id={conv}"), &b.1).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_member"));
        drop(b_ws);
        let mut b_again = node.ws(&b.1, "d").await;
        let s = b_again.recv_type("sync").await;
        assert!(s["messages"].as_array().unwrap().is_empty(), "nothing after removal in sync either: {s}");
        assert!(b_again.recv_within(Duration::from_millis(300)).await.is_none_or(|f| f["type"] != "message"));

        // Re-added: sees from the re-join on, not the gap.
        node.post(&format!("/api/groups/{gid}/members"), Some(&owner.1), json!({"user_ids": [b.0]})).await;
        assert_eq!(b_again.recv_type("group_updated").await["group"]["id"], gid);
        send_group(&node, &a.1, gid, "welcome back").await;
        // Seq 8 is the `added` system message, the first b sees of its new membership.
        let got = b_again.collect(2).await;
        assert_eq!((got[0]["seq"].as_i64(), got[0]["system"]["kind"].as_str()), (Some(8), Some("added")));
        assert_eq!((got[1]["seq"].as_i64(), got[1]["text"].as_str()), (Some(9), Some("welcome back")));
        let h = node.get(&format!("/api/messages/history?conversation_id={conv}"), &b.1).await;
        assert_eq!(seqs(h.body["messages"].as_array().unwrap()), vec![8, 9]);
        assert_eq!(seqs(&a_ws.collect(2).await), vec![8, 9]);
        // Typing reaches the other members.
        b_again.send(json!({"type": "typing", "conversation_id": conv})).await;
        assert_eq!(a_ws.recv_type("typing").await["user_id"], b.0);
    }

    async fn a_200_member_group_over_two_nodes_gets_every_message_live_or_by_sync(backend) {
        let env = TestEnv::new(backend).await;
        let n1 = env.node().await;
        let n2 = if env.is_cluster() { Some(env.node().await) } else { None };
        let nodes: Vec<&TestNode> = std::iter::once(&n1).chain(n2.as_ref()).collect();
        let users = circle(&n1, 200).await;
        let ids: Vec<i64> = users[1..].iter().map(|u| u.0).collect();
        let g = n1.post("/api/groups", Some(&users[0].1), json!({"name": "Big", "member_ids": ids})).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
        let gid = g.body["id"].as_i64().unwrap();
        // Two thirds online, alternating nodes; a third offline.
        let mut online = Vec::new();
        for (i, u) in users.iter().enumerate() {
            if i % 3 != 2 {
                let mut ws = nodes[i % nodes.len()].ws(&u.1, "d").await;
                ws.recv_type("sync").await;
                online.push((i, ws));
            }
        }
        // Five senders (all members), ten messages each, concurrently, through both nodes.
        let mut tasks = Vec::new();
        for s in 0..5 {
            let token = users[s * 3].1.clone();
            let base = nodes[s % nodes.len()].base.clone();
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                for k in 0..10 {
                    let r = http
                        .post(format!("{base}/api/messages/send"))
                        .bearer_auth(&token)
                        .json(&json!({"group_id": gid, "type": "text", "text": format!("s{s} k{k}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut views: BTreeMap<usize, Vec<(i64, String)>> = BTreeMap::new();
        for (i, ws) in online.iter_mut() {
            let got = ws.collect(50).await;
            views.insert(*i, got.iter().map(|m| (m["seq"].as_i64().unwrap(), m["id"].to_string())).collect());
        }
        for (i, u) in users.iter().enumerate() {
            if i % 3 == 2 {
                let mut ws = nodes[(i + 1) % nodes.len()].ws(&u.1, "d").await;
                let got = ws.collect(50).await;
                views.insert(i, got.iter().map(|m| (m["seq"].as_i64().unwrap(), m["id"].to_string())).collect());
            }
        }
        assert_eq!(views.len(), 200);
        let reference = views[&0].clone();
        assert_eq!(reference.iter().map(|v| v.0).collect::<Vec<_>>(), (1..=50).collect::<Vec<_>>());
        for (i, v) in &views {
            assert_eq!(v, &reference, "member {i}'s view differs");
        }
    }

    async fn a_member_acking_its_own_sends_like_the_web_client_gets_no_errors_and_loses_nothing_on_reconnect(backend) {
        // While other messages are still on their way to B's socket, B's own send comes back at once in its `sent`
        // frame; the web client acks that seq (cumulatively). That must not be an error, and must not move B's
        // cursor past the messages B has not been sent yet: B drops its socket right after and gets them by sync.
        let env = TestEnv::new(backend).await;
        let node = Arc::new(env.node().await);
        let u = circle(&node, 3).await;
        let (owner, a, b) = (u[0].clone(), u[1].clone(), u[2].clone());
        let g = node.post("/api/groups", Some(&owner.1), json!({"name": "Busy", "member_ids": [a.0, b.0]})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let conv = format!("g:{gid}");
        let mut b_ws = node.ws(&b.1, "web").await;
        b_ws.recv_type("sync").await;
        let flood = {
            let (node, a) = (node.clone(), a.clone());
            tokio::spawn(async move {
                for i in 0..120 {
                    assert_eq!(send_group(&node, &a.1, gid, &format!("a{i}")).await.status, StatusCode::CREATED);
                }
            })
        };
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..30 {
            b_ws.send(json!({"type": "send", "message": {"group_id": gid, "type": "text", "text": format!("b{i}")}})).await;
            loop {
                let f = b_ws.recv().await;
                let got: Vec<i64> = match f["type"].as_str() {
                    Some("message") | Some("sent") => vec![f["message"]["seq"].as_i64().unwrap()],
                    Some("sync") => seqs(f["messages"].as_array().unwrap()),
                    Some("error") => panic!("B got an error frame: {f}"),
                    _ => continue,
                };
                // As web/app.js does: every message, sync batch and sent frame is acked at its highest seq.
                b_ws.ack(&conv, *got.iter().max().unwrap()).await;
                seen.extend(got);
                if f["type"] == "sent" {
                    break;
                }
            }
        }
        drop(b_ws);
        flood.await.unwrap();
        let total = 150;
        let mut again = node.ws(&b.1, "web").await;
        loop {
            let f = again.recv().await;
            match f["type"].as_str() {
                Some("sync") => {
                    let batch = seqs(f["messages"].as_array().unwrap());
                    if let Some(last) = batch.iter().max() {
                        again.ack(&conv, *last).await;
                    }
                    seen.extend(batch);
                    if f["more"] == false {
                        break;
                    }
                }
                Some("error") => panic!("B got an error frame: {f}"),
                _ => {}
            }
        }
        let missing: Vec<i64> = (1..=total).filter(|s| !seen.contains(s)).collect();
        assert!(missing.is_empty(), "B never got {missing:?}");
    }

    async fn membership_races_never_deliver_to_a_non_member(backend) {
        let env = TestEnv::new(backend).await;
        let node = Arc::new(env.node().await);
        let u = circle(&node, 4).await;
        let (owner, a, x) = (u[0].clone(), u[1].clone(), u[2].clone());
        let g = node.post("/api/groups", Some(&owner.1), json!({"name": "Race", "member_ids": [a.0]})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let mut x_ws = node.ws(&x.1, "d").await;
        x_ws.recv_type("sync").await;

        // Messages keep coming for as long as X's membership churns (so every period has messages in it).
        let churning = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sender = {
            let (node, a, churning) = (node.clone(), a.clone(), churning.clone());
            tokio::spawn(async move {
                for i in 0..5000 {
                    if !churning.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let r = send_group(&node, &a.1, gid, &format!("r{i}")).await;
                    assert_eq!(r.status, StatusCode::CREATED);
                }
            })
        };
        let churn = {
            let (node, owner, x, churning) = (node.clone(), owner.clone(), x.clone(), churning.clone());
            tokio::spawn(async move {
                for _ in 0..15 {
                    node.post(&format!("/api/groups/{gid}/members"), Some(&owner.1), json!({"user_ids": [x.0]})).await;
                    // Long enough for live messages to reach X: a socket's queued deliveries wait up to 20 ms
                    // after a write (write coalescing), and a removal drops whatever is still queued.
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    node.delete(&format!("/api/groups/{gid}/members/{}", x.0), &owner.1).await;
                }
                churning.store(false, std::sync::atomic::Ordering::SeqCst);
            })
        };
        churn.await.unwrap();
        sender.await.unwrap();
        // Everything X's socket wrote must fall inside one of X's membership periods.
        let mut received = Vec::new();
        while let Some(f) = x_ws.recv_within(Duration::from_millis(700)).await {
            match f["type"].as_str() {
                Some("message") => received.push(f["message"]["seq"].as_i64().unwrap()),
                Some("sync") => received.extend(seqs(f["messages"].as_array().unwrap())),
                _ => {}
            }
        }
        let periods = membership_periods(&env, gid, x.0).await;
        assert_eq!(periods.len(), 15, "{periods:?}");
        for s in &received {
            assert!(periods.iter().any(|(from, to)| s > from && s <= to), "seq {s} outside {periods:?}");
        }
        assert!(!received.is_empty(), "X was a member part of the time and got some messages");
    }
}

fn gid_path(gid: i64) -> String {
    format!("/api/groups/{gid}")
}

/// X's ended memberships of the group, as (from_seq, to_seq]: read straight from the database.
async fn membership_periods(env: &TestEnv, gid: i64, user: i64) -> Vec<(i64, i64)> {
    let sql =
        "SELECT from_seq, to_seq FROM group_member_periods WHERE group_id = $1 AND user_id = $2 ORDER BY from_seq";
    if env.is_cluster() {
        let pool = sqlx::PgPool::connect(&env.database_url).await.unwrap();
        sqlx::query_as(sql).bind(gid).bind(user).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(&env.database_url).await.unwrap();
        sqlx::query_as(sql).bind(gid).bind(user).fetch_all(&pool).await.unwrap()
    }
}
