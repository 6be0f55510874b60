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

use crate::runtime::snapshot::{snapshots, Ask};

pub use summary::summary;

/// Connections the admin listener serves at once; more are answered 503.
const ADMIN_CONNECTIONS: usize = 16;

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
                    let body = format!(
                        r#"{{"error":"busy","message":"the admin listener serves {ADMIN_CONNECTIONS} connections at once; close idle ones and retry"}}"#
                    );
                    let _ = respond(&mut stream, 503, "application/json", &body);
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

fn serve(mut stream: TcpStream, cores: &[mpsc::Sender<Ask>]) -> std::io::Result<()> {
    // A request must arrive within 5 s in all (not per read: a client
    // that drips a byte at a time does not hold a thread longer), and
    // the answer must be taken within 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    let path = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let path = req.path.unwrap_or("/");
                break (
                    req.method.unwrap_or(""),
                    path.split('?').next().unwrap_or(path).to_owned(),
                );
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                return respond(
                    &mut stream,
                    400,
                    "application/json",
                    r#"{"error":"malformed_request"}"#,
                )
            }
        }
    };
    let (method, path) = (path.0, path.1.as_str());
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            405,
            "application/json",
            r#"{"error":"method_not_allowed"}"#,
        );
    }
    let (status, content_type, body) = match path {
        "/health" => (200, "application/json", r#"{"status":"ok"}"#.to_owned()),
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            prometheus::prometheus(&snapshots(cores)),
        ),
        "/stats" => (200, "application/json", stats::stats(&snapshots(cores))),
        "/ready" => {
            let (ready, body) = health::readiness(&snapshots(cores));
            (if ready { 200 } else { 503 }, "application/json", body)
        }
        _ => (
            404,
            "application/json",
            r#"{"error":"not_found","message":"admin paths: /metrics, /stats, /health, /ready"}"#
                .to_owned(),
        ),
    };
    if method == "HEAD" {
        // The GET's status and headers, without its body.
        return respond_head(&mut stream, status, content_type, body.len());
    }
    respond(&mut stream, status, content_type, &body)
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    respond_head(stream, status, content_type, body.len())?;
    stream.write_all(body.as_bytes())
}

/// Writes a response's status line and headers (all of a HEAD's answer).
fn respond_head(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    length: usize,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes())
}
