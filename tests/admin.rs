//! The admin listener (/metrics, /stats, /health, /ready) and the graceful
//! drain, against the real binary.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn scrape(server: &Server) -> prometheus_parse::Scrape {
    let (status, body) = admin_get(server.admin.unwrap(), "/metrics");
    assert_eq!(status, 200);
    assert_exposition_format(&body);
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// Every line is a HELP, a TYPE or a sample in the text exposition format
/// (prometheus-parse skips lines it cannot read, so check them all here).
fn assert_exposition_format(body: &str) {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(name_ok(rest.split(' ').next().unwrap()), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            assert!(name_ok(parts.next().unwrap()), "{line}");
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
        } else {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line: {line}"));
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
            let name = series.split('{').next().unwrap();
            assert!(name_ok(name), "{line}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels
                        .strip_prefix('{')
                        .and_then(|l| l.strip_suffix('}'))
                        .expect(line);
                    for pair in inner.split("\",") {
                        let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                        assert!(name_ok(k), "{line}");
                        assert!(!v.trim_end_matches('"').contains('"'), "{line}");
                    }
                }
            }
        }
    }
}

/// The value of the sample `metric` with exactly these labels.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no sample {metric} {labels:?}"));
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{metric} is not a number: {other:?}"),
    }
}

#[test]
fn metrics_count_every_request() {
    let (server, sink) = server_and_sink(&["--request-timeout", "300ms", "--max-body", "1KiB"]);
    for i in 0..37 {
        server
            .get(&format!("/crm/lead?i={i}"))
            .assert_accepted("in.gen.crm.lead");
        sink.recv();
    }
    for _ in 0..5 {
        server.get("/a.b/c").assert_error(400, "invalid_service");
    }
    for _ in 0..3 {
        server
            .request(b"DELETE /a/b HTTP/1.1\r\nHost: t\r\n\r\n")
            .assert_error(405, "method_not_allowed");
    }
    server
        .post("/a/b", Some("application/json"), b"{nope")
        .assert_error(400, "invalid_json");
    // Answers that close the connection count too: a framing error, a
    // body over --max-body, a request that stalls past its timeout.
    let framing = server.request(
        b"POST /a/b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(framing.status, 400);
    server
        .post("/a/b", Some("application/json"), &[b' '; 2048])
        .assert_error(413, "body_too_large");
    let mut stalled = server.connect();
    stalled.write_all(b"GET /a/b HTTP/1.1\r\nHost:").unwrap();
    let timed_out = ResponseReader::new(stalled).next().expect("a 408");
    assert_eq!(timed_out.status, 408);

    let m = scrape(&server);
    let all = |status: &str| {
        sample(
            &m,
            "hookwire_requests_total",
            &[("core", "all"), ("status", status)],
        )
    };
    assert_eq!(all("200"), 37.0);
    assert_eq!(all("400"), 7.0);
    assert_eq!(all("405"), 3.0);
    assert_eq!(all("408"), 1.0);
    assert_eq!(all("413"), 1.0);
    let per_core: f64 = ["0", "1"]
        .iter()
        .map(|c| {
            sample(
                &m,
                "hookwire_requests_total",
                &[("core", c), ("status", "200")],
            )
        })
        .sum();
    assert_eq!(per_core, 37.0, "the cores add up to the merged count");
    let code = |c: &str| {
        sample(
            &m,
            "hookwire_refusals_total",
            &[("core", "all"), ("code", c)],
        )
    };
    assert_eq!(code("invalid_service"), 5.0);
    assert_eq!(code("method_not_allowed"), 3.0);
    assert_eq!(code("invalid_json"), 1.0);
    assert_eq!(
        sample(&m, "hookwire_events_accepted_total", &[("core", "all")]),
        37.0
    );
    assert_eq!(
        sample(
            &m,
            "hookwire_events_delivered_total",
            &[("core", "all"), ("route", "*")]
        ),
        37.0
    );
    assert_eq!(
        sample(
            &m,
            "hookwire_connections_accepted_total",
            &[("core", "all")]
        ),
        49.0
    );
    assert!(sample(&m, "hookwire_bytes_in_total", &[("core", "all")]) > 49.0 * 30.0);

    // The latency histogram: one sample per answered request, buckets
    // cumulative from 10 µs to 10 s, +Inf equal to the count.
    let hist = m
        .samples
        .iter()
        .find(|s| {
            s.metric == "hookwire_request_duration_seconds" && s.labels.get("core") == Some("all")
        })
        .expect("request histogram");
    let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
        panic!("not a histogram")
    };
    assert_eq!(buckets.first().unwrap().less_than, 0.00001);
    assert!(buckets.iter().any(|b| b.less_than == 10.0));
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
    assert_eq!(buckets.last().unwrap().count, 49.0);
    assert_eq!(
        sample(
            &m,
            "hookwire_request_duration_seconds_count",
            &[("core", "all")]
        ),
        49.0
    );
}

#[test]
fn stats_percentiles_reflect_an_injected_delay() {
    const DELAY: Duration = Duration::from_millis(40);
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let body = br#"{"lead":1}"#;
    let mut conn = server.connect();
    let mut reader = ResponseReader::new(conn.try_clone().unwrap());
    for _ in 0..20 {
        // The head now, the body after DELAY: the request's latency, from
        // its first byte read to its response written, includes the pause.
        write!(
            conn,
            "POST /crm/lead HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        conn.flush().unwrap();
        std::thread::sleep(DELAY);
        conn.write_all(body).unwrap();
        reader.next().unwrap().assert_accepted("in.gen.crm.lead");
        sink.recv();
    }
    let (status, text) = admin_get(server.admin.unwrap(), "/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&text).unwrap();
    let request = &stats["merged"]["request_us"];
    assert_eq!(request["count"], 20);
    let us = |k: &str| request[k].as_f64().unwrap();
    let delay_us = DELAY.as_micros() as f64;
    // The server's clock starts when it has read the head, which may be a
    // little after the client sent it, so a request can measure slightly
    // less than DELAY; without the delay it would measure microseconds.
    // The bounds are wide for a shared machine and still far apart.
    assert!(
        us("p50") >= delay_us * 0.5,
        "p50 {} µs does not show the injected {delay_us} µs",
        us("p50")
    );
    assert!(
        us("p50") < delay_us * 4.0,
        "p50 {} µs far above the injected {delay_us} µs",
        us("p50")
    );
    assert!(us("p50") <= us("p90") && us("p90") <= us("p99") && us("p99") <= us("max"));
    // Decoding is not delayed: it only sees complete requests.
    let decode_p50 = stats["merged"]["decode_us"]["p50"].as_f64().unwrap();
    assert!(
        decode_p50 < delay_us / 4.0,
        "decode p50 {decode_p50} µs includes the delay"
    );
    assert_eq!(stats["cores"][0]["core"], 0);
    assert_eq!(stats["cores"][0]["request_us"]["count"], 20);
    assert_eq!(stats["merged"]["events"]["accepted"], 20);
    assert!(stats["uptime_seconds"].as_f64().unwrap() > 0.0);
}

#[test]
fn health_and_readiness_follow_the_consumer() {
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let server = Server::start(&["--push", &endpoint]);
    let admin = server.admin.unwrap();
    assert_eq!(admin_get(admin, "/health").0, 200);

    // No consumer yet.
    let (status, body) = admin_get(admin, "/ready");
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["routes"][0]["route"], "*");
    assert!(
        v["routes"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&endpoint),
        "{body}"
    );
    assert_eq!(v["problems"][0]["code"], "no_consumer", "{body}");
    // The spool's filesystem, as statvfs tells it.
    let spool = &v["spool"];
    let (free, size) = (spool["free_bytes"].as_u64(), spool["size_bytes"].as_u64());
    assert!(free.is_some_and(|f| f > 0 && f <= size.unwrap()), "{body}");
    let min_free = spool["min_free_bytes"].as_u64().unwrap();
    assert!(
        min_free.abs_diff(size.unwrap() / 100) <= 1,
        "--spool-min-free is 1% by default: {body}"
    );

    // Idle connections to the admin port do not hold up a probe.
    let idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(admin).unwrap())
        .collect();
    let asked = std::time::Instant::now();
    assert_eq!(admin_get(admin, "/health").0, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "/health waited {:?} behind idle connections",
        asked.elapsed()
    );
    drop(idle);

    // A peer that accepts TCP but is not ZeroMQ is not a consumer.
    {
        let addr = endpoint.trim_start_matches("tcp://");
        let plain = std::net::TcpListener::bind(addr).unwrap();
        plain.set_nonblocking(true).unwrap();
        let mut accepted = Vec::new();
        let until = std::time::Instant::now() + Duration::from_millis(1500);
        while std::time::Instant::now() < until {
            if let Ok((stream, _)) = plain.accept() {
                accepted.push(stream);
            }
            let (status, body) = admin_get(admin, "/ready");
            assert_eq!(status, 503, "a plain TCP listener made /ready say {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !accepted.is_empty(),
            "hookwire never connected to the plain listener"
        );
    }

    let sink = Sink::bind_at(&endpoint);
    eventually(Duration::from_secs(10), "ready with a consumer", || {
        admin_get(admin, "/ready").0 == 200
    });
    // One consumer, seen by both cores' sockets: one in /stats and in
    // /metrics' merge, one on each core.
    assert_eq!(stats(&server)["merged"]["routes"][0]["connected"], 1);
    let m = scrape(&server);
    let consumers = |core: &str| {
        sample(
            &m,
            "hookwire_consumers_connected",
            &[("core", core), ("route", "*")],
        )
    };
    assert_eq!(
        (consumers("all"), consumers("0"), consumers("1")),
        (1.0, 1.0, 1.0)
    );

    // The only consumer goes away.
    drop(sink);
    eventually(
        Duration::from_secs(10),
        "unready without a consumer",
        || {
            let (status, body) = admin_get(admin, "/ready");
            status == 503 && body.contains("no consumer is connected")
        },
    );

    // And comes back.
    let sink = Sink::bind_at(&endpoint);
    eventually(Duration::from_secs(10), "ready again", || {
        admin_get(admin, "/ready").0 == 200
    });
    server.get("/s/n").assert_accepted("in.gen.s.n");
    sink.recv();
    assert_eq!(admin_get(admin, "/nope").0, 404);

    // HEAD: the GET's status and headers, no body.
    for (path, status) in [("/stats", "200"), ("/ready", "200"), ("/nope", "404")] {
        let mut s = std::net::TcpStream::connect(admin).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "HEAD {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(
            raw.starts_with(&format!("HTTP/1.1 {status} ")),
            "HEAD {path}: {raw}"
        );
        assert!(raw.contains("Content-Length: "), "HEAD {path}: {raw}");
        assert!(raw.ends_with("\r\n\r\n"), "HEAD {path} sent a body: {raw}");
    }
}

/// Sends requests on one connection after another until the server stops
/// taking connections; returns the ids of the 200s it saw.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut ids = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(conn) = TcpStream::connect(addr) else {
            return ids; // the listener is closed: the drain has begun
        };
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut writer = conn.try_clone().unwrap();
        let mut reader = ResponseReader::new(conn);
        loop {
            // Four pipelined requests at a time.
            let batch =
                b"GET /affise/conversion/7?clickid=abc HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4);
            if writer.write_all(&batch).is_err() {
                break;
            }
            let mut closed = false;
            for _ in 0..4 {
                match reader.next() {
                    Some(r) => ids.push(r.assert_accepted("in.gen.affise.conversion")),
                    None => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                break;
            }
        }
    }
    ids
}

#[test]
fn sigterm_under_load_loses_nothing_and_exits_zero() {
    let sink = Sink::bind();
    let mut server = Server::start(&["--push", &sink.endpoint, "--drain-timeout", "5s"]);
    let addr = server.addr;
    let receiver = std::thread::spawn(move || {
        let mut ids = Vec::new();
        while let Some(mut frames) = sink.recv_frames(Duration::from_secs(3)) {
            let v: serde_json::Value = serde_json::from_slice(&frames.pop().unwrap()).unwrap();
            ids.push(v["id"].as_str().unwrap().parse::<u64>().unwrap());
        }
        ids
    });
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || load(addr, stop))
        })
        .collect();

    std::thread::sleep(Duration::from_millis(700));
    let signalled = Instant::now();
    signal(&server, libc::SIGTERM);
    let status = exit_within(
        &mut server,
        signalled,
        Duration::from_secs(7),
        "did not exit within the drain timeout",
    );
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");
    stop.store(true, Ordering::Relaxed);

    let mut answered: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let mut delivered = receiver.join().unwrap();
    assert!(
        answered.len() > 1000,
        "the load ran: {} answers",
        answered.len()
    );
    answered.sort_unstable();
    delivered.sort_unstable();
    assert_eq!(
        delivered.len(),
        answered.len(),
        "events received == 200 responses (drain took {took:?})"
    );
    assert_eq!(delivered, answered, "the same ids, none lost, none extra");
}

#[test]
fn a_second_signal_exits_at_once() {
    // No consumer: the drain would wait its whole timeout for the backlog.
    let endpoint = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("tcp://{}", l.local_addr().unwrap())
    };
    let mut server = Server::start(&["--push", &endpoint, "--drain-timeout", "30s"]);
    server.get("/s/n").assert_accepted("in.gen.s.n");
    signal(&server, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still draining after the first signal"
    );
    let t = Instant::now();
    signal(&server, libc::SIGINT);
    let status = exit_within(
        &mut server,
        t,
        Duration::from_secs(2),
        "second signal did not exit at once",
    );
    assert_eq!(status.code(), Some(130));
}

/// A request completed during the drain is answered, with
/// `Connection: close` on the last response (requests pipelined before it
/// keep theirs), and the connection then closes.
#[test]
fn requests_finished_during_the_drain_are_answered_with_connection_close() {
    let (mut server, sink) = server_and_sink(&["--drain-timeout", "10s"]);
    let mut stream = server.connect();
    let request = b"GET /s/n?x=1 HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut wire = request.repeat(2);
    wire.extend_from_slice(b"POST /s/n HTTP/1.1\r\nHost: test\r\nContent-Length: 7\r\n\r\nx=");
    stream.write_all(&wire).unwrap();
    let mut reader = ResponseReader::new(stream.try_clone().unwrap());
    for _ in 0..2 {
        let r = reader.next().expect("a pipelined 200 before the signal");
        r.assert_accepted("in.gen.s.n");
    }
    let signalled = Instant::now();
    signal(&server, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Two more requests complete now: the body's rest, and one behind it.
    let mut rest = b"12345".to_vec();
    rest.extend_from_slice(request);
    stream.write_all(&rest).unwrap();
    let body_done = reader.next().expect("the POST's response");
    body_done.assert_accepted("in.gen.s.n");
    assert_eq!(body_done.header("connection"), None, "{body_done:?}");
    let last = reader.next().expect("the last request's response");
    last.assert_accepted("in.gen.s.n");
    assert_eq!(last.header("connection"), Some("close"), "{last:?}");
    assert!(reader.closed(), "the connection closes after it");
    for _ in 0..4 {
        sink.recv();
    }
    let status = exit_within(
        &mut server,
        signalled,
        Duration::from_secs(5),
        "did not exit after the drain",
    );
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn a_request_stalled_during_the_drain_gets_its_408_at_its_own_timeout() {
    let (mut server, _sink) =
        server_and_sink(&["--request-timeout", "300ms", "--drain-timeout", "10s"]);
    let mut stream = server.connect();
    let first_byte = Instant::now();
    stream
        .write_all(b"GET /slow/drain?x=1 HTTP/1.1\r\nHost: test\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let signalled = Instant::now();
    signal(&server, libc::SIGTERM);
    let mut reader = ResponseReader::new(stream);
    reader
        .next()
        .expect("a response")
        .assert_error(408, "request_timeout");
    // Not at the signal: at the request's own timeout, which the server
    // started when it read the first bytes (after `first_byte`).
    assert!(
        first_byte.elapsed() >= Duration::from_millis(290),
        "408 after {:?}, before the request's 300 ms timeout",
        first_byte.elapsed()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "408 only after {:?}, the drain waited for the stalled request",
        signalled.elapsed()
    );
    let status = exit_within(
        &mut server,
        signalled,
        Duration::from_secs(5),
        "did not exit once the stalled request was answered",
    );
    assert!(status.success(), "exit status {status:?}");
}

/// Sends `signal` to the test's hookwire.
fn signal(server: &Server, signal: i32) {
    // SAFETY: plain kill(2) of the child this test started.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, signal) }, 0);
}

/// Waits for hookwire to exit, failing with `what` if it has not within
/// `limit` of `since`.
fn exit_within(
    server: &mut Server,
    since: Instant,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(since.elapsed() < limit, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every accepted connection is counted closed once it ends, also one the
/// peer resets before the server has looked at it: accepted = open +
/// closed, so an operator can read a leak from the counters.
#[test]
fn connections_reset_at_once_still_add_up() {
    let (server, _sink) = server_and_sink(&[]);
    let n = 2_000;
    for i in 0..n {
        let stream = server.connect();
        if i % 2 == 0 {
            (&stream)
                .write_all(b"GET /reset/early HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
        }
        // SO_LINGER 0: the close sends a reset, not a FIN.
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let connections = &stats(&server)["merged"]["connections"];
        let count = |k: &str| connections[k].as_u64().unwrap();
        let (accepted, open, closed) = (count("accepted"), count("open"), count("closed"));
        if accepted == n && open == 0 {
            assert_eq!(closed, n, "{connections}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every connection ended within 10 s: {connections}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
