//! `[[source]]`s against the real binary and a real ZeroMQ consumer:
//! requests signed with the senders' own libraries (Python's
//! `standardwebhooks`, `svix`, `stripe`; `hmac` for GitHub, Shopify,
//! Slack, Zoom, Twitch), each subscription challenge driven as its
//! sender documents it, and every refusal checked for its status, code
//! and the absence of an envelope.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{post_request, run_python, stats, temp_dir, Response, Server, Sink, BIN};

/// A server pushing to a fresh sink, with `config` as its TOML file and
/// `env` in its environment.
fn with_config(config: &str, args: &[&str], env: &[(&str, &str)]) -> (Server, Sink) {
    let dir = temp_dir("sources");
    let path = dir.join("hookwire.toml");
    std::fs::write(&path, config).unwrap();
    let sink = Sink::bind();
    let mut all = vec![
        "--push",
        sink.endpoint.as_str(),
        "--config",
        path.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    (Server::start_with_env(&all, env), sink)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Hex or base64 HMAC by Python's `hmac`: `python_hmac("sha256", "hex",
/// secret, message)`.
fn python_hmac(algorithm: &str, encoding: &str, secret: &str, message: &[u8]) -> String {
    let code = "import base64, hashlib, hmac, sys\n\
                algo, enc, secret, message = sys.argv[1], sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4])\n\
                mac = hmac.new(secret.encode(), message, getattr(hashlib, algo))\n\
                print(mac.hexdigest() if enc == 'hex' else base64.b64encode(mac.digest()).decode(), end='')";
    run_python(code, &[algorithm, encoding, secret, &hex(message)])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts the refusal and that nothing reaches the consumer: a later
/// good request's envelope is the next one it gets.
fn refused(response: &Response, status: u16, code: &str) {
    let message = response.assert_error(status, code);
    assert!(!message.contains("secret-value"), "{message}");
}

/// Sends `good` (which must be accepted) and checks that its envelope is
/// the only one the consumer got since the refusals before it.
fn only_this_arrives(server: &Server, sink: &Sink, good: &[u8]) -> serde_json::Value {
    let response = server.request(good);
    assert_eq!(response.status, 200, "{response:?}");
    let envelope = sink.recv();
    // A `text:` reply has no id to compare; the quiet check still holds.
    if let Ok(reply) = serde_json::from_slice::<serde_json::Value>(&response.body) {
        assert_eq!(
            envelope["id"].as_str(),
            reply["id"].as_str(),
            "an envelope of a refused request reached the consumer first"
        );
    }
    sink.assert_quiet(Duration::from_millis(300));
    envelope
}

const GITHUB: &str = r#"
[[source]]
service = "github"
verify = "github"
secrets = ["env:GH_SECRET"]
headers = ["X-GitHub-Event", "X-Absent"]
"#;

#[test]
fn github_published_vector_verifies_and_headers_reach_the_envelope() {
    let (server, sink) = with_config(GITHUB, &[], &[("GH_SECRET", "It's a Secret to Everybody")]);
    assert!(
        server.banner.iter().any(|l| l == "source github: verify github, 1 secret, headers x-github-event,x-absent, delivery x-github-delivery"),
        "{:?}",
        server.banner
    );
    let signed = |body: &[u8], signature: &str| {
        post_request(
            "/github/push/3",
            &format!(
                "X-Hub-Signature-256: {signature}\r\nX-GitHub-Event: push\r\n\
                 X-GitHub-Delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958\r\nContent-Type: text/plain\r\n"
            ),
            body,
        )
    };
    let vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    // Bad input first: none of it may produce an envelope.
    refused(
        &server.request(&signed(b"Hello, World?", vector)),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&signed(b"Hello, World!", &vector[..40])),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&signed(b"Hello, World!", "sha256=zz-not-hex")),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&signed(b"Hello, World!", &vector[7..])),
        401,
        "invalid_signature",
    );
    // A signed body replayed with a query string: the signature does not
    // cover it, so its parameters would reach `data` unverified.
    let mut replayed = signed(b"Hello, World!", vector);
    let at = replayed.iter().position(|&b| b == b' ').unwrap() + "/github/push/3".len() + 1;
    replayed.splice(at..at, b"?action=deleted".iter().copied());
    assert!(replayed.starts_with(b"POST /github/push/3?action=deleted HTTP/1.1\r\n"));
    refused(&server.request(&replayed), 400, "unsigned_query");
    let wrong = python_hmac("sha256", "hex", "another secret", b"Hello, World!");
    refused(
        &server.request(&signed(b"Hello, World!", &format!("sha256={wrong}"))),
        401,
        "invalid_signature",
    );
    let unsigned = post_request(
        "/github/push/3",
        "X-GitHub-Event: push\r\n",
        b"Hello, World!",
    );
    refused(&server.request(&unsigned), 401, "missing_signature");

    let envelope = only_this_arrives(&server, &sink, &signed(b"Hello, World!", vector));
    assert_eq!(
        envelope["td"]["delivery"],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(
        envelope["td"]["headers"],
        serde_json::json!({"x-github-event": "push"})
    );
    assert_eq!(envelope["data"], serde_json::json!({"Hello, World!": ""}));

    // A JSON payload signed by Python's hmac, as GitHub's docs show.
    let body = br#"{"action":"opened","number":7}"#;
    let mac = python_hmac("sha256", "hex", "It's a Secret to Everybody", body);
    let raw = post_request(
        "/github/pull_request",
        &format!("X-Hub-Signature-256: sha256={mac}\r\nContent-Type: application/json\r\n"),
        body,
    );
    let envelope = only_this_arrives(&server, &sink, &raw);
    assert_eq!(envelope["data"]["number"], 7);
    assert!(
        envelope["td"].get("headers").is_none(),
        "no listed header was sent"
    );
    assert!(envelope["td"].get("delivery").is_none());

    let sources = &stats(&server)["merged"]["sources"];
    assert_eq!(sources[0]["source"], "github");
    assert_eq!(sources[0]["accepted"], 2);
    assert_eq!(sources[0]["refusals"]["invalid_signature"], 5);
    assert_eq!(sources[0]["refusals"]["missing_signature"], 1);
    assert_eq!(sources[0]["refusals"]["unsigned_query"], 1);
    assert_eq!(sources[0]["refused"], 7);
    assert_eq!(sources[1]["source"], "-");
    let (_, metrics) = common::admin_get(server.admin.unwrap(), "/metrics");
    for line in [
        "hookwire_source_accepted_total{core=\"all\",source=\"github\"} 2",
        "hookwire_source_refusals_total{core=\"all\",source=\"github\",code=\"invalid_signature\"} 5",
        "hookwire_source_refusals_total{core=\"all\",source=\"github\",code=\"missing_signature\"} 1",
        "hookwire_requests_total{core=\"all\",status=\"401\"} 6",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// Standard Webhooks and Svix: signed by their own Python libraries,
/// `whsec_` secrets rolled (both verify), several signatures in one
/// header, and timestamps out of tolerance either way.
#[test]
fn standard_webhooks_and_svix_with_their_libraries() {
    let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let new = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let config = r#"
[[source]]
service = "svix*"
verify = "standard-webhooks"
secrets = ["env:SW_OLD", "env:SW_NEW"]
tolerance = "5m"
"#;
    let (server, sink) = with_config(config, &[], &[("SW_OLD", old), ("SW_NEW", new)]);
    let body = r#"{"type":"invoice.paid","data":{"id":"in_1","amount":1250}}"#;
    // Prints the signature header the library makes for (secret, id, ts).
    let sign = |library: &str, secret: &str, id: &str, ts: u64| {
        let code = "import sys, datetime\n\
                    lib, secret, msg_id, ts, body = sys.argv[1:6]\n\
                    when = datetime.datetime.fromtimestamp(int(ts), tz=datetime.timezone.utc)\n\
                    if lib == 'svix':\n    from svix.webhooks import Webhook\n\
                    else:\n    from standardwebhooks import Webhook\n\
                    print(Webhook(secret).sign(msg_id, when, body), end='')";
        run_python(code, &[library, secret, id, &ts.to_string(), body])
    };
    let request = |prefix: &str, id: &str, ts: u64, signature: &str, body: &str| {
        post_request(
            "/svix/invoice",
            &format!(
                "{prefix}-id: {id}\r\n{prefix}-timestamp: {ts}\r\n{prefix}-signature: {signature}\r\n\
                 Content-Type: application/json\r\n"
            ),
            body.as_bytes(),
        )
    };
    let t = now();
    let by_old = sign("standardwebhooks", old, "msg_1", t);
    assert!(by_old.starts_with("v1,"), "{by_old}");

    // Bad input.
    let stale = sign("standardwebhooks", old, "msg_1", t - 600);
    refused(
        &server.request(&request("webhook", "msg_1", t - 600, &stale, body)),
        401,
        "stale_timestamp",
    );
    let future = sign("standardwebhooks", old, "msg_1", t + 600);
    refused(
        &server.request(&request("webhook", "msg_1", t + 600, &future, body)),
        401,
        "stale_timestamp",
    );
    let altered = body.replace("1250", "1251");
    refused(
        &server.request(&request("webhook", "msg_1", t, &by_old, &altered)),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&request("webhook", "msg_2", t, &by_old, body)),
        401,
        "invalid_signature",
    );
    let other = sign(
        "standardwebhooks",
        "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==",
        "msg_1",
        t,
    );
    refused(
        &server.request(&request("webhook", "msg_1", t, &other, body)),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&request("webhook", "msg_1", t, "v1,", body)),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&request("webhook", "msg_1", t, "v2,abc=", body)),
        401,
        "invalid_signature",
    );
    let no_id = post_request(
        "/svix/invoice",
        &format!("webhook-timestamp: {t}\r\nwebhook-signature: {by_old}\r\n"),
        body.as_bytes(),
    );
    refused(&server.request(&no_id), 401, "missing_signature");

    // The old secret and the new one both verify while it is rolled;
    // svix-* headers as Svix sends them; a header with several signatures.
    let envelope = only_this_arrives(
        &server,
        &sink,
        &request("webhook", "msg_1", t, &by_old, body),
    );
    assert_eq!(envelope["td"]["delivery"], "msg_1");
    assert_eq!(envelope["data"]["data"]["amount"], 1250);
    let by_new = sign("svix", new, "msg_2", t);
    let envelope = only_this_arrives(&server, &sink, &request("svix", "msg_2", t, &by_new, body));
    assert_eq!(envelope["td"]["delivery"], "msg_2");
    let both = format!(
        "v1,Zm9yZ2VkIHNpZ25hdHVyZQ== {}",
        sign("svix", new, "msg_3", t)
    );
    only_this_arrives(&server, &sink, &request("webhook", "msg_3", t, &both, body));
}

#[test]
fn stripe_signature_header_from_stripes_library() {
    let secret = "whsec_test_secret-value";
    let config = "[[source]]\nservice = \"stripe\"\nverify = \"stripe\"\nsecrets = [\"env:STRIPE_SECRET\"]\n";
    let (server, sink) = with_config(config, &[], &[("STRIPE_SECRET", secret)]);
    let body = r#"{"id":"evt_1","type":"charge.succeeded","data":{"object":{"amount":500}}}"#;
    // Stripe's own helper for signing payloads in tests, checked by its
    // own verifier before use.
    let header = |secret: &str, ts: u64| {
        let code = "import sys, stripe\n\
                    body, secret, ts = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
                    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=ts)\n\
                    stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)\n\
                    print(header, end='')";
        run_python(code, &[body, secret, &ts.to_string()])
    };
    let request = |signature: &str, body: &str| {
        post_request(
            "/stripe/event",
            &format!("Stripe-Signature: {signature}\r\nContent-Type: application/json\r\n"),
            body.as_bytes(),
        )
    };
    let t = now();
    let good = header(secret, t);
    refused(
        &server.request(&request(&header(secret, t - 301 - 5), body)),
        401,
        "stale_timestamp",
    );
    refused(
        &server.request(&request(&header(secret, t + 400), body)),
        401,
        "stale_timestamp",
    );
    refused(
        &server.request(&request(&header("whsec_other", t), body)),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&request(&good, &body.replace("500", "501"))),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&request(&format!("t={t}"), body)),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&request(&good[..good.len() - 10], body)),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&post_request("/stripe/event", "", body.as_bytes())),
        401,
        "missing_signature",
    );
    // Stripe may send several v1 signatures (a secret being rolled).
    let several = format!("{good},v1=00ff,v0=deadbeef");
    let envelope = only_this_arrives(&server, &sink, &request(&several, body));
    assert_eq!(envelope["data"]["id"], "evt_1");
    assert!(envelope["td"].get("delivery").is_none());
}

#[test]
fn shopify_slack_and_generic_hmac() {
    let config = r#"
[[source]]
service = "shopify"
verify = "shopify"
secrets = ["file:SECRET_FILE"]
headers = ["X-Shopify-Topic"]

[[source]]
service = "slack"
verify = "slack"
secrets = ["slack-secret-value"]
challenge = "slack"

[[source]]
service = "dropbox"
verify = "hmac"
header = "X-Dropbox-Signature"
secrets = ["dropbox-secret-value"]
challenge = "dropbox"

[[source]]
service = "inhouse"
verify = "hmac"
header = "X-Signature"
algorithm = "sha1"
encoding = "base64"
prefix = "sha1="
secrets = ["inhouse-secret-value"]
"#;
    let dir = temp_dir("shopify-secret");
    let file = dir.join("secret");
    std::fs::write(&file, "shopify-secret-value\n").unwrap();
    let config = config.replace("SECRET_FILE", file.to_str().unwrap());
    let (server, sink) = with_config(&config, &[], &[]);

    // Shopify: base64 of the body's HMAC-SHA256.
    let body = br#"{"id":820982911946154500,"email":"jon@example.com"}"#;
    let mac = python_hmac("sha256", "base64", "shopify-secret-value", body);
    let shopify = |mac: &str, body: &[u8]| {
        post_request(
            "/shopify/orders_create",
            &format!(
                "X-Shopify-Hmac-Sha256: {mac}\r\nX-Shopify-Topic: orders/create\r\n\
                 X-Shopify-Webhook-Id: b54557e4-bdd9-4b37-8a5f-bf7d70bcd043\r\nContent-Type: application/json\r\n"
            ),
            body,
        )
    };
    refused(
        &server.request(&shopify(
            &mac,
            br#"{"id":820982911946154501,"email":"jon@example.com"}"#,
        )),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&shopify("not base64!", body)),
        401,
        "invalid_signature",
    );
    let envelope = only_this_arrives(&server, &sink, &shopify(&mac, body));
    assert_eq!(
        envelope["td"]["delivery"],
        "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    );
    assert_eq!(
        envelope["td"]["headers"]["x-shopify-topic"],
        "orders/create"
    );
    // The big integer is kept digit for digit.
    assert_eq!(envelope["data"]["id"].to_string(), "820982911946154500");

    // Slack: v0=hex(HMAC(v0:ts:body)), and its url_verification.
    let slack = |ts: u64, body: &[u8], secret: &str| {
        let mut base = format!("v0:{ts}:").into_bytes();
        base.extend_from_slice(body);
        let mac = python_hmac("sha256", "hex", secret, &base);
        post_request(
            "/slack/events",
            &format!(
                "X-Slack-Signature: v0={mac}\r\nX-Slack-Request-Timestamp: {ts}\r\nContent-Type: application/json\r\n"
            ),
            body,
        )
    };
    let t = now();
    let challenge = br#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    refused(
        &server.request(&slack(t, challenge, "wrong-secret")),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&slack(t - 301, challenge, "slack-secret-value")),
        401,
        "stale_timestamp",
    );
    let answer = server.request(&slack(t, challenge, "slack-secret-value"));
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert!(answer
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
    let event = br#"{"type":"event_callback","event":{"type":"app_mention","text":"hi"}}"#;
    let envelope = only_this_arrives(&server, &sink, &slack(t, event, "slack-secret-value"));
    assert_eq!(envelope["data"]["event"]["type"], "app_mention");

    // Dropbox: its GET challenge, then hex HMAC-SHA256 in X-Dropbox-Signature.
    let answer = server.get("/dropbox/notify?challenge=a%2Bb+c%3Cscript%3E");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"a+b c<script>");
    assert_eq!(answer.header("X-Content-Type-Options"), Some("nosniff"));
    let notify = br#"{"list_folder":{"accounts":["dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc"]}}"#;
    let mac = python_hmac("sha256", "hex", "dropbox-secret-value", notify);
    let raw = |mac: &str| {
        post_request(
            "/dropbox/notify",
            &format!("X-Dropbox-Signature: {mac}\r\nContent-Type: application/json\r\n"),
            notify,
        )
    };
    refused(&server.request(&raw(&mac[..63])), 401, "invalid_signature");
    only_this_arrives(&server, &sink, &raw(&mac));

    // Generic: SHA-1, base64, after a prefix.
    let body = b"order=17&status=paid";
    let mac = python_hmac("sha1", "base64", "inhouse-secret-value", body);
    let inhouse = |sig: &str| {
        post_request(
            "/inhouse/order",
            &format!("X-Signature: {sig}\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
            body,
        )
    };
    refused(&server.request(&inhouse(&mac)), 401, "invalid_signature"); // no prefix
    refused(
        &server.request(&post_request("/inhouse/order", "", body)),
        401,
        "missing_signature",
    );
    let envelope = only_this_arrives(&server, &sink, &inhouse(&format!("sha1={mac}")));
    assert_eq!(envelope["data"]["status"], "paid");

    // Challenges are counted, and only for the sources that have them.
    let sources = &stats(&server)["merged"]["sources"];
    assert_eq!(sources[1]["source"], "slack");
    assert_eq!(sources[1]["challenges"], 1);
    assert_eq!(sources[2]["challenges"], 1);
    assert_eq!(sources[0]["challenges"], 0);
}

/// Affise-style postbacks with a token in the query: checked, then left
/// out of `data`; a token header; `text:OK` replies.
#[test]
fn token_is_checked_and_never_reaches_consumers() {
    let config = r#"
[[source]]
service = "affise"
verify = "token"
token-param = "secure"
secrets = ["env:AFFISE_TOKEN", "old-token"]
reply = "text:OK"

[[source]]
service = "keitaro"
verify = "token"
token-header = "X-Token"
secrets = ["secret-value"]
"#;
    let (server, sink) = with_config(config, &[], &[("AFFISE_TOKEN", "n3w+t0ken/secret-value")]);
    refused(
        &server.get("/affise/conversion/7?clickid=abc&sum=500"),
        401,
        "missing_signature",
    );
    refused(
        &server.get("/affise/conversion/7?clickid=abc&secure=guess&sum=500"),
        401,
        "invalid_signature",
    );
    refused(
        &server.get("/affise/conversion/7?clickid=abc&secure=n3w%2Bt0ken%2Fsecret-valuf"),
        401,
        "invalid_signature",
    );
    let ok =
        server.get("/affise/conversion/7?clickid=abc&secure=n3w%2Bt0ken%2Fsecret-value&sum=500");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"OK");
    assert!(ok.header("Content-Type").unwrap().starts_with("text/plain"));
    let envelope = sink.recv();
    assert_eq!(envelope["key"], "in.gen.affise.conversion");
    assert_eq!(
        envelope["data"],
        serde_json::json!({"clickid": "abc", "sum": "500"})
    );
    assert!(!envelope.to_string().contains("t0ken"), "{envelope}");
    // The rolled-out token still works while it is listed.
    let raw = b"GET /affise/conversion/7?secure=old-token&secure[]=x&clickid=d HTTP/1.1\r\nHost: t\r\n\r\n";
    let envelope = only_this_arrives(&server, &sink, raw);
    assert_eq!(envelope["data"], serde_json::json!({"clickid": "d"}));

    refused(&server.get("/keitaro/lead?x=1"), 401, "missing_signature");
    let header = |token: &str| {
        format!("GET /keitaro/lead?x=1 HTTP/1.1\r\nHost: t\r\nX-Token: {token}\r\n\r\n")
    };
    refused(
        &server.request(header("secret-valu").as_bytes()),
        401,
        "invalid_signature",
    );
    let envelope = only_this_arrives(&server, &sink, header("secret-value").as_bytes());
    assert_eq!(envelope["data"], serde_json::json!({"x": "1"}));
    assert!(server
        .log
        .lock()
        .unwrap()
        .iter()
        .all(|l| !l.contains("secret-value")));
    assert!(server
        .banner
        .iter()
        .all(|l| !l.contains("secret-value") && !l.contains("old-token")));
}

/// Each challenge as its sender documents it; none emits an envelope.
#[test]
fn subscription_challenges() {
    let config = r#"
[[source]]
service = "meta"
challenge = "meta"
verify-token = "env:META_TOKEN"

[[source]]
service = "graph"
challenge = "graph"

[[source]]
service = "zoom"
challenge = "zoom"
secrets = ["zoom-secret-value"]

[[source]]
service = "twitch"
challenge = "twitch"
secrets = ["twitch-secret-value"]

[[source]]
service = "plain"
"#;
    let (server, sink) = with_config(config, &[], &[("META_TOKEN", "meta-verify-token")]);

    // Meta: GET hub.mode=subscribe&hub.verify_token&hub.challenge.
    let ok = server.get(
        "/meta/hook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=meta-verify-token",
    );
    assert_eq!((ok.status, &ok.body[..]), (200, &b"1158201444"[..]));
    assert_eq!(ok.header("X-Content-Type-Options"), Some("nosniff"));
    let wrong =
        server.get("/meta/hook?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess");
    refused(&wrong, 403, "invalid_verify_token");

    // Graph: POST ?validationToken=, answered decoded, as text/plain.
    let raw = post_request(
        "/graph/notify?validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+2d3e1fd4",
        "",
        b"",
    );
    let ok = server.request(&raw);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, b"Validation: Testing client application reachability for subscription Request-Id: 2d3e1fd4");
    assert!(ok.header("Content-Type").unwrap().starts_with("text/plain"));

    // Zoom: a signed endpoint.url_validation → plainToken and its HMAC.
    // Zoom signs every request (x-zm-signature: v0=<hex HMAC of
    // v0:timestamp:body>); an unsigned validation is refused, or anyone
    // could have the secret HMAC a text of their choosing.
    let zoom = |ts: u64, body: &[u8], secret: &str| {
        let mut message = format!("v0:{ts}:").into_bytes();
        message.extend_from_slice(body);
        let mac = python_hmac("sha256", "hex", secret, &message);
        post_request(
            "/zoom/webhook",
            &format!(
                "x-zm-request-timestamp: {ts}\r\nx-zm-signature: v0={mac}\r\n\
                 Content-Type: application/json\r\n"
            ),
            body,
        )
    };
    let body = br#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    refused(
        &server.request(&post_request(
            "/zoom/webhook",
            "Content-Type: application/json\r\n",
            body,
        )),
        401,
        "missing_signature",
    );
    refused(
        &server.request(&zoom(now(), body, "wrong")),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&zoom(now() - 900, body, "zoom-secret-value")),
        401,
        "stale_timestamp",
    );
    let ok = server.request(&zoom(now(), body, "zoom-secret-value"));
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("Content-Type"), Some("application/json"));
    let expected = python_hmac(
        "sha256",
        "hex",
        "zoom-secret-value",
        b"qgg8vlvZRS6UYooatFL8Aw",
    );
    assert_eq!(
        ok.json(),
        serde_json::json!({"plainToken": "qgg8vlvZRS6UYooatFL8Aw", "encryptedToken": expected})
    );
    let started = br#"{"event":"meeting.started","payload":{"object":{"id":"85746065432"}}}"#;
    let envelope = only_this_arrives(&server, &sink, &zoom(now(), started, "zoom-secret-value"));
    assert_eq!(envelope["data"]["event"], "meeting.started");

    // Twitch: a signed webhook_callback_verification gets its challenge.
    let twitch = |kind: &str, ts: &str, body: &[u8], secret: &str| {
        let id = "e76c6bd4-55c9-4987-8304-da1588d8988b";
        let mut message = format!("{id}{ts}").into_bytes();
        message.extend_from_slice(body);
        let mac = python_hmac("sha256", "hex", secret, &message);
        post_request(
            "/twitch/eventsub",
            &format!(
                "Twitch-Eventsub-Message-Id: {id}\r\nTwitch-Eventsub-Message-Timestamp: {ts}\r\n\
                 Twitch-Eventsub-Message-Signature: sha256={mac}\r\nTwitch-Eventsub-Message-Type: {kind}\r\n\
                 Content-Type: application/json\r\n"
            ),
            body,
        )
    };
    let ts = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    let stale =
        humantime::format_rfc3339_nanos(SystemTime::now() - Duration::from_secs(900)).to_string();
    let verification = br#"{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":"f1c2a387","status":"webhook_callback_verification_pending","type":"channel.follow"}}"#;
    refused(
        &server.request(&twitch(
            "webhook_callback_verification",
            &ts,
            verification,
            "wrong",
        )),
        401,
        "invalid_signature",
    );
    refused(
        &server.request(&twitch(
            "webhook_callback_verification",
            &stale,
            verification,
            "twitch-secret-value",
        )),
        401,
        "stale_timestamp",
    );
    let ok = server.request(&twitch(
        "webhook_callback_verification",
        &ts,
        verification,
        "twitch-secret-value",
    ));
    assert_eq!(
        (ok.status, &ok.body[..]),
        (200, &b"pogchamp-kappa-360noscope-vohiyo"[..])
    );
    let notification =
        br#"{"subscription":{"type":"channel.follow"},"event":{"user_name":"Cool_User"}}"#;
    let envelope = only_this_arrives(
        &server,
        &sink,
        &twitch("notification", &ts, notification, "twitch-secret-value"),
    );
    assert_eq!(
        envelope["td"]["delivery"],
        "e76c6bd4-55c9-4987-8304-da1588d8988b"
    );
    assert_eq!(envelope["data"]["event"]["user_name"], "Cool_User");

    // No other service echoes anything: these are events.
    let plain = server
        .get("/plain/hook?hub.mode=subscribe&hub.challenge=%3Cb%3Ex%3C%2Fb%3E&hub.verify_token=t");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("Content-Type"), Some("application/json"));
    assert_eq!(sink.recv()["data"]["hub.challenge"], "<b>x</b>");
    let other = server.get("/nosource/hook?challenge=%3Cscript%3E");
    assert_eq!(other.status, 200);
    assert!(!String::from_utf8_lossy(&other.body).contains("<script>"));
    sink.recv();
    sink.assert_quiet(Duration::from_millis(300));

    let sources = &stats(&server)["merged"]["sources"];
    let challenges: Vec<_> = sources
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["challenges"].as_u64().unwrap())
        .collect();
    assert_eq!(challenges, [1, 1, 1, 1, 0, 0], "{sources}");
    assert_eq!(sources[0]["refusals"]["invalid_verify_token"], 1);
    assert_eq!(sources[5]["source"], "-");
    assert_eq!(sources[5]["accepted"], 1);
}

/// `allow` is checked against the client address after the trusted
/// proxy walk.
#[test]
fn allow_lists_check_the_client_address() {
    let config = r#"
[[source]]
service = "cpa"
allow = ["203.0.113.0/24", "2001:db8::/32"]

[[source]]
service = "local"
allow = ["127.0.0.1"]
"#;
    let (server, sink) = with_config(config, &[], &[]);
    let from = |xff: &str| {
        format!("GET /cpa/conv?x=1 HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: {xff}\r\n\r\n")
    };
    refused(&server.get("/cpa/conv?x=1"), 403, "forbidden_address");
    refused(
        &server.request(from("198.51.100.7").as_bytes()),
        403,
        "forbidden_address",
    );
    // The client is the right-most untrusted hop, not what it claims.
    refused(
        &server.request(from("203.0.113.5, 198.51.100.7").as_bytes()),
        403,
        "forbidden_address",
    );
    let envelope = only_this_arrives(&server, &sink, from("198.51.100.7, 203.0.113.5").as_bytes());
    assert_eq!(envelope["td"]["ip"], "203.0.113.5");
    only_this_arrives(&server, &sink, from("2001:db8::1").as_bytes());
    only_this_arrives(
        &server,
        &sink,
        b"GET /local/conv?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    refused(
        &server.request(b"GET /local/conv?x=1 HTTP/1.1\r\nHost: t\r\nX-Real-IP: 10.1.2.3\r\n\r\n"),
        403,
        "forbidden_address",
    );
    assert_eq!(
        stats(&server)["merged"]["sources"][0]["refusals"]["forbidden_address"],
        3
    );
}

/// Behind a proxy that writes only `Forwarded` (and passes the client's
/// own X-Real-IP and X-Forwarded-For through), `--client-ip-header
/// forwarded` keeps a client from naming an allowed address itself.
#[test]
fn allow_reads_only_the_header_the_proxy_writes() {
    let config = "[[source]]\nservice = \"cpa\"\nallow = [\"203.0.113.0/24\"]\n";
    let request = |spoof: &str, proxy_wrote: &str| {
        format!(
            "GET /cpa/conv?x=1 HTTP/1.1\r\nHost: t\r\n{spoof}Forwarded: for={proxy_wrote}\r\n\r\n"
        )
    };
    let spoofs = [
        "X-Real-IP: 203.0.113.9\r\n",
        "X-Forwarded-For: 203.0.113.9\r\n",
    ];
    // `auto`: the spoofed header is read first, and passes the list.
    let (server, sink) = with_config(config, &[], &[]);
    for spoof in spoofs {
        let envelope = only_this_arrives(&server, &sink, request(spoof, "198.51.100.7").as_bytes());
        assert_eq!(envelope["td"]["ip"], "203.0.113.9");
    }
    drop(server);
    let (server, sink) = with_config(config, &["--client-ip-header", "forwarded"], &[]);
    for spoof in spoofs {
        refused(
            &server.request(request(spoof, "198.51.100.7").as_bytes()),
            403,
            "forbidden_address",
        );
    }
    let envelope = only_this_arrives(&server, &sink, request(spoofs[0], "203.0.113.5").as_bytes());
    assert_eq!(envelope["td"]["ip"], "203.0.113.5");
}

/// Strict mode from the flag, the variable and the file: a service
/// without a source gets 404 unknown_service, and nothing is emitted.
#[test]
fn strict_refuses_unknown_services() {
    let config = "[[source]]\nservice = \"known\"\n";
    for (file, args, env) in [
        ("", &["--strict"][..], &[][..]),
        ("", &[], &[("HOOKWIRE_STRICT", "true")]),
        ("strict = true\n", &[], &[]),
    ] {
        let (server, sink) = with_config(&format!("{file}{config}"), args, env);
        assert!(
            server.banner.iter().any(|l| l.starts_with("strict: ")),
            "{:?}",
            server.banner
        );
        refused(&server.get("/unknown/conv?x=1"), 404, "unknown_service");
        // HEAD: the status GET would get, without a body.
        let mut stream = server.connect();
        stream
            .write_all(b"HEAD /unknown/conv?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut head = String::new();
        stream.read_to_string(&mut head).unwrap();
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
        only_this_arrives(
            &server,
            &sink,
            b"GET /known/conv?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        let sources = &stats(&server)["merged"]["sources"];
        assert_eq!(sources[1]["source"], "-");
        assert_eq!(sources[1]["refusals"]["unknown_service"], 2);
    }
    // Without strict, an unknown service is an event as before.
    let (server, sink) = with_config(config, &[], &[]);
    only_this_arrives(
        &server,
        &sink,
        b"GET /unknown/conv?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
}

/// A refused `[[source]]` stops the start, naming the source, the key
/// and the file, never a secret's value.
#[test]
fn bad_sources_are_refused_at_start() {
    let dir = temp_dir("bad-sources");
    let path = dir.join("h.toml");
    let start = |config: &str| {
        std::fs::write(&path, config).unwrap();
        let out = std::process::Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "off",
                "--config",
            ])
            .arg(&path)
            .env_remove("NOT_SET_ANYWHERE")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let file = path.display().to_string();
    for (config, says) in [
        (
            "[[source]]\nservice = \"stripe\"\nverify = \"stripe\"\nsecrets = [\"env:NOT_SET_ANYWHERE\"]\n",
            "[[source]] #1 (service = \"stripe\") in FILE: secrets[0] (env:NOT_SET_ANYWHERE): the environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            "[[source]]\nservice = \"a\"\n[[source]]\nservice = \"gh\"\nverify = \"github\"\nsecrets = [\"file:/nonexistent/secret\"]\n",
            "[[source]] #2 (service = \"gh\") in FILE: secrets[0] (file:/nonexistent/secret): cannot read /nonexistent/secret",
        ),
        (
            "[[source]]\nservice = \"x\"\nverify = \"sha1\"\n",
            "[[source]] #1 (service = \"x\") in FILE: verify: 'sha1' is not one of: standard-webhooks, stripe, github, shopify, slack, hmac, token, none",
        ),
        (
            "[[source]]\nservice = \"x\"\nverify = \"github\"\n",
            "secrets: verify = \"github\" needs at least one",
        ),
        (
            "[[source]]\nservice = \"x\"\nverify = \"hmac\"\nsecrets = [\"secret-value\"]\n",
            "header: verify = \"hmac\" needs the signature's header",
        ),
        (
            "[[source]]\nservice = \"x\"\nverify = \"standard-webhooks\"\nsecrets = [\"whsec_!!secret-value\"]\n",
            "secrets[0] (<literal>): a Standard Webhooks secret is base64 after whsec_",
        ),
        ("[[source]]\nservice = \"x\"\nchallenge = \"meta\"\n", "verify-token: challenge = \"meta\" needs"),
        (
            "[[source]]\nservice = \"x\"\nverify = \"standard-webhooks\"\nsecrets = [\"whsec_\"]\n",
            "secrets[0] (<literal>): decodes to an empty key",
        ),
        (
            "[[source]]\nservice = \"x\"\nchallenge = \"twitch\"\n",
            "secrets: challenge = \"twitch\" needs the subscription's secret",
        ),
        (
            "[[source]]\nservice = \"x\"\nverify = \"token\"\ntoken-header = \"X-Token\"\nsecrets = [\"t\"]\nheaders = [\"X-Token\"]\n",
            "headers: x-token holds the source's token",
        ),
        ("[[source]]\nservice = \"x\"\nsecrit = 1\n", "unknown field `secrit`"),
        ("[[source]]\nservice = \"x\"\nallow = [\"10.0.0.0/33\"]\n", "allow: '10.0.0.0/33' is not a CIDR"),
        ("[[source]]\nservice = \"x/y\"\n", "service: \"x/y\" is not a glob"),
        ("[[source]]\nservice = \"x\"\nreply = \"xml\"\n", "reply: \"xml\" is not \"json\", \"gif\" or \"text:"),
    ] {
        let err = start(config);
        let says = says.replace("FILE", &file);
        assert!(err.contains(&says), "expected {says:?} in {err}");
        assert!(!err.contains("secret-value") || config.contains("!!"), "{err}");
        assert!(!err.contains("!!secret-value"), "{err}");
    }
}

/// Signatures are over the body as the sender signed it: the decoded
/// payload, whatever `Content-Encoding` its HTTP client sent it with.
#[test]
fn signatures_cover_the_decoded_body() {
    let (server, sink) = with_config(GITHUB, &[], &[("GH_SECRET", "It's a Secret to Everybody")]);
    let body = br#"{"action":"opened","number":8}"#;
    let gzipped = run_python(
        "import gzip, sys; sys.stdout.write(gzip.compress(bytes.fromhex(sys.argv[1])).hex())",
        &[&hex(body)],
    );
    let gzipped: Vec<u8> = (0..gzipped.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&gzipped[i..i + 2], 16).unwrap())
        .collect();
    let request = |signed: &[u8]| {
        let mac = python_hmac("sha256", "hex", "It's a Secret to Everybody", signed);
        post_request(
            "/github/pull_request",
            &format!(
                "X-Hub-Signature-256: sha256={mac}\r\nContent-Encoding: gzip\r\nContent-Type: application/json\r\n"
            ),
            &gzipped,
        )
    };
    refused(
        &server.request(&request(&gzipped)),
        401,
        "invalid_signature",
    );
    let envelope = only_this_arrives(&server, &sink, &request(body));
    assert_eq!(envelope["data"]["number"], 8);
}
