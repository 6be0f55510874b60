//! Microbenchmarks of each stage of a request's path, on the realistic
//! samples in `bench/samples/` (see `bench/samples.rs`). One iteration is
//! one event, so criterion's time is ns/event; throughput is in bytes/s of
//! the stage's input (the head for parse, the whole request for
//! decode+merge, the query or body for the decoders, the envelope for the
//! encoder).
//!
//! ```sh
//! cargo bench --bench stages            # every stage
//! cargo bench --bench pipeline          # request bytes in -> envelope to ZeroMQ -> response out
//! python3 bench/table.py                # ns/event, events/s and MB/s of the last runs
//! ```
//!
//! Only hookwire's public API is used; the per-core handler itself
//! (`Shard::handle`) is measured through `Conn` in `bench/pipeline.rs`.

mod samples;

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookwire::event::envelope::{self, Transport, Uid};
use hookwire::event::id::{self, IdGen};
use hookwire::event::RoutingKey;
use hookwire::http::client_ip::{self, AddressHeader};
use hookwire::http::request;
use hookwire::http::request::Request;
use hookwire::ingest::form::Params;
use hookwire::ingest::json::JsonBody;
use hookwire::ingest::route::{self, Path};
use hookwire::ingest::Ingest;
use ipnet::IpNet;
use samples::{all, Body, MAX_HEAD};

fn peer() -> IpAddr {
    "203.0.113.9".parse().unwrap()
}

fn trusted() -> Vec<IpNet> {
    // hookwire's default --trusted-proxy.
    vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
}

/// HTTP request head: httparse plus hookwire's header spans.
fn http_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("http_parse");
    for s in all() {
        group.throughput(Throughput::Bytes(s.head().len as u64));
        group.bench_with_input(BenchmarkId::from_parameter(s.name), &s.raw, |b, raw| {
            b.iter(|| request::parse(black_box(raw), MAX_HEAD).unwrap().unwrap())
        });
    }
    group.finish();
}

/// Query-string decoding (percent, `+`, `a[b]` keys) into the reused arena.
fn query_decode(c: &mut Criterion) {
    let mut params = Params::default();
    let mut group = c.benchmark_group("query_decode");
    for s in all() {
        let Some(query) = s.query() else { continue };
        group.throughput(Throughput::Bytes(query.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(s.name), query, |b, q| {
            b.iter(|| {
                params.clear();
                params.parse(black_box(q));
                params.list.len()
            })
        });
    }
    group.finish();
}

/// urlencoded body decoding.
fn form_decode(c: &mut Criterion) {
    let mut params = Params::default();
    let mut group = c.benchmark_group("form_decode");
    for s in all().into_iter().filter(|s| s.body == Body::Form) {
        let body = s.body_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(s.name), body, |b, body| {
            b.iter(|| {
                params.clear();
                params.parse(black_box(body));
                params.list.len()
            })
        });
    }
    group.finish();
}

/// JSON body: simd-json validation onto the reused tape, number checks,
/// top-level members and routing fields.
fn json_decode(c: &mut Criterion) {
    let mut json = JsonBody::default();
    let mut group = c.benchmark_group("json_decode");
    for s in all().into_iter().filter(|s| s.body == Body::Json) {
        let body = s.body_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(s.name), body, |b, body| {
            b.iter(|| json.parse(black_box(body)).unwrap())
        });
    }
    group.finish();
}

/// The floor the decoders are measured against: simd-json's `to_tape`
/// alone on a copy of each JSON body (it parses in place), and a plain
/// scan of each form body (every `&`, `=` and `%` found with `memchr3`).
fn floor(c: &mut Criterion) {
    let mut scratch = Vec::with_capacity(32 * 1024);
    let mut group = c.benchmark_group("floor");
    for s in all() {
        let body = s.body_bytes();
        group.throughput(Throughput::Bytes(body.len() as u64));
        match s.body {
            Body::Json => {
                let id = BenchmarkId::new("to_tape", s.name);
                group.bench_with_input(id, body, |b, body| {
                    b.iter(|| {
                        scratch.clear();
                        scratch.extend_from_slice(black_box(body));
                        simd_json::to_tape(&mut scratch).unwrap().0.len()
                    })
                });
            }
            Body::Form => {
                let id = BenchmarkId::new("scan", s.name);
                group.bench_with_input(id, body, |b, body| {
                    b.iter(|| memchr::memchr3_iter(b'&', b'=', b'%', black_box(body)).count())
                });
            }
            Body::None => {}
        }
    }
    group.finish();
}

/// Everything between a parsed head and the envelope: path routing, query
/// and body decoding, validation of name/projectId/uid, grouping, and the
/// merge into the members of `data` (body members the query does not
/// override, then the query's). For the JSON samples this is "JSON decode
/// and merge".
fn decode_merge(c: &mut Criterion) {
    let mut ingest = Ingest::default();
    let mut out = Vec::with_capacity(8192);
    let mut group = c.benchmark_group("decode_merge");
    for s in all() {
        let head = s.head();
        let req = Request {
            buf: &s.raw[..head.len],
            head: &head,
            body: s.body_bytes(),
            peer: peer(),
        };
        group.throughput(Throughput::Bytes(s.raw.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(s.name), |b| {
            b.iter(|| {
                let req = black_box(&req);
                let Ok(Path::Event(target)) = route::parse(req.buf, &req.head.path) else {
                    unreachable!("samples are events")
                };
                let fields = ingest.prepare(req, target).unwrap();
                out.clear();
                ingest.write_data(&mut out, req, &fields);
                out.len()
            })
        });
    }
    group.finish();
}

/// The envelope encoder alone: key, routing fields, `td`, the already
/// merged `data` members copied in, id and time. Throughput is envelope bytes.
fn envelope_encode(c: &mut Criterion) {
    let mut ingest = Ingest::default();
    let trusted = trusted();
    let mut out = Vec::with_capacity(8192);
    let mut group = c.benchmark_group("envelope_encode");
    for s in all() {
        let head = s.head();
        let req = Request {
            buf: &s.raw[..head.len],
            head: &head,
            body: s.body_bytes(),
            peer: peer(),
        };
        let Ok(Path::Event(target)) = route::parse(req.buf, &req.head.path) else {
            unreachable!()
        };
        let fields = ingest.prepare(&req, target).unwrap();
        let mut data = Vec::new();
        ingest.write_data(&mut data, &req, &fields);
        let text = |t| String::from_utf8(ingest.bytes(&req, t).to_vec()).unwrap();
        let mut key = RoutingKey::default();
        key.set(
            text(&fields.service).as_bytes(),
            text(&fields.name).as_bytes(),
        );
        let uid = fields.uid.as_ref().map(text);
        let td = Transport::of(
            &req,
            client_ip::resolve(&req, &trusted, AddressHeader::Auto),
        );
        let mut ids = IdGen::new(id::worker_id(0, 0));
        let mut time_text = id::MsText::default();
        let now = id::now_ms();
        // As the handler does: a generated uid takes an id of its own, the
        // id is formatted once (for the envelope and the 200's body), the
        // time once per millisecond.
        let mut encode = |out: &mut Vec<u8>| {
            let uid = match &uid {
                Some(u) => Uid::Given(u),
                None => Uid::Generated(ids.next(now)),
            };
            let id = ids.next(now);
            let mut id_text = itoa::Buffer::new();
            let h = envelope::Head {
                key: &key,
                channel: envelope::Channel::Http,
                project_id: fields.project_id,
                uid,
                id: id_text.format(id),
                time: time_text.get(id::time_of(id)),
            };
            envelope::encode(out, black_box(&h), black_box(&td), |o| {
                o.extend_from_slice(&data)
            });
        };
        out.clear();
        encode(&mut out);
        serde_json::from_slice::<serde_json::Value>(&out).expect("the envelope is JSON");
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(s.name), |b| {
            b.iter(|| {
                out.clear();
                encode(&mut out);
                out.len()
            })
        });
    }
    group.finish();
}

/// `td` from the head: peer, X-Real-IP/X-Forwarded-For when trusted, UA, host.
fn transport(c: &mut Criterion) {
    let trusted = trusted();
    let mut group = c.benchmark_group("transport");
    group.throughput(Throughput::Elements(1));
    for s in all().into_iter().filter(|s| s.name == "affise_get") {
        let head = s.head();
        let req = Request {
            buf: &s.raw[..head.len],
            head: &head,
            body: b"",
            peer: peer(),
        };
        group.bench_function(BenchmarkId::from_parameter(s.name), |b| {
            b.iter(|| {
                Transport::of(
                    black_box(&req),
                    client_ip::resolve(black_box(&req), &trusted, AddressHeader::Auto),
                )
            })
        });
    }
    group.finish();
}

/// Snowflake ids: the generator alone, and with the wall-clock read the
/// handler does per request.
fn id_gen(c: &mut Criterion) {
    let mut group = c.benchmark_group("id_gen");
    group.throughput(Throughput::Elements(1));
    let mut ids = IdGen::new(id::worker_id(0, 0));
    let mut now = id::now_ms();
    let mut n = 0u32;
    group.bench_function("next", |b| {
        b.iter(|| {
            // A new millisecond every 1000 ids, as at 1M events/s.
            n += 1;
            if n == 1000 {
                n = 0;
                now += 1;
            }
            ids.next(black_box(now))
        })
    });
    group.bench_function("now_ms+next", |b| b.iter(|| ids.next(id::now_ms())));
    group.finish();
}

criterion_group!(
    benches,
    http_parse,
    query_decode,
    form_decode,
    floor,
    json_decode,
    decode_merge,
    envelope_encode,
    transport,
    id_gen
);
criterion_main!(benches);
