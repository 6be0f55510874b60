//! `Transfer-Encoding: chunked` bodies, with httparse's chunk-size parser.
//!
//! Two passes over the connection buffer: [`measure`] walks the chunks
//! without touching them until the whole body (and trailer section) has
//! arrived; [`decode_in_place`] then moves the chunk data together at the
//! start of the body, so the decoded body is one slice of the same buffer.

use super::Error;

/// The longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_SIZE_LINE: usize = 1024;

/// The size of a complete chunked body on the wire and decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub wire: usize,
    pub body: usize,
}

/// How far [`measure`] got through a body that is still arriving: the
/// walk resumes there, so a body trickling in is scanned once, not once
/// per read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Offset of the next chunk-size line.
    pos: usize,
    /// Decoded bytes before it.
    body: usize,
}

/// Walks the chunked body at the start of `buf`, from `progress` on.
/// `Ok(None)`: incomplete. Fails as soon as the decoded size passes
/// `max_body` or the framing is malformed (bad size line, missing CRLF after
/// data, oversized trailers).
pub fn measure(
    buf: &[u8],
    progress: &mut Progress,
    max_body: usize,
    max_trailers: usize,
) -> Result<Option<Measured>, Error> {
    let Progress { mut pos, mut body } = *progress;
    loop {
        // A size is one or more hex digits (RFC 9112 §7.1); httparse reads
        // an empty line, blanks or a bare `;ext` as size 0, which would
        // end the body early and take the rest of it for trailers.
        match buf.get(pos) {
            None => return Ok(None),
            Some(b) if !b.is_ascii_hexdigit() => return Err(Error::BadChunk),
            Some(_) => {}
        }
        let (consumed, size) = match httparse::parse_chunk_size(&buf[pos..]) {
            // A size line is a few hex digits plus extensions: at most
            // MAX_SIZE_LINE bytes, however its bytes arrive.
            Ok(httparse::Status::Complete((consumed, _))) if consumed > MAX_SIZE_LINE => {
                return Err(Error::BadChunk)
            }
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => {
                return if buf.len() - pos > MAX_SIZE_LINE {
                    Err(Error::BadChunk)
                } else {
                    Ok(None)
                };
            }
            Err(_) => return Err(Error::BadChunk),
        };
        pos += consumed;
        if size == 0 {
            return trailers(buf, pos, max_trailers)
                .map(|end| end.map(|wire| Measured { wire, body }));
        }
        if size > (max_body - body) as u64 {
            return Err(Error::BodyTooLarge);
        }
        let size = size as usize;
        let end = pos + size;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(Error::BadChunk);
        }
        body += size;
        pos = end + 2;
        *progress = Progress { pos, body };
    }
}

/// After the last chunk: optional trailer fields, then an empty line.
/// Returns the offset just past the empty line.
fn trailers(buf: &[u8], mut pos: usize, max: usize) -> Result<Option<usize>, Error> {
    let start = pos;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            return if buf.len() - start > max {
                Err(Error::BadChunk)
            } else {
                Ok(None)
            };
        };
        let line = &buf[pos..pos + nl];
        pos += nl + 1;
        if line.is_empty() || line == b"\r" {
            return Ok(Some(pos));
        }
        if pos - start > max || !field_line(line) {
            return Err(Error::BadChunk);
        }
    }
}

/// A trailer line is a field, `name: value`, with a token for a name
/// (the head's rule, RFC 9110 §5.1); anything else is not a trailer but
/// misframed data.
fn field_line(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Decodes a body that [`measure`] found complete; the data ends up in
/// `buf[..m.body]`.
pub fn decode_in_place(buf: &mut [u8], m: Measured) {
    let (mut read, mut write) = (0, 0);
    while write < m.body {
        let Ok(httparse::Status::Complete((consumed, size))) =
            httparse::parse_chunk_size(&buf[read..])
        else {
            unreachable!("measured as complete");
        };
        read += consumed;
        let size = size as usize;
        buf.copy_within(read..read + size, write);
        write += size;
        read += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(wire: &[u8]) -> Result<Option<(Vec<u8>, usize)>, Error> {
        let mut buf = wire.to_vec();
        Ok(
            measure(&buf, &mut Progress::default(), 1 << 20, 8192)?.map(|m| {
                decode_in_place(&mut buf, m);
                (buf[..m.body].to_vec(), m.wire)
            }),
        )
    }

    #[test]
    fn decodes_chunks_with_extensions_and_trailers() {
        let wire =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (body, used) = decode(wire).unwrap().unwrap();
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(&wire[used..], b"NEXT");
    }

    #[test]
    fn incomplete_at_every_cut() {
        let wire = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            assert_eq!(decode(&wire[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(decode(wire).unwrap().is_some());
    }

    #[test]
    fn resumes_where_it_stopped() {
        let wire = b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        let mut progress = Progress::default();
        for cut in 0..wire.len() {
            assert_eq!(
                measure(&wire[..cut], &mut progress, 1 << 20, 8192),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert_eq!(
            progress,
            Progress { pos: 19, body: 9 },
            "both data chunks were walked once"
        );
        // The walked part is not read again: junk in place of the two data
        // chunks (which a fresh walk would refuse) does not matter now.
        let mut resumed = wire.to_vec();
        resumed[..19].fill(b'z');
        let fresh = measure(&resumed, &mut Progress::default(), 1 << 20, 8192);
        assert_eq!(fresh, Err(Error::BadChunk));
        let m = measure(&resumed, &mut progress, 1 << 20, 8192)
            .unwrap()
            .unwrap();
        assert_eq!(
            m,
            Measured {
                wire: wire.len(),
                body: 9
            }
        );
    }

    #[test]
    fn refuses_bad_framing() {
        assert_eq!(decode(b"zz\r\nWiki\r\n0\r\n\r\n"), Err(Error::BadChunk));
        assert_eq!(decode(b"4\r\nWikiXX0\r\n\r\n"), Err(Error::BadChunk));
        assert_eq!(decode(b"FFFFFFFFFFFFFFFFFF\r\n"), Err(Error::BadChunk));
        assert_eq!(decode(b"200000\r\n"), Err(Error::BodyTooLarge));
        // A size line without a size is not the last chunk.
        for wire in [
            &b"\r\na=1\r\n0\r\n\r\n"[..],
            b" \r\na=1\r\n0\r\n\r\n",
            b";ext\r\na=1\r\n0\r\n\r\n",
            b"3\r\nb=2\r\n\r\n3\r\na=1\r\n0\r\n\r\n",
        ] {
            assert_eq!(decode(wire), Err(Error::BadChunk), "{wire:?}");
        }
        // Trailer lines are fields.
        assert_eq!(decode(b"0\r\na=1\r\n\r\n"), Err(Error::BadChunk));
        assert_eq!(decode(b"0\r\n: v\r\n\r\n"), Err(Error::BadChunk));
        assert_eq!(decode(b"0\r\nX T: v\r\n\r\n"), Err(Error::BadChunk));
        assert!(decode(b"0\r\nX-T: v\r\nY:\r\n\r\n").unwrap().is_some());
    }

    /// A size line longer than the limit is refused whether it arrives
    /// whole or in pieces; one at the limit is read.
    #[test]
    fn size_line_limit_holds_however_it_arrives() {
        let wire = |ext: usize| {
            let mut w = b"3;".to_vec();
            w.resize(2 + ext, b'x');
            w.extend_from_slice(b"\r\na=1\r\n0\r\n\r\n");
            w
        };
        let at_limit = wire(MAX_SIZE_LINE - 4); // 3 ; ext… CR LF
        assert_eq!(decode(&at_limit).unwrap().unwrap().0, b"a=1");
        let over = wire(MAX_SIZE_LINE - 3);
        assert_eq!(decode(&over), Err(Error::BadChunk), "whole");
        let mut progress = Progress::default();
        let refused = (1..=over.len())
            .map(|cut| measure(&over[..cut], &mut progress, 1 << 20, 8192))
            .find(Result::is_err);
        assert_eq!(refused, Some(Err(Error::BadChunk)), "in pieces");
    }
}
