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
//! Imports point one way, from this file down: `route` uses `peers` and
//! `resend`, `closing` those three; `outbox` and `sched` use none of them.
//!
//! - `route`: one route's socket, consumers and counters; the send.
//! - `outbox`: accepted mode's events of one executor cycle.
//! - `peers`: the socket monitor's events, and the consumers they make.
//! - `resend`: the resend ring, put back in the spool on a disconnect.
//! - `closing`: a drain's closing sockets and their consumers' queues.
//! - `sched`: the scheduling policy of libzmq's threads.

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

pub use closing::Closing;
use outbox::Outbox;
use peers::PeerEvent;
use route::{try_send, Route};
use sched::with_sched;

use crate::config::{Frames, RouteSpec, Settings};
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
                .map(|(i, spec)| Route::connect(&context, core, i, spec, settings.sndhwm, resend))
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
        for &entry in &outbox.entries {
            let (key, envelope) = (outbox.text(entry.key), outbox.text(entry.envelope));
            let i = usize::from(entry.route);
            let route = &mut routes[i];
            let log = &mut spool.routes[i];
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
        let (durable, window) = (spool.durable, spool.retention());
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
            while let Some(event) = route.peers.read() {
                if event != PeerEvent::Lost {
                    continue;
                }
                let (what, bytes) = if spool.durable {
                    ("the journal's last", spool.routes[i].rewind())
                } else {
                    let respooled = route.recent.respool(&mut spool, i);
                    if respooled.skipped > 0 {
                        tracing::warn!(
                            "core {}: route {}: {} of the oldest events sent are not re-sent: the spool's filesystem has no room for them above --spool-min-free",
                            self.core,
                            self.specs[i].pattern,
                            respooled.skipped
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
        let closed_at = Instant::now();
        std::mem::take(&mut self.routes)
            .into_iter()
            .map(|route| Closing::start(route, linger, closed_at))
            .collect()
    }
}
