//! Cluster mode only (Postgres + Redis, several nodes in one process): the delivery contract holds when Redis
//! loses what it held or drops the nodes' connections. Each test uses a Redis database of its own, so flushing
//! and killing connections touches nothing else the suite runs.

use std::time::Duration;

use crate::common::{redis_url, uniq, Backend, TestEnv, TestNode};
use serde_json::Value;

/// The suite's Redis (whose URL names no database), database `db`.
fn redis_db(db: u8) -> String {
    format!("{}/{db}", redis_url().trim_end_matches('/'))
}

async fn redis_conn(db: u8) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_db(db)).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn cluster_node(env: &TestEnv, db: u8) -> TestNode {
    env.node_with(&[("GOCHAT_REDIS_URL", &redis_db(db))]).await
}

fn seqs(ms: &[Value]) -> Vec<i64> {
    ms.iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}

/// Kills the pub/sub connections of the nodes using Redis database `db`.
async fn kill_subscribers(db: u8) -> usize {
    let mut conn = redis_conn(0).await;
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut conn).await.unwrap();
    let mut killed = 0;
    for line in list.lines() {
        let field = |k: &str| line.split(' ').find_map(|f| f.strip_prefix(k)).unwrap_or("");
        let subs: u32 = field("sub=").parse().unwrap_or(0);
        if subs > 0 && field("db=") == db.to_string() {
            let _: redis::RedisResult<()> =
                redis::cmd("CLIENT").arg("KILL").arg("ID").arg(field("id=")).query_async(&mut conn).await;
            killed += 1;
        }
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_inbox_stream_deleted_or_redis_flushed_an_offline_user_still_gets_everything() {
    const DB: u8 = 13;
    let env = TestEnv::new(Backend::Postgres).await;
    let n1 = cluster_node(&env, DB).await;
    let n2 = cluster_node(&env, DB).await;
    let (a, ta) = n1.user(&uniq("ra")).await;
    let (b, tb) = n1.user(&uniq("rb")).await;
    n1.befriend((a, &ta), (b, &tb)).await;
    let mut redis = redis_conn(DB).await;
    let key = format!("{}inbox:{b}", env.redis_prefix);

    for i in 0..300 {
        n1.send_text(&ta, b, &format!("first {i}")).await;
    }
    let len: usize = redis::cmd("XLEN").arg(&key).query_async(&mut redis).await.unwrap();
    assert_eq!(len, 300, "the hot inbox holds the messages");
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut redis).await.unwrap();
    let mut ws = n2.ws(&tb, "phone").await;
    let got = ws.collect(300).await;
    assert_eq!(seqs(&got), (1..=300).collect::<Vec<_>>(), "a deleted stream falls back to Postgres");
    drop(ws);

    for i in 0..300 {
        n2.send_text(&ta, b, &format!("second {i}")).await;
    }
    let _: () = redis::cmd("FLUSHDB").query_async(&mut redis).await.unwrap();
    let mut ws = n1.ws(&tb, "phone").await;
    let got = ws.collect(300).await;
    assert_eq!(seqs(&got), (301..=600).collect::<Vec<_>>(), "a flushed Redis loses nothing");

    // And a partly trimmed stream (its oldest entries gone) still yields a gapless run.
    drop(ws);
    for i in 0..50 {
        n1.send_text(&ta, b, &format!("third {i}")).await;
    }
    let _: () = redis::cmd("XTRIM").arg(&key).arg("MAXLEN").arg(20).query_async(&mut redis).await.unwrap();
    let mut ws = n2.ws(&tb, "phone").await;
    assert_eq!(seqs(&ws.collect(50).await), (601..=650).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscriber_connection_is_restored_and_its_sessions_resync() {
    const DB: u8 = 14;
    let env = TestEnv::new(Backend::Postgres).await;
    let n1 = cluster_node(&env, DB).await;
    let n2 = cluster_node(&env, DB).await;
    let (a, ta) = n1.user(&uniq("ka")).await;
    let (b, tb) = n1.user(&uniq("kb")).await;
    n1.befriend((a, &ta), (b, &tb)).await;
    let mut ws = n2.ws(&tb, "phone").await;
    ws.recv_type("sync").await;
    n1.send_text(&ta, b, "before").await;
    assert_eq!(ws.collect(1).await[0]["text"], "before");

    let errors_before = n2.metric("gochat_bus_errors_total", "");
    assert!(kill_subscribers(DB).await >= 1);
    // A lost bus degrades the node, it does not take it out of the load balancer.
    let r = n2.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.body);
    // Published while node 2 is reconnecting: some of these are lost by pub/sub, none by the node.
    for i in 0..20 {
        n1.send_text(&ta, b, &format!("during {i}")).await;
    }
    let got = ws.collect(20).await;
    assert_eq!(seqs(&got), (2..=21).collect::<Vec<_>>(), "every message, in order, via resync");
    assert!(n2.metric("gochat_bus_errors_total", "") > errors_before, "the loss was noticed");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = n2.call(reqwest::Method::GET, "/readyz", None, None).await;
        if r.status == reqwest::StatusCode::OK {
            assert_eq!(r.body["checks"]["bus (redis)"], "ok");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node 2 never became ready again: {}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n1.send_text(&ta, b, "after").await;
    assert_eq!(ws.collect(1).await[0]["text"], "after", "live delivery works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_closes_its_sockets_with_1012_and_clients_resume_on_another() {
    let env = TestEnv::new(Backend::Postgres).await;
    let n1 = env.node().await;
    let n2 = env.node().await;
    let (a, ta) = n1.user(&uniq("sa")).await;
    let (b, tb) = n1.user(&uniq("sb")).await;
    n1.befriend((a, &ta), (b, &tb)).await;
    let mut ws = n2.ws(&tb, "phone").await;
    ws.recv_type("sync").await;
    n1.send_text(&ta, b, "one").await;
    ws.collect(1).await;
    n1.send_text(&ta, b, "two (never acked)").await;
    ws.recv_type("message").await;
    n2.stop().await;
    let code = ws.closed_within(Duration::from_secs(5)).await.expect("closed by the stopping node");
    assert_eq!(code, Some(1012));
    n1.send_text(&ta, b, "three").await;
    let mut again = n1.ws(&tb, "phone").await;
    let got = again.collect(2).await;
    assert_eq!(seqs(&got), vec![2, 3], "resumes from the cursor on another node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_messages_that_overtake_each_other_reach_the_socket_in_seq_order_and_a_gap_is_never_papered_over() {
    let env = TestEnv::new(Backend::Postgres).await;
    let node = env.node().await;
    let (a, ta) = node.user(&uniq("oa")).await;
    let (b, tb) = node.user(&uniq("ob")).await;
    node.befriend((a, &ta), (b, &tb)).await;
    let mut ws = node.ws(&tb, "phone").await;
    ws.recv_type("sync").await;
    node.send_text(&ta, b, "one").await;
    let first = ws.recv_type("message").await;
    assert_eq!(first["message"]["seq"], 1);

    // Two publishes racing: seq 3 reaches the node before seq 2 (as when two senders' publishes cross).
    let frame = |seq: i64| {
        let mut m = first["message"].clone();
        m["seq"] = seq.into();
        m["id"] = (first["message"]["id"].as_i64().unwrap() + 1000 + seq).into();
        m["text"] = format!("forged {seq}").into();
        // As the server writes it: `type` first.
        format!(r#"{{"type":"message","message":{m}}}"#)
    };
    let channel = format!("{}user:{b}", env.redis_prefix);
    let mut redis = redis_conn(0).await;
    let publish = |seqs: Vec<i64>| {
        let mut pipe = redis::pipe();
        for s in seqs {
            pipe.cmd("PUBLISH").arg(&channel).arg(frame(s)).ignore();
        }
        pipe
    };
    let _: () = publish(vec![3, 2]).query_async(&mut redis).await.unwrap();
    let got: Vec<Value> = vec![ws.recv().await, ws.recv().await];
    assert_eq!(got.iter().map(|f| f["type"].as_str().unwrap()).collect::<Vec<_>>(), ["message", "message"]);
    assert_eq!(got.iter().map(|f| f["message"]["seq"].as_i64().unwrap()).collect::<Vec<_>>(), [2, 3]);

    // Seq 5 without seq 4: held, then the session asks the store, which has nothing after seq 1; seq 5 is
    // never written out of turn.
    let _: () = publish(vec![5]).query_async(&mut redis).await.unwrap();
    assert!(ws.recv_within(Duration::from_millis(400)).await.is_none(), "nothing is written past a gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_socket_on_the_sending_node_arrives_once_although_it_also_comes_back_over_redis() {
    let env = TestEnv::new(Backend::Postgres).await;
    let node = env.node().await;
    let other = env.node().await;
    let (a, ta) = node.user(&uniq("la")).await;
    let (b, tb) = node.user(&uniq("lb")).await;
    node.befriend((a, &ta), (b, &tb)).await;
    let mut here = node.ws(&tb, "phone").await;
    let mut there = other.ws(&tb, "laptop").await;
    here.recv_type("sync").await;
    there.recv_type("sync").await;
    for i in 0..20 {
        node.send_text(&ta, b, &format!("m{i}")).await;
    }
    for ws in [&mut here, &mut there] {
        let mut got = Vec::new();
        while let Some(f) = ws.recv_within(Duration::from_millis(500)).await {
            if f["type"] == "message" {
                got.push(f["message"].clone());
            }
        }
        assert_eq!(seqs(&got), (1..=20).collect::<Vec<_>>(), "each message exactly once, in order");
    }
}

/// Presence across two nodes: a user online on one is seen online from the other; and a node killed without
/// a chance to say goodbye takes its users offline within 60 s (here, with a 3 s TTL, within a few seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_nodes_and_a_killed_nodes_users_go_offline() {
    let env = crate::common::TestEnv::new(crate::common::Backend::Postgres).await;
    let settings = [("GOCHAT_PRESENCE_GRACE", "200ms"), ("GOCHAT_PRESENCE_TTL", "3s")];
    let one = env.node_with(&settings).await;
    let (a, ta) = one.user(&crate::common::uniq("ka")).await;
    let (b, tb) = one.user(&crate::common::uniq("kb")).await;
    one.befriend((a, &ta), (b, &tb)).await;
    let mut watcher = one.ws(&tb, "watcher").await;

    // The binary in its own process, as a second node of the cluster, then killed with SIGKILL.
    let mut child = crate::common::NodeProcess::spawn(&env, &settings).await;
    let two = &child.node;
    let _socket = two.ws(&ta, "phone").await;
    let f = crate::people::next_of(&mut watcher, "presence").await;
    assert_eq!((f["user_id"].as_i64(), f["online"].as_bool()), (Some(a), Some(true)), "seen from the other node");
    assert_eq!(one.get(&format!("/api/presence?user_ids={a}"), &tb).await.body[0]["online"], true);

    let killed = tokio::time::Instant::now();
    child.kill();
    let f = tokio::time::timeout(Duration::from_secs(60), crate::people::next_of(&mut watcher, "presence"))
        .await
        .expect("offline within 60 s");
    assert_eq!((f["user_id"].as_i64(), f["online"].as_bool()), (Some(a), Some(false)), "{f}");
    assert!(killed.elapsed() < Duration::from_secs(15), "with a 3 s TTL it takes seconds: {:?}", killed.elapsed());
    assert_eq!(one.get(&format!("/api/presence?user_ids={a}"), &tb).await.body[0]["online"], false);
}

/// A Postgres outage (the node's connections dropped, new ones refused): REST answers 503 `unavailable` with
/// `Retry-After` within seconds, never 500, a send over the socket gets an `error` frame with that code,
/// `/readyz` turns 503 within a second, and everything comes back by itself when the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_503_unavailable_and_service_resumes_by_itself() {
    let env = TestEnv::new(Backend::Postgres).await;
    let (proxy, proxied) = crate::common::proxy::TcpProxy::in_front_of(&env.database_url).await;
    let node = env.node_with(&[("GOCHAT_DATABASE_URL", proxied.as_str())]).await;
    let (a, ta) = node.user(&uniq("oa")).await;
    let (b, tb) = node.user(&uniq("ob")).await;
    node.befriend((a, &ta), (b, &tb)).await;
    let mut ws = node.ws(&ta, "phone").await;
    ws.recv_type("sync").await;
    let send = |text: &str| {
        node.http
            .post(node.url("/api/messages/send"))
            .bearer_auth(&ta)
            .json(&serde_json::json!({"to_user_id": b, "type": "text", "text": text}))
            .send()
    };
    assert_eq!(send("before").await.unwrap().status(), 201);

    proxy.cut();
    for text in ["during 1", "during 2"] {
        let started = std::time::Instant::now();
        let r = send(text).await.unwrap();
        assert_eq!(r.status(), 503, "{text}");
        assert!(r.headers().get("retry-after").is_some(), "Retry-After");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "unavailable", "{body}");
        assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    }
    let started = std::time::Instant::now();
    let ready = node.http.get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(1500), "/readyz answered in {:?}", started.elapsed());
    ws.send(serde_json::json!({"type": "send", "message": {"to_user_id": b, "type": "text", "text": "over the socket", "client_msg_id": "ws-1"}})).await;
    let error = crate::people::next_of(&mut ws, "error").await;
    assert_eq!(error["code"], "unavailable", "{error}");

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = send("after").await.unwrap();
        if r.status() == 201 {
            break;
        }
        assert_eq!(r.status(), 503, "only 503 while it comes back");
        assert!(tokio::time::Instant::now() < deadline, "service did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(node.http.get(node.url("/readyz")).send().await.unwrap().status(), 200);
}

/// A frozen Redis (connections open, nothing answered: a stopped process or a partition that drops packets) holds
/// up neither a new socket nor its catch-up: the subscription stops waiting after 2 s and the inbox read after 1 s,
/// and the messages come from the database. Before, the socket waited for Redis as long as it was frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_holds_up_neither_a_new_socket_nor_its_catch_up() {
    let env = TestEnv::new(Backend::Postgres).await;
    let (proxy, proxied) = crate::common::proxy::TcpProxy::in_front_of(&redis_url()).await;
    let node = env.node_with(&[("GOCHAT_REDIS_URL", proxied.as_str())]).await;
    let (a, ta) = node.user(&uniq("fa")).await;
    let (b, tb) = node.user(&uniq("fb")).await;
    node.befriend((a, &ta), (b, &tb)).await;
    for text in ["one", "two", "three"] {
        node.send_text(&ta, b, text).await;
    }
    // The inbox copies go out on the node's Redis writer just after the commits.
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.freeze();
    let started = std::time::Instant::now();
    let mut phone = node.ws(&tb, "phone").await;
    let got = phone.collect(3).await;
    let took = started.elapsed();
    let texts: Vec<&str> = got.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(took < Duration::from_secs(5), "caught up in {took:?} with Redis frozen");
    proxy.thaw();
}

/// TLS to the engines, as managed Postgres and Redis services require: a node connects to Postgres with
/// `sslmode=verify-full` and to Redis over `rediss://` (each checking the server's certificate against the given
/// CA), its database connections are encrypted, and a server whose certificate is for another name is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_postgres_and_redis_over_verified_tls_and_refuses_a_certificate_for_another_name() {
    use sqlx::Connection;
    let ca = std::env::var("GOCHAT_TEST_TLS_CA").expect("GOCHAT_TEST_TLS_CA (scripts/test.sh provisions it)");
    let redis_port = std::env::var("GOCHAT_TEST_REDIS_TLS_PORT").expect("GOCHAT_TEST_REDIS_TLS_PORT");
    let env = TestEnv::new(Backend::Postgres).await;
    // The test certificate names `localhost` only.
    let database = |host: &str| {
        let mut url = url::Url::parse(&env.database_url).unwrap();
        url.set_host(Some(host)).unwrap();
        url.query_pairs_mut().append_pair("sslmode", "verify-full").append_pair("sslrootcert", &ca);
        url.to_string()
    };
    let redis = |host: &str| format!("rediss://{host}:{redis_port}/");
    let build = |settings: Vec<(&'static str, String)>| {
        let mut pairs = env.config_pairs();
        for (k, v) in settings {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k.to_string(), v));
        }
        async move { gochat::startup::Application::build(gochat::config::Config::from_pairs(pairs).unwrap()).await }
    };

    let node = env
        .node_with(&[
            ("GOCHAT_DATABASE_URL", &database("localhost")),
            ("GOCHAT_REDIS_URL", &redis("localhost")),
            ("GOCHAT_REDIS_CA_FILE", &ca),
        ])
        .await;
    let (a, ta) = node.user(&uniq("ta")).await;
    let (b, tb) = node.user(&uniq("tb")).await;
    node.befriend((a, &ta), (b, &tb)).await;
    let mut ws = node.ws(&tb, "phone").await;
    ws.recv_type("sync").await;
    node.send_text(&ta, b, "over tls").await;
    assert_eq!(ws.collect(1).await[0]["text"], "over tls", "stored in Postgres, delivered over Redis, both over TLS");
    let ready = node.call(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.body["checks"]["bus (redis)"], "ok", "{}", ready.body);
    let mut check = sqlx::PgConnection::connect(&database("localhost")).await.unwrap();
    let (encrypted, plain): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
         FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
         WHERE a.datname = current_database() AND a.backend_type = 'client backend'",
    )
    .fetch_one(&mut check)
    .await
    .unwrap();
    assert!(encrypted >= 2 && plain == 0, "the node's connections are encrypted: {encrypted} TLS, {plain} plain");

    // The same servers by address: their certificates do not name it, so verification refuses them.
    let refused = build(vec![("GOCHAT_DATABASE_URL", database("127.0.0.1"))]).await;
    assert!(refused.is_err(), "Postgres with a certificate for another name");
    let refused = build(vec![
        ("GOCHAT_DATABASE_URL", database("localhost")),
        ("GOCHAT_REDIS_URL", redis("127.0.0.1")),
        ("GOCHAT_REDIS_CA_FILE", ca.clone()),
    ])
    .await;
    assert!(refused.is_err(), "Redis with a certificate for another name");
}
