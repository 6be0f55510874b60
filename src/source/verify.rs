//! Each sender's signature scheme, exact to its published spec, checked
//! over the request as hookwire has it: the head's bytes (headers found
//! by re-scanning them) and the body as decoded from any
//! `Content-Encoding` (senders sign the payload; their HTTP client
//! compresses it). Every secret of the source is tried (rotation);
//! comparisons are constant-time; nothing allocates.

use super::mac::{decode, same_token, Encoding, Key, Tag};
use super::{param, Source, TokenAt, Verify};
use crate::http::request::{at, header, Request};
use crate::reject::Refusal;

/// Checks `req` against its source's scheme. `now` is Unix seconds;
/// `scratch` holds a decoded query token.
pub fn check(
    source: &Source,
    req: &Request<'_>,
    now: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), Refusal> {
    let head = req.buf;
    let body = req.body;
    let keys = &source.keys[..];
    match &source.verify {
        Verify::None => Ok(()),
        Verify::StandardWebhooks => {
            // `webhook-*`, or Svix's own names for the same headers.
            let (id, ts, sigs) = match header(head, b"webhook-id") {
                Some(id) => (
                    Some(id),
                    header(head, b"webhook-timestamp"),
                    header(head, b"webhook-signature"),
                ),
                None => (
                    header(head, b"svix-id"),
                    header(head, b"svix-timestamp"),
                    header(head, b"svix-signature"),
                ),
            };
            let (Some(id), Some(ts), Some(sigs)) = (id, ts, sigs) else {
                return Err(missing(
                    "send webhook-id, webhook-timestamp and webhook-signature \
                     (or svix-id, svix-timestamp and svix-signature), as the Standard Webhooks libraries do",
                ));
            };
            fresh(seconds(ts, STANDARD_TS)?, now, source)?;
            let tags = sign_each(keys, &[id, b".", ts, b".", body]);
            // `v1,<base64>`, several separated by spaces.
            let found = sigs.split(|&b| b == b' ').any(|sig| {
                sig.strip_prefix(b"v1,")
                    .is_some_and(|sig| any_match(&tags, sig, Encoding::Base64))
            });
            found.then_some(()).ok_or(invalid(
                "no webhook-signature matches: sign id.timestamp.body with HMAC-SHA256 under the \
                 source's secret, written v1,<base64>",
            ))
        }
        Verify::Stripe => {
            let Some(sig) = header(head, b"stripe-signature") else {
                return Err(missing(
                    "send the Stripe-Signature header Stripe signs events with",
                ));
            };
            let items = || sig.split(|&b| b == b',').map(crate::http::request::trim);
            let ts = items().find_map(|i| i.strip_prefix(b"t="));
            let Some(ts) = ts.filter(|_| items().any(|i| i.starts_with(b"v1="))) else {
                return Err(invalid(
                    "Stripe-Signature must hold t=<timestamp> and v1=<signature>",
                ));
            };
            fresh(seconds(ts, STRIPE_TS)?, now, source)?;
            let tags = sign_each(keys, &[ts, b".", body]);
            let found = items().any(|i| {
                i.strip_prefix(b"v1=")
                    .is_some_and(|sig| any_match(&tags, sig, Encoding::Hex))
            });
            found.then_some(()).ok_or(invalid(
                "no v1 signature in Stripe-Signature matches: sign t.body with HMAC-SHA256 under \
                 the endpoint's signing secret (whsec_…)",
            ))
        }
        Verify::Github => {
            let Some(sig) = header(head, b"x-hub-signature-256") else {
                return Err(missing(
                    "send X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>",
                ));
            };
            prefixed(keys, sig, b"sha256=", Encoding::Hex, &[body]).ok_or(invalid(
                "X-Hub-Signature-256 does not match: sha256=<hex HMAC-SHA256 of the body under the webhook's secret>",
            ))
        }
        Verify::Shopify => {
            let Some(sig) = header(head, b"x-shopify-hmac-sha256") else {
                return Err(missing(
                    "send X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>",
                ));
            };
            prefixed(keys, sig, b"", Encoding::Base64, &[body]).ok_or(invalid(
                "X-Shopify-Hmac-Sha256 does not match: the base64 HMAC-SHA256 of the body under the app's secret",
            ))
        }
        Verify::Slack => v0(&SLACK, keys, head, body, now, source),
        Verify::Zoom => v0(&ZOOM, keys, head, body, now, source),
        Verify::Twitch => {
            let (Some(id), Some(ts), Some(sig)) = (
                header(head, b"twitch-eventsub-message-id"),
                header(head, b"twitch-eventsub-message-timestamp"),
                header(head, b"twitch-eventsub-message-signature"),
            ) else {
                return Err(missing(
                    "send Twitch-Eventsub-Message-Id, -Timestamp and -Signature, as Twitch does",
                ));
            };
            fresh(rfc3339(ts)?, now, source)?;
            prefixed(keys, sig, b"sha256=", Encoding::Hex, &[id, ts, body]).ok_or(invalid(
                "Twitch-Eventsub-Message-Signature does not match: sha256=<hex HMAC-SHA256 of \
                 id + timestamp + body under the subscription's secret>",
            ))
        }
        Verify::Hmac(generic) => {
            let Some(sig) = header(head, generic.header.as_bytes()) else {
                return Err(missing(
                    "send the signature header this source's config names (its `header`)",
                ));
            };
            let prefix = generic.prefix.as_bytes();
            prefixed(keys, sig, prefix, generic.encoding, &[body]).ok_or(invalid(
                "the signature header does not match the HMAC of the body under this source's \
                 secret (with its algorithm, encoding and prefix)",
            ))
        }
        Verify::Token(at_) => {
            let given = match at_ {
                TokenAt::Param(name) => {
                    let query = req.head.query.as_ref().map(|q| at(head, q));
                    match query.is_some_and(|q| param(q, name.as_bytes(), scratch)) {
                        true => Some(&scratch[..]),
                        false => None,
                    }
                }
                TokenAt::Header(name) => header(head, name.as_bytes()),
            };
            let Some(given) = given else {
                return Err(missing(
                    "send the source's token in the query parameter or header its config names",
                ));
            };
            // Every token compared, so the time does not say which matched.
            let matched = source
                .tokens
                .iter()
                .fold(false, |m, t| same_token(given, &t.0) | m);
            matched
                .then_some(())
                .ok_or(invalid("the token does not match this source's secret"))
        }
    }
}

const STANDARD_TS: &str = "webhook-timestamp must be Unix seconds";
const STRIPE_TS: &str = "Stripe-Signature's t= must be Unix seconds";

/// A `v0=<hex HMAC-SHA256 of v0:timestamp:body>` scheme: Slack's, and
/// Zoom's with its own header names.
struct V0 {
    signature: &'static [u8],
    timestamp: &'static [u8],
    missing: &'static str,
    not_seconds: &'static str,
    invalid: &'static str,
}

const SLACK: V0 = V0 {
    signature: b"x-slack-signature",
    timestamp: b"x-slack-request-timestamp",
    missing: "send X-Slack-Signature and X-Slack-Request-Timestamp, as Slack does",
    not_seconds: "X-Slack-Request-Timestamp must be Unix seconds",
    invalid: "X-Slack-Signature does not match: v0=<hex HMAC-SHA256 of v0:timestamp:body under \
              the signing secret>",
};

const ZOOM: V0 = V0 {
    signature: b"x-zm-signature",
    timestamp: b"x-zm-request-timestamp",
    missing: "send x-zm-signature and x-zm-request-timestamp, as Zoom does",
    not_seconds: "x-zm-request-timestamp must be Unix seconds",
    invalid: "x-zm-signature does not match: v0=<hex HMAC-SHA256 of v0:timestamp:body under \
              the app's secret token>",
};

fn v0(
    scheme: &V0,
    keys: &[Key],
    head: &[u8],
    body: &[u8],
    now: u64,
    source: &Source,
) -> Result<(), Refusal> {
    let (Some(sig), Some(ts)) = (
        header(head, scheme.signature),
        header(head, scheme.timestamp),
    ) else {
        return Err(missing(scheme.missing));
    };
    fresh(seconds(ts, scheme.not_seconds)?, now, source)?;
    prefixed(keys, sig, b"v0=", Encoding::Hex, &[b"v0:", ts, b":", body])
        .ok_or(invalid(scheme.invalid))
}

fn missing(why: &'static str) -> Refusal {
    Refusal::MissingSignature { why }
}

fn invalid(why: &'static str) -> Refusal {
    Refusal::InvalidSignature { why }
}

/// Unix seconds written in decimal.
fn seconds(text: &[u8], why: &'static str) -> Result<u64, Refusal> {
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return Err(invalid(why));
    }
    Ok(text.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// An RFC 3339 time (Twitch's, with nanoseconds) in Unix seconds.
fn rfc3339(text: &[u8]) -> Result<u64, Refusal> {
    let why = "Twitch-Eventsub-Message-Timestamp must be an RFC 3339 time";
    let text = std::str::from_utf8(text).map_err(|_| invalid(why))?;
    let time = humantime::parse_rfc3339_weak(text).map_err(|_| invalid(why))?;
    let since = time.duration_since(std::time::UNIX_EPOCH);
    Ok(since.map_or(0, |d| d.as_secs()))
}

/// Refuses a timestamp further than the tolerance from now, either way.
fn fresh(ts: u64, now: u64, source: &Source) -> Result<(), Refusal> {
    match now.abs_diff(ts) > source.tolerance.as_secs() {
        true => Err(Refusal::StaleTimestamp),
        false => Ok(()),
    }
}

/// Most secrets a source may have (rotation needs two); their MACs fit on
/// the stack.
pub const MAX_KEYS: usize = 4;

/// Each key's MAC of `parts`, on the stack.
fn sign_each(keys: &[Key], parts: &[&[u8]]) -> smallvec::SmallVec<[Tag; MAX_KEYS]> {
    keys.iter().take(MAX_KEYS).map(|k| k.sign(parts)).collect()
}

/// Whether `sig` decodes to one of `tags`.
fn any_match(tags: &[Tag], sig: &[u8], encoding: Encoding) -> bool {
    let mut buf = [0u8; 96];
    match decode(sig, encoding, &mut buf) {
        Some(given) => tags.iter().fold(false, |m, t| t.matches(given) | m),
        None => false,
    }
}

/// `prefix` then one signature of `parts` under any key.
fn prefixed(
    keys: &[Key],
    sig: &[u8],
    prefix: &[u8],
    encoding: Encoding,
    parts: &[&[u8]],
) -> Option<()> {
    let sig = sig.strip_prefix(prefix)?;
    let tags = sign_each(keys, parts);
    any_match(&tags, sig, encoding).then_some(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::http::request::parse;
    use crate::source::{Algorithm, Reply};

    fn source(verify: Verify, secret: &[u8]) -> Source {
        Source {
            service: "s".into(),
            glob: wildmatch::WildMatch::new("s"),
            verify,
            keys: vec![Key::new(Algorithm::Sha256, secret)],
            tokens: Vec::new(),
            tolerance: Duration::from_secs(300),
            allow: Vec::new(),
            headers: Vec::new(),
            delivery: Vec::new(),
            challenge: None,
            verify_token: None,
            reply: Reply::Json,
            redirect_allow: Vec::new(),
            cookie: Default::default(),
            cors_origins: Vec::new(),
            client_ca: None,
        }
    }

    fn check_raw(source: &Source, head: &[u8], body: &[u8], now: u64) -> Result<(), Refusal> {
        let parsed = parse(head, 8192).unwrap().unwrap();
        let req = Request {
            buf: head,
            head: &parsed,
            body,
            peer: "127.0.0.1".parse().unwrap(),
            client_cert: crate::tls::ClientCert::NONE,
        };
        check(source, &req, now, &mut Vec::new())
    }

    /// The Standard Webhooks specification's example.
    #[test]
    fn standard_webhooks_published_example() {
        use base64::Engine;
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let source = source(Verify::StandardWebhooks, &secret);
        let head = b"POST /s HTTP/1.1\r\nwebhook-id: msg_p5jXN8AQM9LWM0D4loKWxJek\r\n\
                     webhook-timestamp: 1614265330\r\n\
                     webhook-signature: v1,bm9ldHUjKzFob2VudXRob2VodWUzMjRvdWVvdW9ldQo= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\r\n\r\n";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(check_raw(&source, head, body, 1614265330 + 10), Ok(()));
        assert_eq!(
            check_raw(&source, head, body, 1614265330 + 301),
            Err(Refusal::StaleTimestamp)
        );
        assert_eq!(
            check_raw(&source, head, body, 1614265330 - 301),
            Err(Refusal::StaleTimestamp)
        );
        let altered = br#"{"test": 2432232315}"#;
        assert!(matches!(
            check_raw(&source, head, altered, 1614265330),
            Err(Refusal::InvalidSignature { .. })
        ));
    }

    /// Slack's documented example request.
    #[test]
    fn slack_documented_example() {
        let source = source(Verify::Slack, b"8f742231b10e8888abcd99yyyzzz85a5");
        let head = b"POST /s HTTP/1.1\r\nX-Slack-Request-Timestamp: 1531420618\r\n\
                     X-Slack-Signature: v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503\r\n\r\n";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(check_raw(&source, head, body, 1531420618), Ok(()));
        let head = b"POST /s HTTP/1.1\r\nX-Slack-Request-Timestamp: 1531420618\r\n\r\n";
        assert!(matches!(
            check_raw(&source, head, body, 1531420618),
            Err(Refusal::MissingSignature { .. })
        ));
    }
}
