//! Arbitrary bytes on one connection, in reads of a size the input picks:
//! head, framing, chunked and compressed bodies, routing, decoding and the
//! envelope, exactly as the I/O loop drives them. Every pass answers in
//! HTTP, and a connection that closes has said why.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    common::with_core(|settings, shard| {
        let mut conn = hookwire::testing::conn(settings);
        common::drive(&mut conn, shard, bytes, usize::from(piece));
        shard.fanout.discard_outbox();
    });
});
