//! Group life (DESIGN.md §9) over real HTTP and WebSockets on both backend sets: announcements and every
//! membership change as `system` messages in the group's stream, mutes, invite links, and the group invariant
//! under random concurrent changes.

use std::time::Duration;

use crate::common::{uniq, TestEnv, TestNode};
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// `n` users who are all friends of each other; returns (id, token) pairs.
async fn clique(node: &TestNode, n: usize) -> Vec<(i64, String)> {
    let mut users = Vec::new();
    for i in 0..n {
        users.push(node.user(&uniq(&format!("q{i}_"))).await);
    }
    for i in 0..n {
        for j in i + 1..n {
            node.befriend((users[i].0, &users[i].1), (users[j].0, &users[j].1)).await;
        }
    }
    users
}

async fn send(node: &TestNode, token: &str, group: i64, text: &str) -> crate::common::Reply {
    node.post("/api/messages/send", Some(token), json!({"group_id": group, "type": "text", "text": text})).await
}

fn system_kinds(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["type"] == "system")
        .map(|m| m["system"]["kind"].as_str().unwrap().to_string())
        .collect()
}

backend_tests! {
    async fn every_change_to_a_group_reaches_an_offline_member_as_a_system_message(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let u = clique(&node, 5).await;
        let (owner, admin, quiet, leaver, newcomer) = (&u[0], &u[1], &u[2], &u[3], &u[4]);
        let g = node.post("/api/groups", Some(&owner.1), json!({"name": "Family", "member_ids": [admin.0, quiet.0, leaver.0]})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let path = |s: &str| format!("/api/groups/{gid}{s}");
        // `quiet` is offline throughout and catches up at the end.
        let mut q = node.ws(&quiet.1, "phone").await;
        q.collect(0).await;
        drop(q);

        let r = node.put(&path(&format!("/members/{}/role", admin.0)), &owner.1, json!({"role": "admin"})).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = node.put(&path(""), &admin.1, json!({"name": "Family ❤", "announcement": "Dinner at 7\nBring 🍰"})).await;
        assert_eq!((r.status, r.body["announcement"].as_str()), (StatusCode::OK, Some("Dinner at 7\nBring 🍰")), "{}", r.body);
        assert_eq!(r.body["name"], "Family ❤");
        assert_eq!(node.post(&path("/members"), Some(&admin.1), json!({"user_ids": [newcomer.0]})).await.status, StatusCode::OK);
        assert_eq!(node.delete(&path(&format!("/members/{}", leaver.0)), &leaver.1).await.status, StatusCode::NO_CONTENT);
        assert_eq!(node.delete(&path(&format!("/members/{}", newcomer.0)), &owner.1).await.status, StatusCode::NO_CONTENT);
        let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        assert_eq!(node.put(&path(&format!("/members/{}/mute", quiet.0)), &admin.1, json!({"until": until})).await.status, StatusCode::OK);
        assert_eq!(node.put(&path(&format!("/members/{}/mute", quiet.0)), &admin.1, json!({"until": null})).await.status, StatusCode::OK);
        assert_eq!(node.put(&path("/mute"), &owner.1, json!({"muted_all": true})).await.status, StatusCode::OK);
        assert_eq!(node.put(&path("/mute"), &owner.1, json!({"muted_all": false})).await.status, StatusCode::OK);
        assert_eq!(node.put(&path("/owner"), &owner.1, json!({"user_id": admin.0})).await.status, StatusCode::OK);
        assert_eq!(node.put(&path(""), &admin.1, json!({"announcement": ""})).await.body.get("announcement"), None);

        let mut q = node.ws(&quiet.1, "phone").await;
        let got = q.collect(12).await;
        let expected = [
            "admin_added", "renamed", "announcement", "added", "left", "removed", "member_muted", "member_unmuted",
            "muted_all", "unmuted_all", "owner_changed", "announcement",
        ];
        assert_eq!(system_kinds(&got), expected, "{got:?}");
        let seqs: Vec<i64> = got.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "one gapless stream: {seqs:?}");
        let by_kind = |k: &str| got.iter().find(|m| m["system"]["kind"] == k).unwrap().clone();
        assert_eq!(by_kind("renamed")["system"]["name"], "Family ❤");
        assert_eq!(by_kind("announcement")["system"]["text"], "Dinner at 7\nBring 🍰");
        assert_eq!(by_kind("left")["system"]["actor_id"], leaver.0);
        assert_eq!(by_kind("removed")["system"]["user_ids"], json!([newcomer.0]));
        assert!(by_kind("member_muted")["system"]["until"].as_str().is_some());
        assert_eq!(by_kind("owner_changed")["system"]["user_ids"], json!([admin.0]));
        // The same in history, and events never count as unread.
        let h = node.get(&format!("/api/messages/history?conversation_id=g:{gid}"), &quiet.1).await;
        assert_eq!(system_kinds(h.body["messages"].as_array().unwrap()).len(), 12);
        let list = node.get("/api/conversations", &quiet.1).await.body;
        let conv = list.as_array().unwrap().iter().find(|c| c["conversation_id"] == format!("g:{gid}")).unwrap();
        assert_eq!((conv["unread_count"].as_i64(), conv["last_message"]["type"].as_str()), (Some(0), Some("system")));

        // Bad input: an announcement over 2,000 characters.
        let r = node.put(&path(""), &admin.1, json!({"announcement": "长".repeat(2001)})).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        let r = node.put(&path(""), &quiet.1, json!({"announcement": "mine"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_admin"));
    }

    async fn a_muted_member_cannot_send_until_the_mute_ends(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let u = clique(&node, 4).await;
        let (owner, admin, m1, m2) = (&u[0], &u[1], &u[2], &u[3]);
        let g = node.post("/api/groups", Some(&owner.1), json!({"name": "Quiet", "member_ids": [admin.0, m1.0, m2.0]})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let path = |s: &str| format!("/api/groups/{gid}{s}");
        node.put(&path(&format!("/members/{}/role", admin.0)), &owner.1, json!({"role": "admin"})).await;

        let first = send(&node, &m1.1, gid, "before the mute").await;
        assert_eq!(first.status, StatusCode::CREATED);
        let spoke_before = first.body["id"].as_i64().unwrap();
        let until = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
        let r = node.put(&path(&format!("/members/{}/mute", m1.0)), &admin.1, json!({"until": until.to_rfc3339()})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let muted = r.body["members"].as_array().unwrap().iter().find(|m| m["user_id"] == m1.0).unwrap().clone();
        assert!(muted["muted_until"].is_string());
        let r = send(&node, &m1.1, gid, "let me speak").await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "muted"), "{}", r.body);
        // Nor by an edit of an earlier message or a reaction; taking back one's words is allowed (a hostile run
        // found edits and reactions passing the mute).
        let said = &spoke_before;
        let r = node.put(&format!("/api/messages/{said}"), &m1.1, json!({"text": "new words"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "muted"), "{}", r.body);
        let r = node.put(&format!("/api/messages/{said}/reactions/%F0%9F%91%8D"), &m1.1, json!({})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "muted"), "{}", r.body);
        let r = node.post(&format!("/api/messages/{said}/recall"), Some(&m1.1), json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "a muted member may recall: {}", r.body);
        assert_eq!(send(&node, &m2.1, gid, "others may").await.status, StatusCode::CREATED);
        tokio::time::sleep_until(tokio::time::Instant::now() + (until - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(100)).await;
        assert_eq!(send(&node, &m1.1, gid, "free again").await.status, StatusCode::CREATED);

        // Mute-all: only the owner and admins speak.
        node.put(&path("/mute"), &admin.1, json!({"muted_all": true})).await;
        let r = send(&node, &m2.1, gid, "hello?").await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "muted"));
        assert_eq!(send(&node, &admin.1, gid, "admins may").await.status, StatusCode::CREATED);
        assert_eq!(send(&node, &owner.1, gid, "so may the owner").await.status, StatusCode::CREATED);
        let mut ws = node.ws(&m2.1, "w").await;
        ws.send(json!({"type": "send", "message": {"group_id": gid, "type": "text", "text": "via ws"}})).await;
        loop {
            let f = ws.recv().await;
            if f["type"] == "error" {
                assert_eq!(f["code"], "muted", "{f}");
                break;
            }
        }

        // Bad input and rights: a mute in the past, an admin muting an admin, anyone muting the owner.
        let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
        let r = node.put(&path(&format!("/members/{}/mute", m2.0)), &admin.1, json!({"until": past})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "mute_in_past"));
        let r = node.put(&path(&format!("/members/{}/mute", m2.0)), &admin.1, json!({"until": "tomorrow"})).await;
        assert!(r.status.is_client_error());
        let later = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
        let r = node.put(&path(&format!("/members/{}/mute", owner.0)), &admin.1, json!({"until": later})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "cannot_change_owner"));
        let r = node.put(&path(&format!("/members/{}/mute", admin.0)), &m1.1, json!({"until": later})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_admin"));
    }

    async fn invite_links_admit_until_used_up_expired_revoked_or_the_group_is_gone(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (owner, to) = node.user(&uniq("io")).await;
        let mut people = Vec::new();
        for i in 0..5 {
            people.push(node.user(&uniq(&format!("ip{i}_"))).await);
        }
        let g = node.post("/api/groups", Some(&to), json!({"name": "Open"})).await;
        let gid = g.body["id"].as_i64().unwrap();
        let invites = format!("/api/groups/{gid}/invites");

        // One use: the first joins (a `joined` system message), the second is refused, a member rejoining costs nothing.
        let r = node.post(&invites, Some(&to), json!({"max_uses": 1})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let code = r.body["code"].as_str().unwrap().to_string();
        assert!(code.len() >= 22, "128 bits base64url: {code}");
        let preview = node.get(&format!("/api/invites/{code}"), &people[0].1).await;
        assert_eq!((preview.status, preview.body["name"].as_str(), preview.body["member_count"].as_i64()), (StatusCode::OK, Some("Open"), Some(1)));
        let joined = node.post(&format!("/api/invites/{code}/join"), Some(&people[0].1), json!({})).await;
        assert_eq!(joined.status, StatusCode::OK, "{}", joined.body);
        assert_eq!(joined.body["members"].as_array().unwrap().len(), 2);
        let again = node.post(&format!("/api/invites/{code}/join"), Some(&people[0].1), json!({})).await;
        assert_eq!(again.status, StatusCode::OK, "a member already in gets the group");
        let used = node.post(&format!("/api/invites/{code}/join"), Some(&people[1].1), json!({})).await;
        assert_eq!((used.status, used.code()), (StatusCode::NOT_FOUND, "invite_invalid"));
        let h = node.get(&format!("/api/messages/history?conversation_id=g:{gid}"), &people[0].1).await;
        assert_eq!(system_kinds(h.body["messages"].as_array().unwrap()), ["joined"]);

        // Expired.
        let r = node.post(&invites, Some(&to), json!({"expires_in_secs": 1})).await;
        let short = r.body["code"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = node.post(&format!("/api/invites/{short}/join"), Some(&people[1].1), json!({})).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invite_invalid"));
        let r = node.get(&format!("/api/invites/{short}"), &people[1].1).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invite_invalid"));

        // Revoked (by the owner; a plain member may not list or revoke).
        let r = node.post(&invites, Some(&to), json!({})).await;
        let revoked = r.body["code"].as_str().unwrap().to_string();
        let r = node.get(&invites, &people[0].1).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "not_group_admin"));
        let listed = node.get(&invites, &to).await.body;
        assert_eq!(listed.as_array().unwrap().len(), 3);
        assert_eq!(node.delete(&format!("{invites}/{revoked}"), &people[0].1).await.status, StatusCode::FORBIDDEN);
        assert_eq!(node.delete(&format!("{invites}/{revoked}"), &to).await.status, StatusCode::NO_CONTENT);
        assert_eq!(node.delete(&format!("{invites}/{revoked}"), &to).await.code(), "invite_invalid");
        let r = node.post(&format!("/api/invites/{revoked}/join"), Some(&people[2].1), json!({})).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invite_invalid"));

        // The group dissolved.
        let r = node.post(&invites, Some(&to), json!({"max_uses": 100})).await;
        let last = r.body["code"].as_str().unwrap().to_string();
        assert_eq!(node.delete(&format!("/api/groups/{gid}"), &to).await.status, StatusCode::NO_CONTENT);
        let r = node.post(&format!("/api/invites/{last}/join"), Some(&people[3].1), json!({})).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invite_invalid"));
        let r = node.get("/api/invites/AAAAAAAAAAAAAAAAAAAAAA", &people[3].1).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "invite_invalid"));

        // Bad input: max_uses 0, a lifetime over 30 days.
        let g = node.post("/api/groups", Some(&to), json!({"name": "Again"})).await;
        let invites = format!("/api/groups/{}/invites", g.body["id"]);
        for bad in [json!({"max_uses": 0}), json!({"expires_in_secs": 0}), json!({"expires_in_secs": 2_592_001}), json!({"max_uses": "1"})] {
            let r = node.post(&invites, Some(&to), bad.clone()).await;
            assert!(r.status.is_client_error() && r.status != StatusCode::NOT_FOUND, "{bad}: {} {}", r.status, r.body);
        }
        let _ = owner;
    }

    async fn the_group_invariant_holds_under_random_concurrent_changes(backend) {
        let env = TestEnv::new(backend).await;
        let n1 = env.node().await;
        let n2 = if env.is_cluster() { Some(env.node().await) } else { None };
        let nodes: Vec<&TestNode> = std::iter::once(&n1).chain(n2.as_ref()).collect();
        let u = clique(&n1, 7).await;
        let stores = gochat::store::Stores::open(&env.database_url, 2).await.unwrap();
        let seed: u64 = std::env::var("GOCHAT_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let create = |by: usize| {
            let others: Vec<i64> = u.iter().map(|x| x.0).filter(|id| *id != u[by].0).collect();
            let node = &n1;
            let token = u[by].1.clone();
            async move {
                let g = node.post("/api/groups", Some(&token), json!({"name": "chaos", "member_ids": others})).await;
                assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
                g.body["id"].as_i64().unwrap()
            }
        };
        let mut gid = create(0).await;
        let mut dissolved = 0;
        for round in 0..200 {
            let ops: Vec<(usize, reqwest::Method, String, Option<Value>)> = (0..6)
                .map(|_| {
                    let actor = rng.gen_range(0..u.len());
                    let target = u[rng.gen_range(0..u.len())].0;
                    let base = format!("/api/groups/{gid}");
                    let op = rng.gen_range(0..100);
                    let (m, path, body) = match op {
                        0..=19 => (reqwest::Method::PUT, format!("{base}/owner"), Some(json!({"user_id": target}))),
                        20..=34 => (reqwest::Method::DELETE, format!("{base}/members/{target}"), None),
                        35..=44 => (reqwest::Method::DELETE, format!("{base}/members/{}", u[actor].0), None),
                        45..=59 => (reqwest::Method::POST, format!("{base}/members"), Some(json!({"user_ids": [target]}))),
                        60..=74 => {
                            let role = if rng.gen_bool(0.5) { "admin" } else { "member" };
                            (reqwest::Method::PUT, format!("{base}/members/{target}/role"), Some(json!({"role": role})))
                        }
                        75..=84 => {
                            let until = rng.gen_bool(0.5).then(|| (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
                            (reqwest::Method::PUT, format!("{base}/members/{target}/mute"), Some(json!({"until": until})))
                        }
                        85..=96 => (reqwest::Method::PUT, format!("{base}/mute"), Some(json!({"muted_all": rng.gen_bool(0.5)}))),
                        _ => (reqwest::Method::DELETE, base.clone(), None),
                    };
                    (actor, m, path, body)
                })
                .collect();
            let calls = ops.iter().enumerate().map(|(i, (actor, m, path, body))| {
                let node = nodes[i % nodes.len()];
                node.call(m.clone(), path, Some(&u[*actor].1), body.clone())
            });
            for (reply, op) in futures_util::future::join_all(calls).await.into_iter().zip(&ops) {
                assert!(!reply.status.is_server_error(), "seed {seed} round {round}: {op:?} → {} {}", reply.status, reply.body);
            }
            let group = stores.groups.group(gid).await.unwrap().unwrap();
            if group.dissolved_at.is_some() {
                assert!(stores.groups.members(gid).await.unwrap().is_empty(), "seed {seed}: a dissolved group has no members");
                dissolved += 1;
                gid = create(rng.gen_range(0..u.len())).await;
                continue;
            }
            let members = stores.groups.members(gid).await.unwrap();
            let owners: Vec<i64> = members.iter().filter(|m| m.role == "owner").map(|m| m.user_id).collect();
            assert_eq!(owners, vec![group.owner_id], "seed {seed} round {round}: exactly one owner, a member, named by owner_id; after {ops:?}");
        }
        eprintln!("seed {seed}: 200 rounds, {dissolved} dissolutions");
    }
}
