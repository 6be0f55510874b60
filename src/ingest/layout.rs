//! Where things are in a JSON document, 64 bytes at a time.
//!
//! simd-json validates a body and decodes its keys, but the envelope copies
//! member *values* from the sender's own bytes, so hookwire also needs each
//! top-level value's span, whether it holds whitespace, and a whitespace-free
//! copy of it. Walking the document a byte at a time for that cost more than
//! simd-json's own parse. Here, as in simdjson's first stage, each 64-byte
//! block becomes bit masks (one bit per byte): whitespace outside strings,
//! brackets and `,`/`:` outside strings, and bytes of numbers and literals.
//! Strings are found with a prefix XOR over the unescaped quotes;
//! backslashes (rare in webhooks) are resolved a bit at a time. The scan
//! then visits only brackets, the starts of scalars and the top level's
//! `,` and `:`, and minifying copies the runs between whitespace bits.
//!
//! Written by hand: no crate exposes simd-json's structural masks.

use std::ops::Range;

use crate::jsonw::append_short;

/// The deepest nesting of objects and arrays a body may have. The
/// envelope puts a body one level deeper (an object's members are `data`'s)
/// or two (any other value is `data.body`), and consumers' parsers stop
/// somewhere (serde_json at 128 levels, Python's recursion
/// limit near 1000); real webhooks nest a handful of levels.
pub const MAX_DEPTH: usize = 64;

/// The masks of one document (reused across requests). Bit `k` of word `w`
/// is byte `64 * w + k`; bits past the end of the document are clear.
#[derive(Debug, Default)]
pub struct Layout {
    len: usize,
    /// Whitespace outside strings.
    ws: Vec<u64>,
    /// `{`, `}`, `[` and `]` outside strings.
    brackets: Vec<u64>,
    /// `,` and `:` outside strings.
    delims: Vec<u64>,
    /// Bytes of numbers and literals: outside strings and none of the above.
    scalar: Vec<u64>,
}

/// The raw classes of one 64-byte block.
#[derive(Default)]
struct Block {
    quote: u64,
    backslash: u64,
    ws: u64,
    brackets: u64,
    delims: u64,
}

impl Layout {
    /// Classifies `raw`, which simd-json has accepted (so its strings are
    /// closed and its escapes well formed).
    pub fn build(&mut self, raw: &[u8]) {
        self.len = raw.len();
        for v in [
            &mut self.ws,
            &mut self.brackets,
            &mut self.delims,
            &mut self.scalar,
        ] {
            v.clear();
        }
        // Carried from block to block: inside a string; the next byte is
        // escaped by a backslash that ended the block.
        let (mut in_string, mut escape_next) = (0u64, false);
        for chunk in raw.chunks(64) {
            let block = match <&[u8; 64]>::try_from(chunk) {
                Ok(whole) => classify(whole),
                Err(_) => {
                    // The last, short block: padded with spaces, masked off
                    // below.
                    let mut padded = [b' '; 64];
                    padded[..chunk.len()].copy_from_slice(chunk);
                    classify(&padded)
                }
            };
            let valid = u64::MAX >> (64 - chunk.len());
            let escaped = escaped(block.backslash, &mut escape_next);
            let quotes = block.quote & !escaped;
            // Bits from each opening quote up to (not including) its
            // closing quote.
            let strings = prefix_xor(quotes) ^ in_string;
            in_string = 0u64.wrapping_sub(strings >> 63);
            let outside = !strings & valid;
            self.ws.push(block.ws & outside);
            self.brackets.push(block.brackets & outside);
            self.delims.push(block.delims & outside);
            let other = block.ws | block.brackets | block.delims | block.quote;
            self.scalar.push(!other & outside);
        }
    }

    /// Checks every number and literal with `valid` (the first that fails:
    /// `Err(its offset)`) and, when the top level is an object, collects
    /// each member's value span (without the whitespace around it) and
    /// whether the value is compact (no whitespace inside). Visits only
    /// brackets, the starts of numbers and literals, and the `,` and `:` of
    /// the top-level object.
    // Kept out of `JsonBody::parse`: inlined there it costs more.
    #[inline(never)]
    pub fn members(
        &self,
        raw: &[u8],
        spans: &mut Vec<(Range<u32>, bool)>,
        valid: impl Fn(&[u8]) -> bool,
    ) -> Result<(), usize> {
        spans.clear();
        let mut depth = 0usize;
        // Where the member value being read starts.
        let mut value: Option<usize> = None;
        let mut carry = 0u64;
        for w in 0..self.scalar.len() {
            let scalar = self.scalar[w];
            let starts = scalar & !((scalar << 1) | carry);
            carry = scalar >> 63;
            let (brackets, delims) = (self.brackets[w], self.delims[w]);
            // Bits at and above the next one to visit.
            let mut ahead = u64::MAX;
            loop {
                let top = if depth == 1 { delims } else { 0 };
                let events = (brackets | starts | top) & ahead;
                if events == 0 {
                    break;
                }
                let bit = events.trailing_zeros();
                ahead = (u64::MAX << bit) << 1;
                let at = 64 * w + bit as usize;
                if starts & (1 << bit) != 0 {
                    let end = self.next_clear(&self.scalar, at);
                    if !valid(&raw[at..end]) {
                        return Err(at);
                    }
                    continue;
                }
                match raw[at] {
                    b'{' | b'[' => {
                        depth += 1;
                        if depth > MAX_DEPTH {
                            return Err(at);
                        }
                    }
                    b':' => value = Some(self.skip_ws(at + 1)),
                    close_or_comma => {
                        if depth == 1 {
                            if let Some(start) = value.take() {
                                let end = self.trim_end(at);
                                spans.push((start as u32..end as u32, !self.has_ws(start..end)));
                            }
                        }
                        if close_or_comma != b',' {
                            depth = depth.saturating_sub(1);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The first byte at or after `at` that is not whitespace outside a
    /// string (or the end).
    pub fn skip_ws(&self, at: usize) -> usize {
        self.next_clear(&self.ws, at)
    }

    /// Just past the last byte before `at` that is not whitespace outside a
    /// string (or 0).
    pub fn trim_end(&self, at: usize) -> usize {
        let (mut w, bit) = (at / 64, at % 64);
        // Bytes before `at` in its word that are not whitespace.
        let mut kept = if w < self.ws.len() {
            !self.ws[w] & ((1u64 << bit) - 1)
        } else {
            w = self.ws.len();
            0
        };
        loop {
            if kept != 0 {
                return 64 * w + 64 - kept.leading_zeros() as usize;
            }
            if w == 0 {
                return 0;
            }
            w -= 1;
            kept = !self.ws[w];
        }
    }

    /// The span of the whole document without the whitespace around it.
    pub fn trimmed(&self) -> Range<usize> {
        self.skip_ws(0)..self.trim_end(self.len)
    }

    /// Whether `span` holds whitespace outside strings.
    pub fn has_ws(&self, span: Range<usize>) -> bool {
        span.start < span.end && self.next_set(&self.ws, span.start) < span.end
    }

    /// Appends `raw[span]` without the whitespace outside its strings: per
    /// 64-byte word, the runs of bytes to keep, found from the mask.
    /// `raw` is the document the layout was built for.
    pub fn write_minified(&self, out: &mut Vec<u8>, raw: &[u8], span: Range<usize>) {
        debug_assert!(raw.len() == self.len && span.end <= self.len);
        out.reserve(span.len());
        for w in span.start / 64..span.end.div_ceil(64) {
            let base = 64 * w;
            let from = span.start.max(base) - base;
            let to = span.end.min(base + 64) - base;
            let range = (u64::MAX << from) & (u64::MAX >> (64 - to));
            let mut keep = !self.ws[w] & range;
            if keep == range {
                out.extend_from_slice(&raw[base + from..base + to]);
                continue;
            }
            while keep != 0 {
                let at = keep.trailing_zeros() as usize;
                let len = (!(keep >> at)).trailing_zeros() as usize;
                keep &= !((u64::MAX >> (64 - len)) << at);
                append_short(out, raw, base + at..base + at + len);
            }
        }
    }

    /// The first position at or after `at` whose bit in `mask` is set, or
    /// the end of the document.
    fn next_set(&self, mask: &[u64], at: usize) -> usize {
        self.next(mask, at, 0)
    }

    /// The first position at or after `at` whose bit in `mask` is clear, or
    /// the end of the document.
    fn next_clear(&self, mask: &[u64], at: usize) -> usize {
        self.next(mask, at, u64::MAX)
    }

    fn next(&self, mask: &[u64], at: usize, flip: u64) -> usize {
        let mut w = at / 64;
        let mut bits = match mask.get(w) {
            Some(m) => (m ^ flip) & (u64::MAX << (at % 64)),
            None => return self.len,
        };
        loop {
            if bits != 0 {
                return (64 * w + bits.trailing_zeros() as usize).min(self.len);
            }
            w += 1;
            match mask.get(w) {
                Some(m) => bits = m ^ flip,
                None => return self.len,
            }
        }
    }
}

/// Bit `k` set when some bit at or below `k` is set an odd number of times:
/// with quote bits in, the bytes from an opening quote to its closing one.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// The bytes escaped by a backslash, given the block's backslashes; a
/// backslash that is itself escaped escapes nothing. `next` carries an
/// escape over the block boundary (in and out).
fn escaped(backslash: u64, next: &mut bool) -> u64 {
    let mut escaped = u64::from(std::mem::take(next));
    let mut pending = backslash & !escaped;
    while pending != 0 {
        let at = pending.trailing_zeros();
        if at == 63 {
            *next = true;
            break;
        }
        escaped |= 1 << (at + 1);
        pending &= !(3 << at);
    }
    escaped
}

/// The raw classes of a block (SSE2: part of x86_64).
#[cfg(target_arch = "x86_64")]
fn classify(block: &[u8; 64]) -> Block {
    use std::arch::x86_64::*;
    let mut b = Block::default();
    for lane in 0..4 {
        // SAFETY: SSE2 is part of x86_64; the load reads 16 bytes of the
        // 64-byte block (lane < 4), unaligned.
        let (quote, backslash, ws, brackets, delims) = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * lane).cast());
            let is = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            let bits = |m: __m128i| u64::from(_mm_movemask_epi8(m) as u16);
            let ws = _mm_or_si128(
                _mm_or_si128(is(b' '), is(b'\n')),
                _mm_or_si128(is(b'\t'), is(b'\r')),
            );
            let open_close = _mm_or_si128(
                _mm_or_si128(is(b'{'), is(b'}')),
                _mm_or_si128(is(b'['), is(b']')),
            );
            let delims = _mm_or_si128(is(b','), is(b':'));
            let (quote, backslash) = (bits(is(b'"')), bits(is(b'\\')));
            (quote, backslash, bits(ws), bits(open_close), bits(delims))
        };
        let shift = 16 * lane;
        b.quote |= quote << shift;
        b.backslash |= backslash << shift;
        b.ws |= ws << shift;
        b.brackets |= brackets << shift;
        b.delims |= delims << shift;
    }
    b
}

/// The raw classes of a block, a byte at a time.
#[cfg(not(target_arch = "x86_64"))]
fn classify(block: &[u8; 64]) -> Block {
    classify_bytes(block)
}

/// [`classify`] a byte at a time: the portable version, and the reference
/// the SSE2 one is tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_bytes(block: &[u8; 64]) -> Block {
    let mut b = Block::default();
    for (k, &c) in block.iter().enumerate() {
        let bit = 1u64 << k;
        match c {
            b'"' => b.quote |= bit,
            b'\\' => b.backslash |= bit,
            b' ' | b'\n' | b'\t' | b'\r' => b.ws |= bit,
            b'{' | b'}' | b'[' | b']' => b.brackets |= bit,
            b',' | b':' => b.delims |= bit,
            _ => {}
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_classes_match_the_byte_loop() {
        for c in 0..=255u8 {
            for at in 0..64 {
                let mut block = [b'a'; 64];
                block[at] = c;
                let (x, y) = (classify(&block), classify_bytes(&block));
                assert_eq!(
                    (x.quote, x.backslash, x.ws, x.brackets, x.delims),
                    (y.quote, y.backslash, y.ws, y.brackets, y.delims),
                    "byte {c:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn backslash_runs_escape_across_blocks() {
        // 63 filler bytes, then `\` at 63: it escapes byte 64 of the next
        // block; `\\` escapes nothing.
        let mut next = false;
        assert_eq!(escaped(1 << 63, &mut next), 0);
        assert!(next);
        assert_eq!(escaped(0b1, &mut next), 0b1, "the carried escape");
        assert!(!next);
        assert_eq!(escaped(0b0110, &mut next), 0b0100);
        assert_eq!(escaped(0b1110, &mut next), 0b1_0100);
    }

    #[test]
    fn strings_hide_their_contents() {
        let doc = br#"{"a b": "x\" ,:{", "n" :[1, true], "o": {"p": null} }"#;
        let mut l = Layout::default();
        l.build(doc);
        let mut spans = Vec::new();
        let checked = std::cell::RefCell::new(Vec::new());
        let valid = |t: &[u8]| {
            checked
                .borrow_mut()
                .push(String::from_utf8_lossy(t).into_owned());
            t != b"null"
        };
        assert_eq!(l.members(doc, &mut spans, valid), Err(46), "`null` refused");
        assert_eq!(*checked.borrow(), ["1", "true", "null"]);
        let text = |r: &Range<u32>| {
            String::from_utf8_lossy(&doc[r.start as usize..r.end as usize]).into_owned()
        };
        let got: Vec<_> = spans
            .iter()
            .map(|(r, compact)| (text(r), *compact))
            .collect();
        assert_eq!(
            got,
            [
                (r#""x\" ,:{""#.to_owned(), true),
                ("[1, true]".to_owned(), false)
            ]
        );
        let mut out = Vec::new();
        l.write_minified(&mut out, doc, 0..doc.len());
        assert_eq!(out, br#"{"a b":"x\" ,:{","n":[1,true],"o":{"p":null}}"#);
        assert_eq!(l.skip_ws(7), 8);
        assert_eq!(l.trim_end(23), 22, "before ` :`");
    }
}
