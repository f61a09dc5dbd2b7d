//! One conformance suite for each of the `Bus`, `Inbox` and `MediaStore` traits, run against every
//! implementation: the in-process bus, the database inbox and local disk (embedded); the Redis bus, the
//! Redis-streams inbox and S3 (cluster). The store traits have theirs in `store_conformance.rs`.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{Backend, TestEnv};
use futures_util::StreamExt;
use gochat::bus::{Bus, MemoryBus, RedisBus, RedisWriter};
use gochat::config::S3Config;
use gochat::domain::frame::ServerFrame;
use gochat::domain::ConversationId;
use gochat::inbox::{DatabaseInbox, Inbox, RedisInbox, Want};
use gochat::media::{LocalMedia, MediaStore, S3Media};
use gochat::metrics::Metrics;
use gochat::store::{NewMessage, NewUser, Stores};
use gochat::ws::hub::{Delivery, Hub, Outbound};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

/// The bus of the backend set, its hub, and what keeps it running (dropping it stops the bus).
async fn bus_for(env: &TestEnv) -> (Arc<dyn Bus>, Hub, DropGuard) {
    let metrics = Metrics::new();
    let hub = Hub::new(metrics.clone(), gochat::service::auth::TokenVersions::default());
    let stop = CancellationToken::new();
    let bus: Arc<dyn Bus> = match env.backend {
        Backend::Sqlite => Arc::new(MemoryBus::new(hub.clone())),
        Backend::Postgres => {
            let client = redis::Client::open(crate::common::redis_url()).unwrap();
            let conn = redis::aio::ConnectionManager::new(client.clone()).await.unwrap();
            let writer = RedisWriter::start(conn, metrics.clone());
            let tasks = TaskTracker::new();
            let bus = RedisBus::start(client, writer, &env.redis_prefix, hub.clone(), metrics, stop.clone(), &tasks);
            Arc::new(bus)
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !bus.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "bus never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (bus, hub, stop.drop_guard())
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<Outbound>) -> Option<String> {
    match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
        Ok(Some(Outbound::Deliver(d))) => Some(d.json.to_string()),
        _ => None,
    }
}

async fn inbox_for(env: &TestEnv, stores: &Stores) -> Arc<dyn Inbox> {
    let db = DatabaseInbox::new(stores.messages.clone());
    match env.backend {
        Backend::Sqlite => Arc::new(db),
        Backend::Postgres => {
            let client = redis::Client::open(crate::common::redis_url()).unwrap();
            let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
            let writer = RedisWriter::start(conn.clone(), Metrics::new());
            Arc::new(RedisInbox::new(conn, writer, &env.redis_prefix, db, Metrics::new()))
        }
    }
}

fn text(from: i64, to: i64, body: &str) -> NewMessage {
    NewMessage {
        conversation_id: ConversationId::direct(from, to),
        from_user_id: from,
        to_user_id: Some(to),
        group_id: None,
        kind: "text",
        body: Some(body.into()),
        file_id: None,
        client_msg_id: None,
        reply_to_id: None,
        meta: None,
        mentions: Vec::new(),
        forwarded: false,
        item_files: Vec::new(),
    }
}

async fn users(stores: &Stores, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let u = stores
            .users
            .create_user(NewUser { username: format!("u{i}"), nickname: "n".into(), sex: 0, password_hash: "h".into() })
            .await
            .unwrap();
        ids.push(u.id);
    }
    // Everyone befriends everyone: direct messages are only appended between friends.
    for (i, &a) in ids.iter().enumerate() {
        for &b in &ids[i + 1..] {
            let r = stores.friends.create_request(a, b, "hi").await.unwrap();
            stores.friends.accept_request(r.id).await.unwrap().unwrap();
        }
    }
    ids
}

async fn media_for(env: &TestEnv) -> Arc<dyn MediaStore> {
    match env.backend {
        Backend::Sqlite => Arc::new(LocalMedia::new(env.dir.path().join("media")).unwrap()),
        Backend::Postgres => {
            let var = |k: &str| std::env::var(k).expect("run the suite with scripts/test.sh");
            let cfg = S3Config {
                endpoint: var("GOCHAT_TEST_S3_ENDPOINT"),
                bucket: env.bucket(),
                access_key: var("GOCHAT_TEST_S3_ACCESS_KEY"),
                secret_key: var("GOCHAT_TEST_S3_SECRET_KEY").into(),
                region: "us-east-1".into(),
            };
            Arc::new(S3Media::connect(&cfg).await.unwrap())
        }
    }
}

async fn read_all(store: &Arc<dyn MediaStore>, key: &str, range: Option<(u64, u64)>) -> Vec<u8> {
    let mut s = store.get(key, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

backend_tests! {
    async fn the_media_store_keeps_files_serves_ranges_and_deletes(backend) {
        let env = TestEnv::new(backend).await;
        let store = media_for(&env).await;
        store.ping().await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let tmp = env.dir.path().join("upload.tmp");
        std::fs::write(&tmp, &data).unwrap();
        store.put_file("ab/0123456789abcdef", &tmp, "image/png", data.len() as u64).await.unwrap();
        assert!(!tmp.exists(), "the temp file is consumed");
        assert_eq!(read_all(&store, "ab/0123456789abcdef", None).await, data);
        assert_eq!(read_all(&store, "ab/0123456789abcdef", Some((1000, 1999))).await, &data[1000..2000]);
        assert_eq!(read_all(&store, "ab/0123456789abcdef", Some((299_999, 299_999))).await, &data[299_999..]);
        store.delete("ab/0123456789abcdef").await.unwrap();
        assert!(store.get("ab/0123456789abcdef", None).await.is_err(), "gone after delete");
        store.delete("ab/0123456789abcdef").await.unwrap();
    }

    async fn the_bus_delivers_to_subscribed_users_only_and_each_of_their_sessions(backend) {
        let env = TestEnv::new(backend).await;
        let (bus, hub, _stop) = bus_for(&env).await;
        let mut phone = hub.register(7, 0);
        let mut laptop = hub.register(7, 0);
        let mut other = hub.register(9, 0);
        bus.subscribe(7).await;
        bus.subscribe(9).await;
        let frame = ServerFrame::FriendRemoved { user_id: 1 };
        bus.publish(&[7, 8], &Delivery::from_frame(&frame)).await;
        assert_eq!(next(&mut phone.rx).await.as_deref(), Some(r#"{"type":"friend_removed","user_id":1}"#));
        assert!(next(&mut laptop.rx).await.is_some(), "every session of the user");
        assert!(next(&mut other.rx).await.is_none(), "not other users");
        bus.publish(&[], &Delivery::from_frame(&frame)).await;
        // After the user's sockets are gone and the channel released, nothing arrives for them here.
        drop(phone);
        drop(laptop);
        bus.release(7);
        bus.publish(&[7, 9], &Delivery::from_frame(&frame)).await;
        assert!(next(&mut other.rx).await.is_some());
        assert_eq!(hub.connections(), 1);
    }

    async fn a_delivery_to_many_users_reaches_exactly_the_listed_ones_held_here(backend) {
        // Past the fan-out threshold the Redis bus sends one copy over its fan-out channel instead of one per user.
        let env = TestEnv::new(backend).await;
        let (bus, hub, _stop) = bus_for(&env).await;
        let listed: Vec<i64> = (100..140).collect();
        let mut held: Vec<_> = [100, 117, 139].iter().map(|&u| hub.register(u, 0)).collect();
        let mut outsider = hub.register(5, 0);
        for r in &held {
            bus.subscribe(r.user_id).await;
        }
        bus.subscribe(5).await;
        let frame = ServerFrame::Typing { conversation_id: "g:1".into(), user_id: 3 };
        bus.publish(&listed, &Delivery::from_frame(&frame)).await;
        for r in &mut held {
            assert_eq!(next(&mut r.rx).await.as_deref(), Some(r#"{"type":"typing","conversation_id":"g:1","user_id":3}"#));
            assert!(next(&mut r.rx).await.is_none(), "exactly once");
        }
        assert!(next(&mut outsider.rx).await.is_none(), "not a user who is not listed");
    }

    async fn deliveries_arrive_in_the_order_they_were_published_and_a_flush_waits_for_them(backend) {
        // Publishes are queued and pipelined (Redis); whatever their batching, one user sees them in publish
        // order, per-user channels and the fan-out channel alike, and a flush returns only after they all left.
        let env = TestEnv::new(backend).await;
        let (bus, hub, _stop) = bus_for(&env).await;
        let mut session = hub.register(42, 0);
        bus.subscribe(42).await;
        let crowd: Vec<i64> = (40..60).collect();
        for i in 0..200 {
            let frame = ServerFrame::Typing { conversation_id: format!("g:{i}"), user_id: 1 };
            let to = if i % 3 == 0 { &crowd[..] } else { &[42][..] };
            bus.publish(to, &Delivery::from_frame(&frame)).await;
        }
        bus.flush().await;
        for i in 0..200 {
            let got = next(&mut session.rx).await.unwrap_or_else(|| panic!("delivery {i} never arrived"));
            assert!(got.contains(&format!(r#""conversation_id":"g:{i}""#)), "delivery {i} out of order: {got}");
        }
        assert!(next(&mut session.rx).await.is_none(), "each exactly once");
    }

    async fn the_inbox_serves_group_messages_gaplessly_and_loses_none_without_its_hot_copy(backend) {
        let env = TestEnv::new(backend).await;
        let stores = Stores::open(&env.database_url, 4).await.unwrap();
        let inbox = inbox_for(&env, &stores).await;
        let u = users(&stores, 3).await;
        let g = stores.groups.create_group("g", u[0], &[u[1], u[2]]).await.unwrap();
        let conversation = ConversationId::group(g.id);
        for i in 0..25 {
            let new = NewMessage {
                conversation_id: conversation,
                to_user_id: None,
                group_id: Some(g.id),
                ..text(u[i % 3], u[(i + 1) % 3], &format!("g{i}"))
            };
            let m = stores.messages.append(new).await.unwrap();
            assert_eq!(m.recipients.len(), 3);
            inbox.append(&m.recipients, &m.message).await;
        }
        // A direct message to the same user rides along in the same read.
        let d = stores.messages.append(text(u[0], u[1], "direct")).await.unwrap();
        inbox.append(&d.recipients, &d.message).await;
        inbox.flush().await;
        let cid = conversation.to_string();
        if env.is_cluster() {
            // Flushed: the hot copy holds the group's messages once (one stream for the group, not one per member).
            let mut r = env.redis().await;
            let len: usize = redis::cmd("XLEN").arg(format!("{}inbox:{cid}", env.redis_prefix)).query_async(&mut r).await.unwrap();
            assert_eq!(len, 25);
        }
        let wants = [
            Want { conversation_id: cid.clone(), after: 10, upto: 25 },
            Want { conversation_id: ConversationId::direct(u[0], u[1]).to_string(), after: 0, upto: 1 },
        ];
        let got = inbox.read(u[1], &wants, 100).await.unwrap();
        let seqs: Vec<i64> = got.iter().filter(|m| m.conversation_id == cid).map(|m| m.seq).collect();
        assert_eq!(seqs, (11..=25).collect::<Vec<_>>());
        assert_eq!(got.len(), 16);
        if env.is_cluster() {
            let mut r = env.redis().await;
            let _: () = redis::cmd("DEL").arg(format!("{}inbox:{cid}", env.redis_prefix)).query_async(&mut r).await.unwrap();
        }
        let got = inbox.read(u[2], &[Want { conversation_id: cid.clone(), after: 0, upto: 25 }], 7).await.unwrap();
        assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    }

    async fn the_inbox_returns_gapless_runs_oldest_first_within_the_limit(backend) {
        let env = TestEnv::new(backend).await;
        let stores = Stores::open(&env.database_url, 4).await.unwrap();
        let inbox = inbox_for(&env, &stores).await;
        let u = users(&stores, 3).await;
        let (a, b, c) = (u[0], u[1], u[2]);
        for i in 0..30 {
            let (from, to) = if i % 3 == 0 { (c, b) } else { (a, b) };
            let m = stores.messages.append(text(from, to, &format!("m{i}"))).await.unwrap();
            inbox.append(&m.recipients, &m.message).await;
        }
        inbox.flush().await;
        let ab = ConversationId::direct(a, b).to_string();
        let cb = ConversationId::direct(c, b).to_string();
        let wants = vec![
            Want { conversation_id: ab.clone(), after: 0, upto: 20 },
            Want { conversation_id: cb.clone(), after: 0, upto: 10 },
        ];
        let all = inbox.read(b, &wants, 100).await.unwrap();
        assert_eq!(all.len(), 30);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id), "oldest first");
        let page = inbox.read(b, &wants, 7).await.unwrap();
        assert_eq!(page.len(), 7);
        for conv in [&ab, &cb] {
            let seqs: Vec<i64> = page.iter().filter(|m| &m.conversation_id == conv).map(|m| m.seq).collect();
            assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "a gapless run from the cursor");
        }
        let tail = inbox.read(b, &[Want { conversation_id: ab.clone(), after: 15, upto: 20 }], 100).await.unwrap();
        assert_eq!(tail.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![16, 17, 18, 19, 20]);
        assert!(inbox.read(b, &[], 100).await.unwrap().is_empty());
    }

    async fn the_inbox_loses_nothing_when_its_hot_copy_is_gone(backend) {
        let env = TestEnv::new(backend).await;
        let stores = Stores::open(&env.database_url, 4).await.unwrap();
        let inbox = inbox_for(&env, &stores).await;
        let u = users(&stores, 2).await;
        for i in 0..12 {
            let m = stores.messages.append(text(u[0], u[1], &format!("x{i}"))).await.unwrap();
            // Only some appends reach the hot copy (as when Redis was briefly away).
            if i % 4 != 1 {
                inbox.append(&m.recipients, &m.message).await;
            }
        }
        inbox.flush().await;
        let want = [Want { conversation_id: ConversationId::direct(u[0], u[1]).to_string(), after: 0, upto: 12 }];
        let got = inbox.read(u[1], &want, 100).await.unwrap();
        assert_eq!(got.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
        if env.is_cluster() {
            let mut r = env.redis().await;
            let _: () = redis::cmd("DEL").arg(format!("{}inbox:{}", env.redis_prefix, u[1])).query_async(&mut r).await.unwrap();
        }
        let got = inbox.read(u[1], &want, 100).await.unwrap();
        assert_eq!(got.len(), 12);
    }
}
