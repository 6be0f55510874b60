//! The body decoders (gzip, deflate, zstd), on arbitrary bytes and on
//! arbitrary data compressed: output never passes the limit, compressed
//! data decodes to itself, and a reused decoder answers as a fresh one.

#![no_main]

use std::io::Write;

use hookwire::http::coding::{Bad, Coding, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let coding = match pick % 3 {
        0 => Coding::Gzip,
        1 => Coding::Deflate,
        _ => Coding::Zstd,
    };
    // Limits from a few bytes to past what the inputs decode to.
    let max = 1usize << (pick / 3 % 20);
    let mut decoder = Decoder::default();
    let first = decoder.decode(coding, rest, max).map(<[u8]>::to_vec);
    if let Ok(out) = &first {
        assert!(
            out.len() <= max,
            "{} bytes decoded under a limit of {max}",
            out.len()
        );
    }
    // The same decoder, after other data, answers alike.
    let packed = compress(coding, rest);
    match decoder.decode(coding, &packed, max) {
        Ok(out) => assert_eq!(out, rest, "round trip"),
        Err(Bad::TooLarge) => assert!(rest.len() > max),
        Err(e) => panic!("own {coding:?} data refused: {e:?}"),
    }
    decoder.settle();
    let again = decoder.decode(coding, rest, max).map(<[u8]>::to_vec);
    assert_eq!(
        format!("{first:?}"),
        format!("{again:?}"),
        "a reused decoder"
    );
});

fn compress(coding: Coding, data: &[u8]) -> Vec<u8> {
    match coding {
        Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Coding::Zstd => zstd::bulk::compress(data, 1).unwrap(),
    }
}
