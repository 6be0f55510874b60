//! The browser channel against the real binary and a real ZeroMQ consumer:
//! image pixels, tracked click redirects, the uid cookie and credentialed
//! CORS, first as raw HTTP, then in Debian's headless Chromium (installed
//! by tests/browser/setup.sh, driven with Playwright from
//! tests/py/requirements-browser.txt) loading a shop's pages from another
//! origin on loopback.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{python_with, stats, temp_dir, Response, Server, Sink};

/// A server pushing to a fresh sink, with `config` as its TOML file.
fn with_config(config: &str) -> (Server, Sink) {
    let dir = temp_dir("browser");
    let path = dir.join("hookwire.toml");
    std::fs::write(&path, config).unwrap();
    let sink = Sink::bind();
    let args = ["--push", &sink.endpoint, "--config", path.to_str().unwrap()];
    (Server::start(&args), sink)
}

fn get(server: &Server, target: &str, headers: &str) -> Response {
    server.request(
        format!("GET {target} HTTP/1.1\r\nHost: hooks.example\r\n{headers}\r\n").as_bytes(),
    )
}

const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

/// Asserts the pixel's answer: a 200 with the transparent GIF, never
/// cached; returns its `X-Hookwire-Error`.
fn assert_gif(r: &Response) -> Option<String> {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("image/gif"));
    assert_eq!(
        r.header("cache-control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert_eq!(r.body, GIF);
    r.header("x-hookwire-error").map(str::to_owned)
}

/// The uid a `Set-Cookie` sets, after checking its attributes.
fn cookie_uid(r: &Response, name: &str) -> String {
    let line = r.header("set-cookie").expect("a Set-Cookie");
    let (pair, attributes) = line.split_once("; ").unwrap();
    let uid = pair
        .strip_prefix(&format!("{name}="))
        .expect("the uid cookie");
    assert!(
        uid.len() >= 10 && uid.bytes().all(|b| b.is_ascii_digit()),
        "{line}"
    );
    for a in [
        "Max-Age=94608000",
        "Path=/",
        "Secure",
        "HttpOnly",
        "SameSite=None",
    ] {
        assert!(attributes.split("; ").any(|x| x == a), "{a} in {line}");
    }
    uid.to_owned()
}

#[test]
fn gif_paths_are_pixels() {
    let (server, sink) = common::server_and_sink(&[]);
    let r = get(&server, "/affise/conversion/7.gif?clickid=c1&sum=12.50", "");
    assert_eq!(assert_gif(&r), None);
    let uid = cookie_uid(&r, "uid");
    assert!(!r.header("set-cookie").unwrap().contains("Domain="));
    let e = sink.recv();
    assert_eq!(e["key"], "in.gen.affise.conversion");
    assert_eq!(e["channel"], "pixel");
    assert_eq!(e["name"], "conversion");
    assert_eq!(e["projectId"], 7);
    assert_eq!(e["uid"], uid.as_str());
    assert_eq!(
        e["data"],
        serde_json::json!({"clickid": "c1", "sum": "12.50"})
    );

    // The name's segment as the pixel; a uid the page already has is
    // kept, and no cookie is set.
    let r = get(
        &server,
        "/affise/conversion.gif",
        "Cookie: a=b; uid=12345678901234\r\n",
    );
    assert_eq!(assert_gif(&r), None);
    assert_eq!(r.header("set-cookie"), None);
    let e = sink.recv();
    assert_eq!(
        (e["name"].as_str(), e["projectId"].as_u64()),
        (Some("conversion"), Some(0))
    );
    assert_eq!(e["uid"], "12345678901234");
    assert_eq!(e["channel"], "pixel");

    // HEAD: the GIF's headers, no event.
    let raw = b"HEAD /affise/conversion/7.gif HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    let mut head = vec![0; 4096];
    let n = s.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: image/gif\r\nContent-Length: 43\r\n\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "no body: {head}");

    // A server-to-server postback gets no cookie; a browser's fetch does.
    let r = get(&server, "/affise/conversion?clickid=c2", "");
    r.assert_accepted("in.gen.affise.conversion");
    assert_eq!(r.header("set-cookie"), None);
    assert_eq!(sink.recv()["channel"], "http");
    let r = get(
        &server,
        "/affise/conversion?clickid=c3",
        "Origin: https://shop.example\r\n",
    );
    r.assert_accepted("in.gen.affise.conversion");
    let uid = cookie_uid(&r, "uid");
    assert_eq!(sink.recv()["uid"], uid.as_str());
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    sink.assert_quiet(Duration::from_millis(200));
}

#[test]
fn refused_pixels_still_get_the_gif() {
    let (server, sink) = common::server_and_sink(&[]);
    for (target, code) in [
        ("/affise/conversion/7x.gif", "invalid_project_id"),
        ("/affise.gif", "missing_name"),
        ("/.gif", "missing_service"),
        ("/affise/bad.name.gif", "invalid_name"),
    ] {
        let r = get(&server, target, "");
        assert_eq!(assert_gif(&r).as_deref(), Some(code), "{target}");
        assert_eq!(r.header("set-cookie"), None);
    }
    sink.assert_quiet(Duration::from_millis(300));
    let merged = &stats(&server)["merged"];
    assert_eq!(merged["refusals"]["invalid_project_id"], 1);
    assert_eq!(merged["refusals"]["missing_name"], 1);
    assert_eq!(merged["refusals"]["missing_service"], 1);
    assert_eq!(merged["refusals"]["invalid_name"], 1);
    assert_eq!(merged["events"]["accepted"], 0);
}

#[test]
fn a_gif_reply_source_answers_gets_as_pixels() {
    let (server, sink) = with_config(
        "[[source]]\nservice = \"mail\"\nreply = \"gif\"\n\
         [[source]]\nservice = \"locked\"\nreply = \"gif\"\nallow = [\"192.0.2.0/24\"]\n",
    );
    let r = get(&server, "/mail/open?campaign=9", "");
    assert_eq!(assert_gif(&r), None);
    let e = sink.recv();
    assert_eq!(
        (e["key"].as_str(), e["channel"].as_str()),
        (Some("in.gen.mail.open"), Some("pixel"))
    );
    // A POST to it is a webhook.
    server
        .post("/mail/open", Some("application/json"), b"{\"a\":1}")
        .assert_accepted("in.gen.mail.open");
    assert_eq!(sink.recv()["channel"], "http");
    // A source's own refusal is a GIF too, counted for the source.
    let r = get(&server, "/locked/open", "");
    assert_eq!(assert_gif(&r).as_deref(), Some("forbidden_address"));
    sink.assert_quiet(Duration::from_millis(300));
    let sources = &stats(&server)["merged"]["sources"];
    assert_eq!(sources[1]["refusals"]["forbidden_address"], 1);
}

/// `to=` URL-encoded.
fn to(target: &str) -> String {
    let mut out = String::new();
    for b in target.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out += &format!("%{b:02X}"),
        }
    }
    out
}

const CLICKS: &str = "[[source]]\nservice = \"click\"\n\
    redirect-allow = [\"offer.example\", \"*.shop.example\"]\n\
    cookie-name = \"hw\"\ncookie-domain = \".shop.example\"\n\
    [[source]]\nservice = \"plain\"\n";

#[test]
fn clicks_redirect_to_allowed_hosts_with_macros_filled() {
    let (server, sink) = with_config(CLICKS);
    let target = "https://offer.example/lp?click={id}&u={uid}&s={param:sub1}&keep={x}";
    let r = get(
        &server,
        &format!("/click/go/3?to={}&sub1=a%20b%26c", to(target)),
        "User-Agent: Mozilla/5.0\r\n",
    );
    assert_eq!(r.status, 302, "{r:?}");
    let e = sink.recv();
    assert_eq!(e["channel"], "redirect");
    assert_eq!(
        (e["name"].as_str(), e["projectId"].as_u64()),
        (Some("go"), Some(3))
    );
    assert_eq!(e["data"]["to"], target, "to as sent");
    let uid = cookie_uid(&r, "hw");
    assert!(r
        .header("set-cookie")
        .unwrap()
        .contains("; Domain=.shop.example;"));
    assert_eq!(e["uid"], uid.as_str());
    let id = e["id"].as_str().unwrap();
    assert_eq!(
        r.header("location").unwrap(),
        format!("https://offer.example/lp?click={id}&u={uid}&s=a%20b%26c&keep={{x}}")
    );

    // The uid read back from the cookie named cookie-name.
    let r = get(
        &server,
        &format!("/click/go?to={}", to("https://a.b.shop.example/x?u={uid}")),
        "Cookie: uid=99999999999; hw=12345678901234\r\n",
    );
    assert_eq!(r.status, 302);
    assert_eq!(r.header("set-cookie"), None);
    assert_eq!(
        r.header("location"),
        Some("https://a.b.shop.example/x?u=12345678901234")
    );
    assert_eq!(sink.recv()["uid"], "12345678901234");

    // Without to=, or without redirect-allow, it is a plain event.
    get(&server, "/click/go?x=1", "").assert_accepted("in.gen.click.go");
    assert_eq!(sink.recv()["channel"], "http");
    let r = get(
        &server,
        &format!("/plain/go?to={}", to("https://evil.example/")),
        "",
    );
    r.assert_accepted("in.gen.plain.go");
    let e = sink.recv();
    assert_eq!(
        (e["channel"].as_str(), e["data"]["to"].as_str()),
        (Some("http"), Some("https://evil.example/"))
    );
    sink.assert_quiet(Duration::from_millis(200));
}

#[test]
fn bad_click_targets_are_refused_without_an_envelope() {
    let (server, sink) = with_config(CLICKS);
    let long = format!("https://offer.example/{}", "a".repeat(2100));
    let bad = [
        "https://evil.example/",
        "https://shop.example/",
        "https://offer.example.evil.example/",
        "javascript:alert(document.cookie)",
        "//evil.example/",
        "/relative",
        "https://offer.example/\r\nSet-Cookie: hw=1",
        "https://user@offer.example/",
        "https://offer.example@evil.example/",
        "https://evil.example\\@offer.example/",
        "data:text/html,<script>alert(1)</script>",
        "",
        long.as_str(),
    ];
    for target in bad {
        let r = get(&server, &format!("/click/go?to={}", to(target)), "");
        let message = r.assert_error(400, "redirect_not_allowed");
        assert_eq!(r.header("location"), None, "{target}");
        assert_eq!(r.header("set-cookie"), None, "{target}");
        assert!(message.contains("to="), "{message}");
    }
    sink.assert_quiet(Duration::from_millis(300));
    let refusals = &stats(&server)["merged"]["refusals"];
    assert_eq!(refusals["redirect_not_allowed"], bad.len() as u64);
}

const SHOP: &str = "[[source]]\nservice = \"shop\"\ncors-origins = [\"https://shop.example\", \"http://localhost:8080\"]\n";

#[test]
fn cors_origins_are_echoed_with_credentials_and_others_get_none() {
    let (server, sink) = with_config(SHOP);
    let post = |origin: &str| {
        let headers = format!("Origin: {origin}\r\nContent-Type: text/plain;charset=UTF-8\r\n");
        server.request(&common::post_request(
            "/shop/beacon",
            &headers,
            br#"{"event":"leave","n":1}"#,
        ))
    };
    let r = post("https://shop.example");
    r.assert_accepted("in.gen.shop.beacon");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    // sendBeacon's text/plain JSON is read as JSON.
    let e = sink.recv();
    assert_eq!(e["data"], serde_json::json!({"event": "leave", "n": 1}));
    assert_eq!(e["uid"], cookie_uid(&r, "uid").as_str());

    let r = post("https://evil.example");
    r.assert_accepted("in.gen.shop.beacon");
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-credentials"), None);
    assert_eq!(r.header("vary"), Some("Origin"));
    sink.recv();

    let preflight = |origin: &str| {
        server.request(
            format!(
                "OPTIONS /shop/order HTTP/1.1\r\nHost: h\r\nOrigin: {origin}\r\n\
                 Access-Control-Request-Method: POST\r\n\
                 Access-Control-Request-Headers: content-type, x-shop\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    let r = preflight("http://localhost:8080");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:8080")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type, x-shop")
    );
    let r = preflight("http://localhost:8081");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(r.header("access-control-allow-headers"), None);

    // Services without a list: `*`, as before, preflight included.
    let r = server.post("/other/x", Some("application/json"), b"{}");
    r.assert_accepted("in.gen.other.x");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), None);
    sink.recv();
    let r = server
        .request(b"OPTIONS /other/x HTTP/1.1\r\nHost: h\r\nOrigin: https://a.example\r\n\r\n");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    sink.assert_quiet(Duration::from_millis(200));
}

#[test]
fn bad_browser_keys_stop_the_start() {
    for (config, key) in [
        (
            "redirect-allow = [\"https://offer.example/\"]",
            "redirect-allow",
        ),
        ("redirect-allow = [\"*\"]", "redirect-allow"),
        ("cookie-name = \"u id\"", "cookie-name"),
        ("cookie-domain = \"a;b\"", "cookie-domain"),
        ("cors-origins = [\"shop.example\"]", "cors-origins"),
        ("cors-origins = [\"https://shop.example/\"]", "cors-origins"),
        ("reply = \"png\"", "reply"),
    ] {
        let dir = temp_dir("browser-bad");
        let path = dir.join("hookwire.toml");
        std::fs::write(&path, format!("[[source]]\nservice = \"s\"\n{config}\n")).unwrap();
        let out = Command::new(common::BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--push",
                "tcp://127.0.0.1:1",
            ])
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{config}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{key}:")), "{config}: {err}");
    }
}

/// Serves `pages` (path → HTML) on `listener`, one request a connection
/// (each in a thread: a browser opens connections ahead of its requests),
/// until the test ends.
fn serve_pages(listener: TcpListener, pages: Vec<(String, String)>) {
    let pages = std::sync::Arc::new(pages);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let pages = pages.clone();
            std::thread::spawn(move || serve_page(stream, &pages));
        }
    });
}

fn serve_page(mut stream: std::net::TcpStream, pages: &[(String, String)]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let (status, body) = match pages.iter().find(|(p, _)| p == path) {
        Some((_, html)) => ("200 OK", html.as_str()),
        None => ("404 Not Found", "not here"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The browser's side and hookwire's: a shop's thank-you page (on
/// http://localhost:<port>, a different origin from hookwire's
/// http://localhost:<port>) loads the pixel, POSTs with credentials,
/// sends a beacon and follows a tracked click to an offer on
/// 127.0.0.1; a page on 127.0.0.1 (not in cors-origins) is blocked.
#[test]
fn in_chromium_pixel_cookie_cors_beacon_and_click() {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/setup.sh");
    let out = Command::new("bash")
        .arg(&setup)
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/browser/setup.sh");
    assert!(
        out.status.success(),
        "tests/browser/setup.sh failed: {}",
        out.status
    );
    let chromium = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let python = python_with("requirements-browser.txt");

    let pages = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = pages.local_addr().unwrap().port();
    let shop = format!("http://localhost:{port}");
    let other = format!("http://127.0.0.1:{port}");
    let (server, sink) = with_config(&format!(
        "[[source]]\nservice = \"shop\"\ncors-origins = [\"{shop}\"]\nredirect-allow = [\"127.0.0.1\"]\n"
    ));
    let hookwire = format!("http://localhost:{}", server.addr.port());
    let offer = format!("{other}/offer?click={{id}}&u={{uid}}&sub={{param:sub1}}");
    serve_pages(
        pages,
        vec![
            (
                "/thanks.html".into(),
                format!(
                    "<!doctype html><title>Thanks</title>\
                     <img id=pixel src=\"{hookwire}/shop/conversion/7.gif?order=A-17\">\
                     <a id=click href=\"{hookwire}/shop/click?sub1=spring%20sale&to={}\">offer</a>",
                    to(&offer)
                ),
            ),
            (
                "/other.html".into(),
                "<!doctype html><title>Other</title>".into(),
            ),
            (
                "/offer".into(),
                "<!doctype html><title>Offer</title><p>the offer".into(),
            ),
        ],
    );

    let drive = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/drive.py");
    let mut child = Command::new(&python)
        .arg(&drive)
        .args([&chromium, &hookwire, &shop, &other])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tests/browser/drive.py");
    // Bounded: the driver's own waits are 15 s each.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser did not finish in 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "drive.py failed ({status}): {stderr}");
    let seen: serde_json::Value = serde_json::from_str(&stdout).expect("the driver's JSON");
    eprintln!("browser: {seen}");

    // The browser's side.
    assert_eq!(seen["pixel_width"], 1, "the pixel loaded as an image");
    let cookies = seen["cookies_after_pixel"].as_array().unwrap();
    assert_eq!(cookies.len(), 1, "the uid cookie was stored: {cookies:?}");
    let uid = cookies[0]["value"].as_str().unwrap().to_owned();
    assert_eq!(cookies[0]["httpOnly"], true);
    assert_eq!(cookies[0]["secure"], true);
    assert_eq!(cookies[0]["sameSite"], "None");
    assert_eq!(
        seen["fetch"]["status"], 200,
        "the credentialed CORS fetch was read"
    );
    assert_eq!(seen["fetch"]["body"]["key"], "in.gen.shop.order");
    assert_eq!(seen["beacon"], true);
    let sent = &seen["requests"];
    let first = |path: &str, method: &str| {
        let all = sent[path]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {sent}"));
        all.iter().find(|r| r["method"] == method).unwrap().clone()
    };
    // The pixel went without a cookie; the next requests carried it.
    assert_eq!(
        first("/shop/conversion/7.gif", "GET")["cookie"],
        serde_json::Value::Null
    );
    assert_eq!(first("/shop/order", "POST")["cookie"], format!("uid={uid}"));
    assert_eq!(first("/shop/click", "GET")["cookie"], format!("uid={uid}"));
    let blocked = seen["other_fetch"]["blocked"].as_str();
    assert!(
        blocked.is_some_and(|b| b.contains("TypeError")),
        "{}",
        seen["other_fetch"]
    );
    let landed = seen["landed"].as_str().unwrap();
    assert!(
        landed.starts_with(&format!("{other}/offer?click=")),
        "{landed}"
    );
    assert!(
        landed.ends_with(&format!("&u={uid}&sub=spring%20sale")),
        "{landed}"
    );
    assert_eq!(seen["offer_text"], "the offer");
    assert_eq!(
        seen["cookies_at_end"][0]["value"],
        uid.as_str(),
        "one uid all along"
    );

    // Hookwire's side: every event, with the same uid.
    let mut events: Vec<serde_json::Value> = (0..5).map(|_| sink.recv()).collect();
    sink.assert_quiet(Duration::from_millis(500));
    events.sort_by_key(|e| e["id"].as_str().unwrap().parse::<u64>().unwrap());
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e["channel"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("in.gen.shop.conversion", "pixel"),
            ("in.gen.shop.order", "http"),
            ("in.gen.shop.beacon", "http"),
            ("in.gen.shop.conversion", "pixel"),
            ("in.gen.shop.click", "redirect"),
        ]
    );
    for e in &events {
        assert_eq!(e["uid"], uid.as_str(), "{e}");
        assert!(e["td"]["ua"].as_str().unwrap().contains("Chrome"), "{e}");
    }
    assert_eq!(events[0]["projectId"], 7);
    assert_eq!(events[0]["data"]["order"], "A-17");
    assert_eq!(
        events[1]["data"],
        serde_json::json!({"order": "A-17", "sum": 12.5})
    );
    assert_eq!(
        events[2]["data"],
        serde_json::json!({"event": "leave", "page": "thanks"})
    );
    assert_eq!(events[4]["data"]["to"], offer.as_str());
    let click_id = events[4]["id"].as_str().unwrap();
    assert!(
        landed.starts_with(&format!("{other}/offer?click={click_id}&")),
        "{landed}"
    );

    // A bad click to this source: its status, and no envelope.
    let r = get(
        &server,
        &format!("/shop/click?to={}", to("javascript:alert(1)")),
        "",
    );
    r.assert_error(400, "redirect_not_allowed");
    sink.assert_quiet(Duration::from_millis(300));
}
