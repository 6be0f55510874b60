//! Starting the cores: one SO_REUSEPORT listener and one glommio executor
//! per core, the accept loop, and the backlog retry task.
//!
//! Listeners are bound on the main thread before any executor starts, so a
//! busy port fails the start with a clear message, and `--listen …:0` gives
//! every core the same ephemeral port.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Settings;
use crate::shard::Shard;

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds one SO_REUSEPORT listener per core on the same address.
pub fn bind(settings: &Settings) -> std::io::Result<Vec<StdListener>> {
    let mut addr = settings.listen;
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

/// A running server: its cores keep running until the process exits.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub handles: Vec<glommio::ExecutorJoinHandle<()>>,
}

/// Starts every core and returns once all of them accept connections.
pub fn start(settings: Settings) -> Result<Running, Box<dyn std::error::Error>> {
    let listeners = bind(&settings).map_err(|e| format!("--listen {}: {e}", settings.listen))?;
    let addr = listeners[0].local_addr()?;
    let settings = Arc::new(settings);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let mut handles = Vec::new();
    for (core, listener) in listeners.into_iter().enumerate() {
        let fd = listener.into_raw_fd();
        let settings = settings.clone();
        let ready = ready_tx.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(core % cpus))
            .name(&format!("hookwire-core-{core}"))
            // The server does no DMA file I/O: keep the io_uring buffer small.
            .io_memory(1 << 20)
            .spawn(move || async move {
                if let Err(e) = run_core(core, fd, settings, &ready).await {
                    let _ = ready.send(Err(format!("core {core}: {e}")));
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
    Ok(Running { addr, handles })
}

async fn run_core(
    core: usize,
    fd: RawFd,
    settings: Arc<Settings>,
    ready: &mpsc::Sender<Result<usize, String>>,
) -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: `fd` is a bound, listening socket whose ownership was given
    // up by `into_raw_fd` for this core alone.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let shard = Rc::new(RefCell::new(Shard::new(core, settings.clone())?));
    glommio::spawn_local(retry_backlog(shard.clone())).detach();
    let _ = ready.send(Ok(core));
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(crate::conn::serve(stream, shard.clone(), settings.clone()))
                    .detach();
            }
            Err(e) => {
                // Out of descriptors or memory: back off, never exit.
                eprintln!("core {core}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Moves backlogged events into ZeroMQ as soon as it takes them again.
async fn retry_backlog(shard: Rc<RefCell<Shard>>) {
    loop {
        let waiting = shard.borrow().fanout.waiting();
        let pause = if waiting > 0 { 1 } else { 20 };
        glommio::timer::sleep(Duration::from_millis(pause)).await;
        shard.borrow_mut().fanout.flush();
    }
}
