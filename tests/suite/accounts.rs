//! Accounts over real HTTP on both backends: the DESIGN.md paths and shapes, every class of bad input, token
//! revocation, concurrency and rate limiting.

use crate::common::{uniq, TestEnv};
use reqwest::{Method, StatusCode};
use serde_json::json;

backend_tests! {
    async fn a_user_registers_logs_in_reads_and_changes_the_profile(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let name = uniq("alice");
        let r = node.post("/api/user/register", None, json!({"username": name, "password": "password123", "nickname": "Alice", "sex": 1})).await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body["username"], name.as_str());
        assert_eq!(r.body["nickname"], "Alice");
        assert_eq!(r.body["sex"], 1);
        assert!(r.body["id"].as_i64().unwrap() > 0);
        let created = chrono::DateTime::parse_from_rfc3339(r.body["created_at"].as_str().unwrap()).unwrap();
        assert_eq!(created.offset().local_minus_utc(), 0, "RFC 3339 UTC: {}", r.body);
        assert!(r.body.get("password_hash").is_none() && r.body.get("password").is_none());

        let l = node.login(&name.to_uppercase(), "password123").await;
        assert_eq!(l.status, StatusCode::OK, "login is case-insensitive on the username");
        let token = l.body["token"].as_str().unwrap().to_string();
        assert!(l.body["expires_at"].as_str().is_some());
        assert_eq!(l.body["user"]["id"], r.body["id"]);

        let p = node.get("/api/user/profile", &token).await;
        assert_eq!(p.status, StatusCode::OK);
        assert_eq!(p.body["username"], name.as_str());

        let u = node.put("/api/user/profile", &token, json!({"nickname": "  Alice W. ", "sex": 0})).await;
        assert_eq!(u.status, StatusCode::OK);
        assert_eq!(u.body["nickname"], "Alice W.");
        assert_eq!(u.body["sex"], 0);
        let u = node.put("/api/user/profile", &token, json!({})).await;
        assert_eq!(u.body["nickname"], "Alice W.", "absent fields stay as they were");
    }

    async fn changing_the_password_revokes_every_earlier_token(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let name = uniq("bob");
        let (_, token) = node.user(&name).await;
        let second = node.login(&name, "password123").await.body["token"].as_str().unwrap().to_string();

        let wrong = node.put("/api/user/password", &token, json!({"old_password": "nope-nope", "new_password": "newpassword1"})).await;
        assert_eq!((wrong.status, wrong.code()), (StatusCode::FORBIDDEN, "wrong_password"));
        let short = node.put("/api/user/password", &token, json!({"old_password": "password123", "new_password": "short"})).await;
        assert_eq!((short.status, short.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_password"));

        let ok = node.put("/api/user/password", &token, json!({"old_password": "password123", "new_password": "newpassword1"})).await;
        assert_eq!(ok.status, StatusCode::NO_CONTENT);
        for t in [&token, &second] {
            let r = node.get("/api/user/profile", t).await;
            assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "token_revoked"));
        }
        assert_eq!(node.login(&name, "password123").await.status, StatusCode::UNAUTHORIZED);
        let fresh = node.login(&name, "newpassword1").await;
        assert_eq!(fresh.status, StatusCode::OK);
        let r = node.get("/api/user/profile", fresh.body["token"].as_str().unwrap()).await;
        assert_eq!(r.status, StatusCode::OK);
    }

    async fn login_refuses_wrong_credentials_alike(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let name = uniq("carol");
        node.user(&name).await;
        let wrong_pw = node.login(&name, "password124").await;
        let no_user = node.login(&uniq("nobody"), "password123").await;
        for r in [&wrong_pw, &no_user] {
            assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
        }
        assert_eq!(wrong_pw.body["message"], no_user.body["message"]);
    }

    async fn usernames_are_unique_in_any_letter_case(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let name = uniq("Dave");
        assert_eq!(node.register(&name, "password123").await.status, StatusCode::CREATED);
        let again = node.register(&name.to_lowercase(), "password123").await;
        assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "username_taken"));
    }

    async fn twenty_concurrent_registrations_of_one_username_admit_exactly_one(backend) {
        let env = TestEnv::new(backend).await;
        let node = std::sync::Arc::new(env.node().await);
        let name = uniq("race");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let node = node.clone();
            // Mixed letter case: the uniqueness is case-insensitive, so they all race for one name.
            let n = if i % 2 == 0 { name.clone() } else { name.to_uppercase() };
            tasks.push(tokio::spawn(async move { node.register(&n, "password123").await }));
        }
        let mut created = 0;
        let mut conflicts = 0;
        for t in tasks {
            let r = t.await.unwrap();
            match r.status {
                StatusCode::CREATED => created += 1,
                StatusCode::CONFLICT => {
                    assert_eq!(r.code(), "username_taken");
                    conflicts += 1
                }
                s => panic!("unexpected {s}: {}", r.body),
            }
        }
        assert_eq!((created, conflicts), (1, 19));
    }

    async fn user_search_finds_username_prefixes_case_insensitively(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let stem = uniq("srch");
        let (_, token) = node.user(&format!("{stem}_one")).await;
        node.user(&format!("{}_Two", stem.to_uppercase())).await;
        node.user(&uniq("other")).await;
        let r = node.get(&format!("/api/users/search?q={}", stem.to_uppercase()), &token).await;
        assert_eq!(r.status, StatusCode::OK);
        let names: Vec<&str> = r.body.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(r.body[0].get("created_at").is_none(), "UserSummary has no created_at");
        // LIKE wildcards in the query are literal characters, not patterns (a username prefix or a nickname
        // substring, DESIGN.md §8).
        for q in ["_", "%25"] {
            let r = node.get(&format!("/api/users/search?q={q}"), &token).await;
            let lit = if q == "_" { "_" } else { "%" };
            assert!(r.body.as_array().unwrap().iter().all(|u| u["username"].as_str().unwrap().starts_with(lit)
                || u["nickname"].as_str().unwrap().contains(lit)), "{q}: {}", r.body);
        }
        let r = node.get("/api/users/search?q=%25", &token).await;
        assert!(r.body.as_array().unwrap().is_empty(), "no name here has a %: {}", r.body);
        for bad in ["", "%20", "%09", "a%00"] {
            let r = node.get(&format!("/api/users/search?q={bad}"), &token).await;
            assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_query"), "q={bad}");
        }
        let r = node.get("/api/users/search", &token).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_parameter"));
    }

    async fn every_class_of_bad_input_gets_a_clear_4xx(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let reg = "/api/user/register";
        // Malformed JSON, wrong types, missing fields.
        let r = node.raw(Method::POST, reg, None, Some(("application/json", b"{\"username\": ".to_vec()))).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"), "{}", r.body);
        let r = node.post(reg, None, json!({"username": {"a": 1}, "password": "password123", "nickname": "x"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"));
        for wrong in [json!(12345), json!(true), json!(null)] {
            let r = node.post(reg, None, json!({"username": wrong, "password": "password123", "nickname": "x"})).await;
            assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"), "a {wrong} is not a string");
        }
        assert_eq!(node.login("12345", "password123").await.status, StatusCode::UNAUTHORIZED, "nobody was registered");
        let r = node.post(reg, None, json!({"username": "someone"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"));
        let r = node.post(reg, None, json!([1, 2])).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"));
        let r = node.post(reg, None, json!({"username": "someone", "password": "password123", "nickname": "x", "sex": "male"})).await;
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_body"), "a value outside the enum's type");
        // Wrong content type.
        let r = node.raw(Method::POST, reg, None, Some(("text/plain", b"hello".to_vec()))).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_type"));
        // Values that parse but break the rules.
        let cases = [
            (json!({"username": "ab", "password": "password123", "nickname": "x"}), "invalid_username"),
            (json!({"username": "a".repeat(33), "password": "password123", "nickname": "x"}), "invalid_username"),
            (json!({"username": "bad name", "password": "password123", "nickname": "x"}), "invalid_username"),
            (json!({"username": "okname", "password": "short", "nickname": "x"}), "invalid_password"),
            (json!({"username": "okname", "password": "p".repeat(129), "nickname": "x"}), "invalid_password"),
            (json!({"username": "okname", "password": "password123", "nickname": ""}), "invalid_nickname"),
            (json!({"username": "okname", "password": "password123", "nickname": "n".repeat(65)}), "invalid_nickname"),
            (json!({"username": "okname", "password": "password123", "nickname": "x", "sex": 7}), "invalid_sex"),
        ];
        for (body, code) in cases {
            let r = node.post(reg, None, body.clone()).await;
            assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{body}");
            assert!(!r.body["message"].as_str().unwrap().is_empty());
        }
        // A body over the size limit.
        let huge = json!({"username": "okname", "password": "password123", "nickname": "x".repeat(400_000)});
        let r = node.post(reg, None, huge).await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.code(), "payload_too_large");
        // Tokens: none, garbage, wrong signature, expired.
        let r = node.call(Method::GET, "/api/user/profile", None, None).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "missing_token"));
        let r = node.get("/api/user/profile", "not-a-jwt").await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
        let forged = jwt(b"some-other-secret-some-other-secret-123", 1, 0, 3600);
        let r = node.get("/api/user/profile", &forged).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
        let (id, _) = node.user(&uniq("exp")).await;
        let expired = jwt(crate::common::JWT_SECRET.as_bytes(), id, 0, -3600);
        let r = node.get("/api/user/profile", &expired).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "token_expired"));
        let valid = jwt(crate::common::JWT_SECRET.as_bytes(), id, 0, 3600);
        assert_eq!(node.get("/api/user/profile", &valid).await.status, StatusCode::OK, "the forging helper is right");
        let r = node.raw(Method::GET, "/api/user/profile", None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        // Unknown routes and methods.
        let r = node.get("/api/nope", &valid).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
        let r = node.call(Method::DELETE, "/api/user/login", None, None).await;
        assert_eq!((r.status, r.code()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    }

    async fn logins_over_the_rate_limit_get_429_with_retry_after(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node_with(&[("GOCHAT_AUTH_RATE_PER_IP", "5")]).await;
        let mut statuses = Vec::new();
        for _ in 0..8 {
            statuses.push(node.login("whoever", "password123").await);
        }
        assert!(statuses[..5].iter().all(|r| r.status == StatusCode::UNAUTHORIZED));
        let limited = &statuses[7];
        assert_eq!((limited.status, limited.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
        let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
        // Registration shares the per-IP budget.
        assert_eq!(node.register(&uniq("late"), "password123").await.status, StatusCode::TOO_MANY_REQUESTS);

        // Per username: another node (its own IP budget) with a tight per-username limit of failures: after 3
        // failures on the name, the client that failed waits.
        let node = env.node_with(&[("GOCHAT_AUTH_RATE_PER_USERNAME", "3")]).await;
        let name = uniq("target");
        node.user(&name).await;
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(node.login(&name, "wrong-password").await.status);
        }
        assert_eq!(statuses, [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
        assert_eq!(node.login(&uniq("someoneelse"), "x-password").await.status, StatusCode::UNAUTHORIZED);
    }
}

/// Mints an HS256 token the way the server does, to test signature and expiry checks.
fn jwt(secret: &[u8], sub: i64, ver: i64, exp_in: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": sub.to_string(), "ver": ver, "iat": now, "exp": now + exp_in});
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(secret))
        .unwrap()
}
