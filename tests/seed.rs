//! The original Rockstat page's curl examples, run literally with curl
//! against the real binary (only the host is replaced by the test server).

mod common;

use std::process::Command;

use common::*;

/// Runs a curl command line from the page, with `https://<host>` replaced.
fn curl(server: &Server, line: &str) -> String {
    let base = format!("http://{}", server.addr);
    let line = line
        .replace("https://test.rstat.org", &base)
        .replace("https://yourdomain", &base);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{line} --silent --show-error --max-time 10"))
        .output()
        .expect("curl must be installed (see .ci/run)");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The response the page shows: `{"key":"in.gen.calltrack.call","id":"<digits>"}`.
fn assert_page_response(body: &str) -> String {
    let id = body
        .strip_prefix(r#"{"key":"in.gen.calltrack.call","id":""#)
        .and_then(|rest| rest.strip_suffix(r#""}"#))
        .unwrap_or_else(|| panic!("not the page's response shape: {body}"));
    assert!(
        id.len() >= 18 && id.bytes().all(|b| b.is_ascii_digit()),
        "{body}"
    );
    id.to_owned()
}

/// The envelope as the page shows it, for this id and data.
fn assert_page_envelope(
    env: &serde_json::Value,
    id: &str,
    project_id: u64,
    data: serde_json::Value,
) {
    let keys: Vec<_> = env.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
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
        ]
    );
    assert_eq!(env["key"], "in.gen.calltrack.call");
    assert_eq!(env["channel"], "http");
    assert_eq!(env["service"], "calltrack");
    assert_eq!(env["name"], "call");
    assert_eq!(env["projectId"], project_id);
    assert_eq!(env["id"], id);
    assert_eq!(env["td"]["ip"], "127.0.0.1");
    assert!(env["td"]["ua"].as_str().unwrap().starts_with("curl/"));
    assert_eq!(env["data"], data);
    let id: u64 = id.parse().unwrap();
    assert_eq!(env["time"].as_u64().unwrap(), id >> 22);
    let uid: u64 = env["uid"].as_str().unwrap().parse().unwrap();
    assert_eq!(uid + 1, id, "a generated uid is the id issued just before");
}

#[test]
fn seed_curl_examples() {
    let (server, sink) = server_and_sink(&[]);

    let body = curl(
        &server,
        "curl https://test.rstat.org/calltrack/call/99?param=myparamvalue",
    );
    let id = assert_page_response(&body);
    assert_page_envelope(
        &sink.recv(),
        &id,
        99,
        serde_json::json!({"param": "myparamvalue"}),
    );

    let body = curl(&server, "curl https://test.rstat.org/calltrack?name=call");
    let id = assert_page_response(&body);
    assert_page_envelope(&sink.recv(), &id, 0, serde_json::json!({"name": "call"}));

    let body = curl(
        &server,
        r#"curl -X POST -H "Content-Type: application/json" https://yourdomain/calltrack/call \
    -d '{"key1":"value1", "key2":"value2"}'"#,
    );
    let id = assert_page_response(&body);
    assert_page_envelope(
        &sink.recv(),
        &id,
        0,
        serde_json::json!({"key1": "value1", "key2": "value2"}),
    );

    let body = curl(
        &server,
        r#"curl -X POST -H "Content-Type: application/x-www-form-urlencoded" https://yourdomain/calltrack/call \
    -d "param1=value1&param2=value26""#,
    );
    let id = assert_page_response(&body);
    assert_page_envelope(
        &sink.recv(),
        &id,
        0,
        serde_json::json!({"param1": "value1", "param2": "value26"}),
    );
}

#[test]
fn seed_post_with_name_and_project_in_query() {
    // POST https://yourdomain/<service>?name=<event_name>&projectId=<project_id> <<< {data: "mydaa"}
    // The page's body is JS-style, not JSON; as JSON it is `{"data":"mydaa"}`.
    let (server, sink) = server_and_sink(&[]);
    let body = curl(
        &server,
        r#"curl -X POST -H "Content-Type: application/json" 'https://yourdomain/calltrack?name=call&projectId=7' -d '{"data": "mydaa"}'"#,
    );
    let id = assert_page_response(&body);
    assert_page_envelope(
        &sink.recv(),
        &id,
        7,
        serde_json::json!({"data": "mydaa", "name": "call", "projectId": "7"}),
    );

    // Sent literally with curl's default form content type, the body is one
    // urlencoded key without a value; it is still accepted, nothing lost.
    let body = curl(
        &server,
        r#"curl -X POST 'https://yourdomain/calltrack?name=call&projectId=7' -d '{data: "mydaa"}'"#,
    );
    let id = assert_page_response(&body);
    assert_page_envelope(
        &sink.recv(),
        &id,
        7,
        serde_json::json!({"{data: \"mydaa\"}": "", "name": "call", "projectId": "7"}),
    );
}
