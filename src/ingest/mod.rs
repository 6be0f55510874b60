//! From a parsed request to the fields of an event and the members of its
//! `data`: route (path, query, body) → decode (query, form, JSON) → merge.
//!
//! [`Ingest`] is one core's reused scratch. [`Ingest::prepare`] decodes and
//! validates one request and returns [`Fields`], small values that point
//! into the request buffer or the scratch; [`Ingest::write_data`] then
//! writes `data` straight into the envelope buffer.

pub mod data;
pub mod form;
pub mod json;
pub mod layout;
pub mod route;

use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;

use crate::envelope::{member, Transport};
use crate::http::request::{at, trim, Head};
use crate::http::Status;
use data::Grouper;
use form::Params;
use json::{Field, Invalid, JsonBody, Shape};

/// Why a well-formed HTTP request is not accepted as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub code: &'static str,
    pub message: &'static str,
    /// For `invalid_json`: where simd-json stopped.
    pub at: Option<usize>,
}

impl Refusal {
    const fn new(status: Status, code: &'static str, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            at: None,
        }
    }
}

pub const MISSING_SERVICE: Refusal = Refusal::new(
    Status::BadRequest,
    "missing_service",
    "no service in the path: send events to /<service>/<name>/<projectId>",
);
pub const INVALID_SERVICE: Refusal = Refusal::new(
    Status::BadRequest,
    "invalid_service",
    "the service (first path segment) must be 1-64 characters of A-Z a-z 0-9 _ -",
);
pub const MISSING_NAME: Refusal = Refusal::new(
    Status::BadRequest,
    "missing_name",
    "no event name: put it in the path (/<service>/<name>), the query (?name=) or the body (name)",
);
pub const INVALID_NAME: Refusal = Refusal::new(
    Status::BadRequest,
    "invalid_name",
    "the event name must be 1-64 characters of A-Z a-z 0-9 _ -",
);
pub const BRACKETED_NAME: Refusal = Refusal::new(
    Status::BadRequest,
    "invalid_name",
    "the event name must be one plain value (name=lead), not name[]= or name[…]=",
);
pub const BRACKETED_PROJECT_ID: Refusal = Refusal::new(
    Status::BadRequest,
    "invalid_project_id",
    "projectId must be one plain unsigned integer (projectId=7), not projectId[]= or projectId[…]=",
);
pub const INVALID_PROJECT_ID: Refusal = Refusal::new(
    Status::BadRequest,
    "invalid_project_id",
    "projectId must be an unsigned integer (0 to 18446744073709551615)",
);
pub const INVALID_JSON: Refusal = Refusal::new(
    Status::BadRequest,
    "invalid_json",
    "the body is not valid UTF-8 JSON; fix it or send it as application/x-www-form-urlencoded",
);
pub const UNSUPPORTED_CHARSET: Refusal = Refusal::new(
    Status::UnsupportedMediaType,
    "unsupported_charset",
    "the Content-Type's charset is not one hookwire knows (the WHATWG Encoding \
     Standard's labels: utf-8, windows-1251, koi8-r…); send UTF-8 or name a known charset",
);
const NOT_IN_CHARSET: &str = "the body has bytes its declared charset does not define; \
     send it in the charset the Content-Type names (or as UTF-8)";
pub const UNSUPPORTED_TYPE: Refusal = Refusal::new(
    Status::UnsupportedMediaType,
    "unsupported_content_type",
    "send application/json, application/x-www-form-urlencoded or text/plain",
);
pub const UNSUPPORTED_ENCODING: Refusal = Refusal::new(
    Status::UnsupportedMediaType,
    "unsupported_content_encoding",
    "compressed bodies are not accepted; send the body without Content-Encoding",
);

/// The parts of one request the ingest step needs.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request head's bytes (spans in `head` index into it).
    pub buf: &'a [u8],
    pub head: &'a Head,
    pub body: &'a [u8],
    /// The TCP peer.
    pub peer: IpAddr,
}

/// Where a piece of text lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Text {
    Request(Range<u32>),
    Params(Range<u32>),
    Json(Range<u32>),
}

/// The validated routing fields of one event.
#[derive(Debug, Clone)]
pub struct Fields {
    pub service: Text,
    pub name: Text,
    pub project_id: u64,
    /// A sender's uid that matched `^[0-9]{10,22}$`.
    pub uid: Option<Text>,
    body: Body,
    /// Number of query parameters (they come first in `Params::list`).
    query_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    None,
    Form,
    JsonObject,
    JsonOther(Range<usize>),
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One core's reused decoding scratch.
#[derive(Debug, Default)]
pub struct Ingest {
    params: Params,
    grouper: Grouper,
    json: JsonBody,
    /// This request's JSON body was decoded from its charset into
    /// `transcoded`, which its spans then index (else the body past any
    /// byte-order mark).
    is_transcoded: bool,
    transcoded: Vec<u8>,
}

impl Ingest {
    /// Decodes and validates a request whose path names a service.
    pub fn prepare(&mut self, req: &Request<'_>, target: route::Target) -> Result<Fields, Refusal> {
        self.params.clear();
        if let Some(q) = &req.head.query {
            self.params.parse(at(req.buf, q));
        }
        let query_len = self.params.list.len();
        let body = self.decode_body(req)?;

        let name = match target.name {
            Some(span) => Text::Request(span),
            None => self
                .find(query_len, "name", &body, |j| &j.name)?
                .ok_or(MISSING_NAME)?,
        };
        if !route::valid_name(self.bytes(req, &name)) {
            return Err(INVALID_NAME);
        }
        let project_id = match target.project_id {
            Some(span) => Some(Text::Request(span)),
            None => self.find(query_len, "projectId", &body, |j| &j.project_id)?,
        };
        let project_id = match project_id {
            None => 0,
            Some(t) => route::parse_project_id(self.bytes(req, &t)).ok_or(INVALID_PROJECT_ID)?,
        };
        let uid = self.uid(req, query_len, &body);
        self.grouper.query.build(&self.params, 0..query_len);
        if body == Body::Form {
            self.grouper
                .body
                .build(&self.params, query_len..self.params.list.len());
        }
        Ok(Fields {
            service: Text::Request(target.service),
            name,
            project_id,
            uid,
            body,
            query_len,
        })
    }

    /// The bytes of a piece of text: from the request (a path segment or
    /// a cookie value, in the sender's bytes: validate before use), or
    /// decoded query, form or JSON text (UTF-8).
    pub fn bytes<'s>(&'s self, req: &Request<'s>, t: &Text) -> &'s [u8] {
        match t {
            Text::Request(r) => at(req.buf, r),
            Text::Params(r) => self.params.text(r).as_bytes(),
            Text::Json(r) => self.json.text(r).as_bytes(),
        }
    }

    /// Writes the members of `data`: the body's (those the query does not
    /// override), then the query's.
    pub fn write_data(&mut self, out: &mut Vec<u8>, req: &Request<'_>, fields: &Fields) {
        let Self {
            params,
            grouper,
            json,
            is_transcoded,
            transcoded,
        } = self;
        // What the JSON spans index (as `decode_body` parsed it).
        let doc = match is_transcoded {
            true => &transcoded[..],
            false => req.body.strip_prefix(BOM).unwrap_or(req.body),
        };
        let mut first = true;
        let in_query = |k: &str| fields.query_len > 0 && grouper.query.contains(params, k);
        match &fields.body {
            Body::None => {}
            Body::Form => {
                // `contains` looks at the query's sort, `write` at the body's.
                let query = std::mem::take(&mut grouper.query);
                let overridden = (fields.query_len > 0).then_some(&query);
                grouper.write(out, params, true, &mut first, overridden);
                grouper.query = query;
            }
            Body::JsonObject => {
                for m in &json.members {
                    let key = json.text(&m.key);
                    // A key written `a[b]` counts as under `a`, as it does
                    // in a form: the query's `a` overrides it (and a query
                    // that keeps its own `a[b]` entries cannot then repeat
                    // the member name).
                    let under = |p: usize| p > 0 && in_query(&key[..p]);
                    if fields.query_len > 0
                        && (in_query(key)
                            || memchr::memchr(b'[', key.as_bytes()).is_some_and(under))
                    {
                        continue;
                    }
                    member(out, &mut first, key);
                    let value = m.value.start as usize..m.value.end as usize;
                    if m.compact {
                        out.extend_from_slice(&doc[value]);
                    } else {
                        json.write_minified(out, doc, value);
                    }
                }
            }
            Body::JsonOther(span) => {
                if !in_query("body") {
                    member(out, &mut first, "body");
                    json.write_minified(out, doc, span.clone());
                }
            }
        }
        grouper.write(out, params, false, &mut first, None);
    }

    fn decode_body(&mut self, req: &Request<'_>) -> Result<Body, Refusal> {
        // Nothing of a previous request's JSON body may carry over.
        self.is_transcoded = false;
        if self.transcoded.capacity() > 1 << 20 {
            // One large transcoded body does not pin megabytes per core.
            self.transcoded = Vec::new();
        }
        if req.body.is_empty() {
            return Ok(Body::None);
        }
        if let Some(enc) = &req.head.content_encoding {
            if !at(req.buf, enc).eq_ignore_ascii_case(b"identity") {
                return Err(UNSUPPORTED_ENCODING);
            }
        }
        let content_type = (req.head.content_type.as_ref())
            .map(|ct| at(req.buf, ct))
            // An empty `Content-Type:` says no more than a missing one.
            .filter(|ct| !trim(ct).is_empty());
        // The body past a UTF-8 byte-order mark (RFC 8259 lets a JSON parser
        // ignore one; a form body gets no member named after it either).
        let text = req.body.strip_prefix(BOM).unwrap_or(req.body);
        // A UTF-16 byte-order mark says the body's charset, whatever the
        // label says, as browsers decode.
        let utf16 = encoding_rs::Encoding::for_bom(req.body)
            .map(|(enc, _)| enc)
            .filter(|&enc| enc != encoding_rs::UTF_8);
        let first = first_non_blank(text, utf16);
        let json = match content_type.map(media_type) {
            Some(Media::Json) => true,
            Some(Media::Form) => false,
            Some(Media::Text) | None => matches!(first, Some(b'{') | Some(b'[')),
            Some(Media::Other) => return Err(UNSUPPORTED_TYPE),
        };
        // A body of only blanks (a sender's trailing newline), with or
        // without a byte-order mark, adds nothing, whatever its type says.
        if first.is_none() {
            return Ok(Body::None);
        }
        if !json {
            self.params.parse(text);
            return Ok(Body::Form);
        }
        let enc = match (utf16, content_type.and_then(charset)) {
            (Some(enc), _) => Some(enc),
            (None, Some(label)) => {
                Some(encoding_rs::Encoding::for_label(label).ok_or(UNSUPPORTED_CHARSET)?)
            }
            (None, None) => None,
        };
        let parsed = match enc {
            Some(enc) if enc != encoding_rs::UTF_8 => {
                self.is_transcoded = true;
                transcode(enc, req.body, &mut self.transcoded)?;
                self.json.parse(&self.transcoded)
            }
            // UTF-8, declared or not. A byte-order mark, which RFC 8259
            // lets a parser ignore, is skipped (offsets still count it).
            _ => self.json.parse(text).map_err(|e| Invalid {
                at: e.at + (req.body.len() - text.len()),
                ..e
            }),
        };
        match parsed {
            Ok(Shape::Object) => Ok(Body::JsonObject),
            Ok(Shape::Other) => Ok(Body::JsonOther(self.json.trimmed())),
            Err(e) => Err(Refusal {
                at: Some(e.at),
                message: e.why.unwrap_or(INVALID_JSON.message),
                ..INVALID_JSON
            }),
        }
    }

    /// A routing field from the query, else from the body.
    fn find(
        &self,
        query_len: usize,
        key: &str,
        body: &Body,
        json_field: impl Fn(&JsonBody) -> &Field,
    ) -> Result<Option<Text>, Refusal> {
        let params = &self.params;
        if let Some(p) = params.first(0..query_len, key) {
            return Ok(Some(Text::Params(p)));
        }
        let from_body = match body {
            Body::Form => params
                .first(query_len..params.list.len(), key)
                .map(Text::Params),
            Body::JsonObject => match json_field(&self.json) {
                Field::Absent => None,
                Field::Text(r) => Some(Text::Json(r.clone())),
                Field::Invalid if key == "name" => return Err(INVALID_NAME),
                Field::Invalid => return Err(INVALID_PROJECT_ID),
            },
            _ => None,
        };
        if from_body.is_some() {
            return Ok(from_body);
        }
        // `name[]=…` or `projectId[x]=…` with no plain one anywhere: a
        // routing field given as an array or object is refused, as in a
        // JSON body, rather than passed over (projectId would silently be
        // 0).
        if params.bracketed(0..params.list.len(), key) {
            return Err(if key == "name" {
                BRACKETED_NAME
            } else {
                BRACKETED_PROJECT_ID
            });
        }
        Ok(None)
    }

    /// The first of query `uid`, body `uid`, cookie `uid` that looks like
    /// an id (of a repeated `uid`, the first value that does).
    fn uid(&self, req: &Request<'_>, query_len: usize, body: &Body) -> Option<Text> {
        let params = &self.params;
        let valid = |t: &Text| route::valid_uid(self.bytes(req, t));
        let from_query = params
            .first_where(0..query_len, "uid", route::valid_uid)
            .map(Text::Params);
        let from_body = match body {
            Body::Form => params
                .first_where(query_len..params.list.len(), "uid", route::valid_uid)
                .map(Text::Params),
            Body::JsonObject => match &self.json.uid {
                Field::Text(r) => Some(Text::Json(r.clone())),
                _ => None,
            },
            _ => None,
        };
        from_query
            .filter(valid)
            .or_else(|| from_body.filter(valid))
            .or_else(|| {
                let base = req.buf.as_ptr() as usize;
                let mut pairs = req
                    .head
                    .cookies
                    .iter()
                    .flat_map(|c| at(req.buf, c).split(|&b| b == b';'));
                pairs.find_map(|pair| {
                    let pair = trim(pair);
                    let value = pair.strip_prefix(b"uid=")?;
                    let start = (value.as_ptr() as usize - base) as u32;
                    Some(Text::Request(start..start + value.len() as u32)).filter(valid)
                })
            })
    }
}

enum Media {
    Json,
    Form,
    Text,
    Other,
}

/// The body's first character that is not ASCII whitespace, if it is
/// ASCII (else 0xFF); `None` for a blank body. `utf16`: the UTF-16 byte
/// order its byte-order mark says (`Encoding::for_bom`), which it starts
/// with.
fn first_non_blank(body: &[u8], utf16: Option<&encoding_rs::Encoding>) -> Option<u8> {
    let Some(enc) = utf16 else {
        return body.iter().copied().find(|b| !b.is_ascii_whitespace());
    };
    let big_endian = enc == encoding_rs::UTF_16BE;
    body[2..].chunks(2).find_map(|unit| {
        let (hi, lo) = match *unit {
            [a, b] if big_endian => (a, b),
            [a, b] => (b, a),
            _ => return Some(0xFF), // half a code unit: not blank
        };
        match (hi, lo) {
            (0, c) if c.is_ascii_whitespace() => None,
            (0, c) if c.is_ascii() => Some(c),
            _ => Some(0xFF),
        }
    })
}

/// The `charset` parameter of a Content-Type, unquoted.
fn charset(ct: &[u8]) -> Option<&[u8]> {
    ct.split(|&b| b == b';').skip(1).find_map(|param| {
        let param = trim(param);
        let eq = memchr::memchr(b'=', param)?;
        let (name, value) = (trim(&param[..eq]), trim(&param[eq + 1..]));
        if !name.eq_ignore_ascii_case(b"charset") {
            return None;
        }
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}

/// Decodes `body` from `enc` into `out` (reused). A byte sequence the
/// charset does not define is refused, not replaced: nothing the sender
/// sent is silently changed.
fn transcode(
    enc: &'static encoding_rs::Encoding,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Refusal> {
    // With BOM sniffing, as browsers decode: a UTF-16 body's BOM says its
    // byte order, and a UTF-8 BOM overrides a wrong label.
    let mut decoder = enc.new_decoder();
    let Some(room) = decoder.max_utf8_buffer_length_without_replacement(body.len()) else {
        return Err(Refusal {
            message: "the body is too large to decode from its charset; send it as UTF-8",
            ..INVALID_JSON
        });
    };
    out.clear();
    out.resize(room, 0);
    let (result, read, written) = decoder.decode_to_utf8_without_replacement(body, out, true);
    out.truncate(written);
    match result {
        encoding_rs::DecoderResult::InputEmpty => Ok(()),
        // `read` counts the bad bytes and any read past them.
        encoding_rs::DecoderResult::Malformed(bad, past) => Err(Refusal {
            at: Some(read - usize::from(bad) - usize::from(past)),
            message: NOT_IN_CHARSET,
            ..INVALID_JSON
        }),
        encoding_rs::DecoderResult::OutputFull => {
            unreachable!("room for the worst case was made")
        }
    }
}

fn media_type(ct: &[u8]) -> Media {
    let essence = trim(ct.split(|&b| b == b';').next().unwrap_or(b""));
    let (ty, sub) = match memchr::memchr(b'/', essence) {
        Some(p) => (&essence[..p], &essence[p + 1..]),
        None => return Media::Other,
    };
    let sub_is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    let plus_json = sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json");
    if plus_json || (ty.eq_ignore_ascii_case(b"application") && sub_is(b"json")) {
        Media::Json
    } else if ty.eq_ignore_ascii_case(b"application") && sub_is(b"x-www-form-urlencoded") {
        Media::Form
    } else if ty.eq_ignore_ascii_case(b"text") && sub_is(b"plain") {
        Media::Text
    } else {
        Media::Other
    }
}

/// An address as proxies write it in `X-Real-IP` and `X-Forwarded-For`:
/// `1.2.3.4`, `2001:db8::1`, and with a port, `1.2.3.4:5678` or
/// `[2001:db8::1]:5678`; IPv4-mapped IPv6 as IPv4.
fn hop_ip(b: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(trim(b)).ok()?;
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => text.parse::<std::net::SocketAddr>().ok()?.ip(),
    };
    Some(ip.to_canonical())
}

/// The `td` of the envelope. `X-Real-IP` and `X-Forwarded-For` count only
/// when the TCP peer is a trusted proxy.
pub fn transport<'a>(req: &Request<'a>, trusted: &[IpNet]) -> Transport<'a> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = req.peer.to_canonical();
    let via_proxy = is_trusted(&peer);
    let header = |s: &Option<_>| s.as_ref().map(|s| at(req.buf, s));
    let mut ip = peer;
    let mut host = header(&req.head.host);
    if via_proxy {
        if let Some(real) = header(&req.head.real_ip).and_then(hop_ip) {
            ip = real;
        } else if let Some(xff) = header(&req.head.forwarded_for) {
            // From the right: the first hop that is not a trusted proxy is
            // the client; when every hop is trusted, the first one. A hop
            // that is not an address (`unknown`, garbage) ends the walk at
            // the nearest hop read so far: what lies left of it was written
            // by no proxy we trust, so it cannot name the client.
            for hop in xff.rsplit(|&b| b == b',') {
                if trim(hop).is_empty() {
                    continue; // `a, , b` or a trailing comma: formatting
                }
                let Some(hop) = hop_ip(hop) else { break };
                ip = hop;
                if !is_trusted(&hop) {
                    break;
                }
            }
        }
        if let Some(fh) = header(&req.head.forwarded_host) {
            host = Some(fh);
        }
    }
    Transport {
        ip: Some(ip.to_canonical()),
        ua: header(&req.head.user_agent),
        referer: header(&req.head.referer),
        host,
    }
}

#[cfg(test)]
mod tests {
    use super::first_non_blank;
    use encoding_rs::{UTF_16BE as BE, UTF_16LE as LE};

    #[test]
    fn first_non_blank_reads_utf16_in_its_byte_order() {
        assert_eq!(first_non_blank(b" \r\n{", None), Some(b'{'));
        assert_eq!(first_non_blank(b" \t ", None), None);
        assert_eq!(first_non_blank(b"\xfe\xff\x00 \x00[", Some(BE)), Some(b'['));
        assert_eq!(first_non_blank(b"\xff\xfe \x00{\x00", Some(LE)), Some(b'{'));
        assert_eq!(first_non_blank(b"\xff\xfe \x00\n\x00", Some(LE)), None);
        assert_eq!(first_non_blank(b"\xfe\xff\x04\x1f", Some(BE)), Some(0xFF));
        assert_eq!(first_non_blank(b"\xfe\xff\x00", Some(BE)), Some(0xFF));
    }
}
