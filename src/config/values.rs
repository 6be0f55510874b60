//! The types of option values and how each is read from its text — the same
//! for a flag, a `HOOKWIRE_*` variable and the config file: sizes,
//! durations, addresses, ZeroMQ endpoints, routes, networks, choices.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use ipnet::IpNet;
use serde::de::{Deserializer, Error as _, SeqAccess, Visitor};
use serde::Deserialize;

/// Why a value was refused: its text says which value and the form expected.
#[derive(Debug)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// A number of bytes: `1MiB`, `512k`, `65536`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        match text.trim().parse::<bytesize::ByteSize>() {
            Ok(size) => Ok(Size(size.as_u64())),
            Err(_) => Err(Invalid(format!(
                "'{text}' is not a size like 1MiB, 512KiB or 65536"
            ))),
        }
    }
}

/// Free space to keep on a filesystem: a size (`64MiB`) or a share of
/// the filesystem's size (`1%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Headroom {
    Bytes(u64),
    Percent(f64),
}

impl Headroom {
    /// In bytes, on a filesystem of `size` bytes.
    pub fn bytes(self, size: u64) -> u64 {
        match self {
            Headroom::Bytes(n) => n,
            Headroom::Percent(p) => (size as f64 * p / 100.0) as u64,
        }
    }
}

impl FromStr for Headroom {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        let refused = || {
            Invalid(format!(
                "'{text}' is not a size like 64MiB or a share of the filesystem like 1%"
            ))
        };
        match text.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=50.0).contains(&p) => Ok(Headroom::Percent(p)),
                _ => Err(Invalid(format!(
                    "'{text}': a share of the filesystem must be 0% to 50%"
                ))),
            },
            None => Ok(Headroom::Bytes(
                text.parse::<Size>().map_err(|_| refused())?.0,
            )),
        }
    }
}

/// A duration: `10s`, `500ms`, `200us`; `0` (in any unit) is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Duration);

impl FromStr for Interval {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        humantime::parse_duration(text.trim())
            .map(Interval)
            .map_err(|_| Invalid(format!("'{text}' is not a duration like 10s or 500ms")))
    }
}

/// The first address `text` resolves to (`localhost:8080` is a name).
fn resolve(text: &str) -> Option<SocketAddr> {
    text.trim().to_socket_addrs().ok()?.next()
}

/// A socket address to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address(pub SocketAddr);

impl FromStr for Address {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        resolve(text)
            .map(Address)
            .ok_or_else(|| Invalid(format!("'{text}' is not an address like 0.0.0.0:8080")))
    }
}

/// The admin listener's address, or `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admin(pub Option<SocketAddr>);

impl FromStr for Admin {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        if text.trim() == "off" {
            return Ok(Admin(None));
        }
        resolve(text).map(|addr| Admin(Some(addr))).ok_or_else(|| {
            Invalid(format!(
                "'{text}' is not an address like 127.0.0.1:9733 or off"
            ))
        })
    }
}

/// A network whose proxies' X-Real-IP / X-Forwarded-For / Forwarded are
/// believed: a CIDR, or one IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedNet(pub IpNet);

impl FromStr for TrustedNet {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        let net = text.trim();
        net.parse::<IpNet>()
            .or_else(|_| net.parse::<std::net::IpAddr>().map(IpNet::from))
            .map(TrustedNet)
            .map_err(|_| Invalid(format!("'{text}' is not a CIDR like 10.0.0.0/8 or an IP")))
    }
}

/// A ZeroMQ endpoint a PUSH socket connects to, checked by libzmq itself
/// at start rather than at the first send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(pub String);

impl FromStr for Endpoint {
    type Err = Invalid;
    fn from_str(endpoint: &str) -> Result<Self, Invalid> {
        endpoint_form(endpoint, false)?;
        let failed = |e: zmq::Error| Invalid(format!("'{endpoint}': {e}"));
        let context = zmq::Context::new();
        let socket = context.socket(zmq::PUSH).map_err(failed)?;
        socket.set_linger(0).map_err(failed)?;
        if needs_ipv6(endpoint) {
            socket.set_ipv6(true).map_err(failed)?;
        }
        socket.connect(endpoint).map_err(failed)?;
        Ok(Endpoint(endpoint.to_owned()))
    }
}

/// An endpoint hookwire binds on (`tap --bind`, `--ack-endpoint`): of a
/// form a PUSH socket can reach (libzmq judges the rest when it binds:
/// `tcp://*:5555` is fine there).
pub fn bind_endpoint(endpoint: &str) -> Result<String, Invalid> {
    endpoint_form(endpoint, true)?;
    Ok(endpoint.to_owned())
}

/// An endpoint hookwire connects to (`tap --ack`), as [`Endpoint`].
pub fn connect_endpoint(endpoint: &str) -> Result<String, Invalid> {
    endpoint.parse().map(|Endpoint(e)| e)
}

/// Refuses an endpoint no consumer can be reached at, naming the forms
/// that can (libzmq itself would say only "Invalid argument"). A bound
/// port may also be `0` or `*`: any free one.
fn endpoint_form(endpoint: &str, bind: bool) -> Result<(), Invalid> {
    let not = || {
        let form = if bind {
            "to bind on (expected tcp://host:port or ipc://path; host * and port 0 or * mean any)"
        } else {
            "to connect to (expected tcp://host:port or ipc://path)"
        };
        Invalid(format!("'{endpoint}' is not a ZeroMQ endpoint {form}"))
    };
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(not)?;
    let ok = match scheme {
        "tcp" => rest.rsplit_once(':').is_some_and(|(host, port)| {
            let any = bind && matches!(port, "*" | "0");
            !host.is_empty() && (any || port.parse::<u16>().is_ok_and(|p| p > 0))
        }),
        "ipc" => !rest.is_empty(),
        "inproc" => return Err(Invalid(format!(
            "'{endpoint}': inproc:// reaches only sockets inside hookwire itself, never a consumer; use tcp://host:port or ipc://path"
        ))),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(not())
    }
}

/// A TCP endpoint whose host is an IPv6 literal (`tcp://[::1]:5555`): a
/// socket connects to it only with ZMQ_IPV6. Other endpoints keep IPv4
/// resolution, so a name such as `localhost` stays the IPv4 address an
/// IPv4-only consumer listens on.
pub fn needs_ipv6(endpoint: &str) -> bool {
    endpoint.starts_with("tcp://[")
}

/// Says (on stderr) that the host of a TCP endpoint does not resolve now:
/// it may later (libzmq keeps trying), so this is not a refusal.
pub fn warn_if_unresolved(option: &str, endpoint: &str) {
    if let Some(host_port) = endpoint.strip_prefix("tcp://") {
        let host_port = host_port
            .rsplit_once(';')
            .map_or(host_port, |(_, remote)| remote);
        if host_port.to_socket_addrs().is_err() {
            tracing::warn!("--{option}: '{endpoint}': the host does not resolve now; events for it wait in the spool until it does and a consumer answers");
        }
    }
}

/// One route: a glob on the key and the endpoints its PUSH socket connects
/// to; written `<key glob>=<endpoint>[,<endpoint>…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub pattern: String,
    pub endpoints: Vec<String>,
    /// `--ack-endpoint`: where its consumers send the ids they finished;
    /// `None`: a route without acknowledgements.
    pub ack: Option<String>,
}

/// `--ack-endpoint GLOB=EP`: the route with that glob takes acknowledgements,
/// bound (PULL) at the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSpec {
    pub pattern: String,
    pub endpoint: String,
}

impl FromStr for AckSpec {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        let (pattern, endpoint) = text
            .split_once('=')
            .ok_or_else(|| Invalid(format!("'{text}' is not <route glob>=<endpoint>")))?;
        // Bound (PULL), not connected to.
        let endpoint = bind_endpoint(endpoint.trim())?;
        Ok(AckSpec {
            pattern: pattern.trim().into(),
            endpoint,
        })
    }
}

impl FromStr for RouteSpec {
    type Err = Invalid;
    fn from_str(text: &str) -> Result<Self, Invalid> {
        let (pattern, endpoints) = text.split_once('=').ok_or_else(|| {
            Invalid(format!(
                "'{text}' is not <key glob>=<endpoint>[,<endpoint>…]"
            ))
        })?;
        let pattern = pattern.trim();
        if pattern.is_empty() || pattern.contains(char::is_whitespace) {
            return Err(Invalid(format!(
                "'{text}': the key glob must be non-empty, without spaces"
            )));
        }
        let endpoints = endpoints
            .split(',')
            .map(|e| e.trim().parse().map(|Endpoint(e)| e))
            .collect::<Result<_, _>>()?;
        Ok(RouteSpec {
            pattern: pattern.into(),
            endpoints,
            ack: None,
        })
    }
}

/// How envelopes leave on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Frames {
    /// One frame: the envelope.
    Json,
    /// Two frames: the key, then the envelope.
    #[value(name = "key+json")]
    KeyJson,
}

/// The Linux scheduling policy of libzmq's I/O threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Sched {
    /// `SCHED_BATCH`: a thread woken up does not preempt the one running;
    /// it gets its fair share of the CPU, from the scheduler's tick or when
    /// the running thread waits.
    Batch,
    /// `SCHED_OTHER`, the default of every Linux thread.
    Normal,
}

/// Which header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientIpHeader {
    /// The first present of X-Real-IP, X-Forwarded-For, Forwarded.
    Auto,
    #[value(name = "x-real-ip")]
    XRealIp,
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    Forwarded,
}

/// When the 200 is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ack {
    /// In ZeroMQ's queue or written to the spool.
    Accepted,
    /// Journaled and fdatasync'ed.
    Durable,
}

/// One of a [`ValueEnum`]'s names, for the file (clap reads the flag).
pub(super) fn choice<E: ValueEnum>(text: &str) -> Result<E, Invalid> {
    E::from_str(text.trim(), false).map_err(|_| {
        let names: Vec<String> = E::value_variants()
            .iter()
            .filter_map(|v| Some(v.to_possible_value()?.get_name().to_owned()))
            .collect();
        Invalid(format!("'{text}' is not one of: {}", names.join(", ")))
    })
}

macro_rules! from_str_by_choice {
    ($($choice:ty),*) => {$(
        impl FromStr for $choice {
            type Err = Invalid;
            fn from_str(text: &str) -> Result<Self, Invalid> {
                choice(text)
            }
        }
    )*};
}
from_str_by_choice!(Frames, Sched, Ack, ClientIpHeader);

/// The file spells a value as the command line does: each of these types is
/// read from its text (a number as its digits, so `max-body = 65536` is
/// `--max-body 65536`) by the same `FromStr` clap uses.
macro_rules! deserialize_by_from_str {
    ($($value:ty),*) => {$(
        impl<'de> Deserialize<'de> for $value {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(Text)?.parse().map_err(D::Error::custom)
            }
        }
    )*};
}
deserialize_by_from_str!(Size, Headroom, Interval, Address, Admin);
deserialize_by_from_str!(Frames, Sched, Ack, ClientIpHeader);

/// Reads a string, or a number as its digits. Hand-written: serde's derives
/// have no "string or number as text".
struct Text;

impl Visitor<'_> for Text {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<String, E> {
        Ok(text.to_owned())
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<String, E> {
        Ok(n.to_string())
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<String, E> {
        Ok(n.to_string())
    }
}

/// A list in the file: one string or an array of strings, each split at
/// `SEPARATOR` as clap's `value_delimiter` splits the flag's value, then
/// each piece read by the same `FromStr`.
pub fn list<'de, const SEPARATOR: char, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = Invalid>,
{
    let texts = deserializer.deserialize_any(Texts)?;
    texts
        .iter()
        .flat_map(|text| text.split(SEPARATOR))
        .map(|piece| piece.parse().map_err(D::Error::custom))
        .collect()
}

/// Reads a string or an array of strings. Hand-written: serde's untagged
/// enums would refuse a wrong value without saying what was expected.
struct Texts;

impl<'de> Visitor<'de> for Texts {
    type Value = Vec<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Vec<String>, E> {
        Ok(vec![text.to_owned()])
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut texts = Vec::new();
        while let Some(text) = seq.next_element()? {
            texts.push(text);
        }
        Ok(texts)
    }
}

/// Strings in the file: one string or an array of them, each kept whole
/// (a secret may hold any character).
pub fn strings<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(Texts)
}
