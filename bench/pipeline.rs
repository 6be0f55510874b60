//! The whole in-process pipeline on the realistic samples (bench/samples/,
//! see bench/samples.rs): request bytes in the connection buffer → head
//! parse, decode, envelope → handed to a real ZeroMQ PUSH socket (drained
//! by a PULL consumer thread) → response bytes out. One iteration is one
//! event (ns/event); throughput is request bytes/s. The per-stage benches
//! (parse, decode, merge, encode, ids) are in bench/stages.rs.
//!
//! Two groups: `to_envelope` stops at the envelope bytes in the core's
//! outbox ("request bytes in → envelope bytes out": head parse,
//! route, decode, merge, ids, envelope, response; the outbox is dropped
//! instead of sent), `pipeline` goes on through the hand-off to ZeroMQ.
//! A third, `content_coding`, is `to_envelope` on the 4 KiB JSON webhook
//! sent plain, gzip and zstd: what decoding a compressed body adds.
//!
//! As in the server, events reach ZeroMQ in batches: the core's flusher
//! task hands its outbox over once the connections that were ready together
//! have run, so here the outbox is flushed every [`BATCH`] events. The
//! bench thread is pinned to the first CPU and libzmq's I/O thread and the
//! consumer to the last one when there are two or more, so the figure is
//! one core's work (libzmq's I/O thread, which writes the batches to TCP,
//! is measured with the whole process in loadtest/).
//!
//! A third group, `signed_webhook`, times the 4 KiB JSON webhook unsigned
//! and signed as GitHub signs it, to a source that verifies it.
//!
//! `acks` times the Affise GET through the whole pipeline on a plain route
//! and on an acknowledged one (`--ack-endpoint`), whose consumer acks every
//! id: the core's cost of holding each event and taking its ack.
//!
//! `browser` times one browser's request three ways, up to the envelope in
//! the outbox: a plain GET (the JSON 200), the same GET as an image pixel
//! (`.gif`: the GIF) and as a tracked click (`to=` checked against
//! `redirect-allow`, its macros filled: the 302).
//!
//! `cargo bench --bench pipeline`

mod samples;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookwire::conn::{Conn, Step};
use hookwire::metrics::Metrics;
use hookwire::shard::Shard;

/// Events per hand-off to ZeroMQ.
const BATCH: usize = 16;

/// Pins the calling thread (and the threads it starts later) to `cpu`.
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read
    // and write the set passed by reference.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pipeline(c: &mut Criterion) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The consumer and libzmq's I/O thread (started with the first socket)
    // inherit this affinity.
    pin(cpus - 1);
    let context = zmq::Context::new();
    let pull = context.socket(zmq::PULL).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = pull.get_last_endpoint().unwrap().unwrap();
    std::thread::spawn(move || while pull.recv_bytes(0).is_ok() {});

    let settings = Arc::new(hookwire::testing::settings(&endpoint));
    let mut shard = hookwire::testing::shard(settings.clone()).unwrap();
    let mut conn = hookwire::testing::conn(&settings);
    pin(0);

    let mut group = c.benchmark_group("pipeline");
    for s in samples::all() {
        check_one(&mut conn, &mut shard, s.name, s.raw);
        group.throughput(Throughput::Bytes(s.raw.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(s.name), s.raw, |b, raw| {
            let mut n = 0;
            b.iter(|| {
                hookwire::testing::feed(&mut conn, raw);
                conn.process(&mut shard);
                n += 1;
                if n % BATCH == 0 {
                    // The core's flusher task's part: the outbox to ZeroMQ.
                    shard.flush_outbox();
                    conn.waits.clear();
                }
                let len = conn.out.len();
                conn.out.clear();
                len
            })
        });
        shard.flush_outbox();
        conn.waits.clear();
        // Every event went to ZeroMQ: none waits in the backlog or spool,
        // so what was timed is the hand-off, not the spool.
        assert_eq!(shard.fanout.waiting(), 0, "{}: events left waiting", s.name);
    }
    group.finish();

    // The same path up to the envelope bytes in the core's outbox
    // ("request bytes in → envelope bytes out"): everything above but
    // the hand-off to ZeroMQ, whose outbox is dropped instead of sent.
    let mut group = c.benchmark_group("to_envelope");
    for s in samples::all() {
        group.throughput(Throughput::Bytes(s.raw.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(s.name), s.raw, |b, raw| {
            b.iter(|| {
                hookwire::testing::feed(&mut conn, raw);
                conn.process(&mut shard);
                assert_eq!(shard.fanout.discard_outbox(), 1, "one envelope per request");
                conn.waits.clear();
                let len = conn.out.len();
                conn.out.clear();
                len
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("content_coding");
    let plain = samples::all()
        .into_iter()
        .find(|s| s.name == "webhook_json_4k")
        .expect("the JSON webhook sample");
    for coding in ["identity", "gzip", "zstd"] {
        let raw = compressed(&plain, coding);
        check_one(&mut conn, &mut shard, coding, &raw);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(coding), &raw, |b, raw| {
            b.iter(|| {
                hookwire::testing::feed(&mut conn, raw);
                conn.process(&mut shard);
                assert_eq!(shard.fanout.discard_outbox(), 1, "one envelope per request");
                conn.waits.clear();
                let len = conn.out.len();
                conn.out.clear();
                len
            })
        });
    }
    group.finish();
}

/// A sample with its body compressed in `coding` (as senders do: gzip at
/// its default level, zstd at 3) and `Content-Encoding` saying so.
fn compressed(sample: &samples::Sample, coding: &str) -> Vec<u8> {
    let body = sample.body_bytes();
    let packed = match coding {
        "identity" => return sample.raw.to_vec(),
        "gzip" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut gz, body).unwrap();
            gz.finish().unwrap()
        }
        _ => zstd::bulk::compress(body, 3).unwrap(),
    };
    let head = std::str::from_utf8(&sample.raw[..sample.head().len]).unwrap();
    let mut raw = String::new();
    for line in head.trim_end().lines() {
        if !line.to_ascii_lowercase().starts_with("content-length:") {
            raw.push_str(line);
            raw.push_str("\r\n");
        }
    }
    raw.push_str(&format!(
        "Content-Encoding: {coding}\r\nContent-Length: {}\r\n\r\n",
        packed.len()
    ));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&packed);
    raw
}

/// The 4 KiB JSON webhook, unsigned (no `[[source]]`) and signed as
/// GitHub signs (`X-Hub-Signature-256`, a source that verifies it and
/// copies a header and the delivery id into the envelope): what verifying
/// costs per event, up to the envelope in the outbox.
fn signed(c: &mut Criterion) {
    let context = zmq::Context::new();
    let pull = context.socket(zmq::PULL).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = pull.get_last_endpoint().unwrap().unwrap();
    std::thread::spawn(move || while pull.recv_bytes(0).is_ok() {});
    let config = std::env::temp_dir().join(format!("hookwire-bench-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[[source]]\nservice = \"appsflyer\"\nverify = \"github\"\nsecrets = [\"bench-secret\"]\nheaders = [\"X-GitHub-Event\"]\n",
    )
    .unwrap();
    let unsigned = samples::all()
        .into_iter()
        .find(|s| s.name == "webhook_json_4k")
        .expect("the 4 KiB JSON sample");
    let body = unsigned.body_bytes();
    let key = hookwire::source::Key::new(hookwire::source::Algorithm::Sha256, b"bench-secret");
    let mut hex = [0u8; 128];
    let mac = std::str::from_utf8(key.sign(&[body]).hex(&mut hex))
        .unwrap()
        .to_owned();
    let head_end = unsigned.head().len - 2;
    let mut signed = unsigned.raw[..head_end].to_vec();
    signed.extend_from_slice(
        format!(
            "X-Hub-Signature-256: sha256={mac}\r\nX-GitHub-Event: install\r\n\
             X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\n\r\n"
        )
        .as_bytes(),
    );
    signed.extend_from_slice(body);

    let mut group = c.benchmark_group("signed_webhook");
    for (name, raw, extra) in [
        ("unsigned_4k", unsigned.raw, None),
        ("signed_4k", &signed[..], Some(&config)),
    ] {
        let mut args = vec!["--sndhwm", "100000"];
        if let Some(config) = extra {
            args.extend_from_slice(&["--config", config.to_str().unwrap()]);
        }
        let settings = Arc::new(hookwire::testing::settings_with(&endpoint, &args));
        let mut shard = hookwire::testing::shard(settings.clone()).unwrap();
        let mut conn = hookwire::testing::conn(&settings);
        check_one(&mut conn, &mut shard, name, raw);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), raw, |b, raw| {
            b.iter(|| {
                hookwire::testing::feed(&mut conn, raw);
                conn.process(&mut shard);
                assert_eq!(shard.fanout.discard_outbox(), 1, "one envelope per request");
                conn.waits.clear();
                let len = conn.out.len();
                conn.out.clear();
                len
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_file(config);
}

/// A browser's GET (a returning visitor: its uid cookie is sent) as a
/// plain event, an image pixel and a tracked click, to one shard whose
/// `click` source allows redirects to `*.shop.example`.
fn browser(c: &mut Criterion) {
    let context = zmq::Context::new();
    let pull = context.socket(zmq::PULL).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = pull.get_last_endpoint().unwrap().unwrap();
    std::thread::spawn(move || while pull.recv_bytes(0).is_ok() {});
    let config = std::env::temp_dir().join(format!(
        "hookwire-bench-browser-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        "[[source]]\nservice = \"click\"\nredirect-allow = [\"offer.example\", \"*.shop.example\"]\n",
    )
    .unwrap();
    let args = ["--sndhwm", "100000", "--config", config.to_str().unwrap()];
    let settings = Arc::new(hookwire::testing::settings_with(&endpoint, &args));
    let mut shard = hookwire::testing::shard(settings.clone()).unwrap();
    let mut conn = hookwire::testing::conn(&settings);
    let _ = std::fs::remove_file(config);

    let headers = "Host: hooks.example\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n\
        Accept: image/avif,image/webp,image/apng,image/*,*/*;q=0.8\r\n\
        Referer: https://www.shop.example/checkout/thanks\r\n\
        Cookie: _ga=GA1.2.1234567890.1700000000; uid=7534950524404105216\r\n\r\n";
    let query = "clickid=a1b2c3d4e5f6&sum=12.50&currency=USD&sub1=spring%20sale";
    let to = "https%3A%2F%2Fwww.shop.example%2Flp%3Fclick%3D%7Bid%7D%26u%3D%7Buid%7D%26s%3D%7Bparam%3Asub1%7D";
    let cases = [
        (
            "plain_get",
            format!("GET /click/conversion/7?{query} HTTP/1.1\r\n{headers}"),
            &b"HTTP/1.1 200 OK\r\n"[..],
        ),
        (
            "pixel",
            format!("GET /click/conversion/7.gif?{query} HTTP/1.1\r\n{headers}"),
            b"HTTP/1.1 200 OK\r\n",
        ),
        (
            "redirect",
            format!("GET /click/conversion/7?{query}&to={to} HTTP/1.1\r\n{headers}"),
            b"HTTP/1.1 302 Found\r\n",
        ),
    ];
    let mut group = c.benchmark_group("browser");
    for (name, raw, status) in &cases {
        let raw = raw.as_bytes();
        check_status(&mut conn, &mut shard, name, raw, status);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), raw, |b, raw| {
            b.iter(|| {
                hookwire::testing::feed(&mut conn, raw);
                conn.process(&mut shard);
                assert_eq!(shard.fanout.discard_outbox(), 1, "one envelope per request");
                conn.waits.clear();
                let len = conn.out.len();
                conn.out.clear();
                len
            })
        });
    }
    group.finish();
}

/// Before timing a sample: one request of it is accepted with a 200 and
/// one envelope (a sample that is refused would time the error path).
fn check_one(conn: &mut Conn, shard: &mut Shard, name: &str, raw: &[u8]) {
    check_status(conn, shard, name, raw, b"HTTP/1.1 200 OK\r\n");
}

/// [`check_one`] for a sample answered with `status`.
fn check_status(conn: &mut Conn, shard: &mut Shard, name: &str, raw: &[u8], status: &[u8]) {
    hookwire::testing::feed(conn, raw);
    assert_eq!(conn.process(shard), Step::More { completed: 1 }, "{name}");
    assert!(
        conn.out.starts_with(status),
        "{name}: {}",
        String::from_utf8_lossy(&conn.out)
    );
    assert_eq!(shard.fanout.outbox_events(), 1, "{name}: one envelope");
    shard.flush_outbox();
    conn.waits.clear();
    conn.out.clear();
}

/// What the hot path records per request: four TSC reads and two
/// histogram samples in the handler, the counters, and (per read/write
/// batch, so once per request without pipelining) two clock reads and the
/// request-latency sample in the connection.
fn record_metrics(c: &mut Criterion) {
    let mut m = Metrics::default();
    let clock = quanta::Clock::new();
    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record_one_request", |b| {
        b.iter(|| {
            let read_at = std::time::Instant::now();
            let t0 = clock.raw();
            let t1 = clock.raw();
            m.decode.record_raw(&clock, t0, t1);
            let t2 = clock.raw();
            m.handoff.record_raw(&clock, t2, clock.raw());
            m.counters.events_accepted += 1;
            m.counters.response(hookwire::http::Status::Ok);
            m.counters.bytes_in += 300;
            m.counters.bytes_out += 180;
            m.request.record(std::time::Instant::now() - read_at);
        })
    });
    group.bench_function("clock_read", |b| b.iter(std::time::Instant::now));
    group.bench_function("tsc_read", |b| b.iter(|| clock.raw()));
    group.bench_function("histogram_record", |b| {
        b.iter(|| {
            m.request
                .record(std::time::Duration::from_nanos(std::hint::black_box(
                    12_345,
                )))
        })
    });
    group.finish();
}

/// The Affise GET to ZeroMQ on a plain route, and on an acknowledged one
/// whose consumer thread reads each envelope's id and hands it back; the
/// bench thread takes those acks every [`BATCH`] events, as the core takes
/// the ack listener's batches between connections.
fn acked(c: &mut Criterion) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let raw = samples::all()
        .into_iter()
        .find(|s| s.name == "affise_get")
        .expect("the Affise sample")
        .raw;
    let mut group = c.benchmark_group("acks");
    group.throughput(Throughput::Elements(1));
    for name in ["plain", "acked"] {
        pin(cpus - 1);
        let context = zmq::Context::new();
        let pull = context.socket(zmq::PULL).unwrap();
        pull.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = pull.get_last_endpoint().unwrap().unwrap();
        let (ids_tx, ids) = std::sync::mpsc::channel::<u64>();
        std::thread::spawn(move || {
            while let Ok(envelope) = pull.recv_bytes(0) {
                let at = memchr::memmem::find(&envelope, br#""id":""#).expect("an id") + 6;
                let digits = envelope[at..].iter().take_while(|b| b.is_ascii_digit());
                let id = digits.fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if ids_tx.send(id).is_err() {
                    break;
                }
            }
        });
        // Bound only by the server's listener, which this bench does not
        // start: the acks come back through the channel above.
        let mut args = vec!["--sndhwm", "100000"];
        if name == "acked" {
            args.extend_from_slice(&["--ack-endpoint", "*=tcp://127.0.0.1:1"]);
        }
        let settings = Arc::new(hookwire::testing::settings_with(&endpoint, &args));
        let mut shard = hookwire::testing::shard(settings.clone()).unwrap();
        let mut conn = hookwire::testing::conn(&settings);
        pin(0);
        let mut batch = Vec::with_capacity(4096);
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                hookwire::testing::feed(&mut conn, raw);
                conn.process(&mut shard);
                n += 1;
                if n % BATCH == 0 {
                    shard.flush_outbox();
                    conn.waits.clear();
                    batch.clear();
                    batch.extend(ids.try_iter());
                    if name == "acked" {
                        shard.fanout.ack(0, &batch, 0, 0);
                    }
                }
                let len = conn.out.len();
                conn.out.clear();
                len
            })
        });
        shard.flush_outbox();
        std::thread::sleep(std::time::Duration::from_millis(200));
        batch.clear();
        batch.extend(ids.try_iter());
        if name == "acked" {
            shard.fanout.ack(0, &batch, 0, 0);
            // Every event was acked: what was timed is a hold and an ack.
            assert_eq!(shard.fanout.unacked(), 0, "events left unacked");
        }
        assert_eq!(shard.fanout.waiting(), 0, "{name}: events left waiting");
    }
    group.finish();
}

criterion_group!(benches, pipeline, signed, acked, browser, record_metrics);
criterion_main!(benches);
