//! The envelope encoder: JSON written by hand into a reused buffer.
//!
//! Hand-written rather than serde: the envelope's field order is part of the
//! contract, its `data` is spliced from borrowed request bytes (decoded form
//! values, verbatim JSON member values) without building a value tree, and
//! the encoder must never allocate. Everything here is pure and infallible.

use std::net::IpAddr;

use super::RoutingKey;
use crate::http::client_ip::Client;
use crate::http::request::{at, header, Request};
use crate::jsonw::{write_lossless, write_str, write_u64};

/// Transport data: where the request came from. Absent headers are `None`
/// and are omitted from the envelope.
#[derive(Debug, Default, Clone, Copy)]
pub struct Transport<'a> {
    pub ip: Option<IpAddr>,
    pub ua: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    /// The sender's delivery id (a source's delivery header): `td.delivery`.
    pub delivery: Option<&'a [u8]>,
    /// Headers a source copies into `td.headers`.
    pub copied: Copied<'a>,
}

/// Request headers to copy into `td.headers`: names (lower-case) found in
/// the head's bytes as the envelope is written. Those the request does not
/// carry are left out; `td.headers` is absent when none is there.
#[derive(Debug, Default, Clone, Copy)]
pub struct Copied<'a> {
    pub head: &'a [u8],
    pub names: &'a [String],
}

impl<'a> Transport<'a> {
    /// The `td` of a request sent by `client`.
    pub fn of(req: &Request<'a>, client: Client<'a>) -> Self {
        let header = |s: &Option<_>| s.as_ref().map(|s| at(req.buf, s));
        Transport {
            ip: Some(client.ip),
            ua: header(&req.head.user_agent),
            referer: header(&req.head.referer),
            host: client.host,
            delivery: None,
            copied: Copied::default(),
        }
    }
}

/// How an event arrived: its envelope's `channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A webhook or postback (and a browser's `fetch` or `sendBeacon`).
    Http,
    /// An image pixel (`.gif`).
    Pixel,
    /// A tracked click, answered with a redirect.
    Redirect,
}

impl Channel {
    /// The quoted value and the comma after it.
    fn quoted(self) -> &'static [u8] {
        match self {
            Channel::Http => b"\"http\",",
            Channel::Pixel => b"\"pixel\",",
            Channel::Redirect => b"\"redirect\",",
        }
    }
}

/// The routing and identity fields of one event.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Holds the service and name too.
    pub key: &'a RoutingKey,
    pub channel: Channel,
    pub project_id: u64,
    pub uid: Uid<'a>,
    /// The id's and the time's decimal text: the id also goes into the
    /// 200's body, and the time is the same for every event of a
    /// millisecond ([`super::id::MsText`]), so each is formatted once.
    pub id: &'a str,
    pub time: &'a str,
}

/// A sender-supplied uid (already validated digits) or a generated one.
#[derive(Debug, Clone, Copy)]
pub enum Uid<'a> {
    Given(&'a str),
    Generated(u64),
}

/// Encodes one envelope into `out` (appending). `data` writes the members of
/// the `data` object (without braces).
pub fn encode(
    out: &mut Vec<u8>,
    head: &Head<'_>,
    td: &Transport<'_>,
    data: impl FnOnce(&mut Vec<u8>),
) {
    // service and name are validated to [A-Za-z0-9_-]: no escaping needed.
    out.extend_from_slice(b"{\"key\":\"");
    out.extend_from_slice(head.key.as_bytes());
    out.extend_from_slice(b"\",\"channel\":");
    out.extend_from_slice(head.channel.quoted());
    out.extend_from_slice(b"\"service\":\"");
    out.extend_from_slice(head.key.service().as_bytes());
    out.extend_from_slice(b"\",\"name\":\"");
    out.extend_from_slice(head.key.name().as_bytes());
    out.extend_from_slice(b"\",\"projectId\":");
    write_u64(out, head.project_id);
    out.extend_from_slice(b",\"uid\":\"");
    match head.uid {
        Uid::Given(digits) => out.extend_from_slice(digits.as_bytes()),
        Uid::Generated(id) => write_u64(out, id),
    }
    out.extend_from_slice(b"\",\"td\":{");
    // Member names as literals, each with the comma before it: the first
    // one written drops it.
    let mut first = true;
    let mut name = |out: &mut Vec<u8>, quoted: &[u8]| {
        let quoted = if std::mem::take(&mut first) {
            &quoted[1..]
        } else {
            quoted
        };
        out.extend_from_slice(quoted);
    };
    if let Some(ip) = td.ip {
        name(out, b",\"ip\":\"");
        write_ip(out, ip);
        out.push(b'"');
    }
    let headers: [(&[u8], _); 3] = [
        (b",\"ua\":", td.ua),
        (b",\"ref\":", td.referer),
        (b",\"host\":", td.host),
    ];
    for (quoted, value) in headers {
        if let Some(value) = value {
            name(out, quoted);
            write_lossless(out, value);
        }
    }
    if let Some(delivery) = td.delivery {
        name(out, b",\"delivery\":");
        write_lossless(out, delivery);
    }
    if !td.copied.names.is_empty() {
        write_copied(out, &td.copied, &mut name);
    }
    out.extend_from_slice(b"},\"data\":{");
    data(out);
    out.extend_from_slice(b"},\"id\":\"");
    out.extend_from_slice(head.id.as_bytes());
    out.extend_from_slice(b"\",\"time\":");
    out.extend_from_slice(head.time.as_bytes());
    out.push(b'}');
}

/// `"headers":{"x-github-event":"push",…}`, when any is there.
#[cold]
#[inline(never)]
fn write_copied(
    out: &mut Vec<u8>,
    copied: &Copied<'_>,
    name: &mut impl FnMut(&mut Vec<u8>, &[u8]),
) {
    let mut found = copied
        .names
        .iter()
        .filter_map(|n| Some((n, header(copied.head, n.as_bytes())?)))
        .peekable();
    if found.peek().is_none() {
        return;
    }
    name(out, b",\"headers\":{");
    for (i, (n, value)) in found.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, n);
        out.push(b':');
        write_lossless(out, value);
    }
    out.push(b'}');
}

fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        // Most senders are IPv4: each octet's digits and a dot from a table
        // (one 4-byte store per octet) into a stack buffer, one append,
        // instead of the formatter.
        IpAddr::V4(v4) => {
            let mut text = [0u8; 16];
            let mut n = 0;
            for octet in v4.octets() {
                let (digits, len) = OCTETS[usize::from(octet)];
                text[n..n + 4].copy_from_slice(&digits);
                n += usize::from(len);
            }
            // Without the last octet's dot.
            out.extend_from_slice(&text[..n - 1]);
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            // Display writes into the Vec without allocating.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Each octet's decimal digits followed by a dot (`b"7.\0\0"`, `b"255."`),
/// and how many of the four bytes that is.
const OCTETS: [([u8; 4], u8); 256] = {
    let mut table = [([0u8; 4], 0u8); 256];
    let mut i = 0;
    while i < 256 {
        let (h, t, o) = ((i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8);
        table[i] = match i {
            0..=9 => ([b'0' + o, b'.', 0, 0], 2),
            10..=99 => ([b'0' + t, b'0' + o, b'.', 0], 3),
            _ => ([b'0' + h, b'0' + t, b'0' + o, b'.'], 4),
        };
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_fields_in_contract_order() {
        let mut out = Vec::new();
        let mut key = RoutingKey::default();
        key.set(b"calltrack", b"call");
        let head = Head {
            key: &key,
            channel: Channel::Http,
            project_id: 0,
            uid: Uid::Generated(6462464730849083392),
            id: "6462464730849083393",
            time: "1540771658623",
        };
        let td = Transport {
            ip: Some("109.252.93.158".parse().unwrap()),
            ua: Some(b"curl/7.60.0"),
            ..Transport::default()
        };
        encode(&mut out, &head, &td, |o| {
            o.extend_from_slice(br#""param1":"value1""#)
        });
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"key":"in.gen.calltrack.call","channel":"http","service":"calltrack","name":"call","projectId":0,"uid":"6462464730849083392","td":{"ip":"109.252.93.158","ua":"curl/7.60.0"},"data":{"param1":"value1"},"id":"6462464730849083393","time":1540771658623}"#
        );
    }

    #[test]
    fn delivery_and_copied_headers() {
        let mut key = RoutingKey::default();
        key.set(b"github", b"push");
        let head = Head {
            key: &key,
            channel: Channel::Http,
            project_id: 0,
            uid: Uid::Given("1234567890"),
            id: "1",
            time: "2",
        };
        let names = ["x-github-event".to_owned(), "x-absent".to_owned()];
        let buf = b"POST /github/push HTTP/1.1\r\nX-GitHub-Event: push\r\n\r\n";
        let td = Transport {
            ip: Some("127.0.0.1".parse().unwrap()),
            delivery: Some(b"72d3162e"),
            copied: Copied {
                head: buf,
                names: &names,
            },
            ..Transport::default()
        };
        let mut out = Vec::new();
        encode(&mut out, &head, &td, |_| {});
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.contains(r#""td":{"ip":"127.0.0.1","delivery":"72d3162e","headers":{"x-github-event":"push"}}"#),
            "{text}"
        );
        // None of the names present: no `headers` at all.
        let td = Transport {
            copied: Copied {
                head: buf,
                names: &names[1..],
            },
            ..td
        };
        out.clear();
        encode(&mut out, &head, &td, |_| {});
        let text = std::str::from_utf8(&out).unwrap();
        assert!(
            text.contains(r#""td":{"ip":"127.0.0.1","delivery":"72d3162e"}"#),
            "{text}"
        );
    }

    #[test]
    fn ips_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "9.10.99.100",
            "1.20.109.250",
            "10.0.200.7",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 0, octet, 7]);
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }
}
