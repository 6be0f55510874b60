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
    /// Opening quotes of strings.
    opens: Vec<u64>,
    /// Quotes that open or close a string (not escaped).
    quotes: Vec<u64>,
    /// Where the backslashes that start an escape are (rare in webhooks).
    escapes: Vec<u32>,
    /// A byte that is never valid where it is: a control byte inside a
    /// string, one outside a string that is not whitespace, an escape
    /// outside a string, or a string the document never closes.
    stray: bool,
    /// Some byte is not ASCII.
    non_ascii: bool,
}

/// What [`Layout::walk`] reports of one member of a top-level object.
#[derive(Debug, Clone)]
pub struct Member {
    /// The key's text as sent, between its quotes.
    pub key: Range<usize>,
    /// The value, without the whitespace around it.
    pub value: Range<usize>,
    /// The value holds no whitespace between its tokens.
    pub compact: bool,
}

/// Why [`Layout::walk`] stopped: the document is not one it can vouch for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsure;

/// The raw classes of one 64-byte block.
#[derive(Default)]
struct Block {
    quote: u64,
    backslash: u64,
    ws: u64,
    brackets: u64,
    delims: u64,
    /// Bytes below 0x20.
    ctrl: u64,
    /// Bytes of 0x80 and above.
    high: u64,
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
            &mut self.opens,
            &mut self.quotes,
        ] {
            v.clear();
        }
        self.escapes.clear();
        let (mut stray, mut high) = (0u64, 0u64);
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
            let ws = block.ws & outside;
            self.ws.push(ws);
            self.brackets.push(block.brackets & outside);
            self.delims.push(block.delims & outside);
            let other = block.ws | block.brackets | block.delims | block.quote;
            self.scalar.push(!other & outside);
            self.opens.push(quotes & strings);
            self.quotes.push(quotes & valid);
            // Backslashes that escape the next byte: inside strings only.
            let mut starts = block.backslash & !escaped & valid;
            stray |= (block.ctrl & valid & !ws) | (starts & outside);
            high |= block.high & valid;
            let base = 64 * (self.ws.len() as u32 - 1);
            while starts != 0 {
                self.escapes.push(base + starts.trailing_zeros());
                starts &= starts - 1;
            }
        }
        self.stray = stray != 0 || in_string != 0;
        self.non_ascii = high != 0;
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

    /// The backslashes that start an escape, in order.
    pub fn escapes(&self) -> &[u32] {
        &self.escapes
    }

    /// Some byte of the document is not ASCII.
    pub fn non_ascii(&self) -> bool {
        self.non_ascii
    }

    /// Checks the document's grammar in one walk over its structure (the
    /// brackets, `,` and `:`, the opening quotes and the starts of numbers
    /// and literals), each number and literal with `valid`, and reports
    /// each member of a top-level object to `member` in order. `Err` when
    /// the document is not JSON, nests deeper than [`MAX_DEPTH`], or
    /// `valid` or `member` refuses: the caller then decides the slow way.
    /// Escapes, and the bytes' UTF-8, are the caller's to check.
    pub fn walk(
        &self,
        raw: &[u8],
        valid: impl Fn(&[u8]) -> bool,
        mut member: impl FnMut(Member) -> Result<(), Unsure>,
    ) -> Result<(), Unsure> {
        use grammar::*;
        if self.stray {
            return Err(Unsure);
        }
        let mut state = TOP_VALUE;
        // The state to return to when the container at each depth closes.
        let mut after = [DONE; MAX_DEPTH];
        let mut depth = 0usize;
        // Of the top-level member being read: its key, where its value
        // starts, where the last value token ended.
        let (mut key, mut start, mut end) = (0..0, 0, 0);
        let mut carry = 0u64;
        for w in 0..self.scalar.len() {
            let scalar = self.scalar[w];
            let starts = scalar & !((scalar << 1) | carry);
            carry = scalar >> 63;
            let mut events = self.brackets[w] | self.delims[w] | self.opens[w] | starts;
            while events != 0 {
                let at = 64 * w + events.trailing_zeros() as usize;
                events &= events - 1;
                let kind = KIND[usize::from(raw[at])];
                let step = TABLE[usize::from(state)][usize::from(kind)];
                if step == ERR {
                    return Err(Unsure);
                }
                if depth == 1 {
                    // Inside the top level: its members' keys and spans.
                    match (state, kind) {
                        (OBJ_KEY_OR_CLOSE | OBJ_KEY, STR) => key = at + 1..self.string_end(at) - 1,
                        (OBJ_VALUE, _) => {
                            start = at;
                            end = if kind == STR {
                                self.string_end(at)
                            } else {
                                at + 1
                            };
                        }
                        (OBJ_NEXT, COMMA | CLOSE_OBJ) => {
                            member(Member {
                                key: key.clone(),
                                value: start..end,
                                compact: !self.has_ws(start..end),
                            })?;
                        }
                        _ => {}
                    }
                }
                if step < SPECIAL {
                    state = step;
                    continue;
                }
                match step & !STATE {
                    SPECIAL => {
                        let scalar_end = self.next_clear(&self.scalar, at);
                        if !valid(&raw[at..scalar_end]) {
                            return Err(Unsure);
                        }
                        end = scalar_end;
                        state = step & STATE;
                    }
                    OPEN => {
                        if depth == MAX_DEPTH {
                            return Err(Unsure);
                        }
                        after[depth] = AFTER[usize::from(state)];
                        depth += 1;
                        state = if kind == OPEN_OBJ {
                            OBJ_KEY_OR_CLOSE
                        } else {
                            ARR_VALUE_OR_CLOSE
                        };
                    }
                    _ => {
                        debug_assert_eq!(step, CLOSE);
                        depth -= 1;
                        state = after[depth];
                        end = at + 1;
                    }
                }
            }
        }
        match state {
            DONE => Ok(()),
            _ => Err(Unsure),
        }
    }

    /// Just past the quote that closes the string opened at `open`.
    fn string_end(&self, open: usize) -> usize {
        self.next_set(&self.quotes, open + 1) + 1
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
        assert!(raw.len() == self.len && span.start <= span.end && span.end <= self.len);
        // Room for the whole span and one 16-byte copy past its end.
        out.reserve(span.len() + 16);
        let kept = out.len();
        let src = raw.as_ptr();
        // SAFETY: every copy reads `raw` within its length (a 16-byte copy
        // only where 16 bytes follow) and writes below `kept + span.len() +
        // 16`, inside the capacity reserved above: the bytes written before
        // each copy plus its length never exceed `span.len()`. `set_len`
        // then covers exactly the bytes kept.
        unsafe {
            let mut dst = out.as_mut_ptr().add(kept);
            for w in span.start / 64..span.end.div_ceil(64) {
                let base = 64 * w;
                let from = span.start.max(base) - base;
                let to = span.end.min(base + 64) - base;
                let range = (u64::MAX << from) & (u64::MAX >> (64 - to));
                let mut keep = !self.ws[w] & range;
                if keep == range {
                    std::ptr::copy_nonoverlapping(src.add(base + from), dst, to - from);
                    dst = dst.add(to - from);
                    continue;
                }
                while keep != 0 {
                    let at = keep.trailing_zeros() as usize;
                    let len = (!(keep >> at)).trailing_zeros() as usize;
                    keep &= !((u64::MAX >> (64 - len)) << at);
                    // Runs between whitespace are mostly under 16 bytes:
                    // one fixed-size copy instead of a call to `memcpy`.
                    if len <= 16 && base + at + 16 <= raw.len() {
                        std::ptr::copy_nonoverlapping(src.add(base + at), dst, 16);
                    } else {
                        std::ptr::copy_nonoverlapping(src.add(base + at), dst, len);
                    }
                    dst = dst.add(len);
                }
            }
            out.set_len(dst.offset_from(out.as_ptr()) as usize);
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

/// The tables [`Layout::walk`] steps through: a state (what may come
/// next) and the kind of the token met give the next state, or a step
/// that needs more than a lookup.
mod grammar {
    // Token kinds.
    pub const STR: u8 = 0;
    pub const SCALAR: u8 = 1;
    pub const OPEN_OBJ: u8 = 2;
    pub const OPEN_ARR: u8 = 3;
    pub const CLOSE_OBJ: u8 = 4;
    pub const CLOSE_ARR: u8 = 5;
    pub const COMMA: u8 = 6;
    pub const COLON: u8 = 7;

    /// The kind of each byte that starts a token (a number or literal for
    /// any byte the layout marks as one).
    pub static KIND: [u8; 256] = {
        let mut k = [SCALAR; 256];
        k[b'"' as usize] = STR;
        k[b'{' as usize] = OPEN_OBJ;
        k[b'[' as usize] = OPEN_ARR;
        k[b'}' as usize] = CLOSE_OBJ;
        k[b']' as usize] = CLOSE_ARR;
        k[b',' as usize] = COMMA;
        k[b':' as usize] = COLON;
        k
    };

    // States: what may come next.
    pub const TOP_VALUE: u8 = 0;
    pub const OBJ_KEY_OR_CLOSE: u8 = 1;
    pub const OBJ_KEY: u8 = 2;
    pub const OBJ_COLON: u8 = 3;
    pub const OBJ_VALUE: u8 = 4;
    /// A comma or the close of an object.
    pub const OBJ_NEXT: u8 = 5;
    pub const ARR_VALUE_OR_CLOSE: u8 = 6;
    pub const ARR_VALUE: u8 = 7;
    /// A comma or the close of an array.
    pub const ARR_NEXT: u8 = 8;
    /// The document's value is complete: nothing may follow.
    pub const DONE: u8 = 9;

    /// The bits of a step that hold a state.
    pub const STATE: u8 = 0x0F;
    /// Steps from here on need more than the lookup. This one: a number
    /// or literal to check, then the state in the low bits.
    pub const SPECIAL: u8 = 0x10;
    /// An object or array opens: one level deeper.
    pub const OPEN: u8 = 0x20;
    /// A container closes: back to the state saved when it opened.
    pub const CLOSE: u8 = 0x30;
    /// Not JSON.
    pub const ERR: u8 = 0xFF;

    /// The state after a complete value, by the state it started in.
    pub static AFTER: [u8; 10] = {
        let mut a = [DONE; 10];
        a[OBJ_VALUE as usize] = OBJ_NEXT;
        a[ARR_VALUE_OR_CLOSE as usize] = ARR_NEXT;
        a[ARR_VALUE as usize] = ARR_NEXT;
        a
    };

    pub static TABLE: [[u8; 8]; 10] = {
        let mut t = [[ERR; 8]; 10];
        let values = [TOP_VALUE, OBJ_VALUE, ARR_VALUE_OR_CLOSE, ARR_VALUE];
        let mut i = 0;
        while i < values.len() {
            let s = values[i] as usize;
            t[s][STR as usize] = AFTER[s];
            t[s][SCALAR as usize] = SPECIAL | AFTER[s];
            t[s][OPEN_OBJ as usize] = OPEN;
            t[s][OPEN_ARR as usize] = OPEN;
            i += 1;
        }
        t[OBJ_KEY_OR_CLOSE as usize][STR as usize] = OBJ_COLON;
        t[OBJ_KEY as usize][STR as usize] = OBJ_COLON;
        t[OBJ_COLON as usize][COLON as usize] = OBJ_VALUE;
        t[OBJ_KEY_OR_CLOSE as usize][CLOSE_OBJ as usize] = CLOSE;
        t[OBJ_NEXT as usize][CLOSE_OBJ as usize] = CLOSE;
        t[OBJ_NEXT as usize][COMMA as usize] = OBJ_KEY;
        t[ARR_VALUE_OR_CLOSE as usize][CLOSE_ARR as usize] = CLOSE;
        t[ARR_NEXT as usize][CLOSE_ARR as usize] = CLOSE;
        t[ARR_NEXT as usize][COMMA as usize] = ARR_VALUE;
        t
    };
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
        let (classes, ctrl, high) = unsafe {
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
            // Below 0x20: unchanged by an unsigned min with 0x1F.
            let ctrl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
            let classes = (quote, backslash, bits(ws), bits(open_close), bits(delims));
            (classes, bits(ctrl), bits(v))
        };
        let (quote, backslash, ws, brackets, delims) = classes;
        let shift = 16 * lane;
        b.quote |= quote << shift;
        b.backslash |= backslash << shift;
        b.ws |= ws << shift;
        b.brackets |= brackets << shift;
        b.delims |= delims << shift;
        b.ctrl |= ctrl << shift;
        b.high |= high << shift;
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
        if c < 0x20 {
            b.ctrl |= bit;
        }
        if c >= 0x80 {
            b.high |= bit;
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
