//! End-to-end tests of the ingestion contract (docs/contract.md):
//! endpoints and URL forms, body formats, query/form decoding, the body +
//! query merge, the envelope, `uid` sources, transport data and refusals.
//!
//! Every test runs the real `hookwire` binary on loopback and reads the
//! envelopes a real ZeroMQ PULL socket receives. Each test function shares
//! one server and one sink; each accepted request is followed at once by
//! receiving its envelope, which is matched to the response by `id`.
//! Refusals are checked for their status and JSON error body, and every
//! test that sends bad requests ends with a marker request: the first
//! envelope to arrive must be the marker, and nothing may follow it.

mod common;
use common::*;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// An envelope as it arrived: its exact text and its parsed value.
struct Envelope {
    raw: String,
    v: Value,
}

impl Envelope {
    fn data(&self) -> &Value {
        &self.v["data"]
    }

    /// The exact text of `data` (the envelope's members are in contract
    /// order, so it sits between `"data":` and `,"id":"`).
    fn raw_data(&self) -> &str {
        let start = self.raw.find(",\"data\":").expect("data member") + ",\"data\":".len();
        let end = self.raw.rfind(",\"id\":\"").expect("id member");
        &self.raw[start..end]
    }
}

/// One request on a fresh connection, with exactly the given headers (no
/// `Host` unless listed). `Content-Length` is added for POST or a body.
fn send(
    server: &Server,
    method: &str,
    target: &[u8],
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Response {
    server.request(&raw_request(method, target, headers, body))
}

fn raw_request(method: &str, target: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(method.as_bytes());
    raw.push(b' ');
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    if method == "POST" || !body.is_empty() {
        raw.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(body);
    raw
}

/// A POST with extra headers (and `Host: test`).
fn post_with(server: &Server, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all: Vec<(&str, &[u8])> = vec![("Host", b"test")];
    all.extend(headers.iter().map(|(k, v)| (*k, v.as_bytes())));
    send(server, "POST", target.as_bytes(), &all, body)
}

/// Asserts `resp` accepted an event with `key`, then receives its envelope
/// (which must carry the same id) and checks the envelope is UTF-8 JSON.
fn accepted(sink: &Sink, resp: &Response, key: &str) -> Envelope {
    let id = resp.assert_accepted(key);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{resp:?}"
    );
    let env = recv_envelope(sink);
    assert_eq!(
        env.v["id"],
        id.to_string(),
        "envelope of another request: {}",
        env.raw
    );
    assert_eq!(env.v["key"], key, "{}", env.raw);
    env
}

fn recv_envelope(sink: &Sink) -> Envelope {
    let frames = sink
        .recv_frames(Duration::from_secs(10))
        .expect("an envelope within 10 s");
    assert_eq!(frames.len(), 1, "one frame per envelope");
    let raw = String::from_utf8(frames.into_iter().next().unwrap())
        .unwrap_or_else(|e| panic!("envelope is not UTF-8: {e}"));
    let v =
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("envelope is not JSON ({e}): {raw}"));
    Envelope { raw, v }
}

/// A GET whose envelope's `data` is returned.
fn get_data(server: &Server, sink: &Sink, target: &str, key: &str) -> Value {
    accepted(sink, &server.get(target), key).data().clone()
}

/// Asserts a refusal: status, `error` code, a helpful message, JSON type.
fn refused(resp: &Response, status: u16, code: &str) -> String {
    let message = resp.assert_error(status, code);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{resp:?}"
    );
    message
}

/// Proves that no refused request emitted an envelope: a marker request's
/// envelope must be the first to arrive, and nothing may come after it.
/// The server must run one core (`--cores 1`): the marker then leaves
/// through the same PUSH socket as anything a refused request could have
/// emitted, so "first" means "nothing before it".
fn assert_only_marker_arrives(server: &Server, sink: &Sink) {
    let resp = server.get("/marker/check?marker=1");
    let id = resp.assert_accepted("in.gen.marker.check");
    let env = recv_envelope(sink);
    assert_eq!(
        env.v["id"],
        id.to_string(),
        "a refused request produced an envelope: {}",
        env.raw
    );
    sink.assert_quiet(Duration::from_millis(200));
}

/// The member names of a JSON object, in order.
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Sends `raw` with `Connection: close` already in it and returns every
/// byte the server wrote until it closed (for HEAD, whose headers announce
/// a body that is not sent).
fn raw_until_close(server: &Server, raw: &[u8]) -> Vec<u8> {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("server closes within the read timeout");
    out
}

// ---------------------------------------------------------------------------
// Endpoints and URL forms
// ---------------------------------------------------------------------------

/// The seven URL forms of spec §2, with the original page's examples.
#[test]
fn the_seven_url_forms() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.calltrack.call";

    // 1. POST /<service>/<name>/<projectId>
    let env = accepted(
        &sink,
        &server.post(
            "/calltrack/call/99",
            Some("application/json"),
            br#"{"key1":"value1", "key2":"value2"}"#,
        ),
        key,
    );
    assert_eq!(env.v["service"], "calltrack");
    assert_eq!(env.v["name"], "call");
    assert_eq!(env.v["projectId"], 99);
    assert_eq!(*env.data(), json!({"key1": "value1", "key2": "value2"}));

    // 2. GET /<service>/<name>/<projectId>?param=value
    let env = accepted(
        &sink,
        &server.get("/calltrack/call/99?param=myparamvalue"),
        key,
    );
    assert_eq!(env.v["projectId"], 99);
    assert_eq!(*env.data(), json!({"param": "myparamvalue"}));

    // 3. POST /<service>/<name>: projectId = 0
    let env = accepted(
        &sink,
        &server.post(
            "/calltrack/call",
            Some("application/x-www-form-urlencoded"),
            b"param1=value1&param2=value26",
        ),
        key,
    );
    assert_eq!(env.v["projectId"], 0);
    assert_eq!(
        *env.data(),
        json!({"param1": "value1", "param2": "value26"})
    );
    assert_eq!(keys(env.data()), ["param1", "param2"]);

    // 4. GET /<service>/<name>?param=value
    let env = accepted(
        &sink,
        &server.get("/calltrack/call?param1=value1&param2=value26"),
        key,
    );
    assert_eq!(env.v["projectId"], 0);
    assert_eq!(
        *env.data(),
        json!({"param1": "value1", "param2": "value26"})
    );

    // 5. GET /<service>/<name>?projectId=<id>
    let env = accepted(
        &sink,
        &server.get("/calltrack/call?projectId=7&param=v"),
        key,
    );
    assert_eq!(env.v["projectId"], 7);
    assert_eq!(*env.data(), json!({"projectId": "7", "param": "v"}));

    // 6. GET /<service>?name=<name>&projectId=<id>
    let env = accepted(
        &sink,
        &server.get("/calltrack?name=call&projectId=8&param=v"),
        key,
    );
    assert_eq!(env.v["name"], "call");
    assert_eq!(env.v["projectId"], 8);
    assert_eq!(
        *env.data(),
        json!({"name": "call", "projectId": "8", "param": "v"})
    );

    // 7. POST /<service>?name=<name>&projectId=<id> with a body
    let env = accepted(
        &sink,
        &server.post(
            "/calltrack?name=call&projectId=9",
            Some("application/json"),
            br#"{"data":"mydaa"}"#,
        ),
        key,
    );
    assert_eq!(env.v["name"], "call");
    assert_eq!(env.v["projectId"], 9);
    assert_eq!(
        *env.data(),
        json!({"data": "mydaa", "name": "call", "projectId": "9"})
    );
    assert_eq!(keys(env.data()), ["data", "name", "projectId"]);

    // The page's `curl .../calltrack?name=call` (no projectId at all).
    let env = accepted(&sink, &server.get("/calltrack?name=call"), key);
    assert_eq!(env.v["projectId"], 0);
    assert_eq!(*env.data(), json!({"name": "call"}));
}

/// Empty segments count as absent; segments after the third are ignored;
/// 64-character service and name are the longest accepted.
#[test]
fn path_segments_empty_extra_and_longest() {
    let (server, sink) = server_and_sink(&[]);

    let env = accepted(&sink, &server.get("/shop/order/"), "in.gen.shop.order");
    assert_eq!(env.v["projectId"], 0);
    assert_eq!(*env.data(), json!({}));

    let env = accepted(&sink, &server.get("/shop/order/5/"), "in.gen.shop.order");
    assert_eq!(env.v["projectId"], 5);

    let env = accepted(
        &sink,
        &server.get("/shop/order/5/extra/more?x=1"),
        "in.gen.shop.order",
    );
    assert_eq!(env.v["projectId"], 5);
    assert_eq!(*env.data(), json!({"x": "1"}));

    // `/shop//7`: no name segment, so the name comes from the query.
    let env = accepted(
        &sink,
        &server.get("/shop//7?name=refund"),
        "in.gen.shop.refund",
    );
    assert_eq!(env.v["projectId"], 7);

    // `/shop/order//`: the empty third segment leaves projectId to the query.
    let env = accepted(
        &sink,
        &server.get("/shop/order//?projectId=3"),
        "in.gen.shop.order",
    );
    assert_eq!(env.v["projectId"], 3);

    let long_service = "S".repeat(64);
    let long_name = "n_-9".repeat(16);
    let key = format!("in.gen.{long_service}.{long_name}");
    let env = accepted(
        &sink,
        &server.get(&format!("/{long_service}/{long_name}")),
        &key,
    );
    assert_eq!(env.v["service"], long_service);
    assert_eq!(env.v["name"], long_name);
}

/// `name`: path segment 2, else query `name`, else body `name`.
#[test]
fn name_comes_from_path_then_query_then_body() {
    let (server, sink) = server_and_sink(&[]);
    let json = Some("application/json");
    let form = Some("application/x-www-form-urlencoded");

    // Path beats query and body; the other names stay in data.
    let env = accepted(
        &sink,
        &server.post(
            "/crm/path-name?name=query_name",
            json,
            br#"{"name":"body_name","a":1}"#,
        ),
        "in.gen.crm.path-name",
    );
    assert_eq!(env.v["name"], "path-name");
    assert_eq!(*env.data(), json!({"a": 1, "name": "query_name"}));

    // Query beats body.
    let env = accepted(
        &sink,
        &server.post("/crm?name=query_name", json, br#"{"name":"body_name"}"#),
        "in.gen.crm.query_name",
    );
    assert_eq!(env.v["name"], "query_name");

    // Body JSON alone.
    let env = accepted(
        &sink,
        &server.post("/crm", json, br#"{"name":"body_name","b":2}"#),
        "in.gen.crm.body_name",
    );
    assert_eq!(*env.data(), json!({"name": "body_name", "b": 2}));

    // Body form alone, and query beating a form body.
    accepted(
        &sink,
        &server.post("/crm", form, b"x=1&name=form_name"),
        "in.gen.crm.form_name",
    );
    accepted(
        &sink,
        &server.post("/crm?name=q", form, b"name=form_name"),
        "in.gen.crm.q",
    );
}

/// `projectId`: path segment 3, else query, else body (JSON number or digit
/// string, form value), else 0; any u64 is accepted.
#[test]
fn project_id_comes_from_path_then_query_then_body() {
    let (server, sink) = server_and_sink(&[]);
    let json = Some("application/json");
    let key = "in.gen.aff.conv";
    let project = |resp: Response| accepted(&sink, &resp, key).v["projectId"].clone();

    assert_eq!(
        project(server.post("/aff/conv/1?projectId=2", json, br#"{"projectId":3}"#)),
        1
    );
    assert_eq!(
        project(server.post("/aff/conv?projectId=2", json, br#"{"projectId":3}"#)),
        2
    );
    assert_eq!(
        project(server.post("/aff/conv", json, br#"{"projectId":3}"#)),
        3
    );
    assert_eq!(
        project(server.post("/aff/conv", json, br#"{"projectId":"4"}"#)),
        4
    );
    assert_eq!(
        project(server.post(
            "/aff/conv",
            Some("application/x-www-form-urlencoded"),
            b"projectId=5"
        )),
        5
    );
    assert_eq!(project(server.get("/aff/conv")), 0);
    // A bracketed form beside a plain one anywhere is data; the plain one
    // counts.
    assert_eq!(
        project(server.post("/aff/conv?projectId[]=5", json, br#"{"projectId":7}"#)),
        7
    );
    assert_eq!(
        project(server.get("/aff/conv?projectId[x]=5&projectId=8")),
        8
    );
    let env = accepted(
        &sink,
        &server.post("/aff?name[]=x", json, br#"{"name":"conv"}"#),
        key,
    );
    assert_eq!(env.v["name"], "conv");

    let env = accepted(&sink, &server.get("/aff/conv/18446744073709551615"), key);
    assert_eq!(env.v["projectId"].as_u64(), Some(u64::MAX), "{}", env.raw);
    let env = accepted(
        &sink,
        &server.get("/aff/conv?projectId=18446744073709551615"),
        key,
    );
    assert_eq!(env.v["projectId"].as_u64(), Some(u64::MAX), "{}", env.raw);

    // The body's projectId stays in data exactly as sent.
    let env = accepted(
        &sink,
        &server.post("/aff/conv", json, br#"{"projectId":"4","v":1}"#),
        key,
    );
    assert_eq!(*env.data(), json!({"projectId": "4", "v": 1}));
}

/// The absolute form of a target (`GET http://host/path`, as sent to
/// proxies) is the path after the authority; with no path at all it is `/`.
#[test]
fn absolute_form_targets_are_their_path() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    for target in [
        "http://example.com",
        "HTTPS://example.com:8080",
        "http://h?x=1",
    ] {
        let resp = server.get(target);
        assert_eq!(resp.status, 200, "GET {target}: {resp:?}");
        let raw = raw_until_close(
            &server,
            format!("HEAD {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(raw.starts_with(b"HTTP/1.1 200"), "HEAD {target}");
        server
            .post(target, Some("application/x-www-form-urlencoded"), b"a=1")
            .assert_error(400, "missing_service");
    }
    sink.assert_quiet(Duration::from_millis(200));
    let id = server
        .get("http://example.com/s/n/7?x=1")
        .assert_accepted("in.gen.s.n");
    let env = sink.recv();
    assert_eq!(env["id"], id.to_string());
    assert_eq!(env["projectId"], 7);
    assert_eq!(env["data"]["x"], "1");
}

/// `GET /`, `HEAD` and `OPTIONS` are answered without an event (a HEAD
/// with the status its GET would get); other methods get 405.
#[test]
fn probes_and_preflight_emit_nothing() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);

    let resp = server.get("/");
    assert_eq!(resp.status, 200, "{resp:?}");

    // A HEAD gets the status its GET would, without a body.
    for (target, status) in [
        ("/", 200),
        ("/calltrack/call", 200),
        ("/calltrack/call/99?param=1", 200),
        ("/anything", 400),
        ("/svc?name=bad.name", 400),
        ("/svc/b.ad", 400),
        ("/svc/ev/abc", 400),
        ("/svc/ev?projectId[]=5", 400),
    ] {
        if status != 200 {
            // (A GET that succeeds would emit an event.)
            let get = server.get(target);
            assert_eq!(get.status, status, "GET {target}: {get:?}");
        }
        let raw = raw_until_close(
            &server,
            format!("HEAD {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "HEAD {target}: {text}"
        );
        assert!(
            text.ends_with("\r\n\r\n"),
            "HEAD {target} must not send a body: {text:?}"
        );
    }

    let resp = send(
        &server,
        "OPTIONS",
        b"/calltrack/call",
        &[
            ("Host", b"test"),
            ("Origin", b"https://site.example"),
            ("Access-Control-Request-Method", b"POST"),
        ],
        b"",
    );
    assert_eq!(resp.status, 204, "{resp:?}");
    let methods = resp
        .header("access-control-allow-methods")
        .expect("CORS preflight header");
    assert!(methods.contains("POST"), "{methods}");

    for method in ["PUT", "DELETE", "PATCH"] {
        let resp = send(
            &server,
            method,
            b"/calltrack/call",
            &[("Host", b"test")],
            b"",
        );
        assert_eq!(resp.status, 405, "{method}: {resp:?}");
        assert!(resp.json()["error"].is_string(), "{method}: {resp:?}");
    }

    assert_only_marker_arrives(&server, &sink);
}

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

#[test]
fn missing_service_and_missing_name_are_refused() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let json = Some("application/json");
    let form = Some("application/x-www-form-urlencoded");

    refused(
        &server.post("/", json, br#"{"name":"call"}"#),
        400,
        "missing_service",
    );
    refused(
        &server.post("/?name=call", None, b""),
        400,
        "missing_service",
    );

    refused(&server.get("/calltrack"), 400, "missing_name");
    refused(&server.get("/calltrack/"), 400, "missing_name");
    refused(&server.get("/calltrack//5"), 400, "missing_name");
    refused(
        &server.get("/calltrack?param=1&names=x"),
        400,
        "missing_name",
    );
    refused(
        &server.post("/calltrack", json, br#"{"a":1,"x":{"name":"nested"}}"#),
        400,
        "missing_name",
    );
    refused(
        &server.post("/calltrack", json, br#"[{"name":"in_array"}]"#),
        400,
        "missing_name",
    );
    // A name given only as an object or array says so.
    let r = server.post("/calltrack", form, b"a=1&name[x]=y");
    refused(&r, 400, "invalid_name");
    assert!(r.json()["message"].as_str().unwrap().contains("name[]"));
    refused(&server.post("/calltrack", None, b""), 400, "missing_name");

    assert_only_marker_arrives(&server, &sink);
}

#[test]
fn invalid_service_and_name_are_refused() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);

    for target in [
        "/a.b/call".to_owned(),
        "/a%20b/call".to_owned(),
        "/call:track/call".to_owned(),
        "/%D1%81%D0%B5%D1%80%D0%B2%D0%B8%D1%81/call".to_owned(),
        format!("/{}/call", "s".repeat(65)),
    ] {
        refused(&server.get(&target), 400, "invalid_service");
    }

    for target in [
        "/calltrack/a.b".to_owned(),
        "/calltrack/a%2Eb".to_owned(),
        format!("/calltrack/{}", "n".repeat(65)),
        "/calltrack?name=a.b".to_owned(),
        "/calltrack?name=a+b".to_owned(),
        "/calltrack?name=%D0%B7%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA".to_owned(),
    ] {
        refused(&server.get(&target), 400, "invalid_name");
    }
    refused(
        &server.post(
            "/calltrack",
            Some("application/json"),
            br#"{"name":"new lead"}"#,
        ),
        400,
        "invalid_name",
    );
    refused(
        &server.post(
            "/calltrack",
            Some("application/x-www-form-urlencoded"),
            b"name=in.gen.x",
        ),
        400,
        "invalid_name",
    );
    // A body `name` must be a string: a number is not an event name.
    for body in [
        &br#"{"name":123}"#[..],
        br#"{"name":12345678901234567890123}"#,
    ] {
        refused(
            &server.post("/calltrack", Some("application/json"), body),
            400,
            "invalid_name",
        );
    }

    assert_only_marker_arrives(&server, &sink);
}

#[test]
fn invalid_project_id_is_refused_wherever_it_comes_from() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let bad = ["-1", "1.5", "abc", "18446744073709551616"];

    for v in bad {
        refused(
            &server.get(&format!("/aff/conv/{v}")),
            400,
            "invalid_project_id",
        );
        refused(
            &server.get(&format!("/aff/conv?projectId={v}")),
            400,
            "invalid_project_id",
        );
        refused(
            &server.get(&format!("/aff?name=conv&projectId={v}")),
            400,
            "invalid_project_id",
        );
        // As a JSON string, and as a form value.
        refused(
            &server.post(
                "/aff/conv",
                Some("application/json"),
                format!(r#"{{"projectId":"{v}"}}"#).as_bytes(),
            ),
            400,
            "invalid_project_id",
        );
        refused(
            &server.post(
                "/aff/conv",
                Some("application/x-www-form-urlencoded"),
                format!("projectId={v}").as_bytes(),
            ),
            400,
            "invalid_project_id",
        );
    }
    // As an array or object in the query or a form body, with no plain
    // one: refused, not passed over with projectId 0.
    for q in ["projectId[]=5", "projectId[x]=5"] {
        refused(
            &server.get(&format!("/aff/conv?{q}")),
            400,
            "invalid_project_id",
        );
        refused(
            &server.post(
                "/aff/conv",
                Some("application/x-www-form-urlencoded"),
                q.as_bytes(),
            ),
            400,
            "invalid_project_id",
        );
        refused(
            &server.get(&format!("/aff?{}", q.replace("projectId", "name"))),
            400,
            "invalid_name",
        );
    }
    // As JSON numbers (the `abc` case is the string above).
    for v in ["-1", "1.5", "18446744073709551616"] {
        refused(
            &server.post(
                "/aff/conv",
                Some("application/json"),
                format!(r#"{{"projectId":{v}}}"#).as_bytes(),
            ),
            400,
            "invalid_project_id",
        );
    }

    assert_only_marker_arrives(&server, &sink);
}

#[test]
fn unsupported_content_type_and_encoding_get_415() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);

    for ct in [
        "text/html",
        "application/xml",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "json",
    ] {
        refused(
            &server.post("/crm/lead", Some(ct), b"a=1"),
            415,
            "unsupported_content_type",
        );
    }
    for encoding in ["br", "compress"] {
        let resp = post_with(
            &server,
            "/crm/lead",
            &[
                ("Content-Type", "application/json"),
                ("Content-Encoding", encoding),
            ],
            br#"{"a":1}"#,
        );
        refused(&resp, 415, "unsupported_content_encoding");
    }

    let message = refused(
        &server.post(
            "/crm/lead",
            Some("application/json; charset=x-martian"),
            b"{}",
        ),
        415,
        "unsupported_charset",
    );
    assert!(message.contains("charset"), "{message}");
    // A byte sequence the charset does not define (a Shift_JIS lead byte
    // followed by a space) is refused where it starts, not replaced.
    let message = refused(
        &server.post(
            "/crm/lead",
            Some("application/json; charset=shift_jis"),
            b"{\"a\":\"\x82\xa0\x81 \"}",
        ),
        400,
        "invalid_json",
    );
    assert!(
        message.contains("charset") && message.ends_with("(at byte 8)"),
        "{message}"
    );
    assert_only_marker_arrives(&server, &sink);
}

#[test]
fn invalid_json_is_refused_with_the_byte_offset() {
    // (Each case is refused with 400 and none reaches a consumer.)
    let (server, sink) = server_and_sink(&["--cores", "1"]);

    // (Content-Type, body, where the offset may be: from the start of the
    // bad token to the byte that breaks it)
    let json = Some("application/json");
    let cases: [(Option<&str>, &[u8], std::ops::RangeInclusive<usize>); 15] = [
        // Malformed numbers that simd-json alone lets through: the envelope
        // copies values verbatim, so they must be refused, not forwarded.
        (json, b"{\"a\":1\x00}", 5..=6),
        (json, br#"{"a":12345678901234567890123\4567890}"#, 5..=28),
        (json, br#"{"a":[99999999999999999999-5]}"#, 6..=26),
        (json, br#"{"a":01}"#, 5..=6),
        (json, br#"{"a":}"#, 5..=5),
        (json, br#"{"a":1"#, 5..=6),
        (json, b"[1,2,", 4..=5),
        (json, b"{\"a\":\"\xff\"}", 6..=6),
        (Some("text/plain"), br#"{"a":"1" "b":2}"#, 8..=9),
        (None, b"  [1 2]", 4..=5),
        // Errors inside strings, which simd-json reports at byte 0.
        (json, br#"{"a":"\x"}"#, 6..=7),
        (json, b"{\"a\":\"x\x01y\"}", 7..=7),
        (json, br#"{"aaaaaaaaa":"x"#, 13..=15),
        // Half a surrogate pair: grammatical, but many consumers' parsers
        // reject it, and simd-json turned it into U+0000 in a key.
        (json, br#"{"a":"\ud800"}"#, 6..=6),
        (json, br#"{"\ud800":"x"}"#, 2..=2),
    ];
    for (ct, body, want) in cases {
        let shown = String::from_utf8_lossy(body);
        let message = refused(&server.post("/crm/lead", ct, body), 400, "invalid_json");
        let at: usize = message
            .split("(at byte ")
            .nth(1)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{shown}: no byte offset at the end of {message}"))
            .parse()
            .unwrap();
        assert!(want.contains(&at), "{shown}: at byte {at}, not in {want:?}");
        assert_eq!(
            message.contains("surrogate"),
            shown.contains("\\ud8"),
            "{shown}: {message}"
        );
    }
    // Nesting past 64 levels: refused at the bracket one too deep.
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let message = refused(
        &server.post("/crm/lead", json, deep.as_bytes()),
        400,
        "invalid_json",
    );
    assert!(
        message.contains("64 levels deep") && message.ends_with("(at byte 64)"),
        "{message}"
    );

    assert_only_marker_arrives(&server, &sink);
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// JSON object members go into `data` with their values copied verbatim,
/// minified, whatever the JSON media type and charset.
#[test]
fn json_object_members_are_copied_verbatim() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.crm.deal";

    let body = br#" { "price" : 12.50 ,
        "big": 123456789012345678901234567890,
        "exp": -0.0e+10,
        "nested": { "a": [1, 2.0, {"b": null}], "s": "x  y" },
        "flag": true,
        "esc": "q\"b\\s\u00e9\n"
    }
    "#;
    let env = accepted(
        &sink,
        &server.post("/crm/deal", Some("application/json"), body),
        key,
    );
    assert_eq!(
        env.raw_data(),
        r#"{"price":12.50,"big":123456789012345678901234567890,"exp":-0.0e+10,"nested":{"a":[1,2.0,{"b":null}],"s":"x  y"},"flag":true,"esc":"q\"b\\s\u00e9\n"}"#
    );
    assert_eq!(env.data()["esc"], "q\"b\\sé\n");

    // Keys with escapes are still the right keys.
    let env = accepted(
        &sink,
        &server.post(
            "/crm/deal",
            Some("application/json"),
            br#"{"k\"ey":1,"caf\u00e9":2}"#,
        ),
        key,
    );
    assert_eq!(*env.data(), json!({"k\"ey": 1, "café": 2}));

    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON;charset=windows-1251",
        "application/vnd.api+json",
        "application/ld+json; charset=UTF-8",
    ] {
        let env = accepted(
            &sink,
            &server.post("/crm/deal", Some(ct), br#"{"amount": 1.10, "ids": [1, 2]}"#),
            key,
        );
        assert_eq!(
            env.raw_data(),
            r#"{"amount":1.10,"ids":[1,2]}"#,
            "Content-Type: {ct}"
        );
    }

    // A declared charset other than UTF-8 is decoded: "Привет" in
    // windows-1251 and in koi8-r (quoted) arrives as UTF-8.
    for (ct, body) in [
        (
            "application/json; charset=windows-1251",
            &b"{\"name\":\"\xcf\xf0\xe8\xe2\xe5\xf2\", \"n\": 1}"[..],
        ),
        (
            "application/json; charset=\"KOI8-R\"",
            b"{\"name\":\"\xf0\xd2\xc9\xd7\xc5\xd4\", \"n\": 1}",
        ),
        (
            "text/plain; charset=cp1251",
            b"{\"name\":\"\xcf\xf0\xe8\xe2\xe5\xf2\", \"n\": 1}",
        ),
    ] {
        let env = accepted(&sink, &server.post("/crm/deal", Some(ct), body), key);
        assert_eq!(
            env.raw_data(),
            r#"{"name":"Привет","n":1}"#,
            "Content-Type: {ct}"
        );
    }
    // A UTF-8 byte-order mark is skipped, declared or sniffed; alone or
    // with blanks it is an empty body.
    for ct in [Some("application/json"), None] {
        let env = accepted(
            &sink,
            &server.post("/crm/deal", ct, b"\xef\xbb\xbf{\"a\": \"\xc3\xa9\"}"),
            key,
        );
        assert_eq!(env.raw_data(), r#"{"a":"é"}"#, "Content-Type: {ct:?}");
        for blank in [&b"\xef\xbb\xbf"[..], b"\xef\xbb\xbf \r\n"] {
            let env = accepted(&sink, &server.post("/crm/deal", ct, blank), key);
            assert_eq!(env.raw_data(), "{}", "Content-Type: {ct:?}, body {blank:?}");
        }
    }
    let env = accepted(
        &sink,
        &server.post("/crm/deal", None, b"\xef\xbb\xbfa=1"),
        key,
    );
    assert_eq!(
        env.raw_data(),
        r#"{"a":"1"}"#,
        "a form body's BOM is no part of its first key"
    );
    // UTF-16 in either byte order, told by its BOM as browsers read it.
    let utf16 = |big: bool| -> Vec<u8> {
        let mut out = if big {
            vec![0xfe, 0xff]
        } else {
            vec![0xff, 0xfe]
        };
        for unit in r#"{"name":"Привет"}"#.encode_utf16() {
            out.extend(if big {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            });
        }
        out
    };
    for big in [false, true] {
        let body = utf16(big);
        let env = accepted(
            &sink,
            &server.post("/crm/deal", Some("application/json; charset=utf-16"), &body),
            key,
        );
        assert_eq!(env.raw_data(), r#"{"name":"Привет"}"#, "big-endian: {big}");
        // The mark also decides without a JSON type (sniffed) or label.
        for content_type in [
            None,
            Some("text/plain; charset=utf-16"),
            Some("application/json"),
        ] {
            let env = accepted(&sink, &server.post("/crm/deal", content_type, &body), key);
            assert_eq!(
                env.raw_data(),
                r#"{"name":"Привет"}"#,
                "big-endian: {big}, {content_type:?}"
            );
        }
    }

    let env = accepted(
        &sink,
        &server.post("/crm/deal", Some("application/json"), b"{}"),
        key,
    );
    assert_eq!(env.raw_data(), "{}");
}

/// Any JSON value other than an object is kept whole as `data.body`.
#[test]
fn non_object_json_becomes_data_body() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.crm.batch";
    let json = Some("application/json");

    let cases: [(&[u8], &str); 6] = [
        (
            b" [1, 2.50, {\"x\": \"y z\"}] \n",
            r#"{"body":[1,2.50,{"x":"y z"}]}"#,
        ),
        (br#""just text""#, r#"{"body":"just text"}"#),
        (b"3.10", r#"{"body":3.10}"#),
        (
            b"123456789012345678901234567890",
            r#"{"body":123456789012345678901234567890}"#,
        ),
        (b"null", r#"{"body":null}"#),
        (b"false", r#"{"body":false}"#),
    ];
    for (body, data) in cases {
        let env = accepted(&sink, &server.post("/crm/batch", json, body), key);
        assert_eq!(
            env.raw_data(),
            data,
            "body {:?}",
            String::from_utf8_lossy(body)
        );
    }

    // With query parameters, the body comes first.
    let env = accepted(&sink, &server.post("/crm/batch?src=x", json, b"[1]"), key);
    assert_eq!(env.raw_data(), r#"{"body":[1],"src":"x"}"#);
}

#[test]
fn urlencoded_body_is_decoded_like_a_query() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.cpa.postback";

    for ct in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=UTF-8",
    ] {
        let env = accepted(
            &sink,
            &server.post(
                "/cpa/postback",
                Some(ct),
                b"status=approved&payout=12.50&sub[]=a&sub[]=b&goal=lead+form",
            ),
            key,
        );
        assert_eq!(
            *env.data(),
            json!({"status": "approved", "payout": "12.50", "sub": ["a", "b"], "goal": "lead form"}),
            "Content-Type: {ct}"
        );
        assert_eq!(keys(env.data()), ["status", "payout", "sub", "goal"]);
    }
}

/// No Content-Type or `text/plain`: a first non-blank `{` or `[` means JSON,
/// anything else is urlencoded.
#[test]
fn text_plain_and_missing_type_are_sniffed() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.web.beacon";
    let data =
        |ct: Option<&str>, body: &[u8]| accepted(&sink, &server.post("/web/beacon", ct, body), key);

    let env = data(Some("text/plain"), b" \r\n\t {\"a\": 1.50, \"b\": \"x\"}");
    assert_eq!(env.raw_data(), r#"{"a":1.50,"b":"x"}"#);
    let env = data(Some("text/plain;charset=UTF-8"), b"[1, 2]");
    assert_eq!(env.raw_data(), r#"{"body":[1,2]}"#);
    let env = data(None, br#"{"c":true}"#);
    assert_eq!(env.raw_data(), r#"{"c":true}"#);
    let env = data(None, b"\n[\"s\"]");
    assert_eq!(env.raw_data(), r#"{"body":["s"]}"#);

    let env = data(Some("text/plain"), b"x=1&y=2+3");
    assert_eq!(*env.data(), json!({"x": "1", "y": "2 3"}));
    let env = data(None, b"x=%7B1%7D");
    assert_eq!(*env.data(), json!({"x": "{1}"}));
    let env = data(Some("text/plain"), b"hello world");
    assert_eq!(*env.data(), json!({"hello world": ""}));
    // An empty Content-Type header is a missing one.
    let env = data(Some(""), br#"{"c":true}"#);
    assert_eq!(env.raw_data(), r#"{"c":true}"#);
    let env = data(Some(" "), b"x=1");
    assert_eq!(*env.data(), json!({"x": "1"}));
}

/// What one request's body leaves in the core's reused decoding state
/// (a JSON body past a byte-order mark, one transcoded from its charset)
/// does not reach the next request's: pipelined on one connection and on
/// new ones, each gets its own data.
#[test]
fn one_body_s_decoding_state_does_not_reach_the_next_request() {
    let (server, sink) = server_and_sink(&["--cores", "1"]);
    let post = |path: &str, ct: &str, body: &[u8]| {
        post_request(path, &format!("Content-Type: {ct}\r\n"), body)
    };
    let bom_json = post("/s/bom", "application/json", b"\xef\xbb\xbf{\"a\":\"1\"}");
    let cp1251 = post(
        "/s/cp",
        "application/json; charset=windows-1251",
        b"{\"b\":\"\xcf\xf0\xe8\"}",
    );
    let get = b"GET /s/get?c=1 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec();
    let form = post("/s/form", "application/x-www-form-urlencoded", b"d");
    let plain = post("/s/plain", "application/json", b"{\"e\":\"2\"}");
    let expected = [
        ("in.gen.s.bom", json!({"a": "1"})),
        ("in.gen.s.get", json!({"c": "1"})),
        ("in.gen.s.form", json!({"d": ""})),
        ("in.gen.s.cp", json!({"b": "При"})),
        ("in.gen.s.plain", json!({"e": "2"})),
        ("in.gen.s.get", json!({"c": "1"})),
    ];
    let requests = [&bom_json, &get, &form, &cp1251, &plain, &get];
    let pipelined: Vec<u8> = requests.iter().flat_map(|r| r.iter().copied()).collect();
    let responses = server.exchange(&pipelined, requests.len());
    for (resp, (key, _)) in responses.iter().zip(&expected) {
        resp.assert_accepted(key);
    }
    for (key, data) in &expected {
        let env = recv_envelope(&sink);
        assert_eq!(env.v["key"], *key);
        assert_eq!(*env.data(), *data, "{key}");
    }
    // And one request per connection, in the same order.
    for (raw, (key, data)) in requests.iter().zip(&expected) {
        server.request(raw).assert_accepted(key);
        assert_eq!(*recv_envelope(&sink).data(), *data, "{key}");
    }
}

/// An empty body adds nothing to `data`, whatever its Content-Type says.
#[test]
fn empty_body_adds_no_data_whatever_the_type() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.web.ping";

    for ct in [
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        Some("application/xml"),
    ] {
        let env = accepted(&sink, &server.post("/web/ping", ct, b""), key);
        assert_eq!(env.raw_data(), "{}", "Content-Type: {ct:?}");
        let env = accepted(&sink, &server.post("/web/ping?q=1", ct, b""), key);
        assert_eq!(env.raw_data(), r#"{"q":"1"}"#, "Content-Type: {ct:?}");
    }
    // Nor does a body of only blanks, in any type hookwire reads.
    for ct in [
        None,
        Some("application/json"),
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
    ] {
        for body in [&b"\r\n"[..], b"  ", b" \t\n "] {
            let env = accepted(&sink, &server.post("/web/ping?q=1", ct, body), key);
            assert_eq!(
                env.raw_data(),
                r#"{"q":"1"}"#,
                "Content-Type: {ct:?}, body {body:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Query and form decoding, merging
// ---------------------------------------------------------------------------

/// The decoding rules, checked on a query string and on a urlencoded body.
#[test]
fn query_and_form_decoding_rules() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.amo.lead";
    let input = "q=a+b%21&my+key=v&stray=100%25%&z=%zz&flag&rep=1&rep=2&arr[]=x&one[]=only\
                 &obj[b]=1&obj[c]=2&obj[b]=3&deep[y][0][id]=1&deep[y][0][name]=Deal\
                 &mix=plain&mix[b]=nested&late[k]=n&late=p&num=007&cyr=%D0%BF%D1%80%D0%B8\
                 &bad=caf%E9&e=";
    let expected = json!({
        "q": "a b!",
        "my key": "v",
        "stray": "100%%",
        "z": "%zz",
        "flag": "",
        "rep": ["1", "2"],
        "arr": ["x"],
        "one": ["only"],
        "obj": {"b": ["1", "3"], "c": "2"},
        "deep": {"y[0][id]": "1", "y[0][name]": "Deal"},
        "mix": "plain",
        "mix[b]": "nested",
        "late": "p",
        "late[k]": "n",
        "num": "007",
        "cyr": "при",
        "bad": "caf%E9",
        "e": "",
    });
    // First occurrence of each top-level name; a name's plain value before
    // its kept `name[k]` entries.
    let order = [
        "q", "my key", "stray", "z", "flag", "rep", "arr", "one", "obj", "deep", "mix", "mix[b]",
        "late", "late[k]", "num", "cyr", "bad", "e",
    ];

    let from_query = get_data(&server, &sink, &format!("/amo/lead?{input}"), key);
    assert_eq!(from_query, expected, "query");
    assert_eq!(keys(&from_query), order, "query member order");

    let env = accepted(
        &sink,
        &server.post(
            "/amo/lead",
            Some("application/x-www-form-urlencoded"),
            input.as_bytes(),
        ),
        key,
    );
    assert_eq!(*env.data(), expected, "form body");
    assert_eq!(keys(env.data()), order, "form member order");
}

/// A value that is not UTF-8 after percent-decoding is kept exactly as sent
/// (still percent-encoded); the envelope stays valid UTF-8 JSON.
#[test]
fn non_utf8_values_are_kept_as_sent() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.legacy.hit";

    let env = accepted(
        &sink,
        &server.get("/legacy/hit?city=caf%E9&two=%FF%FEok&half=%D0&good=%C3%A9"),
        key,
    );
    assert_eq!(
        *env.data(),
        json!({"city": "caf%E9", "two": "%FF%FEok", "half": "%D0", "good": "é"})
    );

    // In a form body too, where raw bytes that are not UTF-8 become `%XX`
    // and the rest of the value is kept as sent (`+` included).
    let env = accepted(
        &sink,
        &server.post(
            "/legacy/hit",
            Some("application/x-www-form-urlencoded"),
            b"city=caf%E9&raw=\xd0\xbf\xe9+x&ok=\xd0\xbf+x",
        ),
        key,
    );
    assert_eq!(
        *env.data(),
        json!({"city": "caf%E9", "raw": "п%E9+x", "ok": "п x"})
    );
}

/// Legacy senders put raw (unencoded) windows-1251 bytes in the query; the
/// event is accepted and those bytes become `%XX`, like in a form body.
#[test]
fn raw_non_utf8_query_bytes_become_percent_escapes() {
    let (server, sink) = server_and_sink(&[]);

    let resp = send(
        &server,
        "GET",
        b"/legacy/hit?city=\xcc\xee\xf1\xea\xe2\xe0&raw=ab\xffcd",
        &[("Host", b"test")],
        b"",
    );
    let env = accepted(&sink, &resp, "in.gen.legacy.hit");
    assert_eq!(
        *env.data(),
        json!({"city": "%CC%EE%F1%EA%E2%E0", "raw": "ab%FFcd"})
    );
}

/// Body members first, then query parameters; on the same top-level key the
/// query wins and the body's member is left out.
#[test]
fn body_and_query_merge_with_the_query_winning() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.crm.update";

    let env = accepted(
        &sink,
        &server.post(
            "/crm/update?b=query&d=q",
            Some("application/json"),
            br#"{"a":"body","b":"body","c":{"x":1.0}}"#,
        ),
        key,
    );
    assert_eq!(
        env.raw_data(),
        r#"{"a":"body","c":{"x":1.0},"b":"query","d":"q"}"#
    );

    let env = accepted(
        &sink,
        &server.post(
            "/crm/update?b=3&arr[]=y&o[y]=2",
            Some("application/x-www-form-urlencoded"),
            b"a=1&b=2&arr[]=x&o[x]=1&z=9",
        ),
        key,
    );
    assert_eq!(
        env.raw_data(),
        r#"{"a":"1","z":"9","b":"3","arr":["y"],"o":{"y":"2"}}"#
    );

    // A JSON key written `a[b]` is under `a`, as in a form: the query's `c`
    // (which keeps its own `c[x]`) overrides it, so no name repeats.
    let env = accepted(
        &sink,
        &server.post(
            "/crm/update?c=2&c[x]=1",
            Some("application/json"),
            br#"{"c[x]":"body","c":"body","d[y]":"kept"}"#,
        ),
        key,
    );
    assert_eq!(env.raw_data(), r#"{"d[y]":"kept","c":"2","c[x]":"1"}"#);

    // A non-object body is the member `body`; a query `body` replaces it.
    let env = accepted(
        &sink,
        &server.post("/crm/update?body=q", Some("application/json"), b"[1]"),
        key,
    );
    assert_eq!(env.raw_data(), r#"{"body":"q"}"#);

    // Routing parameters from the query override the body's too.
    let env = accepted(
        &sink,
        &server.post(
            "/crm?name=update&projectId=2",
            Some("application/json"),
            br#"{"projectId":1,"name":"x"}"#,
        ),
        key,
    );
    assert_eq!(env.v["projectId"], 2);
    assert_eq!(env.raw_data(), r#"{"name":"update","projectId":"2"}"#);
}

/// `name`, `projectId` and `uid` used for routing stay in `data`.
#[test]
fn routing_parameters_stay_in_data() {
    let (server, sink) = server_and_sink(&[]);

    let env = accepted(
        &sink,
        &server.get("/calltrack?name=call&projectId=42&uid=1234567890&x=1"),
        "in.gen.calltrack.call",
    );
    assert_eq!(env.v["projectId"], 42);
    assert_eq!(env.v["uid"], "1234567890");
    assert_eq!(
        env.raw_data(),
        r#"{"name":"call","projectId":"42","uid":"1234567890","x":"1"}"#
    );

    let env = accepted(
        &sink,
        &server.post(
            "/calltrack",
            Some("application/json"),
            br#"{"name":"call","projectId":42,"uid":"1234567890"}"#,
        ),
        "in.gen.calltrack.call",
    );
    assert_eq!(env.v["projectId"], 42);
    assert_eq!(
        env.raw_data(),
        r#"{"name":"call","projectId":42,"uid":"1234567890"}"#
    );
}

// ---------------------------------------------------------------------------
// The envelope
// ---------------------------------------------------------------------------

#[test]
fn envelope_fields_order_ids_and_time() {
    let (server, sink) = server_and_sink(&[]);

    let before = now_ms();
    let resp = send(
        &server,
        "GET",
        b"/calltrack/call/99?param=myparamvalue",
        &[("Host", b"test.rstat.org"), ("User-Agent", b"curl/7.60.0")],
        b"",
    );
    let after = now_ms();

    // The response: exactly {"key","id"}.
    let body = resp.json();
    assert_eq!(keys(&body), ["key", "id"], "{body}");
    let env = accepted(&sink, &resp, "in.gen.calltrack.call");
    let v = &env.v;
    assert_eq!(
        keys(v),
        [
            "key",
            "channel",
            "service",
            "name",
            "projectId",
            "uid",
            "td",
            "data",
            "id",
            "time"
        ],
        "{}",
        env.raw
    );
    assert_eq!(v["channel"], "http");
    assert_eq!(v["service"], "calltrack");
    assert_eq!(v["name"], "call");
    assert_eq!(v["projectId"], 99);
    assert_eq!(
        v["td"],
        json!({"ip": "127.0.0.1", "ua": "curl/7.60.0", "host": "test.rstat.org"})
    );
    assert_eq!(v["data"], json!({"param": "myparamvalue"}));

    let id: u64 = v["id"]
        .as_str()
        .expect("id is a string")
        .parse()
        .expect("decimal id");
    let time = v["time"].as_u64().expect("time is a number");
    assert_eq!(id >> 22, time, "id >> 22 == time");
    assert!(
        (before..=after).contains(&time),
        "time {time} not within [{before}, {after}]"
    );

    // A generated uid is a snowflake of the same moment, not the id.
    let uid: u64 = v["uid"]
        .as_str()
        .expect("uid is a string")
        .parse()
        .expect("decimal uid");
    assert_ne!(uid, id);
    assert!(
        (before..=after).contains(&(uid >> 22)),
        "uid {uid} is not a snowflake of now"
    );

    // Ids (and generated uids) never repeat.
    let mut seen = std::collections::HashSet::from([id, uid]);
    for i in 0..20 {
        let env = accepted(
            &sink,
            &server.get(&format!("/calltrack/call?i={i}")),
            "in.gen.calltrack.call",
        );
        for field in ["id", "uid"] {
            let n: u64 = env.v[field].as_str().unwrap().parse().unwrap();
            assert!(seen.insert(n), "{field} {n} repeated");
        }
        let id: u64 = env.v["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(id >> 22, env.v["time"].as_u64().unwrap());
    }
}

/// `uid`: the first of query, body, cookie matching `^[0-9]{10,22}$`,
/// otherwise generated.
#[test]
fn uid_comes_from_query_body_or_cookie() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.app.install";
    let uid = |target: &str, cookie: Option<&str>, body: Option<(&str, &[u8])>| -> Envelope {
        let mut headers: Vec<(&str, &[u8])> = vec![("Host", b"test")];
        if let Some(c) = cookie {
            headers.push(("Cookie", c.as_bytes()));
        }
        let (method, body) = match body {
            Some((ct, b)) => {
                headers.push(("Content-Type", ct.as_bytes()));
                ("POST", b)
            }
            None => ("GET", &b""[..]),
        };
        accepted(
            &sink,
            &send(&server, method, target.as_bytes(), &headers, body),
            key,
        )
    };
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";

    // Each source alone.
    assert_eq!(
        uid("/app/install?uid=1234567890", None, None).v["uid"],
        "1234567890"
    );
    assert_eq!(
        uid(
            "/app/install",
            None,
            Some((json, br#"{"uid":"12345678901"}"#))
        )
        .v["uid"],
        "12345678901"
    );
    assert_eq!(
        uid("/app/install", None, Some((form, b"uid=123456789012"))).v["uid"],
        "123456789012"
    );
    assert_eq!(
        uid("/app/install", Some("session=abc; uid=1234567890123"), None).v["uid"],
        "1234567890123"
    );
    assert_eq!(
        uid("/app/install", Some("a=1;uid=1234567890124;b=2"), None).v["uid"],
        "1234567890124"
    );
    assert_eq!(
        uid("/app/install?uid=1234567890123456789012", None, None).v["uid"],
        "1234567890123456789012",
        "22 digits is still a uid"
    );
    // A JSON number too: past 64 bits (20-22 digits) its digits as sent.
    for digits in [
        "1234567890123",
        "123456789012345678901",
        "1234567890123456789012",
    ] {
        let body = format!(r#"{{"uid":{digits}}}"#);
        assert_eq!(
            uid("/app/install", None, Some((json, body.as_bytes()))).v["uid"],
            digits,
            "a numeric body uid of {} digits",
            digits.len()
        );
    }

    // Several Cookie headers (as proxies from HTTP/2 send them): all of
    // them are searched, in order.
    let raw = b"GET /app/install HTTP/1.1\r\nHost: test\r\nCookie: a=1; uid=12\r\nCookie: b=2; uid=1234567890125\r\nCookie: uid=1234567890126\r\n\r\n";
    let id = server.request(raw).assert_accepted(key);
    let env = recv_envelope(&sink);
    assert_eq!(env.v["id"], id.to_string());
    assert_eq!(env.v["uid"], "1234567890125");

    // Precedence: query, then body, then cookie; invalid ones are skipped.
    let all = Some("uid=3333333333");
    let body: Option<(&str, &[u8])> = Some((json, br#"{"uid":"2222222222"}"#));
    assert_eq!(
        uid("/app/install?uid=1111111111", all, body).v["uid"],
        "1111111111"
    );
    assert_eq!(
        uid("/app/install?uid=abc", all, body).v["uid"],
        "2222222222"
    );
    let bad_body: Option<(&str, &[u8])> = Some((json, br#"{"uid":"12345678901234567890123"}"#));
    assert_eq!(
        uid("/app/install?uid=123456789", all, bad_body).v["uid"],
        "3333333333"
    );
    assert_eq!(
        uid("/app/install", all, Some((form, b"uid=4444444444"))).v["uid"],
        "4444444444"
    );
    // A repeated uid: its first value that looks like an id.
    assert_eq!(
        uid(
            "/app/install?uid=abc&uid=5555555555&uid=6666666666",
            all,
            body
        )
        .v["uid"],
        "5555555555"
    );
    assert_eq!(
        uid("/app/install", all, Some((form, b"uid=x&uid=7777777777"))).v["uid"],
        "7777777777"
    );

    // Nothing valid anywhere: a fresh snowflake; the sent values stay in data.
    let before = now_ms();
    let env = uid(
        "/app/install?uid=12345abcde",
        Some("xuid=5555555555; uid=123"),
        None,
    );
    let after = now_ms();
    let generated: u64 = env.v["uid"]
        .as_str()
        .unwrap()
        .parse()
        .expect("generated uid is decimal");
    assert!((before..=after).contains(&(generated >> 22)), "{}", env.raw);
    assert_eq!(env.data()["uid"], "12345abcde");

    let a = uid("/app/install", None, None).v["uid"].clone();
    let b = uid("/app/install", None, None).v["uid"].clone();
    assert_ne!(a, b, "generated uids repeat");
}

// ---------------------------------------------------------------------------
// Transport data
// ---------------------------------------------------------------------------

/// `td` has `ip` always, and `ua`, `ref`, `host` only when sent.
#[test]
fn transport_data_reflects_the_headers_sent() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.web.visit";

    let td = |headers: &[(&str, &[u8])]| {
        accepted(
            &sink,
            &send(&server, "GET", b"/web/visit", headers, b""),
            key,
        )
        .v["td"]
            .clone()
    };

    assert_eq!(td(&[]), json!({"ip": "127.0.0.1"}));
    assert_eq!(
        td(&[("User-Agent", b"curl/7.60.0")]),
        json!({"ip": "127.0.0.1", "ua": "curl/7.60.0"})
    );
    assert_eq!(
        td(&[
            ("host", b"hooks.example.com:8080"),
            ("REFERER", b"https://ref.example/page?a=1&b=\"2\""),
            ("user-agent", b"Mozilla/5.0 (X11; Linux x86_64)"),
        ]),
        json!({
            "ip": "127.0.0.1",
            "ua": "Mozilla/5.0 (X11; Linux x86_64)",
            "ref": "https://ref.example/page?a=1&b=\"2\"",
            "host": "hooks.example.com:8080",
        })
    );
}

/// Loopback is a trusted proxy by default: X-Real-IP wins, else the last
/// untrusted hop of X-Forwarded-For; X-Forwarded-Host replaces Host.
#[test]
fn trusted_proxy_headers_are_used_from_loopback() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.web.visit";
    let td = |headers: &[(&str, &[u8])]| {
        accepted(
            &sink,
            &send(&server, "GET", b"/web/visit", headers, b""),
            key,
        )
        .v["td"]
            .clone()
    };

    let t = td(&[
        ("X-Real-IP", b"203.0.113.7"),
        ("X-Forwarded-For", b"198.51.100.1"),
    ]);
    assert_eq!(t["ip"], "203.0.113.7");
    let t = td(&[("X-Real-IP", b"2001:db8::1")]);
    assert_eq!(t["ip"], "2001:db8::1");
    // (X-Forwarded-For, the client's address, why)
    let xff = "X-Forwarded-For";
    let cases: [(&str, &[u8], &str, &str); 10] = [
        (xff, b"198.51.100.23", "198.51.100.23", "one hop"),
        (
            xff,
            b"198.51.100.1, 203.0.113.9",
            "203.0.113.9",
            "the rightmost untrusted hop",
        ),
        (
            "x-forwarded-for",
            b"198.51.100.1, 203.0.113.9, 127.0.0.1,127.0.0.5",
            "203.0.113.9",
            "trusted hops on the right are skipped",
        ),
        // A hop that is not an address stops the walk: what a client wrote
        // to its left must not become its address.
        (
            xff,
            b"6.6.6.6, unknown",
            "127.0.0.1",
            "an unreadable last hop: the peer",
        ),
        (
            xff,
            b"6.6.6.6, garbage, 127.0.0.2",
            "127.0.0.2",
            "the nearest hop read before it",
        ),
        // Empty hops (a doubled or trailing comma) are formatting, skipped.
        (
            xff,
            b"6.6.6.6, 203.0.113.9,",
            "203.0.113.9",
            "a trailing comma",
        ),
        (
            xff,
            b"203.0.113.9, , 127.0.0.2",
            "203.0.113.9",
            "an empty hop",
        ),
        // Hops with a port, and IPv4-mapped IPv6, as some proxies write them.
        (xff, b"6.6.6.6, 203.0.113.9:5678", "203.0.113.9", "a port"),
        (
            xff,
            b"6.6.6.6, [2001:db8::7]:443",
            "2001:db8::7",
            "an IPv6 hop with a port",
        ),
        (
            xff,
            b"203.0.113.9, ::ffff:127.0.0.1",
            "203.0.113.9",
            "a mapped loopback hop is trusted",
        ),
    ];
    for (header, value, ip, why) in cases {
        assert_eq!(td(&[(header, value)])["ip"], ip, "{why}");
    }
    let t = td(&[("X-Real-IP", b"::ffff:203.0.113.7")]);
    assert_eq!(t["ip"], "203.0.113.7");

    let t = td(&[
        ("Host", b"internal:8080"),
        ("X-Forwarded-Host", b"hooks.example.com"),
    ]);
    assert_eq!(t, json!({"ip": "127.0.0.1", "host": "hooks.example.com"}));
}

/// When loopback is not a configured proxy, its forwarding headers are
/// ignored.
#[test]
fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let (server, sink) = server_and_sink(&["--trusted-proxy", "10.0.0.0/8"]);
    let key = "in.gen.web.visit";
    let td = |headers: &[(&str, &[u8])]| {
        accepted(
            &sink,
            &send(&server, "GET", b"/web/visit", headers, b""),
            key,
        )
        .v["td"]
            .clone()
    };

    let t = td(&[
        ("Host", b"internal:8080"),
        ("X-Real-IP", b"203.0.113.7"),
        ("X-Forwarded-For", b"198.51.100.1, 10.1.2.3"),
        ("X-Forwarded-Host", b"spoofed.example"),
    ]);
    assert_eq!(t, json!({"ip": "127.0.0.1", "host": "internal:8080"}));
    let t = td(&[("X-Forwarded-For", b"198.51.100.1")]);
    assert_eq!(t, json!({"ip": "127.0.0.1"}));
}

// ---------------------------------------------------------------------------
// Unicode and escaping
// ---------------------------------------------------------------------------

/// Quotes, backslashes, control characters and Cyrillic in query values,
/// keys, form bodies and headers come out as the right strings in a valid
/// UTF-8 JSON envelope.
#[test]
fn unicode_and_escaping_survive_into_valid_json() {
    let (server, sink) = server_and_sink(&[]);
    let key = "in.gen.chat.msg";

    let target = "/chat/msg?quote=%22hi%22&bs=a%5Cb%5C&ctl=%00%01%1F%7F&nl=l1%0Al2%0D%09\
                  &cyr=%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82+%D0%BC%D0%B8%D1%80&emoji=%F0%9F%98%80\
                  &%D0%BA%D0%BB%D1%8E%D1%87=v&%22k%5C=w&json=%7B%22a%22%3A1%7D&u=%5Cu0041";
    let env = accepted(
        &sink,
        &send(
            &server,
            "GET",
            target.as_bytes(),
            &[("User-Agent", "Мозилла \"x\\y\"".as_bytes())],
            b"",
        ),
        key,
    );
    assert!(
        !env.raw.bytes().any(|b| b < 0x20),
        "raw control bytes in {:?}",
        env.raw
    );
    assert_eq!(
        *env.data(),
        json!({
            "quote": "\"hi\"",
            "bs": "a\\b\\",
            "ctl": "\u{0}\u{1}\u{1f}\u{7f}",
            "nl": "l1\nl2\r\t",
            "cyr": "Привет мир",
            "emoji": "😀",
            "ключ": "v",
            "\"k\\": "w",
            "json": "{\"a\":1}",
            "u": "\\u0041",
        })
    );
    assert_eq!(env.v["td"]["ua"], "Мозилла \"x\\y\"");

    // Raw (unencoded) UTF-8 in a form body and a query.
    let env = accepted(
        &sink,
        &send(
            &server,
            "POST",
            "/chat/msg?город=Москва".as_bytes(),
            &[("Content-Type", b"application/x-www-form-urlencoded")],
            "текст=Привет, \"мир\"\\&ok=1".as_bytes(),
        ),
        key,
    );
    assert_eq!(
        *env.data(),
        json!({"текст": "Привет, \"мир\"\\", "ok": "1", "город": "Москва"})
    );

    // A JSON body's escapes are kept verbatim and still decode correctly.
    let env = accepted(
        &sink,
        &server.post(
            "/chat/msg",
            Some("application/json"),
            "{\"s\":\"a\\\"b\\\\c\\n\\u0001\\u041f ж\"}".as_bytes(),
        ),
        key,
    );
    assert_eq!(env.raw_data(), r#"{"s":"a\"b\\c\n\u0001\u041f ж"}"#);
    assert_eq!(env.data()["s"], "a\"b\\c\n\u{1}П ж");

    // A header that is not UTF-8 still yields a valid envelope.
    let env = accepted(
        &sink,
        &send(
            &server,
            "GET",
            b"/chat/msg",
            &[("User-Agent", b"bot\xff\xfe/1.0")],
            b"",
        ),
        key,
    );
    let ua = env.v["td"]["ua"].as_str().expect("ua string");
    assert!(ua.starts_with("bot") && ua.ends_with("/1.0"), "{ua}");
}
