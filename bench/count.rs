//! Instruction counts per event, for callgrind: runs one sample through
//! the request path (head parse → decode → envelope in the core's outbox →
//! response bytes) `N` times and exits. `bench/callgrind.sh` counts the
//! instructions inside `Conn::process` for two values of `N` and divides
//! the difference by the events between them.
//!
//! `cargo bench --bench count -- SAMPLE N`

mod samples;

use std::sync::Arc;

use hookwire::testing;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(name), Some(n)) = (args.first(), args.get(1)) else {
        eprintln!("usage: count SAMPLE N (samples: {})", names());
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N is a count");
    let sample = samples::all()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sample {name}; samples: {}", names()));
    let context = zmq::Context::new();
    let pull = context.socket(zmq::PULL).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = pull.get_last_endpoint().unwrap().unwrap();
    let settings = Arc::new(hookwire::testing::settings(&endpoint));
    let mut shard = testing::shard(settings.clone()).unwrap();
    let mut conn = hookwire::testing::conn(&settings);
    for _ in 0..n {
        testing::feed(&mut conn, sample.raw);
        conn.process(&mut shard);
        assert_eq!(shard.fanout.discard_outbox(), 1, "one envelope per request");
        assert!(conn.out.starts_with(b"HTTP/1.1 200 OK\r\n"));
        conn.waits.clear();
        conn.out.clear();
    }
}

fn names() -> String {
    samples::all()
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}
