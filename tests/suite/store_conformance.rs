//! One conformance suite for every store implementation: each test runs against SQLite and Postgres and must
//! observe the same behaviour through the store traits.

use crate::common::TestEnv;
use gochat::domain::group::{GroupChange, Refusal};
use gochat::domain::ConversationId;
use gochat::store::{GroupChanged, NewFile, NewMessage, NewUser, StoreError, Stores};

async fn stores(env: &TestEnv) -> Stores {
    Stores::open(&env.database_url, 4).await.expect("store opens and migrates")
}

fn new_user(name: &str) -> NewUser {
    NewUser { username: name.into(), nickname: "Nick".into(), sex: 1, password_hash: "$argon2id$fake".into() }
}

async fn three(s: &Stores) -> (i64, i64, i64) {
    let mut ids = Vec::new();
    for n in ["ann", "ben", "cat"] {
        ids.push(s.users.create_user(new_user(n)).await.unwrap().id);
    }
    (ids[0], ids[1], ids[2])
}

async fn befriend(s: &Stores, a: i64, b: i64) {
    let r = s.friends.create_request(a, b, "hi").await.unwrap();
    s.friends.accept_request(r.id).await.unwrap().unwrap();
}

/// Makes a group change (at most 10 members) and returns what the store did.
async fn change(s: &Stores, group: i64, actor: i64, change: GroupChange) -> GroupChanged {
    s.groups.change(group, actor, &change, 10).await.unwrap()
}

fn msg(conv: ConversationId, from: i64, to: Option<i64>, cid: Option<&str>) -> NewMessage {
    NewMessage {
        conversation_id: conv,
        from_user_id: from,
        to_user_id: to,
        group_id: if let ConversationId::Group(g) = conv { Some(g) } else { None },
        kind: "text",
        body: Some("hi".into()),
        file_id: None,
        client_msg_id: cid.map(str::to_string),
        reply_to_id: None,
        meta: None,
        mentions: Vec::new(),
        forwarded: false,
        item_files: Vec::new(),
    }
}

/// Runs one statement on the test's database outside the stores; the first column of its first row, if any.
async fn raw(env: &TestEnv, sql: &str) -> i64 {
    if env.is_cluster() {
        let pool = sqlx::PgPool::connect(&env.database_url).await.unwrap();
        let row: Option<(i64,)> = sqlx::query_as(sql).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        row.map_or(0, |r| r.0)
    } else {
        let pool = sqlx::SqlitePool::connect(&env.database_url).await.unwrap();
        let row: Option<(i64,)> = sqlx::query_as(sql).fetch_optional(&pool).await.unwrap();
        pool.close().await;
        row.map_or(0, |r| r.0)
    }
}

backend_tests! {
    async fn friendships_are_symmetric_and_requests_settle_both_ways(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, c) = three(&s).await;
        let r = s.friends.create_request(a, b, "hello").await.unwrap();
        assert_eq!(r.status, "pending");
        assert!(matches!(s.friends.create_request(a, b, "again").await, Err(StoreError::Conflict(_))));
        assert!(
            matches!(s.friends.create_request(b, a, "me too").await, Err(StoreError::Conflict(_))),
            "one pending request per pair, whichever way it points (the service accepts the first instead)"
        );
        let accepted = s.friends.accept_request(r.id).await.unwrap().unwrap();
        assert_eq!(accepted.status, "accepted");
        assert!(s.friends.accept_request(r.id).await.unwrap().is_none(), "only a pending request is accepted");
        assert!(s.friends.are_friends(a, b).await.unwrap() && s.friends.are_friends(b, a).await.unwrap());
        assert_eq!(s.friends.friends(a).await.unwrap()[0].user.id, b);
        let rc = s.friends.create_request(c, a, "").await.unwrap();
        assert_eq!(s.friends.reject_request(rc.id).await.unwrap().unwrap().status, "rejected");
        assert!(!s.friends.are_friends(a, c).await.unwrap());
        assert_eq!(s.friends.list_requests(a, true, 10).await.unwrap().len(), 1);
        assert_eq!(s.friends.list_requests(a, false, 10).await.unwrap().len(), 1);
        assert!(s.friends.remove_friendship(b, a).await.unwrap());
        assert!(!s.friends.are_friends(a, b).await.unwrap() && !s.friends.are_friends(b, a).await.unwrap());
        assert!(!s.friends.remove_friendship(a, b).await.unwrap());
    }

    async fn appends_get_gapless_seqs_and_repeat_client_ids_return_the_first(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, _) = three(&s).await;
        let conv = ConversationId::direct(a, b);
        for cid in [None, Some("c0")] {
            let refused = s.messages.append(msg(conv, a, Some(b), cid)).await;
            assert!(matches!(refused, Err(StoreError::NotFriends)), "strangers cannot message: {refused:?}");
        }
        befriend(&s, a, b).await;
        let first = s.messages.append(msg(conv, a, Some(b), Some("c1"))).await.unwrap();
        assert!(first.created);
        assert_eq!(first.message.seq, 1);
        assert_eq!({ let mut r = first.recipients.clone(); r.sort(); r }, { let mut v = vec![a, b]; v.sort(); v });
        let again = s.messages.append(msg(conv, a, Some(b), Some("c1"))).await.unwrap();
        assert!(!again.created && again.recipients.is_empty());
        assert_eq!(again.message.id, first.message.id);
        for _ in 0..4 {
            s.messages.append(msg(conv, b, Some(a), None)).await.unwrap();
        }
        let id = conv.to_string();
        let newest = s.messages.messages_between(&id, 0, i64::MAX, 2, true).await.unwrap();
        assert_eq!(newest.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5]);
        let oldest = s.messages.messages_between(&id, 1, 5, 10, false).await.unwrap();
        assert_eq!(oldest.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        let convs = s.messages.user_conversations(a).await.unwrap();
        assert_eq!((convs.len(), convs[0].last_seq, convs[0].read_seq), (1, 5, 1), "sending marks one's own message read");
        assert!(s.messages.mark_read(a, &id, 4).await.unwrap());
        assert!(!s.messages.mark_read(a, &id, 2).await.unwrap(), "read cursors never move back");
        s.messages.ack(b, "phone", &id, 3).await.unwrap();
        s.messages.ack(b, "phone", &id, 2).await.unwrap();
        // Acks are written in the background, in batches; the cursor lands shortly and never moves back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while s.messages.device_cursors(b, "phone").await.unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the ack was never written");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(s.messages.device_cursors(b, "phone").await.unwrap(), vec![(id.clone(), 3)]);
        assert!(s.messages.device_cursors(b, "tablet").await.unwrap().is_empty());
        assert_eq!(s.messages.last_messages(b, std::slice::from_ref(&id)).await.unwrap()[0].seq, 5);
    }

    async fn concurrent_direct_sends_committed_together_keep_every_conversation_gapless(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, c) = three(&s).await;
        let d = s.users.create_user(new_user("dan")).await.unwrap().id;
        befriend(&s, a, b).await;
        befriend(&s, a, c).await;
        let (ab, ac, ad) = (ConversationId::direct(a, b), ConversationId::direct(a, c), ConversationId::direct(a, d));
        let stored = s.messages.append(msg(ab, a, Some(b), Some("dup"))).await.unwrap();
        // Enqueued together, so the store commits them in shared batches: both directions of two
        // conversations, a stranger and a resend of a stored client id; then the same with two sends of one
        // new client id among them (which a batch statement cannot take; the store falls back).
        let mut sends = Vec::new();
        for i in 0..24 {
            let (conv, from, to) = match i % 3 { 0 => (ab, a, b), 1 => (ab, b, a), _ => (ac, c, a) };
            let mut m = msg(conv, from, Some(to), None);
            m.body = Some(format!("m{i}"));
            sends.push(m);
        }
        sends.insert(5, msg(ad, a, Some(d), None));
        sends.insert(9, msg(ab, a, Some(b), Some("dup")));
        let mut twins = sends.clone();
        twins.insert(12, msg(ac, a, Some(c), Some("twin")));
        twins.insert(13, msg(ac, a, Some(c), Some("twin")));
        let mut results = futures_util::future::join_all(sends.into_iter().map(|m| s.messages.append(m))).await;
        let second = futures_util::future::join_all(twins.into_iter().map(|m| s.messages.append(m))).await;
        for r in [&results, &second] {
            assert!(matches!(r[5], Err(StoreError::NotFriends)), "a stranger is refused: {:?}", r[5]);
            let resent = r[9].as_ref().unwrap();
            assert!(!resent.created && resent.message.id == stored.message.id, "a stored client id returns the first");
        }
        let (t1, t2) = (second[12].as_ref().unwrap(), second[13].as_ref().unwrap());
        assert_eq!(t1.message.id, t2.message.id, "one client id, one message");
        assert_eq!(u8::from(t1.created) + u8::from(t2.created), 1);
        results.extend(second);
        let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).filter(|r| r.created).collect();
        assert_eq!(created.len(), 49, "24 new messages twice and one of the twins");
        for (conv, expected) in [(ab, 33), (ac, 17)] {
            let id = conv.to_string();
            let all = s.messages.messages_between(&id, 0, i64::MAX, 100, false).await.unwrap();
            assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=expected).collect::<Vec<_>>(), "{id} is gapless");
            for r in created.iter().filter(|r| r.message.conversation_id == id) {
                let row = all.iter().find(|m| m.seq == r.message.seq).unwrap();
                assert_eq!((row.id, &row.body, row.from_user_id), (r.message.id, &r.message.body, r.message.from_user_id));
                let mut recipients = r.recipients.clone();
                recipients.sort();
                let mut expect = vec![row.from_user_id, row.to_user_id.unwrap()];
                expect.sort();
                assert_eq!(recipients, expect);
            }
            // Each side's read cursor covers its own last message; the conversation lists the last seq.
            for user in [a, if conv == ab { b } else { c }] {
                let uc = s.messages.user_conversation(user, &id).await.unwrap().unwrap();
                let own = all.iter().filter(|m| m.from_user_id == user).map(|m| m.seq).max().unwrap_or(0);
                assert_eq!((uc.last_seq, uc.read_seq), (expected, own), "{id} for user {user}");
            }
        }
        assert!(s.messages.messages_between(&ad.to_string(), 0, i64::MAX, 10, false).await.unwrap().is_empty());
    }

    async fn a_send_the_database_refuses_fails_alone_and_never_takes_its_batch_with_it(backend) {
        // U+0000 is refused at the edge; here it reaches the store directly, as any statement the database
        // refuses would, in the middle of concurrent sends that the store commits in shared batches.
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, c) = three(&s).await;
        befriend(&s, a, b).await;
        let g = s.groups.create_group("g", a, &[b, c]).await.unwrap().id;
        for round in 0..3 {
            let mut sends = Vec::new();
            for i in 0..60 {
                let mut m = match i % 3 {
                    0 => msg(ConversationId::direct(a, b), a, Some(b), None),
                    1 => msg(ConversationId::direct(a, b), b, Some(a), Some(&format!("r{round}c{i}"))),
                    _ => msg(ConversationId::group(g), c, None, None),
                };
                m.body = Some(if i == 30 + round { "poison\u{0}".into() } else { format!("innocent {round}/{i}") });
                sends.push(m);
            }
            let results = futures_util::future::join_all(sends.into_iter().map(|m| s.messages.append(m))).await;
            for (i, r) in results.iter().enumerate() {
                if i != 30 + round {
                    assert!(r.as_ref().is_ok_and(|r| r.created), "round {round}: innocent send {i} failed: {r:?}");
                }
            }
        }
        // Whatever the poisoned ones did, every conversation is gapless and holds every innocent message.
        // (Poison was sent at i = 30, 31, 32: twice in the direct conversation, once in the group.)
        for (conv, innocent) in [(ConversationId::direct(a, b).to_string(), 118), (format!("g:{g}"), 59)] {
            let all = s.messages.messages_between(&conv, 0, i64::MAX, 200, false).await.unwrap();
            let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>(), "{conv} is gapless");
            let kept = all.iter().filter(|m| m.body.as_deref().is_some_and(|b| b.starts_with("innocent"))).count();
            assert_eq!(kept, innocent, "{conv}");
        }
    }

    async fn concurrent_group_sends_committed_together_keep_groups_gapless_and_reach_exactly_their_members(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, c) = three(&s).await;
        let d = s.users.create_user(new_user("dan")).await.unwrap().id;
        let g1 = s.groups.create_group("one", a, &[b, c]).await.unwrap().id;
        let g2 = s.groups.create_group("two", a, &[b]).await.unwrap().id;
        let (c1, c2) = (ConversationId::group(g1), ConversationId::group(g2));
        let stored = s.messages.append(msg(c1, b, None, Some("dup"))).await.unwrap();
        let sorted = |mut v: Vec<i64>| {
            v.sort();
            v
        };
        // Enqueued together, so the store commits them in shared batches: two groups, a non-member, a group
        // that does not exist, a resend of a stored client id; then the same with two sends of one new client
        // id among them (which a batch statement cannot take; the store falls back).
        let mut sends = Vec::new();
        for i in 0..30 {
            let (conv, from) = match i % 5 { 0 => (c1, a), 1 => (c1, b), 2 => (c1, c), 3 => (c2, a), _ => (c2, b) };
            let mut m = msg(conv, from, None, None);
            m.body = Some(format!("m{i}"));
            sends.push(m);
        }
        sends.insert(4, msg(c1, d, None, None));
        sends.insert(8, msg(ConversationId::group(999_999), a, None, None));
        sends.insert(11, msg(c1, b, None, Some("dup")));
        let mut twins = sends.clone();
        twins.insert(14, msg(c2, a, None, Some("twin")));
        twins.insert(15, msg(c2, a, None, Some("twin")));
        let mut results = futures_util::future::join_all(sends.into_iter().map(|m| s.messages.append(m))).await;
        let second = futures_util::future::join_all(twins.into_iter().map(|m| s.messages.append(m))).await;
        for r in [&results, &second] {
            assert!(matches!(r[4], Err(StoreError::NotMember)), "a non-member is refused: {:?}", r[4]);
            assert!(matches!(r[8], Err(StoreError::NotMember)), "an unknown group is refused: {:?}", r[8]);
            let resent = r[11].as_ref().unwrap();
            assert!(!resent.created && resent.message.id == stored.message.id, "a stored client id returns the first");
        }
        let (t1, t2) = (second[14].as_ref().unwrap(), second[15].as_ref().unwrap());
        assert_eq!(t1.message.id, t2.message.id, "one client id, one message");
        assert_eq!(u8::from(t1.created) + u8::from(t2.created), 1);
        results.extend(second);
        let created: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).filter(|r| r.created).collect();
        assert_eq!(created.len(), 61, "30 new messages twice and one of the twins");
        for (conv, expected, members) in [(c1, 37, vec![a, b, c]), (c2, 25, vec![a, b])] {
            let id = conv.to_string();
            let all = s.messages.messages_between(&id, 0, i64::MAX, 100, false).await.unwrap();
            assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=expected).collect::<Vec<_>>(), "{id} is gapless");
            for r in created.iter().filter(|r| r.message.conversation_id == id) {
                let row = all.iter().find(|m| m.seq == r.message.seq).unwrap();
                assert_eq!((row.id, &row.body, row.from_user_id), (r.message.id, &r.message.body, r.message.from_user_id));
                assert_eq!(sorted(r.recipients.clone()), sorted(members.clone()), "{id}: the members are the recipients");
            }
            for user in &members {
                let uc = s.messages.user_conversation(*user, &id).await.unwrap().unwrap();
                let own = all.iter().filter(|m| m.from_user_id == *user).map(|m| m.seq).max().unwrap_or(0);
                assert_eq!((uc.last_seq, uc.read_seq), (expected, own), "{id} for user {user}");
            }
        }
        // Every membership change shows in the next send's recipients, however the store keeps member lists.
        // (Each change appends its system message: seq 38 is the `added`, 40 the `removed`.)
        change(&s, g1, a, GroupChange::Add { users: vec![d] }).await;
        let sent = s.messages.append(msg(c1, d, None, None)).await.unwrap();
        assert_eq!((sent.message.seq, sorted(sent.recipients)), (39, vec![a, b, c, d]));
        change(&s, g1, a, GroupChange::Remove { user: b }).await;
        assert!(matches!(s.messages.append(msg(c1, b, None, None)).await, Err(StoreError::NotMember)));
        assert_eq!(sorted(s.messages.append(msg(c1, c, None, None)).await.unwrap().recipients), vec![a, c, d]);
        change(&s, g2, a, GroupChange::Dissolve).await;
        assert!(matches!(s.messages.append(msg(c2, a, None, None)).await, Err(StoreError::NotMember)));
        let tail = s.messages.messages_between(&c1.to_string(), 0, i64::MAX, 100, false).await.unwrap();
        assert_eq!(tail.last().unwrap().seq, 41, "refusals allocate no seq");
    }

    async fn closing_the_stores_writes_the_sends_and_acks_still_queued_and_refuses_later_ones(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, _) = three(&s).await;
        befriend(&s, a, b).await;
        let conv = ConversationId::direct(a, b);
        for _ in 0..3 {
            s.messages.append(msg(conv, a, Some(b), None)).await.unwrap();
        }
        // The first ack is written at once; the ones right after it wait for the writer's next turn.
        for seq in 1..=3 {
            s.messages.ack(b, "phone", &conv.to_string(), seq).await.unwrap();
        }
        s.close().await;
        let other = stores(&env).await;
        let cursors = other.messages.device_cursors(b, "phone").await.unwrap();
        assert_eq!(cursors, vec![(conv.to_string(), 3)], "every queued ack is written once close returns");
        assert!(matches!(s.messages.ack(b, "phone", &conv.to_string(), 3).await, Err(StoreError::Closed)));
        assert!(matches!(s.messages.append(msg(conv, a, Some(b), None)).await, Err(StoreError::Closed)));
    }

    async fn the_postgres_send_writer_counts_the_path_that_wrote_each_batch(backend) {
        let env = TestEnv::new(backend).await;
        let metrics = gochat::metrics::Metrics::new();
        let s = Stores::open_observed(&env.database_url, 8, &metrics).await.unwrap();
        let count = |path: &str| {
            let series = format!("gochat_store_send_batches_total{{path=\"{path}\"}} ");
            metrics.render().lines().find_map(|l| l.strip_prefix(&series)?.parse::<u64>().ok()).unwrap_or(0)
        };
        let (a, b, _) = three(&s).await;
        befriend(&s, a, b).await;
        let conv = ConversationId::direct(a, b);
        // A lone send under no load: the one-statement path.
        s.messages.append(msg(conv, a, Some(b), None)).await.unwrap();
        if backend == crate::common::Backend::Sqlite {
            assert_eq!(count("direct"), 0, "SQLite has one path, the generic one, and counts nothing");
            return;
        }
        assert_eq!(count("direct"), 1);
        // Sends arriving together: one statement for the batch (tried a few times: batches form by timing).
        for round in 0..5 {
            let sends = (0..40).map(|i| s.messages.append(msg(conv, a, Some(b), Some(&format!("many-{round}-{i}")))));
            futures_util::future::join_all(sends).await.into_iter().for_each(|r| assert!(r.unwrap().created));
            if count("direct_many") > 0 {
                break;
            }
        }
        assert!(count("direct_many") > 0, "a batch of direct sends was written by one statement");
        // Two sends with one client_msg_id in one batch: the batch statement refuses them, the generic path
        // sorts them out (one message, returned to both).
        for round in 0..5 {
            let mut sends: Vec<_> = (0..20).map(|i| msg(conv, a, Some(b), Some(&format!("fb-{round}-{i}")))).collect();
            sends.push(msg(conv, a, Some(b), Some(&format!("fb-{round}-0"))));
            let results = futures_util::future::join_all(sends.into_iter().map(|m| s.messages.append(m))).await;
            let twins: Vec<_> = results.iter().filter(|r| r.as_ref().unwrap().message.client_msg_id.as_deref() == Some(&format!("fb-{round}-0"))).collect();
            assert_eq!(twins.len(), 2);
            assert_eq!(twins[0].as_ref().unwrap().message.id, twins[1].as_ref().unwrap().message.id);
            if count("fallback") > 0 {
                break;
            }
        }
        assert!(count("fallback") > 0, "a refused batch statement fell back to the generic path");
        // A group message: the batched group transaction. A media message: the generic path.
        let g = s.groups.create_group("g", a, &[b]).await.unwrap();
        s.messages.append(msg(ConversationId::Group(g.id), a, None, None)).await.unwrap();
        assert_eq!(count("group_many"), 1);
        let file = s
            .files
            .create_file(NewFile {
                uploader_id: a,
                storage_key: "k".into(),
                kind: "image",
                content_type: "image/png",
                size: 10,
                width: Some(2),
                height: Some(3),
                sha256: "00".into(),
                name: None,
                duration_ms: None,
            })
            .await
            .unwrap();
        let mut m = msg(conv, a, Some(b), None);
        m.kind = "image";
        m.file_id = Some(file.id);
        s.messages.append(m).await.unwrap();
        assert_eq!(count("generic"), 1, "the media message took the generic path");
    }

    async fn group_membership_bounds_what_members_receive(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, c) = three(&s).await;
        let g = s.groups.create_group("G", a, &[b]).await.unwrap();
        let conv = ConversationId::group(g.id);
        assert_eq!(s.groups.members(g.id).await.unwrap()[0].role, "owner");
        let m = s.messages.append(msg(conv, b, None, None)).await.unwrap();
        assert_eq!(m.recipients.len(), 2);
        assert!(matches!(s.messages.append(msg(conv, c, None, None)).await, Err(StoreError::NotMember)));
        let GroupChanged::Done { messages, recipients, .. } = change(&s, g.id, a, GroupChange::Add { users: vec![c, b] }).await
        else {
            panic!("the owner adds")
        };
        assert_eq!(messages[0].meta.as_deref().map(|m| m.contains("\"user_ids\":[") && m.contains(&c.to_string())), Some(true));
        let sorted = |mut v: Vec<i64>| {
            v.sort_unstable();
            v
        };
        assert_eq!(sorted(recipients), sorted(vec![a, b, c]), "only newcomers are added");
        let joined = s.messages.user_conversation(c, &conv.to_string()).await.unwrap().unwrap();
        assert_eq!(joined.visible_from_seq, 1, "a newcomer sees messages from its joining on (the `added` is seq 2)");
        assert!(matches!(s.groups.change(g.id, a, &GroupChange::Add { users: vec![99_999] }, 3).await, Ok(GroupChanged::Full) | Err(StoreError::Db(_))));
        assert_eq!(s.messages.append(msg(conv, a, None, None)).await.unwrap().recipients.len(), 3);
        assert!(matches!(change(&s, g.id, a, GroupChange::Remove { user: c }).await, GroupChanged::Done { .. }));
        assert!(matches!(change(&s, g.id, a, GroupChange::Remove { user: c }).await, GroupChanged::Refused(Refusal::MemberNotFound)));
        assert!(s.messages.user_conversation(c, &conv.to_string()).await.unwrap().is_none());
        assert_eq!(s.messages.append(msg(conv, a, None, None)).await.unwrap().recipients.len(), 2);
        assert!(matches!(change(&s, g.id, a, GroupChange::SetRole { user: b, admin: true }).await, GroupChanged::Done { .. }));
        assert!(
            matches!(change(&s, g.id, b, GroupChange::SetRole { user: a, admin: false }).await, GroupChanged::Refused(Refusal::NotOwner)),
            "the owner's role changes only by transfer"
        );
        change(&s, g.id, a, GroupChange::Transfer { to: b }).await;
        assert_eq!(s.groups.group(g.id).await.unwrap().unwrap().owner_id, b);
        assert_eq!(s.groups.member(g.id, a).await.unwrap().unwrap().role, "admin");
        let GroupChanged::Done { mut former, .. } = change(&s, g.id, b, GroupChange::Dissolve).await else {
            panic!("the owner dissolves")
        };
        former.sort();
        assert_eq!(former, { let mut v = vec![a, b]; v.sort(); v });
        assert!(s.groups.group(g.id).await.unwrap().unwrap().dissolved_at.is_some());
        assert!(s.groups.groups_of(a).await.unwrap().is_empty());
    }

    async fn files_are_shared_by_messages_and_unused_ones_expire(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, c) = three(&s).await;
        befriend(&s, a, b).await;
        let file = |key: &str| NewFile {
            uploader_id: a,
            storage_key: key.into(),
            kind: "image",
            content_type: "image/png",
            size: 10,
            width: Some(2),
            height: Some(3),
            sha256: "00".into(),
            name: None,
            duration_ms: None,
        };
        let used = s.files.create_file(file("k1")).await.unwrap();
        let unused = s.files.create_file(file("k2")).await.unwrap();
        assert!(!s.files.shared_with(used.id, b).await.unwrap());
        let mut m = msg(ConversationId::direct(a, b), a, Some(b), None);
        m.kind = "image";
        m.file_id = Some(used.id);
        s.messages.append(m.clone()).await.unwrap();
        assert!(s.files.shared_with(used.id, b).await.unwrap());
        assert!(!s.files.shared_with(used.id, c).await.unwrap());
        assert!(s.files.file(used.id).await.unwrap().unwrap().referenced_at.is_some());
        let mut foreign = m.clone();
        foreign.from_user_id = b;
        foreign.to_user_id = Some(a);
        assert!(matches!(s.messages.append(foreign).await, Err(StoreError::FileGone)), "only one's own file");
        let later = chrono::Utc::now() + chrono::Duration::seconds(5);
        let gone = s.files.take_unreferenced(later, 10).await.unwrap();
        assert_eq!(gone.iter().map(|f| f.id).collect::<Vec<_>>(), vec![unused.id]);
        assert!(s.files.file(unused.id).await.unwrap().is_none());
        assert_eq!(s.files.files_by_ids(&[used.id, unused.id]).await.unwrap().len(), 1);
    }

    async fn users_round_trip_through_the_store(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let u = s.users.create_user(new_user("Alice")).await.unwrap();
        assert!(u.id > 0);
        assert_eq!((u.username.as_str(), u.nickname.as_str(), u.sex, u.token_version), ("Alice", "Nick", 1, 0));
        let by_id = s.users.user_by_id(u.id).await.unwrap().unwrap();
        assert_eq!(by_id.created_at, u.created_at, "timestamps survive the round trip exactly");
        assert_eq!(s.users.user_by_username("alice").await.unwrap().unwrap().id, u.id);
        assert!(s.users.user_by_username("Alice").await.unwrap().is_none(), "lookups take the case-folded name");
        assert!(s.users.user_by_id(u.id + 1000).await.unwrap().is_none());
    }

    async fn a_taken_username_is_a_conflict_in_any_case(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        s.users.create_user(new_user("Bob")).await.unwrap();
        assert!(matches!(s.users.create_user(new_user("bOB")).await, Err(StoreError::Conflict(_))));
    }

    async fn profile_updates_touch_only_the_given_fields(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let u = s.users.create_user(new_user("carol")).await.unwrap();
        let v = s.users.update_profile(u.id, Some("Caz"), None, None).await.unwrap().unwrap();
        assert_eq!((v.nickname.as_str(), v.sex, v.push_previews), ("Caz", 1, false));
        let v = s.users.update_profile(u.id, None, Some(0), Some(true)).await.unwrap().unwrap();
        assert_eq!((v.nickname.as_str(), v.sex, v.push_previews), ("Caz", 0, true));
        assert!(s.users.update_profile(u.id + 99, Some("x"), None, None).await.unwrap().is_none());
    }

    async fn setting_a_password_bumps_the_token_version(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let u = s.users.create_user(new_user("dave")).await.unwrap();
        assert_eq!(s.users.token_version(u.id).await.unwrap(), Some(0));
        assert_eq!(s.users.set_password(u.id, "$argon2id$new", 0).await.unwrap(), Some(1));
        assert_eq!(s.users.set_password(u.id, "$argon2id$newer", 1).await.unwrap(), Some(2));
        assert_eq!(s.users.set_password(u.id, "$argon2id$late", 1).await.unwrap(), None, "a change that lost the race");
        assert_eq!(s.users.token_version(u.id).await.unwrap(), Some(2));
        assert_eq!(s.users.user_by_id(u.id).await.unwrap().unwrap().password_hash, "$argon2id$newer");
        assert_eq!(s.users.token_version(u.id + 5).await.unwrap(), None);
    }

    async fn search_matches_prefixes_literally_in_username_order(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        for n in ["zed_b", "Zed_a", "zedx", "z_ed", "other"] {
            s.users.create_user(new_user(n)).await.unwrap();
        }
        let names = |v: Vec<gochat::store::UserRecord>| v.into_iter().map(|u| u.username).collect::<Vec<_>>();
        assert_eq!(names(s.users.search_users("zed_", 10).await.unwrap()), ["Zed_a", "zed_b"]);
        assert_eq!(names(s.users.search_users("z_", 10).await.unwrap()), ["z_ed"], "`_` is not a wildcard");
        assert_eq!(s.users.search_users("zed", 2).await.unwrap().len(), 2, "the limit holds");
        assert!(s.users.search_users("nomatch", 10).await.unwrap().is_empty());
    }

    async fn messages_stored_before_the_search_index_are_indexed_when_the_store_opens(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, _) = three(&s).await;
        befriend(&s, a, b).await;
        let conv = ConversationId::direct(a, b);
        let mut ids = Vec::new();
        for text in ["今天上海下雨", "Rainy day in Shanghai", "明天晴"] {
            let m = NewMessage { body: Some(text.into()), ..msg(conv, a, Some(b), None) };
            ids.push(s.messages.append(m).await.unwrap().message.id);
        }
        let query = |q: &str| gochat::domain::search::parse_query(q);
        let found = |s: Stores, q: &'static str| async move {
            s.search.search(b, &query(q), None, i64::MAX, 10).await.unwrap().iter().map(|m| m.id).collect::<Vec<_>>()
        };
        assert_eq!(found(s.clone(), "上海").await, [ids[0]]);
        s.close().await;

        // As if these messages predated the index: take them out, and record the range as the migration does.
        let unindex = if env.is_cluster() { "UPDATE messages SET search = NULL" } else { "DELETE FROM message_search" };
        raw(&env, unindex).await;
        raw(&env, "INSERT INTO search_backfill (next_id, last_id) SELECT 1, MAX(id) FROM messages").await;

        let s = stores(&env).await;
        assert_eq!(found(s.clone(), "上海").await, [ids[0]]);
        assert_eq!(found(s.clone(), "shanghai").await, [ids[1]]);
        assert_eq!(found(s.clone(), "明").await, [ids[2]]);
        assert_eq!(raw(&env, "SELECT COUNT(*) FROM search_backfill").await, 0, "the range is forgotten once indexed");
        // Opening again indexes nothing twice.
        let s = stores(&env).await;
        assert_eq!(found(s.clone(), "上海").await, [ids[0]]);
    }

    async fn a_search_finds_the_same_for_a_viewer_in_few_or_in_many_conversations(backend) {
        // Up to 100 conversations the index is asked for the viewer's conversations' tokens; beyond, the matches
        // are walked newest first and filtered. Both must find exactly the viewer's messages.
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let hub = s.users.create_user(new_user("hub")).await.unwrap().id;
        let stranger = s.users.create_user(new_user("stranger")).await.unwrap().id;
        let mut mine = Vec::new();
        for i in 0..102 {
            let friend = s.users.create_user(new_user(&format!("f{i}"))).await.unwrap().id;
            befriend(&s, hub, friend).await;
            if i == 0 {
                befriend(&s, stranger, friend).await;
                let theirs = NewMessage { body: Some("上海见 not for hub".into()), ..msg(ConversationId::direct(stranger, friend), friend, Some(stranger), None) };
                s.messages.append(theirs).await.unwrap();
            }
            let m = NewMessage { body: Some(format!("上海见 {i}")), ..msg(ConversationId::direct(hub, friend), friend, Some(hub), None) };
            mine.push(s.messages.append(m).await.unwrap().message.id);
            if i == 0 || i == 101 {
                // With one conversation, then with 101 (and more than 100 after the last one).
                let found: Vec<i64> = s.search.search(hub, &gochat::domain::search::parse_query("上海"), None, i64::MAX, 200).await.unwrap().iter().map(|m| m.id).collect();
                assert_eq!(found, mine.iter().rev().copied().collect::<Vec<_>>(), "after {} conversations", i + 1);
            }
        }
        let found = s.search.search(stranger, &gochat::domain::search::parse_query("上海"), None, i64::MAX, 200).await.unwrap();
        assert_eq!(found.len(), 1);
    }

    async fn the_push_outbox_marks_each_subscribed_recipient_once_and_concurrent_claims_never_share_a_row(backend) {
        use gochat::store::{PushRelease, PushSubscriptionRecord};
        use rand::Rng;
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let (a, b, c) = three(&s).await;
        befriend(&s, a, b).await;
        befriend(&s, a, c).await;
        let g = s.groups.create_group("g", a, &[b, c]).await.unwrap().id;
        let (ab, group) = (ConversationId::direct(a, b), ConversationId::Group(g));
        let sub = |user: i64, device: &str| PushSubscriptionRecord {
            user_id: user,
            device_id: device.into(),
            endpoint: format!("https://push.example.com/{user}/{device}"),
            p256dh: "k".into(),
            auth: "a".into(),
            created_at: gochat::store::now(),
        };
        for (user, device) in [(a, "phone"), (b, "phone"), (b, "laptop"), (c, "phone")] {
            s.push.subscribe(&sub(user, device)).await.unwrap();
        }
        let far = gochat::store::now() + chrono::Duration::days(1);
        let mut rng = rand::thread_rng();
        for round in 0..4 {
            // Every send path at once: plain direct and group messages (Postgres's batch statements) and ones
            // with mentions (the generic path).
            let mut sends = Vec::new();
            for _ in 0..rng.gen_range(1..30) {
                sends.push(match rng.gen_range(0..4) {
                    0 => msg(ab, a, Some(b), None),
                    1 => msg(ab, b, Some(a), None),
                    2 => msg(group, a, None, None),
                    _ => {
                        let mut m = msg(group, b, None, None);
                        m.mentions = vec![c];
                        m
                    }
                });
            }
            let appended = futures_util::future::join_all(sends.into_iter().map(|m| s.messages.append(m))).await;
            // What each device should have pending: the last seq of each conversation sent to it by others.
            let mut expected = std::collections::BTreeMap::new();
            for r in appended {
                let m = r.unwrap().message;
                let owners = match m.group_id { Some(_) => vec![a, b, c], None => vec![a, b] };
                for (user, device) in [(a, "phone"), (b, "phone"), (b, "laptop"), (c, "phone")] {
                    if owners.contains(&user) && user != m.from_user_id {
                        let seq = expected.entry((user, device.to_string(), m.conversation_id.clone())).or_insert(0);
                        *seq = (*seq).max(m.seq);
                    }
                }
            }
            // Claimed concurrently by six claimers, two rows at a time: every pending row once, none twice.
            let claims = futures_util::future::join_all((0..6).map(|_| s.push.claim(far, far, far, far, 2))).await;
            let mut claimed: Vec<_> = claims.into_iter().flat_map(|c| c.unwrap()).collect();
            let mut rest = s.push.claim(far, far, far, far, 100).await.unwrap();
            claimed.append(&mut rest);
            let ids: std::collections::HashSet<i64> = claimed.iter().map(|j| j.id).collect();
            assert_eq!(ids.len(), claimed.len(), "round {round}: a row was claimed twice");
            let got: std::collections::BTreeMap<_, _> =
                claimed.iter().map(|j| ((j.user_id, j.device_id.clone(), j.conversation_id.clone()), j.seq)).collect();
            assert_eq!(got, expected, "round {round}: one row per subscribed recipient device and conversation");
            assert!(s.push.claim(far, far, far, far, 100).await.unwrap().is_empty(), "claimed rows are leased");
            for job in &claimed {
                s.push.release(job, PushRelease::Handled { seq: job.seq, shown: true }).await.unwrap();
            }
            assert!(s.push.claim(far, far, far, far, 100).await.unwrap().is_empty(), "handled rows are done");
        }
        // An endpoint belongs to one device: subscribing it for another user takes it from the first.
        let mut moved = sub(c, "tablet");
        moved.endpoint = sub(b, "laptop").endpoint;
        s.push.subscribe(&moved).await.unwrap();
        assert!(s.push.subscription(b, "laptop").await.unwrap().is_none());
        assert!(s.push.unsubscribe(c, "tablet").await.unwrap());
        assert!(!s.push.unsubscribe(c, "tablet").await.unwrap());
    }

    async fn opening_twice_applies_migrations_once(backend) {
        let env = TestEnv::new(backend).await;
        let a = stores(&env).await;
        let b = stores(&env).await;
        a.users.create_user(new_user("erin")).await.unwrap();
        assert!(b.users.user_by_username("erin").await.unwrap().is_some());
        b.health.ping().await.unwrap();
    }
}

/// SQLite's migrations were renumbered to Postgres's numbers: a database migrated under the old numbers (2-4)
/// still opens, keeps its data, and records the new numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_migrated_under_the_old_numbers_opens_and_is_renumbered() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("legacy.db").display());
    let s = Stores::open(&url, 1).await.unwrap();
    let kept = s.users.create_user(new_user("kept")).await.unwrap();
    s.close().await;
    drop(s);
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let versions = |pool: sqlx::SqlitePool| async move {
        let rows: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&pool).await.unwrap();
        rows.into_iter().map(|r| r.0).collect::<Vec<i64>>()
    };
    assert_eq!(versions(pool.clone()).await, vec![1, 3, 4, 5, 6, 7, 8, 9]);
    // As a database migrated before the renumbering records them.
    for v in [3_i64, 4, 5] {
        sqlx::query("UPDATE _sqlx_migrations SET version = $1 - 1 WHERE version = $1")
            .bind(v)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(versions(pool.clone()).await, vec![1, 2, 3, 4, 6, 7, 8, 9]);
    pool.close().await;

    let s = Stores::open(&url, 1).await.expect("a legacy database opens");
    assert_eq!(s.users.user_by_id(kept.id).await.unwrap().unwrap().username, "kept");
    s.close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    assert_eq!(versions(pool).await, vec![1, 3, 4, 5, 6, 7, 8, 9]);
}

/// Migration 0006 rebuilds SQLite's `messages` table (SQLite cannot change a CHECK constraint in place): a
/// database with messages keeps every one of them, byte for byte, and new ids continue after the highest ever
/// handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_message_lifecycle_migration_keeps_every_message_and_the_id_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    // The schema as it was before 0006.
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.as_str() < "0006" {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&pool).await.unwrap();
    for (i, name) in ["ann", "bob"].iter().enumerate() {
        sqlx::query("INSERT INTO users (id, username, username_lower, nickname, sex, password_hash, created_at, updated_at) VALUES ($1, $2, $2, $2, 0, 'x', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
            .bind(i as i64 + 1)
            .bind(*name)
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO conversations (id, kind, user_low, user_high, last_seq, created_at, updated_at) VALUES ('d:1:2', 'direct', 1, 2, 4, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO files (id, uploader_id, storage_key, kind, content_type, size, width, height, sha256, created_at, referenced_at) VALUES (7, 1, 'k/7', 'image', 'image/png', 100, 3, 2, 'abc', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO messages (id, conversation_id, seq, from_user_id, to_user_id, kind, file_id, created_at) VALUES (5, 'd:1:2', 4, 1, 2, 'image', 7, '2026-01-01T00:00:00Z')")
        .execute(&pool)
        .await
        .unwrap();
    for seq in 1..=3_i64 {
        sqlx::query("INSERT INTO messages (id, conversation_id, seq, from_user_id, to_user_id, kind, body, client_msg_id, created_at) VALUES ($1, 'd:1:2', $2, 1, 2, 'text', $3, $4, '2026-01-01T00:00:00Z')")
            .bind(seq * 10)
            .bind(seq)
            .bind(format!("你好 {seq}"))
            .bind(format!("c{seq}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO friendships (user_id, friend_id, created_at) VALUES (1, 2, '2026-01-01T00:00:00Z'), (2, 1, '2026-01-01T00:00:00Z')")
        .execute(&pool)
        .await
        .unwrap();
    // An id handed out and gone: ids after the migration must not reuse it.
    sqlx::query("INSERT INTO messages (id, conversation_id, seq, from_user_id, kind, body, created_at) VALUES (99, 'd:1:2', 99, 1, 'text', 'x', '2026-01-01T00:00:00Z')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM messages WHERE id = 99").execute(&pool).await.unwrap();
    pool.close().await;

    let s = Stores::open(&url, 1).await.expect("the old database migrates");
    let file = s.files.file(7).await.unwrap().expect("the file is kept");
    assert_eq!((file.kind.as_str(), file.width, file.size, file.name), ("image", Some(3), 100, None));
    assert!(s.files.shared_with(7, 2).await.unwrap(), "still shared by its message");
    let kept = s.messages.messages_between("d:1:2", 0, 4, 10, false).await.unwrap();
    let summary: Vec<(i64, i64, Option<String>, Option<String>)> =
        kept.iter().map(|m| (m.id, m.seq, m.body.clone(), m.client_msg_id.clone())).collect();
    assert_eq!(
        summary,
        (1..=3_i64)
            .map(|seq| (seq * 10, seq, Some(format!("你好 {seq}")), Some(format!("c{seq}"))))
            .collect::<Vec<_>>()
    );
    let appended = s.messages.append(msg(ConversationId::Direct { low: 1, high: 2 }, 1, Some(2), None)).await.unwrap();
    assert_eq!((appended.message.seq, appended.message.id > 99), (5, true), "{:?}", appended.message);
    s.close().await;
}
