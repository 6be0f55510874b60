//! Who may send what: the `[[source]]`s of the config, matched by the
//! path's service. A source says how its sender signs (and [`verify`]
//! checks it), which addresses may send, which subscription challenge it
//! answers ([`challenge`]), which request headers go into the envelope
//! and how the 200 reads. Built and validated once by [`crate::config`];
//! requests only look sources up.

pub mod browser;
pub mod challenge;
pub mod mac;
pub mod verify;

use std::time::Duration;

use ipnet::IpNet;
use wildmatch::WildMatch;

pub use mac::{Algorithm, Encoding, Key};

/// Every configured source, in the config's order (the first whose glob
/// matches a service is its source).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub list: Vec<Source>,
    /// A service that no source matches gets 404 `unknown_service`.
    pub strict: bool,
}

impl Sources {
    /// No source configured: requests skip every check here.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && !self.strict
    }

    /// The index of the first source whose glob matches `service`.
    pub fn find(&self, service: &[u8]) -> Option<usize> {
        // A service is validated to [A-Za-z0-9_-] before it is looked up.
        let service = std::str::from_utf8(service).ok()?;
        self.list.iter().position(|s| s.glob.matches(service))
    }

    /// The metrics labels: each source's glob, then `-` for services no
    /// source matches. Empty when no source is configured (and not strict).
    pub fn labels(&self) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut labels: Vec<String> = self.list.iter().map(|s| s.service.clone()).collect();
        labels.push(UNMATCHED.into());
        labels
    }
}

/// The metrics label of services no source matches.
pub const UNMATCHED: &str = "-";

/// One `[[source]]`, validated and ready: secrets resolved and keyed.
#[derive(Debug, Clone)]
pub struct Source {
    /// The service glob as written: its name in logs and metrics.
    pub service: String,
    pub glob: WildMatch,
    pub verify: Verify,
    /// One per secret (several while a secret is rolled): HMAC keys for the
    /// signing schemes. Tokens are kept in `tokens`.
    pub keys: Vec<Key>,
    pub tokens: Vec<Secret>,
    /// How far a signed timestamp may be from now, either way.
    pub tolerance: Duration,
    /// Client addresses allowed to send (empty: any).
    pub allow: Vec<IpNet>,
    /// Request headers copied into `td.headers`, lower-case.
    pub headers: Vec<String>,
    /// Headers whose first present one is `td.delivery`, lower-case.
    pub delivery: Vec<String>,
    pub challenge: Option<Challenge>,
    /// Meta's `hub.verify_token`.
    pub verify_token: Option<Secret>,
    pub reply: Reply,
    /// Hosts a click (`to=`) may be redirected to; empty: `to` is data.
    pub redirect_allow: Vec<browser::HostPattern>,
    /// The uid cookie's name and `Set-Cookie` line.
    pub cookie: browser::Cookie,
    /// Origins answered with credentialed CORS (lower-case); empty: `*`.
    pub cors_origins: Vec<String>,
    /// Mutual TLS: requests must come over HTTPS with a client
    /// certificate that chains to this CA (PEM).
    pub client_ca: Option<std::path::PathBuf>,
}

/// How a source's sender signs its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verify {
    None,
    /// Standard Webhooks (and Svix): `webhook-*` or `svix-*` headers.
    StandardWebhooks,
    Stripe,
    Github,
    Shopify,
    Slack,
    /// Twitch EventSub, for `challenge = "twitch"` sources with secrets.
    Twitch,
    /// Zoom's `x-zm-signature`, for `challenge = "zoom"` sources (which
    /// always have the secret token).
    Zoom,
    Hmac(Generic),
    Token(TokenAt),
}

impl Verify {
    /// The scheme's name, as the config writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Verify::None => "none",
            Verify::StandardWebhooks => "standard-webhooks",
            Verify::Stripe => "stripe",
            Verify::Github => "github",
            Verify::Shopify => "shopify",
            Verify::Slack => "slack",
            Verify::Twitch => "twitch",
            Verify::Zoom => "zoom",
            Verify::Hmac(_) => "hmac",
            Verify::Token(_) => "token",
        }
    }

    /// Whether the scheme signs the body and not the request target, so
    /// that a query string would go into `data` unverified.
    pub fn signs_body(&self) -> bool {
        !matches!(self, Verify::None | Verify::Token(_))
    }
}

/// `verify = "hmac"`: an HMAC of the body in a header of the operator's
/// choosing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generic {
    /// Lower-case.
    pub header: String,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Text before the signature in the header (`sha256=`), if any.
    pub prefix: String,
}

/// Where a `verify = "token"` sender puts the shared secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAt {
    /// A query parameter: checked, then left out of `data`.
    Param(String),
    /// A header (lower-case).
    Header(String),
}

/// The subscription challenges hookwire answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Meta,
    Slack,
    Dropbox,
    Graph,
    Zoom,
    Twitch,
}

impl Challenge {
    pub fn name(self) -> &'static str {
        match self {
            Challenge::Meta => "meta",
            Challenge::Slack => "slack",
            Challenge::Dropbox => "dropbox",
            Challenge::Graph => "graph",
            Challenge::Zoom => "zoom",
            Challenge::Twitch => "twitch",
        }
    }
}

/// The body of a 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `{"key","id"}`, as without a source.
    Json,
    /// This text, as `text/plain` (`text:OK`).
    Text(String),
    /// The transparent GIF of an image pixel, to GETs.
    Gif,
}

/// A secret's bytes; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<secret>)")
    }
}

impl Source {
    /// What the start-up line says of it: what it verifies and answers,
    /// never a secret.
    pub fn describe(&self) -> String {
        let mut text = format!("source {}: verify {}", self.service, self.verify.name());
        match &self.verify {
            Verify::Hmac(g) => {
                text += &format!(
                    " ({} {} {}{})",
                    g.header,
                    g.algorithm.name(),
                    g.encoding.name(),
                    if g.prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" after '{}'", g.prefix)
                    }
                )
            }
            Verify::Token(TokenAt::Param(p)) => text += &format!(" (query parameter {p})"),
            Verify::Token(TokenAt::Header(h)) => text += &format!(" (header {h})"),
            _ => {}
        }
        let secrets = self.keys.len().max(self.tokens.len());
        if secrets > 0 {
            text += &format!(", {secrets} secret{}", if secrets == 1 { "" } else { "s" });
        }
        if matches!(
            self.verify,
            Verify::StandardWebhooks
                | Verify::Stripe
                | Verify::Slack
                | Verify::Twitch
                | Verify::Zoom
        ) {
            text += &format!(", tolerance {}", humantime::format_duration(self.tolerance));
        }
        if !self.allow.is_empty() {
            let allow: Vec<String> = self.allow.iter().map(ToString::to_string).collect();
            text += &format!(", allow {}", allow.join(","));
        }
        if let Some(c) = self.challenge {
            text += &format!(", challenge {}", c.name());
        }
        if !self.headers.is_empty() {
            text += &format!(", headers {}", self.headers.join(","));
        }
        if !self.delivery.is_empty() {
            text += &format!(", delivery {}", self.delivery.join("|"));
        }
        match &self.reply {
            Reply::Text(t) => text += &format!(", reply text:{t}"),
            Reply::Gif => text += ", reply gif",
            Reply::Json => {}
        }
        if !self.redirect_allow.is_empty() {
            let hosts: Vec<String> = self.redirect_allow.iter().map(|h| h.as_written()).collect();
            text += &format!(", redirect-allow {}", hosts.join(","));
        }
        if self.cookie.name != "uid" {
            text += &format!(", cookie {}", self.cookie.name);
        }
        if let Some(ca) = &self.client_ca {
            text += &format!(", client-ca {}", ca.display());
        }
        if !self.cors_origins.is_empty() {
            text += &format!(", cors-origins {}", self.cors_origins.join(","));
        }
        text
    }
}

/// Decodes the value of the first `name=` parameter of a query string
/// (`+` a space, `%XX` a byte) into `out`; `false` when there is none.
pub fn param(query: &[u8], name: &[u8], out: &mut Vec<u8>) -> bool {
    for pair in query.split(|&b| b == b'&') {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        if key != name {
            continue;
        }
        out.clear();
        let mut i = 0;
        while i < value.len() {
            let byte = match value[i] {
                b'+' => b' ',
                b'%' if i + 2 < value.len() => match hex_pair(value[i + 1], value[i + 2]) {
                    Some(b) => {
                        i += 2;
                        b
                    }
                    None => b'%',
                },
                b => b,
            };
            out.push(byte);
            i += 1;
        }
        return true;
    }
    false
}

fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    Some(digit(hi)? << 4 | digit(lo)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_decoded() {
        let mut out = Vec::new();
        let q = b"hub.mode=subscribe&hub.challenge=12%2034+5&secure=a%zz&empty";
        assert!(param(q, b"hub.challenge", &mut out));
        assert_eq!(out, b"12 34 5");
        assert!(param(q, b"secure", &mut out));
        assert_eq!(out, b"a%zz");
        assert!(param(q, b"empty", &mut out));
        assert_eq!(out, b"");
        assert!(!param(q, b"hub", &mut out));
        assert!(param(b"t=%41", b"t", &mut out));
        assert_eq!(out, b"A");
        assert!(param(b"t=%4", b"t", &mut out));
        assert_eq!(out, b"%4");
    }
}
