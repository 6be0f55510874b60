//! The on-disk spool: one FIFO log per core and route, for events ZeroMQ
//! cannot take (and, in `--ack durable`, a journal of every event).
//!
//! Files (`seg-<seq>.log`) hold records (`record.rs`) and rotate at
//! [`SEGMENT_BYTES`] (journal files also at half the replay window's age);
//! a zero length marks the end of the data in a file (DMA writes pad the
//! last block with zeros).
//!
//! The request path only appends to a route's in-memory `pending` bytes and
//! takes a *ticket*; the core's flusher task writes every route's pending
//! bytes with O_DIRECT (aligned; the last partial block is kept in memory and
//! rewritten by the next flush), `fdatasync`s in durable mode, and completes
//! the ticket. A connection whose responses depend on a ticket waits for it
//! before writing them; if the write failed, those responses become 503s.
//! The core's retry task reads records back (only what is written) and hands
//! them to ZeroMQ oldest first, deleting a file once it is delivered (in
//! durable mode, once it is also older than the replay window).
//!
//! # Layout
//!
//! Imports point one way: `record`, `tickets` and `usage` use none of the
//! others; `dir` uses `record`, `segment` both; [`CoreSpool`], here, holds a
//! core's segment logs, tickets and usage; `writer` and `reader` act on
//! them (this file only re-exports their public items).
//!
//! - `record`: the record codec and damage detection.
//! - `segment`: [`RouteSpool`], one route's log of segment files.
//! - `tickets`: [`Tickets`], what a connection waits on for its 200s.
//! - `usage`: [`SpoolUsage`], every core's bytes for `--spool-max-bytes`.
//! - `writer`: [`flush`], the DMA writer.
//! - `reader`: [`deliver`] and its disk reads.
//! - `dir`: directory names, the lock, the start's checks, [`stranded`].

mod dir;
mod reader;
mod record;
mod segment;
mod tickets;
mod usage;
mod writer;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use dir::{check_dir, lock_dir, route_dir, route_dirs, stranded, Stranded};
pub use reader::{deliver, opened, read, store_chunk, Next};
pub use segment::RouteSpool;
pub use tickets::{Flushed, Tickets};
pub use usage::SpoolUsage;
pub use writer::flush;

/// Segment files rotate past this size.
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// The spools of one core, one per route (index = route index).
#[derive(Debug)]
pub struct CoreSpool {
    pub routes: Vec<RouteSpool>,
    pub tickets: Rc<Tickets>,
    pub durable: bool,
    /// `--spool-max-bytes`, for the whole process.
    pub max_bytes: u64,
    usage: Arc<SpoolUsage>,
    core: usize,
    /// What the other cores' spools held when last looked at.
    others: u64,
    /// The last write failed (and none has succeeded since): why.
    pub write_error: Option<String>,
    pub sync_interval: Duration,
    pub replay_window: Duration,
}

/// Spool settings for one core.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub route_dirs: Vec<String>,
    pub core: usize,
    pub cores: usize,
    pub durable: bool,
    /// `--spool-max-bytes`: for the whole process.
    pub max_bytes: u64,
    /// What every core's spool holds.
    pub usage: Arc<SpoolUsage>,
    pub sync_interval: Duration,
    pub replay_window: Duration,
}

impl SpoolConfig {
    /// The spool settings of one core; `usage` is the process's, shared
    /// by its cores.
    pub fn for_core(
        settings: &crate::config::Settings,
        core: usize,
        usage: Arc<SpoolUsage>,
    ) -> Self {
        Self {
            dir: settings.spool_dir.clone(),
            route_dirs: route_dirs(settings),
            core,
            cores: settings.cores,
            durable: settings.durable,
            max_bytes: settings.spool_max_bytes,
            usage,
            sync_interval: settings.sync_interval,
            replay_window: settings.replay_window,
        }
    }
}

impl CoreSpool {
    /// Finds the segments this core owns (its own directory and those of
    /// cores `k` with `k % cores == core` from runs with more cores) and
    /// queues them for delivery before anything new.
    pub async fn recover(cfg: &SpoolConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        dir::probe_device(&cfg.dir, cfg.core).await?;
        let routes = cfg
            .route_dirs
            .iter()
            .map(|name| RouteSpool::adopt(&cfg.dir.join(name), cfg.core, cfg.cores))
            .collect::<std::io::Result<_>>()?;
        Ok(Self {
            routes,
            tickets: Rc::new(Tickets::default()),
            durable: cfg.durable,
            max_bytes: cfg.max_bytes,
            usage: cfg.usage.clone(),
            core: cfg.core,
            others: 0,
            write_error: None,
            sync_interval: cfg.sync_interval,
            replay_window: cfg.replay_window,
        })
    }

    /// Bytes held for delivery on this core.
    pub fn stored(&self) -> u64 {
        self.routes.iter().map(RouteSpool::stored).sum()
    }

    /// The process's spool holds `--spool-max-bytes` or more: this core's
    /// bytes now, the others' as of the last [`Self::share_usage`].
    pub fn full(&self) -> bool {
        self.stored() + self.others >= self.max_bytes
    }

    /// Publishes this core's bytes and reads the other cores' (each core
    /// calls it every tick of its control loop).
    pub fn share_usage(&mut self) {
        self.usage.publish(self.core, self.stored());
        self.others = self.usage.others(self.core);
    }

    /// A write is in flight.
    pub fn writing(&self) -> bool {
        self.routes.iter().any(|r| r.writing)
    }

    pub fn has_pending(&self) -> bool {
        self.routes.iter().any(|r| !r.pending.is_empty())
    }
}
