//! The Redis bus of cluster mode: one pub/sub channel per user (`<prefix>user:<id>`), plus one channel every node
//! listens to (`<prefix>fanout`) for deliveries to many users at once (group messages and group events). Each
//! node keeps one subscriber connection multiplexing the channels of the users with a socket on it and the fan-out
//! channel, and publishes through one shared multiplexed connection, pipelining a fan-out into a single round
//! trip.
//!
//! Why the fan-out channel: with one channel per user, a message to a 500-member group is 500 PUBLISHes and 500
//! copies to parse on the receiving nodes. On the fan-out channel it is one PUBLISH carrying the recipient list;
//! each node parses it once and queues it for the listed users it holds. Every node receives every such delivery,
//! which costs a cluster of N nodes N copies instead of one per member: the right trade while groups are larger
//! than the cluster. All channels arrive on one subscriber connection, and Redis delivers a connection's messages
//! in publish order, so a `group_removed` and the group's next message cannot swap places.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::Bus;
use crate::metrics::Metrics;
use crate::ws::hub::{Delivery, Hub};

enum Command {
    Subscribe(i64, oneshot::Sender<()>),
    Release(i64),
}

/// Capacity of the subscription-command queue. Commands are tiny and the subscriber task handles them at
/// Redis round-trip speed; 4096 absorbs a reconnect storm of that many users before `subscribe` waits.
const COMMAND_QUEUE: usize = 4096;
/// Channels per SUBSCRIBE when resubscribing after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 1000;
/// Deliveries to more users than this go once over the fan-out channel instead of once per user's channel.
/// Direct messages (two parties) and small groups stay on the per-user channels, which only the nodes holding
/// those users receive.
pub const FANOUT_MIN_USERS: usize = 8;

pub struct RedisBus {
    prefix: Arc<str>,
    hub: Hub,
    publisher: ConnectionManager,
    commands: mpsc::Sender<Command>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
}

fn channel(prefix: &str, user_id: i64) -> String {
    format!("{prefix}user:{user_id}")
}

fn fanout_channel(prefix: &str) -> String {
    format!("{prefix}fanout")
}

/// The fan-out channel's payload: the recipients' ids, comma-separated, a newline, then the frame's JSON.
fn fanout_payload(users: &[i64], json: &str) -> Vec<u8> {
    use std::io::Write;
    let mut out = Vec::with_capacity(users.len() * 8 + json.len() + 1);
    for (i, u) in users.iter().enumerate() {
        let _ = write!(out, "{}{u}", if i == 0 { "" } else { "," });
    }
    out.push(b'\n');
    out.extend_from_slice(json.as_bytes());
    out
}

/// Reads a fan-out payload back; `None` for anything malformed (then nothing is delivered from it).
fn parse_fanout(payload: &[u8]) -> Option<(Vec<i64>, &str)> {
    let split = payload.iter().position(|&b| b == b'\n')?;
    let ids = std::str::from_utf8(&payload[..split]).ok()?;
    let json = std::str::from_utf8(&payload[split + 1..]).ok()?;
    let users = ids.split(',').map(|u| u.parse().ok()).collect::<Option<Vec<i64>>>()?;
    Some((users, json))
}

impl RedisBus {
    /// Starts the subscriber task (ended by `stop`); `publisher` is the node's shared Redis connection.
    pub fn start(
        client: redis::Client,
        publisher: ConnectionManager,
        prefix: &str,
        hub: Hub,
        metrics: Metrics,
        stop: watch::Receiver<bool>,
    ) -> (RedisBus, JoinHandle<()>) {
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE);
        let ready = Arc::new(AtomicBool::new(false));
        let prefix: Arc<str> = prefix.into();
        let task =
            tokio::spawn(subscriber(client, prefix.clone(), hub.clone(), rx, ready.clone(), metrics.clone(), stop));
        (RedisBus { prefix, hub, publisher, commands, ready, metrics }, task)
    }
}

#[async_trait]
impl Bus for RedisBus {
    async fn publish(&self, users: &[i64], delivery: &Arc<Delivery>) -> anyhow::Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        // Messages reach this node's own sockets at once, without the round trip through Redis; the copy that
        // comes back over the subscription is then a duplicate seq, which sessions skip. (Only messages: other
        // frames carry no seq to deduplicate by.)
        if delivery.message.is_some() {
            self.hub.deliver_many(users, delivery);
        }
        let mut pipe = redis::pipe();
        if users.len() > FANOUT_MIN_USERS {
            pipe.cmd("PUBLISH").arg(fanout_channel(&self.prefix)).arg(fanout_payload(users, &delivery.json)).ignore();
        } else {
            for &u in users {
                pipe.cmd("PUBLISH").arg(channel(&self.prefix, u)).arg(delivery.json.as_bytes()).ignore();
            }
        }
        let mut conn = self.publisher.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(|e| {
            self.metrics.bus_errors.inc();
            anyhow::Error::new(e).context("publishing to Redis")
        })
    }

    async fn subscribe(&self, user_id: i64) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Subscribe(user_id, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    fn release(&self, user_id: i64) {
        // Best effort: a full queue only leaves a subscription that a later release or reconnect drops.
        let _ = self.commands.try_send(Command::Release(user_id));
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

/// The subscriber connection's life: connect, subscribe every local user, feed the hub; on loss, mark the bus
/// not ready, reconnect with backoff, resubscribe and tell every session to resync.
async fn subscriber(
    client: redis::Client,
    prefix: Arc<str>,
    hub: Hub,
    mut commands: mpsc::Receiver<Command>,
    ready: Arc<AtomicBool>,
    metrics: Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    let user_of =
        |ch: &str| ch.strip_prefix(&*prefix).and_then(|c| c.strip_prefix("user:")).and_then(|u| u.parse().ok());
    let fanout = fanout_channel(&prefix);
    loop {
        let connected = tokio::select! {
            _ = crate::state::until_stopped(&mut stop) => return,
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
                        _ = crate::state::until_stopped(&mut stop) => return,
                        _ = &mut deadline => break,
                        cmd = commands.recv() => match cmd {
                            Some(Command::Subscribe(_, reply)) => { let _ = reply.send(()); }
                            Some(Command::Release(_)) => {}
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut subscribed: HashSet<i64> = hub.users().into_iter().collect();
        let mut all: Vec<String> = subscribed.iter().map(|u| channel(&prefix, *u)).collect();
        all.push(fanout.clone());
        let mut ok = true;
        for chunk in all.chunks(RESUBSCRIBE_CHUNK) {
            if sink.subscribe(chunk).await.is_err() {
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
            hub.resync_all();
        }
        first = false;

        loop {
            tokio::select! {
                _ = crate::state::until_stopped(&mut stop) => return,
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let name = msg.get_channel_name();
                        if name == fanout {
                            if let Some((users, json)) = parse_fanout(msg.get_payload_bytes()) {
                                // Parsed once for every listed user this node holds (none: nothing to do).
                                if hub.has_any(&users) {
                                    hub.deliver_many(&users, &Delivery::from_json(json));
                                }
                            }
                        } else if let (Some(user), Ok(payload)) = (user_of(name), std::str::from_utf8(msg.get_payload_bytes())) {
                            hub.deliver(user, &Delivery::from_json(payload));
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
                            if sink.subscribe(channel(&prefix, user)).await.is_err() {
                                let _ = reply.send(());
                                ready.store(false, Ordering::SeqCst);
                                break;
                            }
                            subscribed.insert(user);
                        }
                        let _ = reply.send(());
                    }
                    Some(Command::Release(user)) => {
                        // Decided on the hub's state now, so a socket that arrived meanwhile keeps its channel.
                        if !hub.has_user(user) && subscribed.remove(&user) {
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
    fn a_fanout_payload_reads_back_as_its_recipients_and_frame() {
        let payload = fanout_payload(&[3, 17, 400], r#"{"type":"message","x":"a\nb"}"#);
        let (users, json) = parse_fanout(&payload).unwrap();
        assert_eq!(users, vec![3, 17, 400]);
        assert_eq!(json, r#"{"type":"message","x":"a\nb"}"#);
    }

    #[test]
    fn a_malformed_fanout_payload_delivers_nothing() {
        assert!(parse_fanout(b"no newline").is_none());
        assert!(parse_fanout(b"1,x,3\n{}").is_none());
        assert!(parse_fanout(b"\n{}").is_none());
    }
}
