//! JSON bodies: validated in one pass over the sender's bytes, copied
//! verbatim.
//!
//! [`super::layout`] classifies the body 64 bytes at a time and walks its
//! structure once: that checks the grammar, finds each top-level member's
//! key and value span, and tells which values hold whitespace. Escapes and
//! UTF-8 are checked on the side; only keys and routing fields (`name`,
//! `projectId`, `uid`) are decoded. Member *values* are copied into the
//! envelope from the sender's own bytes (minified), so `12.50` stays
//! `12.50`. No copy of the body is made.
//!
//! What that pass cannot vouch for (any error, a number it does not read
//! as simd-json would: an exponent, 20 or more characters, a negative
//! routing field) takes the slower path: simd-json parses a scratch copy
//! into a reused tape, and the layout's scan checks what simd-json lets
//! through. That path decides every refusal and its message.

use std::ops::Range;

use simd_json::{value::tape::Tape, Node, StaticNode};

use super::layout::{self, Layout, Unsure};

/// A body that is not valid JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    /// Byte offset of the first error.
    pub at: usize,
    /// What is wrong there, when more can be said than "not JSON".
    pub why: Option<&'static str>,
}

impl Invalid {
    fn at(at: usize) -> Self {
        Self { at, why: None }
    }
}

/// The message for bodies nested deeper than [`super::layout::MAX_DEPTH`].
pub const TOO_DEEP: &str = "the body nests objects and arrays more than 64 levels deep, \
     which consumers' JSON parsers may refuse; send a flatter document";
const _: () = assert!(super::layout::MAX_DEPTH == 64, "TOO_DEEP names the limit");

/// The message for `lone_surrogate`'s refusals.
pub const LONE_SURROGATE: &str = "the body has a \\u escape of half a UTF-16 surrogate pair \
     (\\uD800-\\uDFFF without its other half), which many consumers' JSON parsers reject; \
     send the character as UTF-8 or as a complete pair";

/// What the body's top level was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An object: its members are in [`JsonBody::members`].
    Object,
    /// Any other value, kept whole as `data.body`: the span of the body.
    Other,
}

/// A routing field found among the top-level members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Absent,
    /// Text in [`JsonBody::text`] (a string value, or an integer's digits).
    Text(Range<u32>),
    /// Present but of a type the field cannot take.
    Invalid,
}

/// One top-level member: its decoded key and the span of its raw value.
#[derive(Debug, Clone)]
pub struct Member {
    pub key: Range<u32>,
    pub value: Range<u32>,
    /// The value has no whitespace between its tokens: it can be copied
    /// into the envelope as it is.
    pub compact: bool,
}

/// Reused state for decoding JSON bodies on one core.
pub struct JsonBody {
    buffers: simd_json::Buffers,
    tape: Option<Tape<'static>>,
    scratch: Vec<u8>,
    text: Vec<u8>,
    /// The top-level members' value spans, from [`scan`].
    spans: Vec<(Range<u32>, bool)>,
    /// Where the body's whitespace, structure and scalars are.
    layout: Layout,
    pub members: Vec<Member>,
    pub name: Field,
    pub project_id: Field,
    pub uid: Field,
}

impl Default for JsonBody {
    fn default() -> Self {
        Self {
            buffers: simd_json::Buffers::new(4096),
            tape: None,
            scratch: Vec::new(),
            text: Vec::new(),
            spans: Vec::new(),
            layout: Layout::default(),
            members: Vec::new(),
            name: Field::Absent,
            project_id: Field::Absent,
            uid: Field::Absent,
        }
    }
}

impl std::fmt::Debug for JsonBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonBody")
            .field("members", &self.members)
            .finish()
    }
}

impl JsonBody {
    pub fn text(&self, r: &Range<u32>) -> &str {
        // SAFETY: `text` only receives whole `&str`s from the tape and ASCII
        // digits, and ranges cover exactly what was pushed.
        unsafe { std::str::from_utf8_unchecked(&self.text[r.start as usize..r.end as usize]) }
    }

    /// Appends `body[span]` (`body`: the one last parsed) without the
    /// whitespace between its tokens, so every envelope is a single line.
    pub fn write_minified(&self, out: &mut Vec<u8>, body: &[u8], span: Range<usize>) {
        self.layout.write_minified(out, body, span);
    }

    /// The span of the body last parsed without the whitespace around it.
    pub fn trimmed(&self) -> Range<usize> {
        self.layout.trimmed()
    }

    /// Parses `body`. On error returns the byte offset where it went wrong.
    pub fn parse(&mut self, body: &[u8]) -> Result<Shape, Invalid> {
        match self.one_pass(body) {
            Ok(shape) => Ok(shape),
            // `one_pass` built the layout of `body` before it gave up.
            Err(Unsure) => self.parse_tape_on_layout(body),
        }
    }

    /// The common case, in one pass over `body` (see the module's docs).
    fn one_pass(&mut self, body: &[u8]) -> Result<Shape, Unsure> {
        let Self {
            layout,
            spans,
            members,
            text,
            name,
            project_id,
            uid,
            ..
        } = self;
        members.clear();
        text.clear();
        spans.clear();
        (*name, *project_id, *uid) = (Field::Absent, Field::Absent, Field::Absent);
        layout.build(body);
        if layout.non_ascii() && std::str::from_utf8(body).is_err() {
            return Err(Unsure);
        }
        if !escapes_valid(body, layout.escapes()) {
            return Err(Unsure);
        }
        layout.walk(body, read_as_simd_json, |m: layout::Member| {
            let k = text.len() as u32;
            unescape(&body[m.key], text);
            let key = k..text.len() as u32;
            let slot = match &text[k as usize..] {
                b"name" => Some((&mut *name, true)),
                b"projectId" => Some((&mut *project_id, false)),
                b"uid" => Some((&mut *uid, false)),
                _ => None,
            };
            if let Some((slot, is_name)) = slot {
                *slot = routing_field(is_name, &body[m.value.clone()], text)?;
            }
            let value = m.value.start as u32..m.value.end as u32;
            spans.push((value.clone(), m.compact));
            members.push(Member {
                key,
                value,
                compact: m.compact,
            });
            Ok(())
        })?;
        Ok(match body.get(layout.skip_ws(0)) {
            Some(b'{') => Shape::Object,
            _ => Shape::Other,
        })
    }

    /// The slower path alone, layout included.
    #[cfg(test)]
    fn parse_tape(&mut self, body: &[u8]) -> Result<Shape, Invalid> {
        self.layout.build(body);
        self.parse_tape_on_layout(body)
    }

    /// The slower path, on the layout already built of `body`: simd-json
    /// on a scratch copy, then the layout's checks. One function: the tape
    /// borrows the scratch copy of the body, so the parse, its retry and
    /// the read of the routing fields share one scope.
    fn parse_tape_on_layout(&mut self, body: &[u8]) -> Result<Shape, Invalid> {
        self.members.clear();
        self.text.clear();
        self.name = Field::Absent;
        self.project_id = Field::Absent;
        self.uid = Field::Absent;
        self.scratch.clear();
        self.scratch.extend_from_slice(body);

        let mut tape = self
            .tape
            .take()
            .unwrap_or_else(|| Tape(Vec::with_capacity(256)))
            .reset();
        let mut parsed = simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape);
        if parsed
            .as_ref()
            .is_err_and(|e| *e.error() == simd_json::ErrorType::InvalidNumber)
        {
            // simd-json 0.15 refuses a negative integer below i64::MIN that
            // still fits 64 bits of magnitude (-9223372036854775809 to
            // -18446744073709551615; wider ones it reads as floats). Such a
            // number is valid JSON: the parse is tried again on a copy where
            // each is written as a float of the same length. Only the
            // structure comes from the tape; the envelope copies the value
            // from the body as sent.
            let mut retry = tape.reset();
            self.scratch.clear();
            self.scratch.extend_from_slice(body);
            if float_wide_negatives(&mut self.scratch) {
                parsed = simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut retry);
            }
            tape = retry;
        }
        let shape = match parsed
            .map_err(|e| refused(body, e.index()))
            .and_then(|()| lone_surrogate(body))
            .and_then(|()| scan(body, &self.layout, &mut self.spans))
        {
            Err(e) => Err(e),
            Ok(()) => Ok(match tape.0.first() {
                Some(Node::Object { .. }) => {
                    read_members(&tape.0, &self.spans, &mut self.text, &mut self.members);
                    Shape::Object
                }
                _ => Shape::Other,
            }),
        };
        if matches!(shape, Ok(Shape::Object)) {
            // Routing fields: values of the top-level members.
            let mut at = 1;
            for i in 0..self.members.len() {
                let key = match tape.0[at] {
                    Node::String(k) => k,
                    _ => unreachable!("object keys are strings"),
                };
                let value = &tape.0[at + 1];
                let slot = match key {
                    "name" => Some(&mut self.name),
                    "projectId" => Some(&mut self.project_id),
                    "uid" => Some(&mut self.uid),
                    _ => None,
                };
                // With a key given twice, the last one counts, as it does
                // for the JSON parsers consumers use.
                if let Some(slot) = slot {
                    let v = &self.members[i].value;
                    let raw = &body[v.start as usize..v.end as usize];
                    *slot = match (key, value) {
                        // The event name is text: a number is not one.
                        ("name", Node::String(_)) | ("projectId" | "uid", _) => {
                            field(value, raw, &mut self.text)
                        }
                        _ => Field::Invalid,
                    };
                }
                at += 1 + nodes(value);
            }
        }
        self.tape = Some(tape.reset());
        shape
    }
}

/// A number or literal simd-json reads as the one pass assumes: valid
/// JSON, and a number without an exponent in at most 19 characters (an
/// integer within 64 bits, a float it parses exactly as written).
fn read_as_simd_json(t: &[u8]) -> bool {
    valid_scalar(t)
        && (matches!(t[0], b't' | b'f' | b'n')
            || (t.len() <= 19 && !t.iter().any(|&b| b == b'e' || b == b'E')))
}

/// A routing field from its value as sent (`raw`), as [`field`] reads
/// it from the tape. A negative number is left to the slower path.
fn routing_field(name: bool, raw: &[u8], text: &mut Vec<u8>) -> Result<Field, Unsure> {
    let start = text.len() as u32;
    match raw[0] {
        b'"' => unescape(&raw[1..raw.len() - 1], text),
        // The event name is text: a number is not one.
        _ if name => return Ok(Field::Invalid),
        b'0'..=b'9' if raw.iter().all(u8::is_ascii_digit) => text.extend_from_slice(raw),
        b'-' => return Err(Unsure),
        _ => return Ok(Field::Invalid),
    }
    Ok(Field::Text(start..text.len() as u32))
}

/// Whether each escape (`at`: where their backslashes are) is one JSON
/// allows, and every `\u` escape of a UTF-16 surrogate is half of a pair
/// (see [`lone_surrogate`]).
fn escapes_valid(body: &[u8], at: &[u32]) -> bool {
    let hex4 = |from: usize| -> Option<u16> {
        let digits = body.get(from..from + 4)?;
        let mut unit = 0;
        for &d in digits {
            unit = unit << 4 | (d as char).to_digit(16)? as u16;
        }
        Some(unit)
    };
    let mut i = 0;
    while let Some(&p) = at.get(i) {
        let p = p as usize;
        i += 1;
        match body.get(p + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
            Some(b'u') => match hex4(p + 2) {
                Some(0xD800..=0xDBFF) => {
                    // The low half must follow as the next escape.
                    let low = (body.get(p + 6..p + 8) == Some(b"\\u"))
                        .then(|| hex4(p + 8))
                        .flatten();
                    if !matches!(low, Some(0xDC00..=0xDFFF)) || at.get(i) != Some(&(p as u32 + 6)) {
                        return false;
                    }
                    i += 1;
                }
                Some(0xDC00..=0xDFFF) | None => return false,
                Some(_) => {}
            },
            _ => return false,
        }
    }
    true
}

/// Appends the text of a JSON string's contents (between its quotes,
/// escapes already checked by [`escapes_valid`]), decoded.
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &raw[i..]) {
        out.extend_from_slice(&raw[i..i + p]);
        i += p;
        let hex4 = |from: usize| {
            let digits = std::str::from_utf8(&raw[from..from + 4]).unwrap_or("0");
            u32::from_str_radix(digits, 16).unwrap_or(0)
        };
        let byte = match raw[i + 1] {
            b'u' => {
                let mut unit = hex4(i + 2);
                i += 6;
                if (0xD800..0xDC00).contains(&unit) {
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (hex4(i + 2) - 0xDC00);
                    i += 6;
                }
                let c = char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER);
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            other => other,
        };
        out.push(byte);
        i += 2;
    }
    out.extend_from_slice(&raw[i..]);
}

/// Rewrites, outside strings, each integer from -9223372036854775809 to
/// -18446744073709551615 as `-1e000…` of the same length (a float simd-json
/// reads). Returns whether it rewrote any. An error path: a plain byte loop.
fn float_wide_negatives(doc: &mut [u8]) -> bool {
    const I64_MIN_MAGNITUDE: u64 = 1 << 63;
    let (mut i, mut any) = (0, false);
    while i < doc.len() {
        match doc[i] {
            b'"' => {
                // Past the string (its escapes included).
                i += 1;
                while i < doc.len() && doc[i] != b'"' {
                    i += if doc[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' => {
                let digits = doc[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let end = i + 1 + digits;
                let integer = !matches!(doc.get(end), Some(b'.' | b'e' | b'E'));
                let magnitude = std::str::from_utf8(&doc[i + 1..end])
                    .ok()
                    .and_then(|d| d.parse::<u64>().ok());
                // (No leading zero: `parse` would take one, JSON does not.)
                if integer && magnitude.is_some_and(|m| m > I64_MIN_MAGNITUDE) && doc[i + 1] != b'0'
                {
                    // 19 or 20 digits: `-1e` and 17 or more zeros.
                    doc[i + 1] = b'1';
                    doc[i + 2] = b'e';
                    doc[i + 3..end].fill(b'0');
                    any = true;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    any
}

fn nodes(n: &Node<'_>) -> usize {
    match n {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

/// A routing field's text from its tape node, or from `raw` (its value as
/// sent) for an integer too wide for 64 bits, which simd-json reads as a
/// float (a 20–22-digit `uid`).
fn field(value: &Node<'_>, raw: &[u8], text: &mut Vec<u8>) -> Field {
    let start = text.len() as u32;
    match value {
        Node::String(s) => text.extend_from_slice(s.as_bytes()),
        Node::Static(StaticNode::U64(n)) => {
            text.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes())
        }
        Node::Static(StaticNode::I64(n)) if *n >= 0 => {
            text.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes())
        }
        Node::Static(StaticNode::F64(_)) if raw.iter().all(u8::is_ascii_digit) => {
            text.extend_from_slice(raw)
        }
        _ => return Field::Invalid,
    }
    Field::Text(start..text.len() as u32)
}

/// Pairs each top-level key from the tape with its value span from [`scan`].
fn read_members(
    tape: &[Node<'_>],
    spans: &[(Range<u32>, bool)],
    text: &mut Vec<u8>,
    members: &mut Vec<Member>,
) {
    let mut at = 1;
    let Node::Object { len, .. } = tape[0] else {
        return;
    };
    debug_assert_eq!(len, spans.len());
    for (value, compact) in spans.iter().take(len) {
        let Node::String(key) = tape[at] else {
            unreachable!("object keys are strings")
        };
        let k = text.len() as u32;
        text.extend_from_slice(key.as_bytes());
        members.push(Member {
            key: k..text.len() as u32,
            value: value.clone(),
            compact: *compact,
        });
        at += 1 + nodes(&tape[at + 1]);
    }
}

/// Checks every number and literal of a document simd-json has accepted
/// against the JSON grammar and, when the top level is an object, collects
/// each member's value span (without the whitespace around it) and whether
/// the value is compact (no whitespace inside).
///
/// simd-json accepts a few malformed numbers (a NUL byte right after a
/// digit; junk inside an integer too wide for 64 bits, read as a float).
/// Values are copied into envelopes verbatim, so what simd-json lets
/// through must still be JSON.
fn scan(raw: &[u8], layout: &Layout, spans: &mut Vec<(Range<u32>, bool)>) -> Result<(), Invalid> {
    layout
        .members(raw, spans, valid_scalar)
        .map_err(|at| Invalid {
            at,
            // Scalars start with neither: a bracket is one nesting too deep.
            why: matches!(raw[at], b'{' | b'[').then_some(TOO_DEEP),
        })
}

/// Refuses a `\uXXXX` escape of half a surrogate pair in a document
/// simd-json has accepted. The grammar lets one through, but the envelope
/// copies values verbatim and many consumers' parsers (serde_json, Go's
/// strict decoders) reject it; simd-json itself turns a lone high half in
/// a key into U+0000. Bodies without `\u` pay one `memmem` search.
fn lone_surrogate(body: &[u8]) -> Result<(), Invalid> {
    let hex4 = |at: usize| -> Option<u16> {
        let digits = body.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut from = 0;
    while let Some(found) = memchr::memmem::find(&body[from..], b"\\u") {
        let at = from + found;
        from = at + 2;
        // An escape only if the backslash is not itself escaped: an odd
        // run of backslashes ends at `at` (outside strings there are none
        // in a document simd-json accepted).
        let run = body[..=at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if run % 2 == 0 {
            continue;
        }
        let Some(unit) = hex4(at + 2) else { continue };
        match unit {
            0xD800..=0xDBFF => {
                let low = (body.get(at + 6..at + 8) == Some(b"\\u"))
                    .then(|| hex4(at + 8))
                    .flatten();
                if !matches!(low, Some(0xDC00..=0xDFFF)) {
                    return Err(Invalid {
                        at,
                        why: Some(LONE_SURROGATE),
                    });
                }
                from = at + 12;
            }
            0xDC00..=0xDFFF => {
                return Err(Invalid {
                    at,
                    why: Some(LONE_SURROGATE),
                })
            }
            _ => from = at + 6,
        }
    }
    Ok(())
}

/// Where a body simd-json refused (at `reported`) goes wrong. simd-json
/// reports some errors (bytes that are not UTF-8, a bad escape or half a
/// surrogate pair, a control character or the end of the input inside a
/// string) at offset 0; this finds the first of those itself (an error
/// path: plain byte loops) and takes the earlier.
fn refused(body: &[u8], reported: usize) -> Invalid {
    // A document that does not start with a value goes wrong right there
    // (and then simd-json's 0 is the truth).
    let first = body
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match first.map(|i| (i, body[i])) {
        None => return Invalid::at(body.len()),
        Some((_, b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')) => {}
        Some((i, _)) => return Invalid::at(i),
    }
    let utf8 = std::str::from_utf8(body).err().map(|e| e.valid_up_to());
    // simd-json checks UTF-8 before the structure and then says 0: a
    // structural error before the first bad byte shows in a copy with the
    // bad bytes made ASCII.
    let structural = match (reported, utf8) {
        (0, Some(_)) => structural_error(body),
        (0, None) => None,
        (at, _) => Some(at),
    };
    let candidates = [
        structural.map(Invalid::at),
        utf8.map(Invalid::at),
        first_string_error(body).map(Invalid::at),
        lone_surrogate(body).err(),
    ];
    let first = candidates.into_iter().flatten().min_by_key(|e| e.at);
    first.unwrap_or(Invalid::at(reported))
}

/// simd-json's error offset for `body` with every byte that is not UTF-8
/// replaced by `x` (an error path: allocates), when it is not 0.
fn structural_error(body: &[u8]) -> Option<usize> {
    let mut copy = body.to_vec();
    let mut at = 0;
    while let Err(e) = std::str::from_utf8(&copy[at..]) {
        let bad = at + e.valid_up_to();
        let len = e.error_len().unwrap_or(copy.len() - bad);
        copy[bad..bad + len].fill(b'x');
        at = bad + len;
    }
    match simd_json::to_tape(&mut copy) {
        Err(e) if e.index() > 0 => Some(e.index()),
        _ => None,
    }
}

/// The offset of the first byte that cannot be in a JSON string where it
/// is (a control character, a bad escape), or of the opening quote of a
/// string the body never closes.
fn first_string_error(body: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'"' {
            i += 1;
            continue;
        }
        let open = i;
        i += 1;
        loop {
            match body.get(i) {
                None => return Some(open),
                Some(b'"') => break,
                Some(b'\\') => match body.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u') => {
                        let Some(hex) = body.get(i + 2..i + 6) else {
                            return Some(open);
                        };
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return Some(i);
                        }
                        i += 6;
                    }
                    _ => return Some(i),
                },
                Some(&b) if b < 0x20 => return Some(i),
                Some(_) => i += 1,
            }
        }
        i += 1;
    }
    None
}

/// `true`, `false`, `null` or `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn valid_scalar(t: &[u8]) -> bool {
    if matches!(t, b"true" | b"false" | b"null") {
        return true;
    }
    let digits = |t: &[u8], i: usize| i + t[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(t, i),
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        let end = digits(t, i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(t, i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == t.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Given `s[start] == b'"'`, the index just past the closing quote.
    ///
    /// Most strings in postbacks are short: a plain loop finds their end
    /// before a SIMD search would have finished its setup; a string still open
    /// after 32 bytes continues with `memchr2`.
    fn string_end(s: &[u8], start: usize) -> usize {
        let mut i = start + 1;
        let short = s.len().min(i + 32);
        while i < short {
            match s[i] {
                b'"' => return i + 1,
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        while let Some(p) = s
            .get(i..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            if s[i + p] == b'\\' {
                i += p + 2;
            } else {
                return i + p + 1;
            }
        }
        s.len()
    }

    const WS: u8 = 1;
    const QUOTE: u8 = 2;
    const OPEN: u8 = 3;
    const CLOSE: u8 = 4;
    const COMMA: u8 = 5;
    const COLON: u8 = 6;
    /// Anything else: part of a literal or a number.
    const SCALAR: u8 = 0;

    static CLASS: [u8; 256] = {
        let mut t = [SCALAR; 256];
        t[b' ' as usize] = WS;
        t[b'\t' as usize] = WS;
        t[b'\r' as usize] = WS;
        t[b'\n' as usize] = WS;
        t[b'"' as usize] = QUOTE;
        t[b'{' as usize] = OPEN;
        t[b'[' as usize] = OPEN;
        t[b'}' as usize] = CLOSE;
        t[b']' as usize] = CLOSE;
        t[b',' as usize] = COMMA;
        t[b':' as usize] = COLON;
        t
    };

    /// The byte-at-a-time scan [`scan`] replaced, kept as its reference: one
    /// pass over a document simd-json has accepted: checks every literal
    /// and number token against the JSON grammar, and when the top level is an
    /// object, collects each member's value span (without the whitespace around
    /// it) and whether the value is compact (no whitespace inside).
    ///
    /// simd-json accepts a few malformed numbers (a NUL byte right after a
    /// digit; junk inside an integer too wide for 64 bits, read as a float).
    /// Values are copied into envelopes verbatim, so what simd-json lets
    /// through must still be JSON.
    fn scan_bytes(raw: &[u8], spans: &mut Vec<(Range<u32>, bool)>) -> Result<(), Invalid> {
        spans.clear();
        let mut depth = 0usize;
        // The member value being read (top-level object only): its start, and
        // whether whitespace separated two of its tokens.
        let mut value: Option<(usize, bool)> = None;
        // Whitespace since the last token.
        let mut gap = false;
        // End of the last token.
        let mut last = 0;
        let mut i = 0;
        while i < raw.len() {
            let class = CLASS[usize::from(raw[i])];
            if class == WS {
                gap = true;
                i += 1;
                continue;
            }
            let ends_member = depth == 1 && matches!(class, CLOSE | COMMA);
            if let Some((_, inner)) = &mut value {
                *inner |= gap && !ends_member;
            }
            gap = false;
            match class {
                QUOTE => i = string_end(raw, i),
                OPEN => {
                    depth += 1;
                    i += 1;
                }
                CLOSE | COMMA => {
                    if ends_member {
                        if let Some((start, inner)) = value.take() {
                            spans.push((start as u32..last as u32, !inner));
                        }
                    }
                    if class == CLOSE {
                        depth = depth.saturating_sub(1);
                    }
                    i += 1;
                }
                COLON => {
                    i += 1;
                    if depth == 1 {
                        let start = raw[i..]
                            .iter()
                            .position(|&b| CLASS[usize::from(b)] != WS)
                            .map_or(raw.len(), |p| i + p);
                        value = Some((start, false));
                        i = start;
                        last = i;
                        continue;
                    }
                }
                _ => {
                    let end = raw[i..]
                        .iter()
                        .position(|&b| CLASS[usize::from(b)] != SCALAR)
                        .map_or(raw.len(), |p| i + p);
                    if !valid_scalar(&raw[i..end]) {
                        return Err(Invalid::at(i));
                    }
                    i = end;
                }
            }
            last = i;
        }
        Ok(())
    }

    /// The byte-at-a-time minifier [`Layout::write_minified`] replaced,
    /// kept as its reference.
    fn minify_bytes(out: &mut Vec<u8>, value: &[u8]) {
        let mut i = 0;
        while i < value.len() {
            match value[i] {
                b' ' | b'\t' | b'\r' | b'\n' => i += 1,
                b'"' => {
                    let end = string_end(value, i);
                    out.extend_from_slice(&value[i..end]);
                    i = end;
                }
                _ => {
                    let run = value[i..]
                        .iter()
                        .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'"'))
                        .map_or(value.len(), |p| i + p);
                    out.extend_from_slice(&value[i..run]);
                    i = run;
                }
            }
        }
    }

    fn members(body: &str) -> Vec<(String, String)> {
        let mut j = JsonBody::default();
        assert_eq!(j.parse(body.as_bytes()).unwrap(), Shape::Object);
        j.members
            .iter()
            .map(|m| {
                (
                    j.text(&m.key).to_owned(),
                    body[m.value.start as usize..m.value.end as usize].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn members_keep_raw_values_and_decoded_keys() {
        let body = r#" { "a" : 12.50 , "b\"q":{"x":[1, {"y":"}]"}]}, "c":"s\"t", "d":null,
            "big": 123456789012345678901234567890 , "e":[] } "#;
        assert_eq!(
            members(body),
            [
                ("a".into(), "12.50".into()),
                ("b\"q".into(), r#"{"x":[1, {"y":"}]"}]}"#.into()),
                ("c".into(), r#""s\"t""#.into()),
                ("d".into(), "null".into()),
                ("big".into(), "123456789012345678901234567890".into()),
                ("e".into(), "[]".into()),
            ]
        );
    }

    /// Every integer is valid JSON, however wide: the ones simd-json
    /// refuses by itself (negative, below i64::MIN, 19–20 digits) too, kept
    /// digit for digit; as a routing field a negative one is invalid.
    #[test]
    fn negative_integers_of_any_width() {
        for n in [
            "-9223372036854775808",
            "-9223372036854775809",
            "-10000000000000000000",
            "-18446744073709551615",
            "-18446744073709551616",
            "-99999999999999999999",
            "-123456789012345678901234567890",
        ] {
            let body =
                format!(r#"{{"a":{n},"b":[{n}, "{n}", "-9223372036854775809"],"c":{{"d":{n}}}}}"#);
            let m = members(&body);
            assert_eq!(m[0], ("a".into(), n.into()));
            assert_eq!(
                m[1],
                (
                    "b".into(),
                    format!(r#"[{n}, "{n}", "-9223372036854775809"]"#)
                )
            );
            assert_eq!(m[2], ("c".into(), format!(r#"{{"d":{n}}}"#)));
            let mut j = JsonBody::default();
            j.parse(format!(r#"{{"projectId":{n},"uid":{n}}}"#).as_bytes())
                .unwrap();
            assert_eq!((&j.project_id, &j.uid), (&Field::Invalid, &Field::Invalid));
        }
        let mut j = JsonBody::default();
        // Still refused: not numbers, or not JSON's grammar.
        for bad in [
            &br#"[-09223372036854775809]"#[..],
            br#"[-9223372036854775809x]"#,
            br#"[--9223372036854775809]"#,
            br#"[-]"#,
            br#"{"a":-9223372036854775809"#,
        ] {
            assert!(j.parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn routing_fields() {
        let mut j = JsonBody::default();
        j.parse(br#"{"name":"lead","projectId":42,"uid":"12345678901","x":{"name":"no"}}"#)
            .unwrap();
        let text = |f: &Field| match f {
            Field::Text(r) => j.text(r).to_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!(text(&j.name), "lead");
        assert_eq!(text(&j.project_id), "42");
        assert_eq!(text(&j.uid), "12345678901");

        j.parse(br#"{"name":"first","name":"last"}"#).unwrap();
        let Field::Text(r) = &j.name else {
            panic!("{:?}", j.name)
        };
        assert_eq!(j.text(r), "last", "the last of a repeated key counts");

        j.parse(br#"{"projectId":-1,"name":[1]}"#).unwrap();
        assert_eq!(j.project_id, Field::Invalid);
        assert_eq!(j.name, Field::Invalid);
        assert_eq!(j.uid, Field::Absent);
    }

    #[test]
    fn other_shapes_and_errors() {
        let mut j = JsonBody::default();
        assert_eq!(j.parse(b" [1,2] ").unwrap(), Shape::Other);
        j.parse(b" [1, 2] \n").unwrap();
        assert_eq!(j.trimmed(), 1..7);
        assert_eq!(j.parse(b"\"s\"").unwrap(), Shape::Other);
        assert!(j.parse(b"{\"a\":}").is_err());
        assert!(j.parse(b"{\"a\":1").is_err());
        assert!(j.parse(b"{\"a\":\"\xff\"}").is_err());
        // Malformed numbers simd-json lets through are refused.
        for bad in [
            &b"{\"a\":1\x00}"[..],
            br#"{"a":12345678901234567890123\4567890}"#,
            br#"{"a":12345678901234567890123x4567890}"#,
            br#"{"a":[99999999999999999999-5]}"#,
            br#"[01]"#,
            br#"{"a":1.}"#,
            br#"{"a":1e}"#,
        ] {
            assert!(j.parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let good =
            br#"[0, -0.5e+10, 1E3, 12.50, true, false, null, 123456789012345678901234567890]"#;
        assert_eq!(j.parse(good).unwrap(), Shape::Other);
        // the reused tape still works after an error
        assert_eq!(members(r#"{"k":true}"#), [("k".into(), "true".into())]);
    }

    /// Each refusal names a byte inside the token that is wrong: the
    /// offset lies between where that token starts and the byte that
    /// breaks it (simd-json reports some string errors at 0 by itself).
    #[test]
    fn errors_point_at_the_bad_token() {
        let mut j = JsonBody::default();
        // (body, where the offset may be, refused as half a surrogate pair)
        let cases: [(&[u8], std::ops::RangeInclusive<usize>, bool); 21] = [
            (b"{\"a\":1\x00}", 5..=6, false),
            (br#"{"a":12345678901234567890123\4567890}"#, 5..=28, false),
            (br#"{"a":[99999999999999999999-5]}"#, 6..=26, false),
            (br#"{"a":01}"#, 5..=6, false),
            (br#"{"a":}"#, 5..=5, false),
            (br#"{"a":1"#, 5..=6, false),
            (b"[1,2,", 4..=5, false),
            (b"{\"a\":\"\xff\"}", 6..=6, false),
            (br#"{"a":"1" "b":2}"#, 8..=9, false),
            (b"  [1 2]", 4..=5, false),
            (br#"{"a":"\x"}"#, 6..=7, false),
            (b"{\"a\":\"x\x01y\"}", 7..=7, false),
            (br#"{"aaaaaaaaa":"x"#, 13..=15, false),
            (br#"{"a":"\u12"}"#, 6..=9, false),
            (br#"{"a":"\ud800"}"#, 6..=6, true),
            (br#"{"\ud800":"x"}"#, 2..=2, true),
            (br#"{"a":"\udc00 "}"#, 6..=6, true),
            (br#"{"a":"\ud800\u0041"}"#, 6..=6, true),
            // simd-json says 0 for these; the first error is elsewhere.
            (b"] \"\x01\"", 0..=0, false),
            (br#"x "a\q""#, 0..=0, false),
            (b"{\"a\":1,,\"b\":\"\xff\"}", 7..=7, false),
        ];
        for (body, want, surrogate) in cases {
            let e = j.parse(body).expect_err(&String::from_utf8_lossy(body));
            assert!(
                want.contains(&e.at),
                "{}: at {} not in {want:?}",
                String::from_utf8_lossy(body),
                e.at
            );
            assert_eq!(
                e.why == Some(LONE_SURROGATE),
                surrogate,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // A complete pair, and an escaped backslash before `u`, are fine.
        for good in [
            &br#"{"a":"\ud83d\ude00","\uD83D\uDE00":1}"#[..],
            br#"{"a":"\\ud800"}"#,
            br#"{"a":"\\\ud83d\ude00 \u00e9"}"#,
        ] {
            assert_eq!(
                j.parse(good),
                Ok(Shape::Object),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        let key = members(r#"{"\ud83d\ude00":1}"#);
        assert_eq!(key, [("\u{1F600}".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let mut j = JsonBody::default();
        let nested = |depth: usize, open: &str, close: &str| {
            let mut s = open.repeat(depth);
            s.push('1');
            s.push_str(&close.repeat(depth));
            s
        };
        let max = super::super::layout::MAX_DEPTH;
        assert_eq!(j.parse(nested(max, "[", "]").as_bytes()), Ok(Shape::Other));
        let e = j.parse(nested(max + 1, "[", "]").as_bytes()).unwrap_err();
        assert_eq!(
            (e.at, e.why),
            (max, Some(TOO_DEEP)),
            "the bracket one too deep"
        );
        let objects = format!(r#"{{"a":{}}}"#, nested(max, r#"{"b":"#, "}"));
        let e = j.parse(objects.as_bytes()).unwrap_err();
        assert_eq!(e.why, Some(TOO_DEEP));
        assert_eq!(&objects[e.at..e.at + 5], r#"{"b":"#);
        // 300 000 levels: refused, not a stack overflow.
        let e = j.parse(nested(300_000, "[", "]").as_bytes()).unwrap_err();
        assert_eq!(e.at, max);
    }

    #[test]
    fn wide_integer_uid_keeps_its_digits() {
        let mut j = JsonBody::default();
        j.parse(br#"{"uid":123456789012345678901,"projectId":1e3}"#)
            .unwrap();
        let Field::Text(r) = &j.uid else {
            panic!("{:?}", j.uid)
        };
        assert_eq!(j.text(r), "123456789012345678901");
        assert_eq!(j.project_id, Field::Invalid, "a float is not an integer");
    }

    /// A small random JSON generator: values with strings (spaces, escaped
    /// quotes and backslashes), numbers, literals, arrays and objects, and
    /// random whitespace between tokens.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn ws(&mut self, out: &mut String) {
            for _ in 0..self.next() % 3 {
                out.push([' ', '\n', '\t', ' '][(self.next() % 4) as usize]);
            }
        }
        fn value(&mut self, out: &mut String, depth: u32) {
            match self.next() % if depth > 2 { 5 } else { 7 } {
                0 => out.push_str(
                    ["\"a b\"", "\"q\\\"x\"", "\"\\\\\"", "\"\"", "\"}]\""]
                        [(self.next() % 5) as usize],
                ),
                1 => out.push_str(
                    ["0", "-12.50", "1e9", "123456789012345678901234567890"]
                        [(self.next() % 4) as usize],
                ),
                2 => out.push_str(["true", "false", "null"][(self.next() % 3) as usize]),
                3 | 4 => out.push_str("\"s\""),
                5 => {
                    out.push('[');
                    for n in 0..self.next() % 3 {
                        if n > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        self.value(out, depth + 1);
                        self.ws(out);
                    }
                    out.push(']');
                }
                _ => {
                    out.push('{');
                    for n in 0..self.next() % 3 {
                        if n > 0 {
                            out.push(',');
                        }
                        self.ws(out);
                        out.push_str(&format!("\"k{n}\""));
                        self.ws(out);
                        out.push(':');
                        self.ws(out);
                        self.value(out, depth + 1);
                        self.ws(out);
                    }
                    out.push('}');
                }
            }
        }
    }

    /// What a parse found, to compare the one pass with the simd-json path.
    fn outcome(j: &JsonBody, shape: Shape) -> String {
        let field = |f: &Field| match f {
            Field::Text(r) => format!("{:?}", j.text(r)),
            other => format!("{other:?}"),
        };
        let members: Vec<_> = (j.members.iter())
            .map(|m| (j.text(&m.key).to_owned(), m.value.clone(), m.compact))
            .collect();
        format!(
            "{shape:?} {members:?} {:?} name {} projectId {} uid {}",
            j.spans,
            field(&j.name),
            field(&j.project_id),
            field(&j.uid)
        )
    }

    /// Every document the one pass accepts, the simd-json path accepts
    /// too, with the same members, spans and routing fields; every one it
    /// does not vouch for goes that path. Valid documents and mutations
    /// of them (bytes deleted, replaced, inserted: brackets, quotes,
    /// escapes, control and non-UTF-8 bytes).
    #[test]
    fn one_pass_agrees_with_the_simd_json_path() {
        let mut g = Gen(0x5EED_0F0E_9A55_1234);
        let (mut fast, mut slow) = (JsonBody::default(), JsonBody::default());
        let (mut vouched, mut valid_vouched, mut valid) = (0, 0, 0);
        let mut docs = vec![
            r#"{"name":"le\u0061d","projectId":"4\u0032","uid":12345678901,"k\"\n":"\ud83d\ude00\/"}"#.to_owned(),
            r#"{"projectId":0,"uid":"0012345678901","name":"x"}"#.to_owned(),
            r#"{"projectId":-0,"name":1}"#.to_owned(),
            r#"{"projectId":1.5,"uid":true,"name":null}"#.to_owned(),
            r#"{"a":"\u00e9\\","\u0430":[]}"#.to_owned(),
            " [ ] ".to_owned(),
            "\"s\"".to_owned(),
            "-12.50".to_owned(),
            "{}".to_owned(),
        ];
        for _ in 0..4_000 {
            let mut doc = String::from("{");
            for n in 0..g.next() % 6 {
                if n > 0 {
                    doc.push(',');
                }
                g.ws(&mut doc);
                let key = ["name", "projectId", "uid", "a", "b\\u0041"][(g.next() % 5) as usize];
                doc.push_str(&format!("\"{key}\":"));
                g.ws(&mut doc);
                g.value(&mut doc, 0);
            }
            doc.push('}');
            docs.push(doc);
        }
        let bytes: &[&[u8]] = &[
            b"{",
            b"}",
            b"[",
            b"]",
            b",",
            b":",
            b"\"",
            b"\\",
            b"\\u",
            b"\\ud800",
            b"\\udc00",
            b"1",
            b"-",
            b".",
            b"e",
            b"t",
            b" ",
            b"\n",
            b"\x01",
            b"\xff",
            b"\xd0\xb0",
            b"\x00",
        ];
        for doc in &docs {
            let mut variants = vec![doc.as_bytes().to_vec()];
            for _ in 0..6 {
                let mut m = doc.as_bytes().to_vec();
                let at = (g.next() % (m.len() as u64 + 1)) as usize;
                let insert = bytes[(g.next() % bytes.len() as u64) as usize];
                match g.next() % 3 {
                    0 if at < m.len() => {
                        m.remove(at);
                    }
                    1 if at < m.len() => {
                        m.splice(at..at + 1, insert.iter().copied());
                    }
                    _ => {
                        m.splice(at..at, insert.iter().copied());
                    }
                }
                variants.push(m);
            }
            for body in variants {
                let want = slow.parse_tape(&body);
                if want.is_ok() {
                    valid += 1;
                }
                let Ok(shape) = fast.one_pass(&body) else {
                    continue;
                };
                vouched += 1;
                let show = String::from_utf8_lossy(&body);
                let want =
                    want.unwrap_or_else(|e| panic!("{show}: one pass took, simd-json {e:?}"));
                valid_vouched += 1;
                assert_eq!(outcome(&fast, shape), outcome(&slow, want), "{show}");
                // And `parse` gives the same.
                assert_eq!(fast.parse(&body), Ok(shape), "{show}");
            }
        }
        assert!(vouched == valid_vouched && vouched > 0);
        // Most valid documents take the one pass (the generator's
        // `1e9` and 30-digit numbers, and negative routing fields, do not).
        assert!(valid_vouched * 2 > valid, "{valid_vouched} of {valid}");
    }

    #[test]
    fn member_spans_and_compactness_match_the_document() {
        let mut g = Gen(0x1234_5678_9ABC_DEF1);
        let mut j = JsonBody::default();
        for _ in 0..3_000 {
            // A top-level object whose members' texts are known.
            let (mut doc, mut values) = (String::from("{"), Vec::new());
            g.ws(&mut doc);
            for n in 0..g.next() % 5 {
                if n > 0 {
                    doc.push(',');
                    g.ws(&mut doc);
                }
                doc.push_str(&format!("\"m{n}\""));
                g.ws(&mut doc);
                doc.push(':');
                g.ws(&mut doc);
                let mut v = String::new();
                g.value(&mut v, 0);
                doc.push_str(&v);
                values.push(v);
                g.ws(&mut doc);
            }
            doc.push('}');
            assert_eq!(j.parse(doc.as_bytes()), Ok(Shape::Object), "{doc}");
            assert_eq!(j.members.len(), values.len(), "{doc}");
            for (m, v) in j.members.iter().zip(&values) {
                let range = m.value.start as usize..m.value.end as usize;
                let span = &doc[range.clone()];
                assert_eq!(span, v, "{doc}");
                let (mut minified, mut reference) = (Vec::new(), Vec::new());
                j.write_minified(&mut minified, doc.as_bytes(), range);
                minify_bytes(&mut reference, span.as_bytes());
                assert_eq!(minified, reference, "{span:?} in {doc}");
                assert_eq!(m.compact, minified == span.as_bytes(), "{span:?} in {doc}");
            }
        }
    }

    /// Documents long enough to span several 64-byte blocks, shifted by
    /// 0-64 bytes of leading whitespace so strings, escapes and backslash
    /// runs meet every block boundary: spans, compactness, errors and the
    /// minified text equal the byte-at-a-time reference's.
    #[test]
    fn block_layout_matches_the_byte_scan() {
        let mut g = Gen(0x0DDB_A11C_AFE5_1234);
        let mut j = JsonBody::default();
        let mut docs = vec![
            r#"{"a":"\\\"x", "b" : [ "\\", "\"" ] , "c":{"d":"e\\"}}"#.to_owned(),
            r#"{"k": "a string long enough to cross a block boundary, with \" quotes \\ and , : { [ inside", "n": -1.5e+3 }"#.to_owned(),
            r#"{"x": 01}"#.to_owned(),
            r#"{"x": [1, 2, 1.]}"#.to_owned(),
            "[ 1 , \"two\" , { \"three\" : 3 } ]".to_owned(),
            // simd-json accepts these; the scan must refuse them.
            "{\"a\":1\0}".to_owned(),
            r#"{"a": "s", "b":12345678901234567890123x4567890}"#.to_owned(),
            r#"{"a":[99999999999999999999-5]}"#.to_owned(),
        ];
        let mut refused = 0;
        for _ in 0..300 {
            let mut doc = String::from("{");
            for n in 0..1 + g.next() % 8 {
                if n > 0 {
                    doc.push(',');
                }
                g.ws(&mut doc);
                doc.push_str(&format!("\"m{n}\":"));
                g.ws(&mut doc);
                g.value(&mut doc, 0);
            }
            doc.push('}');
            docs.push(doc);
        }
        for doc in &docs {
            for shift in 0..=64 {
                let body = format!("{}{doc}", " ".repeat(shift));
                let raw = body.as_bytes();
                let parsed = j.parse(raw);
                let mut reference = Vec::new();
                let expected = scan_bytes(raw, &mut reference);
                // Where simd-json refuses the document, the scan never runs.
                let accepted = simd_json::to_owned_value(&mut raw.to_vec()).is_ok();
                match parsed {
                    Err(_) if !accepted => {}
                    Err(e) => {
                        assert_eq!(Err(e), expected, "{body}");
                        refused += 1;
                    }
                    Ok(_) => {
                        assert_eq!(expected, Ok(()), "{body}");
                        assert_eq!(j.spans, reference, "{body}");
                    }
                }
                if parsed.is_ok() {
                    let (mut minified, mut expected) = (Vec::new(), Vec::new());
                    j.write_minified(&mut minified, raw, 0..raw.len());
                    minify_bytes(&mut expected, raw);
                    assert_eq!(minified, expected, "{body}");
                }
            }
        }
        assert_eq!(
            refused,
            3 * 65,
            "each bad number refused by the scan, at every shift"
        );
    }
}
