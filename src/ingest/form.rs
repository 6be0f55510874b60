//! Query strings and `application/x-www-form-urlencoded` bodies.
//!
//! Written by hand because the contract asks for what no decoding crate
//! does: a value whose percent-decoding is not UTF-8 is kept exactly as it
//! was sent, and `key[]` / `a[b]` keys are classified for grouping. Decoded
//! keys and values go into one reused arena; [`Param`]s are ranges into it,
//! so decoding a request allocates nothing once the arena has grown.

use std::ops::Range;

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
}

/// Decoded parameters of one request: the query's, then the body's.
#[derive(Debug, Default)]
pub struct Params {
    pub arena: Vec<u8>,
    pub list: Vec<Param>,
}

impl Params {
    pub fn clear(&mut self) {
        self.arena.clear();
        self.list.clear();
    }

    pub fn text(&self, r: &Range<u32>) -> &str {
        // The arena only ever receives UTF-8 (see `push_decoded`).
        let bytes = &self.arena[r.start as usize..r.end as usize];
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: every range handed out covers bytes written by
        // `push_decoded`/`push_sub`, which only write validated UTF-8 or
        // ASCII escapes, and ranges never split a character.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// Decodes `a=1&b=2…` and appends its pairs to the list. Empty pairs
    /// (`&&`) are skipped; a key without `=` has the value `""`.
    pub fn parse(&mut self, input: &[u8]) {
        for pair in input.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (raw_key, raw_value) = match memchr::memchr(b'=', pair) {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &b""[..]),
            };
            let key = self.push_decoded(raw_key);
            let value = self.push_decoded(raw_value);
            let (kind, top, sub) = self.classify(&key);
            self.list.push(Param {
                key,
                top,
                sub,
                kind,
                value,
            });
        }
    }

    /// The value of the first plain `name=` among `self.list[within]`.
    pub fn first(&self, within: Range<usize>, name: &str) -> Option<Range<u32>> {
        self.list[within]
            .iter()
            .find(|p| p.kind == Kind::Plain && self.text(&p.key) == name)
            .map(|p| p.value.clone())
    }

    /// Percent-decodes `raw` into the arena. If the result is not UTF-8 the
    /// raw text is stored instead, exactly as sent, with any raw byte that
    /// is itself not UTF-8 written as `%XX`.
    fn push_decoded(&mut self, raw: &[u8]) -> Range<u32> {
        let start = self.arena.len();
        let mut i = 0;
        while i < raw.len() {
            let at = memchr::memchr2(b'%', b'+', &raw[i..]).map_or(raw.len(), |p| i + p);
            self.arena.extend_from_slice(&raw[i..at]);
            if at == raw.len() {
                break;
            }
            if raw[at] == b'+' {
                self.arena.push(b' ');
                i = at + 1;
            } else if let (Some(h), Some(l)) = (
                raw.get(at + 1).and_then(|&c| hex(c)),
                raw.get(at + 2).and_then(|&c| hex(c)),
            ) {
                self.arena.push(h << 4 | l);
                i = at + 3;
            } else {
                // A stray `%` is kept literally, as browsers do.
                self.arena.push(b'%');
                i = at + 1;
            }
        }
        if std::str::from_utf8(&self.arena[start..]).is_err() {
            self.arena.truncate(start);
            for chunk in raw.utf8_chunks() {
                self.arena.extend_from_slice(chunk.valid().as_bytes());
                for &b in chunk.invalid() {
                    crate::envelope::percent_byte(&mut self.arena, b);
                }
            }
        }
        start as u32..self.arena.len() as u32
    }

    /// `a[]` → Array `a`; `a[b]rest` → Nested `a` / `b` + `rest`
    /// (one level of nesting: deeper brackets stay in the member name,
    /// `x[y][0][id]` → `x` / `y[0][id]`); anything else → Plain.
    fn classify(&mut self, key: &Range<u32>) -> (Kind, Range<u32>, Range<u32>) {
        let k = &self.arena[key.start as usize..key.end as usize];
        let plain = (Kind::Plain, key.clone(), 0..0);
        let Some(open) = memchr::memchr(b'[', k) else {
            return plain;
        };
        let Some(close) = memchr::memchr(b']', &k[open..]).map(|p| open + p) else {
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
        let start = self.arena.len() as u32;
        let base = key.start as usize;
        self.arena
            .extend_from_within(base + name.start..base + name.end);
        self.arena
            .extend_from_within(base + rest.start..base + rest.end);
        (Kind::Nested, top, start..self.arena.len() as u32)
    }
}

fn hex(c: u8) -> Option<u8> {
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
}
