//! Acknowledged delivery: the events a route sent and its consumers have
//! not acknowledged yet, kept until they are, and sent again after a
//! consumer disconnects or when their ack is overdue.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// One route's unacknowledged events on one core.
///
/// The events' bytes live in one arena, appended in send order and
/// compacted when acknowledged holes outweigh what is still held, so
/// holding an event allocates nothing once the arena, the map and the
/// queues have grown to the route's working size.
///
/// `order` holds `(id, turn)` by last send, oldest first; an entry whose
/// event was acknowledged or sent again since (another turn) is stale and
/// skipped, so an ack or a re-send costs no search.
pub(super) struct Unacked {
    events: HashMap<u64, Held>,
    order: VecDeque<(u64, u64)>,
    /// Key and envelope of each held event, back to back, in the order
    /// they were first held here; holes where acknowledged ones were.
    arena: Vec<u8>,
    /// `(id, start in arena)` in arena order, for compaction.
    spans: VecDeque<(u64, usize)>,
    /// The next send's turn.
    turn: u64,
    /// Events sent before this turn are due now (a consumer disconnected).
    due_before: u64,
    /// Keys and envelopes held.
    bytes: u64,
    /// The most `bytes` may hold; past it new events wait in the spool.
    limit: u64,
    timeout_ms: u64,
}

/// One event waiting for its ack.
struct Held {
    /// Its key then its envelope, from here in the arena.
    start: usize,
    len: u32,
    key_len: u32,
    turn: u64,
    /// When it was last sent (Unix ms).
    sent: u64,
    /// When it was first sent (Unix ms), kept if it goes back to the spool.
    first_sent: u64,
}

impl Held {
    fn text<'a>(&self, arena: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        arena[self.start..self.start + self.len as usize].split_at(self.key_len as usize)
    }
}

/// What [`Unacked::ack`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ack {
    /// Held until now: delivered.
    Done,
    /// Not held: acknowledged twice, or never sent by this core.
    Unknown,
}

impl Unacked {
    pub fn new(limit: u64, timeout: Duration) -> Self {
        // Room for the events of a busy second from the start: a map
        // whose acked entries leave tombstones is rehashed in place (not
        // grown) while it holds at most half its capacity.
        Self {
            events: HashMap::with_capacity(1024),
            order: VecDeque::with_capacity(2048),
            arena: Vec::new(),
            spans: VecDeque::new(),
            turn: 0,
            due_before: 0,
            bytes: 0,
            limit,
            timeout_ms: timeout.as_millis() as u64,
        }
    }

    /// No room for more: new events wait in the spool until acks free it.
    #[inline]
    pub fn full(&self) -> bool {
        self.bytes >= self.limit
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// When the oldest event still unacknowledged was first sent (Unix ms).
    pub fn oldest_first_sent(&self) -> Option<u64> {
        self.events.values().map(|h| h.first_sent).min()
    }

    /// Holds event `id`, just sent at `now` (first sent at `first_sent`;
    /// both Unix ms).
    pub fn hold(&mut self, id: u64, key: &[u8], envelope: &[u8], now: u64, first_sent: u64) {
        if let Some(old) = self.events.remove(&id) {
            self.bytes -= u64::from(old.len);
        }
        let len = key.len() + envelope.len();
        if self.arena.len() + len > self.arena.capacity() {
            self.compact_arena();
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(envelope);
        self.spans.push_back((id, start));
        self.bytes += len as u64;
        let turn = self.next_turn();
        let held = Held {
            start,
            len: len as u32,
            key_len: key.len() as u32,
            turn,
            sent: now,
            first_sent,
        };
        self.events.insert(id, held);
        self.order.push_back((id, turn));
    }

    fn next_turn(&mut self) -> u64 {
        self.turn += 1;
        self.turn
    }

    /// Takes the ack of `id`.
    pub fn ack(&mut self, id: u64) -> Ack {
        match self.events.remove(&id) {
            Some(held) => {
                self.bytes -= u64::from(held.len);
                self.compact_order();
                if self.events.is_empty() {
                    self.arena.clear();
                    self.spans.clear();
                }
                Ack::Done
            }
            None => Ack::Unknown,
        }
    }

    /// A consumer disconnected: what it held unacknowledged is gone with
    /// it, so everything sent so far is due again.
    pub fn lost(&mut self) {
        self.due_before = self.turn + 1;
    }

    /// Sends due events again with `send` at `now` (Unix ms), oldest
    /// first, until one is not taken; returns how many went.
    pub fn resend_due(&mut self, now: u64, mut send: impl FnMut(&[u8], &[u8]) -> bool) -> u64 {
        let mut sent = 0;
        while let Some(&(id, turn)) = self.order.front() {
            let Some(held) = self.events.get(&id).filter(|h| h.turn == turn) else {
                self.order.pop_front();
                continue;
            };
            let due = turn < self.due_before || now.saturating_sub(held.sent) >= self.timeout_ms;
            if !due {
                break;
            }
            let (key, envelope) = held.text(&self.arena);
            if !send(key, envelope) {
                break;
            }
            self.order.pop_front();
            let turn = self.next_turn();
            let held = self.events.get_mut(&id).expect("found above");
            held.turn = turn;
            held.sent = now;
            self.order.push_back((id, turn));
            sent += 1;
        }
        sent
    }

    /// Hands every held event to `f` (key, envelope, first send), oldest
    /// send first, and forgets them.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8], &[u8], u64)) -> usize {
        let mut n = 0;
        while let Some((id, turn)) = self.order.pop_front() {
            if self.events.get(&id).is_some_and(|h| h.turn == turn) {
                let held = self.events.remove(&id).expect("found");
                let (key, envelope) = held.text(&self.arena);
                f(key, envelope, held.first_sent);
                n += 1;
            }
        }
        self.events.clear();
        self.arena.clear();
        self.spans.clear();
        self.bytes = 0;
        n
    }

    /// Drops stale order entries once they outnumber the live ones.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.events.len() + 1024 {
            let events = &self.events;
            self.order
                .retain(|(id, turn)| events.get(id).is_some_and(|h| h.turn == *turn));
        }
    }

    /// The arena is at its capacity: when at least half of it is holes,
    /// slides what is held to the front (in arena order, so every copy
    /// moves bytes towards the start); otherwise lets it grow.
    fn compact_arena(&mut self) {
        if (self.bytes as usize) * 2 > self.arena.len() {
            return;
        }
        let Self {
            events,
            arena,
            spans,
            ..
        } = self;
        let mut to = 0;
        spans.retain_mut(|(id, start)| match events.get_mut(id) {
            Some(held) if held.start == *start => {
                let len = held.len as usize;
                arena.copy_within(*start..*start + len, to);
                (held.start, *start) = (to, to);
                to += len;
                true
            }
            _ => false,
        });
        arena.truncate(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_events_are_forgotten_and_the_rest_resent_when_due() {
        let t0 = 1_000_000u64;
        let mut u = Unacked::new(1 << 20, Duration::from_secs(30));
        for id in 1..=3u64 {
            u.hold(id, b"k", format!("e{id}").as_bytes(), t0, 1_000);
        }
        assert_eq!(u.ack(2), Ack::Done);
        assert_eq!(u.ack(2), Ack::Unknown, "twice");
        assert_eq!(u.ack(9), Ack::Unknown, "never sent");
        let mut got = Vec::new();
        let mut take = |_: &[u8], e: &[u8]| {
            got.push(e.to_vec());
            true
        };
        assert_eq!(u.resend_due(t0 + 1_000, &mut take), 0);
        assert_eq!(u.resend_due(t0 + 31_000, &mut take), 2);
        assert_eq!(got, [b"e1".to_vec(), b"e3".to_vec()], "past the timeout");
        got.clear();
        let mut take = |_: &[u8], e: &[u8]| {
            got.push(e.to_vec());
            true
        };
        let t1 = t0 + 32_000;
        assert_eq!(u.resend_due(t1, &mut take), 0, "the timeout starts again");
        u.lost();
        assert_eq!(u.resend_due(t1, &mut take), 2, "a disconnect: all due");
        assert_eq!(u.resend_due(t1, &mut take), 0, "once");
        assert_eq!(u.len(), 2);
        let mut kept = Vec::new();
        assert_eq!(u.drain(|_, e, first| kept.push((e.to_vec(), first))), 2);
        assert_eq!(kept, [(b"e1".to_vec(), 1_000), (b"e3".to_vec(), 1_000)]);
        assert_eq!(u.len(), 0);
    }

    #[test]
    fn the_arena_is_compacted_and_every_event_reads_back() {
        let mut u = Unacked::new(1 << 20, Duration::from_secs(30));
        let text = |id: u64| format!("event {id} {}", "x".repeat((id % 50) as usize));
        // Two of three acked, one held: holes everywhere.
        for id in 1..=2_000u64 {
            u.hold(id, b"key", text(id).as_bytes(), 0, id);
            if id % 3 != 0 {
                assert_eq!(u.ack(id), Ack::Done);
            }
        }
        let held_before = u.len();
        let capacity = u.arena.capacity();
        for id in 2_001..=4_000u64 {
            u.hold(id, b"key", text(id).as_bytes(), 0, id);
            u.ack(id);
        }
        assert_eq!(u.len(), held_before);
        assert!(
            u.arena.capacity() <= 2 * capacity,
            "holes are reused: {} after {capacity}",
            u.arena.capacity()
        );
        let mut got = Vec::new();
        u.drain(|k, e, first| {
            assert_eq!(k, b"key");
            assert_eq!(e, text(first).as_bytes(), "event {first} reads back");
            got.push(first);
        });
        assert_eq!(got.len(), held_before);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "oldest send first");
    }

    #[test]
    fn the_memory_bound_says_full() {
        let mut u = Unacked::new(10, Duration::from_secs(30));
        u.hold(1, b"k", b"12345678", 0, 0);
        assert!(!u.full());
        u.hold(2, b"k", b"1", 0, 0);
        assert!(u.full());
        u.ack(1);
        assert!(!u.full());
    }
}
