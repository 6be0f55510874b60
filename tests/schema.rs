//! `docs/envelope.schema.json` against real envelopes: requests of every
//! kind through the real binary, their envelopes validated with Python's
//! `jsonschema`.

mod common;

use std::time::Duration;

use common::*;

/// Validates each line of the file `argv[2]` with the schema `argv[1]`;
/// prints `ok N`, or each error.
const VALIDATE: &str = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
n = 0
for line in open(sys.argv[2], encoding="utf-8"):
    envelope = json.loads(line)
    for error in validator.iter_errors(envelope):
        print("invalid:", list(error.path), error.message, line.strip())
    assert int(envelope["id"]) >> 22 == envelope["time"], line
    n += 1
print("ok", n)
"#;

fn validate(envelopes: &[Vec<u8>]) -> String {
    let dir = temp_dir("schema");
    let file = dir.join("envelopes.jsonl");
    let mut text = Vec::new();
    for e in envelopes {
        text.extend_from_slice(e);
        text.push(b'\n');
    }
    std::fs::write(&file, text).unwrap();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/envelope.schema.json");
    let out = run_python(VALIDATE, &[schema, file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn real_envelopes_match_the_published_schema() {
    let (server, sink) = server_and_sink(&[]);
    let form = Some("application/x-www-form-urlencoded");
    let requests: Vec<Response> = vec![
        server.get("/calltrack/call/99?param=myparamvalue"),
        server.get("/calltrack?name=call&projectId=18446744073709551615"),
        server.post("/crm/lead", form, b"param1=value1&a[b]=2&a[c]=3"),
        server.post(
            "/crm/lead/7",
            Some("application/json"),
            br#"{"key1":"value1","n":12.50,"list":[1,{"x":null}],"name":"ignored"}"#,
        ),
        server.post("/crm/lead", Some("application/json"), b"[1,2,3]"),
        server.post("/crm/lead", Some("text/plain"), b"plain=text&more=1"),
        server.post("/crm/lead", Some("text/plain"), br#"{"beacon":true}"#),
        server.get("/s/n?uid=12345678901234&v=1"),
        server.get("/s/n?bad=%FF%FE&ctl=%01%1F"),
        server.request(
            b"GET /s/n?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: a\xffb\r\nReferer: http://r/\r\n\r\n",
        ),
        server.post(
            "/s/n",
            Some("application/x-www-form-urlencoded; charset=windows-1251"),
            b"city=\xcc\xee\xf1\xea\xe2\xe0",
        ),
        server.post(
            "/s/n",
            Some("application/json; charset=windows-1251"),
            b"{\"city\":\"\xcc\xee\xf1\xea\xe2\xe0\"}",
        ),
    ];
    for r in &requests {
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    let envelopes = sink.recv_raw(requests.len(), Duration::from_secs(10));
    let out = validate(&envelopes);
    assert_eq!(out.trim(), format!("ok {}", requests.len()), "{out}");

    // The validator does fail: an envelope with a member changed.
    let mut broken: serde_json::Value = serde_json::from_slice(&envelopes[0]).unwrap();
    broken["projectId"] = serde_json::json!("99");
    broken["td"]["extra"] = serde_json::json!(1);
    let out = validate(&[serde_json::to_vec(&broken).unwrap()]);
    assert_eq!(out.matches("invalid:").count(), 2, "{out}");
}

/// A service with a `[[source]]` adds `td.delivery` and `td.headers`.
#[test]
fn envelopes_of_a_source_match_the_published_schema() {
    let dir = temp_dir("schema-source");
    let config = dir.join("hookwire.toml");
    std::fs::write(
        &config,
        "[[source]]\nservice = \"gh\"\nverify = \"none\"\nheaders = [\"X-GitHub-Event\"]\ndelivery-header = \"X-GitHub-Delivery\"\n",
    )
    .unwrap();
    let (server, sink) = server_and_sink(&["--config", config.to_str().unwrap()]);
    let body = br#"{"action":"opened","n":1}"#;
    let post = |headers: &str| {
        let head = format!(
            "POST /gh/push HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        server.request(&[head.as_bytes(), &body[..]].concat())
    };
    let requests = [
        post("X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\n"),
        post("X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0959\r\n"),
        post("X-GitHub-Event: push\r\n"),
    ];
    for r in &requests {
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    let envelopes = sink.recv_raw(requests.len(), Duration::from_secs(10));
    let first: serde_json::Value = envelopes
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(e).unwrap())
        .find(|e| e["td"]["headers"]["x-github-event"] == "pull_request")
        .expect("the first request's envelope");
    assert_eq!(
        (&first["td"]["delivery"], &first["td"]["headers"]),
        (
            &serde_json::json!("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            &serde_json::json!({"x-github-event": "pull_request"})
        ),
        "{first}"
    );
    let out = validate(&envelopes);
    assert_eq!(out.trim(), format!("ok {}", requests.len()), "{out}");

    // Header names are lower-case, values strings.
    let mut broken = first.clone();
    broken["td"]["headers"] = serde_json::json!({"X-GitHub-Event": "push", "x-n": 1});
    let out = validate(&[serde_json::to_vec(&broken).unwrap()]);
    assert_eq!(out.matches("invalid:").count(), 2, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pixel's and a click's envelopes: `channel` is `pixel` and `redirect`.
#[test]
fn pixel_and_click_envelopes_match_the_published_schema() {
    let dir = temp_dir("schema-browser");
    let config = dir.join("hookwire.toml");
    std::fs::write(
        &config,
        "[[source]]\nservice = \"click\"\nredirect-allow = [\"offer.example\"]\n",
    )
    .unwrap();
    let (server, sink) = server_and_sink(&["--config", config.to_str().unwrap()]);
    let pixel = server.get("/affise/conversion/7.gif?clickid=c1");
    assert_eq!(pixel.status, 200);
    let click = server.get("/click/go?to=https%3A%2F%2Foffer.example%2F%3Fc%3D%7Bid%7D");
    assert_eq!(click.status, 302);
    let envelopes = sink.recv_raw(2, Duration::from_secs(10));
    let mut channels: Vec<String> = envelopes
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(e).unwrap()["channel"].to_string())
        .collect();
    channels.sort();
    assert_eq!(channels, ["\"pixel\"", "\"redirect\""]);
    let out = validate(&envelopes);
    assert_eq!(out.trim(), "ok 2", "{out}");
    let mut broken: serde_json::Value = serde_json::from_slice(&envelopes[0]).unwrap();
    broken["channel"] = serde_json::json!("img");
    let out = validate(&[serde_json::to_vec(&broken).unwrap()]);
    assert_eq!(out.matches("invalid:").count(), 1, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
