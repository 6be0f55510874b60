//! Overload, against the real binary on real sockets: connections past
//! `--max-connections`, an open-files limit reached, and senders that
//! pipeline requests and never read the responses.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The merged `/stats` connection counts.
fn connections(server: &Server) -> serde_json::Value {
    stats(server)["merged"]["connections"].clone()
}

fn count(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

/// Core 0's `/metrics` sample of a counter.
fn metric(server: &Server, name: &str) -> f64 {
    let (status, body) = admin_get(server.admin.unwrap(), "/metrics");
    assert_eq!(status, 200);
    let series = format!("{name}{{core=\"0\"}} ");
    let line = body
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"));
    line[series.len()..].parse().unwrap()
}

/// What a connection that sent one GET gets: a response, or the close
/// (end of file or reset) with nothing said; `None` if nothing came at
/// all within `wait`, which a sender must never see.
#[derive(Debug, PartialEq)]
enum Heard {
    Status(u16, Option<String>),
    Closed,
}

fn get_on(stream: TcpStream, target: &str, wait: Duration) -> Option<Heard> {
    let mut stream = stream;
    stream.set_read_timeout(Some(wait)).unwrap();
    let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
    if stream.write_all(raw.as_bytes()).is_err() {
        return Some(Heard::Closed);
    }
    let mut reader = ResponseReader::new(stream);
    let mut b = [0u8; 1];
    // A reset before anything was read counts as a close, a timeout as
    // silence.
    match reader.stream.peek(&mut b) {
        Ok(0) => return Some(Heard::Closed),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(Heard::Closed),
        Err(_) => return None,
    }
    match reader.next() {
        Some(r) => {
            let code = (r.status >= 400).then(|| r.json()["error"].as_str().unwrap().to_owned());
            Some(Heard::Status(r.status, code))
        }
        None => Some(Heard::Closed),
    }
}

/// Past its share of --max-connections a core answers a new connection
/// 503 overloaded and closes it, counts it, and takes connections again
/// once others close.
#[test]
fn connections_past_the_limit_get_503_overloaded_and_close() {
    let (server, sink) = server_and_sink(&["--cores", "1", "--max-connections", "3"]);
    let mut held = Vec::new();
    for i in 0..3 {
        let mut s = server.connect();
        s.write_all(format!("GET /held/conn?i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let mut reader = ResponseReader::new(s);
        assert_eq!(reader.next().unwrap().status, 200);
        held.push(reader);
    }
    let heard = get_on(server.connect(), "/over/limit", Duration::from_secs(5));
    assert_eq!(
        heard,
        Some(Heard::Status(503, Some("overloaded".into()))),
        "the fourth connection"
    );
    let c = connections(&server);
    assert_eq!(count(&c, "refused"), 1, "{c}");
    assert_eq!(count(&c, "accepted"), 3, "{c}");
    assert_eq!(metric(&server, "hookwire_connections_refused_total"), 1.0);
    assert_eq!(stats(&server)["merged"]["refusals"]["overloaded"], 1);
    // No event for the refused connection's request.
    for _ in 0..3 {
        sink.recv();
    }
    sink.assert_quiet(Duration::from_millis(300));

    // One closes: a new connection is served again.
    drop(held.pop());
    eventually(
        Duration::from_secs(5),
        "the closed connection counted",
        || count(&connections(&server), "open") == 2,
    );
    let heard = get_on(server.connect(), "/after/close", Duration::from_secs(5));
    assert_eq!(heard, Some(Heard::Status(200, None)));
    assert_eq!(sink.recv()["key"], "in.gen.after.close");
}

/// With the open-files limit reached, every sender gets an answer or a
/// close (never silence), `accept failed` is logged at most about once a
/// second per core with a count, and the server serves again once
/// connections close.
#[test]
fn out_of_descriptors_every_sender_is_answered_and_logs_are_rate_limited() {
    let sink = Sink::bind();
    // --max-connections above what the descriptors allow: accept itself
    // runs out.
    let server = Server::start_with_nofile(
        &[
            "--push",
            &sink.endpoint,
            "--cores",
            "1",
            "--max-connections",
            "10000",
        ],
        96,
    );
    let started = Instant::now();
    // More connections than descriptors, all open before any sends its
    // GET: however fast the server answers, accept runs out while they
    // wait.
    let all_open = std::sync::Arc::new(std::sync::Barrier::new(200));
    let senders: Vec<_> = (0..200)
        .map(|i| {
            let addr = server.addr;
            let all_open = all_open.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(addr).unwrap();
                all_open.wait();
                get_on(s, &format!("/fd/limit?i={i}"), Duration::from_secs(15))
            })
        })
        .collect();
    let heard: Vec<Option<Heard>> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    let took = started.elapsed();
    let silent = heard.iter().filter(|h| h.is_none()).count();
    let ok = heard
        .iter()
        .filter(|h| matches!(h, Some(Heard::Status(200, _))))
        .count();
    let overloaded = heard
        .iter()
        .filter(|h| matches!(h, Some(Heard::Status(503, Some(c))) if c == "overloaded"))
        .count();
    let closed = heard
        .iter()
        .filter(|h| matches!(h, Some(Heard::Closed)))
        .count();
    assert_eq!(
        silent, 0,
        "senders left without an answer or a close: {heard:?}"
    );
    assert!(ok > 0, "none served: {heard:?}");
    assert!(overloaded > 0, "none answered 503 overloaded: {heard:?}");
    assert_eq!(ok + overloaded + closed, 200, "{heard:?}");

    let lines = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .cloned()
        .collect::<Vec<_>>();
    assert!(!lines.is_empty(), "the failed accepts are logged");
    assert!(
        lines.len() as u64 <= took.as_secs() + 2,
        "{} `accept failed` lines in {took:?}: {lines:?}",
        lines.len()
    );
    assert!(lines[0].contains("time(s)"), "{}", lines[0]);

    // The senders are gone: the server serves again.
    eventually(Duration::from_secs(10), "connections closed", || {
        count(&connections(&server), "open") == 0
    });
    assert_eq!(
        get_on(server.connect(), "/fd/recovered", Duration::from_secs(5)),
        Some(Heard::Status(200, None))
    );
}

/// Senders that pipeline many requests and never read: memory stays
/// bounded (a pass holds a bounded amount of responses, the rest of the
/// requests wait unread), each connection is closed once its writes stall
/// for --idle-timeout, and every event whose 200 was decided reaches the
/// consumer.
#[test]
fn slow_readers_are_bounded_closed_and_keep_their_events() {
    // No copies of sent events kept for re-sending: what RSS shows is the
    // connections'.
    let (server, sink) = server_and_sink(&[
        "--cores",
        "1",
        "--idle-timeout",
        "2s",
        "--resend-buffer",
        "0",
    ]);
    let rss = || {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            << 10
    };
    // Warm up, so the figure after compares like with like.
    server.get("/warm/up").assert_accepted("in.gen.warm.up");
    sink.recv();
    let before = rss();
    const READERS: usize = 8;
    const REQUESTS: usize = 40_000;
    let mut readers = Vec::new();
    for r in 0..READERS {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&server.addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        let mut raw = Vec::new();
        for i in 0..REQUESTS {
            raw.extend_from_slice(
                format!("GET /slow/reader?r={r}&i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            );
        }
        // Written from a thread: the server stops reading once it stops
        // being able to write.
        let writer = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut writer = writer;
            let _ = writer.write_all(&raw);
        });
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        readers.push(stream);
    }
    eventually(
        Duration::from_secs(5),
        "the slow readers' connections",
        || count(&connections(&server), "accepted") == 1 + READERS as u64,
    );
    std::thread::sleep(Duration::from_millis(500));
    let during = rss();
    // Each closed by the server once its writes stall past the timeout.
    eventually(Duration::from_secs(15), "the slow readers closed", || {
        count(&connections(&server), "open") == 0
    });
    let grown = during.saturating_sub(before);
    assert!(
        grown < (READERS as u64) * (2 << 20),
        "RSS grew {grown} bytes for {READERS} slow readers"
    );
    eprintln!("RSS grew {grown} bytes for {READERS} slow readers");
    let accepted = stats(&server)["merged"]["events"]["accepted"]
        .as_u64()
        .unwrap();
    assert!(
        accepted < 1 + (READERS * REQUESTS) as u64,
        "every pipelined request was answered: nothing held back"
    );
    // Every event decided reaches the consumer, none more.
    let events = sink.recv_raw(accepted as usize - 1, Duration::from_secs(10));
    assert!(events
        .iter()
        .all(|e| e.windows(11).any(|w| w == b"slow.reader")));
    sink.assert_quiet(Duration::from_millis(500));
    // The readers see their connections closed after what was written.
    for mut s in readers {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the server did not close a slow reader: {e}"),
            }
        }
    }
}
