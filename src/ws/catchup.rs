//! Catch-up planning and flow control for one socket: what the device is missing by the conversations' heads,
//! and the window that holds back the next `sync` batch until the device acknowledged the last one. Pure state,
//! with unit tests.

use std::collections::HashMap;

use crate::domain::ConversationHead;
use crate::inbox::Want;

/// What to read for a device from each conversation's head: everything after what was written to its socket (or
/// after what it may see, if later), up to the head. Returns the reads and how many messages they span.
pub fn plan(heads: Vec<ConversationHead>, written: impl Fn(&str) -> i64) -> (Vec<Want>, i64) {
    let mut wants = Vec::new();
    let mut missing = 0;
    for h in heads {
        let after = written(&h.conversation_id).max(h.visible_from_seq);
        if h.last_seq > after {
            missing += h.last_seq - after;
            wants.push(Want { conversation_id: h.conversation_id, after, upto: h.last_seq });
        }
    }
    (wants, missing)
}

/// The wants one `sync` batch of at most `batch` messages reads: from the first, as many as their spans fill
/// (at least one). Reading the rest too and keeping the oldest `batch` across all of them cost a read per
/// conversation for every batch (200 reads a batch for a device away from 200 conversations); a batch now holds
/// whole runs of a few conversations, each still gapless and in seq order.
pub fn batch_wants(mut wants: Vec<Want>, batch: usize) -> Vec<Want> {
    let mut span = 0usize;
    let mut take = 0;
    for w in &wants {
        if take > 0 && span >= batch {
            break;
        }
        span += (w.upto - w.after).max(0) as usize;
        take += 1;
    }
    wants.truncate(take);
    wants
}

/// The highest seq per conversation among `(conversation, seq)` pairs: what a `sync` batch brings each
/// conversation up to.
pub fn batch_heads<'a>(messages: impl IntoIterator<Item = (&'a str, i64)>) -> HashMap<String, i64> {
    let mut heads: HashMap<String, i64> = HashMap::new();
    for (conversation, seq) in messages {
        let e = heads.entry(conversation.to_string()).or_insert(0);
        *e = (*e).max(seq);
    }
    heads
}

/// The device's acknowledged cursors, and the `sync` batch (if any) whose acks the next batch waits for.
#[derive(Debug, Default)]
pub struct CatchUpWindow {
    /// Highest seq the device acknowledged, per conversation.
    acked: HashMap<String, i64>,
    /// A batch with `more` is out: the next one waits until these seqs are acked.
    awaiting: Option<HashMap<String, i64>>,
}

impl CatchUpWindow {
    /// Starts from the device's stored delivered cursors.
    pub fn new(acked: HashMap<String, i64>) -> Self {
        Self { acked, awaiting: None }
    }

    /// The device's acknowledged cursors.
    pub fn acked(&self) -> &HashMap<String, i64> {
        &self.acked
    }

    /// Whether another batch may go out (no batch awaits its acks).
    pub fn is_open(&self) -> bool {
        self.awaiting.is_none()
    }

    /// A batch went out bringing conversations up to `heads`; with `more`, the next waits for their acks.
    pub fn sent_batch(&mut self, heads: HashMap<String, i64>, more: bool) {
        if more {
            self.awaiting = Some(heads);
        }
    }

    /// Records the device's ack of `seq` in `conversation`; false when it moves nothing (an old or repeated
    /// ack). Opens the window once the awaited batch is acknowledged everywhere.
    pub fn ack(&mut self, conversation: &str, seq: i64) -> bool {
        if seq <= self.acked.get(conversation).copied().unwrap_or(0) {
            return false;
        }
        self.acked.insert(conversation.to_string(), seq);
        if let Some(awaiting) = &self.awaiting {
            if awaiting.iter().all(|(c, s)| self.acked.get(c).copied().unwrap_or(0) >= *s) {
                self.awaiting = None;
            }
        }
        true
    }

    /// The device asked to start over (`sync {}`): nothing is awaited any more.
    pub fn restart(&mut self) {
        self.awaiting = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(c: &str, last: i64, visible_from: i64) -> ConversationHead {
        ConversationHead { conversation_id: c.into(), last_seq: last, visible_from_seq: visible_from }
    }

    #[test]
    fn the_plan_reads_after_what_was_written_or_what_the_user_may_see() {
        let written: HashMap<&str, i64> = [("d:1:2", 5), ("g:3", 2)].into();
        let (wants, missing) =
            plan(vec![head("d:1:2", 9, 0), head("g:3", 10, 7), head("g:4", 3, 3), head("d:1:5", 4, 0)], |c| {
                written.get(c).copied().unwrap_or(0)
            });
        let got: Vec<(&str, i64, i64)> = wants.iter().map(|w| (&*w.conversation_id, w.after, w.upto)).collect();
        assert_eq!(got, vec![("d:1:2", 5, 9), ("g:3", 7, 10), ("d:1:5", 0, 4)]);
        assert_eq!(missing, 4 + 3 + 4);
    }

    #[test]
    fn a_batch_reads_only_the_conversations_it_can_fill() {
        let want = |c: &str, after, upto| Want { conversation_id: c.into(), after, upto };
        let names = |ws: Vec<Want>| ws.into_iter().map(|w| w.conversation_id).collect::<Vec<_>>();
        let wants = vec![want("a", 0, 30), want("b", 5, 65), want("c", 0, 50), want("d", 0, 1)];
        assert_eq!(names(batch_wants(wants.clone(), 100)), ["a", "b", "c"], "30 + 60 < 100: c fills the rest");
        assert_eq!(names(batch_wants(wants.clone(), 90)), ["a", "b"]);
        assert_eq!(names(batch_wants(vec![want("big", 0, 500), want("e", 0, 1)], 100)), ["big"]);
        assert!(batch_wants(Vec::new(), 100).is_empty());
    }

    #[test]
    fn a_batch_with_more_holds_the_window_until_every_conversation_in_it_is_acked() {
        let mut w = CatchUpWindow::new([("d:1:2".to_string(), 1)].into());
        assert!(w.is_open());
        w.sent_batch(batch_heads([("d:1:2", 3), ("g:3", 7), ("d:1:2", 5)]), true);
        assert!(!w.is_open());
        assert!(w.ack("d:1:2", 5));
        assert!(!w.is_open(), "g:3 is not acked yet");
        assert!(!w.ack("d:1:2", 4), "an older ack moves nothing");
        assert!(w.ack("g:3", 6));
        assert!(!w.is_open());
        assert!(w.ack("g:3", 7));
        assert!(w.is_open());
    }

    #[test]
    fn a_last_batch_leaves_the_window_open() {
        let mut w = CatchUpWindow::default();
        w.sent_batch(batch_heads([("g:3", 7)]), false);
        assert!(w.is_open());
    }

    #[test]
    fn a_restart_opens_the_window_and_keeps_the_acks() {
        let mut w = CatchUpWindow::default();
        w.sent_batch(batch_heads([("g:3", 7)]), true);
        assert!(w.ack("g:3", 2));
        w.restart();
        assert!(w.is_open());
        assert_eq!(w.acked().get("g:3"), Some(&2));
    }
}
