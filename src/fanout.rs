//! Per-core ZeroMQ fan-out: one PUSH socket per route, non-blocking sends,
//! and the route's on-disk spool ([`crate::spool`]) for what ZeroMQ cannot take.
//!
//! Sockets use `ZMQ_IMMEDIATE`, so a send with no connected consumer fails
//! at once instead of queueing inside libzmq (in memory only) for a peer
//! that may never come: the event goes to the spool instead. While a route
//! has spooled events, new events for it go behind them, so order per core
//! and route is kept. Nothing is dropped: when the spool is full the sender
//! is refused before any route is given the event.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use wildmatch::WildMatch;

use crate::config::{Frames, RouteSpec, Sched, Settings};
use crate::spool::{self, CoreSpool};

/// The routes an event goes to: indices, inline for up to four matches.
pub type RouteSet = SmallVec<[u16; 4]>;

/// Why an event cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No route's glob matches the key.
    NoRoute,
    /// The spool is full.
    SpoolFull,
}

struct Route {
    /// `None`: the catch-all `*`, which needs no matching.
    pattern: Option<WildMatch>,
    socket: zmq::Socket,
    /// Accepted mode: the latest events handed to ZeroMQ.
    recent: Recent,
    /// Receives the socket's connection events.
    monitor: zmq::Socket,
    /// The socket's connections, and which completed the handshake.
    peers: Peers,
    delivered: u64,
    depth: hdrhistogram::Histogram<u64>,
}

/// What the admin endpoint reports about one route on one core.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    pub pattern: String,
    pub endpoints: Vec<String>,
    /// Consumers connected to this core's socket (ZeroMQ handshake done).
    pub connected: usize,
    /// Bytes waiting in this core's spool.
    pub waiting: u64,
    /// Events handed to ZeroMQ.
    pub delivered: u64,
    /// Spool depth in bytes, sampled every tick of the retry task.
    pub depth: hdrhistogram::Histogram<u64>,
}

/// One core's sockets, with its spool.
pub struct Fanout {
    // Declared before the context: sockets must close before it terminates.
    routes: Vec<Route>,
    /// Accepted mode: events of this executor cycle, handed to ZeroMQ
    /// together by [`Fanout::flush_outbox`].
    outbox: Outbox,
    specs: Vec<RouteSpec>,
    _context: zmq::Context,
    frames: Frames,
    core: usize,
    pub spool: Rc<RefCell<CoreSpool>>,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("routes", &self.routes.len())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl Fanout {
    /// Creates the core's context and connects one PUSH socket per route.
    pub fn new(
        core: usize,
        settings: &Settings,
        spool: Rc<RefCell<CoreSpool>>,
    ) -> Result<Self, zmq::Error> {
        let context = zmq::Context::new();
        // Durable mode re-sends from its journal instead.
        let resend = match settings.durable {
            true => 0,
            false => {
                settings.resend_buffer / (settings.cores * settings.routes.len()).max(1) as u64
            }
        };
        // libzmq starts the context's I/O thread with its first socket.
        let routes = with_sched(core, settings.zmq_sched, || {
            settings
                .routes
                .iter()
                .enumerate()
                .map(|(i, spec)| connect(&context, core, i, spec, settings.sndhwm, resend))
                .collect::<Result<_, _>>()
        })?;
        Ok(Self {
            routes,
            outbox: Outbox::default(),
            specs: settings.routes.clone(),
            _context: context,
            frames: settings.frames,
            core,
            spool,
        })
    }

    /// The routes an event with `key` goes to, if it can be taken now.
    pub fn admit(&mut self, key: &str) -> Result<RouteSet, Refused> {
        let set: RouteSet = (0..self.routes.len() as u16)
            .filter(|&i| {
                let pattern = &self.routes[usize::from(i)].pattern;
                pattern.as_ref().is_none_or(|p| p.matches(key))
            })
            .collect();
        if set.is_empty() {
            return Err(Refused::NoRoute);
        }
        // A full spool refuses only events that would need it (in durable
        // mode every event is journaled first): for a route
        // with events waiting in the spool (new ones queue behind them) or
        // with no consumer. An event whose routes all have a consumer and
        // nothing waiting goes to ZeroMQ; if ZeroMQ does not take it after
        // all, it is spooled over the limit, by at most what one hand-off
        // holds.
        let spool = self.spool.borrow();
        if spool.full()
            && (spool.durable
                || set.iter().any(|&i| {
                    let i = usize::from(i);
                    spool.routes[i].active() || self.routes[i].peers.ready() == 0
                }))
        {
            return Err(Refused::SpoolFull);
        }
        Ok(set)
    }

    /// Where the next event's envelope is written (appended), to be taken
    /// by [`Fanout::send`] from the length this had before: the outbox's
    /// arena, so in accepted mode the envelope is not copied again before
    /// ZeroMQ copies it into its message.
    pub fn staging(&mut self) -> &mut Vec<u8> {
        &mut self.outbox.arena
    }

    /// Takes an admitted event, the envelope written to [`Fanout::staging`]
    /// from `start` on, for each of its routes, never blocking, and returns
    /// the spool ticket its 200 must wait for.
    ///
    /// Accepted mode: the event stays in the core's outbox, which the
    /// flusher task hands to ZeroMQ once the connections that were ready
    /// together have all run (one wake-up of libzmq's I/O thread per batch
    /// instead of per event), before it decides the ticket: an event
    /// ZeroMQ does not take then goes to the spool, and the ticket waits
    /// for that write. Durable mode: the event is journaled, and sent now
    /// when nothing waits before it.
    pub fn send(&mut self, set: &RouteSet, key: &[u8], start: usize) -> u64 {
        let mut spool = self.spool.borrow_mut();
        if !spool.durable {
            self.outbox.push(set, key, start);
            return spool.tickets.take();
        }
        let envelope = &self.outbox.arena[start..];
        for &i in set {
            let i = usize::from(i);
            let route = &mut self.routes[i];
            let log = &mut spool.routes[i];
            let queued = log.active();
            log.append(key, envelope);
            if !queued && try_send(&route.socket, self.frames, key, envelope) {
                log.delivered_through_tail();
                route.delivered += 1;
            }
        }
        self.outbox.arena.truncate(start);
        spool.tickets.take()
    }

    /// Drops the outbox without handing it to ZeroMQ and returns how many
    /// route entries it held. Only for benchmarks that measure the
    /// pipeline up to the envelope bytes (`bench/pipeline.rs`); the server
    /// never calls it.
    #[doc(hidden)]
    pub fn discard_outbox(&mut self) -> usize {
        let n = self.outbox.entries.len();
        self.outbox.clear();
        n
    }

    /// Events waiting in the outbox for the next [`Self::flush_outbox`].
    pub fn outbox_events(&self) -> usize {
        self.outbox.events
    }

    /// Accepted mode: hands the outbox to ZeroMQ in order; an event for a
    /// route with spooled events waiting, or that ZeroMQ does not take now,
    /// goes to the spool behind them.
    /// Returns how many events it handed over.
    pub fn flush_outbox(&mut self) -> usize {
        let n = self.outbox.entries.len();
        if n == 0 {
            return 0;
        }
        let mut spool = self.spool.borrow_mut();
        let Self {
            outbox,
            routes,
            frames,
            ..
        } = self;
        for &(i, key, envelope) in &outbox.entries {
            let (key, envelope) = (outbox.text(key), outbox.text(envelope));
            let route = &mut routes[usize::from(i)];
            let log = &mut spool.routes[usize::from(i)];
            if log.active() || !try_send(&route.socket, *frames, key, envelope) {
                log.append(key, envelope);
            } else {
                route.recent.push(key, envelope);
                route.delivered += 1;
            }
        }
        outbox.clear();
        n
    }

    /// Hands spooled records to ZeroMQ, oldest first, while it takes them;
    /// returns the files to open and the disk reads needed to go on.
    pub fn deliver_spooled(&mut self) -> Vec<spool::Next> {
        let mut spool = self.spool.borrow_mut();
        let (durable, window) = (spool.durable, spool.replay_window);
        let mut reads = Vec::new();
        for (i, route) in self.routes.iter_mut().enumerate() {
            let frames = self.frames;
            let next = spool::deliver(&mut spool.routes[i], i, durable, window, |key, envelope| {
                let sent = try_send(&route.socket, frames, key, envelope);
                if sent {
                    route.recent.push(key, envelope);
                    route.delivered += 1;
                }
                sent
            });
            if !matches!(next, spool::Next::Idle) {
                reads.push(next);
            }
        }
        reads
    }

    /// Bytes waiting in this core's spool.
    pub fn waiting(&self) -> u64 {
        self.spool.borrow().stored()
    }

    /// Some route has spooled events and a consumer connected to take them.
    pub fn deliverable(&self) -> bool {
        let spool = self.spool.borrow();
        self.routes
            .iter()
            .zip(&spool.routes)
            .any(|(route, log)| log.active() && route.peers.ready() > 0)
    }

    /// Reads connection events and samples spool depths; called by the
    /// core's retry task on every tick.
    pub fn tick(&mut self) {
        let mut spool = self.spool.borrow_mut();
        spool.share_usage();
        for (i, route) in self.routes.iter_mut().enumerate() {
            while let Some(event) = route.peers.read(&route.monitor) {
                if event != PeerEvent::Lost {
                    continue;
                }
                let (what, bytes) = if spool.durable {
                    ("the journal's last", spool.routes[i].rewind())
                } else {
                    ("its last", resend(route, &mut spool, i))
                };
                let (core, pattern) = (self.core, &self.specs[i].pattern);
                if bytes > 0 {
                    eprintln!(
                        "core {core}: route {pattern}: a consumer disconnected; re-sending {what} {} (duplicates expected, drop them by id)",
                        bytesize::ByteSize(bytes)
                    );
                } else {
                    eprintln!(
                        "core {core}: route {pattern}: a consumer disconnected; nothing to re-send"
                    );
                }
            }
        }
        for (route, log) in self.routes.iter_mut().zip(&spool.routes) {
            route.depth.saturating_record(log.stored());
        }
    }

    pub fn status(&self) -> Vec<RouteStatus> {
        self.routes
            .iter()
            .zip(&self.specs)
            .enumerate()
            .map(|(i, (r, spec))| RouteStatus {
                pattern: spec.pattern.clone(),
                endpoints: spec.endpoints.clone(),
                connected: r.peers.ready(),
                waiting: self.spool.borrow().routes[i].stored(),
                delivered: r.delivered,
                depth: r.depth.clone(),
            })
            .collect()
    }

    /// Closes every route's socket, letting libzmq send what it still
    /// queues for `linger` at most, and returns each route's [`Closing`]
    /// to learn whether its consumers got it all. The routes are gone
    /// afterwards (the spool stays).
    pub fn close_sockets(&mut self, linger: Duration) -> Vec<Closing> {
        let ms = linger.as_millis().min(i32::MAX as u128) as i32;
        let closed_at = Instant::now();
        std::mem::take(&mut self.routes)
            .into_iter()
            .map(|route| {
                let Route {
                    socket,
                    monitor,
                    mut peers,
                    recent,
                    ..
                } = route;
                // Events since the last tick: a consumer that left then
                // took what libzmq had queued for it with it.
                let mut lost = false;
                while let Some(event) = peers.read(&monitor) {
                    lost |= event == PeerEvent::Lost;
                }
                // Copies of the connections' descriptors keep them open
                // after libzmq closes its own, so the kernel's queue for
                // each consumer can be watched until it has all arrived.
                let connections = peers.connections();
                let _ = socket.set_linger(ms);
                drop(socket);
                Closing {
                    monitor,
                    peers,
                    recent,
                    lost,
                    gone: None,
                    settled: closed_at + linger,
                    connections,
                }
            })
            .collect()
    }
}

/// A route whose socket is closing, with its monitor and its consumers'
/// connections.
pub struct Closing {
    monitor: zmq::Socket,
    peers: Peers,
    recent: Recent,
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
    /// Reads the monitor and the connections' queues; true once the
    /// socket is gone and every consumer's kernel has acknowledged all it
    /// was sent.
    pub fn poll(&mut self) -> bool {
        while let Some(event) = self.peers.read(&self.monitor) {
            match event {
                PeerEvent::Lost => self.lost = true,
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
    /// up: appends to the route's spool the latest events handed to
    /// ZeroMQ when any of them may not have reached a consumer, and
    /// returns how many (the next start sends them; consumers drop the
    /// repeats of those that did arrive by `id`).
    ///
    /// Nothing is kept when every consumer got everything: the socket was
    /// gone before its linger ran out (libzmq wrote all it queued to the
    /// kernel), no consumer left meanwhile, each consumer's connection was
    /// found and its kernel acknowledged every byte, and none was ever
    /// crowded (libzmq drops a batch its engine could not write only when
    /// the kernel's queue was full). Otherwise the whole resend buffer is
    /// kept, as after a consumer disconnect: with several consumers, what
    /// libzmq dropped for a slow one is not the route's latest events.
    /// The spool's limit does not apply: these events got their 200.
    pub fn respool(mut self, spool: &mut CoreSpool, route: usize) -> usize {
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
        let (mut count, mut bytes) = (0, 0u64);
        self.recent.drain(|key, envelope| {
            spool.routes[route].append(key, envelope);
            count += 1;
            bytes += (key.len() + envelope.len()) as u64;
        });
        if count > 0 {
            spool.tickets.take(); // nobody waits for these
        }
        let unacknowledged: u64 = self.connections.iter().map(|c| c.unacknowledged).sum();
        if unacknowledged > bytes {
            eprintln!(
                "warning: {} sent to consumers was not acknowledged by their kernels when the drain ended, more than the {} the resend buffer kept: events may be lost; raise --resend-buffer or --drain-timeout",
                bytesize::ByteSize(unacknowledged).to_string_as(true),
                bytesize::ByteSize(bytes).to_string_as(true)
            );
        }
        count
    }
}

/// What a route socket's monitor said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerEvent {
    /// A consumer completed the ZeroMQ handshake: it can take events.
    Ready,
    /// A consumer that had completed the handshake disconnected.
    Lost,
    /// The socket is gone (closed, and done sending or lingering).
    Stopped,
    Other,
}

/// A route socket's connections, by descriptor (libzmq's monitor gives it
/// with CONNECTED and DISCONNECTED). A TCP connection alone is not a
/// consumer (a port scanner, a load balancer with no backends, a peer that
/// is not ZeroMQ); one that completed the handshake is.
#[derive(Debug, Default)]
struct Peers {
    connections: Vec<Peer>,
    /// Handshakes completed so far.
    handshakes: u64,
}

#[derive(Debug)]
struct Peer {
    fd: std::os::fd::RawFd,
    ready: bool,
    /// `handshakes` when it connected.
    handshakes_before: u64,
}

impl Peers {
    fn ready(&self) -> usize {
        self.connections.iter().filter(|p| p.ready).count()
    }

    /// The next event from `monitor`, if one waits.
    ///
    /// HANDSHAKE_SUCCEEDED does not say which connection it is for: it
    /// marks the oldest connection still waiting. A connection that ends
    /// counts as a consumer lost when it was marked, or when any handshake
    /// completed after it connected (so a mismarked one is never taken for
    /// a non-consumer: at worst a re-send that was not needed).
    fn read(&mut self, monitor: &zmq::Socket) -> Option<PeerEvent> {
        let frames = monitor.recv_multipart(zmq::DONTWAIT).ok()?;
        let Some(head) = frames.first().filter(|f| f.len() >= 6) else {
            return Some(PeerEvent::Other);
        };
        let event = u16::from_ne_bytes([head[0], head[1]]);
        let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]) as i32;
        Some(match event {
            e if e == zmq::SocketEvent::CONNECTED as u16 => {
                self.connections.push(Peer {
                    fd: value,
                    ready: false,
                    handshakes_before: self.handshakes,
                });
                PeerEvent::Other
            }
            e if e == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 => {
                self.handshakes += 1;
                if let Some(p) = self.connections.iter_mut().find(|p| !p.ready) {
                    p.ready = true;
                }
                PeerEvent::Ready
            }
            e if e == zmq::SocketEvent::DISCONNECTED as u16 => {
                match self.connections.iter().position(|p| p.fd == value) {
                    Some(i) => {
                        let p = self.connections.remove(i);
                        if p.ready || self.handshakes > p.handshakes_before {
                            PeerEvent::Lost
                        } else {
                            PeerEvent::Other
                        }
                    }
                    None => PeerEvent::Other,
                }
            }
            e if e == zmq::SocketEvent::MONITOR_STOPPED as u16 => PeerEvent::Stopped,
            _ => PeerEvent::Other,
        })
    }

    /// Copies of the connections' descriptors (one libzmq closed already
    /// is left out: its DISCONNECTED follows).
    fn connections(&self) -> Vec<Connection> {
        use std::os::fd::BorrowedFd;
        let mut out = Vec::new();
        for p in &self.connections {
            // SAFETY: the descriptor is libzmq's, open unless its
            // DISCONNECTED is still unread; it is only duplicated here,
            // and a copy that is not a connected socket is dropped.
            let borrowed = unsafe { BorrowedFd::borrow_raw(p.fd) };
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
}

/// `(start, length)` in the outbox's arena.
type Span = (u32, u32);

/// Events waiting for the flusher: `(route, key, envelope)`, the texts in
/// one reused arena.
#[derive(Default)]
struct Outbox {
    arena: Vec<u8>,
    entries: Vec<(u16, Span, Span)>,
    events: usize,
}

impl Outbox {
    /// The event whose envelope was written to the arena from `start` on:
    /// its key is appended, and it gets one entry per route.
    fn push(&mut self, set: &RouteSet, key: &[u8], start: usize) {
        let e = (start as u32, (self.arena.len() - start) as u32);
        let k = (self.arena.len() as u32, key.len() as u32);
        self.arena.extend_from_slice(key);
        self.entries.extend(set.iter().map(|&route| (route, k, e)));
        self.events += 1;
    }

    fn text(&self, (start, len): Span) -> &[u8] {
        &self.arena[start as usize..(start + len) as usize]
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.entries.clear();
        self.events = 0;
    }
}

/// Accepted mode: a consumer that disconnects takes with it what it had
/// received but not processed, and libzmq drops what it had queued for it
/// (up to SNDHWM). Copies of the latest events handed to ZeroMQ on a route
/// are kept here, in two generations of up to half the budget each (so
/// between half and all of it is always kept, with no allocation once
/// both have grown), and re-sent through the spool on a disconnect.
struct Recent {
    half: usize,
    old: Vec<u8>,
    new: Vec<u8>,
}

impl Recent {
    fn new(bytes: u64) -> Self {
        let half = (bytes / 2) as usize;
        Self {
            half,
            old: Vec::with_capacity(half),
            new: Vec::with_capacity(half),
        }
    }

    /// Records are `[u32 key length][u32 envelope length][key][envelope]`.
    fn push(&mut self, key: &[u8], envelope: &[u8]) {
        let len = 8 + key.len() + envelope.len();
        if len > self.half {
            return;
        }
        if self.new.len() + len > self.half {
            std::mem::swap(&mut self.old, &mut self.new);
            self.new.clear();
        }
        self.new
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.new
            .extend_from_slice(&(envelope.len() as u32).to_le_bytes());
        self.new.extend_from_slice(key);
        self.new.extend_from_slice(envelope);
    }

    /// Hands every kept event to `f`, oldest first.
    fn each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        for buf in [&self.old, &self.new] {
            let mut at = 0;
            while at + 8 <= buf.len() {
                let word =
                    |i: usize| u32::from_le_bytes(buf[i..i + 4].try_into().unwrap_or_default());
                let (k, e) = (word(at) as usize, word(at + 4) as usize);
                let key = at + 8..at + 8 + k;
                f(&buf[key.clone()], &buf[key.end..key.end + e]);
                at = key.end + e;
            }
        }
    }

    /// Hands every kept event to `f`, oldest first, and forgets them.
    fn drain(&mut self, f: impl FnMut(&[u8], &[u8])) {
        self.each(f);
        self.old.clear();
        self.new.clear();
    }
}

/// Re-sends a route's kept events through its spool (behind whatever waits
/// there); returns the bytes re-sent.
fn resend(route: &mut Route, spool: &mut CoreSpool, i: usize) -> u64 {
    // These events got their 200: the spool's limit does not refuse them
    // (the resend buffer bounds them).
    let mut bytes = 0u64;
    route.recent.drain(|key, envelope| {
        spool.routes[i].append(key, envelope);
        bytes += (key.len() + envelope.len()) as u64;
    });
    if bytes > 0 {
        spool.tickets.take(); // wakes the flusher; nobody waits for these
    }
    bytes
}

/// Runs `f` with the calling thread's scheduling policy set to `sched`,
/// then restores the thread's own: threads started meanwhile (libzmq's I/O
/// and reaper threads) keep `sched`.
///
/// With `batch`, a core's I/O thread, woken by the core's hand-off, does
/// not preempt the core's executor (it shares its CPU); it sends when the
/// executor waits for the network, with more envelopes per wake-up. When
/// the policy cannot be set, the threads start with the caller's and
/// hookwire says so.
fn with_sched<T>(core: usize, sched: Sched, f: impl FnOnce() -> T) -> T {
    let want = match sched {
        Sched::Batch => libc::SCHED_BATCH,
        Sched::Normal => libc::SCHED_OTHER,
    };
    let mut own = libc::sched_param { sched_priority: 0 };
    // SAFETY (this and the calls below): pid 0 is the calling thread; the
    // sched_params are valid, `own` is written by the kernel and passed back
    // unchanged.
    let policy = unsafe { libc::sched_getscheduler(0) };
    // The reset-on-fork flag comes with the policy; it is kept as it is.
    let flags = policy & libc::SCHED_RESET_ON_FORK;
    let saved = policy >= 0 && unsafe { libc::sched_getparam(0, &mut own) } == 0;
    let differs = policy < 0 || policy & !libc::SCHED_RESET_ON_FORK != want;
    let zero = libc::sched_param { sched_priority: 0 };
    let changed =
        saved && differs && unsafe { libc::sched_setscheduler(0, want | flags, &zero) } == 0;
    if differs && !changed {
        eprintln!(
            "core {core}: --zmq-sched: cannot set the ZeroMQ threads' scheduling policy: {}",
            std::io::Error::last_os_error()
        );
    }
    let out = f();
    if changed && unsafe { libc::sched_setscheduler(0, policy, &own) } != 0 {
        eprintln!(
            "core {core}: --zmq-sched: cannot restore the executor's scheduling policy ({policy}): {}",
            std::io::Error::last_os_error()
        );
    }
    out
}

fn connect(
    context: &zmq::Context,
    core: usize,
    index: usize,
    spec: &RouteSpec,
    sndhwm: i32,
    resend: u64,
) -> Result<Route, zmq::Error> {
    let socket = context.socket(zmq::PUSH)?;
    socket.set_immediate(true)?;
    if spec.endpoints.iter().any(|e| crate::config::needs_ipv6(e)) {
        socket.set_ipv6(true)?;
    }
    socket.set_sndhwm(sndhwm)?;
    socket.set_linger(5_000)?;
    // The context is this core's own: inproc names need only differ by route.
    let monitor_endpoint = format!("inproc://hookwire-monitor-{core}-{index}");
    socket.monitor(
        &monitor_endpoint,
        (zmq::SocketEvent::CONNECTED as i32)
            | (zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)
            | (zmq::SocketEvent::DISCONNECTED as i32)
            | (zmq::SocketEvent::MONITOR_STOPPED as i32),
    )?;
    let monitor = context.socket(zmq::PAIR)?;
    monitor.set_linger(0)?;
    monitor.connect(&monitor_endpoint)?;
    for endpoint in &spec.endpoints {
        socket.connect(endpoint)?;
    }
    Ok(Route {
        pattern: (!spec.pattern.bytes().all(|b| b == b'*')).then(|| WildMatch::new(&spec.pattern)),
        socket,
        recent: Recent::new(resend),
        monitor,
        peers: Peers::default(),
        delivered: 0,
        depth: hdrhistogram::Histogram::new_with_bounds(1, 1 << 40, 2).expect("valid bounds"),
    })
}

/// One non-blocking send; false when ZeroMQ cannot take the event now.
fn try_send(socket: &zmq::Socket, frames: Frames, key: &[u8], envelope: &[u8]) -> bool {
    match frames {
        Frames::Json => socket.send(envelope, zmq::DONTWAIT).is_ok(),
        Frames::KeyJson => {
            if socket.send(key, zmq::DONTWAIT | zmq::SNDMORE).is_err() {
                return false;
            }
            // libzmq admits a multipart message as a whole: once its first
            // frame is queued the rest is accepted without a high-water
            // check. If the peer's pipe closes in between, libzmq drops the
            // partial message and refuses this frame: the event is then not
            // sent, and is kept and retried whole.
            socket.send(envelope, zmq::DONTWAIT).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    fn kept(r: &mut Recent) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        r.drain(|k, e| out.push((k.to_vec(), e.to_vec())));
        out
    }

    #[test]
    fn recent_keeps_the_latest_events_oldest_first() {
        // Records are 8 + 1 + 10 = 19 bytes; a half holds two of them.
        let mut r = Recent::new(80);
        for i in 0..7u8 {
            r.push(b"k", &[i; 10]);
        }
        let got: Vec<u8> = kept(&mut r).iter().map(|(_, e)| e[0]).collect();
        assert_eq!(got, [4, 5, 6], "the older generation, then the newer");
        assert!(kept(&mut r).is_empty(), "drained means forgotten");
        r.push(b"key", b"env");
        assert_eq!(kept(&mut r), [(b"key".to_vec(), b"env".to_vec())]);
    }

    #[test]
    fn recent_with_no_budget_keeps_nothing() {
        let mut r = Recent::new(0);
        r.push(b"k", b"e");
        assert!(kept(&mut r).is_empty());
        let mut r = Recent::new(20);
        r.push(b"k", &[0; 20]);
        assert!(
            kept(&mut r).is_empty(),
            "an event larger than a half is not kept"
        );
    }
}
