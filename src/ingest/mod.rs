//! From a parsed request to the fields of an event and the members of its
//! `data`: route (path, query, body) → decode (query, form, JSON) → merge.
//!
//! [`Ingest`] is one core's reused scratch. [`Ingest::prepare`] decodes and
//! validates one request and returns [`Fields`], small values that point
//! into the request buffer or the scratch; [`Ingest::write_data`] then
//! writes `data` straight into the envelope buffer.

pub mod charset;
pub mod form;
pub mod json;
pub mod layout;
pub mod merge;
pub mod route;

use std::ops::Range;

use crate::http::media::{self, Media};
use crate::http::request::{at, trim, Request};
use crate::jsonw::member;
use crate::reject::Refusal;
use charset::{first_non_blank, transcode};
use form::Params;
use json::{Field, Invalid, JsonBody, Shape};
use merge::Grouper;

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
    /// Decodes and validates a request whose path names a service, its
    /// uid cookie named `uid`.
    pub fn prepare(&mut self, req: &Request<'_>, target: route::Target) -> Result<Fields, Refusal> {
        self.prepare_with(req, target, b"uid")
    }

    /// [`Self::prepare`] with the uid read from the cookie named `cookie`.
    pub fn prepare_with(
        &mut self,
        req: &Request<'_>,
        target: route::Target,
        cookie: &[u8],
    ) -> Result<Fields, Refusal> {
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
                .ok_or(Refusal::MissingName)?,
        };
        if !route::valid_name(self.bytes(req, &name)) {
            return Err(Refusal::InvalidName);
        }
        let project_id = match target.project_id {
            Some(span) => Some(Text::Request(span)),
            None => self.find(query_len, "projectId", &body, |j| &j.project_id)?,
        };
        let project_id = match project_id {
            None => 0,
            Some(t) => {
                route::parse_project_id(self.bytes(req, &t)).ok_or(Refusal::InvalidProjectId)?
            }
        };
        let uid = self.uid(req, query_len, &body, cookie);
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

    /// The first query parameter `name`, decoded, of the request
    /// [`Self::prepare`] last read; else the first of its form body.
    pub fn param(&self, fields: &Fields, name: &str) -> Option<&[u8]> {
        let params = &self.params;
        let in_body = match fields.body {
            Body::Form => params.list.len(),
            _ => fields.query_len,
        };
        (params.first(0..fields.query_len, name))
            .or_else(|| params.first(fields.query_len..in_body, name))
            .map(|r| params.text(&r).as_bytes())
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
        let media = content_type.map(media::media_type);
        let json = match media {
            Some(Media::Json) => true,
            Some(Media::Form) => false,
            Some(Media::Text) | None => matches!(first, Some(b'{') | Some(b'[')),
            Some(Media::Other) => return Err(Refusal::UnsupportedType),
        };
        // A body of only blanks (a sender's trailing newline), with or
        // without a byte-order mark, adds nothing, whatever its type says.
        if first.is_none() {
            return Ok(Body::None);
        }
        if !json {
            // `curl -d '{"a":1}'` labels JSON as a form (curl's default
            // type): a form body that is one whole JSON object or array is
            // taken as JSON. Only a body that starts with `{` or `[` is
            // tried, so real forms are read once.
            if media == Some(Media::Form) && utf16.is_none() && matches!(first, Some(b'{' | b'[')) {
                match self.json.parse(text) {
                    Ok(Shape::Object) => return Ok(Body::JsonObject),
                    Ok(Shape::Other) => return Ok(Body::JsonOther(self.json.trimmed())),
                    Err(_) => {}
                }
            }
            self.params.parse(text);
            return Ok(Body::Form);
        }
        let enc = match (utf16, content_type.and_then(media::charset)) {
            (Some(enc), _) => Some(enc),
            (None, Some(label)) => {
                Some(encoding_rs::Encoding::for_label(label).ok_or(Refusal::UnsupportedCharset)?)
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
            Err(e) => Err(Refusal::InvalidJson {
                at: e.at,
                why: e.why,
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
                Field::Invalid if key == "name" => return Err(Refusal::InvalidName),
                Field::Invalid => return Err(Refusal::InvalidProjectId),
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
                Refusal::BracketedName
            } else {
                Refusal::BracketedProjectId
            });
        }
        Ok(None)
    }

    /// The first of query `uid`, body `uid`, cookie `uid` that looks like
    /// an id (of a repeated `uid`, the first value that does).
    fn uid(&self, req: &Request<'_>, query_len: usize, body: &Body, cookie: &[u8]) -> Option<Text> {
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
                    let value = pair.strip_prefix(cookie)?.strip_prefix(b"=")?;
                    let start = (value.as_ptr() as usize - base) as u32;
                    Some(Text::Request(start..start + value.len() as u32)).filter(valid)
                })
            })
    }
}
