//! Use-cases of the product, independent of HTTP and WebSocket framing.

pub mod accounts;
pub mod auth;
pub mod events;
pub mod friends;
pub mod groups;
pub mod health;
pub mod media;
pub mod messaging;
pub mod presence;
pub mod push;
pub mod ratelimit;
pub mod receipts;
pub mod views;
