//! The Redis bus of cluster mode: one pub/sub channel per user (`<prefix>user:<id>`), plus one channel every node
//! listens to (`<prefix>fanout`) for deliveries to many users at once (group messages and group events). Each
//! node keeps one subscriber connection multiplexing the channels of the users with a socket on it and the fan-out
//! channel, and publishes through the node's [`RedisWriter`], which pipelines whatever publishes and inbox appends
//! have gathered into one round trip.
//!
//! Why the fan-out channel: with one channel per user, a message to a 500-member group is 500 PUBLISHes and 500
//! copies to parse on the receiving nodes. On the fan-out channel it is one PUBLISH carrying the recipient list;
//! each node parses it once and queues it for the listed users it holds. Every node receives every such delivery,
//! which costs a cluster of N nodes N copies instead of one per member: the right trade while groups are larger
//! than the cluster. All channels arrive on one subscriber connection, and Redis delivers a connection's messages
//! in publish order, so a `group_removed` and the group's next message cannot swap places.
//!
//! A node hands the messages it publishes to its own sockets at once (see [`RedisBus::publish`]) and marks the
//! published copy with its tag (`@<tag>` on a first line), so when that copy comes back over its subscription it is
//! dropped unread instead of being parsed and queued on every local recipient's socket only to be skipped there
//! as a repeated seq (for a 500-member group, 500 wasted session wake-ups per message).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Bus, RedisWriter};
use crate::delivery::{Delivery, DeliverySink};
use crate::metrics::Metrics;

enum Command {
    Subscribe(i64, oneshot::Sender<()>),
    Release(i64),
}

/// Capacity of the subscription-command queue. Commands are tiny and the subscriber task handles them at
/// Redis round-trip speed; 4096 absorbs a reconnect storm of that many users before `subscribe` waits.
const COMMAND_QUEUE: usize = 4096;
/// Channels per SUBSCRIBE when resubscribing after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 1000;
/// Longest wait for Redis to confirm a subscription. Redis answers in well under a millisecond; one that has not
/// answered in 2 s is frozen or cut off, and a socket opening meanwhile must not wait for it (it is caught up
/// from the database when the bus comes back).
const SUBSCRIBE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Deliveries to more users than this go once over the fan-out channel instead of once per user's channel.
/// Direct messages (two parties) and small groups stay on the per-user channels, which only the nodes holding
/// those users receive.
pub const FANOUT_MIN_USERS: usize = 8;

pub struct RedisBus {
    prefix: Arc<str>,
    /// This node's tag on the messages it already delivered to its own sockets (random per start).
    tag: Arc<str>,
    sink: Arc<dyn DeliverySink>,
    writer: RedisWriter,
    commands: mpsc::Sender<Command>,
    ready: Arc<AtomicBool>,
}

fn channel(prefix: &str, user_id: i64) -> String {
    format!("{prefix}user:{user_id}")
}

fn fanout_channel(prefix: &str) -> String {
    format!("{prefix}fanout")
}

/// The first line of a payload whose message the publishing node already handed to its own sockets.
fn origin_line(tag: &str) -> String {
    format!("@{tag}\n")
}

/// The fan-out channel's payload: optionally the origin line, then the recipients' ids, comma-separated, a
/// newline, then the frame's JSON.
fn fanout_payload(origin: Option<&str>, users: &[i64], json: &str) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(users.len() * 8 + json.len() + 24);
    if let Some(tag) = origin {
        out.extend_from_slice(origin_line(tag).as_bytes());
    }
    for (i, u) in users.iter().enumerate() {
        let _ = write!(out, "{}{u}", if i == 0 { "" } else { "," });
    }
    out.push(b'\n');
    out.extend_from_slice(json.as_bytes());
    out
}

/// A per-user channel's payload: optionally the origin line, then the frame's JSON.
fn user_payload(origin: Option<&str>, json: &str) -> Vec<u8> {
    let mut out = origin.map(origin_line).unwrap_or_default().into_bytes();
    out.extend_from_slice(json.as_bytes());
    out
}

fn publish(channel: &str, payload: &[u8]) -> redis::Cmd {
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(channel).arg(payload);
    cmd
}

/// Splits off the origin line, if there is one: `(origin tag, rest)`.
fn split_origin(payload: &[u8]) -> (Option<&[u8]>, &[u8]) {
    if payload.first() != Some(&b'@') {
        return (None, payload);
    }
    match payload.iter().position(|&b| b == b'\n') {
        Some(end) => (Some(&payload[1..end]), &payload[end + 1..]),
        None => (None, payload),
    }
}

/// Reads a fan-out payload (after its origin line) back; `None` for anything malformed (then nothing is
/// delivered from it).
fn parse_fanout(payload: &[u8]) -> Option<(Vec<i64>, &str)> {
    let split = payload.iter().position(|&b| b == b'\n')?;
    let ids = std::str::from_utf8(&payload[..split]).ok()?;
    let json = std::str::from_utf8(&payload[split + 1..]).ok()?;
    let users = ids.split(',').map(|u| u.parse().ok()).collect::<Option<Vec<i64>>>()?;
    Some((users, json))
}

impl RedisBus {
    /// Starts the subscriber task on `tasks` (it ends when `shutdown` is cancelled); publishes go out through
    /// `writer`.
    pub fn start(
        client: redis::Client,
        writer: RedisWriter,
        prefix: &str,
        sink: impl DeliverySink,
        metrics: Metrics,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> RedisBus {
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let ready = Arc::new(AtomicBool::new(false));
        let prefix: Arc<str> = prefix.into();
        let tag: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
        let sink: Arc<dyn DeliverySink> = Arc::new(sink);
        tasks.spawn(subscriber(
            client,
            prefix.clone(),
            tag.clone(),
            sink.clone(),
            rx,
            ready.clone(),
            metrics,
            shutdown,
        ));
        RedisBus { prefix, tag, sink, writer, commands, ready }
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, users: &[i64], delivery: &Arc<Delivery>) {
        if users.is_empty() {
            return;
        }
        // Messages reach this node's own sockets at once, without the round trip through Redis, and their
        // published copy carries this node's tag so that it is dropped when it comes back. (Only messages: other
        // frames go the one way, through Redis, to every node alike.)
        let origin = if delivery.message.is_some() {
            self.sink.deliver_many(users, delivery);
            Some(&*self.tag)
        } else {
            None
        };
        // A revocation goes to every node (each caches token versions), so it takes the channel all nodes hear.
        let commands = if users.len() > FANOUT_MIN_USERS || delivery.revocation.is_some() {
            vec![publish(&fanout_channel(&self.prefix), &fanout_payload(origin, users, &delivery.json))]
        } else {
            let payload = user_payload(origin, &delivery.json);
            users.iter().map(|&u| publish(&channel(&self.prefix, u), &payload)).collect()
        };
        self.writer.write(commands).await;
    }

    /// Waits at most [`SUBSCRIBE_WAIT`]: a socket must not hang on a Redis that stopped answering; if the
    /// subscription is not in place by then, the socket goes on and is caught up when the bus reconnects.
    async fn subscribe(&self, user_id: i64) {
        let (tx, rx) = oneshot::channel();
        let asked = async {
            if self.commands.send(Command::Subscribe(user_id, tx)).await.is_ok() {
                let _ = rx.await;
            }
        };
        let _ = tokio::time::timeout(SUBSCRIBE_WAIT, asked).await;
    }

    fn release(&self, user_id: i64) {
        // Best effort: a full queue only leaves a subscription that a later release or reconnect drops.
        let _ = self.commands.try_send(Command::Release(user_id));
    }

    async fn flush(&self) {
        self.writer.flush().await;
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

/// The subscriber connection's life: connect, subscribe every local user, feed the delivery sink; on loss, mark the bus
/// not ready, reconnect with backoff, resubscribe and tell every session to resync.
#[allow(clippy::too_many_arguments)]
async fn subscriber(
    client: redis::Client,
    prefix: Arc<str>,
    tag: Arc<str>,
    local: Arc<dyn DeliverySink>,
    mut commands: mpsc::Receiver<Command>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    let user_of =
        |ch: &str| ch.strip_prefix(&*prefix).and_then(|c| c.strip_prefix("user:")).and_then(|u| u.parse().ok());
    let fanout = fanout_channel(&prefix);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub()) => c,
        };
        let pubsub = match connected {
            Ok(Ok(p)) => p,
            Ok(Err(_)) | Err(_) => {
                ready.store(false, Ordering::SeqCst);
                metrics.bus_errors.inc();
                tracing::warn!(retry_in_ms = backoff.as_millis() as u64, "Redis subscriber cannot connect");
                // Keep answering subscribe requests so sockets are not held up while Redis is away; the
                // reconnect subscribes every local user anyway.
                let deadline = tokio::time::sleep(backoff);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = &mut deadline => break,
                        cmd = commands.recv() => match cmd {
                            Some(Command::Subscribe(_, reply)) => { let _ = reply.send(()); }
                            Some(Command::Release(_)) => {}
                            None => return,
                        },
                    }
                }
                // At most a second between attempts: live delivery comes back within a second of Redis (a
                // connection attempt costs Redis next to nothing; 5 s kept nodes without it 5 s longer).
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<i64> = local.users().into_iter().collect();
        let mut all: Vec<String> = subscribed.iter().map(|u| channel(&prefix, *u)).collect();
        all.push(fanout.clone());
        let mut ok = true;
        for chunk in all.chunks(RESUBSCRIBE_CHUNK) {
            if !matches!(tokio::time::timeout(SUBSCRIBE_WAIT, sink.subscribe(chunk)).await, Ok(Ok(()))) {
                ok = false;
                break;
            }
        }
        if !ok {
            metrics.bus_errors.inc();
            continue;
        }
        ready.store(true, Ordering::SeqCst);
        backoff = Duration::from_millis(100);
        if first {
            tracing::info!("Redis bus connected");
        } else {
            tracing::info!(users = subscribed.len(), "Redis bus reconnected; sessions resync");
            local.resync_all();
        }
        first = false;

        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let (origin, payload) = split_origin(msg.get_payload_bytes());
                        if origin == Some(tag.as_bytes()) {
                            // Already handed to this node's sockets when it was published here.
                            continue;
                        }
                        let name = msg.get_channel_name();
                        if name == fanout {
                            if let Some((users, json)) = parse_fanout(payload) {
                                // Parsed once for every listed user this node holds (none: nothing to do,
                                // unless it is a revocation, which every node acts on).
                                if local.has_any(&users) || Delivery::is_revocation_json(json) {
                                    local.deliver_many(&users, &Delivery::from_json(json));
                                }
                            }
                        } else if let (Some(user), Ok(json)) = (user_of(name), std::str::from_utf8(payload)) {
                            local.deliver_many(&[user], &Delivery::from_json(json));
                        }
                    }
                    None => {
                        ready.store(false, Ordering::SeqCst);
                        metrics.bus_errors.inc();
                        tracing::warn!("Redis subscriber connection lost; reconnecting");
                        break;
                    }
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Subscribe(user, reply)) => {
                        if !subscribed.contains(&user) {
                            // A Redis that accepts the command and never answers (frozen, partitioned) is a lost
                            // connection too: reconnect, which resubscribes everyone and resyncs the sessions.
                            let done = tokio::time::timeout(SUBSCRIBE_WAIT, sink.subscribe(channel(&prefix, user))).await;
                            if !matches!(done, Ok(Ok(()))) {
                                let _ = reply.send(());
                                ready.store(false, Ordering::SeqCst);
                                metrics.bus_errors.inc();
                                tracing::warn!("Redis subscriber did not answer a subscribe; reconnecting");
                                break;
                            }
                            subscribed.insert(user);
                        }
                        let _ = reply.send(());
                    }
                    Some(Command::Release(user)) => {
                        // Decided on the hub's state now, so a socket that arrived meanwhile keeps its channel.
                        if !local.has_user(user) && subscribed.remove(&user) {
                            let _ = sink.unsubscribe(channel(&prefix, user)).await;
                        }
                    }
                    None => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fanout_payload_reads_back_as_its_origin_recipients_and_frame() {
        let payload = fanout_payload(Some("00ab"), &[3, 17, 400], r#"{"type":"message","x":"a\nb"}"#);
        let (origin, rest) = split_origin(&payload);
        assert_eq!(origin, Some(&b"00ab"[..]));
        let (users, json) = parse_fanout(rest).unwrap();
        assert_eq!(users, vec![3, 17, 400]);
        assert_eq!(json, r#"{"type":"message","x":"a\nb"}"#);
        let plain = fanout_payload(None, &[5], "{}");
        assert_eq!(split_origin(&plain), (None, &plain[..]));
        assert_eq!(parse_fanout(&plain).unwrap(), (vec![5], "{}"));
    }

    #[test]
    fn a_user_payload_reads_back_as_its_origin_and_frame() {
        let payload = user_payload(Some("ff01"), r#"{"type":"pong"}"#);
        assert_eq!(split_origin(&payload), (Some(&b"ff01"[..]), &br#"{"type":"pong"}"#[..]));
        let plain = user_payload(None, r#"{"type":"pong"}"#);
        assert_eq!(split_origin(&plain), (None, &br#"{"type":"pong"}"#[..]));
    }

    #[test]
    fn a_malformed_fanout_payload_delivers_nothing() {
        assert!(parse_fanout(b"no newline").is_none());
        assert!(parse_fanout(b"1,x,3\n{}").is_none());
        assert!(parse_fanout(b"\n{}").is_none());
        assert_eq!(split_origin(b"@no newline"), (None, &b"@no newline"[..]));
    }
}
