//! The request head parser plus routing, on arbitrary bytes; a head that
//! parses must parse the same whether its bytes came at once or in two
//! reads (a prefix of it is "need more", never an error).

#![no_main]

use hookwire::http::request;
use hookwire::ingest::route;
use libfuzzer_sys::fuzz_target;

const MAX_HEAD: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let whole = request::parse(data, MAX_HEAD);
    let Ok(Some(head)) = whole else {
        return;
    };
    assert!(head.len <= data.len() && head.len <= MAX_HEAD);
    let buf = &data[..head.len];
    let within = |s: &request::Span| s.start <= s.end && s.end as usize <= head.len;
    assert!(within(&head.path));
    for s in [
        &head.query,
        &head.content_type,
        &head.content_encoding,
        &head.user_agent,
        &head.referer,
        &head.host,
        &head.forwarded_host,
        &head.real_ip,
        &head.forwarded_for,
        &head.request_headers,
    ]
    .into_iter()
    .flatten()
    .chain(head.forwarded.iter())
    .chain(head.cookies.iter())
    {
        assert!(within(s), "span {s:?} outside a head of {}", head.len);
    }
    // The bytes of one head arriving in two reads.
    for cut in 0..head.len {
        match request::parse(&data[..cut], MAX_HEAD) {
            Ok(None) => {}
            other => panic!("prefix of {cut} bytes: {other:?}, whole: a head"),
        }
    }
    // The same head alone (nothing after it) parses alike.
    let alone = request::parse(buf, MAX_HEAD).unwrap().unwrap();
    assert_eq!(alone.len, head.len);
    if let Ok(route::Path::Event(t)) = route::parse(buf, &head.path) {
        assert!(within(&t.service));
        assert!(route::valid_name(request::at(buf, &t.service)));
        for s in [&t.name, &t.project_id].into_iter().flatten() {
            assert!(within(s) && !s.is_empty());
        }
    }
});
