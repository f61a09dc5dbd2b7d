//! The integration suite, as one test binary (one link instead of eleven): real nodes on port 0, a fresh
//! database per test, real HTTP and WebSockets. Every `backend_tests!` test runs as `…::sqlite::…` (SQLite,
//! in-process bus, local disk) and `…::postgres::…` (Postgres, Redis, S3; provisioned by `scripts/test.sh`).

#[macro_use]
mod common;

mod accounts;
mod catchup;
mod cluster;
mod conformance;
mod edges;
mod friends;
mod group_life;
mod groups;
mod lifecycle;
mod media;
mod messaging;
mod openapi_spec;
mod operations;
mod people;
mod push;
mod receipts;
mod search;
mod store_conformance;
