//! Subscription challenges: the requests a sender makes before it sends
//! events, to see that the endpoint is the subscriber's. Answered only for
//! sources configured with one, never with an envelope. A challenge's
//! echo is `text/plain` (with `nosniff`), so a reflected value is never
//! read as a page.

use super::{param, Challenge, Source};
use crate::http::request::{at, header, Method, Request};
use crate::reject::Refusal;

/// How a challenge's answer (in the `out` it was written to) is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Text,
    Json,
}

/// The challenges that come unsigned, answered before the signature
/// check: Meta's and Dropbox's GET, Microsoft Graph's `validationToken`.
/// `None`: the request is not one.
pub fn unsigned(
    source: &Source,
    req: &Request<'_>,
    out: &mut Vec<u8>,
) -> Option<Result<Answer, Refusal>> {
    let query = at(req.buf, req.head.query.as_ref()?);
    let method = req.head.method();
    match source.challenge? {
        Challenge::Meta if method == Method::Get => {
            let mut mode = Vec::new();
            if !param(query, b"hub.mode", &mut mode) {
                return None;
            }
            let mut token = Vec::new();
            let known = source.verify_token.as_ref()?;
            let ok = mode == b"subscribe"
                && param(query, b"hub.verify_token", &mut token)
                && super::mac::same_token(&token, &known.0)
                && param(query, b"hub.challenge", out);
            Some(if ok {
                Ok(Answer::Text)
            } else {
                Err(Refusal::InvalidVerifyToken)
            })
        }
        Challenge::Dropbox if method == Method::Get => {
            param(query, b"challenge", out).then_some(Ok(Answer::Text))
        }
        Challenge::Graph if method == Method::Post => {
            param(query, b"validationToken", out).then_some(Ok(Answer::Text))
        }
        _ => None,
    }
}

/// The challenges that come signed, answered once the signature checks
/// out: Slack's `url_verification`, Zoom's `endpoint.url_validation`,
/// Twitch's `webhook_callback_verification`.
pub fn signed(
    source: &Source,
    req: &Request<'_>,
    out: &mut Vec<u8>,
) -> Option<Result<Answer, Refusal>> {
    let body = req.body;
    // A cheap look first: events of these sources go on without a parse.
    let json = |marker: &[u8]| -> Option<serde_json::Value> {
        memchr::memmem::find(body, marker)?;
        serde_json::from_slice(body).ok()
    };
    let text = |out: &mut Vec<u8>, value: &serde_json::Value| {
        let s = value.as_str()?;
        out.clear();
        out.extend_from_slice(s.as_bytes());
        Some(Ok(Answer::Text))
    };
    match source.challenge? {
        Challenge::Slack => {
            let v = json(b"url_verification")?;
            if v["type"] != "url_verification" {
                return None;
            }
            text(out, &v["challenge"])
        }
        Challenge::Twitch => {
            let kind = header(req.buf, b"twitch-eventsub-message-type")?;
            if kind != b"webhook_callback_verification" {
                return None;
            }
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            text(out, &v["challenge"])
        }
        Challenge::Zoom => {
            let v = json(b"endpoint.url_validation")?;
            if v["event"] != "endpoint.url_validation" {
                return None;
            }
            let plain = v["payload"]["plainToken"].as_str()?;
            // Config requires a secret for Zoom's challenge.
            let key = source.keys.first()?;
            let mut hex = [0u8; 128];
            let encrypted = key.sign(&[plain.as_bytes()]);
            let encrypted = std::str::from_utf8(encrypted.hex(&mut hex)).expect("hex");
            out.clear();
            let answer = serde_json::json!({"plainToken": plain, "encryptedToken": encrypted});
            serde_json::to_writer(&mut *out, &answer).expect("JSON to a Vec");
            Some(Ok(Answer::Json))
        }
        _ => None,
    }
}
