//! The browser channel of a source: the click redirect's target checks
//! and macros, the uid cookie and the CORS origin list (the pixel's GIF is
//! [`crate::http::response::gif`]'s).
//! Built once by [`crate::config`]; requests only read it. Pure and
//! allocation-free: the handler passes its reused buffers in.

/// Longest click target (`to=`, decoded) that is followed.
pub const MAX_TARGET: usize = 2048;

/// How long the uid cookie lives: about three years (browsers may cap it;
/// Chromium keeps a cookie at most 400 days).
pub const COOKIE_MAX_AGE: u64 = 3 * 365 * 24 * 3600;

/// One `redirect-allow` entry: a host, or `*.` and a domain (any host
/// under it, not the domain itself). Lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// The `.domain` that a matching host ends with.
    Under(String),
}

impl HostPattern {
    /// Reads one entry; `None` when it is not a host name or IP literal.
    pub fn parse(entry: &str) -> Option<HostPattern> {
        let entry = entry.trim().to_ascii_lowercase();
        match entry.strip_prefix("*.") {
            Some(domain) if valid_host(domain.as_bytes()) && !domain.starts_with('[') => {
                Some(HostPattern::Under(format!(".{domain}")))
            }
            Some(_) => None,
            None => valid_host(entry.as_bytes()).then_some(HostPattern::Exact(entry)),
        }
    }

    fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h.as_bytes()),
            HostPattern::Under(d) => {
                host.len() > d.len()
                    && host[host.len() - d.len()..].eq_ignore_ascii_case(d.as_bytes())
            }
        }
    }

    pub fn as_written(&self) -> String {
        match self {
            HostPattern::Exact(h) => h.clone(),
            HostPattern::Under(d) => format!("*{d}"),
        }
    }
}

/// A host as a redirect target may name it: labels of `[a-z0-9-]` joined
/// by dots, or a bracketed IPv6 literal. Nothing a URL parser could read
/// differently (no `%`, `\`, `@`, spaces).
fn valid_host(host: &[u8]) -> bool {
    if let Some(inner) = host.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")) {
        return !inner.is_empty()
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b":.".contains(&b));
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Why a click target is not followed (the refusal's message).
pub type Bad = &'static str;

/// Checks a click target (`to=`, decoded) against a source's
/// `redirect-allow`: an absolute http(s) URL, no longer than
/// [`MAX_TARGET`], with no control characters or spaces, no userinfo, and
/// a host on the list. Never an open redirect.
pub fn check_target(target: &[u8], allow: &[HostPattern]) -> Result<(), Bad> {
    if target.len() > MAX_TARGET {
        return Err("the click target (to=) is longer than 2048 bytes; send a shorter URL");
    }
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(
            "the click target (to=) holds spaces or control characters (CR, LF…); \
                    URL-encode it into the to= parameter",
        );
    }
    let scheme = |s: &[u8]| {
        target
            .get(..s.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(s))
    };
    let rest = if scheme(b"http://") {
        &target[7..]
    } else if scheme(b"https://") {
        &target[8..]
    } else {
        return Err(
            "the click target (to=) must be an absolute http:// or https:// URL \
                    (not javascript:, //host or a relative path)",
        );
    };
    // The authority ends where the path, query or fragment starts (a
    // browser reads `\` as `/` in http URLs).
    let end = rest
        .iter()
        .position(|b| b"/?#\\".contains(b))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains(&b'@') {
        return Err("the click target (to=) holds userinfo (user@host); send the URL without it");
    }
    let host = match authority.last() {
        // `[v6]` or `[v6]:port`.
        Some(_) if authority.starts_with(b"[") => {
            let close = memchr::memchr(b']', authority).map_or(authority.len(), |p| p + 1);
            port_ok(&authority[close..]).then_some(&authority[..close])
        }
        Some(_) => {
            let colon = memchr::memchr(b':', authority).unwrap_or(authority.len());
            port_ok(&authority[colon..]).then_some(&authority[..colon])
        }
        None => None,
    };
    let Some(host) = host.filter(|h| valid_host(h)) else {
        return Err(
            "the click target (to=) has no valid host name; send an absolute URL \
                    like https://offer.example/path",
        );
    };
    if !allow.iter().any(|p| p.matches(host)) {
        return Err(
            "the click target's host (to=) is not in this source's redirect-allow list; \
                    add it to redirect-allow or send a target on an allowed host",
        );
    }
    Ok(())
}

/// Nothing, or `:` and 1-5 digits.
fn port_ok(port: &[u8]) -> bool {
    match port.strip_prefix(b":") {
        None => port.is_empty(),
        Some(digits) => {
            (1..=5).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(digits).is_ok_and(|d| d.parse::<u16>().is_ok())
        }
    }
}

/// The values a click target's macros are filled with.
pub struct Macros<'a, P> {
    pub id: &'a str,
    pub uid: &'a str,
    /// A request value by name (`{param:NAME}`); absent: empty.
    pub param: P,
}

/// Writes `target` into `out` with `{id}`, `{uid}` and `{param:NAME}`
/// replaced by their URL-encoded values. Anything else in braces is left
/// as written.
pub fn fill<'a, P>(target: &[u8], macros: &Macros<'a, P>, out: &mut Vec<u8>)
where
    P: Fn(&str) -> Option<&'a [u8]>,
{
    let mut rest = target;
    while let Some(open) = memchr::memchr(b'{', rest) {
        out.extend_from_slice(&rest[..open]);
        rest = &rest[open..];
        let Some(close) = memchr::memchr(b'}', rest) else {
            break;
        };
        let name = &rest[1..close];
        let value: Option<&[u8]> = match name {
            b"id" => Some(macros.id.as_bytes()),
            b"uid" => Some(macros.uid.as_bytes()),
            _ => match name.strip_prefix(b"param:").map(std::str::from_utf8) {
                Some(Ok(param)) => Some((macros.param)(param).unwrap_or_default()),
                _ => None,
            },
        };
        match value {
            Some(v) => encode(v, out),
            None => out.extend_from_slice(&rest[..=close]),
        }
        rest = &rest[close + 1..];
    }
    out.extend_from_slice(rest);
}

/// Percent-encodes all but RFC 3986's unreserved bytes.
fn encode(value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// The uid cookie: its name, and its `Set-Cookie` line around the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    /// `Set-Cookie: <name>=`
    pub before: Vec<u8>,
    /// `; Max-Age=…; Path=/[; Domain=…]; Secure; HttpOnly; SameSite=None` CRLF
    pub after: Vec<u8>,
}

impl Default for Cookie {
    fn default() -> Self {
        Cookie::new("uid", None)
    }
}

impl Cookie {
    /// A name and domain already checked by [`valid_cookie_name`] and
    /// [`valid_cookie_domain`].
    pub fn new(name: &str, domain: Option<&str>) -> Cookie {
        let mut after = format!("; Max-Age={COOKIE_MAX_AGE}; Path=/");
        if let Some(domain) = domain {
            after += &format!("; Domain={domain}");
        }
        after += "; Secure; HttpOnly; SameSite=None\r\n";
        Cookie {
            name: name.to_owned(),
            before: format!("Set-Cookie: {name}=").into_bytes(),
            after: after.into_bytes(),
        }
    }

    /// Appends the `Set-Cookie` line of `uid`.
    pub fn write(&self, uid: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.before);
        out.extend_from_slice(uid);
        out.extend_from_slice(&self.after);
    }
}

/// A cookie name: an HTTP token.
pub fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A cookie's `Domain`: a host name (a leading dot allowed).
pub fn valid_cookie_domain(domain: &str) -> bool {
    let d = domain.strip_prefix('.').unwrap_or(domain);
    !d.starts_with('[') && valid_host(d.as_bytes())
}

/// One `cors-origins` entry: `http(s)://host[:port]`, lower-case, as a
/// browser's `Origin` header writes it; `None` when it is not one.
pub fn parse_origin(entry: &str) -> Option<String> {
    let entry = entry.trim().to_ascii_lowercase();
    let rest = entry
        .strip_prefix("https://")
        .or_else(|| entry.strip_prefix("http://"))?;
    let (host, port) = match rest.rfind(':').filter(|_| !rest.ends_with(']')) {
        Some(colon) => rest.split_at(colon),
        None => (rest, ""),
    };
    (valid_host(host.as_bytes()) && port_ok(port.as_bytes())).then_some(entry)
}

/// Writes the CORS headers of a request from `origin` to a source that
/// lists `allowed` origins: the origin echoed, with credentials, when it
/// is listed; only `Vary: Origin` when it is not (so a cache keeps them
/// apart). `true` when it is allowed.
pub fn cors(origin: Option<&[u8]>, allowed: &[String], out: &mut Vec<u8>) -> bool {
    let listed = origin.filter(|o| allowed.iter().any(|a| o.eq_ignore_ascii_case(a.as_bytes())));
    if let Some(origin) = listed {
        out.extend_from_slice(b"Access-Control-Allow-Origin: ");
        out.extend_from_slice(origin);
        out.extend_from_slice(b"\r\nAccess-Control-Allow-Credentials: true\r\n");
    }
    out.extend_from_slice(b"Vary: Origin\r\n");
    listed.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Vec<HostPattern> {
        ["offer.example", "*.shop.example", "127.0.0.1", "[::1]"]
            .iter()
            .map(|e| HostPattern::parse(e).unwrap())
            .collect()
    }

    #[test]
    fn allowed_targets() {
        let allow = allow();
        for ok in [
            "https://offer.example",
            "https://offer.example/lp?click={id}",
            "HTTP://OFFER.example:8080/x",
            "https://a.shop.example/",
            "https://a.b.shop.example#f",
            "http://127.0.0.1:19100/offer?x=1",
            "http://[::1]:80/",
            "https://offer.example?q=javascript:no",
        ] {
            assert_eq!(check_target(ok.as_bytes(), &allow), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refused_targets() {
        let allow = allow();
        let long = format!("https://offer.example/{}", "a".repeat(MAX_TARGET));
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)//https://offer.example",
            "//offer.example/",
            "/relative",
            "offer.example",
            "ftp://offer.example/",
            "https://evil.example/",
            "https://shop.example/",
            "https://evilshop.example/",
            "https://offer.example.evil.example/",
            "https://offer.example@evil.example/",
            "https://evil.example\\@offer.example/",
            "https://evil.example\\.offer.example/",
            "https://user:pw@offer.example/",
            "https://offer.example/\r\nSet-Cookie: x=1",
            "https://offer.example/\n",
            "https://offer.example/ x",
            "https:///offer.example",
            "https://offer.example:99999/",
            "https://offer.example:x/",
            "https://offer%2eexample/",
            "https://{param:h}.shop.example/",
            "https://",
            "",
            long.as_str(),
        ] {
            assert!(check_target(bad.as_bytes(), &allow).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn macros_are_filled_url_encoded() {
        let mut out = Vec::new();
        let macros = Macros {
            id: "6462464730849083393",
            uid: "123",
            param: |name: &str| match name {
                "sub1" => Some(&b"a b&c=d/\xd0\xbf"[..]),
                _ => None,
            },
        };
        fill(
            b"https://o.example/?c={id}&u={uid}&s={param:sub1}&m={param:none}&k={other}&open={id",
            &macros,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "https://o.example/?c=6462464730849083393&u=123&s=a%20b%26c%3Dd%2F%D0%BF&m=&k={other}&open={id"
        );
    }

    #[test]
    fn cookie_line() {
        let mut out = Vec::new();
        Cookie::new("hw", Some(".shop.example")).write(b"1234567890", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Set-Cookie: hw=1234567890; Max-Age=94608000; Path=/; Domain=.shop.example; Secure; HttpOnly; SameSite=None\r\n"
        );
        assert!(
            !valid_cookie_name("a b") && !valid_cookie_name("a;b") && valid_cookie_name("_uid")
        );
        assert!(valid_cookie_domain(".shop.example") && !valid_cookie_domain("a;b"));
    }

    #[test]
    fn origins() {
        assert_eq!(
            parse_origin("https://Shop.example").as_deref(),
            Some("https://shop.example")
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for bad in [
            "shop.example",
            "https://shop.example/",
            "https://*",
            "https://a b",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
        let allowed = vec!["https://shop.example".to_owned()];
        let mut out = Vec::new();
        assert!(cors(Some(b"https://shop.example"), &allowed, &mut out));
        assert_eq!(
            out,
            b"Access-Control-Allow-Origin: https://shop.example\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
        );
        out.clear();
        assert!(!cors(Some(b"https://evil.example"), &allowed, &mut out));
        assert_eq!(out, b"Vary: Origin\r\n");
    }
}
