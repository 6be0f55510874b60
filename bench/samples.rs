//! The realistic requests the benches run on, kept in `bench/samples/`:
//!
//! - `seed_page.http`: the four requests of the original Rockstat page's
//!   curl examples (README "A five-minute tour"), pipelined in one file;
//!   each becomes its own sample (`seed_get_path`, `seed_get_query`,
//!   `seed_json`, `seed_form`).
//! - `affise_get.http`: an Affise-style GET postback with 15 query
//!   parameters (percent-encoded Cyrillic, `+`, an empty value).
//! - `amocrm_form.http`: a 1 KiB AmoCRM-style form POST (`leads[status][0][id]`…).
//! - `webhook_json.http`: a 4 KiB nested JSON webhook (AppsFlyer-like).
//! - `webhook_json_16k.http`: a 16 KiB AmoCRM-style JSON webhook (19 leads
//!   with tags and custom fields, Cyrillic text, escaped quotes).
//!
//! Every sample is one complete request, so one benchmark iteration is one
//! event and criterion's time per iteration is the time per event.

#![allow(dead_code)]

use hookwire::http::request::{self, Framing, Head};

const SEED: &[u8] = include_bytes!("samples/seed_page.http");
const AFFISE_GET: &[u8] = include_bytes!("samples/affise_get.http");
const AMOCRM_FORM: &[u8] = include_bytes!("samples/amocrm_form.http");
const NESTED_JSON: &[u8] = include_bytes!("samples/webhook_json.http");
const LEADS_JSON: &[u8] = include_bytes!("samples/webhook_json_16k.http");

/// Largest head the samples are parsed with (hookwire's default `--max-header`).
pub const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Form,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub name: &'static str,
    /// The whole request: head and body.
    pub raw: &'static [u8],
    pub body: Body,
}

impl Sample {
    pub fn head(&self) -> Head {
        request::parse(self.raw, MAX_HEAD)
            .expect("sample parses")
            .expect("sample is complete")
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&'static [u8]> {
        self.head().query.as_ref().map(|q| request::at(self.raw, q))
    }

    /// The body bytes (after the blank line).
    pub fn body_bytes(&self) -> &'static [u8] {
        &self.raw[self.head().len..]
    }
}

/// Splits pipelined requests (Content-Length framing only).
pub fn split(mut buf: &'static [u8]) -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let head = request::parse(buf, MAX_HEAD).unwrap().unwrap();
        let body = match head.framing() {
            Framing::Length(n) => n as usize,
            Framing::None => 0,
            Framing::Chunked => panic!("samples use Content-Length"),
        };
        let (one, rest) = buf.split_at(head.len + body);
        out.push(one);
        buf = rest;
    }
    out
}

/// Every sample, one request each.
pub fn all() -> Vec<Sample> {
    let seed = split(SEED);
    assert_eq!(
        seed.len(),
        4,
        "seed_page.http holds the page's four requests"
    );
    vec![
        Sample {
            name: "seed_get_path",
            raw: seed[0],
            body: Body::None,
        },
        Sample {
            name: "seed_get_query",
            raw: seed[1],
            body: Body::None,
        },
        Sample {
            name: "seed_json",
            raw: seed[2],
            body: Body::Json,
        },
        Sample {
            name: "seed_form",
            raw: seed[3],
            body: Body::Form,
        },
        Sample {
            name: "affise_get",
            raw: AFFISE_GET,
            body: Body::None,
        },
        Sample {
            name: "amocrm_form_1k",
            raw: AMOCRM_FORM,
            body: Body::Form,
        },
        Sample {
            name: "webhook_json_4k",
            raw: NESTED_JSON,
            body: Body::Json,
        },
        Sample {
            name: "webhook_json_16k",
            raw: LEADS_JSON,
            body: Body::Json,
        },
    ]
}
