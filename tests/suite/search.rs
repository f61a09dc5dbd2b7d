//! Message search and readers (DESIGN.md §10) over real HTTP, on both backends: the same queries give the same
//! results on SQLite (FTS5) and Postgres (a GIN index over the same tokens), and nothing outside what the caller
//! can see is ever found.

use crate::common::{uniq, TestEnv, TestNode};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn send(node: &TestNode, token: &str, body: Value) -> Value {
    let r = node.post("/api/messages/send", Some(token), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

/// The texts of the caller's results for `q` (extra query parameters in `more`), newest first.
async fn found(node: &TestNode, token: &str, q: &str, more: &str) -> Vec<String> {
    let r = node.get(&format!("/api/messages/search?q={}{more}", urlencode(q)), token).await;
    assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
    r.body["results"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn group_of(node: &TestNode, owner: &str, members: &[i64]) -> i64 {
    let r = node.post("/api/groups", Some(owner), json!({"name": "team", "member_ids": members})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["id"].as_i64().unwrap()
}

backend_tests! {
    async fn chinese_words_mixed_text_emoji_case_and_literal_wildcards_are_found_alike_on_both_backends(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("sa")).await;
        let (b, tb) = node.user(&uniq("sb")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        let corpus = [
            "我明天去上海出差",
            "上海交通大学的图书馆很大",
            "海上生明月",
            "Meeting at 3pm in Shanghai 上海office",
            "明天见 🎉 party",
            "100% sure_thing",
            "100 percent sure thing",
            "HELLO World",
            "helloworld",
            "北京大学",
            "東京で会いましょう",
            "서울에서 만나요",
        ];
        for text in corpus {
            send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": text})).await;
        }
        // Each query and the texts it finds, newest first; both sides of the conversation see the same.
        let cases: &[(&str, &[&str])] = &[
            ("上海", &["Meeting at 3pm in Shanghai 上海office", "上海交通大学的图书馆很大", "我明天去上海出差"]),
            ("交通大学", &["上海交通大学的图书馆很大"]),
            ("通大学的", &["上海交通大学的图书馆很大"]),
            ("大学", &["北京大学", "上海交通大学的图书馆很大"]),
            ("上海交大", &[]),
            ("海上", &["海上生明月"]),
            ("明", &["明天见 🎉 party", "海上生明月", "我明天去上海出差"]),
            ("月", &["海上生明月"]),
            ("上海 office", &["Meeting at 3pm in Shanghai 上海office"]),
            ("shanghai", &["Meeting at 3pm in Shanghai 上海office"]),
            ("SHANG", &["Meeting at 3pm in Shanghai 上海office"]),
            ("hello", &["helloworld", "HELLO World"]),
            ("Hello world", &["HELLO World"]),
            ("world", &["HELLO World"]),
            ("🎉", &["明天见 🎉 party"]),
            ("🎉 明天", &["明天见 🎉 party"]),
            ("%", &[]),
            ("_", &[]),
            ("s_re", &[]),
            ("sure_thing", &["100 percent sure thing", "100% sure_thing"]),
            ("100%", &["100 percent sure thing", "100% sure_thing"]),
            ("東京", &["東京で会いましょう"]),
            ("会い", &["東京で会いましょう"]),
            ("서울", &["서울에서 만나요"]),
            ("nothing", &[]),
        ];
        for (q, want) in cases {
            for token in [&ta, &tb] {
                assert_eq!(found(&node, token, q, "").await, *want, "query {q:?}");
            }
        }
    }

    async fn search_never_finds_what_is_outside_the_callers_membership_recalled_or_deleted_for_them(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("oa")).await;
        let (b, tb) = node.user(&uniq("ob")).await;
        let (c, tc) = node.user(&uniq("oc")).await;
        let (_d, td) = node.user(&uniq("od")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        let g = group_of(&node, &ta, &[b]).await;
        send(&node, &ta, json!({"group_id": g, "type": "text", "text": "机密计划 before c joined"})).await;
        send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": "机密计划 between a and b"})).await;
        let r = node.post(&format!("/api/groups/{g}/members"), Some(&ta), json!({"user_ids": [c]})).await;
        assert!(r.status.is_success(), "{}", r.body);
        send(&node, &ta, json!({"group_id": g, "type": "text", "text": "机密计划 after c joined"})).await;
        let recalled = send(&node, &tb, json!({"group_id": g, "type": "text", "text": "机密计划 recalled"})).await;
        let hidden = send(&node, &ta, json!({"group_id": g, "type": "text", "text": "机密计划 hidden by b"})).await;

        let r = node.post(&format!("/api/messages/{}/recall", recalled["id"]), Some(&tb), json!(null)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = node.delete(&format!("/api/messages/{}", hidden["id"]), &tb).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

        assert_eq!(
            found(&node, &ta, "机密", "").await,
            ["机密计划 hidden by b", "机密计划 after c joined", "机密计划 between a and b", "机密计划 before c joined"]
        );
        assert_eq!(
            found(&node, &tb, "机密计划", "").await,
            ["机密计划 after c joined", "机密计划 between a and b", "机密计划 before c joined"],
            "neither the recalled message nor the one b deleted for themselves"
        );
        assert_eq!(found(&node, &tc, "机密", "").await, ["机密计划 hidden by b", "机密计划 after c joined"], "only from c's joining");
        assert!(found(&node, &td, "机密", "").await.is_empty(), "a stranger finds nothing");
        assert!(found(&node, &tb, "recalled", "").await.is_empty(), "a recall removes the text from the index");

        // Narrowed to a conversation: only that one; someone else's conversation is refused like its history.
        let conv = format!("&conversation_id=g%3A{g}");
        assert_eq!(found(&node, &tb, "机密", &conv).await, ["机密计划 after c joined", "机密计划 before c joined"]);
        let r = node.get(&format!("/api/messages/search?q=x{conv}"), &td).await;
        assert!(r.status == StatusCode::NOT_FOUND || r.status == StatusCode::FORBIDDEN, "{}", r.body);

        // Once c leaves, the group's messages are no longer theirs to find.
        let r = node.delete(&format!("/api/groups/{g}/members/{c}"), &tc).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        assert!(found(&node, &tc, "机密", "").await.is_empty());
    }

    async fn results_page_newest_first_by_before_id_and_follow_edits(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("pa")).await;
        let (b, tb) = node.user(&uniq("pb")).await;
        let (c, tc) = node.user(&uniq("pc")).await;
        node.befriend((a, &ta), (b, &tb)).await;
        node.befriend((a, &ta), (c, &tc)).await;
        let mut ids = Vec::new();
        for i in 0..25 {
            ids.push(send(&node, &ta, json!({"to_user_id": b, "type": "text", "text": format!("苹果 apple {i}")})).await["id"].as_i64().unwrap());
        }
        send(&node, &ta, json!({"to_user_id": c, "type": "text", "text": "苹果 apple elsewhere"})).await;
        // Pages of 10 by before_id: every message once, newest first.
        let mut seen: Vec<i64> = Vec::new();
        let mut before = String::new();
        loop {
            let r = node.get(&format!("/api/messages/search?q=%E8%8B%B9%E6%9E%9C&limit=10&conversation_id=d%3A{}%3A{}{before}", a.min(b), a.max(b)), &ta).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            let page: Vec<i64> = r.body["results"].as_array().unwrap().iter().map(|m| m["id"].as_i64().unwrap()).collect();
            seen.extend(&page);
            if r.body["has_more"] != true {
                break;
            }
            before = format!("&before_id={}", page.last().unwrap());
        }
        assert_eq!(seen, ids.iter().rev().copied().collect::<Vec<_>>());
        assert_eq!(found(&node, &ta, "apple", "&limit=50").await.len(), 26, "across conversations without conversation_id");

        // An edit re-indexes: the new words find it, the old ones no longer do.
        let r = node.put(&format!("/api/messages/{}", ids[3]), &ta, json!({"text": "香蕉 banana"})).await;
        assert!(r.status.is_success(), "{}", r.body);
        let hits = node.get("/api/messages/search?q=banana", &tb).await;
        assert_eq!(hits.body["results"][0]["id"], ids[3], "{}", hits.body);
        assert_eq!(found(&node, &tb, "香蕉", "").await, ["香蕉 banana"]);
        assert_eq!(found(&node, &tb, "apple", "&limit=50").await.len(), 24);
    }

    async fn bad_search_input_gets_a_stable_code(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (_a, ta) = node.user(&uniq("ba")).await;
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        for (path, status, code) in [
            ("/api/messages/search?q=", unprocessable, "invalid_query"),
            ("/api/messages/search", StatusCode::BAD_REQUEST, "invalid_parameter"),
            ("/api/messages/search?q=a%00b", unprocessable, "invalid_query"),
            ("/api/messages/search?q=%20%20", unprocessable, "invalid_query"),
            ("/api/messages/search?q=a&limit=51", unprocessable, "invalid_limit"),
            ("/api/messages/search?q=a&limit=0", unprocessable, "invalid_limit"),
            ("/api/messages/search?q=a&before_id=0", StatusCode::BAD_REQUEST, "invalid_parameter"),
            ("/api/messages/search?q=a&conversation_id=nope", unprocessable, "invalid_conversation_id"),
        ] {
            let r = node.get(path, &ta).await;
            assert_eq!((r.status, r.code()), (status, code), "{path}: {}", r.body);
        }
        let long = "字".repeat(101);
        let r = node.get(&format!("/api/messages/search?q={}", urlencode(&long)), &ta).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query"), "{}", r.body);
        // Many words (36, more than the 16 terms matched) are fine: the query keeps its first terms.
        let many = ("abcdefghijklmnopqrstuvwxyz0123456789".chars()).map(String::from).collect::<Vec<_>>().join(" ");
        let r = node.get(&format!("/api/messages/search?q={}", urlencode(&many)), &ta).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}
