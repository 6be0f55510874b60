//! HMAC-SHA256 of a 4 KiB webhook body, ns per event: RustCrypto's
//! `hmac` + `sha2` (what hookwire's sources use, through
//! `hookwire::source::Key`) beside ring's, the comparison that chose it.
//! Each signs `id.timestamp.body` with a key prepared once, as a
//! Standard Webhooks check does.
//!
//! `cargo bench --bench hmac`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookwire::source::{Algorithm, Key};

const SECRET: &[u8] = b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID: &[u8] = b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.";

fn hmac(c: &mut Criterion) {
    let body = vec![b'x'; 4096];
    let mut group = c.benchmark_group("hmac_sha256");
    group.throughput(Throughput::Bytes((ID.len() + body.len()) as u64));
    let rustcrypto = Key::new(Algorithm::Sha256, SECRET);
    group.bench_with_input(BenchmarkId::new("rustcrypto", "4KiB"), &body, |b, body| {
        b.iter(|| rustcrypto.sign(&[black_box(ID), black_box(body)]))
    });
    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET);
    group.bench_with_input(BenchmarkId::new("ring", "4KiB"), &body, |b, body| {
        b.iter(|| {
            let mut ctx = ring::hmac::Context::with_key(&ring_key);
            ctx.update(black_box(ID));
            ctx.update(black_box(body));
            ctx.sign()
        })
    });
    // Both compute the same MAC.
    let mut ctx = ring::hmac::Context::with_key(&ring_key);
    ctx.update(ID);
    ctx.update(&body);
    assert_eq!(
        ctx.sign().as_ref(),
        rustcrypto.sign(&[ID, &body]).as_bytes()
    );
    group.finish();
}

criterion_group!(benches, hmac);
criterion_main!(benches);
