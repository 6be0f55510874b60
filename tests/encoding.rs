//! Compressed request bodies (`Content-Encoding: gzip`, `deflate`, `zstd`),
//! JSON sent with a form's label, and RFC 7239 `Forwarded` from a trusted
//! proxy, against the real binary and a real ZeroMQ consumer.
//!
//! Bodies are compressed by the senders' own tools: the `gzip` and `zstd`
//! command-line programs, Python's `gzip` and `zlib`; and sent by `curl`
//! where it can send them. Every refusal is checked for its status and
//! code, and that no envelope reaches the consumer.

mod common;
use common::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

/// Runs `script` with `sh -c` in `dir`, which must succeed.
fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs curl against `target` on the server with `args`: the status and
/// the JSON body of the answer.
fn curl(server: &Server, dir: &Path, target: &str, args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(["--write-out", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://{}{target}", server.addr))
        .current_dir(dir)
        .output()
        .expect("curl must be installed (see .ci/run)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').expect("curl's status line");
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (status.parse().unwrap(), body)
}

/// The exact text of the next envelope's `data`, and its `td`.
fn next_data(sink: &Sink) -> (String, Value) {
    let frames = sink
        .recv_frames(Duration::from_secs(10))
        .expect("an envelope within 10 s");
    let raw = String::from_utf8(frames.into_iter().next().unwrap()).unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    let start = raw.find(",\"data\":").expect("data") + ",\"data\":".len();
    let end = raw.rfind(",\"id\":\"").expect("id");
    (raw[start..end].to_owned(), v["td"].clone())
}

/// Asserts a refusal's status and code (and that it says what to fix).
fn assert_refused(got: &(u16, Value), status: u16, code: &str) -> String {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"], code, "{}", got.1);
    let message = got.1["message"].as_str().unwrap().to_owned();
    assert!(message.len() > 20, "{message}");
    message
}

/// A 4 KiB JSON webhook, as a CRM sends one.
fn webhook() -> Vec<u8> {
    let items: Vec<Value> = (0..24)
        .map(|i| json!({"sku": format!("SKU-{i:04}"), "qty": i % 5 + 1, "price": 12.5 + i as f64, "title": "Тестовый товар ✓"}))
        .collect();
    let body = json!({
        "name": "order",
        "event": "order.paid",
        "order": {"id": 918273, "currency": "EUR", "total": 1234.56, "items": items},
        "customer": {"email": "a@example.com", "tags": ["vip", "b2b"], "note": null},
    });
    serde_json::to_vec_pretty(&body).unwrap()
}

/// Writes the test's files into a fresh directory.
fn files(tag: &str, body: &[u8]) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("body.json"), body).unwrap();
    dir
}

const PY_CODINGS: &str = r#"
import gzip, sys, zlib, os
os.chdir(sys.argv[1])
body = open("body.json", "rb").read()
open("py.gz", "wb").write(gzip.compress(body))
open("py.zlib", "wb").write(zlib.compress(body))
raw = zlib.compressobj(9, zlib.DEFLATED, -15)
open("py.deflate", "wb").write(raw.compress(body) + raw.flush())
half = len(body) // 2
open("py.members.gz", "wb").write(gzip.compress(body[:half]) + gzip.compress(body[half:]))
"#;

#[test]
fn every_coding_round_trips_to_the_plain_bodys_data() {
    let (server, sink) = server_and_sink(&[]);
    let dir = files("codings", &webhook());
    sh(
        &dir,
        "gzip -9 -c body.json > cli.gz && zstd -q -19 -c body.json > cli.zst \
         && cat body.json | zstd -q -c > stream.zst \
         && printf 'status=paid&sum=12.50&name=order' > form && gzip -c form > form.gz",
    );
    run_python(PY_CODINGS, &[dir.to_str().unwrap()]);

    let json = "Content-Type: application/json";
    let (status, _) = curl(
        &server,
        &dir,
        "/shop/order",
        &["-H", json, "--data-binary", "@body.json"],
    );
    assert_eq!(status, 200);
    let (plain, _) = next_data(&sink);
    assert!(plain.contains("\"order.paid\""), "{plain}");

    let cases = [
        ("gzip", "cli.gz"),
        ("x-gzip", "cli.gz"),
        ("GZIP", "py.gz"),
        ("gzip", "py.members.gz"),
        ("deflate", "py.zlib"),
        ("deflate", "py.deflate"),
        ("zstd", "cli.zst"),
        ("zstd", "stream.zst"),
    ];
    for (coding, file) in cases {
        let header = format!("Content-Encoding: {coding}");
        let body = format!("@{file}");
        for chunked in [false, true] {
            let mut args = vec!["-H", json, "-H", &header, "--data-binary", &body];
            if chunked {
                args.extend(["-H", "Transfer-Encoding: chunked"]);
            }
            let (status, answer) = curl(&server, &dir, "/shop/order", &args);
            assert_eq!(status, 200, "{coding} {file} chunked={chunked}: {answer}");
            assert_eq!(
                next_data(&sink).0,
                plain,
                "{coding} {file} chunked={chunked}"
            );
        }
    }

    // A compressed form, sent as curl sends forms.
    let (status, _) = curl(
        &server,
        &dir,
        "/shop",
        &["-H", "Content-Encoding: gzip", "--data-binary", "@form.gz"],
    );
    assert_eq!(status, 200);
    assert_eq!(
        next_data(&sink).0,
        r#"{"status":"paid","sum":"12.50","name":"order"}"#
    );
    sink.assert_quiet(Duration::from_millis(200));
}

/// The largest the process's resident set has been, in KiB.
fn peak_rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn zip_bombs_get_413_without_growing_memory() {
    let (server, sink) = server_and_sink(&[]);
    let dir = temp_dir("bombs");
    sh(
        &dir,
        "head -c 10000000 /dev/zero | gzip -c > 10m.gz \
         && head -c 200000000 /dev/zero | gzip -c > 200m.gz \
         && head -c 1000000000 /dev/zero | zstd -q -c > 1g.zst \
         && head -c 200000000 /dev/zero | zstd -q -c > 200m.zst",
    );
    // A first compressed body makes each core's decoders.
    let small = files("bombs-warm", br#"{"a":1}"#);
    sh(
        &small,
        "gzip -c body.json > b.gz && zstd -q -c body.json > b.zst",
    );
    for (coding, file) in [("gzip", "b.gz"), ("zstd", "b.zst")] {
        for _ in 0..4 {
            let header = format!("Content-Encoding: {coding}");
            let got = curl(
                &server,
                &small,
                "/s/warm",
                &["-H", &header, "--data-binary", &format!("@{file}")],
            );
            assert_eq!(got.0, 200, "{}", got.1);
            next_data(&sink);
        }
    }
    let before = peak_rss_kib(&server);
    for (coding, file) in [
        ("gzip", "10m.gz"),
        ("gzip", "200m.gz"),
        ("zstd", "1g.zst"),
        ("zstd", "200m.zst"),
    ] {
        for _ in 0..3 {
            let header = format!("Content-Encoding: {coding}");
            let got = curl(
                &server,
                &dir,
                "/s/bomb",
                &[
                    "-H",
                    "Content-Type: application/json",
                    "-H",
                    &header,
                    "--data-binary",
                    &format!("@{file}"),
                ],
            );
            let message = assert_refused(&got, 413, "body_too_large");
            assert!(message.contains("decoded"), "{message}");
        }
    }
    let grown = peak_rss_kib(&server).saturating_sub(before);
    assert!(
        grown < 48 * 1024,
        "the bombs grew the peak RSS by {grown} KiB"
    );
    sink.assert_quiet(Duration::from_millis(300));
}

#[test]
fn the_decoded_size_limit_is_exact_and_closes_the_connection() {
    let (server, sink) = server_and_sink(&["--max-body", "64KiB"]);
    let dir = temp_dir("limit");
    let json = |len: usize| {
        let mut b = br#"{"name":"x","pad":""#.to_vec();
        b.resize(len - 2, b'a');
        b.extend_from_slice(b"\"}");
        b
    };
    std::fs::write(dir.join("fits.json"), json(65536)).unwrap();
    std::fs::write(dir.join("over.json"), json(65537)).unwrap();
    sh(&dir, "gzip -c fits.json > fits.gz && zstd -q -c over.json > over.zst && gzip -c over.json > over.gz");
    let ce = |c: &str| format!("Content-Encoding: {c}\r\nContent-Type: application/json\r\n");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();

    let resp = server.request(&post_request("/s", &ce("gzip"), &read("fits.gz")));
    resp.assert_accepted("in.gen.s.x");
    assert_eq!(next_data(&sink).0.len(), 65536, "the whole decoded body");

    for (coding, file) in [("gzip", "over.gz"), ("zstd", "over.zst")] {
        let mut s = server.connect();
        let mut raw = post_request("/s", &ce(coding), &read(file));
        raw.extend_from_slice(b"GET /s/after HTTP/1.1\r\nHost: t\r\n\r\n");
        s.write_all(&raw).unwrap();
        let mut reader = ResponseReader::new(s);
        let resp = reader.next().expect("a response");
        resp.assert_error(413, "body_too_large");
        assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
        assert!(reader.next().is_none(), "the pipelined GET is not answered");
    }
    sink.assert_quiet(Duration::from_millis(300));
}

const PY_BROKEN: &str = r#"
import gzip, sys, zlib, os, struct
os.chdir(sys.argv[1])
body = open("body.json", "rb").read()
gz = gzip.compress(body)
# The same data, its ISIZE trailer claiming 1 byte.
open("lying-size.gz", "wb").write(gz[:-4] + struct.pack("<I", 1))
open("bad-crc.gz", "wb").write(gz[:-8] + bytes(4) + gz[-4:])
open("truncated.gz", "wb").write(gz[: len(gz) // 2])
open("no-trailer.gz", "wb").write(gz[:-8])
open("garbage-after.gz", "wb").write(gz + b"not gzip")
z = zlib.compress(body)
open("truncated.zlib", "wb").write(z[: len(z) // 2])
open("flipped.zlib", "wb").write(z[:10] + bytes([z[10] ^ 0xFF]) + z[11:])
open("garbage", "wb").write(os.urandom(64))
"#;

#[test]
fn corrupt_bodies_get_400_bad_encoding() {
    let (server, sink) = server_and_sink(&[]);
    let dir = files("broken", &webhook());
    run_python(PY_BROKEN, &[dir.to_str().unwrap()]);
    sh(
        &dir,
        "zstd -q -c body.json > ok.zst && head -c 100 ok.zst > truncated.zst",
    );
    let cases = [
        ("gzip", "lying-size.gz", "ISIZE"),
        ("gzip", "bad-crc.gz", "CRC-32"),
        ("gzip", "truncated.gz", "truncated"),
        ("gzip", "no-trailer.gz", "trailer"),
        ("gzip", "garbage-after.gz", "not gzip"),
        ("gzip", "garbage", "not gzip"),
        ("deflate", "truncated.zlib", "truncated"),
        ("deflate", "flipped.zlib", "corrupt"),
        ("deflate", "garbage", "deflate"),
        ("zstd", "truncated.zst", "truncated"),
        ("zstd", "garbage", "not zstd"),
        ("zstd", "body.json", "not zstd"),
    ];
    for (coding, file, says) in cases {
        let header = format!("Content-Encoding: {coding}");
        let got = curl(
            &server,
            &dir,
            "/s/broken",
            &[
                "-H",
                "Content-Type: application/json",
                "-H",
                &header,
                "--data-binary",
                &format!("@{file}"),
            ],
        );
        let message = assert_refused(&got, 400, "bad_encoding");
        assert!(message.contains(says), "{coding} {file}: {message}");
    }
    // The connection stays usable after a corrupt body.
    let mut raw = post_request(
        "/s/broken",
        "Content-Encoding: gzip\r\n",
        b"\x1f\x8b\x08\x00garbage",
    );
    raw.extend_from_slice(b"GET /s/after HTTP/1.1\r\nHost: t\r\n\r\n");
    let answers = server.exchange(&raw, 2);
    answers[0].assert_error(400, "bad_encoding");
    answers[1].assert_accepted("in.gen.s.after");
    let (data, _) = next_data(&sink);
    assert_eq!(data, "{}", "only the GET's envelope arrives");
    sink.assert_quiet(Duration::from_millis(300));
}

#[test]
fn unknown_and_stacked_codings_get_415() {
    let (server, sink) = server_and_sink(&[]);
    let body = br#"{"a":1}"#;
    for headers in [
        "Content-Encoding: br\r\n",
        "Content-Encoding: compress\r\n",
        "Content-Encoding: gzip, zstd\r\n",
        "Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n",
    ] {
        let resp = server.request(&post_request("/s/n", headers, body));
        let message = resp.assert_error(415, "unsupported_content_encoding");
        assert!(message.contains("gzip"), "{message}");
    }
    // `identity` and an empty body need no decoding.
    let resp = server.request(&post_request(
        "/s/n",
        "Content-Encoding: identity\r\n",
        body,
    ));
    resp.assert_accepted("in.gen.s.n");
    assert_eq!(next_data(&sink).0, r#"{"a":1}"#);
    let resp = server.request(&post_request("/s/n", "Content-Encoding: gzip\r\n", b""));
    resp.assert_accepted("in.gen.s.n");
    assert_eq!(next_data(&sink).0, "{}");
    sink.assert_quiet(Duration::from_millis(300));
}

#[test]
fn json_sent_as_a_form_by_curl_is_taken_as_json() {
    let (server, sink) = server_and_sink(&[]);
    let dir = temp_dir("form-json");
    // `-d` labels the body application/x-www-form-urlencoded.
    for (body, data) in [
        (
            r#"{"a":1,"b":{"c":[true,null]}}"#,
            r#"{"a":1,"b":{"c":[true,null]}}"#,
        ),
        (" [1, 2]\n", r#"{"body":[1,2]}"#),
        // Forms that start like JSON but are not whole JSON stay forms.
        ("{a}=1&b=2", r#"{"{a}":"1","b":"2"}"#),
        (r#"{"a":1}&x=2"#, r#"{"{\"a\":1}":"","x":"2"}"#),
        ("[x]=1", r#"{"[x]":"1"}"#),
    ] {
        let (status, answer) = curl(&server, &dir, "/s/form?q=1", &["-d", body]);
        assert_eq!(status, 200, "{body}: {answer}");
        let (got, _) = next_data(&sink);
        let want = format!("{},\"q\":\"1\"}}", &data[..data.len() - 1]);
        assert_eq!(got, want, "{body}");
    }
    // The routing fields come from it as from any JSON body.
    let (status, answer) = curl(
        &server,
        &dir,
        "/s",
        &["-d", r#"{"name":"lead","projectId":7}"#],
    );
    assert_eq!(
        (status, answer["key"].as_str()),
        (200, Some("in.gen.s.lead"))
    );
    next_data(&sink);
    sink.assert_quiet(Duration::from_millis(200));
}

#[test]
fn forwarded_names_the_client_behind_trusted_proxies() {
    let (server, sink) = server_and_sink(&[
        "--trusted-proxy",
        "127.0.0.0/8,10.0.0.0/8,2001:db8:ffff::/48",
    ]);
    let ip_for = |headers: &str| {
        let resp =
            server.request(format!("GET /s/n HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
        resp.assert_accepted("in.gen.s.n");
        next_data(&sink).1["ip"].as_str().unwrap().to_owned()
    };
    let cases = [
        ("Forwarded: for=203.0.113.7\r\n", "203.0.113.7"),
        (
            "Forwarded: For=\"203.0.113.7:4711\";proto=https\r\n",
            "203.0.113.7",
        ),
        (
            "Forwarded: for=\"[2001:db8:cafe::17]:4711\"\r\n",
            "2001:db8:cafe::17",
        ),
        (
            "Forwarded: for=\"[2001:db8:cafe::17]\", for=\"[2001:db8:ffff::1]\"\r\n",
            "2001:db8:cafe::17",
        ),
        (
            "Forwarded: for=\"[::ffff:198.51.100.9]\"\r\n",
            "198.51.100.9",
        ),
        // Several elements and headers: from the right, past trusted hops.
        (
            "Forwarded: for=198.51.100.1;by=10.0.0.5, for=10.0.0.9\r\n",
            "198.51.100.1",
        ),
        (
            "Forwarded: for=198.51.100.1\r\nForwarded: for=10.0.0.5;proto=https\r\n",
            "198.51.100.1",
        ),
        ("Forwarded: for=10.0.0.1, for=10.0.0.2\r\n", "10.0.0.1"),
        // A hop that is not an address ends the walk at the nearest one read.
        ("Forwarded: for=198.51.100.1, for=unknown\r\n", "127.0.0.1"),
        (
            "Forwarded: for=198.51.100.1, for=_hidden, for=10.0.0.5\r\n",
            "10.0.0.5",
        ),
        ("Forwarded: for=198.51.100.1, by=10.0.0.3\r\n", "127.0.0.1"),
        // X-Real-IP, then X-Forwarded-For, come before Forwarded.
        (
            "Forwarded: for=198.51.100.1\r\nX-Forwarded-For: 192.0.2.2\r\n",
            "192.0.2.2",
        ),
        (
            "Forwarded: for=198.51.100.1\r\nX-Real-IP: 192.0.2.3\r\n",
            "192.0.2.3",
        ),
    ];
    for (headers, ip) in cases {
        assert_eq!(ip_for(headers), ip, "{headers:?}");
    }
    // curl sends it as a proxy would.
    let dir = temp_dir("forwarded");
    let (status, _) = curl(
        &server,
        &dir,
        "/s/n",
        &["-H", "Forwarded: for=\"[2001:db8::42]:80\""],
    );
    assert_eq!(status, 200);
    assert_eq!(next_data(&sink).1["ip"], "2001:db8::42");

    // From a peer that is not a trusted proxy, Forwarded is ignored.
    let (server, sink) = server_and_sink(&["--trusted-proxy", "10.0.0.0/8"]);
    let resp =
        server.request(b"GET /s/n HTTP/1.1\r\nHost: t\r\nForwarded: for=203.0.113.7\r\n\r\n");
    resp.assert_accepted("in.gen.s.n");
    assert_eq!(next_data(&sink).1["ip"], "127.0.0.1");
}
