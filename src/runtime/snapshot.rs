//! A copy of one core's metrics and route states, taken by the core on
//! request between connections, so the admin endpoint never touches a
//! core's state.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::conn::budget::Figures;
use crate::fanout::RouteStatus;
use crate::metrics::Metrics;
use crate::shard::Shard;

/// A request to a core.
#[derive(Debug)]
pub enum Ask {
    Snapshot(mpsc::Sender<CoreSnapshot>),
}

/// A copy of one core's metrics and route states.
#[derive(Debug, Clone)]
pub struct CoreSnapshot {
    pub core: usize,
    pub metrics: Metrics,
    pub routes: Vec<RouteStatus>,
    pub open_connections: usize,
    /// Heap allocations made on the core's thread ([`crate::allocs`]).
    pub allocations: u64,
    /// Request bodies in memory (`--max-inflight-body`).
    pub inflight_body: Figures,
    pub accepting: bool,
    pub uptime: Duration,
    /// The spool: bytes held, the limit, and why its last write failed
    /// (if it did and none has succeeded since).
    pub spool_stored: u64,
    /// The process's spool holds `--spool-max-bytes`, as this core sees it.
    pub spool_full: bool,
    pub spool_max: u64,
    pub spool_error: Option<String>,
    pub disk: DiskState,
    /// The labels of `metrics.counters.sources`: each `[[source]]`'s
    /// service glob, then `-`.
    pub source_labels: Vec<String>,
    /// HTTPS: the served certificate's file and `notAfter` (seconds since
    /// the epoch).
    pub tls_cert: Option<(String, i64)>,
}

/// The spool's filesystem, as a core last looked at it.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskState {
    /// Free bytes (`statvfs`), less what the core wrote since its look;
    /// `None` if the filesystem could not be looked at.
    pub free: Option<u64>,
    pub size: Option<u64>,
    /// `--spool-min-free`, in bytes.
    pub min_free: u64,
    /// Writes fail for want of space, and no room has been seen since.
    pub no_space: bool,
}

impl DiskState {
    /// The filesystem across the cores that answered: the least free any
    /// saw, and disk-full if any core's writes fail for want of space.
    pub fn merged<'a>(snaps: impl IntoIterator<Item = &'a CoreSnapshot>) -> Self {
        let mut merged = DiskState::default();
        for (i, s) in snaps.into_iter().enumerate() {
            let d = &s.disk;
            merged.free = match (merged.free, d.free) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            merged.size = merged.size.or(d.size);
            if i == 0 {
                merged.min_free = d.min_free;
            }
            merged.no_space |= d.no_space;
        }
        merged
    }

    /// Below `--spool-min-free` (but writes still work).
    pub fn low(&self) -> bool {
        self.free.is_some_and(|free| free < self.min_free)
    }
}

impl CoreSnapshot {
    pub fn of(
        shard: &Shard,
        open_connections: usize,
        inflight_body: Figures,
        accepting: bool,
        started: Instant,
    ) -> Self {
        let spool = shard.fanout.spool.borrow();
        Self {
            core: shard.core,
            metrics: shard.metrics.clone(),
            routes: shard.fanout.status(),
            open_connections,
            allocations: crate::allocs::of_core(shard.core),
            inflight_body,
            accepting,
            uptime: started.elapsed(),
            spool_stored: spool.stored(),
            spool_full: spool.over_max(),
            spool_max: spool.max_bytes,
            spool_error: spool.write_error.clone(),
            disk: DiskState {
                free: spool.disk.free(),
                size: spool.disk.size(),
                min_free: spool.disk.min_free,
                no_space: spool.disk.no_space(),
            },
            source_labels: shard.settings().sources.labels(),
            tls_cert: shard
                .settings()
                .tls
                .as_ref()
                .map(|t| (t.cert_path.display().to_string(), t.not_after())),
        }
    }

    pub fn empty(core: usize) -> Self {
        Self {
            core,
            metrics: Metrics::default(),
            routes: Vec::new(),
            open_connections: 0,
            allocations: crate::allocs::of_core(core),
            inflight_body: Figures::default(),
            accepting: false,
            uptime: Duration::ZERO,
            spool_stored: 0,
            spool_full: false,
            spool_max: 0,
            spool_error: None,
            disk: DiskState::default(),
            source_labels: Vec::new(),
            tls_cert: None,
        }
    }
}

/// Asks every core for a snapshot; `None` for a core that does not answer
/// within a second.
pub fn snapshots(cores: &[mpsc::Sender<Ask>]) -> Vec<Option<CoreSnapshot>> {
    let replies: Vec<_> = cores
        .iter()
        .map(|core| {
            let (tx, rx) = mpsc::channel();
            let _ = core.send(Ask::Snapshot(tx));
            rx
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(1);
    replies
        .into_iter()
        .map(|rx| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()
        })
        .collect()
}
