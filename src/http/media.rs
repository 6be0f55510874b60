//! Content-Type: the media type's essence and its `charset` parameter.

use super::request::trim;

/// The body kinds hookwire tells apart by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Json,
    Form,
    Text,
    Other,
}

/// `application/json` and `*/*+json`, the urlencoded form, `text/plain`.
pub fn media_type(ct: &[u8]) -> Media {
    let essence = trim(ct.split(|&b| b == b';').next().unwrap_or(b""));
    let (ty, sub) = match memchr::memchr(b'/', essence) {
        Some(p) => (&essence[..p], &essence[p + 1..]),
        None => return Media::Other,
    };
    let sub_is = |s: &[u8]| sub.eq_ignore_ascii_case(s);
    let plus_json = sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case(b"+json");
    if plus_json || (ty.eq_ignore_ascii_case(b"application") && sub_is(b"json")) {
        Media::Json
    } else if ty.eq_ignore_ascii_case(b"application") && sub_is(b"x-www-form-urlencoded") {
        Media::Form
    } else if ty.eq_ignore_ascii_case(b"text") && sub_is(b"plain") {
        Media::Text
    } else {
        Media::Other
    }
}

/// The `charset` parameter of a Content-Type, unquoted.
pub fn charset(ct: &[u8]) -> Option<&[u8]> {
    ct.split(|&b| b == b';').skip(1).find_map(|param| {
        let param = trim(param);
        let eq = memchr::memchr(b'=', param)?;
        let (name, value) = (trim(&param[..eq]), trim(&param[eq + 1..]));
        if !name.eq_ignore_ascii_case(b"charset") {
            return None;
        }
        Some(
            value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value),
        )
    })
}
