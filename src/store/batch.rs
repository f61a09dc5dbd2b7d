//! Group commit: sends arriving together are written in one transaction, so one durable commit (one fsync)
//! serves many of them. Each caller still gets its own result, and only after the commit.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex};

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

/// Feeds appends to `committers` tasks; a committer takes whatever is queued (up to [`MAX_BATCH`]) as one
/// batch. Under light load a batch is a single message and nothing waits; under heavy load batches grow by
/// themselves. The tasks end when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    pub(crate) fn spawn<W: BatchWriter>(writer: W, committers: usize) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let writer = Arc::new(writer);
        for _ in 0..committers.max(1) {
            let (rx, writer) = (rx.clone(), writer.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch: Vec<Job> = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        match rx.recv().await {
                            Some(job) => batch.push(job),
                            None => return,
                        }
                        while batch.len() < MAX_BATCH {
                            match rx.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                    }
                    let (messages, replies): (Vec<NewMessage>, Vec<oneshot::Sender<Outcome>>) =
                        batch.into_iter().unzip();
                    let results = writer.insert_batch(&messages).await;
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
            });
        }
        Self { jobs }
    }

    pub(crate) async fn insert(&self, new: NewMessage) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let gone = || StoreError::Db(sqlx::Error::PoolClosed);
        self.jobs.send((new, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}
