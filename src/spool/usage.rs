//! Bytes each core's spool holds, published for the other cores, so
//! `--spool-max-bytes` limits the whole process without a shared counter
//! on the request path; and the bytes each has written, so that each can
//! tell how much of the filesystem's free space went since it looked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes each core's spool holds, published for the others about every
/// tick of its control loop.
#[derive(Debug)]
pub struct SpoolUsage {
    cores: Box<[Slot]>,
}

/// One core's figures, on their own cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    stored: AtomicU64,
    /// Bytes written since the start (grows only).
    written: AtomicU64,
}

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
            slot.stored.store(bytes, Ordering::Relaxed);
        }
    }

    /// Counts `bytes` written by `core` (after each spool write).
    pub(super) fn wrote(&self, core: usize, bytes: u64) {
        if let Some(slot) = self.cores.get(core) {
            slot.written.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// What the cores other than `core` have written since the start.
    pub(super) fn others_written(&self, core: usize) -> u64 {
        let all = self.cores.iter().enumerate();
        all.filter(|&(i, _)| i != core)
            .map(|(_, slot)| slot.written.load(Ordering::Relaxed))
            .sum()
    }

    /// What the cores other than `core` last published.
    pub(super) fn others(&self, core: usize) -> u64 {
        let all = self.cores.iter().enumerate();
        all.filter(|&(i, _)| i != core)
            .map(|(_, slot)| slot.stored.load(Ordering::Relaxed))
            .sum()
    }
}
