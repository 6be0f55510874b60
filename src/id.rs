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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
