//! The hot path makes no heap allocation in steady state: from the bytes of
//! a request in the connection's buffer to the envelope handed to ZeroMQ and
//! the response in the output buffer.
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
//! glommio's, not the request path's).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use hookwire::conn::{Conn, Step};
use hookwire::shard::Shard;

use common::{in_process, InProcess};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
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
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
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
    // A send queue deep enough that ZeroMQ takes every event directly: the
    // backlog path (which copies the event) is not the steady state.
    let InProcess {
        pull,
        settings,
        mut shard,
        context: _context,
    } = in_process();
    let mut conn = hookwire::testing::conn(&settings);
    let post = json_post();

    // A consumer that keeps up, so ZeroMQ takes every event directly.
    const WARMUP: usize = 2_000;
    const MEASURED: usize = 10_000;
    let total = 2 * (WARMUP + MEASURED);
    let consumer = std::thread::spawn(move || {
        let mut envelopes = Vec::with_capacity(total);
        for _ in 0..total {
            envelopes.push(
                pull.recv_bytes(0)
                    .expect("an envelope within 20 s of the previous one"),
            );
        }
        envelopes
    });

    let one = |conn: &mut Conn, shard: &mut Shard, raw: &[u8]| {
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

#[test]
fn the_counter_sees_allocations() {
    // The instrument itself must be able to fail.
    let n = allocations_in(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}
