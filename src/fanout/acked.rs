//! Acknowledged delivery: the events a route sent and its consumers have
//! not acknowledged yet, kept until they are, and sent again after a
//! consumer disconnects or when their ack is overdue.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// One route's unacknowledged events on one core.
///
/// `order` holds `(id, turn)` by last send, oldest first; an entry whose
/// event was acknowledged or sent again since (another turn) is stale and
/// skipped, so an ack or a re-send costs no search.
pub(super) struct Unacked {
    events: HashMap<u64, Held>,
    order: VecDeque<(u64, u64)>,
    /// The next send's turn.
    turn: u64,
    /// Events sent before this turn are due now (a consumer disconnected).
    due_before: u64,
    /// Keys and envelopes held.
    bytes: u64,
    /// The most `bytes` may hold; past it new events wait in the spool.
    limit: u64,
    pub timeout: Duration,
}

/// One event waiting for its ack.
struct Held {
    /// The key, then the envelope.
    text: Box<[u8]>,
    key_len: usize,
    turn: u64,
    sent: Instant,
    /// When it was first sent (Unix ms), kept if it goes back to the spool.
    first_sent: u64,
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
        Self {
            events: HashMap::new(),
            order: VecDeque::new(),
            turn: 0,
            due_before: 0,
            bytes: 0,
            limit,
            timeout,
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

    /// Holds event `id`, just sent (first sent at `first_sent`, Unix ms).
    pub fn hold(&mut self, id: u64, key: &[u8], envelope: &[u8], now: Instant, first_sent: u64) {
        let mut text = Vec::with_capacity(key.len() + envelope.len());
        text.extend_from_slice(key);
        text.extend_from_slice(envelope);
        let turn = self.next_turn();
        self.bytes += text.len() as u64;
        let held = Held {
            text: text.into_boxed_slice(),
            key_len: key.len(),
            turn,
            sent: now,
            first_sent,
        };
        if let Some(old) = self.events.insert(id, held) {
            self.bytes -= old.text.len() as u64;
        }
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
                self.bytes -= held.text.len() as u64;
                self.compact();
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

    /// Sends due events again with `send`, oldest first, until one is not
    /// taken; returns how many went.
    pub fn resend_due(&mut self, now: Instant, mut send: impl FnMut(&[u8], &[u8]) -> bool) -> u64 {
        let mut sent = 0;
        while let Some(&(id, turn)) = self.order.front() {
            let Some(held) = self.events.get(&id).filter(|h| h.turn == turn) else {
                self.order.pop_front();
                continue;
            };
            let due = turn < self.due_before || now.duration_since(held.sent) >= self.timeout;
            if !due {
                break;
            }
            let (key, envelope) = held.text.split_at(held.key_len);
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
                let (key, envelope) = held.text.split_at(held.key_len);
                f(key, envelope, held.first_sent);
                n += 1;
            }
        }
        self.events.clear();
        self.bytes = 0;
        n
    }

    /// Drops stale order entries once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.events.len() + 1024 {
            let events = &self.events;
            self.order
                .retain(|(id, turn)| events.get(id).is_some_and(|h| h.turn == *turn));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acked_events_are_forgotten_and_the_rest_resent_when_due() {
        let t0 = Instant::now();
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
        assert_eq!(u.resend_due(t0 + Duration::from_secs(1), &mut take), 0);
        assert_eq!(u.resend_due(t0 + Duration::from_secs(31), &mut take), 2);
        assert_eq!(got, [b"e1".to_vec(), b"e3".to_vec()], "past the timeout");
        got.clear();
        let mut take = |_: &[u8], e: &[u8]| {
            got.push(e.to_vec());
            true
        };
        let t1 = t0 + Duration::from_secs(32);
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
    fn the_memory_bound_says_full() {
        let mut u = Unacked::new(10, Duration::from_secs(30));
        u.hold(1, b"k", b"12345678", Instant::now(), 0);
        assert!(!u.full());
        u.hold(2, b"k", b"1", Instant::now(), 0);
        assert!(u.full());
        u.ack(1);
        assert!(!u.full());
    }
}
