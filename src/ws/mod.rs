//! The WebSocket gateway: authenticated upgrade, one task per connection, and the local hub of sockets.

pub mod gateway;
pub mod hub;
mod session;
