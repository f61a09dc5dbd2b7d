//! Group commit: sends arriving together are written in one transaction, so one durable commit (one fsync)
//! serves many of them. Each caller still gets its own result, and only after the commit.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    Appended, EventOutcome, MessageRecord, MessageStore, NewEvent, NewMessage, StoreError, StoreResult,
    UserConversationRecord,
};

/// The store's background writers (the group-commit dispatcher and its commits, the delivered-cursor writer):
/// every task is tracked, and [`Writers::close`] has them write what they hold and joins them.
#[derive(Clone, Default)]
pub(crate) struct Writers {
    tasks: TaskTracker,
    closing: CancellationToken,
}

impl Writers {
    /// Asks every writer to write what it holds and stop, and waits until they have.
    pub(crate) async fn close(&self) {
        self.closing.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

type Outcome = StoreResult<(MessageRecord, Vec<i64>)>;
type Job = (NewMessage, oneshot::Sender<Outcome>);

/// A backend that can append a batch of messages in one transaction.
#[async_trait]
pub(crate) trait BatchWriter: Send + Sync + 'static {
    async fn insert_batch(&self, batch: &[NewMessage]) -> Vec<Outcome>;

    /// Whether a batch of only such messages, gathered while another batch commits, is better off waiting for
    /// that commit to end (gathering all the while) than leaving as soon as it is [`FORMING`] strong: true where
    /// a batch costs about the same whatever its size, so fewer and larger batches save work (see [`Batcher`]).
    fn gathers_until_commit(&self, _message: &NewMessage) -> bool {
        false
    }
}

/// Most messages in one transaction: large enough to amortise the commit, small enough that one batch does not
/// hold conversation rows locked for long.
const MAX_BATCH: usize = 256;
/// Batches are "forming" once the last one carried this many sends or more (see [`Batcher`]).
const FORMING: usize = 4;
/// Sends waiting for a committer. Beyond this, senders wait (backpressure instead of unbounded memory).
const QUEUE: usize = 4096;

/// Feeds appends to at most `committers` concurrent transactions. One dispatcher task waits for a free committer
/// slot, then takes whatever is queued (up to [`MAX_BATCH`]) as one batch and commits it on a task of its own.
/// Under light load a batch is a single message and nothing waits: a send arriving while another commits gets a
/// slot of its own at once. Once batches are forming (the last one had [`FORMING`] sends or more), a batch found
/// while another is committing gathers more instead of paying a whole commit for a few messages: until it has
/// [`FORMING`] sends, or, where the writer says the batch is better off large
/// ([`BatchWriter::gathers_until_commit`]), until that commit ends, so the slots take turns with batches as large as
/// the load makes them: for plain direct messages on Postgres that cost less CPU per message and gave more
/// throughput; group messages leave at [`FORMING`], as their transaction takes four round trips and waiting made
/// their sends' tail far longer (README, "Measurements behind the tunables"). No lock is held across an await: the
/// queue has one reader, and the slots are a semaphore. The dispatcher ends when the last handle is dropped,
/// after the batches in flight.
#[derive(Clone)]
pub(crate) struct Batcher {
    jobs: mpsc::Sender<Job>,
}

impl Batcher {
    pub(crate) fn spawn<W: BatchWriter>(writer: W, committers: usize, writers: &Writers) -> Self {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE);
        let writer = Arc::new(writer);
        let committers = committers.max(1);
        let slots = Arc::new(Semaphore::new(committers));
        let committed = Arc::new(Notify::new());
        let (tasks, closing) = (writers.tasks.clone(), writers.closing.clone());
        writers.tasks.spawn(async move {
            // The size of the batch dispatched last.
            let mut last_len = 0;
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                // Closing: no new sends are taken, the queued ones are still committed; then the loop ends.
                let first = tokio::select! {
                    job = rx.recv() => job,
                    _ = closing.cancelled(), if !rx.is_closed() => {
                        rx.close();
                        continue;
                    }
                };
                let Some(first) = first else { return };
                let mut batch: Vec<Job> = vec![first];
                // Company is only worth waiting for when batches are forming; a store under light load, whose
                // batches are single messages, never waits.
                let forming = last_len >= FORMING;
                loop {
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    if batch.len() >= MAX_BATCH || !forming {
                        break;
                    }
                    if batch.len() >= FORMING && !batch.iter().all(|(m, _)| writer.gathers_until_commit(m)) {
                        break;
                    }
                    // Registered before looking at the slots, so a commit ending in between still wakes us.
                    let ended = committed.notified();
                    tokio::pin!(ended);
                    ended.as_mut().enable();
                    let other_committing = slots.available_permits() + 1 < committers;
                    if !other_committing {
                        break;
                    }
                    tokio::select! {
                        job = rx.recv() => match job {
                            Some(job) => batch.push(job),
                            None => break,
                        },
                        _ = ended => {}
                    }
                }
                last_len = batch.len();
                let writer = writer.clone();
                let committed = committed.clone();
                tasks.spawn(async move {
                    let (messages, replies): (Vec<NewMessage>, Vec<oneshot::Sender<Outcome>>) =
                        batch.into_iter().unzip();
                    let mut results = writer.insert_batch(&messages).await;
                    if messages.len() > 1 {
                        // A batch that failed as a whole (a commit refused, a statement that poisoned it) must
                        // not fail every send in it: each failed one is tried again on its own, so only the
                        // culprit's sender gets the error.
                        for (i, result) in results.iter_mut().enumerate() {
                            if result.as_ref().is_err_and(StoreError::is_fault) {
                                if let Some(alone) = writer.insert_batch(std::slice::from_ref(&messages[i])).await.pop()
                                {
                                    *result = alone;
                                }
                            }
                        }
                    }
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                    drop(slot);
                    committed.notify_waiters();
                });
            }
        });
        Self { jobs }
    }

    pub(crate) async fn insert(&self, new: NewMessage) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.jobs.send((new, tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// One device's delivered cursor for one conversation. Ordered by user, device, conversation: writers lock
/// cursor rows in this order, so concurrent writers from several nodes cannot deadlock.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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

/// Shortest time between the starts of two cursor writes. Under load this turns a write per few acks into
/// at most 200 writes a second, each carrying every cursor that moved meanwhile (the highest seq of each); an
/// ack after a quiet spell is written at once. 5 ms is far below anything a reconnecting device could notice
/// (a cursor not yet written only means a message is sent again).
const ACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);
/// Cursor rows a node writes per second at most, on average: after a write of `n` rows the next one waits at
/// least `n / ACK_ROWS_PER_SEC`. Small writes are not held back (a few cursors wait at most [`ACK_INTERVAL`]);
/// under fan-out, where every member's cursor moves with every message, a write of 500 rows is followed by a
/// 50 ms pause instead of 5 ms, which cut the database's cursor rows under a busy large group to about a third.
/// A cursor written later only means a device that reconnects in between, or a
/// crash, sends it those messages again.
const ACK_ROWS_PER_SEC: u32 = 10_000;

/// Writes delivered cursors in batches, keeping only the highest seq per cursor. Callers do not wait for the
/// write: a lost ack (a crash before the batch commits) only means the device is sent those messages again,
/// which the at-least-once contract allows and clients deduplicate.
#[derive(Clone)]
pub(crate) struct AckBatcher {
    acks: mpsc::Sender<(AckKey, i64)>,
}

impl AckBatcher {
    pub(crate) fn spawn<W: AckWriter>(writer: W, writers: &Writers) -> Self {
        let (acks, mut rx) = mpsc::channel::<(AckKey, i64)>(ACK_QUEUE);
        let closing = writers.closing.clone();
        writers.tasks.spawn(async move {
            let mut pending: std::collections::HashMap<AckKey, i64> = std::collections::HashMap::new();
            loop {
                // Closing: the acks already queued are still written (without pacing); then the loop ends.
                let next = tokio::select! {
                    ack = rx.recv() => ack,
                    _ = closing.cancelled(), if !rx.is_closed() => {
                        rx.close();
                        continue;
                    }
                };
                let Some((k, s)) = next else { return };
                let started = tokio::time::Instant::now();
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
                if closing.is_cancelled() {
                    continue;
                }
                let paced = std::time::Duration::from_secs(1) * batch.len() as u32 / ACK_ROWS_PER_SEC;
                tokio::select! {
                    _ = tokio::time::sleep_until(started + paced.max(ACK_INTERVAL)) => {}
                    _ = closing.cancelled() => {}
                }
            }
        });
        Self { acks }
    }

    pub(crate) async fn ack(&self, key: AckKey, seq: i64) -> StoreResult<()> {
        self.acks.send((key, seq)).await.map_err(|_| StoreError::Closed)
    }
}

/// A message store whose appends go through group commit ([`Batcher`]) and whose delivered cursors are written
/// in batches ([`AckBatcher`]); everything else goes straight to the store underneath.
pub(crate) struct Batched<S> {
    store: Arc<S>,
    batcher: Batcher,
    acks: AckBatcher,
}

impl<S: MessageStore + 'static> Batched<S> {
    pub(crate) fn new(store: Arc<S>, batcher: Batcher, acks: AckBatcher) -> Self {
        Self { store, batcher, acks }
    }
}

/// The outcome of an insert as [`MessageStore::append`] answers it: a repeated `client_msg_id` (sent earlier, or
/// by a concurrent send that committed first) returns the first message, whatever else changed since; the failed
/// attempt rolled back whole, seq included, so the conversation stays gapless.
pub(crate) async fn settle_append(
    store: &(impl MessageStore + ?Sized),
    new: &NewMessage,
    inserted: StoreResult<(MessageRecord, Vec<i64>)>,
) -> StoreResult<Appended> {
    match inserted {
        Ok((message, recipients)) => Ok(Appended { message, created: true, recipients }),
        Err(e) => match &new.client_msg_id {
            Some(cid) => match store.message_by_client_id(new.from_user_id, cid).await? {
                Some(message) => Ok(Appended { message, created: false, recipients: Vec::new() }),
                None => Err(e),
            },
            None => Err(e),
        },
    }
}

#[async_trait]
impl<S: MessageStore + 'static> MessageStore for Batched<S> {
    async fn append(&self, new: NewMessage) -> StoreResult<Appended> {
        let inserted = self.batcher.insert(new.clone()).await;
        settle_append(&*self.store, &new, inserted).await
    }
    async fn message_by_client_id(&self, from: i64, client_msg_id: &str) -> StoreResult<Option<MessageRecord>> {
        self.store.message_by_client_id(from, client_msg_id).await
    }
    async fn messages_between(
        &self,
        conversation_id: &str,
        after: i64,
        before: i64,
        limit: i64,
        newest: bool,
    ) -> StoreResult<Vec<MessageRecord>> {
        self.store.messages_between(conversation_id, after, before, limit, newest).await
    }
    async fn user_conversations(&self, user: i64) -> StoreResult<Vec<UserConversationRecord>> {
        self.store.user_conversations(user).await
    }
    async fn user_conversation(&self, user: i64, conversation_id: &str) -> StoreResult<Option<UserConversationRecord>> {
        self.store.user_conversation(user, conversation_id).await
    }
    async fn last_messages(&self, user: i64, conversation_ids: &[String]) -> StoreResult<Vec<MessageRecord>> {
        self.store.last_messages(user, conversation_ids).await
    }
    async fn history(
        &self,
        viewer: i64,
        conversation_id: &str,
        after: i64,
        before: i64,
        limit: i64,
        newest: bool,
    ) -> StoreResult<Vec<MessageRecord>> {
        self.store.history(viewer, conversation_id, after, before, limit, newest).await
    }
    async fn append_event(&self, event: NewEvent) -> StoreResult<EventOutcome> {
        self.store.append_event(event).await
    }
    async fn messages_by_ids(&self, ids: &[i64]) -> StoreResult<Vec<MessageRecord>> {
        self.store.messages_by_ids(ids).await
    }
    async fn events_of(&self, target: i64) -> StoreResult<Vec<MessageRecord>> {
        self.store.events_of(target).await
    }
    async fn reactions_of(&self, ids: &[i64]) -> StoreResult<Vec<(i64, String, i64)>> {
        self.store.reactions_of(ids).await
    }
    async fn hide(&self, user: i64, conversation_id: &str, messages: &[(i64, i64)]) -> StoreResult<Vec<i64>> {
        self.store.hide(user, conversation_id, messages).await
    }
    async fn hidden_among(&self, user: i64, ids: &[i64]) -> StoreResult<Vec<i64>> {
        self.store.hidden_among(user, ids).await
    }
    async fn hides_for_device(&self, user: i64, device: &str) -> StoreResult<Vec<(String, i64)>> {
        self.store.hides_for_device(user, device).await
    }
    async fn unread(&self, user: i64) -> StoreResult<Vec<(String, i64, i64)>> {
        self.store.unread(user).await
    }
    async fn mark_read(&self, user: i64, conversation_id: &str, seq: i64) -> StoreResult<bool> {
        self.store.mark_read(user, conversation_id, seq).await
    }
    async fn ack(&self, user: i64, device: &str, conversation_id: &str, seq: i64) -> StoreResult<()> {
        let key = AckKey { user, device: device.to_string(), conversation: conversation_id.to_string() };
        self.acks.ack(key, seq).await
    }
    async fn device_cursors(&self, user: i64, device: &str) -> StoreResult<Vec<(String, i64)>> {
        self.store.device_cursors(user, device).await
    }
}

#[cfg(test)]
mod tests {
    //! The batching policy, with a writer whose commits end when the test says so. The runtime is
    //! single-threaded: spawned senders and the dispatcher run only while the test awaits, in the order they were
    //! woken, so which sends make up which batch is decided by the test's steps, not by timing.

    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::domain::ConversationId;

    /// Records each batch's size as it starts committing, then holds the commit until released.
    struct GatedWriter {
        started: Arc<Mutex<Vec<usize>>>,
        release: Arc<Semaphore>,
    }

    #[async_trait]
    impl BatchWriter for GatedWriter {
        async fn insert_batch(&self, batch: &[NewMessage]) -> Vec<Outcome> {
            self.started.lock().unwrap().push(batch.len());
            self.release.acquire().await.expect("gate open").forget();
            batch.iter().map(|_| Err(StoreError::NotFriends)).collect()
        }

        fn gathers_until_commit(&self, message: &NewMessage) -> bool {
            message.is_plain_direct()
        }
    }

    fn direct(n: i64) -> NewMessage {
        NewMessage {
            conversation_id: ConversationId::Direct { low: 1, high: 2 },
            from_user_id: 1,
            to_user_id: Some(2),
            group_id: None,
            kind: "text",
            body: Some(format!("m{n}")),
            file_id: None,
            client_msg_id: None,
            reply_to_id: None,
            meta: None,
            mentions: Vec::new(),
            forwarded: false,
            item_files: Vec::new(),
        }
    }

    fn group(n: i64) -> NewMessage {
        NewMessage { conversation_id: ConversationId::Group(7), to_user_id: None, group_id: Some(7), ..direct(n) }
    }

    /// Sends each message from a task of its own, then lets every task and the dispatcher run.
    async fn send(batcher: &Batcher, messages: Vec<NewMessage>) -> Vec<tokio::task::JoinHandle<Outcome>> {
        let handles = messages
            .into_iter()
            .map(|m| {
                let b = batcher.clone();
                tokio::spawn(async move { b.insert(m).await })
            })
            .collect();
        settle().await;
        handles
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Starts a batcher with two slots and puts a batch of four in the first one, held: batches are forming.
    async fn forming(
        first: Vec<NewMessage>,
    ) -> (Batcher, Arc<Mutex<Vec<usize>>>, Arc<Semaphore>, Vec<tokio::task::JoinHandle<Outcome>>) {
        let started = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Semaphore::new(0));
        let batcher =
            Batcher::spawn(GatedWriter { started: started.clone(), release: release.clone() }, 2, &Writers::default());
        let held = send(&batcher, first).await;
        assert_eq!(*started.lock().unwrap(), vec![4], "the first four sends make one batch");
        (batcher, started, release, held)
    }

    #[tokio::test]
    async fn direct_sends_arriving_while_a_forming_batch_commits_wait_for_that_commit_and_leave_as_one_batch() {
        let (batcher, started, release, mut all) = forming((0..4).map(direct).collect()).await;
        all.extend(send(&batcher, (4..10).map(direct).collect()).await);
        all.extend(send(&batcher, (10..12).map(direct).collect()).await);
        assert_eq!(*started.lock().unwrap(), vec![4], "nothing else starts while the first batch commits");
        release.add_permits(1);
        settle().await;
        assert_eq!(*started.lock().unwrap(), vec![4, 8], "the eight waiting sends leave together");
        release.add_permits(1);
        for h in all {
            assert!(matches!(h.await.unwrap(), Err(StoreError::NotFriends)), "every send gets its own answer");
        }
    }

    #[tokio::test]
    async fn group_sends_arriving_while_a_forming_batch_commits_leave_once_there_are_four() {
        let (batcher, started, release, mut all) = forming((0..4).map(group).collect()).await;
        all.extend(send(&batcher, (4..10).map(group).collect()).await);
        assert_eq!(*started.lock().unwrap(), vec![4, 6], "the second batch overlaps the first commit");
        all.extend(send(&batcher, (10..12).map(group).collect()).await);
        release.add_permits(1);
        settle().await;
        assert_eq!(*started.lock().unwrap(), vec![4, 6], "two sends wait for company while another batch commits");
        release.add_permits(1);
        settle().await;
        assert_eq!(*started.lock().unwrap(), vec![4, 6, 2], "and leave when no other batch is committing");
        release.add_permits(1);
        for h in all {
            assert!(matches!(h.await.unwrap(), Err(StoreError::NotFriends)), "every send gets its own answer");
        }
    }

    #[tokio::test]
    async fn a_lone_send_under_light_load_does_not_wait_for_a_commit_in_flight() {
        let started = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Semaphore::new(0));
        let batcher =
            Batcher::spawn(GatedWriter { started: started.clone(), release: release.clone() }, 2, &Writers::default());
        let mut all = send(&batcher, vec![direct(0)]).await;
        all.extend(send(&batcher, vec![direct(1)]).await);
        assert_eq!(*started.lock().unwrap(), vec![1, 1], "the second send takes the free slot at once");
        release.add_permits(2);
        for h in all {
            assert!(h.await.unwrap().is_err());
        }
    }
}
