//! One core's state and its control loop: spool delivery, admin
//! snapshots and timeouts, until the drain.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::acks::AckBatch;
use super::snapshot::{Ask, CoreSnapshot};
use super::spooling::{deliver, flusher, Pause};
use crate::config::Settings;
use crate::conn::budget::Budget;
use crate::conn::registry::Registry;
use crate::shard::Shard;
use crate::spool::{CoreSpool, SpoolConfig, SpoolUsage};

/// Connections a core's registry has room for from the start (more grow
/// it once).
const MAX_PRESIZED: usize = 4096;

/// How often a core looks at its control channel and spool when idle.
const TICK: Duration = Duration::from_millis(10);

/// What reaches a core from other threads: the admin's asks and the ack
/// listener's acknowledgements.
pub(super) struct Inbox {
    pub asks: mpsc::Receiver<Ask>,
    pub acks: mpsc::Receiver<AckBatch>,
}

/// One core's state, as its control loop and drain see it.
pub(super) struct Core {
    pub id: usize,
    pub settings: Arc<Settings>,
    pub shard: Rc<RefCell<Shard>>,
    pub spool: Rc<RefCell<CoreSpool>>,
    pub registry: Rc<Registry>,
    /// The core's share of `--max-inflight-body`.
    pub budget: Rc<Budget>,
    asks: mpsc::Receiver<Ask>,
    /// Acknowledgements for this core's events, from the ack listener.
    acks: mpsc::Receiver<AckBatch>,
    started: Instant,
}

impl Core {
    /// Recovers the core's spool, builds its state and starts its flusher.
    pub(super) async fn start(
        id: usize,
        settings: Arc<Settings>,
        Inbox { asks, acks }: Inbox,
        usage: Arc<SpoolUsage>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let spool_config = SpoolConfig::for_core(&settings, id, usage);
        let spool = Rc::new(RefCell::new(
            CoreSpool::recover(&spool_config)
                .await
                .map_err(|e| format!("--spool-dir {}: {e}", settings.spool_dir.display()))?,
        ));
        // The other cores learn this core's recovered bytes at once, not at
        // its first tick.
        spool.borrow_mut().share_usage();
        let recovered = spool.borrow().stored();
        if recovered > 0 {
            tracing::info!("core {id}: spool: {recovered} bytes of events from an earlier run are delivered first");
        }
        let shard = Rc::new(RefCell::new(Shard::new(
            id,
            settings.clone(),
            spool.clone(),
        )?));
        let tickets = spool.borrow().tickets.clone();
        let pause = match settings.durable {
            true => Pause::Always(settings.sync_interval),
            false => Pause::WhenSeveral(settings.flush_interval),
        };
        glommio::spawn_local(flusher(shard.clone(), spool.clone(), tickets, pause)).detach();
        Ok(Self {
            id,
            shard,
            spool,
            registry: Rc::new(Registry::with_capacity(
                settings.max_connections_per_core().min(MAX_PRESIZED),
            )),
            budget: Rc::new(Budget::new(settings.inflight_body_per_core())),
            asks,
            acks,
            started: Instant::now(),
            settings,
        })
    }

    /// Reads the sockets' events (consumers coming and going, re-sends
    /// after a disconnect) and answers the admin's asks; returns the events
    /// still waiting for a consumer.
    pub fn control(&self, accepting: bool) -> u64 {
        let mut shard = self.shard.borrow_mut();
        while let Ok(batch) = self.acks.try_recv() {
            shard
                .fanout
                .ack(batch.route, &batch.ids, batch.bad, batch.dropped);
        }
        shard.fanout.tick();
        while let Ok(Ask::Snapshot(reply)) = self.asks.try_recv() {
            // The admin's work, not the core's: not counted.
            crate::allocs::uncounted(|| {
                let _ = reply.send(self.snapshot(&shard, accepting));
            });
        }
        shard.fanout.waiting()
    }

    pub fn snapshot(&self, shard: &Shard, accepting: bool) -> CoreSnapshot {
        let body = self.budget.figures();
        CoreSnapshot::of(shard, self.registry.open(), body, accepting, self.started)
    }

    /// The control loop: delivers spooled events, answers the admin, times
    /// out stalled connections, until `drain` is set.
    pub(super) async fn serve(&self, drain: &AtomicBool) {
        let sweep_every = (self
            .settings
            .idle_timeout
            .min(self.settings.request_timeout)
            / 20)
            .clamp(Duration::from_millis(5), Duration::from_millis(250));
        let mut next_sweep = self.started + sweep_every;
        loop {
            let read = deliver(&self.shard, &self.spool).await;
            self.control(true);
            if drain.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= next_sweep {
                self.registry.expire(now);
                next_sweep = now + sweep_every;
            }
            if !read {
                // Spooled events a consumer could take are retried every
                // millisecond; with no consumer there is nothing to retry
                // until one connects, which the next tick sees.
                let pause = if self.shard.borrow().fanout.deliverable() {
                    Duration::from_millis(1)
                } else {
                    TICK
                };
                glommio::timer::sleep(pause).await;
            }
        }
    }
}
