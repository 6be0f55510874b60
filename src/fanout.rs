//! Per-core ZeroMQ fan-out: one PUSH socket per route, non-blocking sends,
//! and a bounded in-order backlog per route for what ZeroMQ cannot take.
//!
//! Sockets use `ZMQ_IMMEDIATE`, so a send with no connected consumer fails
//! at once instead of queueing inside libzmq for a peer that may never
//! come: the event then waits in hookwire's own backlog (where a later
//! on-disk spool can take it). While a route has a backlog, new events for it
//! queue behind, so order per core and route is kept. Nothing is dropped:
//! when a backlog is full the sender is refused before any route is given
//! the event.

use std::collections::VecDeque;

use smallvec::SmallVec;
use wildmatch::WildMatch;

use crate::config::{Frames, RouteSpec, Settings};

/// The routes an event goes to: indices, inline for up to four matches.
pub type RouteSet = SmallVec<[u16; 4]>;

/// Why an event cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No route's glob matches the key.
    NoRoute,
    /// A matching route's backlog is full.
    BacklogFull,
}

/// An event waiting for its route's socket: `key` then envelope.
#[derive(Debug)]
struct Pending {
    bytes: Box<[u8]>,
    key_len: usize,
}

struct Route {
    pattern: WildMatch,
    socket: zmq::Socket,
    backlog: VecDeque<Pending>,
    /// Receives the socket's connect/disconnect events.
    monitor: zmq::Socket,
    connected: usize,
    delivered: u64,
    depth: hdrhistogram::Histogram<u64>,
}

/// What the admin endpoint reports about one route on one core.
#[derive(Debug, Clone)]
pub struct RouteStatus {
    pub pattern: String,
    pub endpoints: Vec<String>,
    /// Consumers connected to this core's socket.
    pub connected: usize,
    /// Events waiting in this core's backlog.
    pub waiting: usize,
    /// Events handed to ZeroMQ.
    pub delivered: u64,
    /// Backlog depth, sampled every tick of the retry task.
    pub depth: hdrhistogram::Histogram<u64>,
}

/// One core's sockets and backlogs.
pub struct Fanout {
    // Declared before the context: sockets must close before it terminates.
    routes: Vec<Route>,
    specs: Vec<RouteSpec>,
    _context: zmq::Context,
    frames: Frames,
    backlog_max: usize,
    /// Bytes held in all of this core's backlogs, and their limit.
    backlog_bytes: usize,
    backlog_bytes_max: usize,
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
    pub fn new(core: usize, settings: &Settings) -> Result<Self, zmq::Error> {
        let context = zmq::Context::new();
        let routes = settings
            .routes
            .iter()
            .enumerate()
            .map(|(i, spec)| connect(&context, core, i, spec, settings.sndhwm))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            routes,
            specs: settings.routes.clone(),
            _context: context,
            frames: settings.frames,
            backlog_max: settings.backlog,
            backlog_bytes: 0,
            backlog_bytes_max: settings.backlog_bytes,
        })
    }

    /// The routes an event with `key` goes to, if every one of them can
    /// take it now (directly or in its backlog).
    pub fn admit(&mut self, key: &str) -> Result<RouteSet, Refused> {
        let mut set = RouteSet::new();
        for (i, route) in self.routes.iter_mut().enumerate() {
            if route.pattern.matches(key) {
                if !route.backlog.is_empty()
                    && (route.backlog.len() >= self.backlog_max
                        || self.backlog_bytes >= self.backlog_bytes_max)
                {
                    self.backlog_bytes -= flush_route(route, self.frames);
                    if route.backlog.len() >= self.backlog_max
                        || self.backlog_bytes >= self.backlog_bytes_max
                    {
                        return Err(Refused::BacklogFull);
                    }
                }
                set.push(i as u16);
            }
        }
        if self.backlog_bytes >= self.backlog_bytes_max {
            // Another route's backlog holds the memory: an event that would
            // have to wait here too could not be kept.
            return Err(Refused::BacklogFull);
        }
        if set.is_empty() {
            return Err(Refused::NoRoute);
        }
        Ok(set)
    }

    /// Hands an admitted event to each of its routes, never blocking.
    pub fn send(&mut self, set: &RouteSet, key: &[u8], envelope: &[u8]) {
        for &i in set {
            let route = &mut self.routes[usize::from(i)];
            if !route.backlog.is_empty() {
                self.backlog_bytes -= flush_route(route, self.frames);
            }
            if route.backlog.is_empty() && try_send(&route.socket, self.frames, key, envelope) {
                route.delivered += 1;
                continue;
            }
            let mut bytes = Vec::with_capacity(key.len() + envelope.len());
            bytes.extend_from_slice(key);
            bytes.extend_from_slice(envelope);
            self.backlog_bytes += bytes.len();
            route.backlog.push_back(Pending {
                bytes: bytes.into_boxed_slice(),
                key_len: key.len(),
            });
        }
    }

    /// Retries every backlog in order; returns the number still waiting.
    pub fn flush(&mut self) -> usize {
        for route in &mut self.routes {
            self.backlog_bytes -= flush_route(route, self.frames);
        }
        self.waiting()
    }

    /// Events waiting in backlogs (counted once per route).
    pub fn waiting(&self) -> usize {
        self.routes.iter().map(|r| r.backlog.len()).sum()
    }

    /// Reads connect/disconnect events and samples backlog depths; called
    /// by the core's retry task on every tick.
    pub fn tick(&mut self) {
        for route in &mut self.routes {
            while let Ok(frames) = route.monitor.recv_multipart(zmq::DONTWAIT) {
                let event = frames
                    .first()
                    .filter(|f| f.len() >= 2)
                    .map(|f| u16::from_ne_bytes([f[0], f[1]]));
                match event {
                    Some(e) if e == zmq::SocketEvent::CONNECTED as u16 => route.connected += 1,
                    Some(e) if e == zmq::SocketEvent::DISCONNECTED as u16 => {
                        route.connected = route.connected.saturating_sub(1)
                    }
                    _ => {}
                }
            }
            route.depth.saturating_record(route.backlog.len() as u64);
        }
    }

    pub fn status(&self) -> Vec<RouteStatus> {
        self.routes
            .iter()
            .zip(&self.specs)
            .map(|(r, spec)| RouteStatus {
                pattern: spec.pattern.clone(),
                endpoints: spec.endpoints.clone(),
                connected: r.connected,
                waiting: r.backlog.len(),
                delivered: r.delivered,
                depth: r.depth.clone(),
            })
            .collect()
    }

    /// Sets how long closing the sockets may wait for queued messages.
    pub fn set_linger(&self, ms: i32) {
        for route in &self.routes {
            let _ = route.socket.set_linger(ms);
        }
    }
}

fn connect(
    context: &zmq::Context,
    core: usize,
    index: usize,
    spec: &RouteSpec,
    sndhwm: i32,
) -> Result<Route, zmq::Error> {
    let socket = context.socket(zmq::PUSH)?;
    socket.set_immediate(true)?;
    socket.set_sndhwm(sndhwm)?;
    socket.set_linger(5_000)?;
    // The context is this core's own: inproc names need only differ by route.
    let monitor_endpoint = format!("inproc://hookwire-monitor-{core}-{index}");
    socket.monitor(
        &monitor_endpoint,
        (zmq::SocketEvent::CONNECTED as i32) | (zmq::SocketEvent::DISCONNECTED as i32),
    )?;
    let monitor = context.socket(zmq::PAIR)?;
    monitor.set_linger(0)?;
    monitor.connect(&monitor_endpoint)?;
    for endpoint in &spec.endpoints {
        socket.connect(endpoint)?;
    }
    Ok(Route {
        pattern: WildMatch::new(&spec.pattern),
        socket,
        backlog: VecDeque::new(),
        monitor,
        connected: 0,
        delivered: 0,
        depth: hdrhistogram::Histogram::new_with_bounds(1, 1 << 40, 2).expect("valid bounds"),
    })
}

/// Sends what the route's backlog holds, in order, until ZeroMQ stops
/// taking it; returns the bytes that left the backlog.
fn flush_route(route: &mut Route, frames: Frames) -> usize {
    let mut freed = 0;
    while let Some(p) = route.backlog.front() {
        let (key, envelope) = p.bytes.split_at(p.key_len);
        if !try_send(&route.socket, frames, key, envelope) {
            break;
        }
        route.delivered += 1;
        freed += p.bytes.len();
        route.backlog.pop_front();
    }
    freed
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
