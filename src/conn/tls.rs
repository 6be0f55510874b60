//! An HTTPS connection: plain HTTP is answered 400 `https_required`; the
//! rustls handshake must finish within `--request-timeout`; then the keys
//! go to the kernel (kernel TLS) and the connection is served as a plain
//! one, or, where the kernel lacks TLS, through rustls in user space.
//! Either way [`super::io`]'s loop serves its requests.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::server::TlsStream;
use futures_rustls::TlsAcceptor;
use glommio::net::TcpStream;

use super::budget::Budget;
use super::io::{serve_stream, Peer};
use super::registry::Registry;
use crate::config::Settings;
use crate::http::response::Persist;
use crate::reject::Refusal;
use crate::shard::Shard;
use crate::tls::{ktls, Failure, Tls};

/// The first byte of a TLS record carrying a handshake message.
const HANDSHAKE: u8 = 0x16;
/// How long a plain-HTTP sender's close is waited for after its 400.
const LINGER: Duration = Duration::from_secs(1);

/// Serves one accepted connection on the HTTPS listener until it closes.
pub async fn serve(
    stream: TcpStream,
    tls: Arc<Tls>,
    shard: Rc<RefCell<Shard>>,
    registry: Rc<Registry>,
    budget: Rc<Budget>,
    settings: Arc<Settings>,
) {
    let fd = stream.as_raw_fd();
    let Some(addr) = super::io::accepted(&stream, &shard, &settings) else {
        return;
    };
    let deadline = Instant::now() + settings.request_timeout;
    let stream = match handshake(stream, &tls, deadline, &shard).await {
        Ok(stream) => stream,
        Err(failure) => {
            let mut shard = shard.borrow_mut();
            let counters = &mut shard.metrics.counters;
            counters.tls.failures[failure.index()] += 1;
            counters.connections_closed += 1;
            return;
        }
    };
    let (_, session) = stream.get_ref();
    let cert = tls.client_cert(session.peer_certificates());
    shard.borrow_mut().metrics.counters.tls.handshakes += 1;
    let peer = Peer {
        fd,
        ip: addr.ip(),
        cert,
    };
    match to_kernel(stream).await {
        Path::Kernel(plain) => {
            shard.borrow_mut().metrics.counters.tls.ktls += 1;
            serve_stream(plain, peer, shard, registry, budget, settings).await;
        }
        Path::User(stream) => {
            shard.borrow_mut().metrics.counters.tls.user_space += 1;
            serve_stream(*stream, peer, shard, registry, budget, settings).await;
        }
        Path::Lost => {
            let mut shard = shard.borrow_mut();
            let counters = &mut shard.metrics.counters;
            counters.tls.failures[Failure::Other.index()] += 1;
            counters.connections_closed += 1;
        }
    }
}

/// Where a connection's records are encrypted after its handshake.
enum Path {
    /// By the kernel: served as a plain connection.
    Kernel(TcpStream),
    /// By rustls in user space.
    User(Box<TlsStream<TcpStream>>),
    /// The kernel took the keys' first half and refused the second: the
    /// session is spent and the connection closes.
    Lost,
}

/// Waits for the first byte, answers plain HTTP, then runs the handshake,
/// all by `deadline`.
async fn handshake(
    stream: TcpStream,
    tls: &Tls,
    deadline: Instant,
    shard: &RefCell<Shard>,
) -> Result<TlsStream<TcpStream>, Failure> {
    let mut first = [0u8; 1];
    match super::before(deadline, stream.peek(&mut first)).await {
        None => return Err(Failure::Timeout),
        Some(Ok(1)) => {}
        Some(_) => return Err(Failure::Closed),
    }
    if first[0] != HANDSHAKE && first[0].is_ascii_alphabetic() {
        https_required(stream, shard).await;
        return Err(Failure::PlainHttp);
    }
    let accept = TlsAcceptor::from(tls.config.clone()).accept(stream);
    match super::before(deadline, accept).await {
        None => Err(Failure::Timeout),
        Some(Ok(stream)) => Ok(stream),
        Some(Err(e)) => Err(Failure::of(&e)),
    }
}

/// Answers plain HTTP on the HTTPS port with 400 `https_required`, in
/// plain text, and closes once the sender has (or after [`LINGER`]), so the
/// answer is not lost to a reset over its unread request.
async fn https_required(mut stream: TcpStream, shard: &RefCell<Shard>) {
    let mut out = Vec::new();
    shard
        .borrow_mut()
        .refuse(Refusal::HttpsRequired, Persist::Close, true, &mut out);
    if stream.write_all(&out).await.is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    while let Some(Ok(n)) = super::before(deadline, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// Set when `TCP_ULP` said ENOENT: the kernel has no `tls` module, so no
/// connection can get kernel TLS (and each try, as root, would have the
/// kernel run modprobe): said once in the log, then not tried again.
static NO_KTLS: AtomicBool = AtomicBool::new(false);

/// Hands the connection's keys to the kernel where it can take them; else
/// the connection stays with rustls in user space.
async fn to_kernel(mut stream: TlsStream<TcpStream>) -> Path {
    let user = |stream| Path::User(Box::new(stream));
    if NO_KTLS.load(Ordering::Relaxed) {
        return user(stream);
    }
    // The session tickets rustls queued go out first: the kernel starts
    // its records after them.
    if stream.flush().await.is_err() {
        return user(stream);
    }
    let (tcp, session) = stream.get_mut();
    let suite = session.negotiated_cipher_suite().map(|s| s.suite());
    let version = session.protocol_version();
    // Bytes rustls has read but not handed out cannot move to the kernel.
    let buffered = session
        .process_new_packets()
        .map_or(true, |io| io.plaintext_bytes_to_read() > 0);
    let (Some(suite), Some(version)) = (suite, version) else {
        return user(stream);
    };
    if buffered || session.wants_write() || !ktls::supported(suite) {
        return user(stream);
    }
    if let Err(e) = ktls::attach(tcp.as_raw_fd()) {
        if e.raw_os_error() == Some(libc::ENOENT) && !NO_KTLS.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "kernel TLS unavailable (setsockopt TCP_ULP \"tls\": {e}: the kernel has no tls module); HTTPS records are encrypted in user space by rustls"
            );
        }
        return user(stream);
    }
    let (tcp, session) = stream.into_inner();
    let fd = tcp.as_raw_fd();
    match session
        .dangerous_extract_secrets()
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|secrets| ktls::install(fd, version, secrets))
    {
        Ok(()) => Path::Kernel(tcp),
        Err(e) => {
            tracing::debug!("kernel TLS install failed: {e}; closing the connection");
            Path::Lost
        }
    }
}
