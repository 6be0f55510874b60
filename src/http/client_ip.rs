//! The client's address and host: the TCP peer, or what a trusted proxy
//! says in `X-Real-IP`, `X-Forwarded-For`, RFC 7239 `Forwarded` and
//! `X-Forwarded-Host`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use smallvec::SmallVec;

use super::request::{at, trim, Request};

/// Who sent a request, as far as the trusted proxies tell.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub ip: IpAddr,
    /// `Host`, or `X-Forwarded-Host` from a trusted proxy.
    pub host: Option<&'a [u8]>,
}

/// An address as proxies write it in `X-Real-IP` and `X-Forwarded-For`:
/// `1.2.3.4`, `2001:db8::1`, and with a port, `1.2.3.4:5678` or
/// `[2001:db8::1]:5678`; IPv4-mapped IPv6 as IPv4.
fn hop_ip(b: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(trim(b)).ok()?;
    let ip = match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => text.parse::<std::net::SocketAddr>().ok()?.ip(),
    };
    Some(ip.to_canonical())
}

/// A `Forwarded` node (RFC 7239 §6), unquoted: `192.0.2.43`,
/// `192.0.2.43:47011`, `[2001:db8::17]`, `[2001:db8::17]:4711`, the port
/// possibly obfuscated (`:_a1`). `unknown` and obfuscated identifiers
/// (`_hidden`) are not addresses.
fn node_ip(node: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(trim(node)).ok()?;
    let ip = if let Some(v6) = text.strip_prefix('[') {
        IpAddr::V6(v6[..v6.find(']')?].parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else {
        let (v4, _port) = text.split_once(':')?;
        IpAddr::V4(v4.parse::<Ipv4Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

/// The `for=` node of each element of the `Forwarded` headers, in order;
/// `None` for an element that has none. Parameter names are
/// case-insensitive, values tokens or quoted strings; an empty element
/// (`a, , b`) is formatting, not a hop.
fn forwarded_nodes<'a>(headers: impl Iterator<Item = &'a [u8]>) -> SmallVec<[Option<&'a [u8]>; 8]> {
    let mut nodes = SmallVec::new();
    for value in headers {
        let (mut i, mut node, mut pairs) = (0, None, 0);
        while i <= value.len() {
            // One `name=value` pair, up to `;`, `,` or the end.
            let name_start = i;
            while i < value.len() && !matches!(value[i], b'=' | b';' | b',') {
                i += 1;
            }
            let name = trim(&value[name_start..i]);
            let mut pair_value: &[u8] = b"";
            if value.get(i) == Some(&b'=') {
                i += 1;
                while value.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
                    i += 1;
                }
                if value.get(i) == Some(&b'"') {
                    let start = i + 1;
                    i = start;
                    while i < value.len() && value[i] != b'"' {
                        i += if value[i] == b'\\' { 2 } else { 1 };
                    }
                    pair_value = &value[start..i.min(value.len())];
                    i += 1;
                    while i < value.len() && !matches!(value[i], b';' | b',') {
                        i += 1;
                    }
                } else {
                    let start = i;
                    while i < value.len() && !matches!(value[i], b';' | b',') {
                        i += 1;
                    }
                    pair_value = trim(&value[start..i]);
                }
            }
            if !name.is_empty() {
                pairs += 1;
                if node.is_none() && name.eq_ignore_ascii_case(b"for") {
                    node = Some(pair_value);
                }
            }
            let end_of_element = i >= value.len() || value[i] == b',';
            if end_of_element {
                if pairs > 0 {
                    nodes.push(node.take());
                }
                pairs = 0;
            }
            i += 1;
        }
    }
    nodes
}

/// The header a trusted proxy names the client in (`--client-ip-header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressHeader {
    /// The first present of `X-Real-IP`, `X-Forwarded-For`, `Forwarded`.
    Auto,
    XRealIp,
    XForwardedFor,
    Forwarded,
}

/// `X-Real-IP`, `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Host`
/// count only when the TCP peer is a trusted proxy. Of the address
/// headers the first present counts, in that order: `X-Real-IP` is one
/// address a proxy sets; common proxies append to `X-Forwarded-For` and
/// pass a `Forwarded` they did not write through, so `Forwarded` is read
/// when no `X-Forwarded-For` came. A proxy that writes one of them but
/// passes the others through lets a client pick its address under
/// `Auto`; naming the header (`only`) reads that one alone.
pub fn resolve<'a>(req: &Request<'a>, trusted: &[IpNet], only: AddressHeader) -> Client<'a> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = req.peer.to_canonical();
    let via_proxy = is_trusted(&peer);
    let header = |s: &Option<_>| s.as_ref().map(|s| at(req.buf, s));
    let mut ip = peer;
    let mut host = header(&req.head.host);
    if via_proxy {
        // From the right: the first hop that is not a trusted proxy is the
        // client; when every hop is trusted, the first one. A hop that is
        // not an address (`unknown`, an obfuscated node, garbage) ends the
        // walk at the nearest hop read so far: what lies left of it was
        // written by no proxy we trust, so it cannot name the client.
        let mut walk = |hop: Option<IpAddr>| match hop {
            None => false,
            Some(hop) => {
                ip = hop;
                is_trusted(&hop)
            }
        };
        let reads = |h: AddressHeader| only == AddressHeader::Auto || only == h;
        let real = header(&req.head.real_ip).filter(|_| reads(AddressHeader::XRealIp));
        let xff = header(&req.head.forwarded_for).filter(|_| reads(AddressHeader::XForwardedFor));
        let forwarded = reads(AddressHeader::Forwarded) && !req.head.forwarded.is_empty();
        if let Some(real) = real.and_then(hop_ip) {
            ip = real;
        } else if let Some(xff) = xff {
            for hop in xff.rsplit(|&b| b == b',') {
                if trim(hop).is_empty() {
                    continue; // `a, , b` or a trailing comma: formatting
                }
                if !walk(hop_ip(hop)) {
                    break;
                }
            }
        } else if forwarded {
            let headers = req.head.forwarded.iter().map(|s| at(req.buf, s));
            for node in forwarded_nodes(headers).into_iter().rev() {
                if !walk(node.and_then(node_ip)) {
                    break;
                }
            }
        }
        if let Some(fh) = header(&req.head.forwarded_host) {
            host = Some(fh);
        }
    }
    Client {
        ip: ip.to_canonical(),
        host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(headers: &[&'static str]) -> Vec<Option<&'static str>> {
        forwarded_nodes(headers.iter().map(|h| h.as_bytes()))
            .into_iter()
            .map(|n| n.map(|n| std::str::from_utf8(n).unwrap()))
            .collect()
    }

    #[test]
    fn forwarded_elements_pairs_and_quotes() {
        assert_eq!(
            nodes(&[
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#
            ]),
            [Some("192.0.2.60"), Some("[2001:db8:cafe::17]:4711")]
        );
        assert_eq!(
            nodes(&[
                "proto=https;for=unknown",
                "for=_hidden,  , by=10.0.0.1",
                "for=\"a,b;c\";by=x"
            ]),
            [Some("unknown"), Some("_hidden"), None, Some("a,b;c")]
        );
        assert_eq!(nodes(&["", " , "]), Vec::<Option<&str>>::new());
    }

    #[test]
    fn forwarded_nodes_as_addresses() {
        let ip = |s: &str| node_ip(s.as_bytes());
        assert_eq!(ip("192.0.2.43"), "192.0.2.43".parse().ok());
        assert_eq!(ip("192.0.2.43:47011"), "192.0.2.43".parse().ok());
        assert_eq!(ip("[2001:db8:cafe::17]"), "2001:db8:cafe::17".parse().ok());
        assert_eq!(
            ip("[2001:db8:cafe::17]:_p0rt"),
            "2001:db8:cafe::17".parse().ok()
        );
        assert_eq!(ip("[::ffff:10.1.2.3]"), "10.1.2.3".parse().ok());
        for not in ["unknown", "_hidden", "[2001:db8::1", "", "1.2.3.4.5"] {
            assert_eq!(ip(not), None, "{not}");
        }
    }
}
