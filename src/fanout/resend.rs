//! The resend ring (accepted mode): copies of the latest events a route
//! handed to ZeroMQ, each with the time of its first send; after a
//! disconnect, those a consumer may not have processed yet go back to the
//! spool, marked as re-sends.

use crate::spool::CoreSpool;

/// Accepted mode: a consumer that disconnects takes with it what it had
/// received but not processed, and libzmq drops what it had queued for it
/// (up to SNDHWM). Copies of the latest events handed to ZeroMQ on a route
/// are kept here, in two generations of up to half the budget each (so
/// between half and all of it is always kept, with no allocation once
/// both have grown).
///
/// Only what the consumer may still have held is re-sent ([`Bound`]):
/// events first sent within `--resend-window`, and no more than its
/// queues hold. A re-send keeps its first send's time, so an event is
/// re-sent only within the window after it first left, however often
/// consumers restart.
pub(super) struct Recent {
    half: usize,
    old: Vec<u8>,
    new: Vec<u8>,
}

/// What a consumer that disconnected may not have processed: events sent
/// less than `window_ms` ago, the newest first, as many as its queues
/// hold: `messages` (libzmq's on both sides) and then `bytes` (the
/// kernels' send and receive queues).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bound {
    pub now_ms: u64,
    pub window_ms: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// What [`Recent::respool`] put back in the spool.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Respooled {
    pub events: usize,
    /// Keys and envelopes.
    pub bytes: u64,
    /// Events kept that were past the window or the queues' bound.
    pub dropped: usize,
    /// Of those, the events not re-sent because they were first sent more
    /// than `--resend-window` ago (within the queues' bound otherwise): a
    /// consumer that was that far behind may not have processed them.
    pub too_old: usize,
    /// The oldest events not re-sent: the spool's filesystem had no room
    /// for them above `--spool-min-free`.
    pub skipped: usize,
}

/// Bytes before a kept event's key: key and envelope lengths, first send.
const ENTRY: usize = 16;

/// One kept event.
#[derive(Debug, Clone, Copy)]
struct Kept<'a> {
    key: &'a [u8],
    envelope: &'a [u8],
    first_sent: u64,
}

impl Recent {
    pub fn new(bytes: u64) -> Self {
        let half = (bytes / 2) as usize;
        Self {
            half,
            old: Vec::with_capacity(half),
            new: Vec::with_capacity(half),
        }
    }

    /// Records are `[u32 key length][u32 envelope length][u64 first sent,
    /// Unix ms][key][envelope]`.
    #[inline]
    pub fn push(&mut self, key: &[u8], envelope: &[u8], first_sent: u64) {
        let len = ENTRY + key.len() + envelope.len();
        if len > self.half {
            return;
        }
        if self.new.len() + len > self.half {
            std::mem::swap(&mut self.old, &mut self.new);
            self.new.clear();
        }
        self.new
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.new
            .extend_from_slice(&(envelope.len() as u32).to_le_bytes());
        self.new.extend_from_slice(&first_sent.to_le_bytes());
        self.new.extend_from_slice(key);
        self.new.extend_from_slice(envelope);
    }

    /// Every kept event, oldest first.
    fn kept(&self) -> Vec<Kept<'_>> {
        let mut out = Vec::new();
        for buf in [&self.old, &self.new] {
            let mut at = 0;
            while at + ENTRY <= buf.len() {
                let word =
                    |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap_or_default());
                let (k, e) = (word(at) as usize, word(at + 4) as usize);
                let first_sent =
                    u64::from_le_bytes(buf[at + 8..at + 16].try_into().unwrap_or_default());
                let key = at + ENTRY..at + ENTRY + k;
                out.push(Kept {
                    key: &buf[key.clone()],
                    envelope: &buf[key.end..key.end + e],
                    first_sent,
                });
                at = key.end + e;
            }
        }
        out
    }

    /// The kept events within `bound`, oldest first, how many others
    /// were kept, and how many of those were left out for their age alone
    /// (those past the queues' bound are not counted). A first send in the
    /// future (the clock went back) counts as age 0: re-sent.
    fn within(&self, bound: Bound) -> (Vec<Kept<'_>>, usize, usize) {
        let all = self.kept();
        let total = all.len();
        let (mut messages, mut bytes) = (0u64, 0u64);
        let mut out = Vec::new();
        let mut too_old = 0;
        for k in all.into_iter().rev() {
            if bound.now_ms.saturating_sub(k.first_sent) >= bound.window_ms {
                too_old += 1;
                continue;
            }
            if messages < bound.messages {
                messages += 1;
            } else {
                bytes += (k.key.len() + k.envelope.len()) as u64;
                if bytes > bound.bytes {
                    break;
                }
            }
            out.push(k);
        }
        out.reverse();
        let dropped = total - out.len();
        (out, dropped, too_old)
    }

    /// Forgets every kept event.
    pub fn clear(&mut self) {
        self.old.clear();
        self.new.clear();
    }

    /// Appends the kept events within `bound` to route `route`'s spool
    /// (behind whatever waits there) as re-sends, oldest first, and
    /// forgets every kept event. These events got their 200: the spool's
    /// limit does not refuse them (the bound limits them).
    pub fn respool(&mut self, spool: &mut CoreSpool, route: usize, bound: Bound) -> Respooled {
        let mut out = Respooled::default();
        let (again, dropped, too_old) = self.within(bound);
        (out.dropped, out.too_old) = (dropped, too_old);
        // The re-sends may not take the filesystem below --spool-min-free:
        // new events need that room more. The newest are kept, as those
        // are the likeliest not to have been processed.
        let room = spool.disk_room();
        let total: u64 = again.iter().map(|k| record_len(k.key, k.envelope)).sum();
        let mut excess = total.saturating_sub(room);
        for k in again {
            let len = record_len(k.key, k.envelope);
            if excess > 0 {
                excess = excess.saturating_sub(len);
                out.skipped += 1;
                continue;
            }
            spool.routes[route].append_repeat(k.key, k.envelope, k.first_sent);
            out.events += 1;
            out.bytes += (k.key.len() + k.envelope.len()) as u64;
        }
        if out.events > 0 {
            spool.tickets.take(); // wakes the flusher; nobody waits for these
        }
        self.clear();
        out
    }
}

/// Bytes a re-sent event takes in a spool file (with its first send's time).
fn record_len(key: &[u8], envelope: &[u8]) -> u64 {
    (crate::spool::RECORD_OVERHEAD + 8 + key.len() + envelope.len()) as u64
}

/// Now, in Unix milliseconds.
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::{Bound, Recent};

    const ALL: Bound = Bound {
        now_ms: 1_000,
        window_ms: u64::MAX,
        messages: u64::MAX,
        bytes: 0,
    };

    fn firsts(r: &Recent, bound: Bound) -> Vec<u8> {
        r.within(bound).0.iter().map(|k| k.envelope[0]).collect()
    }

    #[test]
    fn recent_keeps_the_latest_events_oldest_first() {
        // Records are 16 + 1 + 10 = 27 bytes; a half holds two of them.
        let mut r = Recent::new(110);
        for i in 0..7u8 {
            r.push(b"k", &[i; 10], 1_000);
        }
        assert_eq!(
            firsts(&r, ALL),
            [4, 5, 6],
            "the older generation, then the newer"
        );
        r.clear();
        assert!(firsts(&r, ALL).is_empty(), "cleared means forgotten");
        r.push(b"key", b"env", 1_000);
        let (kept, dropped, _) = r.within(ALL);
        assert_eq!(
            (kept[0].key, kept[0].envelope, dropped),
            (&b"key"[..], &b"env"[..], 0)
        );
    }

    #[test]
    fn recent_with_no_budget_keeps_nothing() {
        let mut r = Recent::new(0);
        r.push(b"k", b"e", 1_000);
        assert!(firsts(&r, ALL).is_empty());
        let mut r = Recent::new(40);
        r.push(b"k", &[0; 20], 1_000);
        assert!(
            firsts(&r, ALL).is_empty(),
            "an event larger than a half is not kept"
        );
    }

    #[test]
    fn only_events_within_the_window_and_the_queues_are_resent() {
        let mut r = Recent::new(1 << 20);
        for i in 0..10u8 {
            // Sent at 0, 100, …, 900 ms.
            r.push(b"k", &[i; 10], u64::from(i) * 100);
        }
        let at = |now_ms, window_ms| Bound {
            now_ms,
            window_ms,
            ..ALL
        };
        assert_eq!(firsts(&r, at(1_000, 350)), [7, 8, 9], "younger than 350 ms");
        assert_eq!(r.within(at(1_000, 350)).2, 7, "seven too old");
        assert!(
            firsts(&r, at(60_000, 5_000)).is_empty(),
            "a minute later: nothing"
        );
        assert_eq!(r.within(at(60_000, 5_000)).2, 10, "all too old");
        assert_eq!(
            firsts(&r, at(500, 5_000)),
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            "sent in the future (the clock went back): age 0, re-sent"
        );
        assert_eq!(
            firsts(&r, at(500, 350)),
            [2, 3, 4, 5, 6, 7, 8, 9],
            "sent at 0 and 100 are 500 and 400 ms old; the rest younger or in the future"
        );
        assert_eq!(r.within(at(500, 350)).2, 2);
        let queues = Bound {
            messages: 2,
            bytes: 25,
            ..at(1_000, 5_000)
        };
        assert_eq!(
            firsts(&r, queues),
            [6, 7, 8, 9],
            "two messages, then 25 bytes: two more of 11"
        );
        let (_, dropped, too_old) = r.within(queues);
        assert_eq!((dropped, too_old), (6, 0), "past the queues, not too old");
    }
}
