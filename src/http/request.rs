//! Sans-IO request heads: httparse over the connection's buffer, with the
//! headers hookwire needs kept as offsets into that buffer (the buffer is
//! later rewritten in place when a chunked body is decoded, so nothing may
//! borrow from it across that step).

use std::net::IpAddr;
use std::ops::Range;

use super::Error;

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Head,
    Options,
    Other,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// A span of the request buffer (relative to the request's first byte).
pub type Span = Range<u32>;

/// One parsed request head.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub method: Option<Method>,
    /// HTTP/1.x minor version.
    pub minor: u8,
    /// Bytes of the request line and headers, including the blank line.
    pub len: usize,
    pub path: Span,
    pub query: Option<Span>,
    pub framing: Option<Framing>,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub content_type: Option<Span>,
    pub content_encoding: Option<Span>,
    /// More than one `Content-Encoding` header: codings stacked.
    pub content_encodings_repeated: bool,
    pub user_agent: Option<Span>,
    pub referer: Option<Span>,
    pub host: Option<Span>,
    pub forwarded_host: Option<Span>,
    pub real_ip: Option<Span>,
    pub forwarded_for: Option<Span>,
    /// Every RFC 7239 `Forwarded` header, in order.
    pub forwarded: smallvec::SmallVec<[Span; 2]>,
    /// Every `Cookie` header, in order (HTTP/2-to-1.1 proxies may split
    /// one into several).
    pub cookies: smallvec::SmallVec<[Span; 2]>,
    pub request_headers: Option<Span>,
    /// `Origin`: a browser's request from a page.
    pub origin: Option<Span>,
}

impl Head {
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }
    pub fn framing(&self) -> Framing {
        self.framing.unwrap_or(Framing::None)
    }
}

/// One complete request: its head and its (decoded) body.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The request head's bytes (spans in `head` index into it).
    pub buf: &'a [u8],
    pub head: &'a Head,
    pub body: &'a [u8],
    /// The TCP peer.
    pub peer: IpAddr,
    /// The connection's client certificate (HTTPS with a `client-ca`).
    pub client_cert: crate::tls::ClientCert,
}

/// Returns the bytes of a span.
pub fn at<'a>(buf: &'a [u8], span: &Span) -> &'a [u8] {
    &buf[span.start as usize..span.end as usize]
}

/// The value of the first header named `name` (lower-case) in the head
/// `head`, trimmed. A re-scan of the head's bytes for the headers beyond
/// [`Head`]'s, made only for a request whose source asks for them: the
/// parse itself keeps no more spans than every request needs.
pub fn header<'a>(head: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    // The request line, then one header a line (httparse checked the form).
    let mut rest = &head[memchr::memchr(b'\n', head)? + 1..];
    while let Some(end) = memchr::memchr(b'\n', rest) {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
        {
            return Some(trim(&line[name.len() + 1..]));
        }
    }
    None
}

/// Parses a request head at the start of `buf`. `Ok(None)`: not all of it
/// has arrived yet (and it is still within `max_head` bytes).
pub fn parse(buf: &[u8], max_head: usize) -> Result<Option<Head>, Error> {
    match parse_head(buf, max_head) {
        Err(Error::Malformed) => {
            // httparse refuses a request target that is not UTF-8, but
            // senders do put raw legacy-charset bytes in query strings. Parse
            // a copy with those bytes masked: the spans are the same, and
            // they point at the sender's original bytes in `buf`, which the
            // query decoder keeps losslessly. (A rare path: the copy is fine.)
            let line = memchr::memchr(b'\n', buf).unwrap_or(buf.len());
            let target = memchr::memchr(b' ', &buf[..line]).map_or(line, |p| p + 1);
            if !buf[target..line].iter().any(|&b| b >= 0x80) {
                return Err(Error::Malformed);
            }
            let mut masked = buf[..buf.len().min(max_head + 1)].to_vec();
            let end = line.min(masked.len());
            for b in &mut masked[target.min(end)..end] {
                if *b >= 0x80 {
                    *b = b'~';
                }
            }
            parse_head(&masked, max_head)
        }
        other => other,
    }
}

fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<Head>, Error> {
    // Left uninitialised: httparse fills what it parses, and zeroing 64
    // headers (2 KiB) per request cost more than parsing a typical head.
    let mut headers = [std::mem::MaybeUninit::<httparse::Header>::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_head {
                Err(Error::HeadTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(Error::Version),
        Err(_) => return Err(Error::Malformed),
    };
    if len > max_head {
        return Err(Error::HeadTooLarge);
    }
    let span = Spans(buf.as_ptr() as usize);
    let minor = req.version.unwrap_or(1);
    // A complete parse always has a target.
    let target = req.path.ok_or(Error::Malformed)?.as_bytes();
    let target = strip_authority(target);
    let (path, query) = match memchr::memchr(b'?', target) {
        Some(q) => (span.of(&target[..q]), Some(span.of(&target[q + 1..]))),
        None => (span.of(target), None),
    };
    let mut head = Head {
        method: Some(method(req.method.unwrap_or(""))),
        minor,
        len,
        path,
        query,
        keep_alive: minor >= 1,
        ..Head::default()
    };
    head.framing = Some(read_headers(&mut head, req.headers, span)?);
    Ok(Some(head))
}

/// Spans of slices of the buffer that starts at this address.
#[derive(Clone, Copy)]
struct Spans(usize);

impl Spans {
    #[inline(always)]
    fn of(self, s: &[u8]) -> Span {
        let start = (s.as_ptr() as usize - self.0) as u32;
        start..start + s.len() as u32
    }
}

fn method(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    }
}

/// Keeps the headers hookwire reads as spans of `head` and returns the
/// body's framing.
#[inline(always)]
fn read_headers(
    head: &mut Head,
    headers: &[httparse::Header<'_>],
    span: Spans,
) -> Result<Framing, Error> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in headers {
        let name = h.name.as_bytes();
        let value = trim(h.value);
        let lower = |n: &[u8]| name.eq_ignore_ascii_case(n);
        match name.len() {
            4 if lower(b"host") => head.host = Some(span.of(value)),
            6 if lower(b"cookie") => head.cookies.push(span.of(value)),
            6 if lower(b"origin") => head.origin = Some(span.of(value)),
            6 if lower(b"expect") => {
                head.expect_continue = value.eq_ignore_ascii_case(b"100-continue")
            }
            7 if lower(b"referer") => head.referer = Some(span.of(value)),
            9 if lower(b"x-real-ip") => head.real_ip = Some(span.of(value)),
            9 if lower(b"forwarded") => head.forwarded.push(span.of(value)),
            10 if lower(b"connection") => connection(head, value),
            10 if lower(b"user-agent") => head.user_agent = Some(span.of(value)),
            12 if lower(b"content-type") => head.content_type = Some(span.of(value)),
            14 if lower(b"content-length") => {
                let n = parse_length(value).ok_or(Error::BadLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(Error::BadLength);
                }
                length = Some(n);
            }
            15 if lower(b"x-forwarded-for") => head.forwarded_for = Some(span.of(value)),
            16 if lower(b"x-forwarded-host") => head.forwarded_host = Some(span.of(value)),
            16 if lower(b"content-encoding") => {
                head.content_encodings_repeated |= head.content_encoding.is_some();
                head.content_encoding = Some(span.of(value));
            }
            17 if lower(b"transfer-encoding") => {
                if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                    return Err(Error::TransferEncoding);
                }
                chunked = true;
            }
            30 if lower(b"access-control-request-headers") => {
                head.request_headers = Some(span.of(value))
            }
            _ => {}
        }
    }
    match (chunked, length) {
        (true, Some(_)) => Err(Error::Ambiguous),
        (true, None) => Ok(Framing::Chunked),
        (false, Some(0)) | (false, None) => Ok(Framing::None),
        (false, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// `Connection: close` / `keep-alive` tokens.
fn connection(head: &mut Head, value: &[u8]) {
    for token in value.split(|&b| b == b',') {
        let token = trim(token);
        if token.eq_ignore_ascii_case(b"close") {
            head.keep_alive = false;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            head.keep_alive = true;
        }
    }
}

/// `http://host/path?q` (absolute form, sent to proxies) → `/path?q`.
fn strip_authority(target: &[u8]) -> &[u8] {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &target[scheme.len()..];
            // No path (`http://host`): an empty one, taken from the
            // request itself (spans are offsets into the request buffer).
            let p = memchr::memchr2(b'/', b'?', rest).unwrap_or(rest.len());
            return &rest[p..];
        }
    }
    target
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

pub fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! cases {
        ($($name:ident: $input:expr => $check:expr;)*) => {$(
            #[test]
            fn $name() {
                let buf: &[u8] = $input;
                let result = parse(buf, 8192);
                let check: &dyn Fn(&[u8], Result<Option<Head>, Error>) = &$check;
                check(buf, result);
            }
        )*};
    }

    cases! {
        get_with_query: b"GET /calltrack/call/99?param=x HTTP/1.1\r\nHost: a\r\nUser-Agent: curl/7.60.0\r\n\r\n" => |b, r| {
            let h = r.unwrap().unwrap();
            assert_eq!(h.method(), Method::Get);
            assert_eq!(at(b, &h.path), b"/calltrack/call/99");
            assert_eq!(at(b, h.query.as_ref().unwrap()), b"param=x");
            assert_eq!(at(b, h.user_agent.as_ref().unwrap()), b"curl/7.60.0");
            assert!(h.keep_alive);
            assert_eq!(h.framing(), Framing::None);
            assert_eq!(h.len, b.len());
        };
        partial: b"GET / HTTP/1.1\r\nHost: a\r\n" => |_, r| assert!(r.unwrap().is_none());
        http10_closes_unless_asked: b"GET / HTTP/1.0\r\n\r\n" => |_, r| assert!(!r.unwrap().unwrap().keep_alive);
        http10_keep_alive: b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" => |_, r| assert!(r.unwrap().unwrap().keep_alive);
        connection_close: b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n" => |_, r| assert!(!r.unwrap().unwrap().keep_alive);
        header_names_any_case: b"POST /a HTTP/1.1\r\nCONTENT-LENGTH: 5\r\ncOnTeNt-TyPe: application/json\r\n\r\n" => |b, r| {
            let h = r.unwrap().unwrap();
            assert_eq!(h.framing(), Framing::Length(5));
            assert_eq!(at(b, h.content_type.as_ref().unwrap()), b"application/json");
        };
        chunked: b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" => |_, r| assert_eq!(r.unwrap().unwrap().framing(), Framing::Chunked);
        length_and_chunked_is_ambiguous: b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" => |_, r| assert_eq!(r.unwrap_err(), Error::Ambiguous);
        conflicting_lengths: b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" => |_, r| assert_eq!(r.unwrap_err(), Error::BadLength);
        same_length_twice_is_fine: b"POST /a HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n" => |_, r| assert_eq!(r.unwrap().unwrap().framing(), Framing::Length(3));
        signed_length: b"POST /a HTTP/1.1\r\nContent-Length: +3\r\n\r\n" => |_, r| assert_eq!(r.unwrap_err(), Error::BadLength);
        gzip_transfer_coding: b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" => |_, r| assert_eq!(r.unwrap_err(), Error::TransferEncoding);
        expect_continue: b"POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n" => |_, r| assert!(r.unwrap().unwrap().expect_continue);
        absolute_form: b"GET http://example.com/s/n?x=1 HTTP/1.1\r\n\r\n" => |b, r| {
            let h = r.unwrap().unwrap();
            assert_eq!(at(b, &h.path), b"/s/n");
            assert_eq!(at(b, h.query.as_ref().unwrap()), b"x=1");
        };
        absolute_form_query_only: b"GET http://example.com?x=1 HTTP/1.1\r\n\r\n" => |b, r| {
            let h = r.unwrap().unwrap();
            assert_eq!(at(b, &h.path), b"");
            assert_eq!(at(b, h.query.as_ref().unwrap()), b"x=1");
        };
        absolute_form_without_path: b"GET http://example.com HTTP/1.1\r\n\r\n" => |b, r| {
            let h = r.unwrap().unwrap();
            assert_eq!(at(b, &h.path), b"");
            assert!(h.query.is_none());
        };
        garbage: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" => |_, r| assert_eq!(r.unwrap_err(), Error::Malformed);
        bad_version: b"GET / HTTP/2.0\r\n\r\n" => |_, r| assert_eq!(r.unwrap_err(), Error::Version);
        unknown_method_parses: b"DELETE /a HTTP/1.1\r\n\r\n" => |_, r| assert_eq!(r.unwrap().unwrap().method(), Method::Other);
        raw_non_utf8_target: b"GET /s/n?city=\xcc\xee&x=1 HTTP/1.1\r\nHost: a\r\n\r\n" => |b, r| {
            let h = r.unwrap().unwrap();
            assert_eq!(at(b, h.query.as_ref().unwrap()), b"city=\xcc\xee&x=1");
            assert_eq!(at(b, h.host.as_ref().unwrap()), b"a");
        };
        raw_non_utf8_partial: b"GET /s/n?city=\xcc\xee" => |_, r| assert!(r.unwrap().is_none());
        raw_non_utf8_garbage_stays_malformed: b"\xcc\xee /s HTTP/1.1\r\n\r\n" => |_, r| assert_eq!(r.unwrap_err(), Error::Malformed);
    }

    #[test]
    fn headers_found_by_rescanning() {
        let head = b"POST /s HTTP/1.1\r\nHost: a\r\nX-GitHub-Event: push\r\nx-hub-signature-256:  sha256=ab \r\nX-GitHub-Event: second\r\n\r\n";
        assert_eq!(header(head, b"x-github-event"), Some(&b"push"[..]));
        assert_eq!(
            header(head, b"x-hub-signature-256"),
            Some(&b"sha256=ab"[..])
        );
        assert_eq!(header(head, b"x-github"), None);
        assert_eq!(header(head, b"post /s http/1.1"), None);
        assert_eq!(header(head, b"missing"), None);
    }

    #[test]
    fn head_limits() {
        let mut big = b"GET / HTTP/1.1\r\nX-A: ".to_vec();
        big.resize(10_000, b'a');
        assert_eq!(parse(&big, 8192).unwrap_err(), Error::HeadTooLarge);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many, 8192).unwrap_err(), Error::TooManyHeaders);
    }
}
