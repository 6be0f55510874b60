//! A core's spools, one per route, with their tickets and byte count, and
//! their recovery from the spool directory at start.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::disk::{self, Disk};
use super::{dir, segment::RouteSpool, tickets::Tickets, usage::SpoolUsage};
use crate::config::Headroom;

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
    /// The last write failed (and none has succeeded since), not for want
    /// of space (that is `disk.no_space`): why.
    pub write_error: Option<String>,
    pub sync_interval: Duration,
    pub replay_window: Duration,
    /// The spool's filesystem: free space and `--spool-min-free`.
    pub disk: Disk,
    /// The device's DMA support has been probed ([`dir::probe_device`]);
    /// not yet when the start found the filesystem full.
    pub(super) probed: bool,
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
    /// `--spool-min-free`.
    pub min_free: Headroom,
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
            route_dirs: dir::route_dirs(settings),
            core,
            cores: settings.cores,
            durable: settings.durable,
            max_bytes: settings.spool_max_bytes,
            usage,
            sync_interval: settings.sync_interval,
            replay_window: settings.replay_window,
            min_free: settings.spool_min_free,
        }
    }
}

impl CoreSpool {
    /// Finds the segments this core owns (its own directory and those of
    /// cores `k` with `k % cores == core` from runs with more cores) and
    /// queues them for delivery before anything new.
    ///
    /// Needs no free space: on a full filesystem it starts all the same,
    /// so that consumers can take the spooled events, which frees it.
    pub async fn recover(cfg: &SpoolConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&cfg.dir)?;
        let routes: Vec<RouteSpool> = cfg
            .route_dirs
            .iter()
            .map(|name| RouteSpool::adopt(&cfg.dir.join(name), cfg.core, cfg.cores))
            .collect::<std::io::Result<_>>()?;
        let adopted = routes
            .iter()
            .find_map(|r| r.segments.front().map(|s| s.path.clone()));
        let probed = match dir::probe_device(&cfg.dir, cfg.core, adopted.as_deref()).await {
            Ok(()) => true,
            // Probed before the first new file is written instead.
            Err(e) if disk::no_space(&e) => false,
            Err(e) => return Err(e),
        };
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
            disk: Disk::new(cfg.dir.clone(), cfg.min_free),
            probed,
        })
    }

    /// Counts bytes this core wrote to the spool's filesystem.
    pub(super) fn wrote(&mut self, bytes: u64) {
        self.disk.spend(bytes);
        self.usage.wrote(self.core, bytes);
    }

    /// This core's number.
    pub fn core(&self) -> usize {
        self.core
    }

    /// This core's share of the room its filesystem has above
    /// `--spool-min-free` (every core writes to it).
    pub fn disk_room(&self) -> u64 {
        self.disk.room() / self.usage.cores().max(1) as u64
    }

    /// Bytes held for delivery on this core.
    pub fn stored(&self) -> u64 {
        self.routes.iter().map(RouteSpool::stored).sum()
    }

    /// No new event should need the spool: the process's spool holds
    /// `--spool-max-bytes` or more (this core's bytes now, the others' as
    /// of the last [`Self::share_usage`]), or its filesystem is below
    /// `--spool-min-free` or out of space.
    #[inline]
    pub fn full(&self) -> bool {
        self.over_max() || self.disk.low()
    }

    /// The process's spool holds `--spool-max-bytes` or more.
    #[inline]
    pub fn over_max(&self) -> bool {
        self.stored() + self.others >= self.max_bytes
    }

    /// Publishes this core's bytes and reads the other cores' (each core
    /// calls it every tick of its control loop), and looks at the
    /// filesystem's free space when the last look is old.
    pub fn share_usage(&mut self) {
        self.usage.publish(self.core, self.stored());
        self.others = self.usage.others(self.core);
        let written = self.usage.others_written(self.core);
        if self.disk.refresh(std::time::Instant::now(), written) {
            let free = self.disk.free().unwrap_or(0);
            tracing::info!(
                "core {}: spool: the filesystem has room again ({} free): events can be spooled again",
                self.core,
                bytesize::ByteSize(free).to_string_as(true)
            );
        }
    }

    /// How long delivered journal files are kept for replay: the replay
    /// window, or not at all while the filesystem is low on space (new
    /// events need the room more than old ones need a replay).
    pub fn retention(&self) -> Duration {
        match self.disk.low() {
            true => Duration::ZERO,
            false => self.replay_window,
        }
    }

    /// A write is in flight.
    pub fn writing(&self) -> bool {
        self.routes.iter().any(|r| r.writing)
    }

    pub fn has_pending(&self) -> bool {
        self.routes.iter().any(|r| !r.pending.is_empty())
    }
}
