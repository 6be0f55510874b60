//! Request bodies in memory are bounded (`--max-inflight-body`): against
//! the real binary, senders that announce large bodies and stall hold at
//! most the bound, and while they wait, other requests are served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const FORM: &str = "Content-Type: application/x-www-form-urlencoded\r\n";

/// A form POST whose body (`v=aaa…`) is `len` bytes: its head, its body.
fn form_post(target: &str, len: usize) -> (Vec<u8>, Vec<u8>) {
    let head =
        format!("POST {target} HTTP/1.1\r\nHost: test\r\n{FORM}Content-Length: {len}\r\n\r\n");
    let mut body = b"v=".to_vec();
    body.resize(len, b'a');
    (head.into_bytes(), body)
}

/// Sends `bytes` on a new connection from a thread of its own (the server
/// may not be reading); the connection is handed back with the thread.
fn send_in_background(server: &Server, bytes: Vec<u8>) -> std::thread::JoinHandle<TcpStream> {
    let mut stream = server.connect();
    std::thread::spawn(move || {
        let _ = stream.write_all(&bytes);
        stream
    })
}

/// `/stats`' merged `inflight_body` figures.
fn inflight(server: &Server) -> serde_json::Value {
    stats(server)["merged"]["inflight_body"].clone()
}

fn figure(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// The value of an unlabelled-but-core sample in `/metrics`.
fn metric(server: &Server, name: &str, core: &str) -> f64 {
    let (status, body) = admin_get(server.admin.unwrap(), "/metrics");
    assert_eq!(status, 200);
    let series = format!("{name}{{core=\"{core}\"}} ");
    let line = body
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"));
    line[series.len()..].parse().unwrap()
}

/// Nothing has arrived on `stream` within `wait`.
fn no_response_yet(stream: &TcpStream, wait: Duration) -> bool {
    let mut probe = stream.try_clone().unwrap();
    probe.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let quiet = matches!(probe.read(&mut b), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    probe
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    quiet
}

/// The server closed the connection (end of file, or a reset: it closed
/// with the stalled body unread).
fn assert_closed(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 64];
    match stream.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close the connection, got {other:?}"),
    }
}

/// Stalled bodies fill the bound and no more; the stalled connections
/// wait and get their 408, while a GET and, after them, a POST are served.
#[test]
fn stalled_bodies_are_held_to_the_bound_and_time_out() {
    let limit = 2u64 << 20;
    let (server, sink) = server_and_sink(&[
        "--max-inflight-body",
        "2MiB",
        "--max-body",
        "512KiB",
        "--cores",
        "1",
        "--request-timeout",
        "2s",
    ]);
    // Six senders announce 512 KiB and send 400 KB: more than the bound
    // holds for all of them.
    let started = Instant::now();
    let stalled: Vec<_> = (0..6)
        .map(|_| {
            let (mut raw, body) = form_post("/slow/body", 512 << 10);
            raw.extend_from_slice(&body[..400_000]);
            send_in_background(&server, raw)
        })
        .collect();
    eventually(
        Duration::from_secs(2),
        "a connection waits for the budget",
        || figure(&inflight(&server), "waits") > 0,
    );
    let now = inflight(&server);
    assert_eq!(figure(&now, "limit"), limit, "{now}");
    assert!(figure(&now, "bytes") <= limit, "{now}");
    assert!(
        figure(&now, "bytes") >= limit / 2,
        "the stalled bodies are held: {now}"
    );

    // A new sender is served at once.
    let asked = Instant::now();
    server
        .get("/fresh/get?x=1")
        .assert_accepted("in.gen.fresh.get");
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(sink.recv()["data"]["x"], "1");

    // The stalled ones get their 408 at their request timeout.
    for sender in stalled {
        let stream = sender.join().unwrap();
        let mut reader = ResponseReader::new(stream);
        reader
            .next()
            .expect("a 408")
            .assert_error(408, "request_timeout");
        assert_closed(&mut reader.stream);
    }
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&took),
        "408s after {took:?}"
    );

    // The bound was never passed; the budget is back; a body gets through.
    let end = inflight(&server);
    assert!(figure(&end, "max") <= limit, "{end}");
    eventually(Duration::from_secs(2), "the budget is given back", || {
        figure(&inflight(&server), "bytes") == 0
    });
    assert!(metric(&server, "hookwire_inflight_body_waits_total", "0") >= 1.0);
    assert_eq!(
        metric(&server, "hookwire_inflight_body_bytes_limit", "all"),
        limit as f64
    );
    let (head, body) = form_post("/after/stall", 300_000);
    let mut raw = head;
    raw.extend_from_slice(&body);
    server.request(&raw).assert_accepted("in.gen.after.stall");
    let event = sink.recv();
    assert_eq!(event["key"], "in.gen.after.stall");
    assert_eq!(event["data"]["v"].as_str().map(str::len), Some(300_000 - 2));
}

/// A connection that waits for the budget reads on, and is answered, once
/// another connection's body completes and gives its bytes back.
#[test]
fn a_waiting_body_proceeds_when_another_completes() {
    let (server, sink) = server_and_sink(&[
        "--max-inflight-body",
        "768KiB",
        "--max-body",
        "512KiB",
        "--cores",
        "1",
        "--request-timeout",
        "5s",
    ]);
    // A takes about 496 KiB for its 512 KiB body and waits for its end.
    let (head_a, body_a) = form_post("/first/body", 512 << 10);
    let mut a = server.connect();
    a.write_all(&head_a).unwrap();
    a.write_all(&body_a[..400_000]).unwrap();
    eventually(Duration::from_secs(2), "A's body is in memory", || {
        figure(&inflight(&server), "bytes") >= 400_000
    });
    // B sends all of its body, but only part of it fits in what is left.
    let (head_b, body_b) = form_post("/second/body", 512 << 10);
    let mut raw_b = head_b;
    raw_b.extend_from_slice(&body_b);
    let b = send_in_background(&server, raw_b);
    eventually(Duration::from_secs(2), "B waits for the budget", || {
        figure(&inflight(&server), "waits") == 1
    });
    let b = b.join().unwrap();
    assert!(
        no_response_yet(&b, Duration::from_millis(300)),
        "B is not answered while it waits"
    );
    assert!(figure(&inflight(&server), "bytes") <= 768 << 10);

    // A completes: its bytes go back, B reads on.
    let completed = Instant::now();
    a.write_all(&body_a[400_000..]).unwrap();
    ResponseReader::new(a)
        .next()
        .expect("A's response")
        .assert_accepted("in.gen.first.body");
    ResponseReader::new(b)
        .next()
        .expect("B's response")
        .assert_accepted("in.gen.second.body");
    assert!(
        completed.elapsed() < Duration::from_secs(2),
        "B answered {:?} after A completed (its timeout is 5 s)",
        completed.elapsed()
    );
    let mut keys: Vec<String> = (0..2)
        .map(|_| sink.recv()["key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["in.gen.first.body", "in.gen.second.body"]);
    let end = inflight(&server);
    assert_eq!(figure(&end, "waits"), 1, "{end}");
    assert!(figure(&end, "max") <= 768 << 10, "{end}");
}
