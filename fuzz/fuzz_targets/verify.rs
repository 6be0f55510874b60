//! Signature verification, through the connection as a sender's request
//! reaches it. Each input picks a source (Stripe, GitHub, Shopify, Slack,
//! Standard Webhooks, a generic HMAC, a token, Zoom) and either signs its
//! bytes as that sender does (then tampers with the signature, or not) or
//! sends them raw after the request line. A request signed with the
//! source's secret is never refused for its signature; a tampered one
//! always is (401); every pass answers in HTTP.

#![no_main]

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;

mod common;

const CONFIG: &str = r#"
[[source]]
service = "stripe"
verify = "stripe"
secrets = ["whsec_fuzz_stripe"]

[[source]]
service = "github"
verify = "github"
secrets = ["gh-old", "gh-fuzz"]

[[source]]
service = "shopify"
verify = "shopify"
secrets = ["shopify-fuzz"]

[[source]]
service = "slack"
verify = "slack"
secrets = ["slack-fuzz"]
challenge = "slack"

[[source]]
service = "sw"
verify = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[[source]]
service = "inhouse"
verify = "hmac"
header = "X-Signature"
algorithm = "sha1"
encoding = "base64"
prefix = "sha1="
secrets = ["inhouse-fuzz"]

[[source]]
service = "token"
verify = "token"
token-param = "secure"
secrets = ["tok-fuzz"]

[[source]]
service = "zoom"
verify = "none"
challenge = "zoom"
secrets = ["zoom-fuzz"]
"#;

const SERVICES: [&str; 8] = [
    "stripe", "github", "shopify", "slack", "sw", "inhouse", "token", "zoom",
];

/// The config file of the sources above, written once per process.
fn config() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("hookwire-fuzz-verify-{}.toml", std::process::id()));
        std::fs::write(&path, CONFIG).unwrap();
        path.to_str().unwrap().to_owned()
    })
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    parts.iter().for_each(|p| mac.update(p));
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How a sender signs `body`: the headers before the signature's, the
/// signature header's name and prefix, and the signature's encoded text.
fn sign(service: usize, body: &[u8], ts: &str) -> (String, String, String) {
    let t = ts.as_bytes();
    let none = String::new();
    match SERVICES[service] {
        "stripe" => {
            let mac = hmac256(b"whsec_fuzz_stripe", &[t, b".", body]);
            (none, format!("Stripe-Signature: t={ts},v1="), hex(&mac))
        }
        "github" => {
            let mac = hmac256(b"gh-fuzz", &[body]);
            (none, "X-Hub-Signature-256: sha256=".into(), hex(&mac))
        }
        "shopify" => {
            let mac = hmac256(b"shopify-fuzz", &[body]);
            (none, "X-Shopify-Hmac-Sha256: ".into(), b64(&mac))
        }
        "slack" => {
            let mac = hmac256(b"slack-fuzz", &[b"v0:", t, b":", body]);
            let stamp = format!("X-Slack-Request-Timestamp: {ts}\r\n");
            (stamp, "X-Slack-Signature: v0=".into(), hex(&mac))
        }
        "zoom" => {
            let mac = hmac256(b"zoom-fuzz", &[b"v0:", t, b":", body]);
            let stamp = format!("x-zm-request-timestamp: {ts}\r\n");
            (stamp, "x-zm-signature: v0=".into(), hex(&mac))
        }
        "sw" => {
            let key = base64::engine::general_purpose::STANDARD
                .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap();
            let mac = hmac256(&key, &[b"msg_fuzz", b".", t, b".", body]);
            let head = format!("webhook-id: msg_fuzz\r\nwebhook-timestamp: {ts}\r\n");
            (head, "webhook-signature: v1,".into(), b64(&mac))
        }
        "inhouse" => {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"inhouse-fuzz").unwrap();
            mac.update(body);
            let mac = mac.finalize().into_bytes();
            (none, "X-Signature: sha1=".into(), b64(&mac))
        }
        _ => unreachable!(),
    }
}

fn status(out: &[u8]) -> u16 {
    std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap()
}

fuzz_target!(|data: &[u8]| {
    let [pick, flip, rest @ ..] = data else {
        return;
    };
    let service = usize::from(pick % 8);
    let mode = (pick / 8) % 3;
    let name = SERVICES[service];
    common::with_core_using(&["--config", config()], |settings, shard| {
        let mut conn = hookwire::testing::conn(settings);
        if mode == 2 {
            // Raw: the sender's headers and body are the input's.
            let mut req = format!("POST /{name}/e/1 HTTP/1.1\r\n").into_bytes();
            req.extend_from_slice(rest);
            common::drive(&mut conn, shard, &req, 0);
            shard.fanout.discard_outbox();
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ts = now.to_string();
        let query = if name == "token" {
            "?secure=tok-fuzz"
        } else {
            ""
        };
        let tampered = mode == 1 && name != "token";
        let mut signed = Vec::new();
        if name != "token" {
            let (before, header, mut sig) = sign(service, rest, &ts);
            if tampered {
                // One character of the signature's text changed, never in
                // its last two (base64's unused bits, padding): never the
                // same value, whatever the encoding.
                let at = usize::from(*flip) % (sig.len() - 2).min(40);
                let mut bytes = sig.into_bytes();
                bytes[at] ^= 1;
                sig = String::from_utf8(bytes).unwrap();
            }
            signed = format!("{before}{header}{sig}\r\n").into_bytes();
        }
        let mut req = format!(
            "POST /{name}/e/1{query} HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n",
            rest.len()
        )
        .into_bytes();
        req.extend_from_slice(&signed);
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(rest);
        common::drive(&mut conn, shard, &req, 0);
        shard.fanout.discard_outbox();
        if conn.out.len() < 12 {
            return; // waiting for the body budget: nothing decided
        }
        let code = status(&conn.out);
        let said = String::from_utf8_lossy(&conn.out[..conn.out.len().min(400)]).into_owned();
        if tampered {
            assert_eq!(code, 401, "a tampered signature was not refused: {said}");
        } else {
            assert!(
                code != 401 && code != 403,
                "a signed request was refused: {said}"
            );
        }
    });
});
