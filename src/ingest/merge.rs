//! Grouping decoded parameters into the members of `data`.
//!
//! Repeated keys and `key[]` become arrays, `a[b]` becomes a member of an
//! object `a`, members appear in the order of their first occurrence. Done
//! with sorts over reused index vectors (O(n log n), no hashing, no
//! allocation in steady state), because a 1 MiB form can carry 100 000 keys;
//! up to `SMALL` entries (a typical postback has 5–30) a quadratic scan
//! with a length check before each comparison does the same grouping in a
//! fraction of the sort's time.

use std::ops::Range;

use super::form::{tag, Kind, Param, Params};

#[derive(Debug, Clone, Copy)]
struct Run {
    first: u32,
    start: u32,
    len: u32,
}

/// Parameters sorted by key: equal keys adjacent, runs in key order, and
/// the emission order of the runs (first occurrence).
#[derive(Debug, Default)]
pub struct Sorted {
    order: Vec<u32>,
    runs: Vec<Run>,
    emit: Vec<u32>,
    /// Runs are in first-occurrence order, not key order (small inputs):
    /// `contains` scans instead of searching.
    scanned: bool,
    /// Every key once and plain (`a=1`, no `a[]`/`a[b]`): the members are
    /// the parameters of `range` in order, each `"key":"value"`.
    singles: bool,
    range: Range<usize>,
}

/// Up to this many entries, grouping scans instead of sorting.
const SMALL: usize = 24;

/// Reused scratch for grouping one request's parameters.
#[derive(Debug, Default)]
pub struct Grouper {
    pub query: Sorted,
    pub body: Sorted,
    sub_order: Vec<u32>,
    sub_runs: Vec<Run>,
}

impl Sorted {
    /// Sorts `range` of `params.list` by top-level key.
    pub fn build(&mut self, params: &Params, range: Range<usize>) {
        self.range = range.clone();
        let list = &params.list[range.clone()];
        if list.len() <= SMALL && list.iter().all(|p| p.kind == Kind::Plain) {
            let mut tags = [0u64; SMALL];
            for (t, p) in tags.iter_mut().zip(list) {
                *t = params.tag(&p.top);
            }
            if all_distinct(&tags[..list.len()]) {
                // The common case: nothing to group, the members are the
                // parameters in order (no index lists needed).
                (self.singles, self.scanned) = (true, true);
                return;
            }
        }
        self.singles = false;
        self.order.clear();
        self.order.extend(range.start as u32..range.end as u32);
        let key = |i: u32| params.text(&params.list[i as usize].top);
        let tag = |i: u32| params.tag(&params.list[i as usize].top);
        self.scanned = group_runs(&mut self.order, &mut self.runs, key, tag);
        self.emit.clear();
        self.emit.extend(0..self.runs.len() as u32);
        if !self.scanned {
            let runs = &self.runs;
            self.emit.sort_unstable_by_key(|&r| runs[r as usize].first);
        }
    }

    /// Whether a top-level key occurs among these parameters.
    pub fn contains(&self, params: &Params, key: &str) -> bool {
        if self.singles {
            let list = &params.list[self.range.clone()];
            return list.iter().any(|p| same(params.text(&p.top), key));
        }
        let top =
            |run: &Run| params.text(&params.list[self.order[run.start as usize] as usize].top);
        if self.scanned {
            return self.runs.iter().any(|run| same(top(run), key));
        }
        self.runs
            .binary_search_by(|run| {
                let i = self.order[run.start as usize] as usize;
                params.text(&params.list[i].top).cmp(key)
            })
            .is_ok()
    }
}

/// Groups `order` (ascending indices) into runs of equal keys, each run in
/// index order. Small inputs are grouped in place by scanning, with runs in
/// first-occurrence order (returns `true`); larger ones are sorted, with runs
/// in key order (returns `false`).
/// `tag(i)` is [`tag`] of `key(i)`, maybe computed faster.
fn group_runs<'a>(
    order: &mut [u32],
    runs: &mut Vec<Run>,
    key: impl Fn(u32) -> &'a str,
    tag: impl Fn(u32) -> u64,
) -> bool {
    if order.len() > SMALL {
        sort_runs(order, runs, key);
        return false;
    }
    runs.clear();
    // Compare cheap tags first: a key of up to 7 bytes is its tag, so only
    // longer keys with equal tags are compared as strings.
    let mut tags = [0u64; SMALL];
    let tags = &mut tags[..order.len()];
    for (t, &i) in tags.iter_mut().zip(order.iter()) {
        *t = tag(i);
    }
    if all_distinct(tags) {
        // The common case: every key once, each its own run.
        runs.extend(order.iter().enumerate().map(|(at, &i)| Run {
            first: i,
            start: at as u32,
            len: 1,
        }));
        return true;
    }
    let mut done = 0;
    while done < order.len() {
        // `order[done]` opens a run; pull its later equals up behind it.
        let (t, k) = (tags[done], key(order[done]));
        let mut end = done + 1;
        for j in done + 1..order.len() {
            if tags[j] == t && (k.len() < 8 || key(order[j]) == k) {
                order[end..=j].rotate_right(1);
                tags[end..=j].rotate_right(1);
                end += 1;
            }
        }
        runs.push(Run {
            first: order[done],
            start: done as u32,
            len: (end - done) as u32,
        });
        done = end;
    }
    true
}

/// Whether no two tags are equal (then no two keys are), by inserting
/// them into a small open-addressing table: linear in the number of keys
/// where comparing every pair is quadratic.
fn all_distinct(tags: &[u64]) -> bool {
    const SLOTS: usize = 64;
    const _: () = assert!(SLOTS >= 2 * SMALL);
    // Slot → position + 1 of the tag in it (0: empty).
    let mut table = [0u8; SLOTS];
    for (at, &t) in tags.iter().enumerate() {
        let mut h = (t.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize;
        loop {
            match table[h] {
                0 => {
                    table[h] = at as u8 + 1;
                    break;
                }
                other if tags[usize::from(other) - 1] == t => return false,
                _ => h = (h + 1) % SLOTS,
            }
        }
    }
    true
}

/// String equality with the cheap checks first (most keys differ in length).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// Sorts `order` by `(key, index)` and splits it into runs of equal keys.
fn sort_runs<'a>(order: &mut [u32], runs: &mut Vec<Run>, key: impl Fn(u32) -> &'a str) {
    order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)).then(a.cmp(&b)));
    runs.clear();
    let mut start = 0;
    while start < order.len() {
        let k = key(order[start]);
        let len = order[start..].iter().take_while(|&&i| key(i) == k).count();
        runs.push(Run {
            first: order[start],
            start: start as u32,
            len: len as u32,
        });
        start += len;
    }
}

impl Grouper {
    /// Writes the members of `self.body` (`body`) or `self.query`, leaving
    /// out top-level keys that `overridden` (the query's, for the body's
    /// members) contains.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        params: &Params,
        body: bool,
        first: &mut bool,
        overridden: Option<&Sorted>,
    ) {
        // The key's text only when there is something to look it up in.
        let skip = |p: &Param| overridden.is_some_and(|o| o.contains(params, params.text(&p.top)));
        let sorted = if body { &self.body } else { &self.query };
        if sorted.singles {
            // The common case: each parameter is a member of its own.
            let mut comma = !*first;
            for p in &params.list[sorted.range.clone()] {
                if !skip(p) {
                    params.write_pair(out, p, comma);
                    comma = true;
                }
            }
            *first = !comma;
            return;
        }
        for &r in &sorted.emit {
            let run = sorted.runs[r as usize];
            let entries = &sorted.order[run.start as usize..(run.start + run.len) as usize];
            let head = &params.list[entries[0] as usize];
            if skip(head) {
                continue;
            }
            if run.len == 1 && head.kind == Kind::Plain {
                // A key given once.
                params.write_pair(out, head, !std::mem::take(first));
                continue;
            }
            params.write_name(out, first, &head.top, head.key_clean);
            // A key is an object only when every entry is `a[b]`; otherwise
            // plain values win and the `a[b]` entries keep their full key
            // (grouped, so a repeat becomes an array).
            self.sub_order.clear();
            self.sub_order.extend(
                entries
                    .iter()
                    .copied()
                    .filter(|&i| params.list[i as usize].kind == Kind::Nested),
            );
            if self.sub_order.len() == entries.len() {
                write_object(out, params, &mut self.sub_order, &mut self.sub_runs);
            } else {
                let values = || {
                    entries
                        .iter()
                        .map(|&i| &params.list[i as usize])
                        .filter(|p| p.kind != Kind::Nested)
                };
                let array = values().count() > 1 || values().any(|p| p.kind == Kind::Array);
                write_values(out, params, values(), array);
                let full_key = |i: u32| &params.list[i as usize].key;
                write_members(
                    out,
                    params,
                    &mut self.sub_order,
                    &mut self.sub_runs,
                    full_key,
                    first,
                );
            }
        }
    }
}

fn write_values<'a>(
    out: &mut Vec<u8>,
    params: &Params,
    values: impl Iterator<Item = &'a Param>,
    array: bool,
) {
    if array {
        out.push(b'[');
    }
    for (n, p) in values.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        params.write_json(out, &p.value, p.value_clean);
    }
    if array {
        out.push(b']');
    }
}

fn write_object(out: &mut Vec<u8>, params: &Params, order: &mut [u32], runs: &mut Vec<Run>) {
    let sub = |i: u32| &params.list[i as usize].sub;
    out.push(b'{');
    write_members(out, params, order, runs, sub, &mut true);
    out.push(b'}');
}

/// Writes `order`'s entries as members named by `name` (a range of the
/// arena: a member name or a whole key, which has nothing to escape when its
/// key has not), equal names grouped into arrays, in first-occurrence order.
fn write_members<'a>(
    out: &mut Vec<u8>,
    params: &'a Params,
    order: &mut [u32],
    runs: &mut Vec<Run>,
    name: impl Fn(u32) -> &'a Range<u32>,
    first: &mut bool,
) {
    let key = |i: u32| params.text(name(i));
    if !group_runs(order, runs, key, |i| tag(key(i))) {
        runs.sort_unstable_by_key(|r| r.first);
    }
    for run in runs.iter() {
        let entries = &order[run.start as usize..(run.start + run.len) as usize];
        let clean = params.list[entries[0] as usize].key_clean;
        params.write_name(out, first, name(entries[0]), clean);
        let values = entries.iter().map(|&i| &params.list[i as usize]);
        write_values(out, params, values, entries.len() > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(query: &[u8]) -> String {
        let mut params = Params::default();
        params.parse(query);
        let mut g = Grouper::default();
        g.query.build(&params, 0..params.list.len());
        let mut out = Vec::new();
        let mut first = true;
        g.write(&mut out, &params, false, &mut first, None);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn groups_in_first_occurrence_order() {
        assert_eq!(data(b"b=1&a=2&b=3"), r#""b":["1","3"],"a":"2""#);
        assert_eq!(data(b"x[]=1"), r#""x":["1"]"#);
        assert_eq!(data(b"t=1&t[]=2"), r#""t":["1","2"]"#);
    }

    #[test]
    fn nests_one_level() {
        assert_eq!(
            data(b"a[y]=1&z=0&a[x]=2&a[y]=3"),
            r#""a":{"y":["1","3"],"x":"2"},"z":"0""#
        );
        assert_eq!(
            data(b"leads[add][0][id]=7&leads[add][0][name]=Deal"),
            r#""leads":{"add[0][id]":"7","add[0][name]":"Deal"}"#
        );
        // Keys that are not `a[b]` or `a[b][…]…` stay whole, so two
        // different keys never give the same member.
        assert_eq!(
            data(b"r[b]c=1&r[bc]=2&r[b][c]=3&r[b[c]]=4"),
            r#""r[b]c":"1","r":{"bc":"2","b[c]":"3"},"r[b[c]]":"4""#
        );
        // Member names that need escaping, next to ones that do not.
        assert_eq!(
            data(b"a[b%22c]=1&a[d]=2&a[e%5C]=3&x=1&x[y%0A]=4"),
            r#""a":{"b\"c":"1","d":"2","e\\":"3"},"x":"1","x[y\n]":"4""#
        );
    }

    #[test]
    fn conflicting_shapes_keep_the_full_key() {
        assert_eq!(data(b"a=1&a[b]=2"), r#""a":"1","a[b]":"2""#);
        assert_eq!(data(b"a[b]=2&a=1&a[]=3"), r#""a":["1","3"],"a[b]":"2""#);
        assert_eq!(
            data(b"a=1&a[b]=2&a[c]=4&a[b]=3"),
            r#""a":"1","a[b]":["2","3"],"a[c]":"4""#,
            "no member name twice"
        );
    }

    #[test]
    fn tags_from_the_arena_equal_tags_from_the_text() {
        let mut params = Params::default();
        let keys: Vec<String> = (0..20)
            .map(|n| (0..n).map(|i| char::from(b'a' + i as u8)).collect())
            .collect();
        let query = keys
            .iter()
            .map(|k| format!("{k}=v"))
            .collect::<Vec<_>>()
            .join("&");
        params.parse(query.as_bytes());
        for p in &params.list {
            assert_eq!(params.tag(&p.top), tag(params.text(&p.top)));
        }
        assert_ne!(tag("status[0][id]"), tag("status[1][id]"));
    }

    #[test]
    fn contains_finds_top_keys() {
        let mut params = Params::default();
        params.parse(b"z=1&a[b]=2&m[]=3");
        let mut s = Sorted::default();
        s.build(&params, 0..params.list.len());
        assert!(s.contains(&params, "a") && s.contains(&params, "m") && s.contains(&params, "z"));
        assert!(!s.contains(&params, "b") && !s.contains(&params, "a[b]"));
        // Every key once and plain: no index lists are built.
        params.parse(b"x=1&averyveryverylongkey=2");
        s.build(&params, 3..params.list.len());
        assert!(s.singles);
        assert!(s.contains(&params, "x") && s.contains(&params, "averyveryverylongkey"));
        assert!(!s.contains(&params, "z") && !s.contains(&params, "averyveryverylongkez"));
    }

    #[test]
    fn many_keys_stay_fast_and_ordered() {
        let mut q = Vec::new();
        for i in (0..50_000).rev() {
            q.extend_from_slice(format!("k{i}=v&").as_bytes());
        }
        let out = data(&q);
        let want: Vec<String> = (0..50_000)
            .rev()
            .map(|i| format!(r#""k{i}":"v""#))
            .collect();
        assert_eq!(
            out,
            want.join(","),
            "every member, in first-occurrence order"
        );
    }

    #[test]
    fn scanning_groups_like_sorting() {
        let keys = [
            "a",
            "b",
            "ab",
            "",
            "status[0][id]",
            "status[1][id]",
            "status[0][idx]",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % (SMALL as u64 + 1)) as usize;
            let list: Vec<&str> = (0..n)
                .map(|i| keys[((x >> (i % 60)) % 7) as usize])
                .collect();
            let key = |i: u32| list[i as usize];
            let groups = |order: &[u32], runs: &[Run]| {
                let mut g: Vec<Vec<u32>> = runs
                    .iter()
                    .map(|r| order[r.start as usize..(r.start + r.len) as usize].to_vec())
                    .collect();
                g.sort_by_key(|g| g[0]);
                g
            };
            let (mut order, mut runs) = ((0..n as u32).collect::<Vec<_>>(), Vec::new());
            assert!(group_runs(&mut order, &mut runs, key, |i| tag(key(i))));
            let scanned = groups(&order, &runs);
            let mut order: Vec<u32> = (0..n as u32).collect();
            sort_runs(&mut order, &mut runs, key);
            assert_eq!(scanned, groups(&order, &runs), "{list:?}");
        }
    }
}
