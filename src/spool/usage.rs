//! Bytes each core's spool holds, published for the other cores, so
//! `--spool-max-bytes` limits the whole process without a shared counter
//! on the request path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes each core's spool holds, published for the others about every
/// tick of its control loop.
#[derive(Debug)]
pub struct SpoolUsage {
    cores: Box<[Slot]>,
}

/// One core's figure, on its own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

impl SpoolUsage {
    pub fn new(cores: usize) -> Arc<Self> {
        Arc::new(Self {
            cores: (0..cores).map(|_| Slot::default()).collect(),
        })
    }

    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    pub(super) fn publish(&self, core: usize, bytes: u64) {
        if let Some(slot) = self.cores.get(core) {
            slot.0.store(bytes, Ordering::Relaxed);
        }
    }

    /// What the cores other than `core` last published.
    pub(super) fn others(&self, core: usize) -> u64 {
        let all = self.cores.iter().enumerate();
        all.filter(|&(i, _)| i != core)
            .map(|(_, slot)| slot.0.load(Ordering::Relaxed))
            .sum()
    }
}
