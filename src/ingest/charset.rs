//! A body's charset: the first character past a byte-order mark, and the
//! decoding of a body in a declared charset into UTF-8.

use crate::reject::Refusal;

/// The body's first character that is not ASCII whitespace, if it is
/// ASCII (else 0xFF); `None` for a blank body. `utf16`: the UTF-16 byte
/// order its byte-order mark says (`Encoding::for_bom`), which it starts
/// with.
pub fn first_non_blank(body: &[u8], utf16: Option<&encoding_rs::Encoding>) -> Option<u8> {
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

/// Decodes `body` from `enc` into `out` (reused). A byte sequence the
/// charset does not define is refused, not replaced: nothing the sender
/// sent is silently changed.
pub fn transcode(
    enc: &'static encoding_rs::Encoding,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Refusal> {
    // With BOM sniffing, as browsers decode: a UTF-16 body's BOM says its
    // byte order, and a UTF-8 BOM overrides a wrong label.
    let mut decoder = enc.new_decoder();
    let Some(room) = decoder.max_utf8_buffer_length_without_replacement(body.len()) else {
        return Err(Refusal::TooLargeToTranscode);
    };
    out.clear();
    out.resize(room, 0);
    let (result, read, written) = decoder.decode_to_utf8_without_replacement(body, out, true);
    out.truncate(written);
    match result {
        encoding_rs::DecoderResult::InputEmpty => Ok(()),
        // `read` counts the bad bytes and any read past them.
        encoding_rs::DecoderResult::Malformed(bad, past) => Err(Refusal::NotInCharset {
            at: read - usize::from(bad) - usize::from(past),
        }),
        encoding_rs::DecoderResult::OutputFull => {
            unreachable!("room for the worst case was made")
        }
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
