//! Running the server: one glommio executor per core, each with its own
//! listener, connections, spool tasks and control loop, and the graceful
//! drain that ends them.

pub mod acks;
mod core;
mod drain;
mod listener;
pub mod snapshot;
mod spooling;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Io, Settings};
use crate::conn::ring::Ring;
use crate::spool::SpoolUsage;
use snapshot::{Ask, CoreSnapshot};

/// A running server.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// `--listen-plain`'s address, once bound.
    pub plain: Option<SocketAddr>,
    /// One per core; each returns the core's final snapshot after a drain.
    pub handles: Vec<glommio::ExecutorJoinHandle<CoreSnapshot>>,
    /// Senders of each core's control channel.
    pub cores: Vec<mpsc::Sender<Ask>>,
    /// Set to start the graceful drain on every core.
    pub drain: Arc<AtomicBool>,
}

/// Starts every core and returns once all of them accept connections.
pub fn start(settings: Arc<Settings>) -> Result<Running, Box<dyn std::error::Error>> {
    let listeners = listener::bind(settings.listen, &settings)
        .map_err(|e| format!("--listen {}: {e}", settings.listen))?;
    let addr = listeners[0].local_addr()?;
    let mut plain_listeners = match settings.listen_plain {
        Some(plain) => {
            listener::bind(plain, &settings).map_err(|e| format!("--listen-plain {plain}: {e}"))?
        }
        None => Vec::new(),
    };
    let plain = match plain_listeners.first() {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let drain = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let usage = SpoolUsage::new(settings.cores);
    let (ack_senders, mut ack_receivers): (Vec<_>, Vec<_>) = (0..settings.cores)
        .map(|_| mpsc::sync_channel(acks::CHANNEL))
        .unzip();
    // Held by every core until it ends: the ack listener stops with the
    // last of them.
    let alive = Arc::new(());
    acks::start(&settings, ack_senders, Arc::downgrade(&alive))?;
    let mut handles = Vec::new();
    let mut cores = Vec::new();
    for (core, listener) in listeners.into_iter().enumerate() {
        let acks = ack_receivers.remove(0);
        let fd = listener.into_raw_fd();
        let plain_fd =
            (!plain_listeners.is_empty()).then(|| plain_listeners.remove(0).into_raw_fd());
        let settings = settings.clone();
        let ready = ready_tx.clone();
        let drain = drain.clone();
        let usage = usage.clone();
        let (ask_tx, ask_rx) = mpsc::channel();
        cores.push(ask_tx);
        let alive = alive.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(core % cpus))
            .name(&format!("hookwire-core-{core}"))
            // DMA buffers for the spool's writes and reads.
            .io_memory(4 << 20)
            .spawn(move || async move {
                crate::allocs::count_as_core(core);
                let _alive = alive;
                let inbox = core::Inbox { asks: ask_rx, acks };
                let fds = Fds {
                    listen: fd,
                    plain: plain_fd,
                };
                match run_core(core, fds, settings, &ready, inbox, drain, usage).await {
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
    drop(alive);
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
        plain,
        handles,
        cores,
        drain,
    })
}

/// A core's listeners: `--listen`'s, and `--listen-plain`'s if given.
struct Fds {
    listen: RawFd,
    plain: Option<RawFd>,
}

/// Runs core `id` on its executor: serves its listeners' connections until
/// `drain` is set, then drains; returns the core's last snapshot.
async fn run_core(
    id: usize,
    fds: Fds,
    settings: Arc<Settings>,
    ready: &mpsc::Sender<Result<usize, String>>,
    inbox: core::Inbox,
    drain: Arc<AtomicBool>,
    usage: Arc<SpoolUsage>,
) -> Result<CoreSnapshot, Box<dyn std::error::Error>> {
    let core = core::Core::start(id, settings, inbox, usage).await?;
    let ring = match core.settings.io {
        Io::Uring => match Ring::start() {
            Ok(ring) => Some(ring),
            Err(e) => {
                tracing::warn!("core {id}: no io_uring buffer ring ({e}): --io poll");
                None
            }
        },
        Io::Poll => None,
    };
    // HTTPS is served on the poll path's stream (rustls reads and writes
    // through it); plain HTTP on the core's data path.
    let tls = core.settings.tls.clone();
    let (plain_fd, tls_fd) = match tls {
        Some(_) => (fds.plain, Some(fds.listen)),
        None => (Some(fds.listen), None),
    };
    let plain = plain_fd.map(|fd| accept_plain(&core, id, fd, ring));
    let secure = tls_fd.map(|fd| accept_poll(&core, id, fd, tls));
    // One task for both, so the drain's cancel ends both.
    let accept = glommio::spawn_local(async move {
        let plain = async {
            if let Some(a) = plain {
                a.await;
            }
        };
        let secure = async {
            if let Some(a) = secure {
                a.await;
            }
        };
        futures_lite::future::zip(plain, secure).await;
    });
    let _ = ready.send(Ok(id));
    core.serve(&drain).await;
    Ok(core.drain(accept).await)
}

/// The plain-HTTP accept loop on `fd`: on the core's io_uring data path
/// where it has one, else on the poll path.
fn accept_plain(
    core: &core::Core,
    id: usize,
    fd: RawFd,
    ring: Option<std::rc::Rc<Ring>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    match ring {
        Some(ring) => Box::pin(listener::accept_loop_ring(
            id,
            fd,
            ring,
            core.shard.clone(),
            core.registry.clone(),
            core.budget.clone(),
            core.settings.clone(),
        )),
        None => Box::pin(accept_poll(core, id, fd, None)),
    }
}

/// The poll path's accept loop on `fd`, HTTPS with `tls`.
fn accept_poll(
    core: &core::Core,
    id: usize,
    fd: RawFd,
    tls: Option<Arc<crate::tls::Tls>>,
) -> impl std::future::Future<Output = ()> {
    // SAFETY: `fd` is a bound, listening socket whose ownership was given
    // up by `into_raw_fd` for this core alone.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener::accept_loop(
        id,
        listener,
        fd,
        tls,
        core.shard.clone(),
        core.registry.clone(),
        core.budget.clone(),
        core.settings.clone(),
    )
}
