//! Friends over real HTTP and WebSockets on both backend sets: requests, acceptance, rejection, removal, and
//! the events each sends to the other user's devices.

use crate::common::{uniq, TestEnv};
use reqwest::StatusCode;
use serde_json::json;

backend_tests! {
    async fn a_friend_request_is_pushed_accepted_and_both_sides_are_told(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("fa")).await;
        let (b, tb) = node.user(&uniq("fb")).await;
        let mut b_phone = node.ws(&tb, "phone").await;
        let mut a_phone = node.ws(&ta, "phone").await;
        b_phone.recv_type("sync").await;
        a_phone.recv_type("sync").await;

        let r = node.post("/api/friends/request", Some(&ta), json!({"to_user_id": b, "message": "hi, it's A"})).await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.body["status"], "pending");
        assert_eq!(r.body["from_user"]["id"], a);
        assert_eq!(r.body["to_user"]["id"], b);
        assert_eq!(r.body["message"], "hi, it's A");
        let ev = b_phone.recv_type("friend_request").await;
        assert_eq!(ev["request"]["id"], r.body["id"]);

        let again = node.post("/api/friends/request", Some(&ta), json!({"to_user_id": b})).await;
        assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "request_pending"));

        let inc = node.get("/api/friends/requests?direction=incoming", &tb).await;
        assert_eq!(inc.body.as_array().unwrap().len(), 1);
        let out = node.get("/api/friends/requests?direction=outgoing", &ta).await;
        assert_eq!(out.body[0]["id"], r.body["id"]);
        assert_eq!(node.get("/api/friends/requests", &ta).await.body.as_array().unwrap().len(), 0, "default is incoming");

        // Only the addressee may answer.
        let steal = node.post("/api/friends/accept", Some(&ta), json!({"request_id": r.body["id"]})).await;
        assert_eq!((steal.status, steal.code()), (StatusCode::NOT_FOUND, "request_not_found"));
        let ok = node.post("/api/friends/accept", Some(&tb), json!({"request_id": r.body["id"]})).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.body["friend"]["id"], a);
        assert_eq!(a_phone.recv_type("friend_accepted").await["friend"]["id"], b);
        assert_eq!(b_phone.recv_type("friend_accepted").await["friend"]["id"], a);
        let twice = node.post("/api/friends/accept", Some(&tb), json!({"request_id": r.body["id"]})).await;
        assert_eq!((twice.status, twice.code()), (StatusCode::CONFLICT, "request_not_pending"));

        assert_eq!(node.get("/api/friends", &ta).await.body[0]["id"], b);
        assert_eq!(node.get("/api/friends", &tb).await.body[0]["id"], a);
        let dup = node.post("/api/friends/request", Some(&tb), json!({"to_user_id": a})).await;
        assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "already_friends"));

        let del = node.delete(&format!("/api/friends/{a}"), &tb).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT);
        assert_eq!(a_phone.recv_type("friend_removed").await["user_id"], b);
        assert!(node.get("/api/friends", &ta).await.body.as_array().unwrap().is_empty(), "removed on both sides");
        let gone = node.delete(&format!("/api/friends/{a}"), &tb).await;
        assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "friend_not_found"));
    }

    async fn asking_someone_who_already_asked_you_accepts_their_request(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("xa")).await;
        let (b, tb) = node.user(&uniq("xb")).await;
        let first = node.post("/api/friends/request", Some(&ta), json!({"to_user_id": b})).await;
        let back = node.post("/api/friends/request", Some(&tb), json!({"to_user_id": a})).await;
        assert_eq!(back.status, StatusCode::CREATED);
        assert_eq!(back.body["id"], first.body["id"], "the reply is A's request");
        assert_eq!(back.body["status"], "accepted");
        assert_eq!(node.get("/api/friends", &ta).await.body[0]["id"], b);
    }

    async fn rejected_requests_make_no_friendship_and_bad_requests_get_codes(backend) {
        let env = TestEnv::new(backend).await;
        let node = env.node().await;
        let (a, ta) = node.user(&uniq("ra")).await;
        let (b, tb) = node.user(&uniq("rb")).await;
        let r = node.post("/api/friends/request", Some(&ta), json!({"to_user_id": b})).await;
        let rej = node.post("/api/friends/reject", Some(&tb), json!({"request_id": r.body["id"]})).await;
        assert_eq!(rej.status, StatusCode::NO_CONTENT);
        assert!(node.get("/api/friends", &tb).await.body.as_array().unwrap().is_empty());
        let out = node.get("/api/friends/requests?direction=outgoing", &ta).await;
        assert_eq!(out.body[0]["status"], "rejected");
        // A may ask again after a rejection.
        assert_eq!(node.post("/api/friends/request", Some(&ta), json!({"to_user_id": b})).await.status, StatusCode::CREATED);

        let me = node.post("/api/friends/request", Some(&ta), json!({"to_user_id": a})).await;
        assert_eq!((me.status, me.code()), (StatusCode::FORBIDDEN, "cannot_befriend_self"));
        let ghost = node.post("/api/friends/request", Some(&ta), json!({"to_user_id": 999_999_999})).await;
        assert_eq!((ghost.status, ghost.code()), (StatusCode::NOT_FOUND, "user_not_found"));
        let long = node.post("/api/friends/request", Some(&tb), json!({"to_user_id": a, "message": "x".repeat(201)})).await;
        assert_eq!((long.status, long.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_message"));
        let bad = node.get("/api/friends/requests?direction=sideways", &ta).await;
        assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_parameter"));
        let bad = node.post("/api/friends/accept", Some(&tb), json!({"request_id": "one"})).await;
        assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_body"));
        let bad = node.delete("/api/friends/abc", &ta).await;
        assert_eq!((bad.status, bad.code()), (StatusCode::BAD_REQUEST, "invalid_parameter"));
        let unknown = node.post("/api/friends/reject", Some(&tb), json!({"request_id": 424242})).await;
        assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "request_not_found"));
    }
}
