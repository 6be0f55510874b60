//! A core's graceful drain, in three phases: finish the connections,
//! hand every accepted event to ZeroMQ or the spool, then close the
//! sockets and keep in the spool what a consumer may not have received.

use std::time::{Duration, Instant};

use glommio::Task;

use super::core::Core;
use super::snapshot::CoreSnapshot;
use super::spooling::{deliver, write_out};
use crate::fanout::Closing;
use crate::spool;

impl Core {
    /// Drains the core within `--drain-timeout`; returns its last snapshot.
    pub(super) async fn drain(self, accept: Task<()>) -> CoreSnapshot {
        let deadline = Instant::now() + self.settings.drain_timeout;
        accept.cancel().await;
        self.finish_connections(deadline).await;
        self.hand_off(deadline).await;
        self.await_acks(deadline).await;
        let mut last = self.snapshot(&self.shard.borrow(), false);
        let closing = self.close_sockets(deadline).await;
        if !self.settings.durable {
            self.keep_unacknowledged(closing).await;
        }
        self.report_left(&mut last);
        last
    }

    /// Stops reading new requests, lets in-flight ones finish, and ends
    /// the connections still open at the deadline.
    async fn finish_connections(&self, deadline: Instant) {
        let registry = &self.registry;
        registry.draining.set(true);
        registry.shut_reads(false);
        while registry.open() > 0 && Instant::now() < deadline {
            self.control(false);
            registry.shut_reads(false);
            // A request that stalls still gets its 408 at its own timeout.
            registry.expire(Instant::now());
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        if registry.open() > 0 {
            tracing::warn!(
                "core {}: drain timeout: closing {} connection(s) mid-request",
                self.id,
                registry.open()
            );
            registry.shut_reads(true);
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Hands every accepted event to ZeroMQ (or writes it to the spool)
    /// until nothing waits or the deadline passes.
    async fn hand_off(&self, deadline: Instant) {
        while Instant::now() < deadline {
            self.shard.borrow_mut().flush_outbox();
            spool::flush(&self.spool).await;
            let read = deliver(&self.shard, &self.spool).await;
            if self.control(false) == 0 {
                break;
            }
            if !read {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
        // The last hand-off: after any write still in flight (bounded).
        self.shard.borrow_mut().flush_outbox();
        write_out(&self.spool, Duration::from_secs(1)).await;
    }

    /// Acknowledged routes: waits for the consumers' acks of what was sent,
    /// until the deadline; what is still unacknowledged then is kept in
    /// the spool, and the next start sends it again.
    async fn await_acks(&self, deadline: Instant) {
        while self.shard.borrow().fanout.unacked() > 0 && Instant::now() < deadline {
            self.control(false);
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
        let kept = self.shard.borrow_mut().fanout.keep_unacked();
        if kept > 0 {
            write_out(&self.spool, Duration::from_secs(2)).await;
            tracing::warn!(
                "core {}: {kept} events sent were not acknowledged before the drain ended: kept in the spool, the next start sends them again",
                self.id
            );
        }
    }

    /// Closes the sockets: ZeroMQ may send what it queued, and the
    /// consumers' kernels acknowledge it, but not past the deadline.
    async fn close_sockets(&self, deadline: Instant) -> Vec<Closing> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut closing = self.shard.borrow_mut().fanout.close_sockets(left);
        // Every route is read each time, so each socket's end is seen when
        // it comes.
        let all_done = |closing: &mut [Closing]| {
            let mut done = true;
            for c in closing.iter_mut() {
                done &= c.poll();
            }
            done
        };
        while !all_done(&mut closing) && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        closing
    }

    /// Accepted mode: what may not have reached a consumer is kept in the
    /// spool (durable mode's journal keeps the replay window instead).
    async fn keep_unacknowledged(&self, closing: Vec<Closing>) {
        let kept: usize = {
            let mut spool = self.spool.borrow_mut();
            closing
                .into_iter()
                .enumerate()
                .map(|(route, c)| c.respool(&mut spool, route))
                .sum()
        };
        if kept > 0 {
            write_out(&self.spool, Duration::from_secs(2)).await;
            tracing::warn!(
                "core {}: the last {kept} events handed to consumers are also kept in the spool: not every consumer was seen to get everything before the sockets closed (the next start sends them again; consumers drop repeats by id)",
                self.id
            );
        }
    }

    /// The summary's spool figures include what the drain kept.
    fn report_left(&self, last: &mut CoreSnapshot) {
        let spool = self.spool.borrow();
        for (status, log) in last.routes.iter_mut().zip(&spool.routes) {
            status.waiting = log.stored();
        }
        last.spool_stored = spool.stored();
        if last.spool_stored > 0 {
            tracing::info!(
                "core {}: {} bytes of accepted events stay in the spool ({}) for the next start",
                self.id,
                last.spool_stored,
                self.settings.spool_dir.display()
            );
        }
    }
}
