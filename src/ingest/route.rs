//! The event's routing fields from the path, and their validation.

use crate::http::request::{at, Span};
use crate::reject::Refusal;

/// `/<service>[/<name>[/<projectId>]]`: spans into the request buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub service: Span,
    pub name: Option<Span>,
    pub project_id: Option<Span>,
}

/// What the path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `/`: the probe for load balancers.
    Root,
    Event(Target),
}

/// Splits the path. Empty segments count as absent (`/s/n/` is `/s/n`);
/// segments after the third are ignored.
pub fn parse(buf: &[u8], path: &Span) -> Result<Path, Refusal> {
    let bytes = at(buf, path);
    let rest = bytes.strip_prefix(b"/").unwrap_or(bytes);
    if rest.is_empty() {
        return Ok(Path::Root);
    }
    // The segments one `memchr` each (a path has at most three that count).
    let mut rest = Some(rest);
    let mut offset = path.start + (bytes.len() - rest.map_or(0, <[u8]>::len)) as u32;
    let mut next = || {
        let seg = rest?;
        let len = memchr::memchr(b'/', seg).unwrap_or(seg.len());
        rest = seg.get(len + 1..);
        let span = offset..offset + len as u32;
        offset += len as u32 + 1;
        Some(span).filter(|s| !s.is_empty())
    };
    let service = next().ok_or(Refusal::InvalidService)?;
    if !valid_name(at(buf, &service)) {
        return Err(Refusal::InvalidService);
    }
    let name = next();
    let project_id = next();
    Ok(Path::Event(Target {
        service,
        name,
        project_id,
    }))
}

/// An image pixel's path: its last segment ends in `.gif`. Returns the
/// path without the suffix (so name and projectId have none), and whether
/// it had one.
pub fn strip_gif(buf: &[u8], path: &Span) -> (Span, bool) {
    let bytes = at(buf, path);
    let pixel = bytes.len() >= 4 && bytes[bytes.len() - 4..].eq_ignore_ascii_case(b".gif");
    match pixel {
        true => (path.start..path.end - 4, true),
        false => (path.clone(), false),
    }
}

/// A service or event name: 1–64 of `[A-Za-z0-9_-]` (so also ASCII).
pub fn valid_name(s: &[u8]) -> bool {
    (1..=64).contains(&s.len()) && s.iter().all(|&b| NAME_BYTE[usize::from(b)])
}

/// The bytes of [`valid_name`].
const NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        b += 1;
    }
    table
};

/// `^[0-9]{10,22}$`
pub fn valid_uid(s: &[u8]) -> bool {
    (10..=22).contains(&s.len()) && s.iter().all(u8::is_ascii_digit)
}

/// An unsigned 64-bit integer in decimal, nothing else.
pub fn parse_project_id(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then_some(())?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parts = (String, Option<String>, Option<String>);

    fn split(p: &str) -> Result<Option<Parts>, Refusal> {
        let buf = p.as_bytes();
        let text = |s: &Span| String::from_utf8(at(buf, s).to_vec()).unwrap();
        Ok(match parse(buf, &(0..buf.len() as u32))? {
            Path::Root => None,
            Path::Event(t) => Some((
                text(&t.service),
                t.name.as_ref().map(text),
                t.project_id.as_ref().map(text),
            )),
        })
    }

    fn ev(
        s: &str,
        n: Option<&str>,
        p: Option<&str>,
    ) -> Option<(String, Option<String>, Option<String>)> {
        Some((s.into(), n.map(Into::into), p.map(Into::into)))
    }

    #[test]
    fn pixel_paths_lose_their_suffix() {
        let gif = |p: &str| {
            let (span, pixel) = strip_gif(p.as_bytes(), &(0..p.len() as u32));
            (
                split(&p[span.start as usize..span.end as usize]).unwrap(),
                pixel,
            )
        };
        assert_eq!(
            gif("/affise/conversion/7.gif"),
            (ev("affise", Some("conversion"), Some("7")), true)
        );
        assert_eq!(
            gif("/affise/conversion.GIF"),
            (ev("affise", Some("conversion"), None), true)
        );
        assert_eq!(gif("/affise.gif"), (ev("affise", None, None), true));
        assert_eq!(gif("/.gif"), (None, true));
        assert_eq!(
            gif("/affise/conversion"),
            (ev("affise", Some("conversion"), None), false)
        );
    }

    #[test]
    fn path_forms() {
        assert_eq!(split("/").unwrap(), None);
        assert_eq!(split("").unwrap(), None);
        assert_eq!(split("/calltrack").unwrap(), ev("calltrack", None, None));
        assert_eq!(split("/calltrack/").unwrap(), ev("calltrack", None, None));
        assert_eq!(
            split("/calltrack/call").unwrap(),
            ev("calltrack", Some("call"), None)
        );
        assert_eq!(
            split("/calltrack/call/99").unwrap(),
            ev("calltrack", Some("call"), Some("99"))
        );
        assert_eq!(
            split("/calltrack/call/99/x/y").unwrap(),
            ev("calltrack", Some("call"), Some("99"))
        );
        assert_eq!(split("/a//7").unwrap(), ev("a", None, Some("7")));
    }

    #[test]
    fn bad_services() {
        for p in ["/a.b/c", "/a%20b", "//x", "/привет"] {
            assert_eq!(split(p).unwrap_err(), Refusal::InvalidService, "{p}");
        }
        assert!(split(&format!("/{}", "a".repeat(64))).is_ok());
        assert!(split(&format!("/{}", "a".repeat(65))).is_err());
    }

    #[test]
    fn field_rules() {
        assert!(valid_name(b"call_back-2") && !valid_name(b"") && !valid_name(b"a.b"));
        assert!(!valid_name("привет".as_bytes()) && !valid_name(b"a\xff"));
        assert!(
            valid_uid(b"1234567890") && !valid_uid(b"123456789") && !valid_uid(b"12345678901x")
        );
        assert!(!valid_uid("1".repeat(23).as_bytes()));
        assert_eq!(parse_project_id(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_project_id(b"18446744073709551616"), None);
        assert_eq!(parse_project_id(b"99999999999999999999"), None);
        assert_eq!(parse_project_id(b"0"), Some(0));
        assert_eq!(parse_project_id(b"007"), Some(7));
        assert_eq!(parse_project_id(b"-1"), None);
        assert_eq!(parse_project_id(b"+1"), None);
        assert_eq!(parse_project_id(b"1 "), None);
        assert_eq!(parse_project_id(b""), None);
    }
}
