//! The private admin listener: `/metrics` (Prometheus text), `/stats`
//! (JSON percentiles), `/health`, `/ready`.
//!
//! It runs on its own thread, off the cores. To answer, it asks every core
//! over that core's control channel for a snapshot of its metrics (the core
//! copies them between requests, on its next control tick) and merges the
//! copies here: the hot path never takes a lock or shares a cache line.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::fanout::RouteStatus;
use crate::metrics::{Counters, Hist, Metrics, BUCKETS, STATUSES};
use crate::runtime::snapshot::{snapshots, Ask, CoreSnapshot};

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
            prometheus(&snapshots(cores)),
        ),
        "/stats" => (200, "application/json", stats(&snapshots(cores))),
        "/ready" => {
            let (ready, body) = readiness(&snapshots(cores));
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

/// Every core's metrics merged.
pub fn merged(snaps: &[CoreSnapshot]) -> Metrics {
    let mut all = Metrics::default();
    for s in snaps {
        all.merge(&s.metrics);
    }
    all
}

/// `/ready`: every core answers and accepts, every route has a consumer
/// connected on every core, and every core's spool can take events (not
/// full, its last write did not fail).
pub fn readiness(snaps: &[Option<CoreSnapshot>]) -> (bool, String) {
    let mut problems = Vec::new();
    for (core, s) in snaps.iter().enumerate() {
        match s {
            None => problems.push(format!(
                r#"{{"core":{core},"reason":"the core did not answer within 1 s"}}"#
            )),
            Some(s) if !s.accepting => problems.push(format!(
                r#"{{"core":{core},"reason":"the core is not accepting connections (draining)"}}"#
            )),
            _ => {}
        }
        let Some(s) = s else { continue };
        let mut spool_problem = |reason: String| {
            problems.push(format!(
                r#"{{"core":{core},"reason":{}}}"#,
                json_str(&reason)
            ))
        };
        if s.spool_full {
            let held: u64 = snaps.iter().flatten().map(|s| s.spool_stored).sum();
            spool_problem(format!(
                "the spool is full ({} of --spool-max-bytes {}): events that need it get 503 spool_full; start consumers or raise --spool-max-bytes",
                bytesize::ByteSize(held).to_string_as(true),
                bytesize::ByteSize(s.spool_max).to_string_as(true)
            ));
        }
        if let Some(e) = &s.spool_error {
            spool_problem(format!(
                "the spool's last write failed ({e}): events ZeroMQ cannot take now get 503 spool_error until a write succeeds"
            ));
        }
    }
    let answered: Vec<&CoreSnapshot> = snaps.iter().flatten().collect();
    let routes = answered.first().map_or(0, |s| s.routes.len());
    let mut route_states = Vec::new();
    for r in 0..routes {
        let spec = &answered[0].routes[r];
        let missing: Vec<usize> = answered
            .iter()
            .filter(|s| s.routes[r].connected == 0)
            .map(|s| s.core)
            .collect();
        let waiting: u64 = answered.iter().map(|s| s.routes[r].waiting).sum();
        let ready = missing.is_empty();
        let mut state = format!(
            r#"{{"route":{},"endpoints":{},"ready":{ready},"waiting":{waiting}"#,
            json_str(&spec.pattern),
            json_str(&spec.endpoints.join(","))
        );
        if !ready {
            let _ = write!(
                state,
                r#","reason":{}"#,
                json_str(&format!(
                    "no consumer is connected to {} (from core(s) {:?}); start a consumer that binds PULL there",
                    spec.endpoints.join(" or "),
                    missing
                ))
            );
            problems.push(state.clone() + "}");
        }
        state.push('}');
        route_states.push(state);
    }
    let ready = problems.is_empty();
    let body = format!(
        r#"{{"ready":{ready},"routes":[{}],"problems":[{}]}}"#,
        route_states.join(","),
        problems.join(",")
    );
    (ready, body)
}

fn json_str(s: &str) -> String {
    let mut out = Vec::new();
    crate::jsonw::write_str(&mut out, s);
    String::from_utf8(out).expect("JSON of a str is UTF-8")
}

const HISTOGRAM_HELP: [(&str, &str); 3] = [
    (
        "request",
        "first byte of a request read to last byte of its response written",
    ),
    ("decode", "decoding a request's query and body"),
    (
        "handoff",
        "handing one event to ZeroMQ or the spool (accepted mode: its share of the batch)",
    ),
];

/// Prometheus text exposition: per core (`core="N"`) and merged (`core="all"`).
pub fn prometheus(snaps: &[Option<CoreSnapshot>]) -> String {
    let answered: Vec<CoreSnapshot> = snaps.iter().flatten().cloned().collect();
    let all = merged(&answered);
    let mut sets: Vec<(String, &Metrics)> = answered
        .iter()
        .map(|s| (s.core.to_string(), &s.metrics))
        .collect();
    sets.push(("all".into(), &all));
    let mut out = String::new();

    for (i, (name, help)) in HISTOGRAM_HELP.iter().enumerate() {
        let metric = format!("hookwire_{name}_duration_seconds");
        let _ = writeln!(
            out,
            "# HELP {metric} Time spent {help}.\n# TYPE {metric} histogram"
        );
        for (core, m) in &sets {
            let h = m.histograms()[i].1;
            for le in BUCKETS {
                let _ = writeln!(
                    out,
                    r#"{metric}_bucket{{core="{core}",le="{}"}} {}"#,
                    le.as_secs_f64(),
                    h.count_le(le)
                );
            }
            let _ = writeln!(
                out,
                r#"{metric}_bucket{{core="{core}",le="+Inf"}} {}"#,
                h.h.len()
            );
            let _ = writeln!(
                out,
                r#"{metric}_sum{{core="{core}"}} {}"#,
                h.sum_ns as f64 / 1e9
            );
            let _ = writeln!(out, r#"{metric}_count{{core="{core}"}} {}"#, h.h.len());
        }
    }

    let counter = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&Counters) -> u64| {
        let _ = writeln!(
            out,
            "# HELP hookwire_{name} {help}\n# TYPE hookwire_{name} counter"
        );
        for (core, m) in &sets {
            let _ = writeln!(
                out,
                r#"hookwire_{name}{{core="{core}"}} {}"#,
                f(&m.counters)
            );
        }
    };
    let _ = writeln!(out, "# HELP hookwire_requests_total Responses sent, by status.\n# TYPE hookwire_requests_total counter");
    for (core, m) in &sets {
        for (status, n) in STATUSES.iter().zip(m.counters.requests) {
            let _ = writeln!(
                out,
                r#"hookwire_requests_total{{core="{core}",status="{}"}} {n}"#,
                status.code()
            );
        }
    }
    let _ = writeln!(out, "# HELP hookwire_refusals_total Requests refused, by error code.\n# TYPE hookwire_refusals_total counter");
    for (core, m) in &sets {
        for (code, n) in Counters::refusal_codes().zip(m.counters.refusals) {
            let _ = writeln!(
                out,
                r#"hookwire_refusals_total{{core="{core}",code="{code}"}} {n}"#
            );
        }
    }
    counter(
        &mut out,
        "events_accepted_total",
        "Events answered with 200.",
        &|c| c.events_accepted,
    );
    counter(
        &mut out,
        "events_refused_total",
        "Events refused with 503 (not stored).",
        &|c| c.events_refused,
    );
    counter(
        &mut out,
        "handoffs_total",
        "Accepted mode: hand-offs of a core's batch of events to ZeroMQ (or the spool).",
        &|c| c.handoffs,
    );
    counter(
        &mut out,
        "bytes_in_total",
        "Bytes read from senders.",
        &|c| c.bytes_in,
    );
    counter(
        &mut out,
        "bytes_out_total",
        "Bytes written to senders.",
        &|c| c.bytes_out,
    );
    counter(
        &mut out,
        "connections_accepted_total",
        "Connections accepted.",
        &|c| c.connections_accepted,
    );
    counter(
        &mut out,
        "connections_closed_total",
        "Connections closed.",
        &|c| c.connections_closed,
    );

    let _ = writeln!(out, "# HELP hookwire_connections_open Connections open now.\n# TYPE hookwire_connections_open gauge");
    let open: usize = answered.iter().map(|s| s.open_connections).sum();
    for s in &answered {
        let _ = writeln!(
            out,
            r#"hookwire_connections_open{{core="{}"}} {}"#,
            s.core, s.open_connections
        );
    }
    let _ = writeln!(out, r#"hookwire_connections_open{{core="all"}} {open}"#);

    // `merge`: how a route's per-core values make `core="all"` (summed,
    // or as `/stats` merges consumers and the largest depth).
    let route_metric = |out: &mut String,
                        name: &str,
                        kind: &str,
                        help: &str,
                        f: &dyn Fn(&RouteStatus) -> u64,
                        merge: fn(u64, u64) -> u64| {
        let _ = writeln!(
            out,
            "# HELP hookwire_{name} {help}\n# TYPE hookwire_{name} {kind}"
        );
        let routes = answered.first().map_or(0, |s| s.routes.len());
        for r in 0..routes {
            let label = escape_label(&answered[0].routes[r].pattern);
            let mut total = None;
            for s in &answered {
                let v = f(&s.routes[r]);
                total = Some(total.map_or(v, |t| merge(t, v)));
                let _ = writeln!(
                    out,
                    r#"hookwire_{name}{{core="{}",route="{label}"}} {v}"#,
                    s.core
                );
            }
            let _ = writeln!(
                out,
                r#"hookwire_{name}{{core="all",route="{label}"}} {}"#,
                total.unwrap_or(0)
            );
        }
    };
    route_metric(
        &mut out,
        "events_delivered_total",
        "counter",
        "Events handed to ZeroMQ, by route.",
        &|r| r.delivered,
        |a, b| a + b,
    );
    route_metric(
        &mut out,
        "spool_bytes",
        "gauge",
        "Bytes of events waiting in the spool for ZeroMQ, by route.",
        &|r| r.waiting,
        |a, b| a + b,
    );
    route_metric(
        &mut out,
        "spool_bytes_max",
        "gauge",
        "Largest spool depth seen in bytes, by route (core=\"all\": the largest of the cores').",
        &|r| r.depth.max(),
        u64::max,
    );
    // Every core connects its own socket to each consumer, so one consumer
    // shows on every core; core="all" counts the consumers every core has.
    route_metric(
        &mut out,
        "consumers_connected",
        "gauge",
        "Consumers connected, by route (each core connects to each consumer; core=\"all\": connected to every core).",
        &|r| r.connected as u64,
        u64::min,
    );
    let uptime = answered.iter().map(|s| s.uptime).max().unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP hookwire_uptime_seconds Seconds since the cores started.\n# TYPE hookwire_uptime_seconds gauge\nhookwire_uptime_seconds {}",
        uptime.as_secs_f64()
    );
    out
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Percentiles of a latency histogram, in microseconds.
fn percentiles_us(h: &Hist) -> String {
    let us = |ns: u64| ns as f64 / 1000.0;
    let q = |p: f64| us(h.h.value_at_quantile(p));
    format!(
        r#"{{"count":{},"mean":{:.1},"p50":{:.1},"p90":{:.1},"p99":{:.1},"p99.9":{:.1},"p99.99":{:.1},"max":{:.1}}}"#,
        h.h.len(),
        h.h.mean() / 1000.0,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(0.9999),
        us(h.h.max())
    )
}

fn depth(h: &Histogram<u64>) -> String {
    format!(
        r#"{{"p50":{},"p99":{},"max":{}}}"#,
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    )
}

fn metrics_json(m: &Metrics, routes: &[RouteStatus], open: usize) -> String {
    let hists: Vec<String> = m
        .histograms()
        .iter()
        .map(|(name, h)| format!(r#""{name}_us":{}"#, percentiles_us(h)))
        .collect();
    let c = &m.counters;
    let statuses: Vec<String> = STATUSES
        .iter()
        .zip(c.requests)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!(r#""{}":{n}"#, s.code()))
        .collect();
    let refusals: Vec<String> = Counters::refusal_codes()
        .zip(c.refusals)
        .filter(|(_, n)| *n > 0)
        .map(|(code, n)| format!(r#""{code}":{n}"#))
        .collect();
    let routes: Vec<String> = routes
        .iter()
        .map(|r| {
            format!(
                r#"{{"route":{},"connected":{},"delivered":{},"waiting":{},"depth":{}}}"#,
                json_str(&r.pattern),
                r.connected,
                r.delivered,
                r.waiting,
                depth(&r.depth)
            )
        })
        .collect();
    format!(
        r#"{{{},"requests":{{{}}},"refusals":{{{}}},"events":{{"accepted":{},"refused":{}}},"handoffs":{},"bytes":{{"in":{},"out":{}}},"connections":{{"accepted":{},"closed":{},"open":{open}}},"routes":[{}]}}"#,
        hists.join(","),
        statuses.join(","),
        refusals.join(","),
        c.events_accepted,
        c.events_refused,
        c.handoffs,
        c.bytes_in,
        c.bytes_out,
        c.connections_accepted,
        c.connections_closed,
        routes.join(",")
    )
}

/// Merges per-route states across cores (same routes on every core).
fn merged_routes(snaps: &[CoreSnapshot]) -> Vec<RouteStatus> {
    let Some(first) = snaps.first() else {
        return Vec::new();
    };
    let mut routes = first.routes.clone();
    for s in &snaps[1..] {
        for (a, b) in routes.iter_mut().zip(&s.routes) {
            a.connected = a.connected.min(b.connected);
            a.delivered += b.delivered;
            a.waiting += b.waiting;
            let _ = a.depth.add(&b.depth);
        }
    }
    routes
}

/// `/stats`: per core and merged.
pub fn stats(snaps: &[Option<CoreSnapshot>]) -> String {
    let answered: Vec<CoreSnapshot> = snaps.iter().flatten().cloned().collect();
    let uptime = answered.iter().map(|s| s.uptime).max().unwrap_or_default();
    let open: usize = answered.iter().map(|s| s.open_connections).sum();
    let cores: Vec<String> = answered
        .iter()
        .map(|s| {
            let body = metrics_json(&s.metrics, &s.routes, s.open_connections);
            format!(r#"{{"core":{},{}"#, s.core, &body[1..])
        })
        .collect();
    format!(
        r#"{{"uptime_seconds":{:.3},"cores_answering":{},"cores_total":{},"merged":{},"cores":[{}]}}"#,
        uptime.as_secs_f64(),
        answered.len(),
        snaps.len(),
        metrics_json(&merged(&answered), &merged_routes(&answered), open),
        cores.join(",")
    )
}

/// The summary printed to stderr after a drain.
pub fn summary(snaps: &[CoreSnapshot]) -> String {
    let m = merged(snaps);
    let mut out = String::new();
    let c = &m.counters;
    let _ = writeln!(
        out,
        "summary: {} requests, {} events accepted, {} refused with 503, {} connections, {} bytes in, {} bytes out",
        c.requests.iter().sum::<u64>(),
        c.events_accepted,
        c.events_refused,
        c.connections_accepted,
        c.bytes_in,
        c.bytes_out
    );
    for (name, h) in m.histograms() {
        let us = |p: f64| h.h.value_at_quantile(p) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "summary: {name} latency µs: n={} p50={:.1} p99={:.1} p99.9={:.1} max={:.1}",
            h.h.len(),
            us(0.5),
            us(0.99),
            us(0.999),
            h.h.max() as f64 / 1000.0
        );
    }
    for r in merged_routes(snaps) {
        let _ = writeln!(
            out,
            "summary: route {} delivered {} events, {} bytes of events left in the spool",
            r.pattern, r.delivered, r.waiting
        );
    }
    out
}
