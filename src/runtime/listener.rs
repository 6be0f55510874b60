//! The public listeners: one SO_REUSEPORT socket per core, bound on the
//! main thread before any executor starts (so a busy port fails the start
//! with a clear message, and `--listen …:0` gives every core the same
//! ephemeral port), and each core's accept loop.

use std::cell::RefCell;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::RawFd;

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Settings;
use crate::conn::budget::Budget;
use crate::conn::registry::Registry;
use crate::conn::ring::Ring;
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

/// Accepts connections and starts a task for each, until cancelled.
pub async fn accept_loop(
    core: usize,
    listener: TcpListener,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: Arc<Settings>,
) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                shard.borrow_mut().metrics.counters.connections_accepted += 1;
                let conn = crate::conn::io::serve(
                    stream,
                    shard.clone(),
                    registry.clone(),
                    budget.clone(),
                    settings.clone(),
                );
                glommio::spawn_local(conn).detach();
            }
            Err(e) => {
                // Out of descriptors or memory: back off, never exit.
                tracing::warn!("core {core}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The ring path's accept loop: one multishot accept on `fd` (the core's
/// listener), a task per connection, until cancelled (the listener is then
/// closed).
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
    loop {
        match ring.accept().await {
            Ok(conn) => {
                shard.borrow_mut().metrics.counters.connections_accepted += 1;
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
                // Out of descriptors or memory: back off, never exit.
                let e = std::io::Error::from_raw_os_error(errno);
                tracing::warn!("core {core}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
