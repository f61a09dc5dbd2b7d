//! The WebSocket gateway: authenticated upgrade, one task per connection, and the local hub of sockets.

mod catchup;
pub mod gateway;
pub mod hub;
mod ordering;
mod session;
