//! Instruction counts per event, for callgrind: runs one sample through
//! the request path (head parse → decode → envelope in the core's outbox →
//! response bytes) `N` times and exits. `bench/callgrind.sh` counts the
//! instructions inside `Conn::process` for two values of `N` and divides
//! the difference by the events between them.
//!
//! `cargo bench --bench count -- SAMPLE N`
//!
//! With `--stage decode` it runs only the JSON or form decode and merge
//! (what `stages`' `decode_merge` times) in `decode_pass`, and with
//! `--stage floor` simd-json's `to_tape` on a copy of the body in
//! `floor_pass`, so the two compare in instructions.

mod samples;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use hookwire::http::request::Request;
use hookwire::ingest::route::{self, Path};
use hookwire::ingest::Ingest;
use hookwire::testing;

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let stage = match args.iter().position(|a| a == "--stage") {
        Some(i) if i + 1 < args.len() => {
            let stage = args.remove(i + 1);
            args.remove(i);
            Some(stage)
        }
        _ => None,
    };
    let (Some(name), Some(n)) = (args.first(), args.get(1)) else {
        eprintln!("usage: count SAMPLE N (samples: {})", names());
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N is a count");
    let sample = samples::all()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sample {name}; samples: {}", names()));
    match stage.as_deref() {
        None => {}
        Some("decode") => return decode_pass(&sample, n),
        Some("floor") => return floor_pass(&sample, n),
        Some(other) => {
            eprintln!("unknown --stage {other}: decode or floor");
            std::process::exit(2);
        }
    }
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

/// The body's decode and merge into `data`, `n` times.
#[inline(never)]
fn decode_pass(sample: &samples::Sample, n: usize) {
    let mut ingest = Ingest::default();
    let mut out = Vec::with_capacity(64 * 1024);
    let head = sample.head();
    let req = Request {
        buf: &sample.raw[..head.len],
        head: &head,
        body: sample.body_bytes(),
        peer: IpAddr::from([203, 0, 113, 7]),
        client_cert: hookwire::tls::ClientCert::NONE,
    };
    for _ in 0..n {
        let req = black_box(&req);
        let Ok(Path::Event(target)) = route::parse(req.buf, &req.head.path) else {
            panic!("{} is not an event", sample.name)
        };
        let fields = ingest.prepare(req, target).expect("the sample is valid");
        out.clear();
        ingest.write_data(&mut out, req, &fields);
        black_box(out.len());
    }
}

/// The floor `stages` measures decoders against, `n` times: simd-json's
/// `to_tape` alone on a copy of a JSON body, a `memchr3` scan of a form.
#[inline(never)]
fn floor_pass(sample: &samples::Sample, n: usize) {
    let body = sample.body_bytes();
    let mut scratch = Vec::with_capacity(body.len());
    for _ in 0..n {
        match sample.body {
            samples::Body::Json => {
                scratch.clear();
                scratch.extend_from_slice(black_box(body));
                black_box(
                    simd_json::to_tape(&mut scratch)
                        .expect("valid JSON")
                        .0
                        .len(),
                );
            }
            samples::Body::Form => {
                black_box(memchr::memchr3_iter(b'&', b'=', b'%', black_box(body)).count());
            }
            samples::Body::None => {}
        }
    }
}
