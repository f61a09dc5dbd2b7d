//! Per-socket ordering of live messages: each conversation's messages reach the socket in `seq` order, once
//! each, without gaps. Pure state (no I/O, no clock of its own), so its rules have unit tests.
//!
//! Live messages come from the bus, where the publishes of two concurrent sends to one conversation can
//! overtake each other. A message that is the conversation's next seq (one past what was written) goes out at once; one already written
//! is a duplicate and dropped; one ahead of its turn waits in the `reorder_buffer` until the gap before it fills.
//! A gap still open after the grace period (a lost publish), or a buffer that grows past its bound, means the
//! session must catch up from the inbox instead.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

/// What to do with a live message offered to [`SeqOrdering::offer`].
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Write `now` (the offered message, unless the device already has it), then `released` (buffered messages
    /// that became next), in this order. `released` is empty (and allocates nothing) unless a gap just closed.
    Write { now: Option<T>, released: Vec<T> },
    /// Already written (or given) to this socket: drop it.
    Duplicate,
    /// Ahead of its turn: held in the reorder buffer.
    Buffered,
    /// Ahead of its turn and the buffer is full: drop it and catch up from the inbox.
    CatchUp,
}

/// The ordering state of one socket, for items of type `T` (the session's deliveries).
#[derive(Debug)]
pub struct SeqOrdering<T> {
    /// Highest seq written to the socket, per conversation (so `next_seq` is this plus one).
    written: HashMap<String, i64>,
    /// Messages that arrived ahead of their turn, by conversation and seq.
    reorder_buffer: HashMap<String, BTreeMap<i64, T>>,
    /// The device's own messages it already has from their `sent` reply, which came while earlier seqs of the
    /// conversation were still on their way: when their turn comes, they are not written again.
    given: Vec<(String, i64)>,
    /// When the oldest buffered message stops waiting.
    gap_deadline: Option<Instant>,
    /// Most messages held in the buffer and in `given` (each; all conversations together).
    capacity: usize,
    /// How long a message ahead of its turn waits for the ones before it.
    gap_grace: Duration,
}

impl<T> SeqOrdering<T> {
    /// An empty state: nothing written yet. `capacity` bounds the reorder buffer (and the list of given
    /// messages); `gap_grace` is how long a gap may stay open.
    pub fn new(capacity: usize, gap_grace: Duration) -> Self {
        Self {
            written: HashMap::new(),
            reorder_buffer: HashMap::new(),
            given: Vec::new(),
            gap_deadline: None,
            capacity,
            gap_grace,
        }
    }

    /// Starts from the device's delivered cursors: what it has is not written again.
    pub fn reset_to(&mut self, cursors: HashMap<String, i64>) {
        self.written = cursors;
        self.clear_pending();
    }

    /// The highest seq written to the socket in `conversation` (0 for none).
    pub fn written(&self, conversation: &str) -> i64 {
        self.written.get(conversation).copied().unwrap_or(0)
    }

    /// The highest seq the device may acknowledge in `conversation`: written here, or given in a `sent` reply.
    pub fn ackable(&self, conversation: &str) -> i64 {
        let given = self.given.iter().filter(|(c, _)| c == conversation).map(|(_, s)| *s).max().unwrap_or(0);
        self.written(conversation).max(given)
    }

    /// When a buffered message stops waiting for its gap to fill (`None`: nothing is buffered).
    pub fn gap_deadline(&self) -> Option<Instant> {
        self.gap_deadline
    }

    /// Offers a live message of `conversation` with `seq`, at `now`. Buffered messages that become next are
    /// written after it unless `keep` refuses them (a group the user left meanwhile): those are dropped, and the
    /// seq they held stays a gap for catch-up to settle.
    pub fn offer(
        &mut self,
        conversation: &str,
        seq: i64,
        item: T,
        now: Instant,
        keep: impl Fn(&T) -> bool,
    ) -> Offer<T> {
        let mut written = self.written(conversation);
        if seq <= written {
            return Offer::Duplicate;
        }
        if seq > written + 1 {
            let held: usize = self.reorder_buffer.values().map(BTreeMap::len).sum();
            if held >= self.capacity {
                return Offer::CatchUp;
            }
            self.reorder_buffer.entry(conversation.to_string()).or_default().insert(seq, item);
            self.gap_deadline.get_or_insert(now + self.gap_grace);
            return Offer::Buffered;
        }
        let now = if self.take_given(conversation, seq) { None } else { Some(item) };
        let mut released = Vec::new();
        written = seq;
        // The ones that were waiting for this one.
        if let Some(mut waiting) = self.reorder_buffer.remove(conversation) {
            while let Some(entry) = waiting.first_entry() {
                let next = *entry.key();
                if next > written + 1 {
                    break;
                }
                let buffered = entry.remove();
                if next <= written || !keep(&buffered) {
                    continue;
                }
                written = next;
                if !self.take_given(conversation, next) {
                    released.push(buffered);
                }
            }
            if !waiting.is_empty() {
                self.reorder_buffer.insert(conversation.to_string(), waiting);
            }
        }
        // In place when the conversation is known (every message but its first): no key to allocate.
        match self.written.get_mut(conversation) {
            Some(w) => *w = written,
            None => {
                self.written.insert(conversation.to_string(), written);
            }
        }
        if self.reorder_buffer.is_empty() {
            self.gap_deadline = None;
        }
        Offer::Write { now, released }
    }

    /// The device got its own message `seq` in a `sent` reply. The next seq counts as written; one ahead of its
    /// turn is remembered so that its live copy is not written again (while there is room; otherwise the live
    /// copy is simply written again, a duplicate the device drops by seq).
    pub fn note_given(&mut self, conversation: &str, seq: i64) {
        let written = self.written(conversation);
        if seq == written + 1 {
            self.written.insert(conversation.to_string(), seq);
        } else if seq > written + 1 && self.given.len() < self.capacity {
            self.given.push((conversation.to_string(), seq));
        }
    }

    /// Catch-up wrote messages up to `seq` in `conversation`.
    pub fn caught_up_to(&mut self, conversation: &str, seq: i64) {
        let e = self.written.entry(conversation.to_string()).or_insert(0);
        *e = (*e).max(seq);
    }

    /// Forgets what waits in the buffer and what was given ahead of its turn: catch-up reads it all again.
    pub fn clear_pending(&mut self) {
        self.reorder_buffer.clear();
        self.given.clear();
        self.gap_deadline = None;
    }

    fn take_given(&mut self, conversation: &str, seq: i64) -> bool {
        match self.given.iter().position(|(c, s)| *s == seq && c == conversation) {
            Some(i) => {
                self.given.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_millis(50);

    fn ordering() -> SeqOrdering<i64> {
        SeqOrdering::new(4, GRACE)
    }

    /// The offer, with what it writes flattened in order (`Offer::Write` as `Write(vec![…])`).
    fn offer(o: &mut SeqOrdering<i64>, seq: i64) -> Flat {
        flat(o.offer("d:1:2", seq, seq, Instant::now(), |_| true))
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Flat {
        Write(Vec<i64>),
        Duplicate,
        Buffered,
        CatchUp,
    }

    fn flat(o: Offer<i64>) -> Flat {
        match o {
            Offer::Write { now, released } => Flat::Write(now.into_iter().chain(released).collect()),
            Offer::Duplicate => Flat::Duplicate,
            Offer::Buffered => Flat::Buffered,
            Offer::CatchUp => Flat::CatchUp,
        }
    }

    #[test]
    fn messages_in_order_are_written_at_once() {
        let mut o = ordering();
        for seq in 1..=3 {
            assert_eq!(offer(&mut o, seq), Flat::Write(vec![seq]));
        }
        assert_eq!(o.written("d:1:2") + 1, 4, "next_seq");
        assert_eq!(o.gap_deadline(), None);
    }

    #[test]
    fn an_overtaking_publish_waits_and_goes_out_right_after_the_one_it_overtook() {
        let mut o = ordering();
        assert_eq!(offer(&mut o, 1), Flat::Write(vec![1]));
        assert_eq!(offer(&mut o, 3), Flat::Buffered);
        assert_eq!(offer(&mut o, 4), Flat::Buffered);
        assert!(o.gap_deadline().is_some());
        assert_eq!(offer(&mut o, 2), Flat::Write(vec![2, 3, 4]));
        assert_eq!(o.gap_deadline(), None, "nothing waits any more");
    }

    #[test]
    fn duplicates_are_dropped_whether_written_or_buffered_before() {
        let mut o = ordering();
        assert_eq!(offer(&mut o, 1), Flat::Write(vec![1]));
        assert_eq!(offer(&mut o, 1), Flat::Duplicate);
        assert_eq!(offer(&mut o, 3), Flat::Buffered);
        assert_eq!(offer(&mut o, 3), Flat::Buffered, "held once, in one slot");
        assert_eq!(offer(&mut o, 2), Flat::Write(vec![2, 3]));
        assert_eq!(offer(&mut o, 3), Flat::Duplicate);
    }

    #[test]
    fn a_gap_that_never_fills_sets_a_deadline_of_the_grace_period_and_keeps_it() {
        let mut o = ordering();
        let t0 = Instant::now();
        assert_eq!(flat(o.offer("d:1:2", 2, 2, t0, |_| true)), Flat::Buffered);
        assert_eq!(o.gap_deadline(), Some(t0 + GRACE));
        // Later arrivals do not push the deadline back.
        assert_eq!(flat(o.offer("d:1:2", 3, 3, t0 + GRACE / 2, |_| true)), Flat::Buffered);
        assert_eq!(o.gap_deadline(), Some(t0 + GRACE));
        // Catch-up takes over: what waited is read again from the inbox.
        o.clear_pending();
        assert_eq!(o.gap_deadline(), None);
        o.caught_up_to("d:1:2", 3);
        assert_eq!(offer(&mut o, 3), Flat::Duplicate);
    }

    #[test]
    fn a_full_reorder_buffer_asks_for_catch_up_instead_of_growing() {
        let mut o = ordering();
        for seq in 2..=5 {
            assert_eq!(offer(&mut o, seq), Flat::Buffered);
        }
        assert_eq!(offer(&mut o, 6), Flat::CatchUp);
    }

    #[test]
    fn own_messages_acked_from_sent_ahead_of_earlier_ones_are_not_written_again() {
        let mut o = ordering();
        assert_eq!(offer(&mut o, 1), Flat::Write(vec![1]));
        // The device's own message got seq 3 while seq 2 (someone else's) is still on its way here.
        o.note_given("d:1:2", 3);
        assert_eq!(o.written("d:1:2"), 1, "seq 2 is not written yet");
        assert_eq!(o.ackable("d:1:2"), 3, "the device may ack what its sent reply gave it");
        assert_eq!(offer(&mut o, 3), Flat::Buffered, "its live copy waits for seq 2");
        assert_eq!(offer(&mut o, 2), Flat::Write(vec![2]), "and is then dropped: the device has it");
        assert_eq!(o.written("d:1:2") + 1, 4, "next_seq");
        assert_eq!(o.ackable("d:1:2"), 3);
    }

    #[test]
    fn an_own_message_that_is_next_counts_as_written() {
        let mut o = ordering();
        o.note_given("d:1:2", 1);
        assert_eq!(o.written("d:1:2"), 1);
        assert_eq!(offer(&mut o, 1), Flat::Duplicate);
    }

    #[test]
    fn a_buffered_message_refused_by_keep_is_dropped_and_leaves_its_gap() {
        let mut o = ordering();
        let now = Instant::now();
        assert_eq!(flat(o.offer("g:7", 2, 2, now, |_| true)), Flat::Buffered);
        assert_eq!(flat(o.offer("g:7", 3, 3, now, |_| true)), Flat::Buffered);
        assert_eq!(flat(o.offer("g:7", 1, 1, now, |s| *s != 2)), Flat::Write(vec![1]));
        assert_eq!(o.written("g:7"), 1);
    }

    #[test]
    fn conversations_are_ordered_independently() {
        let mut o = ordering();
        let now = Instant::now();
        assert_eq!(flat(o.offer("d:1:2", 2, 2, now, |_| true)), Flat::Buffered);
        assert_eq!(flat(o.offer("g:9", 1, 10, now, |_| true)), Flat::Write(vec![10]));
        assert!(o.gap_deadline().is_some(), "d:1:2 still waits");
        assert_eq!(flat(o.offer("d:1:2", 1, 1, now, |_| true)), Flat::Write(vec![1, 2]));
        assert_eq!(o.gap_deadline(), None);
    }

    /// Randomized: whatever order the publishes of a conversation arrive in (with duplicates), what is written
    /// is each seq exactly once, in ascending order, with no gap — checked after every offer.
    #[test]
    fn any_arrival_order_writes_each_seq_once_in_order() {
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _round in 0..500 {
            let n = 1 + (next() % 12) as i64;
            let mut arrivals: Vec<i64> = (1..=n).collect();
            for _ in 0..(next() % 4) {
                arrivals.push(1 + (next() % n as u64) as i64);
            }
            for i in (1..arrivals.len()).rev() {
                arrivals.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            let mut o = SeqOrdering::new(64, GRACE);
            let mut out: Vec<i64> = Vec::new();
            for seq in &arrivals {
                if let Flat::Write(items) = flat(o.offer("c", *seq, *seq, Instant::now(), |_| true)) {
                    out.extend(items);
                }
                let expected: Vec<i64> = (1..=out.len() as i64).collect();
                assert_eq!(out, expected, "arrivals {arrivals:?}");
                assert_eq!(o.written("c"), out.len() as i64);
            }
            assert_eq!(out.len() as i64, n, "every seq written once arrivals {arrivals:?}");
            assert_eq!(o.gap_deadline(), None);
        }
    }
}
