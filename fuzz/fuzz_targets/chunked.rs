//! The chunked decoder: a body measured whole and split at every offset
//! (the walk resumed where the first read left it) gives one answer, and a
//! complete body decodes in place to what a plain reading of the chunks
//! gives.

#![no_main]

use hookwire::http::chunked::{self, Measured, Progress};
use libfuzzer_sys::fuzz_target;

const MAX_TRAILERS: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, body)) = data.split_first() else {
        return;
    };
    // Some bodies over the limit, most within it.
    let max_body = usize::from(limit) * 16;
    let whole = chunked::measure(body, &mut Progress::default(), max_body, MAX_TRAILERS);
    // Every offset for small bodies; a stride keeps large ones quick.
    let stride = 1 + body.len() / 1024;
    for cut in (0..=body.len()).step_by(stride) {
        let mut progress = Progress::default();
        match chunked::measure(&body[..cut], &mut progress, max_body, MAX_TRAILERS) {
            Ok(None) => {}
            Ok(Some(m)) => {
                assert_eq!(whole.as_ref().ok().copied().flatten(), Some(m), "cut {cut}");
                continue;
            }
            Err(e) => {
                assert!(whole.is_err(), "cut {cut}: {e:?}, whole: {whole:?}");
                continue;
            }
        }
        let resumed = chunked::measure(body, &mut progress, max_body, MAX_TRAILERS);
        assert_eq!(
            format!("{resumed:?}"),
            format!("{whole:?}"),
            "resumed after {cut} bytes"
        );
    }
    let Ok(Some(m)) = whole else {
        return;
    };
    assert!(m.wire <= body.len() && m.body <= max_body && m.body <= m.wire);
    let mut copy = body.to_vec();
    chunked::decode_in_place(&mut copy, m);
    assert_eq!(&copy[..m.body], &reference(body, m)[..]);
});

/// The chunks' data, read one size line at a time with httparse.
fn reference(body: &[u8], m: Measured) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let (consumed, size) = match httparse::parse_chunk_size(&body[pos..]) {
            Ok(httparse::Status::Complete(c)) => c,
            other => panic!("measured {m:?}, but at {pos}: {other:?}"),
        };
        if size == 0 {
            return out;
        }
        let start = pos + consumed;
        out.extend_from_slice(&body[start..start + size as usize]);
        pos = start + size as usize + 2;
    }
}
