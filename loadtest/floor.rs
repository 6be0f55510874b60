//! The floor: hookwire's accept/read/write loop with nothing else — no
//! HTTP parsing, no decoding, no envelope, no ZeroMQ. What this design
//! costs on this machine before hookwire does any work of its own.
//!
//! Like hookwire: one glommio executor per core, pinned, each with its own
//! SO_REUSEPORT listener, TCP_NODELAY, and hookwire's data path: with
//! `--io uring` (the default) hookwire's ring (`hookwire::conn::ring`:
//! multishot accept, multishot receive into the core's provided-buffer
//! ring, the bytes looked at in place, one send per receive queued and
//! submitted with the loop's next turn); with `--io poll` glommio's
//! `TcpStream`, one read into the connection's buffer, one write per read. It counts the `\r\n\r\n` that end request heads in
//! what it read (also across reads) and writes that many fixed 200s, the
//! size of hookwire's answer to a GET postback — so it handles keep-alive
//! and pipelining like hookwire, but only for requests without a body.
//!
//! `cargo run --release --example floor -- --listen 127.0.0.1:8081 [--cores N] [--io uring|poll]`
//!
//! Prints `ready` on stderr once every core listens; stops on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use std::os::fd::{IntoRawFd, RawFd};
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use hookwire::conn::ring::{Ring, Rx};

/// hookwire's default `--idle-timeout`.
const IDLE: Duration = Duration::from_secs(60);

/// hookwire's answer to the Affise GET sample, the same size byte for byte.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 12:00:00 GMT\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: application/json\r\nContent-Length: 61\r\n\r\n{\"key\":\"in.gen.affise.conversion\",\"id\":\"7532420803820785665\"}";

fn main() {
    let mut listen: Option<SocketAddr> = None;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cores = cpus;
    let mut uring = true;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => listen = Some(value.parse().expect("--listen IP:PORT")),
            "--cores" => cores = value.parse().expect("--cores N"),
            "--io" => uring = value == "uring",
            _ => panic!("unknown option {flag}; use --listen IP:PORT [--cores N]"),
        }
    }
    let addr = listen.expect("--listen IP:PORT (a fixed port: every core binds it)");
    assert!(addr.port() != 0, "--listen needs a fixed port");

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).expect("signal handler");
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for core in 0..cores {
        let ready = ready_tx.clone();
        let stop = stop.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(core % cpus))
            .name(&format!("floor-core-{core}"))
            .io_memory(1 << 20)
            .spawn(move || async move {
                let accept = if uring {
                    let listener = bind(addr);
                    let ring = Ring::start().expect("the io_uring buffer ring");
                    ring.listen(listener.into_raw_fd());
                    let _ = ready.send(());
                    glommio::spawn_local(async move {
                        loop {
                            if let Ok(fd) = ring.accept().await {
                                glommio::spawn_local(serve_ring(ring.clone(), fd)).detach();
                            }
                        }
                    })
                } else {
                    let listener = TcpListener::bind(addr).expect("bind");
                    let _ = ready.send(());
                    glommio::spawn_local(async move {
                        loop {
                            if let Ok(stream) = listener.accept().await {
                                glommio::spawn_local(serve(stream)).detach();
                            }
                        }
                    })
                };
                while !stop.load(Ordering::Relaxed) {
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
                accept.cancel().await;
            })
            .expect("executor");
        handles.push(handle);
    }
    for _ in 0..cores {
        ready_rx.recv().expect("a core failed to start");
    }
    let io = if uring { "uring" } else { "poll" };
    eprintln!("listen http://{addr} cores={cores} io={io}");
    eprintln!("ready");
    for h in handles {
        let _ = h.join();
    }
}

/// A SO_REUSEPORT listener with TCP_NODELAY (inherited by its connections).
fn bind(addr: SocketAddr) -> std::net::TcpListener {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket.set_nodelay(true).expect("TCP_NODELAY");
    socket.bind(&addr.into()).expect("bind");
    socket.listen(4096).expect("listen");
    socket.into()
}

/// One connection on the ring: the bytes of each receive are looked at in
/// the ring's buffer, which goes back at once.
async fn serve_ring(ring: Rc<Ring>, fd: RawFd) {
    let key = ring.open(fd);
    let mut out = Vec::new();
    let mut tail = [0u8; 3];
    loop {
        // SAFETY: no own buffer is given, so none is read into.
        let (heads, close) = match unsafe { ring.recv(key, false, std::ptr::null_mut(), 0) }.await {
            Rx::Buf { bid, len } => {
                // SAFETY: the receive's buffer, recycled right after.
                let data = unsafe { ring.buffer(bid, len) };
                let found = (count_heads(&mut tail, data), asks_close(data));
                ring.recycle(bid);
                found
            }
            Rx::Dry => {
                // The ring ran dry: wait for it to refill (rare here).
                glommio::timer::sleep(Duration::from_millis(1)).await;
                continue;
            }
            Rx::Own(_) | Rx::End(_) => break,
        };
        if heads == 0 {
            continue;
        }
        if !ring.sent(key).await {
            break;
        }
        out.clear();
        for _ in 0..heads {
            out.extend_from_slice(RESPONSE);
        }
        ring.send(key, &mut out);
        if close {
            break;
        }
    }
    ring.sent(key).await;
    ring.close(key);
}

async fn serve(stream: TcpStream) {
    // As hookwire: TCP_NODELAY and a write timeout. hookwire ends idle reads
    // with one sweep per core every few hundred milliseconds, not a timer
    // per read, so the floor sets no read timeout (the sweep's cost per
    // request is nil).
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(IDLE));
    let mut stream = stream;
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(4096);
    let mut tail = [0u8; 3];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let heads = count_heads(&mut tail, &buf[..n]);
        if heads == 0 {
            continue;
        }
        out.clear();
        for _ in 0..heads {
            out.extend_from_slice(RESPONSE);
        }
        if stream.write_all(&out).await.is_err() || asks_close(&buf[..n]) {
            return;
        }
    }
}

/// Whether a request in `data` asks to close the connection after its
/// answer (as wrk's `Connection: close` does), so a connection per request
/// costs the floor what it costs a server.
fn asks_close(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"\r\nConnection: close\r\n").is_some()
}

/// Counts `\r\n\r\n` in `data`, `tail` holding the last three bytes before it.
fn count_heads(tail: &mut [u8; 3], data: &[u8]) -> usize {
    let before = |p: usize, k: usize| {
        if p >= k {
            data[p - k]
        } else {
            tail[3 - (k - p)]
        }
    };
    let mut n = 0;
    for p in memchr::memchr_iter(b'\n', data) {
        if before(p, 1) == b'\r' && before(p, 2) == b'\n' && before(p, 3) == b'\r' {
            n += 1;
        }
    }
    if data.len() >= 3 {
        tail.copy_from_slice(&data[data.len() - 3..]);
    } else {
        let keep = 3 - data.len();
        tail.copy_within(3 - keep.., 0);
        tail[keep..].copy_from_slice(data);
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn response_length_matches() {
        let r = super::RESPONSE;
        let split = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(std::str::from_utf8(&r[..split])
            .unwrap()
            .contains(&format!("Content-Length: {}\r\n", r.len() - split)));
    }

    #[test]
    fn counts_across_reads() {
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let stream: Vec<u8> = req.repeat(5);
        for step in 1..stream.len() {
            let mut tail = [0; 3];
            let n: usize = stream
                .chunks(step)
                .map(|c| super::count_heads(&mut tail, c))
                .sum();
            assert_eq!(n, 5, "chunks of {step}");
        }
    }
}
