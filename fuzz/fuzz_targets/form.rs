//! The form/query decoder: a query and a body decoded into one arena, as
//! for a request. Every text is UTF-8, every pair writes valid JSON, and a
//! key's fast tag is the tag of its text.

#![no_main]

use hookwire::ingest::form::{self, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first `?` splits a query from a body, as a request carries both.
    let (query, body) = match data.iter().position(|&b| b == b'?') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let mut params = Params::default();
    params.parse(query);
    params.parse(body);
    let mut out = Vec::from(&b"{\"_\":0"[..]);
    for p in &params.list {
        for r in [&p.key, &p.top, &p.sub, &p.value] {
            assert!(r.start <= r.end && r.end as usize <= params.arena.len());
            std::str::from_utf8(&params.arena[r.start as usize..r.end as usize])
                .expect("decoded text is UTF-8");
        }
        let key = params.text(&p.key);
        assert!(key.starts_with(params.text(&p.top)));
        assert_eq!(params.tag(&p.key), form::tag(key), "tag of {key:?}");
        params.write_pair(&mut out, p, true);
    }
    out.push(b'}');
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&out) {
        panic!("{e}: {}", String::from_utf8_lossy(&out));
    }
    // A decoder reused for the next request starts empty.
    params.clear();
    params.parse(body);
    assert!(params.list.len() <= body.len());
});
