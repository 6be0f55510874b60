//! The JSON writers every encoder shares: strings (escaped, or lossless for
//! bytes that may not be UTF-8), numbers, member names and short copies.
//!
//! Hand-written rather than serde_json: the envelope, the responses and the
//! form decoder write into reused buffers on the hot path without building
//! values, and the escaper scans eight bytes at a time.

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
}
