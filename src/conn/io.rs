//! A connection's I/O loop: read → [`Conn::process`] → wait for spool
//! tickets → one write of every response → read again, with the core's
//! registry keeping its timeouts.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use super::registry::Registry;
use super::{Conn, Step};
use crate::config::Settings;
use crate::http::Error;
use crate::shard::Shard;

/// Serves one accepted connection until it closes.
pub async fn serve(
    stream: TcpStream,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    settings: Arc<Settings>,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(settings.idle_timeout));
    let Ok(peer) = stream.peer_addr() else {
        // Reset by the peer before it was served: closed all the same, so
        // that accepted = open + closed.
        shard.borrow_mut().metrics.counters.connections_closed += 1;
        return;
    };
    let registered = Registered {
        key: registry.register(stream.as_raw_fd()),
        registry,
        shard: shard.clone(),
    };
    let mut stream = stream;
    let mut conn = Conn::new(peer.ip(), &settings);
    let tickets = shard.borrow().tickets();
    // When the first byte of the request now at the head of the buffer
    // was read: starts its timeout and its latency measurement.
    let mut first_byte: Option<Instant> = None;
    // The last read or write: the idle timeout runs from it.
    let mut last_active = Instant::now();
    loop {
        let idle = !conn.pending();
        if idle && registered.registry.draining.get() {
            return;
        }
        // The core's sweep ends the read of a connection past its deadline.
        let deadline = match first_byte {
            Some(t) => t + settings.request_timeout,
            None => last_active + settings.idle_timeout,
        };
        registered.registry.waiting(registered.key, idle, deadline);
        let read = stream.read(conn.spare()).await;
        // Once the sweep has timed the connection out its reads are shut:
        // what this read brought is the last it gets.
        let mut last_round = false;
        if registered.registry.busy(registered.key) {
            match read {
                // The next request arrived as the idle time ran out: it is
                // served, then the connection closes.
                Ok(n) if n > 0 && idle => last_round = true,
                // A request that was late gets a 408; a connection that
                // sent nothing closes quietly.
                _ => {
                    if conn.pending() || matches!(read, Ok(n) if n > 0) {
                        time_out(&mut stream, &mut conn, &shard, first_byte).await;
                    }
                    return;
                }
            }
        }
        let read_at = Instant::now();
        last_active = read_at;
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conn.filled(n);
        conn.closing = registered.registry.draining.get();
        let first = *first_byte.get_or_insert(read_at);
        let step = {
            let mut shard = shard.borrow_mut();
            shard.metrics.counters.bytes_in += n as u64;
            conn.process(&mut shard)
        };
        if let Some(last) = conn.waits.iter().map(|w| w.ticket).max() {
            tickets.wait(last).await;
            conn.settle(&mut shard.borrow_mut(), &tickets);
        }
        if !conn.out.is_empty() {
            if stream.write_all(&conn.out).await.is_err() {
                return;
            }
            let written = Instant::now();
            last_active = written;
            let mut shard = shard.borrow_mut();
            let metrics = &mut shard.metrics;
            metrics.counters.bytes_out += conn.out.len() as u64;
            let (Step::More { completed } | Step::Done { completed } | Step::Close { completed }) =
                step;
            if completed > 0 {
                metrics.request.record(written - first);
                for _ in 1..completed {
                    metrics.request.record(written - read_at);
                }
            }
            conn.out.clear();
        }
        if last_round {
            if conn.pending() && matches!(step, Step::More { .. }) {
                // The rest of a request that can no longer be read.
                time_out(&mut stream, &mut conn, &shard, first_byte).await;
            }
            let _ = stream.close().await;
            return;
        }
        match step {
            Step::Close { .. } | Step::Done { .. } => {
                let _ = stream.close().await;
                return;
            }
            Step::More { completed } => {
                if !conn.pending() {
                    first_byte = None;
                } else if completed > 0 {
                    first_byte = Some(read_at);
                }
            }
        }
    }
}

/// Answers a request that did not arrive in time with its 408; it counts
/// as answered (latency from its first byte, bytes out).
async fn time_out(
    stream: &mut TcpStream,
    conn: &mut Conn,
    shard: &RefCell<Shard>,
    first_byte: Option<Instant>,
) {
    conn.fail(&mut shard.borrow_mut(), Error::Timeout, 0);
    let written = stream.write_all(&conn.out).await.is_ok();
    let now = Instant::now();
    let mut shard = shard.borrow_mut();
    if written {
        shard.metrics.counters.bytes_out += conn.out.len() as u64;
    }
    shard
        .metrics
        .request
        .record(now - first_byte.unwrap_or(now));
    conn.out.clear();
}

/// A connection's entry in its core's registry, removed when it ends.
struct Registered {
    key: usize,
    registry: Rc<Registry>,
    shard: Rc<RefCell<Shard>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.unregister(self.key);
        self.shard.borrow_mut().metrics.counters.connections_closed += 1;
    }
}
