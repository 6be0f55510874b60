//! The envelope encoder: JSON written by hand into a reused buffer.
//!
//! Hand-written rather than serde: the envelope's field order is part of the
//! contract, its `data` is spliced from borrowed request bytes (decoded form
//! values, verbatim JSON member values) without building a value tree, and
//! the encoder must never allocate. Everything here is pure and infallible.

use std::net::IpAddr;

/// Transport data: where the request came from. Absent headers are `None`
/// and are omitted from the envelope.
#[derive(Debug, Default, Clone, Copy)]
pub struct Transport<'a> {
    pub ip: Option<IpAddr>,
    pub ua: Option<&'a [u8]>,
    pub referer: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
}

/// The routing and identity fields of one event.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub service: &'a str,
    pub name: &'a str,
    pub project_id: u64,
    pub uid: Uid<'a>,
    /// The id's and the time's decimal text: the id also goes into the
    /// 200's body, and the time is the same for every event of a
    /// millisecond ([`crate::id::MsText`]), so each is formatted once.
    pub id: &'a str,
    pub time: &'a str,
}

/// A sender-supplied uid (already validated digits) or a generated one.
#[derive(Debug, Clone, Copy)]
pub enum Uid<'a> {
    Given(&'a str),
    Generated(u64),
}

/// Writes the routing key `in.gen.<service>.<name>`.
pub fn write_key(out: &mut Vec<u8>, service: &[u8], name: &[u8]) {
    out.extend_from_slice(b"in.gen.");
    out.extend_from_slice(service);
    out.push(b'.');
    out.extend_from_slice(name);
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
    write_key(out, head.service.as_bytes(), head.name.as_bytes());
    out.extend_from_slice(b"\",\"channel\":\"http\",\"service\":\"");
    out.extend_from_slice(head.service.as_bytes());
    out.extend_from_slice(b"\",\"name\":\"");
    out.extend_from_slice(head.name.as_bytes());
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
    out.extend_from_slice(b"},\"data\":{");
    data(out);
    out.extend_from_slice(b"},\"id\":\"");
    out.extend_from_slice(head.id.as_bytes());
    out.extend_from_slice(b"\",\"time\":");
    out.extend_from_slice(head.time.as_bytes());
    out.push(b'}');
}

/// Writes `,"name":` (or without the comma for the first member), with the
/// name escaped.
pub fn member(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    write_str(out, name);
    out.push(b':');
}

pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
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

/// Writes a JSON string (with quotes) for text known to be UTF-8.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s.as_bytes());
    out.push(b'"');
}

/// Writes a JSON string (with quotes) for bytes that may not be UTF-8:
/// valid runs are escaped as usual, each byte of an invalid sequence is
/// written as `%XX`, so nothing is lost and the result is valid JSON.
pub fn write_lossless(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    if clean_ascii(bytes) {
        // Header values almost always are: one append.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    if bytes.is_ascii() {
        // Header values almost always are: no chunking needed.
        escape_into(out, bytes);
        out.push(b'"');
        return;
    }
    for chunk in bytes.utf8_chunks() {
        escape_into(out, chunk.valid().as_bytes());
        for &b in chunk.invalid() {
            percent_byte(out, b);
        }
    }
    out.push(b'"');
}

/// ASCII with nothing JSON escapes: eight bytes at a time (SWAR).
fn clean_ascii(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(w) = swar::word_at(s, i) {
        if (w & swar::HIGHS) | swar::escapes(w) != 0 {
            return false;
        }
        i += 8;
    }
    true
}

/// Appends `src[r]`. Keys, values and the runs between JSON whitespace are
/// mostly under 16 bytes: when `src` has 16 bytes from the start, one fixed
/// copy and a truncate replace a call to `memcpy`.
#[inline(always)]
pub(crate) fn append_short(out: &mut Vec<u8>, src: &[u8], r: std::ops::Range<usize>) {
    match src.get(r.start..r.start + 16) {
        Some(block) if r.len() <= 16 => {
            let end = out.len() + r.len();
            out.extend_from_slice(block);
            out.truncate(end);
        }
        _ => out.extend_from_slice(&src[r]),
    }
}

pub fn percent_byte(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

/// JSON-escapes UTF-8 bytes (no quotes). Only `"`, `\`, DEL and control
/// bytes need escaping; everything else is copied in runs.
fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len());
    let mut start = 0;
    while let Some(i) = next_escape(s, start) {
        out.extend_from_slice(&s[start..i]);
        let b = s[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// The first byte at or after `from` that JSON must escape. Eight bytes at a
/// time (SWAR: a word without such a byte is skipped with a few ALU ops);
/// short strings (most keys and values) take one word test too.
pub fn next_escape(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(w) = swar::word_at(s, i) {
        if swar::escapes(w) != 0 {
            return s[i..]
                .iter()
                .position(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
                .map(|p| i + p);
        }
        i += 8;
    }
    None
}

/// Word-at-a-time (SWAR) scanning, shared by the escaper and the form
/// decoder. A mask has the high bit set in each flagged byte; only the
/// lowest flag is exact (a borrow can flag a byte above a true match), so
/// callers take the lowest or test for any.
pub(crate) mod swar {
    pub const ONES: u64 = 0x0101_0101_0101_0101;
    pub const HIGHS: u64 = 0x8080_8080_8080_8080;

    /// The eight bytes of `s` from `i` (little-endian), the part past the
    /// end filled with `a`, which no scanner flags; `None` at the end. A
    /// tail is read as the last word shifted, so it costs no copy.
    #[inline(always)]
    pub fn word_at(s: &[u8], i: usize) -> Option<u64> {
        if let Some(word) = s.get(i..i + 8) {
            return Some(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        if i >= s.len() {
            return None;
        }
        let pad = ONES * u64::from(b'a');
        if s.len() >= 8 {
            let last = u64::from_le_bytes(s[s.len() - 8..].try_into().unwrap_or_default());
            let shift = 8 * (i + 8 - s.len()) as u32;
            return Some((last >> shift) | pad << (64 - shift));
        }
        let mut w = pad;
        for (k, &b) in s[i..].iter().enumerate() {
            w = (w & !(0xff << (8 * k))) | u64::from(b) << (8 * k);
        }
        Some(w)
    }

    /// Bytes of `w` equal to `c`.
    #[inline(always)]
    pub fn equal(w: u64, c: u8) -> u64 {
        let x = w ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x & HIGHS
    }

    /// Bytes of `w` that JSON escapes: `"`, `\\`, controls and DEL.
    #[inline(always)]
    pub fn escapes(w: u64) -> u64 {
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
        control | equal(w, b'"') | equal(w, b'\\') | equal(w, 0x7f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossless(b: &[u8]) -> String {
        let mut out = Vec::new();
        write_lossless(&mut out, b);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(
            lossless(b"a\"b\\c\nd\x01\x7f"),
            r#""a\"b\\c\nd\u0001\u007f""#
        );
        assert_eq!(lossless("привет".as_bytes()), "\"привет\"");
    }

    #[test]
    fn clean_ascii_is_copied_as_it_is() {
        assert_eq!(lossless(b"Affise Postback/1.0"), "\"Affise Postback/1.0\"");
        assert_eq!(lossless(b""), "\"\"");
        // Clean runs of every length take the copying path.
        let printable: Vec<u8> = (0x20..0x7f).filter(|b| !b"\"\\".contains(b)).collect();
        for len in 0..=printable.len() {
            assert!(clean_ascii(&printable[..len]), "{len} clean bytes");
        }
        // Anything to escape or any byte >= 0x80, in every position of a
        // 1-20 byte run, takes the escaping path.
        for bad in [b'"', b'\\', b'\n', 0x7f, 0xc3] {
            for len in 1..=20 {
                for at in 0..len {
                    let mut text = vec![b'x'; len];
                    text[at] = bad;
                    assert!(!clean_ascii(&text), "{bad:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn invalid_utf8_bytes_become_percent_escapes() {
        assert_eq!(lossless(b"ok\xff\xfe!"), "\"ok%FF%FE!\"");
        assert_eq!(lossless(b"\xd0"), "\"%D0\"");
    }

    #[test]
    fn encodes_fields_in_contract_order() {
        let mut out = Vec::new();
        let head = Head {
            service: "calltrack",
            name: "call",
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
    fn every_byte_at_every_offset_escapes_like_serde_json() {
        // Each ASCII byte alone, then at each position of a 1-20 byte run of
        // plain text (so the word-at-a-time scan meets it in every lane and
        // in the byte-wise tail); the reference is serde_json's escaping.
        for b in 0u8..0x80 {
            for len in 1..=20 {
                for at in 0..len {
                    let mut text = vec![b'x'; len];
                    text[at] = b;
                    let text = String::from_utf8(text).unwrap();
                    let mut out = Vec::new();
                    write_str(&mut out, &text);
                    let got: String = serde_json::from_slice(&out).unwrap();
                    assert_eq!(got, text, "byte {b:#x} at {at} of {len}");
                    let escaped = out.len() != len + 2;
                    let needs = b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f;
                    assert_eq!(escaped, needs, "byte {b:#x} at {at} of {len}");
                }
            }
        }
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
