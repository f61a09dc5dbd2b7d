//! The node's one ordered write path to Redis: publishes (the bus) and inbox appends (the inbox) are queued
//! here and leave in pipelines, as many queued writes per round trip as have gathered while the last one was out.
//!
//! Why a queue instead of each caller issuing its own pipeline: a send used to wait for its inbox append and its
//! publish before answering, although neither is part of what makes it durable (the database commit is), and each
//! cost the node a socket write and read of its own. Queued, a send answers right after its commit, and under load
//! one round trip carries the writes of many sends and receipts.
//!
//! **Order:** writes leave in the order they were queued, on one connection, so an inbox append queued before a
//! publish reaches Redis first, and a `group_removed` queued before the group's next message is published first.
//! **At-most-once, like the bus:** a pipeline that fails is logged and counted, not retried; every message is
//! durable in the database, and readers fall back to it (see [`crate::bus::Bus`] and [`crate::inbox::Inbox`]).

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Writes waiting for Redis. A write is a few commands for one send or event; while Redis answers at its usual
/// speed the queue holds one round trip's worth, so 8192 only fills when Redis stalls — then senders wait
/// (back-pressure) instead of the node's memory growing.
const QUEUE: usize = 8192;
/// Most queued writes per pipeline: a direct message is 6 commands, so a pipeline stays below ~1,500 commands
/// and a few hundred KiB, and a long queue still drains in steps that let each reply be read promptly.
const MAX_WRITES: usize = 256;

/// A handle to the writer task; cheap to clone. The task ends at [`RedisWriter::close`] (or when the last handle
/// is dropped), after writing what was queued.
#[derive(Clone)]
pub struct RedisWriter {
    tx: mpsc::Sender<Write>,
}

enum Write {
    Commands(Vec<redis::Cmd>),
    /// Answered once everything queued before it has been written (or has failed).
    Flush(oneshot::Sender<()>),
    /// Like `Flush`, and the writer stops: writes queued after it may be dropped.
    Close(oneshot::Sender<()>),
}

impl RedisWriter {
    pub fn start(conn: ConnectionManager, metrics: Metrics) -> RedisWriter {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(conn, rx, metrics));
        RedisWriter { tx }
    }

    /// Queues commands that go out together, after everything queued before them. Returns once queued (waits
    /// only while the queue is full); the result of the commands is not reported back.
    pub async fn write(&self, commands: Vec<redis::Cmd>) {
        if commands.is_empty() {
            return;
        }
        let _ = self.tx.send(Write::Commands(commands)).await;
    }

    /// Returns once everything queued before this call has been written to Redis (or has failed).
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Write::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Writes everything queued before this call, then stops the writer; returns once it has stopped. Used last
    /// when a node shuts down: later writes are dropped (they are at-most-once anyway).
    pub async fn close(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Write::Close(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn run(mut conn: ConnectionManager, mut rx: mpsc::Receiver<Write>, metrics: Metrics) {
    let mut queued = Vec::with_capacity(MAX_WRITES);
    let mut flushes = Vec::new();
    let mut closing = false;
    while !closing && rx.recv_many(&mut queued, MAX_WRITES).await > 0 {
        let mut pipe = redis::pipe();
        for write in queued.drain(..) {
            match write {
                Write::Commands(commands) => {
                    for cmd in commands {
                        pipe.add_command(cmd).ignore();
                    }
                }
                Write::Flush(done) => flushes.push(done),
                Write::Close(done) => {
                    flushes.push(done);
                    closing = true;
                }
            }
        }
        if !pipe.is_empty() {
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                metrics.bus_errors.inc();
                tracing::warn!(error = %e, commands = pipe.len(), "a Redis write failed; readers fall back to the database");
            }
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
