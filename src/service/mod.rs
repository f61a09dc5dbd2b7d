//! Use-cases of the product, independent of HTTP and WebSocket framing.

pub mod accounts;
pub mod auth;
pub mod ratelimit;
