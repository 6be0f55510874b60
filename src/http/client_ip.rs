//! The client's address and host: the TCP peer, or what a trusted proxy
//! says in `X-Real-IP`, `X-Forwarded-For` and `X-Forwarded-Host`.

use std::net::IpAddr;

use ipnet::IpNet;

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

/// `X-Real-IP`, `X-Forwarded-For` and `X-Forwarded-Host` count only when
/// the TCP peer is a trusted proxy.
pub fn resolve<'a>(req: &Request<'a>, trusted: &[IpNet]) -> Client<'a> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = req.peer.to_canonical();
    let via_proxy = is_trusted(&peer);
    let header = |s: &Option<_>| s.as_ref().map(|s| at(req.buf, s));
    let mut ip = peer;
    let mut host = header(&req.head.host);
    if via_proxy {
        if let Some(real) = header(&req.head.real_ip).and_then(hop_ip) {
            ip = real;
        } else if let Some(xff) = header(&req.head.forwarded_for) {
            // From the right: the first hop that is not a trusted proxy is
            // the client; when every hop is trusted, the first one. A hop
            // that is not an address (`unknown`, garbage) ends the walk at
            // the nearest hop read so far: what lies left of it was written
            // by no proxy we trust, so it cannot name the client.
            for hop in xff.rsplit(|&b| b == b',') {
                if trim(hop).is_empty() {
                    continue; // `a, , b` or a trailing comma: formatting
                }
                let Some(hop) = hop_ip(hop) else { break };
                ip = hop;
                if !is_trusted(&hop) {
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
