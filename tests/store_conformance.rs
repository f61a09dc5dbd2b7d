//! One conformance suite for every store implementation: each test runs against SQLite and Postgres and must
//! observe the same behaviour through the store traits.

#[macro_use]
mod common;

use common::TestEnv;
use gochat::store::{NewUser, StoreError, Stores};

async fn stores(env: &TestEnv) -> Stores {
    Stores::open(&env.database_url, 4).await.expect("store opens and migrates")
}

fn new_user(name: &str) -> NewUser {
    NewUser { username: name.into(), nickname: "Nick".into(), sex: 1, password_hash: "$argon2id$fake".into() }
}

backend_tests! {
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
        let v = s.users.update_profile(u.id, Some("Caz"), None).await.unwrap().unwrap();
        assert_eq!((v.nickname.as_str(), v.sex), ("Caz", 1));
        let v = s.users.update_profile(u.id, None, Some(0)).await.unwrap().unwrap();
        assert_eq!((v.nickname.as_str(), v.sex), ("Caz", 0));
        assert!(s.users.update_profile(u.id + 99, Some("x"), None).await.unwrap().is_none());
    }

    async fn setting_a_password_bumps_the_token_version(backend) {
        let env = TestEnv::new(backend).await;
        let s = stores(&env).await;
        let u = s.users.create_user(new_user("dave")).await.unwrap();
        assert_eq!(s.users.token_version(u.id).await.unwrap(), Some(0));
        assert_eq!(s.users.set_password(u.id, "$argon2id$new").await.unwrap(), 1);
        assert_eq!(s.users.set_password(u.id, "$argon2id$newer").await.unwrap(), 2);
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

    async fn opening_twice_applies_migrations_once(backend) {
        let env = TestEnv::new(backend).await;
        let a = stores(&env).await;
        let b = stores(&env).await;
        a.users.create_user(new_user("erin")).await.unwrap();
        assert!(b.users.user_by_username("erin").await.unwrap().is_some());
        b.health.ping().await.unwrap();
    }
}
