//! The resend ring (accepted mode): copies of the latest events a route
//! handed to ZeroMQ, put back in its spool when a consumer may have lost
//! them.

use crate::spool::CoreSpool;

/// Accepted mode: a consumer that disconnects takes with it what it had
/// received but not processed, and libzmq drops what it had queued for it
/// (up to SNDHWM). Copies of the latest events handed to ZeroMQ on a route
/// are kept here, in two generations of up to half the budget each (so
/// between half and all of it is always kept, with no allocation once
/// both have grown), and re-sent through the spool on a disconnect.
pub(super) struct Recent {
    half: usize,
    old: Vec<u8>,
    new: Vec<u8>,
}

/// What [`Recent::respool`] put back in the spool.
#[derive(Debug, Clone, Copy)]
pub(super) struct Respooled {
    pub events: usize,
    /// Keys and envelopes.
    pub bytes: u64,
    /// The oldest events not re-sent: the spool's filesystem had no room
    /// for them above `--spool-min-free`.
    pub skipped: usize,
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

    /// Records are `[u32 key length][u32 envelope length][key][envelope]`.
    #[inline]
    pub fn push(&mut self, key: &[u8], envelope: &[u8]) {
        let len = 8 + key.len() + envelope.len();
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
        self.new.extend_from_slice(key);
        self.new.extend_from_slice(envelope);
    }

    /// Hands every kept event to `f`, oldest first.
    fn each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        for buf in [&self.old, &self.new] {
            let mut at = 0;
            while at + 8 <= buf.len() {
                let word =
                    |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap_or_default());
                let (k, e) = (word(at) as usize, word(at + 4) as usize);
                let key = at + 8..at + 8 + k;
                f(&buf[key.clone()], &buf[key.end..key.end + e]);
                at = key.end + e;
            }
        }
    }

    /// Hands every kept event to `f`, oldest first, and forgets them.
    fn drain(&mut self, f: impl FnMut(&[u8], &[u8])) {
        self.each(f);
        self.old.clear();
        self.new.clear();
    }

    /// Appends every kept event to route `route`'s spool (behind whatever
    /// waits there), oldest first, and forgets them. These events got
    /// their 200: the spool's limit does not refuse them (the resend
    /// buffer bounds them).
    pub fn respool(&mut self, spool: &mut CoreSpool, route: usize) -> Respooled {
        let mut out = Respooled {
            events: 0,
            bytes: 0,
            skipped: 0,
        };
        // The re-sends may not take the filesystem below --spool-min-free:
        // new events need that room more. The newest are kept, as those
        // are the likeliest not to have been processed.
        let room = spool.disk_room();
        let mut total = 0u64;
        self.each(|key, envelope| total += record_len(key, envelope));
        let mut excess = total.saturating_sub(room);
        self.drain(|key, envelope| {
            let len = record_len(key, envelope);
            if excess > 0 {
                excess = excess.saturating_sub(len);
                out.skipped += 1;
                return;
            }
            spool.routes[route].append(key, envelope);
            out.events += 1;
            out.bytes += (key.len() + envelope.len()) as u64;
        });
        if out.events > 0 {
            spool.tickets.take(); // wakes the flusher; nobody waits for these
        }
        out
    }
}

/// Bytes an event takes in a spool file.
fn record_len(key: &[u8], envelope: &[u8]) -> u64 {
    (crate::spool::RECORD_OVERHEAD + key.len() + envelope.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::Recent;

    fn kept(r: &mut Recent) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        r.drain(|k, e| out.push((k.to_vec(), e.to_vec())));
        out
    }

    #[test]
    fn recent_keeps_the_latest_events_oldest_first() {
        // Records are 8 + 1 + 10 = 19 bytes; a half holds two of them.
        let mut r = Recent::new(80);
        for i in 0..7u8 {
            r.push(b"k", &[i; 10]);
        }
        let got: Vec<u8> = kept(&mut r).iter().map(|(_, e)| e[0]).collect();
        assert_eq!(got, [4, 5, 6], "the older generation, then the newer");
        assert!(kept(&mut r).is_empty(), "drained means forgotten");
        r.push(b"key", b"env");
        assert_eq!(kept(&mut r), [(b"key".to_vec(), b"env".to_vec())]);
    }

    #[test]
    fn recent_with_no_budget_keeps_nothing() {
        let mut r = Recent::new(0);
        r.push(b"k", b"e");
        assert!(kept(&mut r).is_empty());
        let mut r = Recent::new(20);
        r.push(b"k", &[0; 20]);
        assert!(
            kept(&mut r).is_empty(),
            "an event larger than a half is not kept"
        );
    }
}
