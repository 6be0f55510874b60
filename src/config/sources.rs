//! `[[source]]` tables of the config file: read as written, then resolved
//! (secrets from the environment or files) and validated into
//! [`crate::source::Sources`]. A refusal names the source and the key to
//! fix, never a secret's value.

use std::path::Path;
use std::time::Duration;

use clap::ValueEnum;
use serde::Deserialize;
use wildmatch::WildMatch;

use super::error::ConfigError;
use super::values::{self, choice, Interval, Invalid, TrustedNet};
use crate::source::browser::{self, Cookie, HostPattern};
use crate::source::verify::MAX_KEYS;
use crate::source::{
    Algorithm, Challenge, Encoding, Generic, Key, Reply, Secret, Source, Sources, TokenAt, Verify,
};

/// One `[[source]]` as the file writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SourceSpec {
    pub service: String,
    pub verify: Option<Scheme>,
    #[serde(default, deserialize_with = "values::strings")]
    pub secrets: Vec<String>,
    pub tolerance: Option<Interval>,
    #[serde(default, deserialize_with = "values::list::<',', _, _>")]
    pub allow: Vec<TrustedNet>,
    #[serde(default, deserialize_with = "values::strings")]
    pub headers: Vec<String>,
    pub delivery_header: Option<String>,
    pub challenge: Option<ChallengeKind>,
    pub verify_token: Option<String>,
    pub reply: Option<String>,
    pub header: Option<String>,
    pub algorithm: Option<HashKind>,
    pub encoding: Option<EncodingKind>,
    pub prefix: Option<String>,
    pub token_param: Option<String>,
    pub token_header: Option<String>,
    #[serde(default, deserialize_with = "values::strings")]
    pub redirect_allow: Vec<String>,
    pub cookie_name: Option<String>,
    pub cookie_domain: Option<String>,
    #[serde(default, deserialize_with = "values::strings")]
    pub cors_origins: Vec<String>,
    pub client_ca: Option<std::path::PathBuf>,
}

/// `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    StandardWebhooks,
    Stripe,
    Github,
    Shopify,
    Slack,
    Hmac,
    Token,
    None,
}

/// `challenge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChallengeKind {
    Meta,
    Slack,
    Dropbox,
    Graph,
    Zoom,
    Twitch,
}

/// `algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashKind {
    Sha256,
    Sha1,
    Sha512,
}

/// `encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncodingKind {
    Hex,
    Base64,
}

macro_rules! by_choice {
    ($($choice:ty),*) => {$(
        impl std::str::FromStr for $choice {
            type Err = Invalid;
            fn from_str(text: &str) -> Result<Self, Invalid> {
                choice(text)
            }
        }
        impl<'de> Deserialize<'de> for $choice {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
by_choice!(Scheme, ChallengeKind, HashKind, EncodingKind);

/// The default tolerance of timestamped schemes (Stripe's 300 s too).
const TOLERANCE: Duration = Duration::from_secs(300);

/// Resolves and validates every source; `file` is the config file they
/// came from, for the refusal's origin.
pub fn build(
    specs: Vec<SourceSpec>,
    strict: bool,
    file: Option<&Path>,
) -> Result<Sources, ConfigError> {
    let mut list = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let name = format!("[[source]] #{} (service = {:?})", i + 1, spec.service);
        let source = one(spec).map_err(|message| ConfigError {
            option: name,
            origin: file.map(|f| f.display().to_string()),
            message,
        })?;
        list.push(source);
    }
    Ok(Sources { list, strict })
}

/// A refusal's text: the key, then what is wrong.
type Refused = String;

fn one(spec: SourceSpec) -> Result<Source, Refused> {
    let glob = spec.service.trim();
    let glob_ok = !glob.is_empty()
        && glob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-*?".contains(&b));
    if !glob_ok {
        return Err(format!(
            "service: {:?} is not a glob on the path's service (A-Z a-z 0-9 _ - and the wildcards * ?)",
            spec.service
        ));
    }
    let scheme = spec.verify.unwrap_or(Scheme::None);
    let only = |set: bool, key: &str, with: &str| -> Result<(), Refused> {
        match set {
            true => Err(format!("{key}: only with {with}")),
            false => Ok(()),
        }
    };
    if scheme != Scheme::Hmac {
        only(spec.header.is_some(), "header", "verify = \"hmac\"")?;
        only(spec.algorithm.is_some(), "algorithm", "verify = \"hmac\"")?;
        only(spec.encoding.is_some(), "encoding", "verify = \"hmac\"")?;
        only(spec.prefix.is_some(), "prefix", "verify = \"hmac\"")?;
    }
    if scheme != Scheme::Token {
        only(
            spec.token_param.is_some(),
            "token-param",
            "verify = \"token\"",
        )?;
        only(
            spec.token_header.is_some(),
            "token-header",
            "verify = \"token\"",
        )?;
    }
    let challenge = spec.challenge.map(|c| match c {
        ChallengeKind::Meta => Challenge::Meta,
        ChallengeKind::Slack => Challenge::Slack,
        ChallengeKind::Dropbox => Challenge::Dropbox,
        ChallengeKind::Graph => Challenge::Graph,
        ChallengeKind::Zoom => Challenge::Zoom,
        ChallengeKind::Twitch => Challenge::Twitch,
    });
    only(
        spec.verify_token.is_some() && challenge != Some(Challenge::Meta),
        "verify-token",
        "challenge = \"meta\"",
    )?;

    let secrets = spec
        .secrets
        .iter()
        .enumerate()
        .map(|(i, s)| resolve(s).map_err(|e| format!("secrets[{i}] ({}): {e}", shown(s))))
        .collect::<Result<Vec<_>, _>>()?;
    if secrets.len() > MAX_KEYS {
        return Err(format!(
            "secrets: at most {MAX_KEYS} (two are enough to roll one)"
        ));
    }
    let signs = !matches!(scheme, Scheme::None);
    let needs_secret = signs || matches!(challenge, Some(Challenge::Zoom | Challenge::Twitch));
    if signs && secrets.is_empty() {
        return Err(format!(
            "secrets: verify = \"{}\" needs at least one (\"env:NAME\", \"file:/path\" or the secret itself)",
            name_of(scheme)
        ));
    }
    if !needs_secret && !secrets.is_empty() {
        return Err("secrets: set verify to say how they are checked (they are unused with verify = \"none\")".into());
    }
    if challenge == Some(Challenge::Twitch) && secrets.is_empty() {
        return Err("secrets: challenge = \"twitch\" needs the subscription's secret: without it anyone could subscribe and send events".into());
    }
    if challenge == Some(Challenge::Zoom) && secrets.is_empty() {
        return Err("secrets: challenge = \"zoom\" needs the app's secret token to answer endpoint.url_validation".into());
    }
    if challenge == Some(Challenge::Slack) && scheme != Scheme::Slack {
        return Err("challenge: \"slack\" is answered after Slack's signature check; set verify = \"slack\"".into());
    }
    if challenge == Some(Challenge::Twitch) && signs {
        return Err("verify: with challenge = \"twitch\", leave verify out: Twitch's signature is checked when secrets are set".into());
    }
    let verify_token = match (&spec.verify_token, challenge) {
        (Some(t), _) => Some(Secret(
            resolve(t).map_err(|e| format!("verify-token ({}): {e}", shown(t)))?,
        )),
        (None, Some(Challenge::Meta)) => return Err(
            "verify-token: challenge = \"meta\" needs the token you gave Meta (hub.verify_token)"
                .into(),
        ),
        (None, _) => None,
    };

    let verify =
        match scheme {
            Scheme::None if challenge == Some(Challenge::Twitch) && !secrets.is_empty() => {
                Verify::Twitch
            }
            // Zoom signs every request, its url_validation too: answering
            // that unsigned would hand anyone an HMAC under the secret.
            Scheme::None if challenge == Some(Challenge::Zoom) => Verify::Zoom,
            Scheme::None => Verify::None,
            Scheme::StandardWebhooks => Verify::StandardWebhooks,
            Scheme::Stripe => Verify::Stripe,
            Scheme::Github => Verify::Github,
            Scheme::Shopify => Verify::Shopify,
            Scheme::Slack => Verify::Slack,
            Scheme::Hmac => {
                let header = spec.header.as_deref().ok_or(
                "header: verify = \"hmac\" needs the signature's header (header = \"X-Signature\")",
            )?;
                Verify::Hmac(Generic {
                    header: header_name("header", header)?,
                    algorithm: match spec.algorithm.unwrap_or(HashKind::Sha256) {
                        HashKind::Sha256 => Algorithm::Sha256,
                        HashKind::Sha1 => Algorithm::Sha1,
                        HashKind::Sha512 => Algorithm::Sha512,
                    },
                    encoding: match spec.encoding.unwrap_or(EncodingKind::Hex) {
                        EncodingKind::Hex => Encoding::Hex,
                        EncodingKind::Base64 => Encoding::Base64,
                    },
                    prefix: spec.prefix.clone().unwrap_or_default(),
                })
            }
            Scheme::Token => match (&spec.token_param, &spec.token_header) {
                (Some(p), None) if !p.is_empty() && !p.contains(['&', '=', ' ']) => {
                    Verify::Token(TokenAt::Param(p.clone()))
                }
                (Some(p), None) => {
                    return Err(format!("token-param: {p:?} is not a query parameter name"))
                }
                (None, Some(h)) => Verify::Token(TokenAt::Header(header_name("token-header", h)?)),
                _ => return Err(
                    "token-param or token-header: verify = \"token\" needs exactly one of them \
                            (token-param = \"secure\" or token-header = \"X-Token\")"
                        .into(),
                ),
            },
        };

    let (keys, tokens) = match &verify {
        // Zoom's challenge is answered with an HMAC under the app's
        // secret token.
        Verify::None => (
            secrets
                .iter()
                .map(|s| Key::new(Algorithm::Sha256, s))
                .collect(),
            Vec::new(),
        ),
        Verify::Token(_) => (Vec::new(), secrets.into_iter().map(Secret).collect()),
        other => {
            let algorithm = match other {
                Verify::Hmac(g) => g.algorithm,
                _ => Algorithm::Sha256,
            };
            let mut keys = Vec::new();
            for (i, secret) in secrets.iter().enumerate() {
                let secret = match other {
                    // Standard Webhooks' secrets are base64, after `whsec_`.
                    Verify::StandardWebhooks => {
                        use base64::Engine;
                        let text = secret.strip_prefix(b"whsec_").unwrap_or(secret);
                        base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| {
                            format!(
                                "secrets[{i}] ({}): a Standard Webhooks secret is base64 after whsec_ (as the sender shows it)",
                                shown(&spec.secrets[i])
                            )
                        })?
                    }
                    _ => secret.clone(),
                };
                if secret.is_empty() {
                    return Err(format!(
                        "secrets[{i}] ({}): decodes to an empty key, which anyone can sign with",
                        shown(&spec.secrets[i])
                    ));
                }
                keys.push(Key::new(algorithm, &secret));
            }
            (keys, Vec::new())
        }
    };

    let tolerance = spec.tolerance.map_or(TOLERANCE, |t| t.0);
    if tolerance.is_zero() {
        return Err("tolerance: must be longer than zero (\"5m\")".into());
    }
    let headers = spec
        .headers
        .iter()
        .map(|h| header_name("headers", h))
        .collect::<Result<Vec<_>, _>>()?;
    if let Verify::Token(TokenAt::Header(token)) = &verify {
        if headers.contains(token) {
            return Err(format!(
                "headers: {token} holds the source's token; copying it would hand the secret to consumers"
            ));
        }
    }
    let delivery = match &spec.delivery_header {
        Some(h) => vec![header_name("delivery-header", h)?],
        None => default_delivery(&verify, challenge)
            .iter()
            .map(|h| h.to_string())
            .collect(),
    };
    let reply = match spec.reply.as_deref().map(str::trim) {
        None | Some("json") => Reply::Json,
        Some("gif") => Reply::Gif,
        Some(r) => match r.strip_prefix("text:") {
            Some(t) if !t.is_empty() && t.bytes().all(|b| (b' '..=b'~').contains(&b)) => {
                Reply::Text(t.to_owned())
            }
            _ => {
                return Err(format!(
                "reply: {r:?} is not \"json\", \"gif\" or \"text:<printable ASCII>\" (\"text:OK\")"
            ))
            }
        },
    };
    let redirect_allow = spec
        .redirect_allow
        .iter()
        .map(|e| {
            HostPattern::parse(e).ok_or_else(|| {
                format!("redirect-allow: {e:?} is not a host name (\"offer.example\") or \"*.\" and a domain (\"*.shop.example\")")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cookie_name = spec.cookie_name.as_deref().map(str::trim).unwrap_or("uid");
    if !browser::valid_cookie_name(cookie_name) {
        return Err(format!(
            "cookie-name: {cookie_name:?} is not a cookie name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    let cookie_domain = spec.cookie_domain.as_deref().map(str::trim);
    if let Some(d) = cookie_domain.filter(|d| !browser::valid_cookie_domain(d)) {
        return Err(format!(
            "cookie-domain: {d:?} is not a domain (\"shop.example\" or \".shop.example\")"
        ));
    }
    let cors_origins = spec
        .cors_origins
        .iter()
        .map(|o| {
            browser::parse_origin(o).ok_or_else(|| {
                format!("cors-origins: {o:?} is not an origin as browsers send it (\"https://shop.example\", a port if not the default, no path)")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let client_ca = match spec.client_ca {
        Some(path) if path.as_os_str().is_empty() => return Err(
            "client-ca: give the PEM file of the CA that issues this sender's client certificates"
                .into(),
        ),
        // Relative to where hookwire runs, like the other paths.
        path => path,
    };
    Ok(Source {
        client_ca,
        redirect_allow,
        cookie: Cookie::new(cookie_name, cookie_domain),
        cors_origins,
        service: glob.to_owned(),
        glob: WildMatch::new(glob),
        verify,
        keys,
        tokens,
        tolerance,
        allow: spec.allow.iter().map(|n| n.0).collect(),
        headers,
        delivery,
        challenge,
        verify_token,
        reply,
    })
}

/// The sender's delivery id header, by scheme.
fn default_delivery(verify: &Verify, challenge: Option<Challenge>) -> &'static [&'static str] {
    match (verify, challenge) {
        (Verify::StandardWebhooks, _) => &["webhook-id", "svix-id"],
        (Verify::Github, _) => &["x-github-delivery"],
        (Verify::Shopify, _) => &["x-shopify-webhook-id"],
        (Verify::Twitch, _) | (_, Some(Challenge::Twitch)) => &["twitch-eventsub-message-id"],
        _ => &[],
    }
}

fn name_of(scheme: Scheme) -> String {
    scheme
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_owned())
}

/// A header name as HTTP writes one (a token), lower-cased.
fn header_name(key: &str, name: &str) -> Result<String, Refused> {
    let name = name.trim();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("{key}: {name:?} is not a header name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// How a secret is named in a refusal: where it is read from, or
/// `<literal>` for one written in the file.
fn shown(reference: &str) -> String {
    if reference.starts_with("env:") || reference.starts_with("file:") {
        reference.to_owned()
    } else {
        "<literal>".into()
    }
}

/// A secret's bytes: `env:NAME`, `file:/path` (a trailing newline
/// dropped) or the text itself.
fn resolve(reference: &str) -> Result<Vec<u8>, Refused> {
    let secret = if let Some(var) = reference.strip_prefix("env:") {
        match std::env::var_os(var) {
            Some(v) => v.into_encoded_bytes(),
            None => return Err(format!("the environment variable {var} is not set")),
        }
    } else if let Some(path) = reference.strip_prefix("file:") {
        let mut bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        bytes
    } else {
        reference.as_bytes().to_vec()
    };
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(secret)
}
