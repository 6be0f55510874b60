//! The hot path makes no heap allocation in steady state: from the bytes of
//! a request in the connection's buffer to the envelope handed to ZeroMQ and
//! the response in the output buffer; on a reused connection and on a new
//! one per request (its state, registry entry and ring slot come from the
//! core's spares), with the default settings, in pipelined bursts, and in
//! durable mode, whose journal flush allocates only glommio's I/O.
//!
//! What is counted is hookwire's Rust code: the global allocator sees every
//! allocation Rust makes, not libzmq's. libzmq (C++) allocates each message
//! it is handed with its own `malloc` inside `zmq_msg_init_size`, one per
//! envelope and route, and frees it on its I/O thread; that is ZeroMQ's
//! cost, measured in `loadtest/README.md`, not a growth of hookwire's.
//!
//! A counting global allocator counts allocations made on this test's
//! thread while it drives the server's real connection handler
//! ([`Conn::process`] → [`Shard::handle`]) with a real ZeroMQ consumer.
//! Only the async read/write around `process` is left out (that is
//! glommio's, not the request path's), and so is the task glommio
//! allocates for each connection a core spawns (glommio's code, not
//! hookwire's).
//!
//! The last test counts in the running binary instead: its cores' own
//! count (`/metrics` `hookwire_core_allocations_total`), glommio's included,
//! over 80 000 keep-alive requests on the io_uring data path.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookwire::conn::budget::Budget;
use hookwire::conn::registry::Registry;
use hookwire::conn::{Conn, Step};
use hookwire::shard::Shard;

use common::{in_process, in_process_with, InProcess};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// This thread's allocations while counting: tests run in parallel,
    /// and one test's count must not take in another's.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = allocations();
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    allocations() - before
}

const GET: &[u8] = b"GET /affise/conversion/7?clickid=a1b2c3d4e5f6&payout=12.50&currency=USD&status=approved&goal=1&offer_id=42&pid=17&sub1=abc&sub2=def&sub3=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82&sub4=&sub5=x+y&ip=1.2.3.4&country=DE&ts=1700000000 HTTP/1.1\r\nHost: postback.example.com\r\nUser-Agent: Affise/1.0\r\nAccept: */*\r\n\r\n";

fn json_post() -> Vec<u8> {
    let body = br#"{"leads":{"status":[{"id":"25399013","name":"Lead title","old_status_id":"7039101","status_id":"142","price":"1000.50","responsible_user_id":"123123","last_modified":"1413554372","modified_user_id":"123123","created_user_id":"123123","date_create":"1413554349","pipeline_id":"1","account_id":"7039099","custom_fields":[{"id":"427183","name":"Checkbox","values":["1"]},{"id":"427271","name":"Date","values":["1412380800"]}]}]},"account":{"subdomain":"test","id":"7039099"},"uid":"12345678901234","projectId":9,"score":12.50,"tags":["a","b"],"ok":true,"n":null}"#;
    assert!(body.len() <= 1024);
    let mut raw = format!(
        "POST /amocrm/lead?src=hook HTTP/1.1\r\nHost: h\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nX-Forwarded-For: 203.0.113.9, 127.0.0.1\r\nCookie: a=b; uid=99999999999\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn steady_state_hot_path_does_not_allocate() {
    // The default settings: a 1 000-message send queue, which ZeroMQ keeps
    // room in as long as the consumer keeps up (the backlog path, which
    // copies the event, is not the steady state).
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process_with(&[]);
    assert_eq!(settings.sndhwm, 1_000, "the default send queue");
    let mut conn = hookwire::testing::conn(&settings);
    let post = json_post();

    // A consumer that keeps up, so ZeroMQ takes every event directly.
    const WARMUP: usize = 2_000;
    const MEASURED: usize = 10_000;
    let total = 2 * (WARMUP + MEASURED);
    let taken = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let taken = taken.clone();
        std::thread::spawn(move || {
            let mut envelopes = Vec::with_capacity(total);
            for _ in 0..total {
                envelopes.push(
                    pull.recv_bytes(0)
                        .expect("an envelope within 20 s of the previous one"),
                );
                taken.fetch_add(1, Ordering::Relaxed);
            }
            envelopes
        })
    };
    let mut sent = 0;

    let mut one = |conn: &mut Conn, shard: &mut Shard, raw: &[u8]| {
        keep_up(&taken, sent, 100);
        sent += 1;
        hookwire::testing::feed(conn, raw);
        let step = conn.process(shard);
        // What the core's flusher task does: hand the outbox to ZeroMQ (the
        // ticket the 200 waits for is then decided; nothing waits here).
        shard.flush_outbox();
        conn.waits.clear();
        assert_eq!(step, Step::More { completed: 1 });
        assert!(
            conn.out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&conn.out)
        );
        conn.out.clear();
    };

    // `testing::shard` waited for the PUSH socket to connect (an event sent
    // before would wait in the spool, and every later one behind it).
    assert_eq!(
        shard.fanout.status()[0].connected,
        1,
        "the consumer is connected"
    );
    // Warm-up: buffers grow to their working size.
    for _ in 0..WARMUP {
        one(&mut conn, &mut shard, GET);
        one(&mut conn, &mut shard, &post);
    }
    assert_eq!(
        shard.fanout.waiting(),
        0,
        "the consumer is connected after warm-up"
    );

    let get_allocs = allocations_in(|| {
        for _ in 0..MEASURED {
            one(&mut conn, &mut shard, GET);
        }
    });
    let post_allocs = allocations_in(|| {
        for _ in 0..MEASURED {
            one(&mut conn, &mut shard, &post);
        }
    });
    assert_eq!(shard.fanout.waiting(), 0, "nothing went to the backlog");

    let envelopes = consumer.join().unwrap();
    assert_eq!(envelopes.len(), total);
    // The measured requests really produced full envelopes.
    let last: serde_json::Value = serde_json::from_slice(envelopes.last().unwrap()).unwrap();
    assert_eq!(last["key"], "in.gen.amocrm.lead");
    assert_eq!(last["uid"], "12345678901234");
    assert_eq!(last["projectId"], 9);
    assert_eq!(last["td"]["ip"], "203.0.113.9");
    assert_eq!(last["data"]["score"], serde_json::json!(12.5));
    let get: serde_json::Value = serde_json::from_slice(&envelopes[2 * WARMUP]).unwrap();
    assert_eq!(get["data"]["sub3"], "привет");

    assert_eq!(get_allocs, 0, "allocations over {MEASURED} GET postbacks");
    assert_eq!(
        post_allocs, 0,
        "allocations over {MEASURED} 1 KiB JSON POSTs"
    );
}

/// `json_post` with its body compressed in `coding`.
fn compressed_post(coding: &str) -> Vec<u8> {
    let post = json_post();
    let at = post.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &post[at..];
    let packed = match coding {
        "gzip" => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut gz, body).unwrap();
            gz.finish().unwrap()
        }
        _ => zstd::bulk::compress(body, 3).unwrap(),
    };
    let head = String::from_utf8(post[..at].to_vec()).unwrap();
    let head = head.replace(
        &format!("Content-Length: {}\r\n", body.len()),
        &format!(
            "Content-Encoding: {coding}\r\nContent-Length: {}\r\n",
            packed.len()
        ),
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(&packed);
    raw
}

/// A compressed JSON POST decodes into the core's reused buffer with its
/// reused decoders: once they are made, none allocates.
#[test]
fn compressed_bodies_do_not_allocate_once_the_decoders_are_made() {
    const WARMUP: usize = 200;
    const MEASURED: usize = 2_000;
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process();
    let taken = Arc::new(AtomicUsize::new(0));
    let consumer = drain_consumer(pull, taken.clone());
    let mut conn = hookwire::testing::conn(&settings);
    let (gzip, zstd) = (compressed_post("gzip"), compressed_post("zstd"));
    let mut sent = 0;
    let mut send = |conn: &mut Conn, shard: &mut Shard, raw: &[u8]| {
        keep_up(&taken, sent, 100);
        accepted(conn, shard, raw, 1);
        sent += 1;
    };
    for _ in 0..WARMUP {
        send(&mut conn, &mut shard, &gzip);
        send(&mut conn, &mut shard, &zstd);
    }
    let gzip_allocs = allocations_in(|| {
        for _ in 0..MEASURED {
            send(&mut conn, &mut shard, &gzip);
        }
    });
    let zstd_allocs = allocations_in(|| {
        for _ in 0..MEASURED {
            send(&mut conn, &mut shard, &zstd);
        }
    });
    assert_eq!(shard.fanout.waiting(), 0, "nothing went to the backlog");
    assert_eq!(consumer.join().unwrap(), 2 * (WARMUP + MEASURED));
    assert_eq!(
        gzip_allocs, 0,
        "allocations over {MEASURED} gzip JSON POSTs"
    );
    assert_eq!(
        zstd_allocs, 0,
        "allocations over {MEASURED} zstd JSON POSTs"
    );
}

/// `n` GET postbacks, pipelined: one buffer's worth of requests.
fn burst(n: usize) -> Vec<u8> {
    GET.repeat(n)
}

/// A consumer that takes envelopes until none has come for 2 s, counting
/// them in `taken`; returns how many it took.
fn drain_consumer(pull: zmq::Socket, taken: Arc<AtomicUsize>) -> std::thread::JoinHandle<usize> {
    pull.set_rcvtimeo(2_000).unwrap();
    std::thread::spawn(move || {
        while pull.recv_bytes(0).is_ok() {
            taken.fetch_add(1, Ordering::Relaxed);
        }
        taken.load(Ordering::Relaxed)
    })
}

/// Waits (without allocating) until the consumer is at most `lead`
/// events behind the `sent` ones: a consumer that keeps up, so that
/// ZeroMQ's default send queue takes every event directly (without a
/// core's tasks running, an event ZeroMQ refuses would wait in the
/// backlog for good).
fn keep_up(taken: &AtomicUsize, sent: usize, lead: usize) {
    let mut spins = 0u64;
    while sent > taken.load(Ordering::Relaxed) + lead {
        std::thread::yield_now();
        spins += 1;
        assert!(
            spins < 5_000_000,
            "the consumer stopped at {} of {sent} events",
            taken.load(Ordering::Relaxed)
        );
    }
}

/// Answers the requests fed in `raw` (`n` of them) the way a core does in
/// accepted mode, and checks each got a 200.
fn accepted(conn: &mut Conn, shard: &mut Shard, raw: &[u8], n: usize) {
    hookwire::testing::feed(conn, raw);
    let step = conn.process(shard);
    shard.flush_outbox();
    conn.waits.clear();
    assert_eq!(step, Step::More { completed: n });
    assert_eq!(oks(&conn.out), n, "{}", String::from_utf8_lossy(&conn.out));
    conn.out.clear();
}

fn oks(out: &[u8]) -> usize {
    out.windows(17)
        .filter(|w| *w == b"HTTP/1.1 200 OK\r\n")
        .count()
}

/// The default settings (a 1 000-message send queue, no `--sndhwm`), one
/// request at a time and in pipelined bursts, on one reused connection.
#[test]
fn default_settings_and_pipelined_bursts_do_not_allocate() {
    const WARMUP: usize = 2_000;
    const MEASURED: usize = 10_000;
    const BURST: usize = 16;
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process_with(&[]);
    assert_eq!(settings.sndhwm, 1_000, "the default send queue");
    let taken = Arc::new(AtomicUsize::new(0));
    let consumer = drain_consumer(pull, taken.clone());
    let mut conn = hookwire::testing::conn(&settings);
    let pipelined = burst(BURST);
    let mut sent = 0;
    let mut send = |conn: &mut Conn, shard: &mut Shard, n: usize| {
        keep_up(&taken, sent, 0);
        let raw = if n == 1 { GET } else { &pipelined[..] };
        accepted(conn, shard, raw, n);
        sent += n;
    };
    for _ in 0..WARMUP {
        send(&mut conn, &mut shard, 1);
        send(&mut conn, &mut shard, BURST);
    }
    let single = allocations_in(|| {
        for _ in 0..MEASURED {
            send(&mut conn, &mut shard, 1);
        }
    });
    let bursts = allocations_in(|| {
        for _ in 0..MEASURED / BURST {
            send(&mut conn, &mut shard, BURST);
        }
    });
    assert_eq!(shard.fanout.waiting(), 0, "nothing went to the backlog");
    let delivered = consumer.join().unwrap();
    let sent = WARMUP * (1 + BURST) + MEASURED + MEASURED / BURST * BURST;
    assert_eq!(delivered, sent, "every event reached the consumer");
    assert_eq!(single, 0, "allocations over {MEASURED} GET postbacks");
    assert_eq!(
        bursts,
        0,
        "allocations over {} pipelined bursts of {BURST}",
        MEASURED / BURST
    );
}

/// `GET` as a sender that opens a connection per request sends it:
/// HTTP/1.1 with `Connection: close`, or HTTP/1.0.
fn one_shot(http10: bool) -> Vec<u8> {
    let get = std::str::from_utf8(GET).unwrap();
    let raw = match http10 {
        true => get.replace(" HTTP/1.1\r\n", " HTTP/1.0\r\n"),
        false => get.replace("Accept: */*\r\n", "Accept: */*\r\nConnection: close\r\n"),
    };
    assert_ne!(raw.as_bytes(), GET);
    raw.into_bytes()
}

/// A new connection per request, on both data paths, counted from the
/// connection's start to its end: its registry entry, its state
/// (`Conn::lazy` on the io_uring path, whose bytes arrive in the core's
/// ring; `Conn::new` on the poll path, which reads into its own buffer),
/// the request answered with `Connection: close`, and both dropped. The
/// buffers come from the core's spares, and go back to them.
#[test]
fn a_connection_per_request_does_not_allocate() {
    const WARMUP: usize = 1_000;
    const MEASURED: usize = 5_000;
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process_with(&[]);
    let taken = Arc::new(AtomicUsize::new(0));
    let consumer = drain_consumer(pull, taken.clone());
    let registry = Registry::with_capacity(16);
    let budget = Rc::new(Budget::new(settings.inflight_body_per_core()));
    let peer: std::net::IpAddr = std::net::Ipv4Addr::LOCALHOST.into();
    // What the ring hands a connection: a receive's bytes in one of its
    // buffers, parsed in place.
    let mut ring_buffer = vec![0u8; hookwire::conn::ring::BUF_SIZE];
    // The slot's send buffer, which the ring swaps with the connection's
    // output when it sends (`Ring::send`).
    let mut sending = Vec::new();
    let mut sent = 0;
    let mut connection = |shard: &mut Shard, raw: &[u8], ring: bool| {
        keep_up(&taken, sent, 100);
        sent += 1;
        let key = registry.register(-1);
        let step = if ring {
            let mut conn = Conn::lazy(peer, &settings, budget.clone());
            let data = &mut ring_buffer[..raw.len()];
            data.copy_from_slice(raw);
            let step = conn.feed(shard, data);
            shard.flush_outbox();
            conn.waits.clear();
            assert!(!conn.pending());
            sending.clear();
            std::mem::swap(&mut sending, &mut conn.out);
            check_close(&sending);
            step
        } else {
            let mut conn = Conn::new(peer, &settings, budget.clone());
            hookwire::testing::feed(&mut conn, raw);
            let step = conn.process(shard);
            shard.flush_outbox();
            conn.waits.clear();
            check_close(&conn.out);
            step
        };
        registry.unregister(key);
        assert_eq!(step, Step::Done { completed: 1 });
    };
    let (close, http10) = (one_shot(false), one_shot(true));
    let cases = [
        ("HTTP/1.1 Connection: close, io_uring path", &close, true),
        ("HTTP/1.0, io_uring path", &http10, true),
        ("HTTP/1.1 Connection: close, poll path", &close, false),
        ("HTTP/1.0, poll path", &http10, false),
    ];
    for _ in 0..WARMUP {
        for (_, raw, ring) in cases {
            connection(&mut shard, raw, ring);
        }
    }
    let counts = cases.map(|(_, raw, ring)| {
        allocations_in(|| {
            for _ in 0..MEASURED {
                connection(&mut shard, raw, ring);
            }
        })
    });
    assert_eq!(registry.open(), 0);
    assert_eq!(shard.fanout.waiting(), 0, "nothing went to the backlog");
    let delivered = consumer.join().unwrap();
    assert_eq!(delivered, cases.len() * (WARMUP + MEASURED));
    for ((what, ..), n) in cases.iter().zip(counts) {
        assert_eq!(n, 0, "allocations over {MEASURED} connections, {what}");
    }
}

/// A connection's only response: a 200 that closes it.
fn check_close(out: &[u8]) {
    let text = String::from_utf8_lossy(out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert_eq!(oks(out), 1, "{text}");
}

/// An acknowledged route (`--ack-endpoint`): each event is held until its
/// ack, and the acks are taken as the core takes the ack listener's
/// batches. Holding and acking reuse the route's arena, map and queues.
#[test]
fn acknowledged_routes_hold_and_take_acks_without_allocating() {
    const WARMUP: usize = 2_000;
    const MEASURED: usize = 10_000;
    const BURST: usize = 16;
    // The ack endpoint is never bound here (the listener belongs to the
    // server); the consumer thread hands the ids back instead.
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process_with(&[
        "--sndhwm",
        "100000",
        "--ack-endpoint",
        "*=tcp://127.0.0.1:1",
    ]);
    let (ids_tx, ids_rx) = std::sync::mpsc::channel::<u64>();
    let taken = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let taken = taken.clone();
        pull.set_rcvtimeo(2_000).unwrap();
        std::thread::spawn(move || {
            while let Ok(envelope) = pull.recv_bytes(0) {
                ids_tx.send(common::id_of(&envelope)).unwrap();
                taken.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut conn = hookwire::testing::conn(&settings);
    let pipelined = burst(BURST);
    let mut acks = Vec::with_capacity(1024);
    let mut sent = 0;
    let mut round = |conn: &mut Conn, shard: &mut Shard| {
        accepted(conn, shard, GET, 1);
        accepted(conn, shard, &pipelined, BURST);
        sent += 1 + BURST;
        keep_up(&taken, sent, 0);
        acks.clear();
        acks.extend(ids_rx.try_iter());
        shard.fanout.ack(0, &acks, 0, 0);
    };
    for _ in 0..WARMUP {
        round(&mut conn, &mut shard);
    }
    let n = allocations_in(|| {
        for _ in 0..MEASURED / (1 + BURST) {
            round(&mut conn, &mut shard);
        }
    });
    // Ids still in the channel are acked last; then nothing is held.
    acks.clear();
    acks.extend(ids_rx.try_iter());
    shard.fanout.ack(0, &acks, 0, 0);
    assert_eq!(shard.fanout.unacked(), 0, "every event was acked");
    assert_eq!(shard.fanout.waiting(), 0, "nothing went to the backlog");
    drop(conn);
    consumer.join().unwrap();
    assert_eq!(
        n, 0,
        "allocations over {MEASURED} events on an acknowledged route"
    );
}

/// Durable mode's write path: each 200 waits for its journal write, which
/// the core's flusher does for every request that came since the last one
/// (here: once per request, and once per burst). Driven on an executor, as
/// a core does: the request is appended to the journal, the flush writes
/// and syncs it, and the 200s are released. Neither the requests nor the
/// flush allocate in hookwire's code (the write jobs reuse the core's
/// list and each route's buffer): what a flush allocates is glommio's,
/// for the DMA buffer and for each write and sync it submits, measured
/// here by the same three calls on a file of the test's own.
#[test]
fn durable_mode_allocates_only_glommios_io_per_flush() {
    const WARMUP: usize = 200;
    const FLUSHES: usize = 300;
    const BURST: usize = 16;
    let InProcess {
        pull,
        settings,
        shard,
        context: _context,
    } = in_process_with(&["--ack", "durable"]);
    assert!(settings.durable);
    let journal = settings.spool_dir.clone();
    let consumer = drain_consumer(pull, Arc::new(AtomicUsize::new(0)));
    let (one, many, io) = glommio::LocalExecutor::default().run(async move {
        let mut shard = shard;
        let mut conn = hookwire::testing::conn(&settings);
        let spool = shard.fanout.spool.clone();
        let tickets = shard.tickets();
        let pipelined = burst(BURST);
        let durable = async |conn: &mut Conn, shard: &mut Shard, raw: &[u8], n: usize| {
            hookwire::testing::feed(conn, raw);
            assert_eq!(conn.process(shard), Step::More { completed: n });
            assert_eq!(conn.waits.len(), n, "every 200 waits for the journal");
            shard.flush_outbox();
            assert!(hookwire::spool::flush(&spool).await, "a journal write");
            conn.settle(shard, &tickets);
            assert_eq!(oks(&conn.out), n, "{}", String::from_utf8_lossy(&conn.out));
            conn.out.clear();
        };
        // glommio's part of a flush: a DMA buffer, a write and a sync.
        let file = glommio::io::DmaFile::create(settings.spool_dir.join("glommio-io"))
            .await
            .unwrap();
        let write_and_sync = async || {
            let buf = file.alloc_dma_buffer(4096);
            file.write_at(buf, 0).await.unwrap();
            file.fdatasync().await.unwrap();
        };
        for _ in 0..WARMUP {
            durable(&mut conn, &mut shard, GET, 1).await;
            durable(&mut conn, &mut shard, &pipelined, BURST).await;
            write_and_sync().await;
        }
        let before = allocations();
        COUNTING.with(|c| c.set(true));
        for _ in 0..FLUSHES {
            durable(&mut conn, &mut shard, GET, 1).await;
        }
        let middle = allocations();
        for _ in 0..FLUSHES {
            durable(&mut conn, &mut shard, &pipelined, BURST).await;
        }
        let after = allocations();
        for _ in 0..FLUSHES {
            write_and_sync().await;
        }
        COUNTING.with(|c| c.set(false));
        file.close().await.unwrap();
        (middle - before, after - middle, allocations() - after)
    });
    let delivered = consumer.join().unwrap();
    let _ = std::fs::remove_dir_all(journal);
    eprintln!(
        "durable: {one} allocations over {FLUSHES} flushes of 1 request, \
         {many} over {FLUSHES} flushes of {BURST}; glommio's DMA buffer, write \
         and sync: {io} over {FLUSHES}"
    );
    assert!(delivered > 0, "the events reached the consumer");
    // A flush allocates what glommio's three calls do, and nothing more:
    // one allocation of hookwire's per flush would add {FLUSHES}. (glommio's
    // own counts differ by up to a few dozen between runs, as its buffers
    // and queues grow now and then: the margin is half an allocation per
    // flush.)
    for (n, what) in [(one, "1 request"), (many, "16 pipelined requests")] {
        assert!(
            n <= io + FLUSHES as u64 / 2,
            "{n} allocations over {FLUSHES} durable flushes of {what}, \
             where glommio's I/O makes {io}"
        );
    }
}

/// With `[[source]]`s: a 4 KiB JSON webhook signed as GitHub signs it,
/// verified (HMAC-SHA256 over the body, two secrets while one is rolled,
/// a header and the delivery id copied into the envelope), a token
/// postback (the token checked and left out of `data`), and a GET to a
/// service no source matches: none allocates.
#[test]
fn verifying_signed_webhooks_does_not_allocate() {
    const WARMUP: usize = 2_000;
    const MEASURED: usize = 5_000;
    let dir = std::env::temp_dir().join(format!("hookwire-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sources.toml");
    std::fs::write(
        &config,
        "[[source]]\nservice = \"appsflyer\"\nverify = \"github\"\n\
         secrets = [\"old-secret\", \"new-secret\"]\nheaders = [\"X-GitHub-Event\"]\n\
         [[source]]\nservice = \"cpa\"\nverify = \"token\"\ntoken-param = \"secure\"\n\
         secrets = [\"t0ken\"]\nreply = \"text:OK\"\n",
    )
    .unwrap();
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process_with(&["--sndhwm", "100000", "--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let mut conn = hookwire::testing::conn(&settings);

    let sample: &[u8] = include_bytes!("../bench/samples/webhook_json.http");
    let split = memchr::memmem::find(sample, b"\r\n\r\n").unwrap();
    let body = &sample[split + 4..];
    assert!(body.len() > 3800, "a 4 KiB body");
    let key = hookwire::source::Key::new(hookwire::source::Algorithm::Sha256, b"new-secret");
    let mut hex = [0u8; 128];
    let mac = std::str::from_utf8(key.sign(&[body]).hex(&mut hex))
        .unwrap()
        .to_owned();
    let mut signed = sample[..split + 2].to_vec();
    signed.extend_from_slice(
        format!(
            "X-Hub-Signature-256: sha256={mac}\r\nX-GitHub-Event: install\r\n\
             X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\n\r\n"
        )
        .as_bytes(),
    );
    signed.extend_from_slice(body);
    let token: &[u8] =
        b"GET /cpa/conversion/7?clickid=a1b2&secure=t0ken&payout=12.50 HTTP/1.1\r\nHost: h\r\n\r\n";

    let total = WARMUP + 3 * MEASURED;
    let consumer = std::thread::spawn(move || {
        let mut last = Vec::new();
        for i in 0..total {
            let envelope = pull.recv_bytes(0).expect("an envelope within 20 s");
            if i % 3 == 0 || i + 3 >= total {
                last.push(envelope);
            }
        }
        last
    });
    let one = |conn: &mut Conn, shard: &mut Shard, raw: &[u8]| {
        hookwire::testing::feed(conn, raw);
        assert_eq!(conn.process(shard), Step::More { completed: 1 });
        shard.flush_outbox();
        conn.waits.clear();
        assert!(
            conn.out.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&conn.out)
        );
        conn.out.clear();
    };
    for i in 0..WARMUP {
        let raw = [&signed[..], token, GET][i % 3];
        one(&mut conn, &mut shard, raw);
    }
    let counts = [&signed[..], token, GET].map(|raw| {
        allocations_in(|| {
            for _ in 0..MEASURED {
                one(&mut conn, &mut shard, raw);
            }
        })
    });
    let kept = consumer.join().unwrap();
    let last =
        |n: usize| -> serde_json::Value { serde_json::from_slice(&kept[kept.len() - n]).unwrap() };
    // The last of each kind really verified, copied and hid what it should.
    let get = last(1);
    assert_eq!(get["key"], "in.gen.affise.conversion");
    assert!(get["td"].get("delivery").is_none());
    let [signed_allocs, token_allocs, get_allocs] = counts;
    assert_eq!(
        signed_allocs, 0,
        "allocations over {MEASURED} signed 4 KiB webhooks"
    );
    assert_eq!(
        token_allocs, 0,
        "allocations over {MEASURED} token postbacks"
    );
    assert_eq!(
        get_allocs, 0,
        "allocations over {MEASURED} GETs to a service without a source"
    );
    let metrics = &shard.metrics.counters.sources;
    assert_eq!(metrics.len(), 3, "two sources and `-`");
    assert_eq!(metrics[0].accepted as usize, WARMUP / 3 + MEASURED + 1);
    assert!(metrics.iter().all(|s| s.refused() == 0));
    let signed_envelope = kept
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(e).unwrap())
        .find(|e| e["key"] == "in.gen.appsflyer.install")
        .expect("a signed webhook's envelope");
    assert_eq!(
        signed_envelope["td"]["delivery"],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(
        signed_envelope["td"]["headers"]["x-github-event"],
        "install"
    );
    let token_envelope = kept
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(e).unwrap())
        .find(|e| e["key"] == "in.gen.cpa.conversion")
        .expect("a token postback's envelope");
    assert_eq!(
        token_envelope["data"],
        serde_json::json!({"clickid": "a1b2", "payout": "12.50"})
    );
}

#[test]
fn the_counter_sees_allocations() {
    // The instrument itself must be able to fail.
    let n = allocations_in(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}

/// The browser channel: an image pixel from a page that has its uid
/// cookie and one from a page that is given one, a tracked click
/// (target checked, macros filled, 302) and a credentialed CORS POST to a
/// source that lists origins: none allocates.
#[test]
fn pixels_clicks_and_cors_do_not_allocate() {
    const WARMUP: usize = 2_000;
    const MEASURED: usize = 5_000;
    let dir = std::env::temp_dir().join(format!("hookwire-alloc-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("sources.toml");
    std::fs::write(
        &config,
        "[[source]]\nservice = \"click\"\nredirect-allow = [\"offer.example\", \"*.shop.example\"]\n\
         cookie-domain = \".shop.example\"\n\
         [[source]]\nservice = \"shop\"\ncors-origins = [\"https://shop.example\"]\n",
    )
    .unwrap();
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process_with(&["--sndhwm", "100000", "--config", config.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let mut conn = hookwire::testing::conn(&settings);

    const BROWSER: &str = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36\r\nReferer: https://shop.example/thanks\r\n";
    let pixel = format!(
        "GET /affise/conversion/7.gif?clickid=a1b2c3&sum=12.50 HTTP/1.1\r\nHost: h\r\n{BROWSER}Cookie: _ga=1; uid=12345678901234\r\n\r\n"
    );
    let new_pixel =
        format!("GET /affise/conversion/7.gif?clickid=a1b2c3 HTTP/1.1\r\nHost: h\r\n{BROWSER}\r\n");
    let click = format!(
        "GET /click/go/3?sub1=spring%20sale&to=https%3A%2F%2Fa.shop.example%2Flp%3Fc%3D%7Bid%7D%26u%3D%7Buid%7D%26s%3D%7Bparam%3Asub1%7D HTTP/1.1\r\nHost: h\r\n{BROWSER}\r\n"
    );
    let body = br#"{"order":"A-17","sum":12.5}"#;
    let cors = format!(
        "POST /shop/order HTTP/1.1\r\nHost: h\r\n{BROWSER}Origin: https://shop.example\r\nContent-Type: application/json\r\nCookie: uid=12345678901234\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        std::str::from_utf8(body).unwrap()
    );
    let kinds: [(&[u8], &[u8]); 4] = [
        (pixel.as_bytes(), b"HTTP/1.1 200 OK\r\n"),
        (new_pixel.as_bytes(), b"HTTP/1.1 200 OK\r\n"),
        (click.as_bytes(), b"HTTP/1.1 302 Found\r\n"),
        (cors.as_bytes(), b"HTTP/1.1 200 OK\r\n"),
    ];

    let total = WARMUP + kinds.len() * MEASURED;
    let consumer = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for i in 0..total {
            let envelope = pull.recv_bytes(0).expect("an envelope within 20 s");
            if i >= total - 4 * MEASURED && (i - (total - 4 * MEASURED)) % MEASURED == 0 {
                kept.push(envelope);
            }
        }
        kept
    });
    let mut last = Vec::new();
    let one =
        |conn: &mut Conn, shard: &mut Shard, raw: &[u8], status: &[u8], last: &mut Vec<u8>| {
            hookwire::testing::feed(conn, raw);
            assert_eq!(conn.process(shard), Step::More { completed: 1 });
            shard.flush_outbox();
            conn.waits.clear();
            assert!(
                conn.out.starts_with(status),
                "{}",
                String::from_utf8_lossy(&conn.out)
            );
            last.clear();
            last.extend_from_slice(&conn.out);
            conn.out.clear();
        };
    for i in 0..WARMUP {
        let (raw, status) = kinds[i % kinds.len()];
        one(&mut conn, &mut shard, raw, status, &mut last);
    }
    let mut responses = Vec::new();
    let counts = kinds.map(|(raw, status)| {
        let n = allocations_in(|| {
            for _ in 0..MEASURED {
                one(&mut conn, &mut shard, raw, status, &mut last);
            }
        });
        responses.push(String::from_utf8_lossy(&last).into_owned());
        n
    });
    assert_eq!(shard.fanout.waiting(), 0, "nothing went to the backlog");
    let kept: Vec<serde_json::Value> = consumer
        .join()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_slice(e).unwrap())
        .collect();
    // Each kind really was what it says.
    assert_eq!(kept[0]["channel"], "pixel");
    assert_eq!(kept[0]["uid"], "12345678901234");
    assert!(responses[0].contains("Content-Type: image/gif\r\nContent-Length: 43\r\n"));
    assert!(!responses[0].contains("Set-Cookie"));
    assert_eq!(kept[1]["channel"], "pixel");
    assert!(
        responses[1].contains("Set-Cookie: uid="),
        "{}",
        responses[1]
    );
    assert_eq!(kept[2]["channel"], "redirect");
    assert!(
        responses[2].contains("Location: https://a.shop.example/lp?c="),
        "{}",
        responses[2]
    );
    assert!(
        responses[2].contains("&s=spring%20sale\r\n"),
        "{}",
        responses[2]
    );
    assert!(
        responses[2].contains("; Domain=.shop.example;"),
        "{}",
        responses[2]
    );
    assert_eq!(kept[3]["channel"], "http");
    assert!(
        responses[3].contains("Access-Control-Allow-Origin: https://shop.example\r\n"),
        "{}",
        responses[3]
    );
    let [pixel_allocs, new_pixel_allocs, click_allocs, cors_allocs] = counts;
    assert_eq!(pixel_allocs, 0, "allocations over {MEASURED} pixels");
    assert_eq!(
        new_pixel_allocs, 0,
        "allocations over {MEASURED} pixels that set the uid cookie"
    );
    assert_eq!(
        click_allocs, 0,
        "allocations over {MEASURED} click redirects"
    );
    assert_eq!(
        cors_allocs, 0,
        "allocations over {MEASURED} credentialed CORS POSTs"
    );
}

/// `hookwire_core_allocations_total` of core 0, from `/metrics`.
fn core_allocations(server: &common::Server) -> u64 {
    let (status, body) = common::admin_get(server.admin.unwrap(), "/metrics");
    assert_eq!(status, 200);
    let series = "hookwire_core_allocations_total{core=\"0\"} ";
    let line = body
        .lines()
        .find(|l| l.starts_with(series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"));
    line[series.len()..].parse().unwrap()
}

/// The running binary, on its default io_uring data path, with a real
/// consumer: its core's own allocation count (`/metrics`) stays far below
/// one per request while it answers 80 000 keep-alive GETs. What it counts
/// is glommio's executor arming its timers each time the core runs out of
/// work and sleeps (three per sleep), and the core's periodic ticks. A core
/// sleeps at most once per receive completion it waits for (a 4 KiB ring
/// buffer, or a connection's read), so the bound is four allocations per
/// possible receive plus twice the idle rate over the run; one allocation
/// per request would be four times that.
#[test]
fn the_running_binary_allocates_per_sleep_not_per_request() {
    use std::io::{Read, Write};
    const CONNS: usize = 4;
    /// Pipelined per connection and round trip: a round trip's events stay
    /// within ZeroMQ's default send queue, so none waits in the backlog.
    const PER: usize = 200;
    const ROUND_TRIPS: usize = 100;
    let endpoint = common::free_endpoint();
    let (taken, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let consumer = {
        let (taken, stop, endpoint) = (taken.clone(), stop.clone(), endpoint.clone());
        std::thread::spawn(move || {
            let sink = common::Sink::bind_at(&endpoint);
            sink.socket.set_rcvtimeo(100).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if sink.socket.recv_bytes(0).is_ok() {
                    taken.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let server = common::Server::start(&["--push", &endpoint, "--cores", "1"]);
    let mut conns: Vec<_> = (0..CONNS)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    // A short postback, so that a receive holds many of them.
    const SHORT: &[u8] =
        b"GET /affise/conversion/7?clickid=c1&payout=1.5 HTTP/1.1\r\nHost: h\r\n\r\n";
    let wire = SHORT.repeat(PER);
    let mut sent = 0;
    let mut round_trip = |conns: &mut Vec<std::net::TcpStream>| {
        for c in conns.iter_mut() {
            c.write_all(&wire).unwrap();
        }
        for c in conns.iter_mut() {
            let (mut buf, mut got) = (vec![0u8; 1 << 16], Vec::new());
            while oks(&got) < PER {
                let n = c.read(&mut buf).unwrap();
                assert!(n > 0, "closed after {} answers", oks(&got));
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(oks(&got), PER);
        }
        sent += CONNS * PER;
        // The consumer keeps up, so the next round trip finds room.
        common::eventually(Duration::from_secs(20), "the consumer to keep up", || {
            taken.load(Ordering::Relaxed) == sent
        });
    };
    // Warm-up: buffers, slots and queues grow to their working size.
    for _ in 0..20 {
        round_trip(&mut conns);
    }
    let idle_from = (core_allocations(&server), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let idle = core_allocations(&server) - idle_from.0;
    let idle_per_sec = idle as f64 / idle_from.1.elapsed().as_secs_f64();

    let (before, start) = (core_allocations(&server), Instant::now());
    for _ in 0..ROUND_TRIPS {
        round_trip(&mut conns);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allocations = core_allocations(&server) - before;
    let requests = ROUND_TRIPS * CONNS * PER;
    let receives = (requests * SHORT.len()).div_ceil(4096) + ROUND_TRIPS * CONNS;
    let bound = (4 * receives) as f64 + 2.0 * idle_per_sec * elapsed + 100.0;
    eprintln!(
        "{requests} keep-alive GETs in {elapsed:.2} s: {allocations} allocations on the core \
         ({:.4} per request); idle: {idle_per_sec:.0} per second; bound {bound:.0}",
        allocations as f64 / requests as f64
    );
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap();
    assert!(
        bound < requests as f64 / 4.0,
        "the bound ({bound:.0}) must stay far below one allocation per request ({requests})"
    );
    assert!(
        (allocations as f64) <= bound,
        "{allocations} allocations over {requests} requests, above {bound:.0}"
    );
}
