//! The public listeners: one SO_REUSEPORT socket per core, bound on the
//! main thread before any executor starts (so a busy port fails the start
//! with a clear message, and `--listen …:0` gives every core the same
//! ephemeral port), and each core's accept loop.

use std::cell::{Cell, RefCell};
use std::net::TcpListener as StdListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Settings;
use crate::conn::budget::Budget;
use crate::conn::registry::Registry;
use crate::conn::ring::Ring;
use crate::http::response::Persist;
use crate::reject::Refusal;
use crate::shard::Shard;

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: i32 = 4096;

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
        // Accepted connections inherit it: no system call per connection.
        socket.set_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        let listener: StdListener = socket.into();
        // With port 0 the first bind picks the port; the rest share it.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Refused connections a core lingers on at once (answered, waiting for
/// the sender's close so the answer is not lost to a reset); past it they
/// are answered and closed at once.
const MAX_LINGERING: usize = 64;
/// How long a refused connection waits for its sender to close.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes of a refused sender's request read (and dropped) while lingering.
const LINGER_READ: usize = 64 << 10;
/// The pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// What both accept loops share: the core's share of `--max-connections`,
/// the refused connections lingering, the spare descriptor and the log of
/// failed accepts.
struct Gate {
    core: usize,
    limit: u64,
    shard: Rc<RefCell<Shard>>,
    lingering: Rc<Cell<usize>>,
    spare: Spare,
    failures: Failures,
}

impl Gate {
    fn new(core: usize, shard: Rc<RefCell<Shard>>, settings: &Settings) -> Self {
        Gate {
            core,
            limit: settings.max_connections_per_core() as u64,
            shard,
            lingering: Rc::new(Cell::new(0)),
            spare: Spare::open(),
            failures: Failures::default(),
        }
    }

    /// A connection was accepted: `true` if it may be served (it is then
    /// counted as open); `false` if the core is at its limit and the
    /// caller must refuse it.
    fn admit(&mut self) -> bool {
        self.failures.recovered(self.core);
        let mut shard = self.shard.borrow_mut();
        let c = &mut shard.metrics.counters;
        if c.connections_accepted - c.connections_closed >= self.limit {
            return false;
        }
        c.connections_accepted += 1;
        true
    }

    /// Answers 503 overloaded on `stream` and closes it.
    fn refuse(&self, stream: TcpStream) {
        refuse(stream, &self.shard, &self.lingering);
    }

    /// An accept failed (out of descriptors or memory): answers a waiting
    /// sender with the spare descriptor if that was the cause, logs, and
    /// backs off. The loop never exits on it.
    async fn failed(&mut self, e: std::io::Error, listener_fd: RawFd) {
        let answered = match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => self.spare.answer_one(listener_fd, &self.shard),
            _ => false,
        };
        self.failures.failed(self.core, &e, answered);
        glommio::timer::sleep(ACCEPT_BACKOFF).await;
    }
}

/// Accepts connections and starts a task for each, until cancelled. Past
/// the core's share of `--max-connections` a new connection is answered
/// 503 overloaded and closed; out of descriptors, the spare one is given
/// up to answer the oldest waiting sender the same way.
pub async fn accept_loop(
    core: usize,
    listener: TcpListener,
    listener_fd: RawFd,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: Arc<Settings>,
) {
    let mut gate = Gate::new(core, shard.clone(), &settings);
    loop {
        match listener.accept().await {
            Ok(stream) if !gate.admit() => gate.refuse(stream),
            Ok(stream) => {
                let conn = crate::conn::io::serve(
                    stream,
                    shard.clone(),
                    registry.clone(),
                    budget.clone(),
                    settings.clone(),
                );
                glommio::spawn_local(conn).detach();
            }
            Err(e) => gate.failed(e.into(), listener_fd).await,
        }
    }
}

/// The io_uring data path's accept loop: one multishot accept on `fd` (the
/// core's listener), the same limits as [`accept_loop`], until cancelled
/// (the listener is then closed).
pub async fn accept_loop_ring(
    core: usize,
    fd: RawFd,
    ring: Rc<Ring>,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: Arc<Settings>,
) {
    struct Unlisten(Rc<Ring>);
    impl Drop for Unlisten {
        fn drop(&mut self) {
            self.0.unlisten();
        }
    }
    ring.listen(fd);
    let _unlisten = Unlisten(ring.clone());
    let mut gate = Gate::new(core, shard.clone(), &settings);
    loop {
        match ring.accept().await {
            Ok(conn) if !gate.admit() => {
                // Refusals are rare: the poll path's stream lingers on it.
                // SAFETY: `conn` is a connection just accepted, owned here;
                // the stream reads it without blocking, as the poll path's.
                let stream = unsafe {
                    let flags = libc::fcntl(conn, libc::F_GETFL);
                    libc::fcntl(conn, libc::F_SETFL, flags | libc::O_NONBLOCK);
                    TcpStream::from_raw_fd(conn)
                };
                gate.refuse(stream);
            }
            Ok(conn) => {
                let conn = crate::conn::ring_io::serve(
                    conn,
                    ring.clone(),
                    shard.clone(),
                    registry.clone(),
                    budget.clone(),
                    settings.clone(),
                );
                glommio::spawn_local(conn).detach();
            }
            Err(errno) => {
                gate.failed(std::io::Error::from_raw_os_error(errno), fd)
                    .await
            }
        }
    }
}

/// The 503 overloaded answer, counted like any refusal.
fn overloaded(shard: &RefCell<Shard>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shard = shard.borrow_mut();
    shard.refuse(Refusal::Overloaded, Persist::Close, true, &mut out);
    shard.metrics.counters.connections_refused += 1;
    out
}

/// Answers a connection past the limit with 503 overloaded and closes it.
/// The answer fits an empty send buffer, so it is written at once. Closing
/// with the sender's request unread would reset the connection and could
/// destroy the answer before the sender reads it, so the write side is
/// shut and the request read and dropped until the sender closes (a few
/// connections at a time, for at most a second).
fn refuse(stream: TcpStream, shard: &Rc<RefCell<Shard>>, lingering: &Rc<Cell<usize>>) {
    let out = overloaded(shard);
    let fd = stream.as_raw_fd();
    send_now(fd, &out);
    if lingering.get() >= MAX_LINGERING {
        return;
    }
    lingering.set(lingering.get() + 1);
    let lingering = lingering.clone();
    glommio::spawn_local(async move {
        let mut stream = stream;
        // SAFETY: shutdown on the descriptor the stream owns, still open.
        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
        let _ = stream.set_read_timeout(Some(LINGER));
        let deadline = Instant::now() + LINGER;
        let mut buf = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_READ && Instant::now() < deadline {
            match futures_lite::AsyncReadExt::read(&mut stream, &mut buf).await {
                Ok(n) if n > 0 => read += n,
                _ => break,
            }
        }
        lingering.set(lingering.get() - 1);
    })
    .detach();
}

/// Writes `bytes` to a connected socket without waiting; what does not
/// fit is dropped.
fn send_now(fd: RawFd, bytes: &[u8]) {
    // SAFETY: send on an open socket from a valid buffer of its length.
    unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// A descriptor held in reserve: with none left, it is closed to accept
/// the oldest waiting connection, answer it 503 overloaded and close it,
/// so a sender is told rather than left waiting in the accept queue.
struct Spare(Option<OwnedFd>);

impl Spare {
    fn open() -> Self {
        Spare(std::fs::File::open("/dev/null").ok().map(OwnedFd::from))
    }

    /// `true` if a waiting sender was answered.
    fn answer_one(&mut self, listener_fd: RawFd, shard: &RefCell<Shard>) -> bool {
        if self.0.take().is_none() {
            *self = Spare::open();
            return false;
        }
        let mut poll = libc::pollfd {
            fd: listener_fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd, without waiting; accept4 on the
        // listener (readable, so it does not block) with no address asked.
        let fd = unsafe {
            if libc::poll(&mut poll, 1, 0) != 1 {
                -1
            } else {
                libc::accept4(
                    listener_fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            }
        };
        let answered = fd >= 0;
        if answered {
            // SAFETY: accept4 returned a new descriptor this function owns.
            let conn = unsafe { OwnedFd::from_raw_fd(fd) };
            send_now(conn.as_raw_fd(), &overloaded(shard));
            // SAFETY: shutdown on the open descriptor `conn` owns.
            unsafe { libc::shutdown(conn.as_raw_fd(), libc::SHUT_WR) };
        }
        *self = Spare::open();
        answered
    }
}

/// Failed accepts, logged at most once a second with their count.
#[derive(Default)]
struct Failures {
    /// Since the last line: failures, and senders answered with the spare
    /// descriptor.
    count: u64,
    answered: u64,
    last_line: Option<Instant>,
    last_error: Option<std::io::Error>,
}

impl Failures {
    fn failed(&mut self, core: usize, e: &std::io::Error, answered: bool) {
        self.count += 1;
        self.answered += u64::from(answered);
        self.last_error = Some(match e.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code),
            None => std::io::Error::from(e.kind()),
        });
        if self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.say(core);
        }
    }

    /// An accept worked: says how many failed since the last line, unless
    /// one was said within the second (the count then waits for the next).
    fn recovered(&mut self, core: usize) {
        if self.count > 0
            && self
                .last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.say(core);
        }
    }

    fn say(&mut self, core: usize) {
        let e = self.last_error.take();
        let e = e.as_ref().map_or(String::new(), ToString::to_string);
        tracing::warn!(
            "core {core}: accept failed {} time(s) ({e}); {} waiting sender(s) answered 503 overloaded; backing off",
            self.count,
            self.answered
        );
        self.count = 0;
        self.answered = 0;
        self.last_line = Some(Instant::now());
    }
}
