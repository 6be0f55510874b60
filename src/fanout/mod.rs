//! Per-core ZeroMQ fan-out: one PUSH socket per route, non-blocking sends,
//! and the route's on-disk spool ([`crate::spool`]) for what ZeroMQ cannot take.
//!
//! Sockets use `ZMQ_IMMEDIATE`, so a send with no connected consumer fails
//! at once instead of queueing inside libzmq (in memory only) for a peer
//! that may never come: the event goes to the spool instead. While a route
//! has spooled events, new events for it go behind them, so order per core
//! and route is kept. Nothing is dropped: when the spool is full the sender
//! is refused before any route is given the event.
//!
//! # Layout
//!
//! Imports point one way, from this file down: `route` uses `peers`,
//! `resend` and `acked`, `closing` the first three; `outbox` and `sched`
//! use none of them.
//!
//! - `route`: one route's socket, consumers and counters; the send.
//! - `outbox`: accepted mode's events of one executor cycle.
//! - `peers`: the socket monitor's events, and the consumers they make.
//! - `resend`: the resend ring; what a consumer that left may not have
//!   processed goes back to the spool, marked as re-sends.
//! - `acked`: an acknowledged route's unacknowledged events.
//! - `closing`: a drain's closing sockets and their consumers' queues.
//! - `sched`: the scheduling policy of libzmq's threads.

mod acked;
mod closing;
mod outbox;
mod peers;
mod resend;
mod route;
mod sched;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use acked::{Ack, Unacked};
pub use closing::Closing;
use outbox::Outbox;
use peers::PeerEvent;
use route::{envelope_id, try_send, Route};
use sched::with_sched;

use crate::config::{Frames, RouteSpec, Settings};
use crate::spool::{self, CoreSpool, Sent};

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

/// What the admin endpoint reports about one route on one core.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    pub pattern: String,
    pub endpoints: Vec<String>,
    /// Consumers connected to this core's socket (ZeroMQ handshake done).
    pub connected: usize,
    /// Bytes waiting in this core's spool.
    pub waiting: u64,
    /// Events handed to ZeroMQ for the first time.
    pub delivered: u64,
    /// Events handed to ZeroMQ again after a consumer disconnected.
    pub resent: u64,
    /// Events not re-sent after a disconnect because they were first sent
    /// more than `--resend-window` ago.
    pub resend_skipped: u64,
    /// The route takes acknowledgements.
    pub acked: bool,
    /// Events sent and not acknowledged yet.
    pub unacked: u64,
    /// How long ago the oldest of them was first sent, in milliseconds.
    pub oldest_unacked_ms: u64,
    /// Acks of ids not held (acknowledged twice, or unknown).
    pub acks_unknown: u64,
    /// Ack tokens that were no id.
    pub acks_bad: u64,
    /// Acks dropped by the listener: this core's channel was full.
    pub acks_dropped: u64,
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
    /// `--resend-window`, in milliseconds.
    window_ms: u64,
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
                .map(|(i, spec)| {
                    let acks = spec
                        .ack
                        .is_some()
                        .then(|| Unacked::new(unacked_limit(settings), settings.ack_timeout));
                    Route::connect(&context, core, i, spec, settings.sndhwm, resend, acks)
                })
                .collect::<Result<_, _>>()
        })?;
        Ok(Self {
            routes,
            outbox: Outbox::default(),
            specs: settings.routes.clone(),
            _context: context,
            frames: settings.frames,
            core,
            window_ms: settings.resend_window.as_millis() as u64,
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
    /// when nothing waits before it; `now_ms` is the event's time (Unix
    /// ms), its first send's.
    pub fn send(&mut self, set: &RouteSet, key: &[u8], start: usize, now_ms: u64) -> u64 {
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
            let queued = log.active() || route.acks.as_ref().is_some_and(Unacked::full);
            log.append(key, envelope);
            if !queued && try_send(&route.socket, self.frames, key, envelope) {
                log.delivered_through_tail();
                sent_first(route, key, envelope, now_ms);
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

    /// The envelopes waiting in the outbox, one per route entry, in order.
    /// Only for tests and fuzzing, which check what the encoder wrote; the
    /// server never calls it.
    #[doc(hidden)]
    pub fn outbox_envelopes(&self) -> impl Iterator<Item = &[u8]> {
        self.outbox
            .entries
            .iter()
            .map(|e| self.outbox.text(e.envelope))
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
        let now_ms = resend::unix_ms();
        for &entry in &outbox.entries {
            let (key, envelope) = (outbox.text(entry.key), outbox.text(entry.envelope));
            let i = usize::from(entry.route);
            let route = &mut routes[i];
            let log = &mut spool.routes[i];
            let held = route.acks.as_ref().is_some_and(Unacked::full);
            if log.active() || held || !try_send(&route.socket, *frames, key, envelope) {
                log.append(key, envelope);
            } else {
                sent_first(route, key, envelope, now_ms);
            }
        }
        outbox.clear();
        n
    }

    /// Hands spooled records to ZeroMQ, oldest first, while it takes them;
    /// returns the files to open and the disk reads needed to go on.
    pub fn deliver_spooled(&mut self) -> Vec<spool::Next> {
        let mut spool = self.spool.borrow_mut();
        let (durable, window) = (spool.durable, spool.retention());
        let mut reads = Vec::new();
        let now_ms = resend::unix_ms();
        for (i, route) in self.routes.iter_mut().enumerate() {
            let frames = self.frames;
            let next = spool::deliver(
                &mut spool.routes[i],
                i,
                durable,
                window,
                |key, envelope, before| {
                    if route.acks.as_ref().is_some_and(Unacked::full)
                        || !try_send(&route.socket, frames, key, envelope)
                    {
                        return false;
                    }
                    match (before, &mut route.acks) {
                        (Sent::Never, _) => sent_first(route, key, envelope, now_ms),
                        // A re-send keeps its first send's time: its
                        // re-sends end with the window.
                        (Sent::At(first), None) => {
                            route.recent.push(key, envelope, first);
                            route.resent += 1;
                        }
                        (Sent::At(first), Some(acks)) => {
                            hold(acks, key, envelope, now_ms, first);
                            route.resent += 1;
                        }
                        (Sent::Replay, acks) => {
                            if let Some(acks) = acks {
                                hold(acks, key, envelope, now_ms, now_ms);
                            }
                            route.resent += 1;
                        }
                    }
                    true
                },
            );
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
            route.peers.sample();
            while let Some(event) = route.peers.read() {
                let PeerEvent::Lost { queues } = event else {
                    continue;
                };
                if let Some(acks) = &mut route.acks {
                    acks.lost();
                    tracing::info!(
                        "core {}: route {}: a consumer disconnected; re-sending the {} events not acknowledged",
                        self.core,
                        self.specs[i].pattern,
                        acks.len()
                    );
                    continue;
                }
                let (what, bytes) = if spool.durable {
                    ("the journal's last", spool.routes[i].rewind())
                } else {
                    let bound = route.bound(1, queues, resend::unix_ms(), self.window_ms);
                    let respooled = route.recent.respool(&mut spool, i, bound);
                    if respooled.skipped > 0 {
                        tracing::warn!(
                            "core {}: route {}: {} of the oldest events sent are not re-sent: the spool's filesystem has no room for them above --spool-min-free",
                            self.core,
                            self.specs[i].pattern,
                            respooled.skipped
                        );
                    }
                    if respooled.too_old > 0 {
                        route.resend_skipped += respooled.too_old as u64;
                        tracing::warn!(
                            "core {}: route {}: {} events not re-sent: first sent more than --resend-window ({} ms) ago; a consumer that was that far behind may not have processed them",
                            self.core,
                            self.specs[i].pattern,
                            respooled.too_old,
                            self.window_ms
                        );
                    }
                    ("its last", respooled.bytes)
                };
                let (core, pattern) = (self.core, &self.specs[i].pattern);
                if bytes > 0 {
                    tracing::info!(
                        "core {core}: route {pattern}: a consumer disconnected; re-sending {what} {} (duplicates expected, drop them by id)",
                        bytesize::ByteSize(bytes)
                    );
                } else {
                    tracing::info!(
                        "core {core}: route {pattern}: a consumer disconnected; nothing to re-send"
                    );
                }
            }
        }
        for (route, log) in self.routes.iter_mut().zip(&spool.routes) {
            route.depth.saturating_record(log.stored());
        }
        let now = resend::unix_ms();
        let frames = self.frames;
        for route in &mut self.routes {
            let Route {
                acks: Some(acks),
                socket,
                resent,
                ..
            } = route
            else {
                continue;
            };
            *resent +=
                acks.resend_due(now, |key, envelope| try_send(socket, frames, key, envelope));
        }
    }

    /// Takes acknowledgements for route `route`: each id held is
    /// delivered; others, and `bad` tokens that were no id, are counted.
    pub fn ack(&mut self, route: usize, ids: &[u64], bad: u64, dropped: u64) {
        let Some(route) = self.routes.get_mut(route) else {
            return;
        };
        route.acks_bad += bad;
        route.acks_dropped += dropped;
        let Some(acks) = &mut route.acks else {
            route.acks_unknown += ids.len() as u64;
            return;
        };
        for &id in ids {
            match acks.ack(id) {
                Ack::Done => route.delivered += 1,
                Ack::Unknown => route.acks_unknown += 1,
            }
        }
    }

    /// Events sent on acknowledged routes and not acknowledged yet.
    pub fn unacked(&self) -> usize {
        self.routes
            .iter()
            .filter_map(|r| r.acks.as_ref())
            .map(Unacked::len)
            .sum()
    }

    /// Appends every unacknowledged event to its route's spool as a
    /// re-send (the next start sends it again) and returns how many.
    pub fn keep_unacked(&mut self) -> usize {
        let mut spool = self.spool.borrow_mut();
        let mut kept = 0;
        for (i, route) in self.routes.iter_mut().enumerate() {
            if let Some(acks) = &mut route.acks {
                let log = &mut spool.routes[i];
                kept += acks.drain(|key, envelope, first| log.append_repeat(key, envelope, first));
            }
        }
        if kept > 0 {
            spool.tickets.take(); // wakes the flusher; nobody waits for these
        }
        kept
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
                resent: r.resent,
                resend_skipped: r.resend_skipped,
                acked: r.acks.is_some(),
                unacked: r.acks.as_ref().map_or(0, |a| a.len() as u64),
                oldest_unacked_ms: r
                    .acks
                    .as_ref()
                    .and_then(Unacked::oldest_first_sent)
                    .map_or(0, |t| resend::unix_ms().saturating_sub(t)),
                acks_unknown: r.acks_unknown,
                acks_bad: r.acks_bad,
                acks_dropped: r.acks_dropped,
                depth: r.depth.clone(),
            })
            .collect()
    }

    /// Closes every route's socket, letting libzmq send what it still
    /// queues for `linger` at most, and returns each route's [`Closing`]
    /// to learn whether its consumers got it all. The routes are gone
    /// afterwards (the spool stays).
    pub fn close_sockets(&mut self, linger: Duration) -> Vec<Closing> {
        let closed_at = Instant::now();
        let window_ms = self.window_ms;
        std::mem::take(&mut self.routes)
            .into_iter()
            .map(|route| Closing::start(route, linger, closed_at, window_ms))
            .collect()
    }
}

/// Records an event's first send: held for its ack on an acknowledged
/// route (delivered once acked), else kept for re-sending and delivered.
#[inline]
fn sent_first(route: &mut Route, key: &[u8], envelope: &[u8], now_ms: u64) {
    match &mut route.acks {
        Some(acks) => hold(acks, key, envelope, now_ms, now_ms),
        None => {
            route.recent.push(key, envelope, now_ms);
            route.delivered += 1;
        }
    }
}

/// Holds a sent event for its ack, by the id in its envelope (every
/// envelope has one; one that did not could never be acked, so it is not
/// held).
fn hold(acks: &mut Unacked, key: &[u8], envelope: &[u8], now: u64, first_sent: u64) {
    if let Some(id) = envelope_id(envelope) {
        acks.hold(id, key, envelope, now, first_sent);
    }
}

/// The memory one acknowledged route may hold unacknowledged on one core:
/// its share of `--resend-buffer` (which such routes do not use), at
/// least 1 MiB.
fn unacked_limit(settings: &Settings) -> u64 {
    let share = settings.resend_buffer / (settings.cores * settings.routes.len()).max(1) as u64;
    share.max(1 << 20)
}
