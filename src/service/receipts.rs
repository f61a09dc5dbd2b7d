//! Group read receipts that scale: a read in a group reaches the reader's own devices at once (so their other
//! devices clear the unread count) and, batched, only the senders of the messages it covers, never every member.
//! A member reading a busy group moves their cursor many times a second; within one debounce window only the
//! furthest read of each reader is sent, once, to the union of the senders it covered. The frames are the §4
//! `receipt {conversation_id, user_id, status: read, seq}`; what a client wants beyond its own messages (who read
//! a message) it asks `GET /api/messages/{id}/readers` for.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::frame::ServerFrame;
use crate::domain::model::ReceiptStatus;
use crate::service::events::Events;

/// How long reads wait to be merged: long enough that a reader scrolling through a burst (one read per message
/// shown) sends one receipt, short enough that a sender watching their message sees "read" at once.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// Reads waiting for the next flush: per (conversation, reader), the furthest seq read and whom to tell. Its size
/// is bounded by the distinct readers of one window (each reader's entries merge), and the window is short.
#[derive(Default)]
struct Pending {
    scheduled: bool,
    reads: HashMap<(String, i64), (i64, BTreeSet<i64>)>,
}

/// The batcher of group read receipts; one per node, cheap to clone.
#[derive(Clone)]
pub struct ReadReceipts {
    events: Events,
    pending: Arc<Mutex<Pending>>,
    debounce: Duration,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl ReadReceipts {
    pub fn new(events: Events, debounce: Duration, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self { events, pending: Arc::default(), debounce, tasks, shutdown }
    }

    /// `reader` read the group conversation up to `seq`, covering messages of `senders`: they will get one
    /// `receipt` within the debounce window (merged with the reader's other reads of the window). On shutdown
    /// what is pending is sent at once.
    pub fn read(&self, conversation_id: &str, reader: i64, seq: i64, senders: &[i64]) {
        if senders.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let entry = pending.reads.entry((conversation_id.to_owned(), reader)).or_insert_with(|| (seq, BTreeSet::new()));
        entry.0 = entry.0.max(seq);
        entry.1.extend(senders.iter().copied());
        if std::mem::replace(&mut pending.scheduled, true) {
            return;
        }
        drop(pending);
        let this = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = this.shutdown.cancelled() => {}
                _ = tokio::time::sleep(this.debounce) => {}
            }
            this.flush().await;
        });
    }

    /// Sends every pending read: one frame per reader and conversation, to the senders it covered.
    async fn flush(&self) {
        let reads = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.scheduled = false;
            std::mem::take(&mut pending.reads)
        };
        for ((conversation_id, user_id), (seq, senders)) in reads {
            let to: Vec<i64> = senders.into_iter().collect();
            let frame = ServerFrame::Receipt { conversation_id, user_id, status: ReceiptStatus::Read, seq };
            self.events.publish(&to, &frame).await;
        }
    }
}
