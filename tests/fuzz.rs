//! Mutated requests against the real binary: whatever arrives, the server
//! stays up, answers only well-formed HTTP/1.1 responses (an error always
//! with its JSON body), never hangs, and emits exactly one envelope per
//! 200 that names an event, and none for anything else.
//!
//! Deterministic (a fixed seed) and bounded (a fixed number of cases, each
//! on its own connection, half-closed after the request so the server
//! ends it). `HOOKWIRE_FUZZ_SEED` and `HOOKWIRE_FUZZ_CASES` explore further
//! by hand; a failure prints the seed and the case's bytes.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::*;

/// xorshift64*: enough randomness for mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid requests of every kind the server takes, to mutate.
const SEEDS: &[&[u8]] = &[
    b"GET /affise/conversion/7?clickid=5f8a3b&payout=12.50&sub2=adset%2077&sub3=%D0%BF&sub5=x+y&a[b]=1&t[]=1&t[]=2 HTTP/1.1\r\nHost: p\r\nUser-Agent: Affise\r\nCookie: uid=42\r\n\r\n",
    b"POST /crm/deal/3 HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: 61\r\n\r\n{\"name\":\"lead\",\"n\":-1.5e3,\"a\":[1,{\"b\":\"\\u00e9\"}],\"c\":null}",
    b"POST /crm?name=deal HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 31\r\n\r\nleads[add][0][id]=7&x=caf%E9&y",
    b"POST /s/n HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n4\r\na=1&\r\n3;e=1\r\nb=2\r\n0\r\nX-T: 1\r\n\r\n",
    b"POST /s/n HTTP/1.1\r\nHost: p\r\nExpect: 100-continue\r\nContent-Type: application/json; charset=windows-1251\r\nContent-Length: 12\r\n\r\n{\"k\":\"\xcf\xf0\xe8\"}",
    b"GET http://example.com/s/n?x=1 HTTP/1.1\r\nHost: p\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.1\r\n\r\nGET /s/n/1?y=2 HTTP/1.0\r\n\r\n",
    b"OPTIONS /s/n HTTP/1.1\r\nOrigin: https://a\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: p\r\n\r\n",
];

/// Bytes that matter to some part of the parser.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r\n\r\n",
    b" ",
    b"%",
    b"%ZZ",
    b"%E9",
    b"+",
    b"&",
    b"=",
    b"[",
    b"]",
    b"[]",
    b"?",
    b"/",
    b"//",
    b"{",
    b"}",
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud800",
    b",",
    b":",
    b"\x00",
    b"\xff",
    b"\xfe\xff",
    b"\xef\xbb\xbf",
    b"http://h",
    b";",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"-9223372036854775809",
    b"1e400",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Type: application/json\r\n",
    b"Content-Type: text/plain; charset=utf-16\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"name=",
    b"projectId=",
    b"uid=",
    b"[[[[[[[[",
    b"99999999999999999999999",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at.min(end)..end);
            }
            3 => {
                let end = (at + 1 + rng.below(32)).min(b.len());
                let copy = b[at.min(end)..end].to_vec();
                b.splice(at..at, copy);
            }
            4 => b.truncate(at),
            _ => {
                let i = at.min(b.len().saturating_sub(1));
                if let Some(x) = b.get_mut(i) {
                    *x = rng.next() as u8;
                }
            }
        }
    }
    b
}

/// One response from `buf` at `at`: (status, body, where the next starts),
/// or why the bytes are not one.
fn response(buf: &[u8], at: usize) -> Result<(u16, Vec<u8>, usize), String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    let head = match r.parse(&buf[at..]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("a response cut short".into()),
        Err(e) => return Err(format!("not an HTTP response: {e}")),
    };
    if r.version != Some(1) {
        return Err("not HTTP/1.1".into());
    }
    let status = r.code.unwrap();
    let length = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .unwrap()
                .parse::<usize>()
                .unwrap()
        });
    let length = match (status, length) {
        (100 | 204, None) => 0,
        (_, Some(n)) => n,
        (_, None) => return Err(format!("{status} without Content-Length")),
    };
    let start = at + head;
    let body = buf
        .get(start..start + length)
        .ok_or("a body cut short")?
        .to_vec();
    Ok((status, body, start + length))
}

/// Why the server may end a case without answering: the bytes sent stop
/// before the end of their first request, so the server is still waiting
/// for the rest when the client half-closes. `None`: the first request is
/// complete (or malformed, which is also decided from the bytes sent), so
/// it must be answered. Mirrors the server's framing: an httparse head
/// (request-line bytes ≥ 0x80 masked, as the server parses them), then a
/// `Content-Length` or chunked body.
fn incomplete(wire: &[u8]) -> Option<&'static str> {
    if wire.is_empty() {
        return Some("nothing sent");
    }
    let mut masked = wire.to_vec();
    let line = masked
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(masked.len());
    for b in &mut masked[..line] {
        if *b >= 0x80 {
            *b = b'~';
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head = match req.parse(&masked) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Some("head cut short"),
        Err(_) => return None,
    };
    let body = &wire[head..];
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    if has("transfer-encoding") {
        return chunked_incomplete(body);
    }
    let lengths: Vec<&[u8]> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value)
        .collect();
    match lengths.as_slice() {
        [one] => match std::str::from_utf8(one).ok()?.trim().parse::<usize>() {
            Ok(n) if body.len() < n => Some("body shorter than its Content-Length"),
            _ => None,
        },
        _ => None,
    }
}

/// `Some` when a chunked body stops before its last chunk and trailers end.
fn chunked_incomplete(mut body: &[u8]) -> Option<&'static str> {
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return Some("chunk size line cut short");
        };
        let size = body[..eol].split(|&b| b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(size).ok()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        body = &body[eol + 2..];
        if size == 0 {
            // Trailers: header lines up to an empty one.
            loop {
                let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
                    return Some("trailers cut short");
                };
                if eol == 0 {
                    return None;
                }
                body = &body[eol + 2..];
            }
        }
        if body.len() < size.checked_add(2)? {
            return Some("chunk cut short");
        }
        body = &body[size + 2..];
    }
}

#[test]
fn mutated_requests_never_crash_hang_or_lose_an_event() {
    let seed: u64 = std::env::var("HOOKWIRE_FUZZ_SEED").map_or(0x5eed_cafe, |s| s.parse().unwrap());
    let cases: usize = std::env::var("HOOKWIRE_FUZZ_CASES").map_or(10_000, |s| s.parse().unwrap());
    let (mut server, sink) = server_and_sink(&["--max-body", "64KiB"]);
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut accepted = HashSet::new();
    let mut statuses = std::collections::BTreeMap::new();
    let mut unanswered = std::collections::BTreeMap::new();
    let mut previous = String::from("no case");
    for case in 0..cases {
        let original = SEEDS[rng.below(SEEDS.len())];
        // Every hundredth case is a seed as it is: a server that stopped
        // answering (rather than crashing or hanging) fails here.
        let wire = if case % 100 == 0 {
            SEEDS[0].to_vec()
        } else {
            mutate(&mut rng, original)
        };
        let shown = || {
            format!(
                "seed {seed}, case {case}: {:?}",
                String::from_utf8_lossy(&wire)
            )
        };
        let Ok(mut conn) = std::net::TcpStream::connect(server.addr) else {
            let status = server.child.try_wait().unwrap();
            panic!("cannot connect (server status {status:?}) after {previous}");
        };
        previous = shown();
        conn.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        // The server may close first (a framing error): a refused write is fine.
        let _ = conn.write_all(&wire);
        let _ = conn.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        if let Err(e) = conn.read_to_end(&mut got) {
            // A reset after an error response is fine; a timeout is a hang.
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "no end within 15 s ({e}), after {:?}: {}",
                String::from_utf8_lossy(&got),
                shown()
            );
        }
        // Silence is an answer only to bytes that stop before the end of
        // their first request.
        if got.is_empty() {
            let why = incomplete(&wire)
                .unwrap_or_else(|| panic!("no answer to a complete request: {}", shown()));
            *unanswered.entry(why).or_insert(0usize) += 1;
        }
        let mut at = 0;
        while at < got.len() {
            let (status, body, next) = response(&got, at).unwrap_or_else(|why| {
                panic!("{why} in {:?}: {}", String::from_utf8_lossy(&got), shown())
            });
            *statuses.entry(status).or_insert(0usize) += 1;
            if status >= 400 {
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| panic!("{status} without a JSON body: {}", shown()));
                assert!(
                    v["error"].is_string() && v["message"].is_string(),
                    "{status} body {v}: {}",
                    shown()
                );
            }
            if status == 200 {
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|_| panic!("200 without a JSON body: {}", shown()));
                if let Some(id) = v["id"].as_str() {
                    assert!(accepted.insert(id.to_owned()), "id {id} twice: {}", shown());
                }
            }
            at = next;
        }
        if case % 100 == 0 {
            let answered = response(&got, 0)
                .ok()
                .filter(|(status, body, _)| *status == 200 && body.starts_with(b"{\"key\""));
            assert!(
                answered.is_some(),
                "an unmutated seed was not answered 200: {:?}, {}",
                String::from_utf8_lossy(&got),
                shown()
            );
        }
        if case % 500 == 499 {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "the server died: {}",
                shown()
            );
        }
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server died"
    );
    // One envelope per accepted event, valid JSON, and nothing else.
    let mut delivered = HashSet::new();
    while let Some(mut frames) = sink.recv_frames(Duration::from_millis(1500)) {
        let v: serde_json::Value =
            serde_json::from_slice(&frames.pop().unwrap()).expect("an envelope is JSON");
        let id = v["id"].as_str().expect("an envelope has an id").to_owned();
        assert!(delivered.insert(id.clone()), "envelope {id} twice");
    }
    let lost: Vec<_> = accepted.difference(&delivered).collect();
    let extra: Vec<_> = delivered.difference(&accepted).collect();
    eprintln!(
        "fuzz: seed {seed}, {cases} cases, responses by status {statuses:?}, {} envelopes, \
         unanswered (incomplete requests) {unanswered:?}",
        delivered.len()
    );
    // Each silence was justified above by the bytes sent; cutting a request
    // short (a truncation, or a deletion that breaks its framing) stays a
    // minority of the mutations.
    let silent: usize = unanswered.values().sum();
    assert!(
        silent < cases * 3 / 10,
        "{silent} of {cases} cases got no answer: {unanswered:?}"
    );
    assert!(lost.is_empty(), "200s without an envelope: {lost:?}");
    assert!(extra.is_empty(), "envelopes without a 200: {extra:?}");
    assert!(
        accepted.len() > cases / 20,
        "too few cases were accepted to mean much"
    );
}
