//! End-to-end tests of the HTTP/1.1 layer: the real binary, raw bytes over
//! real TCP, envelopes read from a real ZeroMQ PULL socket.
//!
//! Sections: chunked bodies · `Expect: 100-continue` · pipelining and
//! keep-alive · HTTP/1.0 and `Connection: close` · requests split at every
//! byte · framing errors (never an envelope) · size limits · timeouts ·
//! methods · isolation between connections.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers: building requests, reading raw bytes, checking for a closed socket.
// ---------------------------------------------------------------------------

/// One chunk: lowercase hex size, optional `;extension`, data, CRLF.
fn chunk(data: &str, extension: &str) -> String {
    format!("{:x}{extension}\r\n{data}\r\n", data.len())
}

/// Reads one byte at a time until the blank line that ends a head, so that
/// nothing after it is consumed.
fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "connection ended inside a response head ({other:?}): {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    head
}

/// Reads until at least `n` bytes have arrived.
fn read_at_least(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "EOF after {} bytes: {:?}",
                out.len(),
                String::from_utf8_lossy(&out)
            ),
            Ok(k) => out.extend_from_slice(&chunk[..k]),
            Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&out)),
        }
    }
    out
}

/// Asserts that the server closes the connection without sending anything
/// more (EOF or reset within 5 s).
fn assert_closed(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "expected close, got more bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("expected the server to close the connection, got {e}"),
    }
}

/// Reads one response from `reader` and asserts the server then closes.
fn next_then_closed(reader: &mut ResponseReader) -> Response {
    let resp = reader.next().expect("a response before close");
    assert_closed(&mut reader.stream);
    resp
}

/// The envelope's `id` as a number.
fn envelope_id(envelope: &Value) -> u64 {
    envelope["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("decimal id")
}

/// Sends one good request on a new connection and asserts that it is the
/// next envelope the sink gets, i.e. nothing was emitted before it.
fn assert_marker_is_next(server: &Server, sink: &Sink, case: &str) {
    let id = server
        .get(&format!("/marker/m?case={case}"))
        .assert_accepted("in.gen.marker.m");
    let envelope = sink.recv();
    assert_eq!(
        envelope["key"], "in.gen.marker.m",
        "an envelope was emitted for case {case}: {envelope}"
    );
    assert_eq!(envelope["data"], json!({ "case": case }));
    assert_eq!(envelope_id(&envelope), id);
}

// ---------------------------------------------------------------------------
// 1. Chunked request bodies
// ---------------------------------------------------------------------------

#[test]
fn chunked_json_body_with_extensions_and_trailers() {
    let (server, sink) = server_and_sink(&[]);
    // Chunk boundaries fall inside a string, a number and a key; sizes in
    // lowercase, uppercase and zero-padded hex; extensions with and without
    // values; two trailer fields.
    let mut wire = String::new();
    wire += &chunk(r#"{"order":"A-"#, ";name=value");
    wire += &chunk(r#"17","amount":1"#, "");
    wire += "000B;ext\r\n2.5,\"tags\":\r\n"; // 11 bytes
    wire += &chunk(r#"["x","y"],"ok":true}"#, r#";q="quoted;string""#);
    wire += "0\r\nX-Checksum: 9f2c\r\nX-Other: 1\r\n\r\n";
    let raw = chunked_request(
        "/shop/order/7",
        "Content-Type: application/json\r\n",
        wire.as_bytes(),
    );

    let id = server.request(&raw).assert_accepted("in.gen.shop.order");
    let envelope = sink.recv();
    assert_eq!(envelope_id(&envelope), id);
    assert_eq!(envelope["projectId"], 7);
    assert_eq!(
        envelope["data"],
        json!({"order": "A-17", "amount": 12.5, "tags": ["x", "y"], "ok": true})
    );
}

#[test]
fn chunked_form_body() {
    let (server, sink) = server_and_sink(&[]);
    // `%2B` is split across two chunks: the body is decoded as a whole.
    let mut wire = String::new();
    wire += &chunk("phone=%2", ";a=1");
    wire += &chunk("B7+999&status=paid&tags[]=a", "");
    wire += &chunk("&tags[]=b&lead[source]=ads", "");
    wire += "0\r\n\r\n";
    let raw = chunked_request(
        "/crm/lead",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        wire.as_bytes(),
    );

    server.request(&raw).assert_accepted("in.gen.crm.lead");
    let envelope = sink.recv();
    assert_eq!(
        envelope["data"],
        json!({"phone": "+7 999", "status": "paid", "tags": ["a", "b"], "lead": {"source": "ads"}})
    );
}

#[test]
fn chunked_body_then_pipelined_request_on_same_connection() {
    // The chunked body, its trailers included, is consumed exactly: the
    // request right behind it in the same write is read correctly.
    let (server, sink) = server_and_sink(&[]);
    let wire = format!("{}0\r\nX-T: 1\r\n\r\n", chunk(r#"{"n":1}"#, ""));
    let mut raw = chunked_request(
        "/svc/first",
        "Content-Type: application/json\r\n",
        wire.as_bytes(),
    );
    raw.extend_from_slice(b"GET /svc/second?n=2 HTTP/1.1\r\nHost: test\r\n\r\n");

    let responses = server.exchange(&raw, 2);
    let first = responses[0].assert_accepted("in.gen.svc.first");
    let second = responses[1].assert_accepted("in.gen.svc.second");
    let mut got: Vec<Value> = (0..2).map(|_| sink.recv()).collect();
    got.sort_by_key(envelope_id);
    assert_eq!(envelope_id(&got[0]), first);
    assert_eq!(got[0]["data"], json!({"n": 1}));
    assert_eq!(envelope_id(&got[1]), second);
    assert_eq!(got[1]["data"], json!({"n": "2"}));
}

// ---------------------------------------------------------------------------
// 2. Expect: 100-continue
// ---------------------------------------------------------------------------

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Sends only the head, expects `100 Continue`, then sends the body and
/// returns the final response.
fn expect_continue_exchange(stream: &mut TcpStream, head: &[u8], body: &[u8]) -> Response {
    stream.write_all(head).unwrap();
    let interim = read_head(stream);
    assert_eq!(
        interim,
        CONTINUE,
        "got {:?}",
        String::from_utf8_lossy(&interim)
    );
    stream.write_all(body).unwrap();
    ResponseReader::new(stream.try_clone().unwrap())
        .next()
        .expect("final response")
}

#[test]
fn expect_continue_with_content_length() {
    let (server, sink) = server_and_sink(&[]);
    let body = br#"{"call":"c-1","duration":42}"#;
    let head = format!(
        "POST /calltrack/call/3 HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = server.connect();
    // Twice on one connection: each request gets its own 100.
    for _ in 0..2 {
        let id = expect_continue_exchange(&mut stream, head.as_bytes(), body)
            .assert_accepted("in.gen.calltrack.call");
        let envelope = sink.recv();
        assert_eq!(envelope_id(&envelope), id);
        assert_eq!(envelope["data"], json!({"call": "c-1", "duration": 42}));
    }
}

#[test]
fn expect_continue_with_chunked_body() {
    let (server, sink) = server_and_sink(&[]);
    let head = "POST /calltrack/call HTTP/1.1\r\nHost: test\r\nexpect: 100-Continue\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n";
    let wire = format!("{}{}0\r\n\r\n", chunk("a=1&", ""), chunk("b=2", ""));
    let mut stream = server.connect();
    expect_continue_exchange(&mut stream, head.as_bytes(), wire.as_bytes())
        .assert_accepted("in.gen.calltrack.call");
    assert_eq!(sink.recv()["data"], json!({"a": "1", "b": "2"}));
}

#[test]
fn expect_continue_is_not_answered_for_http10() {
    // RFC 9110 §10.1.1: no 100 (Continue) to an HTTP/1.0 client.
    let (server, sink) = server_and_sink(&[]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"POST /calltrack/call HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(b"a=1").unwrap();
    let mut reader = ResponseReader::new(stream);
    next_then_closed(&mut reader).assert_accepted("in.gen.calltrack.call");
    assert_eq!(sink.recv()["data"], json!({"a": "1"}));
}

#[test]
fn expect_continue_over_max_body_gets_413_not_100() {
    let (server, sink) = server_and_sink(&["--max-body", "1KiB", "--cores", "1"]);
    let head = "POST /calltrack/call HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n";
    let mut stream = server.connect();
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = ResponseReader::new(stream);
    let resp = next_then_closed(&mut reader);
    resp.assert_error(413, "body_too_large");
    assert_eq!(resp.header("connection"), Some("close"));
    assert_marker_is_next(&server, &sink, "continue-413");
}

// ---------------------------------------------------------------------------
// 3–4. Pipelining and keep-alive
// ---------------------------------------------------------------------------

#[test]
fn hundred_pipelined_requests_in_one_write() {
    let (server, sink) = server_and_sink(&[]);
    let mut raw = Vec::new();
    for i in 0..100 {
        if i % 2 == 0 {
            raw.extend_from_slice(
                format!("GET /pipe/e{i}?n={i} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
            );
        } else {
            let body = format!(r#"{{"n":{i}}}"#);
            raw.extend_from_slice(&post_request(
                &format!("/pipe/e{i}"),
                "Content-Type: application/json\r\n",
                body.as_bytes(),
            ));
        }
    }
    let responses = server.exchange(&raw, 100);

    // In request order (each key names its request), ids increasing: one
    // connection is served by one core.
    let mut ids = Vec::new();
    for (i, resp) in responses.iter().enumerate() {
        ids.push(resp.assert_accepted(&format!("in.gen.pipe.e{i}")));
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );

    let mut envelopes: Vec<Value> = (0..100).map(|_| sink.recv()).collect();
    envelopes.sort_by_key(envelope_id);
    for (i, (envelope, id)) in envelopes.iter().zip(&ids).enumerate() {
        assert_eq!(envelope_id(envelope), *id);
        assert_eq!(envelope["name"], format!("e{i}"));
        let n = if i % 2 == 0 {
            json!(i.to_string())
        } else {
            json!(i)
        };
        assert_eq!(envelope["data"], json!({ "n": n }));
    }
    sink.assert_quiet(Duration::from_millis(100));
}

/// Both data paths (`--io uring`, the default where the kernel has it, and
/// `--io poll`) say which runs on the start-up line and serve the same
/// bytes alike: 600 pipelined GETs in one write (they span the ring's
/// 4 KiB buffers, so requests are cut between receives, and their answers
/// more than one send holds, so some wait for room), then a 20 KB
/// JSON body sent in three writes (copied into the connection's own
/// buffer), every event at the sink.
#[test]
fn both_data_paths_serve_split_and_pipelined_requests() {
    for io in ["uring", "poll"] {
        let (server, sink) = server_and_sink(&["--io", io, "--cores", "1"]);
        let running = match io {
            "uring" if !hookwire::conn::ring::supported() => "poll",
            io => io,
        };
        let line = server
            .banner
            .iter()
            .find(|l| l.starts_with("listen http://"))
            .expect("the listen line");
        assert!(line.ends_with(&format!(" io={running}")), "{io}: {line}");

        let mut raw = Vec::new();
        for i in 0..600 {
            raw.extend_from_slice(
                format!("GET /paths/p{i}?n={i}&pad=xxxxxxxxxxxx HTTP/1.1\r\nHost: test\r\n\r\n")
                    .as_bytes(),
            );
        }
        assert!(raw.len() > 2 * 4096);
        // Their answers (about 200 bytes each) pass one send's limit.
        const { assert!(600 * 200 > hookwire::conn::MAX_OUT) };
        let mut stream = server.connect();
        let mut reader = ResponseReader::new(stream.try_clone().unwrap());
        stream.write_all(&raw).unwrap();
        for i in 0..600 {
            reader
                .next()
                .expect("a response")
                .assert_accepted(&format!("in.gen.paths.p{i}"));
        }
        let body = format!(r#"{{"big":"{}"}}"#, "y".repeat(20_000));
        let req = post_request(
            "/paths/big",
            "Content-Type: application/json\r\n",
            body.as_bytes(),
        );
        let thirds = [&req[..5000], &req[5000..13000], &req[13000..]];
        for part in thirds {
            stream.write_all(part).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        reader
            .next()
            .expect("a response")
            .assert_accepted("in.gen.paths.big");
        let got = sink.recv_raw(601, Duration::from_secs(10));
        assert_eq!(got.len(), 601, "{io}: events at the sink");
        sink.assert_quiet(Duration::from_millis(100));
    }
}

#[test]
fn ten_thousand_requests_on_one_keep_alive_connection() {
    const TOTAL: usize = 10_000;
    // ~27 KiB per write: requests straddle the server's 16 KiB read buffer.
    const BATCH: usize = 500;
    let (server, sink) = server_and_sink(&[]);
    let stream = server.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = ResponseReader::new(stream);

    let mut ids = Vec::with_capacity(TOTAL);
    for batch in 0..TOTAL / BATCH {
        let mut raw = Vec::new();
        for j in 0..BATCH {
            let n = batch * BATCH + j;
            if n % 2 == 0 {
                raw.extend_from_slice(
                    format!("GET /load/hit?n={n} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
                );
            } else {
                raw.extend_from_slice(&post_request("/load/hit", "", format!("n={n}").as_bytes()));
            }
        }
        writer.write_all(&raw).unwrap();
        for _ in 0..BATCH {
            let resp = reader
                .next()
                .unwrap_or_else(|| panic!("connection closed after {} responses", ids.len()));
            ids.push(resp.assert_accepted("in.gen.load.hit"));
        }
    }
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids on one connection must increase"
    );

    let raw = sink.recv_raw(TOTAL, Duration::from_secs(5));
    let mut seen_n = HashSet::new();
    let mut seen_ids = HashSet::new();
    for bytes in &raw {
        let envelope: Value = serde_json::from_slice(bytes).expect("envelope is JSON");
        assert!(
            seen_ids.insert(envelope_id(&envelope)),
            "duplicate id in {envelope}"
        );
        let n: usize = envelope["data"]["n"].as_str().expect("n").parse().unwrap();
        assert!(seen_n.insert(n), "request {n} delivered twice");
    }
    assert_eq!(
        seen_ids,
        ids.iter().copied().collect::<HashSet<_>>(),
        "envelope ids == response ids"
    );
    assert_eq!(seen_n.len(), TOTAL);
    sink.assert_quiet(Duration::from_millis(100));
}

// ---------------------------------------------------------------------------
// 5–6. HTTP/1.0 and Connection: close
// ---------------------------------------------------------------------------

#[test]
fn http10_closes_after_the_response_by_default() {
    let (server, sink) = server_and_sink(&[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /old/client?v=1 HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut reader = ResponseReader::new(stream);
    let resp = next_then_closed(&mut reader);
    resp.assert_accepted("in.gen.old.client");
    assert_ne!(
        resp.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive")
    );
    assert_eq!(sink.recv()["data"], json!({"v": "1"}));
}

#[test]
fn http10_keep_alive_keeps_the_connection_open() {
    let (server, sink) = server_and_sink(&[]);
    let stream = server.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = ResponseReader::new(stream);

    for i in 0..2 {
        writer
            .write_all(
                format!("GET /old/client?i={i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        let resp = reader.next().expect("connection still open");
        resp.assert_accepted("in.gen.old.client");
        assert_eq!(
            resp.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive")
        );
    }
    // A body on an HTTP/1.0 keep-alive connection, then a request without
    // keep-alive: answered, then closed.
    writer
        .write_all(&[&b"POST /old/client HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\ni=2"[..], b"GET /old/client?i=3 HTTP/1.0\r\n\r\n"].concat())
        .unwrap();
    reader
        .next()
        .expect("third response")
        .assert_accepted("in.gen.old.client");
    next_then_closed(&mut reader).assert_accepted("in.gen.old.client");

    let mut got: Vec<Value> = (0..4).map(|_| sink.recv()).collect();
    got.sort_by_key(envelope_id);
    let data: Vec<&Value> = got.iter().map(|e| &e["data"]).collect();
    assert_eq!(
        data,
        [
            &json!({"i": "0"}),
            &json!({"i": "1"}),
            &json!({"i": "2"}),
            &json!({"i": "3"})
        ]
    );
}

/// Empty lines before a request (a sender that ends its body with an
/// extra CRLF) are ignored (RFC 9112 §2.2): the next request is served,
/// and an idle connection is not answered with a 408.
#[test]
fn blank_lines_before_a_request_are_ignored() {
    let (server, sink) = server_and_sink(&["--cores", "1", "--request-timeout", "300ms"]);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /blank/lines HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na=1\r\n")
        .unwrap();
    let mut reader = ResponseReader::new(stream.try_clone().unwrap());
    reader
        .next()
        .expect("a response")
        .assert_accepted("in.gen.blank.lines");
    // Past the request timeout: nothing comes (no 408), the connection
    // stays open and serves the next request, after more blank lines.
    std::thread::sleep(Duration::from_millis(700));
    stream
        .write_all(b"\r\n\n\r\nGET /blank/lines?a=2 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    reader
        .next()
        .expect("the next response")
        .assert_accepted("in.gen.blank.lines");
    assert_eq!(sink.recv()["data"], json!({"a": "1"}));
    assert_eq!(sink.recv()["data"], json!({"a": "2"}));
    let m = stats(&server);
    assert_eq!(m["merged"]["requests"]["200"], 2, "{}", m["merged"]);
    assert_eq!(
        m["merged"]["requests"]["408"],
        Value::Null,
        "{}",
        m["merged"]
    );
}

/// HTTP/1.0 has no chunked framing (RFC 9112 §6.1): such a body is read,
/// answered, and the connection closes even with keep-alive.
#[test]
fn http10_chunked_body_closes_even_with_keep_alive() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let mut stream = server.connect();
    stream
        .write_all(b"POST /old/chunked HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\n\r\nGET /old/after HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut reader = ResponseReader::new(stream);
    let resp = next_then_closed(&mut reader);
    resp.assert_accepted("in.gen.old.chunked");
    assert_eq!(
        resp.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    assert_eq!(sink.recv()["data"], json!({"a": 1}));
    assert_marker_is_next(&server, &sink, "after-http10-chunked");
}

#[test]
fn connection_close_is_answered_then_closed() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    // A request pipelined behind `Connection: close` is never read.
    let raw = b"GET /bye/now?a=1 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\nGET /bye/after HTTP/1.1\r\nHost: test\r\n\r\n";
    let mut stream = server.connect();
    stream.write_all(raw).unwrap();
    let mut reader = ResponseReader::new(stream);
    let resp = next_then_closed(&mut reader);
    resp.assert_accepted("in.gen.bye.now");
    assert_eq!(
        resp.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    assert_eq!(sink.recv()["data"], json!({"a": "1"}));
    assert_marker_is_next(&server, &sink, "after-close");
}

/// A sender that shuts its end right after the request (data and FIN in
/// one burst) gets its response and the connection closes at once, not
/// after the idle timeout: the end of the stream is noticed even when its
/// wake-up came together with the request's.
#[test]
fn a_half_close_after_the_request_is_answered_and_closed_at_once() {
    let (server, sink) = server_and_sink(&["--idle-timeout", "30s"]);
    for i in 0..30 {
        let mut stream = server.connect();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(format!("GET /half/close?i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let read = stream.read_to_end(&mut got);
        assert!(
            read.is_ok(),
            "connection {i} not closed within 5 s of the half-close: {read:?}"
        );
        assert!(
            got.starts_with(b"HTTP/1.1 200 "),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(sink.recv()["data"]["i"], i.to_string());
    }
}

/// The same, many times over, from several clients while two threads keep
/// both CPUs busy: the race that lost the end of the stream (the poll's
/// completion for the shutdown overwritten by a later one for plain data,
/// taken together before the connection read) needs a busy machine to
/// show; before the fix about one connection in 2 000 waited for its
/// timeout here. Half the requests are incomplete (the server must see
/// the end of the stream to close them), half are complete (answered,
/// then closed). Bounded: 8 000 connections, each allowed 3 s.
#[test]
fn half_closes_under_load_are_never_missed() {
    let (server, _sink) = server_and_sink(&["--idle-timeout", "60s", "--request-timeout", "60s"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let until = Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let addr = server.addr;
    let clients: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                let mut missed = Vec::new();
                for i in 0..2_000 {
                    let request: &[u8] = if i % 2 == 0 {
                        b"GET /half/close HTTP/1.1\r\nHost: t"
                    } else {
                        b"GET /half/close HTTP/1.1\r\nHost: t\r\n\r\n"
                    };
                    let mut stream = TcpStream::connect(addr).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(3)))
                        .unwrap();
                    stream.write_all(request).unwrap();
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut got = Vec::new();
                    if let Err(e) = stream.read_to_end(&mut got) {
                        missed.push(format!(
                            "client {c}, connection {i}: {e} after {:?}",
                            String::from_utf8_lossy(&got)
                        ));
                    } else if i % 2 == 1 {
                        assert!(got.starts_with(b"HTTP/1.1 200 "), "{got:?}");
                    } else {
                        assert!(got.is_empty(), "{got:?}");
                    }
                }
                missed
            })
        })
        .collect();
    let missed: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    assert!(
        missed.is_empty(),
        "{} of 8 000 half-closed connections not closed within 3 s: {:?}",
        missed.len(),
        &missed[..missed.len().min(5)]
    );
}

// ---------------------------------------------------------------------------
// 7. A request split at every byte boundary
// ---------------------------------------------------------------------------

/// Sends `raw` whole once, then split at every byte on fresh connections
/// (first part, flush, pause, rest); every split must be accepted with the
/// same `data` as the whole request. Over TCP the kernel may still join
/// the two parts into one read; `tests/split.rs` feeds the connection
/// handler the two parts directly, so there every split is two reads.
fn accepted_at_every_split(server: &Server, sink: &Sink, raw: &[u8], key: &str) {
    let whole_id = server.request(raw).assert_accepted(key);
    let whole = sink.recv();
    assert_eq!(envelope_id(&whole), whole_id);
    let expected = &whole["data"];

    let (mut response_ids, mut envelope_ids) = (HashSet::new(), HashSet::new());
    for k in 1..raw.len() {
        let mut stream = server.connect();
        stream.write_all(&raw[..k]).unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(3));
        stream.write_all(&raw[k..]).unwrap();
        let resp = ResponseReader::new(stream)
            .next()
            .unwrap_or_else(|| panic!("split at {k}: no response"));
        assert_eq!(
            resp.status,
            200,
            "split at {k}: {:?}",
            String::from_utf8_lossy(&resp.body)
        );
        response_ids.insert(resp.assert_accepted(key));

        let envelope = sink.recv();
        assert_eq!(&envelope["data"], expected, "split at {k}");
        envelope_ids.insert(envelope_id(&envelope));
    }
    assert_eq!(
        response_ids.len(),
        raw.len() - 1,
        "every split got its own id"
    );
    assert_eq!(
        envelope_ids, response_ids,
        "one envelope per split, with the response's id"
    );
    sink.assert_quiet(Duration::from_millis(100));
}

#[test]
fn json_request_split_at_every_byte() {
    let (server, sink) = server_and_sink(&[]);
    let body = br#"{"order":"A-17","amount":12.5,"tags":["x","y"],"ok":true}"#;
    let raw = post_request(
        "/split/json/42?src=q",
        "User-Agent: split-test/1.0\r\nContent-Type: application/json\r\n",
        body,
    );
    assert!(raw.len() > 150, "{}", raw.len());
    accepted_at_every_split(&server, &sink, &raw, "in.gen.split.json");
}

#[test]
fn chunked_request_split_at_every_byte() {
    let (server, sink) = server_and_sink(&[]);
    let wire = format!(
        "{}{}0\r\nX-Trailer: yes\r\n\r\n",
        chunk(r#"{"order":"A-17","amou"#, ";ext=1"),
        chunk(r#"nt":12.5,"tags":["x","y"]}"#, "")
    );
    let raw = chunked_request(
        "/split/chunked/42?src=q",
        "Content-Type: application/json\r\n",
        wire.as_bytes(),
    );
    assert!(raw.len() > 150, "{}", raw.len());
    accepted_at_every_split(&server, &sink, &raw, "in.gen.split.chunked");
}

// ---------------------------------------------------------------------------
// 8. Framing errors: 400, close, no envelope
// ---------------------------------------------------------------------------

#[test]
fn framing_errors_are_refused_closed_and_never_emitted() {
    // One core: the marker's envelope leaves through the same PUSH socket
    // as any envelope a bad request might have produced, so "the marker
    // comes first" proves nothing else was emitted.
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    // Each bad request is followed, in the same write, by a request that a
    // server guessing at the framing would take for the next one.
    let smuggled = "GET /smuggled/req?x=1 HTTP/1.1\r\nHost: test\r\n\r\n";
    let cases: &[(&str, String, &str)] = &[
        (
            "cl_then_te",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
            "ambiguous_framing",
        ),
        (
            "te_then_cl",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\na=1\r\n0\r\n\r\n{smuggled}"),
            "ambiguous_framing",
        ),
        (
            "two_lengths",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\na=12{smuggled}"),
            "bad_content_length",
        ),
        (
            "length_not_a_number",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nContent-Length: 3x\r\n\r\na=1{smuggled}"),
            "bad_content_length",
        ),
        (
            "chunk_size_not_hex",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\na=1\r\n0\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "chunk_size_overflows",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\na=1\r\n0\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "chunk_data_without_crlf",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=1XX0\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "chunk_size_line_empty",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\r\na=1\r\n0\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "chunk_size_line_blank",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n \r\na=1\r\n0\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "chunk_size_line_only_extension",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\na=1\r\n0\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "blank_line_between_chunks",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nb=2\r\n\r\n3\r\na=1\r\n0\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "trailer_not_a_field",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nb=2\r\n0\r\na=1\r\n\r\n{smuggled}"),
            "bad_chunk",
        ),
        (
            "te_gzip",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\nabc{smuggled}"),
            "unsupported_transfer_encoding",
        ),
        (
            "te_gzip_chunked",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\na=1\r\n0\r\n\r\n{smuggled}"),
            "unsupported_transfer_encoding",
        ),
        (
            "space_before_colon",
            format!("POST /evil/req HTTP/1.1\r\nHost: test\r\nContent-Length : 3\r\n\r\na=1{smuggled}"),
            "malformed_request",
        ),
        ("garbage", format!("\x16\x03\x01\x02\x00\x01\x00\x01\r\n\r\n{smuggled}"), "malformed_request"),
        ("bad_request_line", format!("GET /evil/req?x=1 HTTP/1.1 extra\r\n\r\n{smuggled}"), "malformed_request"),
    ];
    for (case, raw, code) in cases {
        let mut stream = server.connect();
        stream.write_all(raw.as_bytes()).unwrap();
        let mut reader = ResponseReader::new(stream);
        let resp = reader
            .next()
            .unwrap_or_else(|| panic!("{case}: closed without a response"));
        assert_eq!(
            resp.status,
            400,
            "{case}: {resp:?} {}",
            String::from_utf8_lossy(&resp.body)
        );
        resp.assert_error(400, code);
        assert_eq!(
            resp.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("close"),
            "{case}"
        );
        assert_closed(&mut reader.stream);
        assert_marker_is_next(&server, &sink, case);
    }
    sink.assert_quiet(Duration::from_millis(100));
}

// ---------------------------------------------------------------------------
// 9. Size limits
// ---------------------------------------------------------------------------

#[test]
fn body_limit_with_content_length() {
    let (server, sink) = server_and_sink(&["--max-body", "1KiB", "--cores", "1"]);
    let at_limit = format!("v={}", "a".repeat(1022));
    server
        .post(
            "/big/ok",
            Some("application/x-www-form-urlencoded"),
            at_limit.as_bytes(),
        )
        .assert_accepted("in.gen.big.ok");
    assert_eq!(sink.recv()["data"]["v"].as_str().map(str::len), Some(1022));

    let over = format!("v={}", "a".repeat(1023));
    let mut stream = server.connect();
    stream
        .write_all(&post_request("/big/over", "", over.as_bytes()))
        .unwrap();
    let mut reader = ResponseReader::new(stream);
    next_then_closed(&mut reader).assert_error(413, "body_too_large");
    assert_marker_is_next(&server, &sink, "over-length");
}

#[test]
fn body_far_over_limit_still_gets_its_413() {
    // The client is still sending when the server refuses: the 413 must
    // reach it anyway (not be lost to a reset).
    let (server, _sink) = server_and_sink(&["--max-body", "1KiB"]);
    let stream = server.connect();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&post_request("/big/huge", "", &vec![b'a'; 4 << 20]));
    });
    let mut reader = ResponseReader::new(stream);
    let resp = reader.next().expect("a 413 before the connection ends");
    resp.assert_error(413, "body_too_large");
    sender.join().unwrap();
}

#[test]
fn body_limit_with_chunked_body() {
    let (server, sink) = server_and_sink(&["--max-body", "1KiB", "--cores", "1"]);
    let part = "a".repeat(400);
    // 3 × 402 bytes decoded: over 1024 only with the third chunk.
    let wire = format!(
        "{}{}{}0\r\n\r\n",
        chunk(&format!("a={part}"), ""),
        chunk(&format!("&b{part}"), ""),
        chunk(&format!("&c{part}"), "")
    );
    let mut stream = server.connect();
    stream
        .write_all(&chunked_request("/big/chunked", "", wire.as_bytes()))
        .unwrap();
    let mut reader = ResponseReader::new(stream);
    next_then_closed(&mut reader).assert_error(413, "body_too_large");
    assert_marker_is_next(&server, &sink, "over-chunked");

    // Two of those chunks fit.
    let wire = format!(
        "{}{}0\r\n\r\n",
        chunk(&format!("a={part}"), ""),
        chunk(&format!("&b={part}"), "")
    );
    server
        .request(&chunked_request("/big/chunked", "", wire.as_bytes()))
        .assert_accepted("in.gen.big.chunked");
    assert_eq!(sink.recv()["data"]["b"].as_str().map(str::len), Some(400));

    // 1-byte chunks (five bytes of framing each) for a body under the
    // limit are fine.
    let body = format!("a={}", "x".repeat(998));
    let wire: String = body.chars().map(|c| chunk(&c.to_string(), "")).collect();
    server
        .request(&chunked_request(
            "/big/chunked",
            "",
            format!("{wire}0\r\n\r\n").as_bytes(),
        ))
        .assert_accepted("in.gen.big.chunked");
    assert_eq!(sink.recv()["data"]["a"].as_str().map(str::len), Some(998));

    // Framing that outgrows any body under the limit (600 one-byte chunks
    // with 40-byte extensions: 27 KB for 600 bytes) gets its own 413.
    let ext = format!(";e={}", "x".repeat(37));
    let wire: String = (0..600).map(|_| chunk("a", &ext)).collect();
    let mut stream = server.connect();
    stream
        .write_all(&chunked_request(
            "/big/chunked",
            "",
            format!("{wire}0\r\n\r\n").as_bytes(),
        ))
        .unwrap();
    let mut reader = ResponseReader::new(stream);
    let message = next_then_closed(&mut reader).assert_error(413, "chunks_too_small");
    assert!(message.contains("larger chunks"), "{message}");
    assert_marker_is_next(&server, &sink, "tiny-chunks");
}

#[test]
fn headers_over_16k_get_431() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let raw = format!(
        "GET /big/head?x=1 HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "h".repeat(17 * 1024)
    );
    let mut stream = server.connect();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut reader = ResponseReader::new(stream);
    next_then_closed(&mut reader).assert_error(431, "headers_too_large");
    assert_marker_is_next(&server, &sink, "big-head");

    // Just under the limit is fine.
    let raw = format!(
        "GET /big/head?x=1 HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "h".repeat(15 * 1024)
    );
    server
        .request(raw.as_bytes())
        .assert_accepted("in.gen.big.head");
    assert_eq!(sink.recv()["data"], json!({"x": "1"}));
}

#[test]
fn more_than_64_headers_get_431() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let with_headers = |count: usize| {
        let mut raw = String::from("GET /many/headers?x=1 HTTP/1.1\r\n");
        for i in 0..count {
            raw += &format!("X-H{i}: v\r\n");
        }
        raw + "\r\n"
    };
    server
        .request(with_headers(64).as_bytes())
        .assert_accepted("in.gen.many.headers");
    assert_eq!(sink.recv()["data"], json!({"x": "1"}));

    let mut stream = server.connect();
    stream.write_all(with_headers(65).as_bytes()).unwrap();
    let mut reader = ResponseReader::new(stream);
    next_then_closed(&mut reader).assert_error(431, "too_many_headers");
    assert_marker_is_next(&server, &sink, "many-headers");
}

// ---------------------------------------------------------------------------
// 10. Timeouts
// ---------------------------------------------------------------------------

/// Reads a 408 after the connection stalls; returns how long it took.
fn assert_request_timeout(server: &Server, partial: &[u8]) -> Duration {
    let mut stream = server.connect();
    let start = Instant::now();
    stream.write_all(partial).unwrap();
    let mut reader = ResponseReader::new(stream);
    next_then_closed(&mut reader).assert_error(408, "request_timeout");
    start.elapsed()
}

#[test]
fn incomplete_request_times_out_with_408() {
    let (server, sink) = server_and_sink(&["--request-timeout", "300ms", "--cores", "1"]);
    // A head without its final CRLF.
    let took = assert_request_timeout(&server, b"GET /slow/head?x=1 HTTP/1.1\r\nHost: test\r\n");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "408 after {took:?}"
    );
    // A complete head whose body stops half way.
    let took = assert_request_timeout(
        &server,
        b"POST /slow/body HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\na=1",
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "408 after {took:?}"
    );
    assert_marker_is_next(&server, &sink, "timeouts");
}

#[test]
fn trickled_request_times_out_from_its_first_byte() {
    // Bytes keep arriving, but the request as a whole is late: the timer is
    // not restarted by each read.
    let (server, _sink) = server_and_sink(&["--request-timeout", "300ms"]);
    let stream = server.connect();
    let mut writer = stream.try_clone().unwrap();
    let start = Instant::now();
    let trickle = std::thread::spawn(move || {
        for b in b"GET /slow/trickle?x=1 HTTP/1.1\r\nHost: test\r\n\r\n" {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mut reader = ResponseReader::new(stream);
    let resp = reader.next().expect("a response");
    let took = start.elapsed();
    resp.assert_error(408, "request_timeout");
    assert!(
        took < Duration::from_millis(1500),
        "408 only after {took:?}"
    );
    trickle.join().unwrap();
}

#[test]
fn idle_keep_alive_connection_is_closed_silently() {
    let (server, sink) = server_and_sink(&["--idle-timeout", "300ms"]);
    let mut stream = server.connect();
    // Taken before the request: the server's idle time starts at its last
    // write, which is later, so the bound below holds however long the
    // response and the sink take to arrive here.
    let start = Instant::now();
    stream
        .write_all(b"GET /idle/first HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut reader = ResponseReader::new(stream.try_clone().unwrap());
    reader
        .next()
        .expect("response")
        .assert_accepted("in.gen.idle.first");
    sink.recv();

    assert_closed(&mut stream);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );

    // A connection that never sends a byte is closed the same way.
    let mut silent = server.connect();
    let start = Instant::now();
    assert_closed(&mut silent);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

// ---------------------------------------------------------------------------
// 11. Methods
// ---------------------------------------------------------------------------

#[test]
fn other_methods_get_405_with_allow() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    for method in ["DELETE", "PUT", "PATCH"] {
        let resp = server.request(
            format!("{method} /a/b?x=1 HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        resp.assert_error(405, "method_not_allowed");
        let allow = resp
            .header("allow")
            .unwrap_or_else(|| panic!("{method}: no Allow header: {resp:?}"));
        for m in ["GET", "POST"] {
            assert!(allow.contains(m), "{method}: Allow: {allow}");
        }
        assert!(!allow.contains(method), "Allow: {allow}");
    }
    assert_marker_is_next(&server, &sink, "methods");
}

#[test]
fn options_is_a_cors_preflight() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let resp = server.request(
        b"OPTIONS /x HTTP/1.1\r\nHost: test\r\nOrigin: https://shop.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, x-token\r\n\r\n",
    );
    assert_eq!(resp.status, 204, "{resp:?}");
    assert!(resp.body.is_empty());
    let methods = resp
        .header("access-control-allow-methods")
        .expect("Access-Control-Allow-Methods");
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    assert!(
        resp.header("access-control-allow-origin").is_some(),
        "{resp:?}"
    );
    let headers = resp
        .header("access-control-allow-headers")
        .expect("Access-Control-Allow-Headers");
    assert!(
        headers.to_ascii_lowercase().contains("x-token"),
        "{headers}"
    );
    assert_marker_is_next(&server, &sink, "options");
}

#[test]
fn head_probe_has_no_body() {
    let (server, _sink) = server_and_sink(&[]);
    let mut stream = server.connect();
    stream
        .write_all(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let head = read_head(&mut stream);
    assert!(
        head.starts_with(b"HTTP/1.1 200 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );

    // Whatever comes next on the connection must be the GET's response.
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let next = read_at_least(&mut stream, 17);
    assert!(
        next.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "bytes after the HEAD response: {:?}",
        String::from_utf8_lossy(&next)
    );
}

#[test]
fn get_root_is_a_json_probe() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let resp = server.get("/");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(
        resp.header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "{resp:?}"
    );
    assert!(resp.json().is_object());
    assert_marker_is_next(&server, &sink, "probe");
}

// ---------------------------------------------------------------------------
// 12. A bad connection does not disturb a good one
// ---------------------------------------------------------------------------

#[test]
fn malformed_request_does_not_disturb_another_connection() {
    // One core, so both connections live on the same executor.
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let body = br#"{"call":"c-9"}"#;
    let raw = post_request(
        "/calltrack/call/5",
        "Content-Type: application/json\r\n",
        body,
    );
    let half = raw.len() - body.len() / 2;

    let mut a = server.connect();
    a.write_all(&raw[..half]).unwrap();

    let mut b = server.connect();
    b.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        .unwrap();
    let mut b_reader = ResponseReader::new(b.try_clone().unwrap());
    next_then_closed(&mut b_reader).assert_error(400, "malformed_request");

    a.write_all(&raw[half..]).unwrap();
    let id = ResponseReader::new(a)
        .next()
        .expect("A's response")
        .assert_accepted("in.gen.calltrack.call");
    let envelope = sink.recv();
    assert_eq!(envelope_id(&envelope), id);
    assert_eq!(envelope["data"], json!({"call": "c-9"}));
    sink.assert_quiet(Duration::from_millis(100));
}

#[test]
fn refused_head_has_no_body_either() {
    let (server, _sink) = server_and_sink(&[]);
    // A HEAD refused with 400, then a GET on the same connection: the 400
    // must carry no body, or the GET's response would be misread.
    let raw = b"HEAD /a.b HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut conn = server.connect();
    conn.write_all(raw).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"status\":\"ok\"") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(
        head.contains("Content-Length: "),
        "HEAD still describes the body: {head}"
    );
    assert!(
        rest.starts_with("HTTP/1.1 200 OK\r\n"),
        "body bytes after a HEAD response: {rest:?}"
    );
}
