//! A drain's closing sockets: each route's socket closed with a linger,
//! its consumers' kernel send queues watched (SIOCOUTQ) until they have
//! all arrived, and what they may not have processed put back in the
//! spool if they may not.

use std::time::{Duration, Instant};

use super::peers::{PeerEvent, Peers};
use super::resend::{unix_ms, Recent, Respooled};
use super::route::{bound, Route};
use crate::spool::CoreSpool;

/// A route whose socket is closing, with its monitor and its consumers'
/// connections.
pub struct Closing {
    peers: Peers,
    recent: Recent,
    /// What the consumers, those open at the close and those lost since,
    /// may not have processed: their count and their kernel queues.
    consumers: u64,
    queues: u64,
    /// `--resend-window`, in milliseconds.
    window_ms: u64,
    /// The route's SNDHWM ([`bound`]).
    sndhwm: i32,
    /// The route takes acknowledgements: its unacknowledged events are
    /// kept by `Fanout::keep_unacked`, its resend ring is always empty.
    acked: bool,
    /// A consumer disconnected since the last tick or while the socket
    /// closed: what libzmq queued for it is gone.
    lost: bool,
    /// When the socket was seen gone (libzmq's MONITOR_STOPPED: it has
    /// written everything it queued to the kernel, or its linger ran out).
    gone: Option<Instant>,
    /// When the linger runs out.
    settled: Instant,
    connections: Vec<Connection>,
}

/// A consumer connection at a drain, through a copy of its descriptor.
struct Connection {
    fd: std::os::fd::OwnedFd,
    sndbuf: u64,
    /// Its kernel send queue was seen over a quarter full: libzmq's engine
    /// may have been holding a batch it could not write when its socket
    /// was destroyed (and that batch is dropped).
    crowded: bool,
    /// The queue was empty (every byte acknowledged by the consumer's
    /// kernel) after the socket was gone.
    delivered: bool,
    /// What its queue held when last looked at.
    unacknowledged: u64,
}

impl Connection {
    /// Bytes sent on it that the consumer's kernel has not acknowledged.
    fn unacknowledged(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int for a socket the
        // descriptor, owned here, refers to.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        (r == 0).then_some(n.max(0) as u64)
    }
}

impl Closing {
    /// Closes `route`'s socket, letting libzmq send what it still queues
    /// for `linger` at most (from `closed_at`), and keeps its monitor and
    /// copies of its connections' descriptors to watch.
    pub(super) fn start(
        route: Route,
        linger: Duration,
        closed_at: Instant,
        window_ms: u64,
    ) -> Self {
        let sndhwm = route.sndhwm;
        let acked = route.acks.is_some();
        let Route {
            socket,
            mut peers,
            recent,
            ..
        } = route;
        // Events since the last tick: a consumer that left then
        // took what libzmq had queued for it with it.
        let mut lost = false;
        let (mut consumers, mut queues) = (0, 0);
        peers.sample();
        while let Some(event) = peers.read() {
            if let PeerEvent::Lost { queues: q } = event {
                lost = true;
                consumers += 1;
                queues += q;
            }
        }
        consumers += peers.fds().count() as u64;
        queues += peers.queues();
        // Copies of the connections' descriptors keep them open
        // after libzmq closes its own, so the kernel's queue for
        // each consumer can be watched until it has all arrived.
        let connections = connections(&peers);
        let ms = linger.as_millis().min(i32::MAX as u128) as i32;
        let _ = socket.set_linger(ms);
        drop(socket);
        Self {
            peers,
            recent,
            consumers,
            queues,
            window_ms,
            sndhwm,
            acked,
            lost,
            gone: None,
            settled: closed_at + linger,
            connections,
        }
    }

    /// Reads the monitor and the connections' queues; true once the
    /// socket is gone and every consumer's kernel has acknowledged all it
    /// was sent.
    pub fn poll(&mut self) -> bool {
        while let Some(event) = self.peers.read() {
            match event {
                PeerEvent::Lost { .. } => self.lost = true,
                PeerEvent::Stopped => self.gone = Some(Instant::now()),
                PeerEvent::Ready | PeerEvent::Other => {}
            }
        }
        let gone = self.gone.is_some();
        for c in &mut self.connections {
            match c.unacknowledged() {
                Some(n) => {
                    c.crowded |= n > c.sndbuf / 4;
                    c.delivered = gone && n == 0;
                    c.unacknowledged = n;
                }
                None => c.delivered = false,
            }
        }
        gone && self.connections.iter().all(|c| c.delivered)
    }

    /// Accepted mode, once [`Self::poll`] said done or the drain's time is
    /// up: appends to the route's spool, as re-sends, the latest events
    /// handed to ZeroMQ that a consumer may not have processed (within
    /// `--resend-window` and its queues) when any of them may not have
    /// reached a consumer, and returns how many (the next start sends
    /// them; consumers drop the repeats of those that did arrive by `id`).
    ///
    /// Nothing is kept when every consumer got everything: the socket was
    /// gone before its linger ran out (libzmq wrote all it queued to the
    /// kernel), no consumer left meanwhile, each consumer's connection was
    /// found and its kernel acknowledged every byte, and none was ever
    /// crowded (libzmq drops a batch its engine could not write only when
    /// the kernel's queue was full). Otherwise what every consumer may
    /// hold is kept, as after a consumer disconnect: with several
    /// consumers, what libzmq dropped for a slow one is not the route's
    /// latest events.
    /// The spool's limit does not apply: these events got their 200.
    ///
    /// An acknowledged route keeps nothing here (and warns of nothing):
    /// what was not acknowledged is kept whole by `Fanout::keep_unacked`.
    pub fn respool(mut self, spool: &mut CoreSpool, route: usize) -> usize {
        if self.acked {
            return 0;
        }
        self.poll();
        let in_time = self
            .gone
            .is_some_and(|t| t + Duration::from_millis(10) < self.settled);
        // Every connection the socket had is watched (none: nothing was
        // queued, ZMQ_IMMEDIATE).
        let delivered = !self.lost
            && (self.connections.is_empty()
                || in_time && self.connections.iter().all(|c| c.delivered && !c.crowded));
        if delivered {
            return 0;
        }
        let bound = bound(
            self.sndhwm,
            self.consumers,
            self.queues,
            unix_ms(),
            self.window_ms,
        );
        let Respooled {
            events,
            bytes,
            too_old,
            ..
        } = self.recent.respool(spool, route, bound);
        if too_old > 0 {
            tracing::warn!(
                "{too_old} events not re-sent: first sent more than --resend-window ({} ms) ago; a consumer that was that far behind may not have processed them",
                self.window_ms
            );
        }
        let unacknowledged: u64 = self.connections.iter().map(|c| c.unacknowledged).sum();
        if unacknowledged > bytes {
            tracing::warn!(
                "{} sent to consumers was not acknowledged by their kernels when the drain ended, more than the {} kept for re-sending: events may be lost; raise --resend-buffer, --resend-window or --drain-timeout",
                bytesize::ByteSize(unacknowledged).to_string_as(true),
                bytesize::ByteSize(bytes).to_string_as(true)
            );
        }
        events
    }
}

/// Copies of the connections' descriptors (one libzmq closed already
/// is left out: its DISCONNECTED follows).
fn connections(peers: &Peers) -> Vec<Connection> {
    use std::os::fd::BorrowedFd;
    let mut out = Vec::new();
    for raw in peers.fds() {
        // SAFETY: the descriptor is libzmq's, open unless its
        // DISCONNECTED is still unread; it is only duplicated here,
        // and a copy that is not a connected socket is dropped.
        let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
        let Ok(fd) = borrowed.try_clone_to_owned() else {
            continue;
        };
        let sock = socket2::SockRef::from(&fd);
        if sock.peer_addr().is_err() {
            continue;
        }
        let sndbuf = sock.send_buffer_size().unwrap_or(0) as u64;
        out.push(Connection {
            fd,
            sndbuf,
            crowded: false,
            delivered: false,
            unacknowledged: 0,
        });
    }
    out
}
