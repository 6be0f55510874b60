//! Query strings and `application/x-www-form-urlencoded` bodies.
//!
//! Written by hand because the contract asks for what no decoding crate
//! does: a value whose percent-decoding is not UTF-8 is kept exactly as it
//! was sent, and `key[]` / `a[b]` keys are classified for grouping. The
//! input is copied once into a reused arena; a key or value with nothing to
//! decode (the common case) is a range of that copy, and the others are
//! decoded after it. [`Param`]s are ranges into the arena, so decoding a
//! request allocates nothing once the arena has grown.

use std::ops::Range;

use crate::jsonw::{append_short, write_str};

/// How a key groups with others of the same top-level name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `a=1`: a string, or an array when the key repeats.
    Plain,
    /// `a[]=1`: always an array.
    Array,
    /// `a[b]=1`: a member `b` of an object `a`.
    Nested,
}

/// One decoded `key=value` pair, as ranges into [`Params::arena`].
#[derive(Debug, Clone)]
pub struct Param {
    /// The whole decoded key (`a[b]`).
    pub key: Range<u32>,
    /// The top-level name (`a`): a prefix of `key`.
    pub top: Range<u32>,
    /// For [`Kind::Nested`], the member name (`b`).
    pub sub: Range<u32>,
    pub kind: Kind,
    pub value: Range<u32>,
    /// The key has no byte that JSON escapes: it is written as it is.
    pub key_clean: bool,
    pub value_clean: bool,
}

/// Decoded parameters of one request: the query's, then the body's.
#[derive(Debug, Default)]
pub struct Params {
    pub arena: Vec<u8>,
    pub list: Vec<Param>,
}

/// One key or value: where its text is and what it holds.
struct Field {
    range: Range<u32>,
    /// No byte JSON must escape.
    clean: bool,
    /// A key with a `[`.
    bracket: bool,
}

/// A key's tag: its length (saturated) in the top byte, and below it the
/// key's bytes when it is shorter than eight (equal tags: equal keys), else
/// a hash of all of them (equal tags: compare the keys). Hashing the long
/// ones keeps keys that share a prefix (`status[0][id]`, `status[1][id]`)
/// apart, so they need no string comparison.
pub fn tag(k: &str) -> u64 {
    let b = k.as_bytes();
    let len = (b.len().min(255) as u64) << 56;
    if b.len() < 8 {
        // A byte loop: a copy of a variable 0-7 bytes would call memcpy.
        let mut t = len;
        for (at, &byte) in b.iter().enumerate() {
            t |= u64::from(byte) << (8 * at);
        }
        return t;
    }
    let mut h = 0u64;
    for chunk in b.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(word));
    }
    (h >> 8) | len
}

/// One step of [`tag`]'s hash: the next eight bytes (zero-padded).
#[inline(always)]
fn mix(h: u64, word: u64) -> u64 {
    (h ^ word)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(23)
}

impl Params {
    pub fn clear(&mut self) {
        self.arena.clear();
        self.list.clear();
    }

    pub fn text(&self, r: &Range<u32>) -> &str {
        let bytes = &self.arena[r.start as usize..r.end as usize];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: every range handed out covers either a run of the input
        // copy with no byte >= 0x80 (ASCII, see `field`) or bytes written
        // by `push_decoded`/`classify`, which only write validated UTF-8 or
        // ASCII escapes; ranges never split a character.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Writes a key's or value's text as a JSON string.
    #[inline(always)]
    pub fn write_json(&self, out: &mut Vec<u8>, r: &Range<u32>, clean: bool) {
        if !clean {
            return write_str(out, self.text(r));
        }
        out.push(b'"');
        append_short(out, &self.arena, r.start as usize..r.end as usize);
        out.push(b'"');
    }

    /// Writes `,"name":` (without the comma for the first member) for a
    /// key or member name in the arena.
    #[inline(always)]
    pub fn write_name(&self, out: &mut Vec<u8>, first: &mut bool, r: &Range<u32>, clean: bool) {
        if !std::mem::take(first) {
            out.push(b',');
        }
        self.write_json(out, r, clean);
        out.push(b':');
    }

    /// A range's [`tag`], from word loads where the arena has
    /// the bytes (keys of up to 16 bytes, nearly all).
    #[inline(always)]
    pub fn tag(&self, r: &Range<u32>) -> u64 {
        let (start, len) = (r.start as usize, (r.end - r.start) as usize);
        let word = |at: usize| {
            let bytes = self.arena.get(at..at + 8)?;
            Some(u64::from_le_bytes(bytes.try_into().unwrap_or_default()))
        };
        // The low `n` bytes of a word (n < 8).
        let low = |w: u64, n: usize| w & ((1u64 << (8 * n)) - 1);
        let fast = match len {
            0..8 => word(start).map(|w| low(w, len)),
            8..=16 => word(start).zip(word(start + 8)).map(|(w0, w1)| {
                let h = mix(0, w0);
                let h = if len > 8 {
                    mix(h, if len == 16 { w1 } else { low(w1, len - 8) })
                } else {
                    h
                };
                h >> 8
            }),
            _ => None,
        };
        match fast {
            Some(t) => t | (len as u64) << 56,
            None => tag(self.text(r)),
        }
    }

    /// Writes `"key":"value"` for a plain parameter (after a comma when
    /// `comma`). A key and value with nothing to escape, the usual case,
    /// take one capacity check and block copies.
    #[inline(always)]
    pub fn write_pair(&self, out: &mut Vec<u8>, p: &Param, comma: bool) {
        if !(p.key_clean && p.value_clean) {
            self.write_name(out, &mut !comma, &p.top, p.key_clean);
            return self.write_json(out, &p.value, p.value_clean);
        }
        out.reserve(p.top.len() + p.value.len() + 6 + 2 * BLOCK);
        // SAFETY: the reserve covers the 6 bytes of punctuation, both texts
        // and the up to BLOCK bytes each block copy writes past its text
        // (all in the spare capacity, overwritten or left past `len`); the
        // ranges lie in the arena (checked in `copy_blocks`), and `len` is
        // set to what was written.
        unsafe {
            let base = out.as_mut_ptr();
            let mut at = base.add(out.len());
            at.write(b',');
            at = at.add(usize::from(comma));
            at.write(b'"');
            at = copy_blocks(at.add(1), &self.arena, p.top.clone());
            at.cast::<[u8; 3]>().write_unaligned(*b"\":\"");
            at = copy_blocks(at.add(3), &self.arena, p.value.clone());
            at.write(b'"');
            out.set_len(at.add(1).offset_from(base) as usize);
        }
    }

    /// Decodes `a=1&b=2…` and appends its pairs to the list. Empty pairs
    /// (`&&`) are skipped; a key without `=` has the value `""`.
    pub fn parse(&mut self, input: &[u8]) {
        // The copy, then decoded text (never longer than its input) and
        // `a[b]` member names.
        self.arena
            .reserve(2 * input.len() + input.len() / 2 + BLOCK);
        let base = self.arena.len();
        self.arena.extend_from_slice(input);
        let mut stops = Stops::new(input);
        let mut i = 0;
        while i < input.len() {
            if input[i] == b'&' {
                i += 1;
                continue;
            }
            if let Some((key_end, end)) = stops.clean_pair(i) {
                // The common case: text of the copy as it is. Without `=`
                // (key_end == end) the value is empty.
                let key = (base + i) as u32..(base + key_end) as u32;
                let value_start = (base + key_end + 1).min(base + end);
                self.list.push(Param {
                    top: key.clone(),
                    key,
                    sub: 0..0,
                    kind: Kind::Plain,
                    value: value_start as u32..(base + end) as u32,
                    key_clean: true,
                    value_clean: true,
                });
                i = end + 1;
                continue;
            }
            let (at, key) = self.field(input, &mut stops, base, i, true);
            let (at, value) = if input.get(at) == Some(&b'=') {
                self.field(input, &mut stops, base, at + 1, false)
            } else {
                let end = self.arena.len() as u32;
                let empty = Field {
                    range: end..end,
                    clean: true,
                    bracket: false,
                };
                (at, empty)
            };
            let (kind, top, sub) = match key.bracket {
                true => self.classify(&key.range),
                false => (Kind::Plain, key.range.clone(), 0..0),
            };
            self.list.push(Param {
                key: key.range,
                top,
                sub,
                kind,
                value: value.range,
                key_clean: key.clean,
                value_clean: value.clean,
            });
            i = at + 1;
        }
        // Bytes no range covers, so a block copy of the last text stays in
        // the arena.
        self.arena.extend_from_slice(&[0; BLOCK]);
    }

    /// The key (up to `&`, `=` or the end) or value (up to `&` or the end)
    /// that starts at `input[from]`, and where it stopped. Text with nothing
    /// to decode or escape is a range of the copy at `base`; anything else
    /// goes through [`Self::push_decoded`].
    #[inline(always)]
    fn field(
        &mut self,
        input: &[u8],
        stops: &mut Stops<'_>,
        base: usize,
        from: usize,
        key: bool,
    ) -> (usize, Field) {
        let mut bracket = false;
        let mut i = from;
        loop {
            i = stops.next(i, key);
            match input.get(i) {
                None | Some(b'&') => break,
                Some(b'=') if key => break,
                Some(b'[') if key => {
                    bracket = true;
                    i += 1;
                }
                Some(_) => {
                    let (at, range, clean) = self.push_decoded(input, from, i, key);
                    let text = &self.arena[range.start as usize..range.end as usize];
                    let field = Field {
                        clean,
                        bracket: key && memchr::memchr(b'[', text).is_some(),
                        range,
                    };
                    return (at, field);
                }
            }
        }
        let field = Field {
            range: (base + from) as u32..(base + i) as u32,
            clean: true,
            bracket,
        };
        (i, field)
    }

    /// The value of the first plain `name=` among `self.list[within]`.
    pub fn first(&self, within: Range<usize>, name: &str) -> Option<Range<u32>> {
        self.first_where(within, name, |_| true)
    }

    /// Whether `within` has `name` only in a bracketed form (`name[]`,
    /// `name[x]`).
    pub fn bracketed(&self, within: Range<usize>, name: &str) -> bool {
        self.list[within].iter().any(|p| {
            p.kind != Kind::Plain && p.top.len() == name.len() && self.text(&p.top) == name
        })
    }

    /// The value of the first plain `name` parameter in `within` that
    /// `ok` accepts.
    pub fn first_where(
        &self,
        within: Range<usize>,
        name: &str,
        ok: impl Fn(&[u8]) -> bool,
    ) -> Option<Range<u32>> {
        self.list[within]
            .iter()
            // The length first: most keys differ in it.
            .find(|p| {
                p.kind == Kind::Plain
                    && p.key.len() == name.len()
                    && self.text(&p.key) == name
                    && ok(self.text(&p.value).as_bytes())
            })
            .map(|p| p.value.clone())
    }

    /// Percent-decodes `input[from..]` into the arena up to the next `&`
    /// (or `=`, for a key), given that `input[from..plain]` has nothing to
    /// decode, and returns where it stopped and whether the text is clean
    /// (nothing JSON escapes). If the result is not UTF-8 the raw text is
    /// stored instead, exactly as sent, with any raw byte that is itself not
    /// UTF-8 written as `%XX`.
    fn push_decoded(
        &mut self,
        input: &[u8],
        from: usize,
        plain: usize,
        key: bool,
    ) -> (usize, Range<u32>, bool) {
        let rest = &input[plain..];
        let end = match key {
            true => memchr::memchr2(b'&', b'=', rest),
            false => memchr::memchr(b'&', rest),
        }
        .map_or(input.len(), |p| plain + p);
        // Decoded text is never longer than its input: room for all of it
        // (not zero-filled: written through a local index, then the length
        // set to what was written).
        let start = self.arena.len();
        self.arena.reserve(end - from);
        let out = &mut self.arena.spare_capacity_mut()[..end - from];
        for (d, &b) in out.iter_mut().zip(&input[from..plain]) {
            d.write(b);
        }
        // What the decoded bytes held: SEEN_HIGH (a byte >= 0x80: only such
        // text can be invalid UTF-8), SEEN_ESCAPE (a byte JSON escapes).
        let mut seen = 0u8;
        let (src, dst) = (&input[plain..end], &mut out[plain - from..]);
        let (mut i, mut o) = (0, 0);
        while let Some(&b) = src.get(i) {
            let mut byte = b;
            i += 1;
            if b == b'+' {
                byte = b' ';
            } else if b == b'%' {
                // A hex digit is never `&` or `=`: a valid escape is inside
                // the field. A stray `%` is kept literally, as browsers do.
                if let Some(&[h, l]) = src.get(i..i + 2) {
                    let (h, l) = (HEX[usize::from(h)], HEX[usize::from(l)]);
                    if (h | l) < 16 {
                        byte = h << 4 | l;
                        i += 2;
                    }
                }
            }
            // Anything else (`=` inside a value, a raw byte >= 0x80, one
            // JSON escapes) as it is.
            seen |= SEEN[usize::from(byte)];
            dst[o].write(byte);
            o += 1;
        }
        let (i, o) = (plain + i, plain - from + o);
        let (high, mut escape) = (seen & SEEN_HIGH != 0, seen & SEEN_ESCAPE != 0);
        // SAFETY: `out[..o]`, the first `o` bytes of the spare capacity, were
        // all written above (the plain prefix, then one byte per step).
        unsafe { self.arena.set_len(start + o) };
        if high && std::str::from_utf8(&self.arena[start..]).is_err() {
            self.arena.truncate(start);
            for chunk in input[from..i].utf8_chunks() {
                self.arena.extend_from_slice(chunk.valid().as_bytes());
                for &b in chunk.invalid() {
                    crate::jsonw::percent_byte(&mut self.arena, b);
                }
            }
            escape = crate::jsonw::next_escape(&self.arena[start..], 0).is_some();
        }
        (i, start as u32..self.arena.len() as u32, !escape)
    }

    /// `a[]` → Array `a`; `a[b]` → Nested `a` / `b`, and `a[b][rest]…` →
    /// Nested `a` / `b[rest]…` (one level of nesting: deeper brackets stay
    /// in the member name, `x[y][0][id]` → `x` / `y[0][id]`); anything
    /// else → Plain, so no two different keys give the same member
    /// (`r[b]c` and `r[b[c]]` stay as they are rather than become `r` /
    /// `bc` and `r` / `b[c]`, the members of `r[bc]` and `r[b][c]`).
    fn classify(&mut self, key: &Range<u32>) -> (Kind, Range<u32>, Range<u32>) {
        let k = &self.arena[key.start as usize..key.end as usize];
        let plain = (Kind::Plain, key.clone(), 0..0);
        // Keys are short: a plain loop beats a SIMD search's setup here.
        let Some(open) = k.iter().position(|&b| b == b'[') else {
            return plain;
        };
        let Some(close) = k[open..].iter().position(|&b| b == b']').map(|p| open + p) else {
            return plain;
        };
        if open == 0 {
            return plain;
        }
        let top = key.start..key.start + open as u32;
        if close == open + 1 {
            return if close + 1 == k.len() {
                (Kind::Array, top, 0..0)
            } else {
                plain
            };
        }
        // The member name is the text between the first brackets, followed
        // by whatever came after them; both are whole UTF-8 runs because
        // they are split at ASCII brackets.
        let (name, rest) = (open + 1..close, close + 1..k.len());
        if k[name.clone()].contains(&b'[') || !(rest.is_empty() || k[rest.start] == b'[') {
            return plain;
        }
        let start = self.arena.len() as u32;
        let base = key.start as usize;
        self.arena
            .extend_from_within(base + name.start..base + name.end);
        self.arena
            .extend_from_within(base + rest.start..base + rest.end);
        (Kind::Nested, top, start..self.arena.len() as u32)
    }
}

const PLAIN: u8 = 0;
const AMP: u8 = 1;
const EQ: u8 = 2;
const PCT: u8 = 3;
const PLUS: u8 = 4;
const HIGH: u8 = 5;
/// What JSON escapes: `"`, `\\`, control bytes and DEL.
const ESCAPE: u8 = 6;

/// What the decoder does with each byte: copy it in a run (`PLAIN`) or stop.
static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut b = 0x80;
    while b < 256 {
        t[b] = HIGH;
        b += 1;
    }
    let mut b = 0;
    while b < 0x20 {
        t[b] = ESCAPE;
        b += 1;
    }
    t[b'"' as usize] = ESCAPE;
    t[b'\\' as usize] = ESCAPE;
    t[0x7f] = ESCAPE;
    t[b'&' as usize] = AMP;
    t[b'=' as usize] = EQ;
    t[b'%' as usize] = PCT;
    t[b'+' as usize] = PLUS;
    t
};

const SEEN_HIGH: u8 = 1;
const SEEN_ESCAPE: u8 = 2;

/// What a decoded byte tells about its text, from [`CLASS`].
static SEEN: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match CLASS[b] {
            HIGH => SEEN_HIGH,
            ESCAPE => SEEN_ESCAPE,
            _ => 0,
        };
        b += 1;
    }
    t
};

/// Where the plain runs of one input end, found 64 bytes at a time and
/// handed out in order: a key's run ends at `&`, `=`, `[`, `%`, `+`, any
/// byte from 0x80 up or one JSON escapes (`"`, `\\`, controls, DEL), a value's at the
/// same bytes but `=` and `[`. One SIMD pass per block (AVX2 or SSE2 on
/// x86_64, a table elsewhere) replaces a test per byte.
struct Stops<'a> {
    input: &'a [u8],
    /// The block the masks are for (`usize::MAX`: none yet).
    block: usize,
    /// Bit `k`: byte `64 * block + k` ends a key's run.
    key: u64,
    /// Bit `k`: byte `64 * block + k` ends a value's run.
    value: u64,
}

impl<'a> Stops<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            block: usize::MAX,
            key: 0,
            value: 0,
        }
    }

    /// Computes the masks of `block` unless they are the current ones.
    #[inline(always)]
    fn load(&mut self, block: usize) {
        if block == self.block {
            return;
        }
        let bytes = &self.input[block * 64..];
        (self.key, self.value) = match bytes.get(..64) {
            Some(whole) => masks(whole.try_into().unwrap_or(&[0; 64])),
            None => {
                // The last, short block: padded with a plain byte.
                let mut padded = [b'a'; 64];
                padded[..bytes.len()].copy_from_slice(bytes);
                masks(&padded)
            }
        };
        self.block = block;
    }

    /// The first stop of `mask` (the current block's key or value mask) at
    /// or after bit `skip`, if the block has one or is the input's last
    /// (then the end of the input).
    #[inline(always)]
    fn in_block(&self, mask: u64, skip: usize) -> Option<usize> {
        let bits = mask & (u64::MAX << skip);
        let base = self.block * 64;
        if bits != 0 {
            Some(base + bits.trailing_zeros() as usize)
        } else if base + 64 >= self.input.len() {
            Some(self.input.len())
        } else {
            None
        }
    }

    /// For a pair starting at `from` (not `&`, inside the input) that lies
    /// in one 64-byte block and has nothing to decode, escape or classify
    /// (no `%`, `+`, byte from 0x80 up, JSON escape, or `[` in the key):
    /// where its key ends (at `=`, or at the pair's end when it has none)
    /// and where the pair ends (`&` or the end of the input). `None` for
    /// any other pair: the caller then goes field by field.
    #[inline(always)]
    fn clean_pair(&mut self, from: usize) -> Option<(usize, usize)> {
        let block = from / 64;
        self.load(block);
        let key_end = self.in_block(self.key, from % 64)?;
        match self.input.get(key_end) {
            None | Some(b'&') => Some((key_end, key_end)),
            Some(b'=') => {
                let value = key_end + 1;
                let end = match value {
                    v if v == self.input.len() => v,
                    v if v / 64 == block => self.in_block(self.value, v % 64)?,
                    _ => return None,
                };
                match self.input.get(end) {
                    None | Some(b'&') => Some((key_end, end)),
                    Some(_) => None,
                }
            }
            Some(_) => None,
        }
    }

    /// The first byte at or after `from` that ends a key's (`key`) or a
    /// value's run, or the end of the input.
    #[inline(always)]
    fn next(&mut self, from: usize, key: bool) -> usize {
        let (mut block, mut skip) = (from / 64, from % 64);
        while block * 64 < self.input.len() {
            self.load(block);
            let stops = if key { self.key } else { self.value } & (u64::MAX << skip);
            if stops != 0 {
                return block * 64 + stops.trailing_zeros() as usize;
            }
            (block, skip) = (block + 1, 0);
        }
        self.input.len()
    }
}

/// The key and value stop masks of one 64-byte block (see [`Stops`]):
/// with AVX2 where the CPU has it (nearly every x86_64 server), else with
/// the SSE2 every x86_64 has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { masks_avx2(block) }
    } else {
        masks_sse2(block)
    }
}

/// Nibble classes for [`masks_avx2`]: a byte is a stop when the entry of
/// its low nibble in [`LOW_NIBBLE`] and that of its high nibble in
/// [`HIGH_NIBBLE`] share a bit. Each bit stands for one row of the byte
/// table (one high nibble) and the columns (low nibbles) that stop in it.
mod nibble {
    /// Rows 0x0_, 0x1_ (controls) and 0x8_ to 0xF_: every column.
    pub const ALL: u8 = 1;
    /// Row 0x2_: `"` `%` `&` `+`.
    pub const ROW2: u8 = 2;
    /// Row 0x5_: `\\`.
    pub const BACKSLASH: u8 = 4;
    /// Row 0x7_: DEL.
    pub const DEL: u8 = 8;
    /// Row 0x3_: `=` (keys only).
    pub const EQ: u8 = 16;
    /// Row 0x5_: `[` (keys only).
    pub const OPEN: u8 = 32;
    /// The bits that stop a value; a key stops at any bit.
    pub const VALUE: u8 = ALL | ROW2 | BACKSLASH | DEL;
}

/// See [`nibble`]: the classes of each low nibble (column).
const LOW_NIBBLE: [u8; 16] = {
    use nibble::*;
    let mut t = [ALL; 16];
    t[0x2] |= ROW2;
    t[0x5] |= ROW2;
    t[0x6] |= ROW2;
    t[0xB] |= ROW2 | OPEN;
    t[0xC] |= BACKSLASH;
    t[0xD] |= EQ;
    t[0xF] |= DEL;
    t
};

/// See [`nibble`]: the classes of each high nibble (row).
const HIGH_NIBBLE: [u8; 16] = {
    use nibble::*;
    let mut t = [ALL; 16];
    t[0x2] = ROW2;
    t[0x3] = EQ;
    t[0x4] = 0;
    t[0x5] = BACKSLASH | OPEN;
    t[0x6] = 0;
    t[0x7] = DEL;
    t
};

/// [`masks`] 32 bytes at a time: two nibble lookups (`vpshufb`) classify
/// every byte at once, where SSE2 takes nine compares per 16 bytes.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn masks_avx2(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    let table = |t: &[u8; 16]| _mm256_broadcastsi128_si256(_mm_loadu_si128(t.as_ptr().cast()));
    let (low_table, high_table) = (table(&LOW_NIBBLE), table(&HIGH_NIBBLE));
    let nibble = _mm256_set1_epi8(0x0f);
    let (zero, value_bits) = (
        _mm256_setzero_si256(),
        _mm256_set1_epi8(nibble::VALUE as i8),
    );
    let (mut key, mut value) = (0u64, 0u64);
    for half in 0..2 {
        // The load reads 32 bytes of the 64-byte block (half < 2), unaligned.
        let b = _mm256_loadu_si256(block.as_ptr().add(32 * half).cast());
        let low = _mm256_and_si256(b, nibble);
        let high = _mm256_and_si256(_mm256_srli_epi16::<4>(b), nibble);
        let classes = _mm256_and_si256(
            _mm256_shuffle_epi8(low_table, low),
            _mm256_shuffle_epi8(high_table, high),
        );
        // Bytes with no class (no stop), then inverted.
        let plain_key = _mm256_cmpeq_epi8(classes, zero);
        let plain_value = _mm256_cmpeq_epi8(_mm256_and_si256(classes, value_bits), zero);
        key |= u64::from(!(_mm256_movemask_epi8(plain_key) as u32)) << (32 * half);
        value |= u64::from(!(_mm256_movemask_epi8(plain_value) as u32)) << (32 * half);
    }
    (key, value)
}

/// [`masks`] with SSE2 compares, 16 bytes at a time.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks_sse2(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    let (mut key, mut value) = (0u64, 0u64);
    for lane in 0..4 {
        // SAFETY: SSE2 is part of x86_64; the load reads 16 bytes of the
        // 64-byte block (lane < 4), unaligned.
        let (k, v) = unsafe {
            let b = _mm_loadu_si128(block.as_ptr().add(16 * lane).cast());
            let is = |c: u8| _mm_cmpeq_epi8(b, _mm_set1_epi8(c as i8));
            // Signed: controls (< 0x20) and every byte >= 0x80 (negative).
            let low_or_high = _mm_cmplt_epi8(b, _mm_set1_epi8(0x20));
            let v = _mm_or_si128(
                _mm_or_si128(
                    _mm_or_si128(low_or_high, is(b'"')),
                    _mm_or_si128(is(b'\\'), is(0x7f)),
                ),
                _mm_or_si128(_mm_or_si128(is(b'&'), is(b'%')), is(b'+')),
            );
            let k = _mm_or_si128(v, _mm_or_si128(is(b'='), is(b'[')));
            (_mm_movemask_epi8(k) as u16, _mm_movemask_epi8(v) as u16)
        };
        key |= u64::from(k) << (16 * lane);
        value |= u64::from(v) << (16 * lane);
    }
    (key, value)
}

/// The key and value stop masks of one 64-byte block (see [`Stops`]).
#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    masks_by_table(block)
}

/// [`masks`] a byte at a time, from [`CLASS`]: the portable version, and
/// the reference the SIMD ones are tested against.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn masks_by_table(block: &[u8; 64]) -> (u64, u64) {
    let (mut key, mut value) = (0u64, 0u64);
    for (k, &b) in block.iter().enumerate() {
        let class = CLASS[usize::from(b)];
        key |= u64::from(class != PLAIN || b == b'[') << k;
        value |= u64::from(class != PLAIN && class != EQ) << k;
    }
    (key, value)
}

/// The unit of [`copy_blocks`].
const BLOCK: usize = 16;

/// Copies `src[r]` to `to` and returns the end of the copy: in whole
/// [`BLOCK`]s (no call to `memcpy`; at least one) where `src` has the bytes
/// and `BLOCK` more, so up to `BLOCK` bytes past the end are written too.
///
/// # Safety
/// `to` must be valid for `r.len() + BLOCK` bytes of writes and must not
/// overlap `src`.
#[inline(always)]
unsafe fn copy_blocks(to: *mut u8, src: &[u8], r: Range<u32>) -> *mut u8 {
    let (start, end) = (r.start as usize, r.end as usize);
    let len = end.saturating_sub(start);
    // In u64, a u32 end plus a block cannot overflow.
    if start <= end && u64::from(r.end) + BLOCK as u64 <= src.len() as u64 {
        // The blocks end before `end + BLOCK`: inside `src`.
        let from = src.as_ptr().add(start);
        let mut i = 0;
        loop {
            std::ptr::copy_nonoverlapping(from.add(i), to.add(i), BLOCK);
            i += BLOCK;
            if i >= len {
                break;
            }
        }
    } else {
        let text = &src[start..end];
        std::ptr::copy_nonoverlapping(text.as_ptr(), to, len);
    }
    to.add(len)
}

/// Each byte's value as a hex digit, 0xff for a byte that is not one.
static HEX: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut b = 0;
    while b < 256 {
        if let Some(v) = hex(b as u8) {
            t[b] = v;
        }
        b += 1;
    }
    t
};

const fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Params {
        let mut p = Params::default();
        p.parse(s);
        p
    }

    fn pairs(p: &Params) -> Vec<(String, Kind, String, String)> {
        p.list
            .iter()
            .map(|x| {
                (
                    p.text(&x.top).to_owned(),
                    x.kind,
                    p.text(&x.sub).to_owned(),
                    p.text(&x.value).to_owned(),
                )
            })
            .collect()
    }

    /// A block-mask implementation.
    type Masks = fn(&[u8; 64]) -> (u64, u64);

    /// Every block-mask implementation this CPU can run, by name.
    fn mask_impls() -> Vec<(&'static str, Masks)> {
        let mut impls: Vec<(&'static str, Masks)> = vec![("masks", masks)];
        #[cfg(target_arch = "x86_64")]
        {
            impls.push(("sse2", masks_sse2));
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: only pushed when the CPU has AVX2.
                impls.push(("avx2", |b| unsafe { masks_avx2(b) }));
            }
        }
        impls
    }

    #[test]
    fn block_masks_match_the_byte_table() {
        // Every byte value in every lane of a plain block, then blocks of
        // pseudo-random bytes.
        for (name, masks) in mask_impls() {
            for b in 0..=255u8 {
                for at in 0..64 {
                    let mut block = [b'a'; 64];
                    block[at] = b;
                    let want = masks_by_table(&block);
                    assert_eq!(masks(&block), want, "{name}: byte {b:#x} at {at}");
                }
            }
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for _ in 0..2_000 {
                let mut block = [0u8; 64];
                for b in block.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                assert_eq!(masks(&block), masks_by_table(&block), "{name}: {block:?}");
            }
        }
    }

    #[test]
    fn stops_cross_blocks_and_end_at_the_input() {
        let mut input = vec![b'a'; 200];
        for at in [0, 63, 64, 65, 127, 128, 199] {
            input[at] = b'&';
        }
        input[70] = b'=';
        let mut stops = Stops::new(&input);
        let mut seen = Vec::new();
        let mut i = 0;
        while i < input.len() {
            i = stops.next(i, true);
            seen.push(i);
            i += 1;
        }
        assert_eq!(seen, [0, 63, 64, 65, 70, 127, 128, 199]);
        let mut stops = Stops::new(&input[..150]);
        assert_eq!(stops.next(66, false), 127, "a value runs past `=`");
        assert_eq!(stops.next(129, false), 150, "no stop: the end");
    }

    #[test]
    fn decodes_plus_and_percent() {
        let p = parse(b"a=hello+world%21&b=%D0%BF%D1%80&c&=v&&d=");
        assert_eq!(
            pairs(&p),
            [
                ("a".into(), Kind::Plain, "".into(), "hello world!".into()),
                ("b".into(), Kind::Plain, "".into(), "пр".into()),
                ("c".into(), Kind::Plain, "".into(), "".into()),
                ("".into(), Kind::Plain, "".into(), "v".into()),
                ("d".into(), Kind::Plain, "".into(), "".into()),
            ]
        );
    }

    #[test]
    fn non_utf8_after_decoding_is_kept_as_sent() {
        let p = parse(b"a=%FF%FEok&b=caf%E9&c=raw\xff");
        let v: Vec<_> = p.list.iter().map(|x| p.text(&x.value).to_owned()).collect();
        assert_eq!(v, ["%FF%FEok", "caf%E9", "raw%FF"]);
    }

    #[test]
    fn stray_percent_is_literal() {
        let p = parse(b"a=100%&b=%zz&c=%4");
        let v: Vec<_> = p.list.iter().map(|x| p.text(&x.value).to_owned()).collect();
        assert_eq!(v, ["100%", "%zz", "%4"]);
    }

    #[test]
    fn classifies_brackets() {
        let p = parse(b"a[]=1&a%5Bb%5D=2&x[y][0][id]=3&[z]=4&q[=5&r[]x=6");
        assert_eq!(
            pairs(&p),
            [
                ("a".into(), Kind::Array, "".into(), "1".into()),
                ("a".into(), Kind::Nested, "b".into(), "2".into()),
                ("x".into(), Kind::Nested, "y[0][id]".into(), "3".into()),
                ("[z]".into(), Kind::Plain, "".into(), "4".into()),
                ("q[".into(), Kind::Plain, "".into(), "5".into()),
                ("r[]x".into(), Kind::Plain, "".into(), "6".into()),
            ]
        );
    }

    /// The decoder as first written (split on `&`, then `=`, then decode
    /// each part), kept as the reference the one-pass decoder must match.
    fn reference(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fn decode(raw: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut i = 0;
            while i < raw.len() {
                match raw[i] {
                    b'+' => {
                        out.push(b' ');
                        i += 1;
                    }
                    b'%' if i + 2 < raw.len()
                        && hex(raw[i + 1]).is_some()
                        && hex(raw[i + 2]).is_some() =>
                    {
                        out.push(hex(raw[i + 1]).unwrap() << 4 | hex(raw[i + 2]).unwrap());
                        i += 3;
                    }
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            if std::str::from_utf8(&out).is_ok() {
                return out;
            }
            let mut kept = Vec::new();
            for chunk in raw.utf8_chunks() {
                kept.extend_from_slice(chunk.valid().as_bytes());
                for &b in chunk.invalid() {
                    crate::jsonw::percent_byte(&mut kept, b);
                }
            }
            kept
        }
        input
            .split(|&b| b == b'&')
            .filter(|p| !p.is_empty())
            .map(|pair| match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (decode(&pair[..eq]), decode(&pair[eq + 1..])),
                None => (decode(pair), Vec::new()),
            })
            .collect()
    }

    /// Decodes `input` (after a short query when `after_query`, as a form
    /// body follows the query in the arena) and checks every pair against
    /// [`reference`]: text, clean flags, JSON output and classification.
    fn check_against_reference(p: &mut Params, input: &[u8], after_query: bool) {
        p.clear();
        if after_query {
            p.parse(b"q=1&r%5B%5D=2");
        }
        let skip = p.list.len();
        p.parse(input);
        for q in &p.list[skip..] {
            let (key, value) = (p.text(&q.key), p.text(&q.value));
            let clean = |t: &str| crate::jsonw::next_escape(t.as_bytes(), 0).is_none();
            assert_eq!(q.key_clean, clean(key), "{key:?}");
            assert_eq!(q.value_clean, clean(value), "{value:?}");
            let mut written = Vec::new();
            p.write_json(&mut written, &q.value, q.value_clean);
            let mut expected = Vec::new();
            write_str(&mut expected, value);
            assert_eq!(written, expected);
            // Classified as a fresh decoder would classify the key.
            let mut fresh = Params::default();
            let k = fresh.arena.len() as u32;
            fresh.arena.extend_from_slice(key.as_bytes());
            let (kind, top, sub) = fresh.classify(&(k..fresh.arena.len() as u32));
            assert_eq!(
                (q.kind, p.text(&q.top), p.text(&q.sub)),
                (kind, fresh.text(&top), fresh.text(&sub)),
                "{key:?}"
            );
        }
        let got: Vec<_> = p.list[skip..]
            .iter()
            .map(|q| {
                (
                    p.text(&q.key).as_bytes().to_vec(),
                    p.text(&q.value).as_bytes().to_vec(),
                )
            })
            .collect();
        assert_eq!(
            got,
            reference(input),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn pairs_at_block_boundaries_match_the_reference() {
        // Each shape of pair shifted byte by byte across the first two
        // 64-byte block boundaries and the input's end: a filler pair of
        // `shift` bytes in front, so every separator of the shape lands on
        // bytes 62-66 and 126-130 for some shift, and once as the input's
        // last byte.
        let shapes: [&[u8]; 14] = [
            b"a=1",
            b"key=value",
            b"a=",
            b"a",
            b"=v",
            b"a==b",
            b"k=v=w",
            b"a[b]=1",
            b"a[]=2",
            b"sub2=adset%2077",
            b"x+y=p%D0%BFq",
            b"k=bad%FF",
            b"&&",
            b"long_key_name_here=and_a_value_that_spans_more_than_sixteen_bytes",
        ];
        let mut p = Params::default();
        for shape in shapes {
            for shift in 0..140 {
                let mut input = b"f=".to_vec();
                input.resize(shift.max(2), b'v');
                input.truncate(shift);
                for tail in [&b""[..], b"&z=1"] {
                    let mut whole = input.clone();
                    whole.push(b'&');
                    whole.extend_from_slice(shape);
                    whole.extend_from_slice(tail);
                    check_against_reference(&mut p, &whole, false);
                    check_against_reference(&mut p, &whole, true);
                }
            }
        }
    }

    #[test]
    fn one_pass_decoder_matches_the_reference() {
        // Inputs built from the bytes that matter, from a fixed xorshift
        // seed: separators, escapes (good, short and bad), `+`, brackets,
        // multi-byte UTF-8 and raw bytes that are not UTF-8.
        let pieces: [&[u8]; 32] = [
            b"&",
            b"=",
            b"+",
            b"%",
            b"%4",
            b"%41",
            b"%D0%BF",
            b"%FF",
            b"%zz",
            b"a",
            b"key",
            b"[",
            b"]",
            "п".as_bytes(),
            b"\xff",
            b"\xd0",
            b"\"",
            b"\\",
            b"\x01",
            b"\x7f",
            b"%22",
            b"%5C",
            b"%0A",
            b"%5B",
            b"a[b]",
            b"x[]",
            b"clickid",
            b"0123456789abcdef",
            b"sub1",
            b"=v",
            b"&k=",
            b"1.5",
        ];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut p = Params::default();
        for _ in 0..50_000 {
            let mut input = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            for n in 0..(x % 12) {
                let piece = pieces[((x >> (5 * n + 4)) % 32) as usize];
                input.extend_from_slice(piece);
            }
            check_against_reference(&mut p, &input, x % 3 == 0);
        }
    }
}
