//! GoChat: a real-time chat server. One binary serves the REST API, the WebSocket gateway and the web client,
//! on SQLite alone (embedded) or as a stateless node of a Postgres + Redis + S3 cluster.

pub mod api;
pub mod bus;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod error;
pub mod inbox;
pub mod media;
pub mod metrics;
pub mod presence;
pub mod private_fs;
pub mod push;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ws;
