//! Snowflake ids: `(unix_ms << 22) | (worker << 12) | sequence`.
//!
//! Every core owns one [`IdGen`]; its 10-bit worker id is unique per core and
//! per node ([`worker_id`]), so cores never coordinate. The generator's clock
//! never goes backwards: when the wall clock steps back, or one core issues
//! more than 4096 ids in a millisecond, it keeps counting on its own logical
//! millisecond (which runs at most a little ahead of the wall clock), so an
//! id never repeats and `id >> 22` is always the event's `time`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the node part of the worker id.
pub const NODE_BITS: u32 = 4;
/// Bits of the core part of the worker id.
pub const CORE_BITS: u32 = 6;
/// Largest accepted `--node-id`.
pub const MAX_NODE_ID: u16 = (1 << NODE_BITS) - 1;
/// Most cores one node can run.
pub const MAX_CORES: usize = 1 << CORE_BITS;

const SEQ_BITS: u32 = 12;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// The 10-bit worker id of one core on one node.
pub fn worker_id(node_id: u16, core: usize) -> u16 {
    debug_assert!(node_id <= MAX_NODE_ID && core < MAX_CORES);
    (node_id << CORE_BITS) | core as u16
}

/// Wall-clock Unix time in milliseconds.
pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Wall-clock Unix time in nanoseconds.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Wall-clock milliseconds from a core's TSC readings
/// ([`quanta::Clock::raw`]), so a reading the handler takes anyway (for
/// its decode timing) also dates the event, instead of a second clock call
/// per request. The wall clock itself is read once per 100 ms and the TSC
/// counts from there: at NTP's ±500 ppm slew that drifts ≤ 50 µs before
/// the next reading, a stepped clock is followed within 100 ms, and
/// [`IdGen`] keeps ids unique and ordered across a step back.
#[derive(Debug, Default)]
pub struct WallClock {
    raw: u64,
    unix_ns: u64,
}

impl WallClock {
    const REBASE_NS: u64 = 100_000_000;

    /// Unix milliseconds at the TSC reading `raw` (taken on this core).
    /// A reading before the base (a TSC reset, say) reads the wall clock
    /// again rather than stay at the base.
    pub fn ms(&mut self, clock: &quanta::Clock, raw: u64) -> u64 {
        let since = clock.delta_as_nanos(self.raw, raw);
        if self.unix_ns == 0 || since >= Self::REBASE_NS || raw < self.raw {
            (self.raw, self.unix_ns) = (raw, now_ns());
            return self.unix_ns / 1_000_000;
        }
        (self.unix_ns + since) / 1_000_000
    }
}

/// The decimal text of a millisecond, formatted again only when the
/// millisecond changes: every envelope carries its `time`, and a core
/// writes many per millisecond under load.
#[derive(Debug, Default)]
pub struct MsText {
    ms: u64,
    len: usize,
    text: [u8; 20],
}

impl MsText {
    pub fn get(&mut self, ms: u64) -> &str {
        if ms != self.ms || self.len == 0 {
            let mut buf = itoa::Buffer::new();
            let digits = buf.format(ms).as_bytes();
            self.text[..digits.len()].copy_from_slice(digits);
            (self.ms, self.len) = (ms, digits.len());
        }
        // SAFETY: `text[..len]` holds the ASCII digits written above.
        unsafe { std::str::from_utf8_unchecked(&self.text[..self.len]) }
    }
}

/// The millisecond part of an id.
pub fn time_of(id: u64) -> u64 {
    id >> (SEQ_BITS + 10)
}

/// One core's id generator.
#[derive(Debug)]
pub struct IdGen {
    worker: u64,
    last_ms: u64,
    seq: u64,
}

impl IdGen {
    pub fn new(worker: u16) -> Self {
        Self {
            worker: u64::from(worker) & 0x3ff,
            last_ms: 0,
            seq: 0,
        }
    }

    /// The next id, given the wall clock now (`now_ms`).
    pub fn next(&mut self, now_ms: u64) -> u64 {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.seq = 0;
        } else {
            // Same millisecond, or the clock stepped back: keep counting.
            self.seq += 1;
            if self.seq > SEQ_MASK {
                self.last_ms += 1;
                self.seq = 0;
            }
        }
        (self.last_ms << 22) | (self.worker << SEQ_BITS) | self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn wall_clock_counts_from_the_tsc_and_rereads_the_wall_clock() {
        let (clock, mock) = quanta::Clock::mock();
        let mut wall = WallClock::default();
        let before = now_ms();
        let first = wall.ms(&clock, clock.raw());
        assert!(before <= first && first <= now_ms());
        // Within the window: the TSC's count, exactly.
        mock.increment(std::time::Duration::from_millis(5));
        assert_eq!(wall.ms(&clock, clock.raw()), first + 5);
        mock.increment(std::time::Duration::from_millis(90));
        assert_eq!(wall.ms(&clock, clock.raw()), first + 95);
        // Past it: the wall clock again (the mock's TSC ran ahead of it).
        mock.increment(std::time::Duration::from_millis(10_000));
        let before = now_ms();
        let again = wall.ms(&clock, clock.raw());
        assert!(before <= again && again <= now_ms());
        assert!(again < first + 10_000);
        // A TSC that went back: the wall clock again, not the stale base
        // (which is at least 5 ms old by then).
        mock.decrement(std::time::Duration::from_millis(5_000));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let before = now_ms();
        let back = wall.ms(&clock, clock.raw());
        assert!(before <= back && back <= now_ms());
    }

    #[test]
    fn ms_text_follows_the_millisecond() {
        let mut t = MsText::default();
        assert_eq!(t.get(0), "0");
        assert_eq!(t.get(1_700_000_000_123), "1700000000123");
        assert_eq!(t.get(1_700_000_000_123), "1700000000123");
        assert_eq!(t.get(1_700_000_000_124), "1700000000124");
        assert_eq!(t.get(u64::MAX), "18446744073709551615");
        assert_eq!(t.get(7), "7");
    }

    #[test]
    fn layout_matches_the_contract() {
        let mut g = IdGen::new(worker_id(3, 5));
        let id = g.next(1_540_771_658_623);
        assert_eq!(time_of(id), 1_540_771_658_623);
        assert_eq!((id >> 12) & 0x3ff, (3 << 6) | 5);
        assert_eq!(id & 0xfff, 0);
    }

    #[test]
    fn more_than_4096_in_one_ms_borrow_the_next_ms() {
        let mut g = IdGen::new(1);
        let mut seen = HashSet::new();
        let mut last = 0;
        for _ in 0..10_000 {
            let id = g.next(1000);
            assert!(id > last, "ids must increase");
            last = id;
            assert!(seen.insert(id));
        }
        assert_eq!(time_of(last), 1000 + 10_000 / 4096);
    }

    #[test]
    fn clock_stepping_back_never_repeats() {
        let mut g = IdGen::new(7);
        let a = g.next(5000);
        let b = g.next(4000);
        let c = g.next(4999);
        let d = g.next(5001);
        assert!(a < b && b < c && c < d);
        assert_eq!(time_of(b), 5000);
    }

    #[test]
    fn workers_of_different_cores_and_nodes_differ() {
        let mut all = HashSet::new();
        for node in 0..=MAX_NODE_ID {
            for core in 0..MAX_CORES {
                assert!(all.insert(worker_id(node, core)));
            }
        }
        assert_eq!(all.len(), 1024);
    }
}
