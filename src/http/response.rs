//! Responses, written into the connection's output buffer so that all
//! answers to one batch of pipelined requests leave in a single write.

use super::Status;
use crate::jsonw::{write_str, write_u64};

/// The `Date` header value, formatted once per second per core.
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    value: [u8; 29],
}

impl Default for DateCache {
    /// The Unix epoch until the first [`DateCache::update`] (the handler
    /// updates it before every response).
    fn default() -> Self {
        Self {
            secs: 0,
            value: *b"Thu, 01 Jan 1970 00:00:00 GMT",
        }
    }
}

impl DateCache {
    pub fn update(&mut self, now_ms: u64) {
        let secs = now_ms / 1000;
        if secs != self.secs {
            use std::io::Write;
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let mut slot = &mut self.value[..];
            // An IMF-fixdate is always 29 bytes.
            let _ = write!(slot, "{}", httpdate::HttpDate::from(t));
            self.secs = secs;
        }
    }
    pub fn get(&self) -> &[u8] {
        &self.value
    }
}

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// HTTP/1.1 keep-alive: the default, no header needed.
    Default,
    /// An HTTP/1.0 client that asked for keep-alive.
    KeepAlive,
    /// The connection closes after this response.
    Close,
}

/// The 43-byte transparent 1×1 GIF89a every pixel is answered with.
pub const GIF: [u8; 43] = *b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\
\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

/// The CORS headers of a request without an origin list: any origin, no
/// credentials.
pub const ANY_ORIGIN: &[u8] = b"Access-Control-Allow-Origin: *\r\n";

/// What every response to one request starts with: the Date, and the CORS
/// headers ([`ANY_ORIGIN`] unless the request's
/// source lists origins).
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub date: &'a DateCache,
    pub cors: &'a [u8],
}

/// Writes a complete response. For a HEAD request pass `send_body = false`:
/// the headers still describe the body.
pub fn write(
    out: &mut Vec<u8>,
    common: Common<'_>,
    status: Status,
    persist: Persist,
    extra_headers: &[u8],
    body: &[u8],
    send_body: bool,
) {
    head(out, common, status, persist, extra_headers);
    if status != Status::NoContent {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        write_u64(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if send_body {
        out.extend_from_slice(body);
    }
}

/// `Content-Type` of a challenge's echo or a `text:` reply, with the
/// header that keeps browsers from reading it as anything else.
pub const TEXT: &[u8] = b"text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff";

/// A complete response whose body is of type `content_type` ([`TEXT`], or
/// `application/json`).
pub fn write_as(
    out: &mut Vec<u8>,
    common: Common<'_>,
    status: Status,
    persist: Persist,
    content_type: &[u8],
    extra_headers: &[u8],
    body: &[u8],
) {
    head(out, common, status, persist, extra_headers);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nContent-Length: ");
    write_u64(out, body.len() as u64);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// An image pixel's answer: always a 200 with the transparent GIF, so a
/// page never shows a broken image (`extra` carries a refusal's
/// `X-Hookwire-Error`, or the uid's `Set-Cookie`).
pub fn gif(out: &mut Vec<u8>, common: Common<'_>, persist: Persist, extra: &[u8], send_body: bool) {
    head(out, common, Status::Ok, persist, extra);
    out.extend_from_slice(
        b"Cache-Control: no-cache, no-store, must-revalidate\r\nContent-Type: image/gif\r\nContent-Length: 43\r\n\r\n",
    );
    if send_body {
        out.extend_from_slice(&GIF);
    }
}

/// Whether a response written here is a pixel's (a 200 that waits for the
/// spool and must stay an image if the write fails).
pub fn is_gif(response: &[u8]) -> bool {
    let head = memchr::memmem::find(response, b"\r\n\r\n").map_or(response, |e| &response[..e]);
    memchr::memmem::find(head, b"\r\nContent-Type: image/gif\r\n").is_some()
}

/// A click's `302 Found`; `extra` holds the `Location` (and a
/// `Set-Cookie`).
pub fn redirect(out: &mut Vec<u8>, common: Common<'_>, persist: Persist, extra: &[u8]) {
    head(out, common, Status::Found, persist, extra);
    out.extend_from_slice(b"Cache-Control: no-store\r\nContent-Length: 0\r\n\r\n");
}

/// The status line and the headers before the body's.
#[inline(always)]
fn head(out: &mut Vec<u8>, common: Common<'_>, status: Status, persist: Persist, extra: &[u8]) {
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(common.date.get());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(common.cors);
    out.extend_from_slice(extra);
    match persist {
        Persist::Default => {}
        Persist::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persist::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
}

/// `{"error":"<code>","message":"<message>[ (at byte <at>)]"}`
pub fn error_body(out: &mut Vec<u8>, code: &str, message: &str, at: Option<usize>) {
    out.extend_from_slice(b"{\"error\":");
    write_str(out, code);
    out.extend_from_slice(b",\"message\":");
    write_str(out, message);
    if let Some(at) = at {
        out.pop();
        out.extend_from_slice(b" (at byte ");
        write_u64(out, at as u64);
        out.extend_from_slice(b")\"");
    }
    out.push(b'}');
}

/// `{"key":"in.gen.<service>.<name>","id":"<id>"}`
pub fn accepted_body(out: &mut Vec<u8>, key: &[u8], id: &str) {
    out.extend_from_slice(b"{\"key\":\"");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\",\"id\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_imf_fixdate() {
        let mut d = DateCache::default();
        d.update(1_540_771_658_623);
        assert_eq!(d.get(), b"Mon, 29 Oct 2018 00:07:38 GMT");
    }

    #[test]
    fn gif_is_a_1x1_gif89a() {
        assert_eq!(GIF.len(), 43);
        assert_eq!(&GIF[..6], b"GIF89a");
        assert_eq!(&GIF[6..10], &[1, 0, 1, 0]);
        assert_eq!(GIF[42], b';');
    }

    #[test]
    fn response_shape() {
        let mut d = DateCache::default();
        d.update(0);
        let mut out = Vec::new();
        let common = Common {
            date: &d,
            cors: ANY_ORIGIN,
        };
        write(
            &mut out,
            common,
            Status::Ok,
            Persist::Close,
            b"",
            b"{}",
            true,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        assert!(!is_gif(&out));
        out.clear();
        gif(
            &mut out,
            common,
            Persist::Default,
            b"X-Hookwire-Error: no_route\r\n",
            true,
        );
        assert!(out.ends_with(&GIF));
        assert!(is_gif(&out));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("\r\nX-Hookwire-Error: no_route\r\nCache-Control: no-cache, no-store, must-revalidate\r\nContent-Type: image/gif\r\nContent-Length: 43\r\n\r\n"), "{text}");
    }
}
