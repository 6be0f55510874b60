//! A core's spool tasks: the flusher, which hands each batch of events to
//! ZeroMQ and writes the spool, and the delivery of spooled events, which
//! reads spool files back for ZeroMQ.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::shard::Shard;
use crate::spool::{self, CoreSpool, Tickets};

/// How long the flusher lets a batch grow after the previous hand-off.
#[derive(Debug, Clone, Copy)]
pub enum Pause {
    /// Durable mode: one fdatasync per sync interval.
    Always(Duration),
    /// Accepted mode (`--flush-interval`, off by default): only while more
    /// than one event waits, so a lone request is answered at once. Fewer,
    /// larger hand-offs mean fewer wake-ups of libzmq's I/O thread, at a
    /// cost in latency for few connections (tuning.md has the trade).
    WhenSeveral(Duration),
}

/// Decides the tickets connections wait for. Woken by the first event of a
/// batch, it runs after the connections that were ready with it: accepted
/// mode hands their outbox to ZeroMQ in one go (when several events wait,
/// at most once per flush interval), then writes what ZeroMQ did not take
/// (and, in durable mode, the journal: at most once per sync interval, one
/// fdatasync covering every event since the last).
pub async fn flusher(
    shard: Rc<RefCell<Shard>>,
    spool: Rc<RefCell<CoreSpool>>,
    tickets: Rc<Tickets>,
    pause: Pause,
) {
    let mut last = Instant::now();
    loop {
        tickets.appended().await;
        let wait = match pause {
            Pause::Always(interval) => interval,
            Pause::WhenSeveral(interval)
                if !interval.is_zero() && shard.borrow().fanout.outbox_events() > 1 =>
            {
                interval
            }
            Pause::WhenSeveral(_) => Duration::ZERO,
        };
        let since = last.elapsed();
        if since < wait {
            glommio::timer::sleep(wait - since).await;
        }
        shard.borrow_mut().flush_outbox();
        spool::flush(&spool).await;
        last = Instant::now();
    }
}

thread_local! {
    /// The routes (a bit each; at most 64) whose last spool read failed.
    static READ_FAILING: Cell<u64> = const { Cell::new(0) };
}

/// Hands spooled events to ZeroMQ and reads more from disk where needed;
/// true if it read anything (so there may be more to hand over at once).
pub async fn deliver(shard: &Rc<RefCell<Shard>>, spool: &Rc<RefCell<CoreSpool>>) -> bool {
    let reads = shard.borrow_mut().fanout.deliver_spooled();
    let mut read = false;
    for next in reads {
        let (route, outcome) = match next {
            spool::Next::Read {
                route,
                file,
                offset,
                len,
            } => (
                route,
                spool::read(file, offset, len).await.map(|bytes| {
                    spool::store_chunk(&mut spool.borrow_mut().routes[route], offset, bytes)
                }),
            ),
            spool::Next::Open { route, path } => {
                let file = glommio::io::DmaFile::open(&path)
                    .await
                    .map_err(std::io::Error::from);
                let opened = spool::opened(&mut spool.borrow_mut().routes[route], &path, file);
                (route, opened)
            }
            spool::Next::Idle => continue,
        };
        let bit = 1u64 << (route % 64);
        match outcome {
            Ok(()) => {
                read = true;
                let failing = READ_FAILING.get();
                if failing & bit != 0 {
                    READ_FAILING.set(failing & !bit);
                    tracing::info!("spool: route {route}: reading again");
                }
            }
            Err(e) => {
                // Kept, and tried again every 100 ms; said when a route's
                // reads start failing and when they work again, not per
                // retry.
                let failing = READ_FAILING.get();
                if failing & bit == 0 {
                    READ_FAILING.set(failing | bit);
                    tracing::warn!("spool: cannot read a spool file (retrying every 100 ms): {e}");
                }
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    read
}

/// Writes everything appended to the spool before the executor ends,
/// also when the flusher task has a write of its own in flight: flushes
/// until nothing is pending or being written, for `limit` at most.
pub async fn write_out(spool: &Rc<RefCell<CoreSpool>>, limit: Duration) {
    let settle = Instant::now() + limit;
    loop {
        spool::flush(spool).await;
        let busy = {
            let spool = spool.borrow();
            spool.writing() || spool.has_pending()
        };
        if !busy || Instant::now() >= settle {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}
