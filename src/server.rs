//! Starting the cores: one SO_REUSEPORT listener and one glommio executor
//! per core, the accept loop, each core's control task (spool delivery,
//! admin snapshots, drain) and the graceful drain itself.
//!
//! Listeners are bound on the main thread before any executor starts, so a
//! busy port fails the start with a clear message, and `--listen …:0` gives
//! every core the same ephemeral port.

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::admin::{Ask, CoreSnapshot};
use crate::config::Settings;
use crate::shard::Shard;
use crate::spool::{self, CoreSpool, SpoolConfig, SpoolUsage, Tickets};

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: i32 = 4096;
/// How often a core looks at its control channel and spool when idle.
const TICK: Duration = Duration::from_millis(10);

/// Binds one SO_REUSEPORT listener per core on the same address.
///
/// SO_REUSEPORT would also let a second process of the same user bind an
/// address that is in use, and the kernel would then split the senders'
/// connections between the two (a second hookwire started by mistake would
/// take a share of the traffic to its own consumers). A probe bound first
/// without it is refused if anything listens there, unless `--share-port`
/// asks for exactly that (a restart without a gap).
pub fn bind(settings: &Settings) -> std::io::Result<Vec<StdListener>> {
    let mut addr = settings.listen;
    if addr.port() != 0 && !settings.share_port {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?; // a restart is not held up by TIME_WAIT
        if addr.is_ipv6() {
            probe.set_only_v6(false)?;
        }
        // A process killed a moment ago can hold its listeners for some
        // milliseconds after it is reaped (io_uring's teardown): a
        // supervisor's immediate restart waits that out, up to 2 s.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut bound = probe.bind(&addr.into());
        while bound
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
            bound = probe.bind(&addr.into());
        }
        bound.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                std::io::Error::new(
                    e.kind(),
                    format!("{e}: another process listens there (is hookwire already running? --share-port joins it)"),
                )
            } else {
                e
            }
        })?;
    }
    let mut listeners = Vec::with_capacity(settings.cores);
    for _ in 0..settings.cores {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: StdListener = socket.into();
        // With port 0 the first bind picks the port; the rest share it.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// One per core; each returns the core's final snapshot after a drain.
    pub handles: Vec<glommio::ExecutorJoinHandle<CoreSnapshot>>,
    /// Senders of each core's control channel.
    pub cores: Vec<mpsc::Sender<Ask>>,
    /// Set to start the graceful drain on every core.
    pub drain: Arc<AtomicBool>,
}

/// Starts every core and returns once all of them accept connections.
pub fn start(settings: Arc<Settings>) -> Result<Running, Box<dyn std::error::Error>> {
    let listeners = bind(&settings).map_err(|e| format!("--listen {}: {e}", settings.listen))?;
    let addr = listeners[0].local_addr()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let drain = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let usage = SpoolUsage::new(settings.cores);
    let mut handles = Vec::new();
    let mut cores = Vec::new();
    for (core, listener) in listeners.into_iter().enumerate() {
        let fd = listener.into_raw_fd();
        let settings = settings.clone();
        let ready = ready_tx.clone();
        let drain = drain.clone();
        let usage = usage.clone();
        let (ask_tx, ask_rx) = mpsc::channel();
        cores.push(ask_tx);
        let handle = LocalExecutorBuilder::new(Placement::Fixed(core % cpus))
            .name(&format!("hookwire-core-{core}"))
            // DMA buffers for the spool's writes and reads.
            .io_memory(4 << 20)
            .spawn(move || async move {
                match run_core(core, fd, settings, &ready, ask_rx, drain, usage).await {
                    Ok(last) => last,
                    Err(e) => {
                        let _ = ready.send(Err(format!("core {core}: {e}")));
                        CoreSnapshot::empty(core)
                    }
                }
            })
            .map_err(|e| format!("core {core}: cannot start executor: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..settings.cores {
        match ready_rx.recv() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err("a core stopped while starting".into()),
        }
    }
    Ok(Running {
        addr,
        handles,
        cores,
        drain,
    })
}

/// One core's connections, for the drain and the timeouts.
#[derive(Debug, Default)]
pub struct CoreState {
    /// Set when the drain starts: connections close after their current
    /// request instead of waiting for another.
    pub draining: Cell<bool>,
    conns: RefCell<Slab<ConnEntry>>,
}

#[derive(Debug)]
struct ConnEntry {
    fd: RawFd,
    /// Waiting for a new request with nothing half-read.
    idle: bool,
    /// While the connection waits for bytes: when it times out.
    deadline: Option<Instant>,
    /// The sweep found it past its deadline and ended its read.
    timed_out: bool,
}

impl CoreState {
    pub fn register(&self, fd: RawFd) -> usize {
        self.conns.borrow_mut().insert(ConnEntry {
            fd,
            idle: false,
            deadline: None,
            timed_out: false,
        })
    }

    /// Before a read: the connection waits for bytes until `deadline`
    /// (`idle`: for a new request, with nothing half-read).
    pub fn waiting(&self, key: usize, idle: bool, deadline: Instant) {
        if let Some(e) = self.conns.borrow_mut().get_mut(key) {
            e.idle = idle;
            e.deadline = Some(deadline);
        }
    }

    /// After a read: the connection is busy, its timeout does not run.
    /// Returns whether the read was ended by the timeout sweep.
    pub fn busy(&self, key: usize) -> bool {
        match self.conns.borrow_mut().get_mut(key) {
            Some(e) => {
                e.idle = false;
                e.deadline = None;
                e.timed_out
            }
            None => false,
        }
    }

    pub fn unregister(&self, key: usize) {
        self.conns.borrow_mut().try_remove(key);
    }

    pub fn open(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Ends the read of every connection waiting past its deadline: the
    /// read returns end-of-file and [`CoreState::busy`] says why. One sweep
    /// per core instead of a timer per read (glommio's read timeouts insert
    /// and remove a B-tree entry, with a clock read, for every read).
    fn expire(&self, now: Instant) {
        for (_, e) in self.conns.borrow_mut().iter_mut() {
            if !e.timed_out && e.deadline.is_some_and(|d| now >= d) {
                e.timed_out = true;
                // SAFETY: the fd belongs to a live connection of this core
                // (entries are removed before their stream is dropped).
                unsafe { libc::shutdown(e.fd, libc::SHUT_RD) };
            }
        }
    }

    /// Ends the reads of connections that wait for a new request (or of
    /// every connection, when `all`): their pending read returns end-of-file.
    fn shut_reads(&self, all: bool) {
        for (_, e) in self.conns.borrow().iter() {
            if all || e.idle {
                // SAFETY: the fd belongs to a live connection of this core
                // (entries are removed before their stream is dropped).
                unsafe { libc::shutdown(e.fd, libc::SHUT_RD) };
            }
        }
    }
}

async fn run_core(
    core: usize,
    fd: RawFd,
    settings: Arc<Settings>,
    ready: &mpsc::Sender<Result<usize, String>>,
    asks: mpsc::Receiver<Ask>,
    drain: Arc<AtomicBool>,
    usage: Arc<SpoolUsage>,
) -> Result<CoreSnapshot, Box<dyn std::error::Error>> {
    // SAFETY: `fd` is a bound, listening socket whose ownership was given
    // up by `into_raw_fd` for this core alone.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let spool_config = SpoolConfig::for_core(&settings, core, usage);
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
        eprintln!("core {core}: spool: {recovered} bytes of events from an earlier run are delivered first");
    }
    let shard = Rc::new(RefCell::new(Shard::new(
        core,
        settings.clone(),
        spool.clone(),
    )?));
    let tickets = spool.borrow().tickets.clone();
    glommio::spawn_local(flusher(
        shard.clone(),
        spool.clone(),
        tickets,
        match settings.durable {
            true => Pause::Always(settings.sync_interval),
            false => Pause::WhenSeveral(settings.flush_interval),
        },
    ))
    .detach();
    let state = Rc::new(CoreState::default());
    let accept = glommio::spawn_local(accept_loop(
        core,
        listener,
        shard.clone(),
        state.clone(),
        settings.clone(),
    ));
    let _ = ready.send(Ok(core));

    // Control: retry backlogs, answer the admin endpoint, watch for a drain,
    // time out stalled connections.
    let started = Instant::now();
    let sweep_every = (settings.idle_timeout.min(settings.request_timeout) / 20)
        .clamp(Duration::from_millis(5), Duration::from_millis(250));
    let mut next_sweep = started + sweep_every;
    let control = |shard: &Rc<RefCell<Shard>>, state: &CoreState, accepting: bool| {
        let mut shard = shard.borrow_mut();
        shard.fanout.tick();
        while let Ok(Ask::Snapshot(reply)) = asks.try_recv() {
            let _ = reply.send(CoreSnapshot::of(&shard, state.open(), accepting, started));
        }
        shard.fanout.waiting()
    };
    loop {
        let read = deliver(&shard, &spool).await;
        control(&shard, &state, true);
        if drain.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if now >= next_sweep {
            state.expire(now);
            next_sweep = now + sweep_every;
        }
        if !read {
            // Spooled events a consumer could take are retried every
            // millisecond; with no consumer there is nothing to retry
            // until one connects, which the next tick sees.
            let pause = if shard.borrow().fanout.deliverable() {
                Duration::from_millis(1)
            } else {
                TICK
            };
            glommio::timer::sleep(pause).await;
        }
    }

    // Drain: stop accepting, finish in-flight requests, close idle
    // keep-alive connections, hand every accepted event to ZeroMQ.
    let deadline = Instant::now() + settings.drain_timeout;
    accept.cancel().await;
    state.draining.set(true);
    state.shut_reads(false);
    while state.open() > 0 && Instant::now() < deadline {
        control(&shard, &state, false);
        state.shut_reads(false);
        // A request that stalls still gets its 408 at its own timeout.
        state.expire(Instant::now());
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    if state.open() > 0 {
        eprintln!(
            "core {core}: drain timeout: closing {} connection(s) mid-request",
            state.open()
        );
        state.shut_reads(true);
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    while Instant::now() < deadline {
        shard.borrow_mut().flush_outbox();
        spool::flush(&spool).await;
        let read = deliver(&shard, &spool).await;
        if control(&shard, &state, false) == 0 {
            break;
        }
        if !read {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
    // The last hand-off: after any write still in flight (bounded).
    shard.borrow_mut().flush_outbox();
    write_out(&spool, Duration::from_secs(1)).await;
    let mut last = CoreSnapshot::of(&shard.borrow(), state.open(), false, started);
    // Closing the sockets may wait for ZeroMQ to send what it queued, and
    // for the consumers' kernels to acknowledge it, but not past the
    // deadline.
    let left = deadline.saturating_duration_since(Instant::now());
    let mut closing = shard.borrow_mut().fanout.close_sockets(left);
    // Every route is read each time, so each socket's end is seen when it
    // comes.
    let all_done = |closing: &mut [crate::fanout::Closing]| {
        let mut done = true;
        for c in closing.iter_mut() {
            done &= c.poll();
        }
        done
    };
    while !all_done(&mut closing) && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    if !settings.durable {
        // What may not have reached a consumer is kept in the spool
        // (durable mode's journal keeps the replay window instead).
        let kept: usize = {
            let mut spool = spool.borrow_mut();
            closing
                .into_iter()
                .enumerate()
                .map(|(route, c)| c.respool(&mut spool, route))
                .sum()
        };
        if kept > 0 {
            write_out(&spool, Duration::from_secs(2)).await;
            eprintln!(
                "core {core}: the last {kept} events handed to consumers are also kept in the spool: not every consumer was seen to get everything before the sockets closed (the next start sends them again; consumers drop repeats by id)"
            );
        }
    }
    // The summary's spool figures include what was just kept.
    for (status, log) in last.routes.iter_mut().zip(&spool.borrow().routes) {
        status.waiting = log.stored();
    }
    last.spool_stored = spool.borrow().stored();
    let waiting = last.spool_stored;
    if waiting > 0 {
        eprintln!(
            "core {core}: {waiting} bytes of accepted events stay in the spool ({}) for the next start",
            settings.spool_dir.display()
        );
    }
    Ok(last)
}

/// Writes everything appended to the spool before the executor ends,
/// also when the flusher task has a write of its own in flight: flushes
/// until nothing is pending or being written, for `limit` at most.
async fn write_out(spool: &Rc<RefCell<CoreSpool>>, limit: Duration) {
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

/// How long the flusher lets a batch grow after the previous hand-off.
#[derive(Debug, Clone, Copy)]
enum Pause {
    /// Durable mode: one fdatasync per sync interval.
    Always(Duration),
    /// Accepted mode (`--flush-interval`, off by default): only while more
    /// than one event waits, so a lone request is answered at once. Fewer,
    /// larger hand-offs mean fewer wake-ups of libzmq's I/O thread; on this
    /// project's 2-core machine 200 µs roughly halved oha's p99 at 64
    /// connections but cost 16 connections a quarter of their throughput
    /// (tuning.md).
    WhenSeveral(Duration),
}

/// Decides the tickets connections wait for. Woken by the first event of a
/// batch, it runs after the connections that were ready with it: accepted
/// mode hands their outbox to ZeroMQ in one go (when several events wait,
/// at most once per flush interval), then writes what ZeroMQ did not take
/// (and, in durable mode, the journal: at most once per sync interval, one
/// fdatasync covering every event since the last).
async fn flusher(
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

/// Hands spooled events to ZeroMQ and reads more from disk where needed;
/// true if it read anything (so there may be more to hand over at once).
async fn deliver(shard: &Rc<RefCell<Shard>>, spool: &Rc<RefCell<CoreSpool>>) -> bool {
    let reads = shard.borrow_mut().fanout.deliver_spooled();
    let mut read = false;
    for next in reads {
        let outcome = match next {
            spool::Next::Read(route, file, offset, len) => {
                spool::read(file, offset, len).await.map(|bytes| {
                    spool::store_chunk(&mut spool.borrow_mut().routes[route], offset, bytes)
                })
            }
            spool::Next::Open(route, path) => {
                let file = glommio::io::DmaFile::open(&path)
                    .await
                    .map_err(std::io::Error::from);
                spool::opened(&mut spool.borrow_mut().routes[route], &path, file)
            }
            spool::Next::Idle => continue,
        };
        match outcome {
            Ok(()) => read = true,
            Err(e) => {
                // Kept, and tried again: at most once per 100 ms, and
                // said at most once per 10 s (a disk that keeps failing
                // must not flood the log or spin the core).
                thread_local!(static SAID: Cell<Option<Instant>> = const { Cell::new(None) });
                let now = Instant::now();
                if SAID
                    .get()
                    .is_none_or(|t| now - t >= Duration::from_secs(10))
                {
                    SAID.set(Some(now));
                    eprintln!("spool: cannot read a spool file (retrying every 100 ms): {e}");
                }
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    read
}

async fn accept_loop(
    core: usize,
    listener: TcpListener,
    shard: Rc<RefCell<Shard>>,
    state: Rc<CoreState>,
    settings: Arc<Settings>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                shard.borrow_mut().metrics.counters.connections_accepted += 1;
                let conn =
                    crate::conn::serve(stream, shard.clone(), state.clone(), settings.clone());
                glommio::spawn_local(conn).detach();
            }
            Err(e) => {
                // Out of descriptors or memory: back off, never exit.
                eprintln!("core {core}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
