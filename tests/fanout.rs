//! Delivery over ZeroMQ: routes, fan-out, frames, the backlog, id uniqueness.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

fn free_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://{}", l.local_addr().unwrap())
}

fn envelope_id(raw: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(raw).expect("envelope is JSON");
    v["id"].as_str().unwrap().parse().unwrap()
}

fn worker(id: u64) -> u64 {
    (id >> 12) & 0x3ff
}

#[test]
fn routes_fan_out_to_every_match() {
    let calls = Sink::bind();
    let leads = Sink::bind();
    let server = Server::start(&[
        "--route",
        &format!("in.gen.calltrack.*={}", calls.endpoint),
        "--route",
        &format!("in.gen.*.lead={}", leads.endpoint),
    ]);
    assert!(server
        .banner
        .iter()
        .any(|l| l.starts_with("route in.gen.calltrack.* -> ")));
    assert!(server
        .banner
        .iter()
        .any(|l| l.starts_with("route in.gen.*.lead -> ")));

    let a = server
        .get("/calltrack/call")
        .assert_accepted("in.gen.calltrack.call");
    assert_eq!(calls.recv()["id"], a.to_string());

    let b = server.get("/crm/lead").assert_accepted("in.gen.crm.lead");
    assert_eq!(leads.recv()["id"], b.to_string());

    // Matches both routes: both consumers get the same envelope.
    let c = server
        .get("/calltrack/lead")
        .assert_accepted("in.gen.calltrack.lead");
    assert_eq!(calls.recv()["id"], c.to_string());
    assert_eq!(leads.recv()["id"], c.to_string());

    // Matches none: refused, not dropped.
    server.get("/shop/order").assert_error(503, "no_route");
    calls.assert_quiet(Duration::from_millis(200));
    leads.assert_quiet(Duration::from_millis(10));
}

#[test]
fn a_route_balances_across_its_endpoints() {
    let one = Sink::bind();
    let two = Sink::bind();
    let server = Server::start(&[
        "--cores",
        "1",
        "--push",
        &format!("{},{}", one.endpoint, two.endpoint),
    ]);
    // Both connections up, so PUSH can balance over them.
    eventually(Duration::from_secs(10), "both consumers connected", || {
        stats(&server)["merged"]["routes"][0]["connected"] == 2
    });
    for _ in 0..20 {
        server.get("/s/n").assert_accepted("in.gen.s.n");
    }
    let mut counts = [0, 0];
    for (i, sink) in [&one, &two].iter().enumerate() {
        while sink.recv_frames(Duration::from_millis(300)).is_some() {
            counts[i] += 1;
        }
    }
    assert_eq!(counts[0] + counts[1], 20, "{counts:?}");
    assert!(
        counts[0] > 0 && counts[1] > 0,
        "both consumers get a share: {counts:?}"
    );
}

#[test]
fn key_plus_json_sends_two_frames() {
    let (server, sink) = server_and_sink(&["--frames", "key+json"]);
    let id = server
        .get("/calltrack/call?x=1")
        .assert_accepted("in.gen.calltrack.call");
    let frames = sink.recv_frames(Duration::from_secs(10)).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0], b"in.gen.calltrack.call");
    assert_eq!(envelope_id(&frames[1]), id);
}

#[test]
fn backlog_holds_events_until_a_consumer_comes() {
    let endpoint = free_endpoint();
    let server = Server::start(&["--push", &endpoint]);
    let mut conn = server.connect();
    let mut raw = Vec::new();
    for i in 0..1000 {
        raw.extend_from_slice(
            format!("GET /calltrack/call?n={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        );
    }
    conn.write_all(&raw).unwrap();
    let mut reader = ResponseReader::new(conn);
    let accepted: Vec<u64> = (0..1000)
        .map(|_| {
            reader
                .next()
                .unwrap()
                .assert_accepted("in.gen.calltrack.call")
        })
        .collect();

    // The consumer starts only now.
    std::thread::sleep(Duration::from_millis(200));
    let sink = Sink::bind_at(&endpoint);
    let got = sink.recv_raw(1000, Duration::from_secs(10));
    let ids: Vec<u64> = got.iter().map(|e| envelope_id(e)).collect();
    // One connection is served by one core: delivery keeps its order.
    assert_eq!(ids, accepted);
    sink.assert_quiet(Duration::from_millis(200));
}

#[test]
fn full_spool_refuses_with_503_and_recovers() {
    let endpoint = free_endpoint();
    let server = Server::start(&[
        "--cores",
        "1",
        "--spool-max-bytes",
        "64KiB",
        "--push",
        &endpoint,
    ]);
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    let mut accepted = Vec::new();
    let refused = loop {
        let r = server.post("/crm/lead", Some("application/json"), body.as_bytes());
        if r.status != 200 {
            break r;
        }
        accepted.push(r.assert_accepted("in.gen.crm.lead"));
        assert!(
            accepted.len() < 100,
            "64 KiB cannot hold 100 events of 2 KiB"
        );
    };
    refused.assert_error(503, "spool_full");
    assert_eq!(refused.header("Retry-After"), Some("1"));
    // About 64 KiB of ~2.4 KiB records were kept.
    assert!(
        (20..=40).contains(&accepted.len()),
        "{} accepted",
        accepted.len()
    );

    let sink = Sink::bind_at(&endpoint);
    let got: Vec<u64> = sink
        .recv_raw(accepted.len(), Duration::from_secs(10))
        .iter()
        .map(|e| envelope_id(e))
        .collect();
    assert_eq!(
        got, accepted,
        "the refused event was not emitted, the rest arrived in order"
    );
    let next = server
        .post("/crm/lead", Some("application/json"), body.as_bytes())
        .assert_accepted("in.gen.crm.lead");
    assert_eq!(
        envelope_id(&sink.recv_raw(1, Duration::from_secs(10))[0]),
        next
    );
}

/// A consumer on an IPv6 address (`tcp://[::1]:port`) gets its events.
#[test]
fn an_ipv6_consumer_gets_its_events() {
    let context = zmq::Context::new();
    let pull = context.socket(zmq::PULL).unwrap();
    pull.set_ipv6(true).unwrap();
    pull.set_rcvtimeo(10_000).unwrap();
    pull.bind("tcp://[::1]:*").unwrap();
    let endpoint = pull.get_last_endpoint().unwrap().unwrap();
    assert!(endpoint.starts_with("tcp://[::1]:"), "{endpoint}");
    let server = Server::start(&["--cores", "1", "--push", &endpoint]);
    let id = server.get("/v6/x?a=1").assert_accepted("in.gen.v6.x");
    let got = pull.recv_bytes(0).expect("the envelope within 10 s");
    assert_eq!(envelope_id(&got), id);
}

/// `--spool-max-bytes` is for the whole process (not split over cores),
/// a full spool refuses only events that need it (a route with a
/// consumer and nothing waiting still takes events), and `/ready` says it
/// is full.
#[test]
fn a_full_spool_refuses_only_events_that_need_it_and_ready_says_so() {
    let dead = free_endpoint();
    let live = Sink::bind();
    let routes = [
        format!("in.gen.dead.*={dead}"),
        format!("in.gen.live.*={}", live.endpoint),
    ];
    let server = Server::start(&[
        "--cores",
        "2",
        "--spool-max-bytes",
        "64KiB",
        "--route",
        &routes[0],
        "--route",
        &routes[1],
    ]);
    eventually(
        Duration::from_secs(10),
        "the live consumer to connect",
        || stats(&server)["merged"]["routes"][1]["connected"] == 1,
    );
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2000));
    // One keep-alive connection, so one core spools it all: it may fill
    // the whole process's limit.
    let conn = server.connect();
    let mut writer = conn.try_clone().unwrap();
    let mut reader = ResponseReader::new(conn);
    let request = post_request(
        "/dead/x",
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    );
    let mut accepted = Vec::new();
    let refused = loop {
        writer.write_all(&request).unwrap();
        let r = reader.next().expect("response");
        if r.status != 200 {
            break r;
        }
        accepted.push(r.assert_accepted("in.gen.dead.x"));
        assert!(
            accepted.len() < 100,
            "64 KiB cannot hold 100 events of 2 KiB"
        );
    };
    refused.assert_error(503, "spool_full");
    // About 64 KiB of ~2.4 KiB records in all, not 32 KiB per core.
    assert!(
        (20..=40).contains(&accepted.len()),
        "{} accepted",
        accepted.len()
    );
    // The other core knows within a tick of its loop.
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..10 {
        server
            .post("/dead/x", Some("application/json"), body.as_bytes())
            .assert_error(503, "spool_full");
    }
    let (status, ready) = admin_get(server.admin.unwrap(), "/ready");
    assert_eq!(status, 503, "{ready}");
    assert!(ready.contains("the spool is full"), "{ready}");

    // The live route goes straight to its consumer.
    let live_ids: Vec<u64> = (0..20)
        .map(|_| {
            server
                .post("/live/y", Some("application/json"), body.as_bytes())
                .assert_accepted("in.gen.live.y")
        })
        .collect();
    let mut got: Vec<u64> = live
        .recv_raw(20, Duration::from_secs(10))
        .iter()
        .map(|e| envelope_id(e))
        .collect();
    got.sort_unstable();
    let mut want = live_ids;
    want.sort_unstable();
    assert_eq!(got, want);

    // The dead route's consumer comes: everything it was given arrives.
    let sink = Sink::bind_at(&dead);
    let mut got: Vec<u64> = sink
        .recv_raw(accepted.len(), Duration::from_secs(10))
        .iter()
        .map(|e| envelope_id(e))
        .collect();
    sink.assert_quiet(Duration::from_millis(300));
    got.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(got, accepted);
}

/// Hand-offs to ZeroMQ so far (`/stats`, all cores).
fn handoffs(server: &Server) -> u64 {
    stats(server)["merged"]["handoffs"]
        .as_u64()
        .expect("merged.handoffs")
}

/// `--flush-interval`: a lone request is answered without waiting for the
/// interval; while several events wait, a core hands them to ZeroMQ at
/// most once per interval (fewer, larger batches); everything held back is
/// delivered, in order.
#[test]
fn flush_interval_holds_batches_not_lone_requests() {
    const INTERVAL: Duration = Duration::from_millis(10);
    let (server, sink) = server_and_sink(&["--cores", "1", "--flush-interval", "10ms"]);
    // One after the other, each request comes a millisecond or so after
    // the previous hand-off: held, it would wait most of the interval for
    // the next. The server's own latency (first byte read to response
    // written) shows it without the client's scheduling in it.
    let before = handoffs(&server);
    for _ in 0..10 {
        server.get("/s/lone?x=1").assert_accepted("in.gen.s.lone");
    }
    let lone = sink.recv_raw(10, Duration::from_secs(10));
    assert_eq!(lone.len(), 10);
    let stats = stats(&server);
    let request = &stats["merged"]["request_us"];
    assert_eq!(request["count"], 10);
    let p50 = request["p50"].as_f64().unwrap();
    assert!(
        p50 < INTERVAL.as_micros() as f64 / 2.0,
        "lone requests waited: p50 {p50} µs with a {INTERVAL:?} interval"
    );
    assert_eq!(
        stats["merged"]["handoffs"].as_u64().unwrap() - before,
        10,
        "one hand-off per lone request"
    );

    // Pipelined pairs: 400 requests in 200 writes of two, about half a
    // millisecond apart. Every write wakes the flusher with two events
    // waiting, so without the interval each pair is a hand-off of its own
    // (events ÷ 2). Held, a hand-off takes everything that came in its
    // interval, so it carries a score of events, not two: hand-offs ≤
    // events ÷ 4 holds with a wide margin (the writes would have to come
    // ten times slower to break it), whatever the run's elapsed time.
    const WRITES: usize = 200;
    const EVENTS: usize = 2 * WRITES;
    let before = handoffs(&server);
    let mut stream = server.connect();
    let mut reader = ResponseReader::new(stream.try_clone().unwrap());
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        for w in 0..WRITES {
            let pair: Vec<u8> = (2 * w..2 * w + 2)
                .flat_map(|i| {
                    format!("GET /s/batch?n={i} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
                })
                .collect();
            stream.write_all(&pair).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
        started.elapsed()
    });
    let answered: Vec<u64> = (0..EVENTS)
        .map(|_| {
            reader
                .next()
                .expect("a response")
                .assert_accepted("in.gen.s.batch")
        })
        .collect();
    let sending = writer.join().unwrap();
    let delivered: Vec<u64> = sink
        .recv_raw(EVENTS, Duration::from_secs(10))
        .iter()
        .map(|e| envelope_id(e))
        .collect();
    assert_eq!(delivered, answered);
    let batches = handoffs(&server) - before;
    eprintln!(
        "flush interval {INTERVAL:?}: {EVENTS} pipelined events in {WRITES} writes over {sending:?}, {batches} hand-offs"
    );
    assert!(
        batches as usize <= EVENTS / 4,
        "{batches} hand-offs for {EVENTS} pipelined events (writes over {sending:?}): \
         more than one per 4 events, so the interval did not batch them"
    );
}

#[test]
fn ids_unique_over_four_cores_and_400k_events() {
    // 64 connections: SO_REUSEPORT spreads them by hash, and the chance
    // that one of four cores gets none is 4 * (3/4)^64, about 4e-8.
    const CONNS: usize = 64;
    const PER_CONN: usize = 6_250;
    const BATCH: usize = 250;
    let (server, sink) = server_and_sink(&["--cores", "4"]);
    let addr = server.addr;

    let receiver = std::thread::spawn(move || {
        let raw = sink.recv_raw(CONNS * PER_CONN, Duration::from_secs(20));
        raw.iter().map(|e| envelope_id(e)).collect::<Vec<_>>()
    });
    let clients: Vec<_> = (0..CONNS)
        .map(|_| {
            std::thread::spawn(move || {
                let conn = std::net::TcpStream::connect(addr).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                let mut writer = conn.try_clone().unwrap();
                let mut reader = ResponseReader::new(conn);
                let batch: Vec<u8> =
                    b"GET /affise/conversion/7?clickid=abc&payout=1.5 HTTP/1.1\r\nHost: t\r\n\r\n"
                        .repeat(BATCH);
                let mut ids = Vec::with_capacity(PER_CONN);
                for _ in 0..PER_CONN / BATCH {
                    writer.write_all(&batch).unwrap();
                    for _ in 0..BATCH {
                        ids.push(
                            reader
                                .next()
                                .unwrap()
                                .assert_accepted("in.gen.affise.conversion"),
                        );
                    }
                }
                ids
            })
        })
        .collect();
    let answered: Vec<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let delivered = receiver.join().unwrap();

    let answered_set: HashSet<u64> = answered.iter().copied().collect();
    assert_eq!(
        answered_set.len(),
        answered.len(),
        "duplicate ids in responses"
    );
    let delivered_set: HashSet<u64> = delivered.iter().copied().collect();
    assert_eq!(
        delivered_set.len(),
        delivered.len(),
        "duplicate ids at the consumer"
    );
    assert_eq!(
        answered_set, delivered_set,
        "every answered id delivered, nothing else"
    );

    let mut per_worker: HashMap<u64, usize> = HashMap::new();
    for id in &delivered {
        *per_worker.entry(worker(*id)).or_default() += 1;
    }
    let mut workers: Vec<u64> = per_worker.keys().copied().collect();
    workers.sort();
    assert_eq!(
        workers,
        [0, 1, 2, 3],
        "all four cores issued ids: {per_worker:?}"
    );
}
