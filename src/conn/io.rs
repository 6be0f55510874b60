//! A connection's I/O loop: read → [`Conn::process`] → wait for spool
//! tickets → one write of every response → read again, with the core's
//! registry keeping its timeouts. A body that needs more of the core's
//! budget than is left waits for it before reading on.
//!
//! Generic over the stream: glommio's TcpStream for plain HTTP (and
//! kernel TLS), rustls's stream over it for user-space TLS.

use std::cell::RefCell;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use super::budget::Budget;
use super::registry::Registry;
use super::{Conn, Step};
use crate::config::Settings;
use crate::http::Error;
use crate::shard::Shard;
use crate::spool::Tickets;
use crate::tls::ClientCert;

/// Serves one accepted connection until it closes.
/// Sets up a stream just accepted and reads its peer's address; `None`
/// (counted as closed, so that accepted = open + closed) if the peer reset
/// it before it was served.
pub(super) fn accepted(
    stream: &TcpStream,
    shard: &RefCell<Shard>,
    settings: &Settings,
) -> Option<std::net::SocketAddr> {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(settings.idle_timeout));
    let peer = stream.peer_addr().ok();
    if peer.is_none() {
        shard.borrow_mut().metrics.counters.connections_closed += 1;
    }
    peer
}

pub async fn serve(
    stream: TcpStream,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: std::sync::Arc<Settings>,
) {
    let Some(peer) = accepted(&stream, &shard, &settings) else {
        return;
    };
    let fd = stream.as_raw_fd();
    let peer = Peer {
        fd,
        ip: peer.ip(),
        cert: ClientCert::NONE,
    };
    serve_stream(stream, peer, shard, registry, budget, settings).await;
}

/// The connection under a stream: its socket, the peer's address and what
/// its client certificate proves.
pub struct Peer {
    pub fd: RawFd,
    pub ip: IpAddr,
    pub cert: ClientCert,
}

/// Serves a connection over `stream` (already set up: no delay, write
/// timeout) until it closes.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: Peer,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: std::sync::Arc<Settings>,
) {
    let tickets = shard.borrow().tickets();
    let mut conn = Conn::new(peer.ip, &settings, budget.clone());
    conn.client_cert = peer.cert;
    let mut session = Session {
        registered: Registered {
            key: registry.register(peer.fd),
            registry,
            shard: shard.clone(),
        },
        conn,
        budget,
        tickets,
        shard,
        stream,
        first_byte: None,
        last_active: Instant::now(),
    };
    session.run(&settings).await;
}

/// One connection being served.
struct Session<S> {
    /// First, so the registry entry goes before the stream closes.
    registered: Registered,
    stream: S,
    conn: Conn,
    budget: Rc<Budget>,
    shard: Rc<RefCell<Shard>>,
    tickets: Rc<Tickets>,
    /// When the first byte of the request now at the head of the buffer
    /// was read: starts its timeout and its latency measurement.
    first_byte: Option<Instant>,
    /// The last read or write: the idle timeout runs from it.
    last_active: Instant,
}

/// What a read brought.
struct Read {
    n: usize,
    at: Instant,
    /// The connection timed out as these bytes came: they are served, then
    /// the connection closes.
    last: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn run(&mut self, settings: &Settings) {
        loop {
            let Some(mut read) = self.read(settings).await else {
                return;
            };
            let step = loop {
                let Some(step) = self.answer(&read).await else {
                    return;
                };
                if !(self.conn.held_back() && matches!(step, Step::More { .. })) {
                    break step;
                }
                // Requests of this read left for want of room in `out`,
                // now that it is written.
                read.n = 0;
            };
            if read.last {
                if self.conn.pending() && matches!(step, Step::More { .. }) {
                    // The rest of a request that can no longer be read.
                    self.time_out().await;
                }
                let _ = self.stream.close().await;
                return;
            }
            match step {
                Step::Close { .. } | Step::Done { .. } => {
                    let _ = self.stream.close().await;
                    return;
                }
                Step::More { completed } => {
                    if !self.conn.pending() {
                        self.first_byte = None;
                    } else if completed > 0 {
                        self.first_byte = Some(read.at);
                    }
                }
            }
        }
    }

    /// Reads into the connection's buffer until its deadline (the core's
    /// sweep ends the read of a connection past it). `None`: the connection
    /// ends (closed, failed, drained, or timed out; a late request got its
    /// 408).
    async fn read(&mut self, settings: &Settings) -> Option<Read> {
        let idle = !self.conn.pending();
        let registry = &self.registered.registry;
        if idle && registry.draining.get() {
            return None;
        }
        let deadline = match self.first_byte {
            Some(t) => t + settings.request_timeout,
            None => self.last_active + settings.idle_timeout,
        };
        while let Err(need) = self.conn.room() {
            if !self.wait_for_budget(need, deadline).await {
                self.time_out().await;
                return None;
            }
        }
        let registry = &self.registered.registry;
        registry.waiting(self.registered.key, idle, deadline);
        let read = self.stream.read(self.conn.spare()).await;
        // Once the sweep has timed the connection out its reads are shut:
        // what this read brought is the last it gets.
        let mut last = false;
        if self.registered.registry.busy(self.registered.key) {
            match read {
                // The next request arrived as the idle time ran out: it is
                // served, then the connection closes.
                Ok(n) if n > 0 && idle => last = true,
                // A request that was late gets a 408; a connection that
                // sent nothing closes quietly.
                _ => {
                    if self.conn.pending() || matches!(read, Ok(n) if n > 0) {
                        self.time_out().await;
                    }
                    return None;
                }
            }
        }
        let at = Instant::now();
        self.last_active = at;
        match read {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(Read { n, at, last }),
        }
    }

    /// Answers the complete requests in the buffer, waits for the spool
    /// writes their 200s depend on, and writes every response at once.
    /// `None`: the write failed.
    async fn answer(&mut self, read: &Read) -> Option<Step> {
        self.conn.filled(read.n);
        self.conn.closing = self.registered.registry.draining.get();
        let first = *self.first_byte.get_or_insert(read.at);
        let step = {
            let mut shard = self.shard.borrow_mut();
            shard.metrics.counters.bytes_in += read.n as u64;
            self.conn.process(&mut shard)
        };
        self.conn.settled(&self.shard, &self.tickets).await;
        if self.conn.out.is_empty() {
            return Some(step);
        }
        self.stream.write_all(&self.conn.out).await.ok()?;
        // A TLS stream may hold records back until flushed (a plain one
        // holds none: nothing to do).
        self.stream.flush().await.ok()?;
        let written = Instant::now();
        self.last_active = written;
        let mut shard = self.shard.borrow_mut();
        let metrics = &mut shard.metrics;
        metrics.counters.bytes_out += self.conn.out.len() as u64;
        let (Step::More { completed } | Step::Done { completed } | Step::Close { completed }) =
            step;
        metrics.record_answered(written, first, read.at, completed);
        self.conn.out.clear();
        Some(step)
    }

    /// Waits until the budget has `need` bytes left: `false` if the
    /// deadline comes first. Not in a read, the core's sweep cannot end
    /// this wait, so it has a timer of its own.
    async fn wait_for_budget(&self, need: usize, deadline: Instant) -> bool {
        super::before(deadline, self.budget.wait(need))
            .await
            .is_some()
    }

    /// Answers a request that did not arrive in time with its 408; it
    /// counts as answered (latency from its first byte, bytes out).
    async fn time_out(&mut self) {
        self.conn
            .fail(&mut self.shard.borrow_mut(), Error::Timeout, 0);
        let written = self.stream.write_all(&self.conn.out).await.is_ok()
            && self.stream.flush().await.is_ok();
        let now = Instant::now();
        let mut shard = self.shard.borrow_mut();
        if written {
            shard.metrics.counters.bytes_out += self.conn.out.len() as u64;
        }
        shard
            .metrics
            .request
            .record(now - self.first_byte.unwrap_or(now));
        self.conn.out.clear();
    }
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
