//! Group commit: sends arriving together are written in one transaction, so one durable commit (one fsync)
//! serves many of them. Each caller still gets its own result, and only after the commit.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{MessageRecord, NewMessage, StoreError, StoreResult};

type Outcome = StoreResult<(MessageRecord, Vec<i64>)>;
type Job = (NewMessage, oneshot::Sender<Outcome>);

/// A backend that can append a batch of messages in one transaction.
#[async_trait]
pub(crate) trait BatchWriter: Send + Sync + 'static {
    async fn insert_batch(&self, batch: &[NewMessage]) -> Vec<Outcome>;
}

/// Most messages in one transaction: large enough to amortise the commit, small enough that one batch does not
/// hold conversation rows locked for long.
const MAX_BATCH: usize = 256;
/// Sends waiting for a committer. Beyond this, senders wait (backpressure instead of unbounded memory).
const QUEUE: usize = 4096;

/// Feeds appends to at most `committers` concurrent transactions. One dispatcher task waits for a free committer
/// slot, then takes whatever is queued (up to [`MAX_BATCH`]) as one batch and commits it on a task of its own.
/// Under light load a batch is a single message and nothing waits; under heavy load batches grow by themselves
/// while every slot is busy. No lock is held across an await: the queue has one reader, and the slots are a
/// semaphore. The dispatcher ends when the last handle is dropped, after the batches in flight.
#[derive(Clone)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    pub(crate) fn spawn<W: BatchWriter>(writer: W, committers: usize) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        let writer = Arc::new(writer);
        let slots = Arc::new(Semaphore::new(committers.max(1)));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let Some(first) = rx.recv().await else { return };
                let mut batch: Vec<Job> = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let writer = writer.clone();
                tokio::spawn(async move {
                    let (messages, replies): (Vec<NewMessage>, Vec<oneshot::Sender<Outcome>>) =
                        batch.into_iter().unzip();
                    let results = writer.insert_batch(&messages).await;
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                    drop(slot);
                });
            }
        });
        Self { jobs }
    }

    pub(crate) async fn insert(&self, new: NewMessage) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let gone = || StoreError::Db(sqlx::Error::PoolClosed);
        self.jobs.send((new, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// One device's delivered cursor for one conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AckKey {
    pub user: i64,
    pub device: String,
    pub conversation: String,
}

/// A backend that can move many delivered cursors in one transaction.
#[async_trait]
pub(crate) trait AckWriter: Send + Sync + 'static {
    async fn write_acks(&self, acks: &[(AckKey, i64)]) -> StoreResult<()>;
}

/// Acks waiting to be written. An ack is a cursor move; when this many are queued, acking sessions wait.
const ACK_QUEUE: usize = 16384;

/// Writes delivered cursors in batches, keeping only the highest seq per cursor. Callers do not wait for the
/// write: a lost ack (a crash before the batch commits) only means the device is sent those messages again,
/// which the at-least-once contract allows and clients deduplicate.
#[derive(Clone)]
pub(crate) struct AckBatcher {
    acks: mpsc::Sender<(AckKey, i64)>,
}

impl AckBatcher {
    pub(crate) fn spawn<W: AckWriter>(writer: W) -> Self {
        let (acks, mut rx) = mpsc::channel::<(AckKey, i64)>(ACK_QUEUE);
        tokio::spawn(async move {
            let mut pending: std::collections::HashMap<AckKey, i64> = std::collections::HashMap::new();
            while let Some((k, s)) = rx.recv().await {
                pending.insert(k, s);
                while pending.len() < MAX_BATCH * 4 {
                    match rx.try_recv() {
                        Ok((k, s)) => {
                            let e = pending.entry(k).or_insert(s);
                            *e = (*e).max(s);
                        }
                        Err(_) => break,
                    }
                }
                let batch: Vec<(AckKey, i64)> = pending.drain().collect();
                if let Err(e) = writer.write_acks(&batch).await {
                    tracing::warn!(error = %e, acks = batch.len(), "writing delivered cursors failed; those messages may be sent again");
                }
            }
        });
        Self { acks }
    }

    pub(crate) async fn ack(&self, key: AckKey, seq: i64) -> StoreResult<()> {
        self.acks.send((key, seq)).await.map_err(|_| StoreError::Db(sqlx::Error::PoolClosed))
    }
}
