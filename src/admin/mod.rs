//! The private admin listener, on threads of its own off the cores: reads a
//! request, routes it to `/metrics`, `/stats`, `/health` or `/ready`, writes
//! the answer. Cores send snapshots on request, so the hot path never locks.

mod health;
mod prometheus;
mod stats;
mod summary;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::runtime::snapshot::{snapshots, Ask};

pub use summary::summary;

/// Connections the admin listener serves at once; more are answered 503.
const ADMIN_CONNECTIONS: usize = 16;

/// The time a client has to send its whole request, and to take the answer.
const TIMEOUT: Duration = Duration::from_secs(5);

const JSON: &str = "application/json";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// Binds the admin listener (so a bad address fails the start) and serves
/// it on its own threads: one per connection, so a scraper that hangs (or
/// any idle connection) does not hold up a health probe.
pub fn spawn(addr: SocketAddr, cores: Vec<mpsc::Sender<Ask>>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("hookwire-admin".into())
        .spawn(move || {
            for mut stream in listener.incoming().flatten() {
                if open.fetch_add(1, Ordering::Relaxed) >= ADMIN_CONNECTIONS {
                    open.fetch_sub(1, Ordering::Relaxed);
                    let message = format!("the admin listener serves {ADMIN_CONNECTIONS} connections at once; close idle ones and retry");
                    let _ = respond(&mut stream, &Answer::error(503, "busy", Some(&message)));
                    continue;
                }
                let (cores, done) = (cores.clone(), open.clone());
                let spawned = std::thread::Builder::new()
                    .name("hookwire-admin-conn".into())
                    .spawn(move || {
                        let _ = serve(stream, &cores);
                        done.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    open.fetch_sub(1, Ordering::Relaxed);
                }
            }
        })?;
    Ok(local)
}

/// Serves one connection: one request, its answer, then the close.
fn serve(mut stream: TcpStream, cores: &[mpsc::Sender<Ask>]) -> std::io::Result<()> {
    stream.set_write_timeout(Some(TIMEOUT))?;
    let (path, head_only) = match read_request(&mut stream)? {
        Incoming::Get { path, head_only } => (path, head_only),
        Incoming::OtherMethod => {
            return respond(&mut stream, &Answer::error(405, "method_not_allowed", None))
        }
        Incoming::Malformed => {
            return respond(&mut stream, &Answer::error(400, "malformed_request", None))
        }
        Incoming::Nothing => return Ok(()),
    };
    let answer = answer(&path, cores);
    if head_only {
        // The GET's status and headers, without its body.
        return respond_head(&mut stream, &answer);
    }
    respond(&mut stream, &answer)
}

/// What a connection sent.
enum Incoming {
    /// A GET, or a HEAD (`head_only`), of `path` without its query.
    Get { path: String, head_only: bool },
    /// Another method: answered 405.
    OtherMethod,
    /// Not an HTTP request, or a head over 8 KiB: answered 400.
    Malformed,
    /// Closed, or out of time, before a whole head: not answered.
    Nothing,
}

/// Reads one request head. It must arrive within [`TIMEOUT`] in all (not
/// per read: a client that drips a byte at a time does not hold a thread
/// longer).
fn read_request(stream: &mut TcpStream) -> std::io::Result<Incoming> {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Incoming::Nothing);
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(Incoming::Nothing);
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let path = req.path.unwrap_or("/");
                let path = path.split('?').next().unwrap_or(path).to_owned();
                return Ok(match req.method.unwrap_or("") {
                    "GET" => Incoming::Get {
                        path,
                        head_only: false,
                    },
                    "HEAD" => Incoming::Get {
                        path,
                        head_only: true,
                    },
                    _ => Incoming::OtherMethod,
                });
            }
            Ok(httparse::Status::Partial) if len < buf.len() => {}
            _ => return Ok(Incoming::Malformed),
        }
    }
}

/// A response: status, content type and body.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
}

/// An error's JSON body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

impl Answer {
    fn json(status: u16, value: &impl Serialize) -> Self {
        Self {
            status,
            content_type: JSON,
            // Only string and integer keys: serialising cannot fail.
            body: serde_json::to_string(value).expect("admin JSON serialises"),
        }
    }

    fn error(status: u16, error: &str, message: Option<&str>) -> Self {
        Self::json(status, &ErrorBody { error, message })
    }
}

/// The answer to a GET of `path`; the endpoints that report on the cores
/// ask each of them for a snapshot first.
fn answer(path: &str, cores: &[mpsc::Sender<Ask>]) -> Answer {
    match path {
        "/health" => Answer::json(200, &health::HEALTHY),
        "/metrics" => Answer {
            status: 200,
            content_type: PROMETHEUS_TEXT,
            body: prometheus::prometheus(&snapshots(cores)),
        },
        "/stats" => Answer::json(200, &stats::stats(&snapshots(cores))),
        "/ready" => {
            let readiness = health::readiness(&snapshots(cores));
            Answer::json(if readiness.ready { 200 } else { 503 }, &readiness)
        }
        _ => Answer::error(
            404,
            "not_found",
            Some("admin paths: /metrics, /stats, /health, /ready"),
        ),
    }
}

fn respond(stream: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    respond_head(stream, answer)?;
    stream.write_all(answer.body.as_bytes())
}

/// Writes a response's status line and headers (all of a HEAD's answer).
fn respond_head(stream: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    stream.write_all(head.as_bytes())
}
