//! Content codings of request bodies (`Content-Encoding: gzip`, `deflate`,
//! `zstd`): the header's value, and the decoding of a complete body into a
//! core's reused buffer.
//!
//! The decoded size is bounded: decoding stops as soon as the output would
//! pass the limit (`--max-body`), so a small body that inflates to
//! gigabytes costs no more memory than the limit. The decoders' state is
//! made on a core's first compressed body and reused after.

use flate2::{Crc, Decompress, FlushDecompress, Status};
use zstd::zstd_safe::{self, zstd_sys::ZSTD_ErrorCode as Zstd, DCtx, DParameter, InBuffer};

use super::request::trim;

/// A coding hookwire decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// RFC 1952 (also `x-gzip`); several members are read one after another.
    Gzip,
    /// RFC 1950 zlib, as RFC 9110 defines `deflate`; raw RFC 1951 deflate,
    /// which some senders label `deflate`, too.
    Deflate,
    /// RFC 8878.
    Zstd,
}

/// Why a body cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// A coding hookwire does not decode.
    Unknown,
    /// More than one coding (`gzip, zstd`, or two `Content-Encoding` headers).
    Stacked,
    /// The decoded body passes the limit.
    TooLarge,
    /// The bytes are not what the coding says: what is wrong.
    Corrupt(&'static str),
}

/// The coding a `Content-Encoding` value names: `None` for `identity` (or
/// an empty value). Names are case-insensitive; `identity` in a list adds
/// nothing.
pub fn parse(value: &[u8]) -> Result<Option<Coding>, Bad> {
    let mut found = None;
    for token in value.split(|&b| b == b',') {
        let token = trim(token);
        let is = |name: &[u8]| token.eq_ignore_ascii_case(name);
        let coding = if token.is_empty() || is(b"identity") {
            continue;
        } else if is(b"gzip") || is(b"x-gzip") {
            Coding::Gzip
        } else if is(b"deflate") {
            Coding::Deflate
        } else if is(b"zstd") {
            Coding::Zstd
        } else {
            return Err(Bad::Unknown);
        };
        if found.replace(coding).is_some() {
            return Err(Bad::Stacked);
        }
    }
    Ok(found)
}

/// Smallest output buffer a decode starts with.
const FIRST: usize = 16 * 1024;
/// A buffer grown past this by one large body is given back after it.
const KEEP: usize = 1 << 20;

/// One core's decoders and their output buffer.
#[derive(Default)]
pub struct Decoder {
    out: Vec<u8>,
    inflate: Option<Decompress>,
    zstd: Option<DCtx<'static>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("capacity", &self.out.capacity())
            .finish()
    }
}

impl Decoder {
    /// Decodes `body` into the reused buffer; at most `max` bytes of output.
    pub fn decode(&mut self, coding: Coding, body: &[u8], max: usize) -> Result<&[u8], Bad> {
        self.out.clear();
        let first = body.len().saturating_mul(4).max(FIRST).min(max + 1);
        self.out.reserve_exact(first);
        let out = &mut self.out;
        match coding {
            Coding::Gzip => {
                let inflate = self.inflate.get_or_insert_with(|| Decompress::new(false));
                gunzip(inflate, body, out, max)?;
            }
            Coding::Deflate => {
                let inflate = self.inflate.get_or_insert_with(|| Decompress::new(false));
                // A zlib header is two bytes whose big-endian value is a
                // multiple of 31, the first naming method 8. Raw deflate
                // can look like one by chance: then it is read raw.
                let zlib = body.len() >= 2
                    && body[0] & 0x0F == 8
                    && u16::from_be_bytes([body[0], body[1]]) % 31 == 0;
                match inflate_all(inflate, zlib, body, out, max) {
                    Err(Bad::Corrupt(why)) if zlib => {
                        out.clear();
                        inflate_all(inflate, false, body, out, max).map_err(|e| match e {
                            Bad::Corrupt(_) => Bad::Corrupt(why),
                            e => e,
                        })?;
                    }
                    result => result?,
                }
            }
            Coding::Zstd => {
                let dctx = self.zstd.get_or_insert_with(|| zstd_context(max));
                unzstd(dctx, body, out, max)?;
            }
        }
        Ok(&self.out)
    }

    /// After a request: a buffer one large body grew is given back, so it
    /// does not pin megabytes per core.
    pub fn settle(&mut self) {
        if self.out.capacity() > KEEP {
            self.out = Vec::new();
        }
    }
}

/// Room for more output, up to `max + 1` bytes in all (one past the limit
/// says it was passed); `TooLarge` once that is full.
fn room(out: &mut Vec<u8>, max: usize) -> Result<(), Bad> {
    if out.len() < out.capacity() {
        return Ok(());
    }
    if out.len() > max {
        return Err(Bad::TooLarge);
    }
    let grown = (out.capacity() * 2).max(FIRST).min(max + 1);
    out.reserve_exact(grown - out.len());
    Ok(())
}

/// Inflates one deflate stream (zlib-wrapped or raw) from the start of
/// `input`, appending to `out`; returns the input bytes it took.
fn inflate(
    z: &mut Decompress,
    zlib: bool,
    input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<usize, Bad> {
    z.reset(zlib);
    let corrupt = match zlib {
        true => "the deflate (zlib) data is corrupt",
        false => "the deflate data is corrupt",
    };
    let mut at = 0;
    loop {
        room(out, max)?;
        let (read, written) = (z.total_in(), out.len());
        let status = z
            .decompress_vec(&input[at..], out, FlushDecompress::None)
            .map_err(|_| Bad::Corrupt(corrupt))?;
        at += (z.total_in() - read) as usize;
        if out.len() > max {
            return Err(Bad::TooLarge);
        }
        if status == Status::StreamEnd {
            return Ok(at);
        }
        let stuck = z.total_in() == read && out.len() == written;
        if out.len() < out.capacity() && (at == input.len() || stuck) {
            return Err(Bad::Corrupt(match at == input.len() {
                true => "the compressed body is truncated: its deflate data ends before the end of the stream",
                false => corrupt,
            }));
        }
    }
}

/// A deflate body: one stream and nothing after it.
fn inflate_all(
    z: &mut Decompress,
    zlib: bool,
    input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), Bad> {
    match inflate(z, zlib, input, out, max)? {
        n if n == input.len() => Ok(()),
        _ => Err(Bad::Corrupt(
            "the deflate body has bytes after the end of its stream",
        )),
    }
}

/// A gzip body: members one after another (zero padding after the last is
/// ignored, as gzip(1) and Python do), each with its CRC-32 and length
/// checked.
fn gunzip(z: &mut Decompress, mut input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), Bad> {
    loop {
        let start = out.len();
        input = &input[gzip_header(input)?..];
        let n = inflate(z, false, input, out, max)?;
        input = &input[n..];
        let Some((trailer, rest)) = input.split_first_chunk::<8>() else {
            return Err(Bad::Corrupt(
                "the gzip body is truncated: its trailer (CRC-32 and size) is missing",
            ));
        };
        let mut crc = Crc::new();
        crc.update(&out[start..]);
        if crc.sum() != u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) {
            return Err(Bad::Corrupt(
                "the gzip body's CRC-32 does not match its data",
            ));
        }
        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if size != (out.len() - start) as u32 {
            return Err(Bad::Corrupt(
                "the gzip body's size trailer (ISIZE) does not match its data",
            ));
        }
        input = &rest[rest.iter().take_while(|&&b| b == 0).count()..];
        if input.is_empty() {
            return Ok(());
        }
    }
}

/// The length of the gzip member header at the start of `b` (RFC 1952
/// §2.3).
fn gzip_header(b: &[u8]) -> Result<usize, Bad> {
    const TRUNCATED: Bad = Bad::Corrupt("the gzip body is truncated in its header");
    if b.len() < 10 {
        return Err(match b.starts_with(&[0x1f, 0x8b][..b.len().min(2)]) {
            true => TRUNCATED,
            false => {
                Bad::Corrupt("the body is not gzip: it does not start with the gzip magic bytes")
            }
        });
    }
    if b[..2] != [0x1f, 0x8b] {
        return Err(Bad::Corrupt(
            "the body is not gzip: it does not start with the gzip magic bytes",
        ));
    }
    let flags = b[3];
    if b[2] != 8 || flags & 0xE0 != 0 {
        return Err(Bad::Corrupt(
            "the gzip header names a method or flags other than deflate's",
        ));
    }
    let mut at = 10;
    if flags & 0x04 != 0 {
        let len = b.get(at..at + 2).ok_or(TRUNCATED)?;
        at += 2 + u16::from_le_bytes([len[0], len[1]]) as usize;
    }
    for flag in [0x08, 0x10] {
        // The file name and the comment: zero-terminated.
        if flags & flag != 0 {
            let rest = b.get(at..).ok_or(TRUNCATED)?;
            at += memchr::memchr(0, rest).ok_or(TRUNCATED)? + 1;
        }
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    match at <= b.len() {
        true => Ok(at),
        false => Err(TRUNCATED),
    }
}

/// A zstd context whose window may hold a `max`-byte body, and at least
/// 8 MiB (what compressors choose up to level 19 for a stream of unknown
/// size): a frame asking more is refused before it is allocated.
fn zstd_context(max: usize) -> DCtx<'static> {
    let mut dctx = DCtx::create();
    let log = usize::BITS - max.max(1).next_power_of_two().leading_zeros() - 1;
    let _ = dctx.set_parameter(DParameter::WindowLogMax(log.clamp(23, 27)));
    dctx
}

/// A zstd body: frames one after another (skippable frames included).
fn unzstd(dctx: &mut DCtx<'static>, body: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), Bad> {
    let _ = dctx.reset(zstd_safe::ResetDirective::SessionOnly);
    let mut input = InBuffer::around(body);
    loop {
        room(out, max)?;
        let pos = out.len();
        let mut output = zstd_safe::OutBuffer::around_pos(out, pos);
        let result = dctx.decompress_stream(&mut output, &mut input);
        let full = output.pos() == output.capacity();
        if out.len() > max {
            return Err(Bad::TooLarge);
        }
        match result {
            Err(code) => return Err(Bad::Corrupt(zstd_message(code))),
            // A frame ended, and with it the input.
            Ok(0) if input.pos() == body.len() => return Ok(()),
            Ok(_) if input.pos() == body.len() && !full => {
                return Err(Bad::Corrupt(
                    "the compressed body is truncated: its zstd data ends inside a frame",
                ))
            }
            Ok(_) => {}
        }
    }
}

fn zstd_message(code: usize) -> &'static str {
    let is = |kind: Zstd| zstd_safe::is_error_kind(code, kind);
    if is(Zstd::ZSTD_error_prefix_unknown) {
        "the body is not zstd: it does not start with a zstd frame"
    } else if is(Zstd::ZSTD_error_checksum_wrong) {
        "the zstd body's checksum does not match its data"
    } else if is(Zstd::ZSTD_error_frameParameter_windowTooLarge) {
        "the zstd frame's window is larger than hookwire decodes (8 MiB, or --max-body when larger); compress with a smaller window"
    } else {
        "the zstd data is corrupt"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_header() {
        assert_eq!(parse(b"gzip"), Ok(Some(Coding::Gzip)));
        assert_eq!(parse(b"X-GZIP"), Ok(Some(Coding::Gzip)));
        assert_eq!(parse(b" Deflate "), Ok(Some(Coding::Deflate)));
        assert_eq!(parse(b"zstd"), Ok(Some(Coding::Zstd)));
        assert_eq!(parse(b"identity"), Ok(None));
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"identity, gzip"), Ok(Some(Coding::Gzip)));
        assert_eq!(parse(b"gzip, zstd"), Err(Bad::Stacked));
        assert_eq!(parse(b"gzip, gzip"), Err(Bad::Stacked));
        assert_eq!(parse(b"br"), Err(Bad::Unknown));
        assert_eq!(parse(b"gzip, br"), Err(Bad::Unknown));
    }

    #[test]
    fn gzip_header_with_every_optional_field() {
        let mut h = vec![0x1f, 0x8b, 8, 0x1e, 0, 0, 0, 0, 0, 3];
        h.extend_from_slice(&[2, 0, b'a', b'b']); // extra
        h.extend_from_slice(b"name\0comment\0");
        h.extend_from_slice(&[0, 0]); // header CRC
        assert_eq!(gzip_header(&h), Ok(h.len()));
        assert!(matches!(
            gzip_header(&h[..h.len() - 1]),
            Err(Bad::Corrupt(_))
        ));
        assert!(matches!(
            gzip_header(b"PK\x03\x04......"),
            Err(Bad::Corrupt(_))
        ));
    }

    #[test]
    fn the_output_stops_one_byte_past_the_limit() {
        let mut out = Vec::new();
        room(&mut out, 10).unwrap();
        assert_eq!(out.capacity(), 11);
        out.resize(11, 0);
        assert_eq!(room(&mut out, 10), Err(Bad::TooLarge));
    }
}
