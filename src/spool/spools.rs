//! A core's spools, one per route, with their tickets and byte count, and
//! their recovery from the spool directory at start.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::{dir, segment::RouteSpool, tickets::Tickets, usage::SpoolUsage};

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
            route_dirs: dir::route_dirs(settings),
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
