//! Configuration: flags over `HOOKWIRE_*` environment over the TOML file
//! over defaults, validated once into [`Settings`], the one object the rest
//! of the crate reads. Nothing downstream sees the raw options.

mod cli;
mod error;
mod file;
mod options;
mod sources;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

pub use cli::{Cli, Command, TapArgs};
pub use error::ConfigError;
pub use options::{ServeArgs, ServeOptions};
pub use values::{needs_ipv6, Frames, Headroom, Io, RouteSpec, Sched};

use crate::conn::INITIAL;
use crate::event::id::{MAX_CORES, MAX_NODE_ID};
use crate::http::client_ip::AddressHeader;
use error::{bad, ensure, origin};
use values::{Ack, AckSpec, ClientIpHeader, Endpoint};

/// Validated settings, shared read-only by every core.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `--listen-plain`: plain HTTP beside an HTTPS `listen`.
    pub listen_plain: Option<SocketAddr>,
    /// `--tls-cert` and `--tls-key`: `listen` speaks HTTPS.
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
    /// Join a port another process listens on (`--share-port`).
    pub share_port: bool,
    pub routes: Vec<RouteSpec>,
    pub frames: Frames,
    pub cores: usize,
    pub node_id: u16,
    pub trusted_proxies: Vec<IpNet>,
    /// Where a trusted proxy's client address is read.
    pub client_ip: AddressHeader,
    pub max_body: usize,
    pub max_header: usize,
    /// Bytes of request bodies in memory, for the whole process.
    pub max_inflight_body: u64,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    /// Connections open at once, for the whole process.
    pub max_connections: usize,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// `--spool-min-free`: resolved against the filesystem's size at start.
    pub spool_min_free: Headroom,
    /// `--ack durable`.
    pub durable: bool,
    pub sync_interval: Duration,
    /// Accepted mode: the least time between two hand-offs of a core's
    /// outbox to ZeroMQ while more than one event waits (zero: none).
    pub flush_interval: Duration,
    pub zmq_sched: Sched,
    /// `--io`, as asked (the core falls back to `poll` where `uring` is
    /// not supported).
    pub io: Io,
    pub replay_window: Duration,
    pub sndhwm: i32,
    /// Bytes of recently sent events kept for re-sending (accepted mode).
    pub resend_buffer: u64,
    /// Accepted mode: the longest an event is re-sent for after its first
    /// send (zero: never).
    pub resend_window: Duration,
    /// Acknowledged routes: how long a sent event waits for its ack before
    /// it is sent again.
    pub ack_timeout: Duration,
    /// `None`: the admin listener is off.
    pub admin: Option<SocketAddr>,
    pub drain_timeout: Duration,
    /// The `[[source]]`s and `--strict`.
    pub sources: crate::source::Sources,
}

impl Settings {
    /// Lays the file (if any) under the flags and the environment, and
    /// validates the result. A refused value is named by where it was set:
    /// the flag, its environment variable or its key in the file.
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let config = args.options.config.clone();
        let (file, keys) = match &config {
            Some(path) => file::load(path, &args.sources).map_err(|mut e| {
                if e.origin.is_none() {
                    e.origin = origin("config", &args.sources, None);
                }
                e
            })?,
            None => (ServeOptions::default(), Vec::new()),
        };
        let sources = args.sources.clone();
        Self::validate(args.over(file)).map_err(|mut e| {
            let file = config.as_deref().map(|path| (path, &keys[..]));
            if e.origin.is_none() {
                e.origin = origin(&e.option, &sources, file);
            }
            e
        })
    }

    /// Checks what no value's type does, and reads the options into
    /// settings.
    fn validate(mut o: ServeOptions) -> Result<Self, ConfigError> {
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = o.cores.unwrap_or(available.min(MAX_CORES));
        check_ranges(&o, cores)?;
        let sources = sources::build(std::mem::take(&mut o.source), o.strict, o.config.as_deref())?;
        let tls = tls(&o, &sources)?;
        let routes = routes(o.push, o.route, o.ack_endpoint)?;
        Ok(Settings {
            listen: o.listen.0,
            listen_plain: o.listen_plain.map(|a| a.0),
            tls,
            share_port: o.share_port,
            routes,
            frames: o.frames,
            cores,
            node_id: o.node_id,
            trusted_proxies: trusted_proxies(o.trusted_proxy),
            client_ip: match o.client_ip_header {
                ClientIpHeader::Auto => AddressHeader::Auto,
                ClientIpHeader::XRealIp => AddressHeader::XRealIp,
                ClientIpHeader::XForwardedFor => AddressHeader::XForwardedFor,
                ClientIpHeader::Forwarded => AddressHeader::Forwarded,
            },
            max_body: o.max_body.0 as usize,
            max_header: o.max_header.0 as usize,
            max_inflight_body: o.max_inflight_body.0,
            idle_timeout: o.idle_timeout.0,
            request_timeout: o.request_timeout.0,
            max_connections: o.max_connections.unwrap_or_else(default_max_connections),
            spool_dir: o.spool_dir,
            spool_max_bytes: o.spool_max_bytes.0,
            spool_min_free: o.spool_min_free,
            durable: o.ack == Ack::Durable,
            sync_interval: o.sync_interval.0,
            flush_interval: o.flush_interval.0,
            zmq_sched: o.zmq_sched,
            // Chosen at start: kernels before 6.0 lack what `uring` needs.
            io: match o.io {
                Io::Uring if !crate::conn::ring::supported() => Io::Poll,
                io => io,
            },
            replay_window: o.replay_window.0,
            sndhwm: o.sndhwm,
            resend_buffer: o.resend_buffer.0,
            resend_window: o.resend_window.0,
            ack_timeout: o.ack_timeout.0,
            admin: o.admin.0,
            drain_timeout: o.drain_timeout.0,
            sources,
        })
    }
}

/// `--tls-cert` and `--tls-key` loaded (refused if expired or mismatched),
/// with the sources' `client-ca`s.
fn tls(
    o: &ServeOptions,
    sources: &crate::source::Sources,
) -> Result<Option<std::sync::Arc<crate::tls::Tls>>, ConfigError> {
    let cas: Vec<_> = sources.list.iter().map(|s| s.client_ca.clone()).collect();
    let (cert, key) = match (&o.tls_cert, &o.tls_key) {
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(bad(
                "tls-key",
                "--tls-cert needs --tls-key, the certificate's private key (PEM)",
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "tls-cert",
                "--tls-key needs --tls-cert, the certificate (PEM, with its chain)",
            ))
        }
        (None, None) => {
            if let Some(i) = cas.iter().position(Option::is_some) {
                return Err(ConfigError {
                    option: format!("[[source]] #{} (service = {:?})", i + 1, sources.list[i].service),
                    origin: o.config.as_ref().map(|f| f.display().to_string()),
                    message: "client-ca: client certificates come over HTTPS; start with --tls-cert and --tls-key".into(),
                });
            }
            ensure(
                o.listen_plain.is_none(),
                "listen-plain",
                "only beside an HTTPS --listen (give --tls-cert and --tls-key)",
            )?;
            return Ok(None);
        }
    };
    if let Some(i) = cas.iter().skip(64).position(Option::is_some) {
        return Err(ConfigError {
            option: format!("[[source]] #{}", i + 65),
            origin: o.config.as_ref().map(|f| f.display().to_string()),
            message: "client-ca: only the first 64 sources can have one; move it up".into(),
        });
    }
    let tls = crate::tls::Tls::new(cert, key, &cas).map_err(|message| {
        let option = if message.starts_with(&key.display().to_string()) {
            "tls-key"
        } else {
            "tls-cert"
        };
        bad(option, message)
    })?;
    Ok(Some(std::sync::Arc::new(tls)))
}

/// The ranges no value's type holds to, and what depends on this machine.
fn check_ranges(o: &ServeOptions, cores: usize) -> Result<(), ConfigError> {
    let message = format!("must be 1-{MAX_CORES}, got {cores}");
    ensure((1..=MAX_CORES).contains(&cores), "cores", message)?;
    let node_id = o.node_id;
    let message = format!("must be 0-{MAX_NODE_ID}, got {node_id}");
    ensure(node_id <= MAX_NODE_ID, "node-id", message)?;
    // An envelope can be six times its body (a control byte is written
    // `\u00XX`) and a spool record holds at most 1 GiB.
    let body = (1..=128 << 20).contains(&o.max_body.0);
    ensure(body, "max-body", "must be between 1 byte and 128MiB")?;
    let header = (1024..=1 << 20).contains(&o.max_header.0);
    ensure(header, "max-header", "must be between 1KiB and 1MiB")?;
    check_inflight_body(o, cores)?;
    let spool = o.spool_max_bytes.0 >= 4096;
    ensure(spool, "spool-max-bytes", "must be at least 4KiB")?;
    for (option, interval) in [
        ("idle-timeout", o.idle_timeout),
        ("request-timeout", o.request_timeout),
        ("sync-interval", o.sync_interval),
        ("replay-window", o.replay_window),
        ("drain-timeout", o.drain_timeout),
        ("ack-timeout", o.ack_timeout),
    ] {
        ensure(!interval.0.is_zero(), option, "must be longer than zero")?;
    }
    let flush = o.flush_interval.0 <= Duration::from_millis(10);
    let message = "must be at most 10ms (every 200 waits for it); 0 turns coalescing off";
    ensure(flush, "flush-interval", message)?;
    // Held in memory (each core and route keeps up to its share): more
    // than the machine has could only end in an allocation failure.
    let memory = physical_memory();
    let memory_text = bytesize::ByteSize(memory).to_string_as(true);
    let message = format!("must be at most this machine's memory ({memory_text})");
    ensure(o.resend_buffer.0 <= memory, "resend-buffer", message)?;
    ensure(o.sndhwm >= 0, "sndhwm", "must be 0 (no limit) or more")?;
    let message = "must be 1 or more";
    ensure(o.max_connections != Some(0), "max-connections", message)
}

/// Descriptors kept for what is not a sender's connection: listeners,
/// io_uring rings, ZeroMQ sockets, spool files, the admin listener.
const OTHER_DESCRIPTORS: u64 = 256;

/// `--max-connections` when not given: what the open-files limit leaves
/// after the descriptors hookwire needs besides its senders' connections.
/// The hard limit, which the binary raises the soft one to at start.
fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid pointer to a local struct.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let open_files = if got { limit.rlim_max } else { 1024 };
    let left = open_files.saturating_sub(OTHER_DESCRIPTORS.min(open_files / 4));
    left.clamp(1, 1 << 24) as usize
}

/// A core's share of `--max-inflight-body` must hold one request of
/// `--max-body` (with a head of `--max-header`) beyond the resting buffer,
/// or such a request, alone on its core, could never be read.
fn check_inflight_body(o: &ServeOptions, cores: usize) -> Result<(), ConfigError> {
    // Exact, as an option is written: a rounded minimum could be refused.
    let text = |n: u64| match n {
        n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n % 1024 == 0 => format!("{}KiB", n >> 10),
        n => n.to_string(),
    };
    let need = (o.max_header.0 + o.max_body.0).saturating_sub(INITIAL as u64);
    let total = o.max_inflight_body.0;
    let share = total / cores as u64;
    let message = format!(
        "{} over {cores} core(s) is {} per core, less than one request of --max-body {} needs; set at least {} ({} per core)",
        text(total),
        text(share),
        text(o.max_body.0),
        text(need * cores as u64),
        text(need),
    );
    ensure(share >= need, "max-inflight-body", message)
}

impl Settings {
    /// A core's share of `--max-inflight-body`.
    pub fn inflight_body_per_core(&self) -> usize {
        (self.max_inflight_body / self.cores as u64) as usize
    }

    /// A core's share of `--max-connections` (at least one).
    pub fn max_connections_per_core(&self) -> usize {
        self.max_connections.div_ceil(self.cores)
    }
}

/// `--push`'s catch-all route first, then each `--route`; without either,
/// the catch-all to `tcp://127.0.0.1:5555`.
fn routes(
    push: Vec<Endpoint>,
    route: Vec<RouteSpec>,
    acks: Vec<AckSpec>,
) -> Result<Vec<RouteSpec>, ConfigError> {
    for Endpoint(endpoint) in &push {
        values::warn_if_unresolved("push", endpoint);
    }
    for endpoint in route.iter().flat_map(|r| &r.endpoints) {
        values::warn_if_unresolved("route", endpoint);
    }
    let mut routes = Vec::new();
    if !push.is_empty() {
        routes.push(RouteSpec {
            pattern: "*".into(),
            endpoints: push.into_iter().map(|Endpoint(e)| e).collect(),
            ack: None,
        });
    }
    routes.extend(route);
    if routes.is_empty() {
        routes.push(RouteSpec {
            pattern: "*".into(),
            endpoints: vec!["tcp://127.0.0.1:5555".into()],
            ack: None,
        });
    }
    let message = "at most 64 routes (including --push) are supported";
    ensure(routes.len() <= 64, "route", message)?;
    for AckSpec { pattern, endpoint } in acks {
        let Some(route) = routes.iter_mut().find(|r| r.pattern == pattern) else {
            let message = format!("'{pattern}' is no route's glob (`*` is --push's route)");
            return Err(error::bad("ack-endpoint", message));
        };
        ensure(
            route.ack.is_none(),
            "ack-endpoint",
            format!("route '{pattern}' has two"),
        )?;
        route.ack = Some(endpoint);
    }
    Ok(routes)
}

/// Bytes of RAM (`u64::MAX` when the system does not say).
fn physical_memory() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(page)) {
        (Ok(pages), Ok(page)) if pages > 0 && page > 0 => pages.saturating_mul(page),
        _ => u64::MAX,
    }
}

/// The trusted proxies; an empty list (`trusted-proxy = []`) is the
/// default, loopback, as when none is given.
fn trusted_proxies(nets: Vec<values::TrustedNet>) -> Vec<IpNet> {
    let nets = if nets.is_empty() {
        ServeOptions::default().trusted_proxy
    } else {
        nets
    };
    nets.iter().map(|net| net.0).collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["hookwire".into()];
        argv.extend(args.iter().map(Into::into));
        // A value of the wrong form is refused while clap parses, as in the
        // binary (`Cli::parse_with_sources`).
        let cli = Cli::try_parse_from(&argv)
            .map_err(|e| cli::refused_value(&e, &argv).expect("a refused value"))?;
        Settings::from_args(cli.serve)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            s.routes,
            [RouteSpec {
                pattern: "*".into(),
                endpoints: vec!["tcp://127.0.0.1:5555".into()],
                ack: None,
            }]
        );
        assert_eq!(s.frames, Frames::Json);
        assert_eq!(s.max_body, 1 << 20);
        assert_eq!(s.node_id, 0);
        assert_eq!(s.admin, Some("127.0.0.1:9733".parse().unwrap()));
        assert_eq!(s.drain_timeout, Duration::from_secs(10));
        assert_eq!(s.resend_buffer, 64 << 20);
        assert_eq!(s.resend_window, Duration::from_secs(5));
        assert_eq!(s.max_inflight_body, 256 << 20);
        assert_eq!(s.zmq_sched, Sched::Batch);
        assert_eq!(
            settings(&["--zmq-sched", "normal"]).unwrap().zmq_sched,
            Sched::Normal
        );
        assert_eq!(settings(&["--admin", "off"]).unwrap().admin, None);
        assert!(s
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap())));
    }

    #[test]
    fn flush_interval_units() {
        let interval = |v: &str| settings(&["--flush-interval", v]).unwrap().flush_interval;
        assert_eq!(
            settings(&[]).unwrap().flush_interval,
            Duration::ZERO,
            "off by default"
        );
        for zero in ["0", "0ms", "0s", "0us"] {
            assert_eq!(interval(zero), Duration::ZERO, "{zero}");
        }
        assert_eq!(interval("200us"), Duration::from_micros(200));
        assert_eq!(interval("10ms"), Duration::from_millis(10));
        assert!(settings(&["--flush-interval", "11ms"]).is_err());
    }

    #[test]
    fn push_and_routes() {
        let s = settings(&[
            "--push",
            "tcp://127.0.0.1:1",
            "--route",
            "in.gen.calltrack.*=tcp://127.0.0.1:5601,tcp://127.0.0.1:5602",
        ])
        .unwrap();
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.routes[0].pattern, "*");
        assert_eq!(s.routes[1].endpoints.len(), 2);
    }

    #[test]
    fn an_ack_endpoint_names_its_route_by_glob() {
        let s = settings(&[
            "--push",
            "tcp://127.0.0.1:1",
            "--route",
            "in.gen.a.*=tcp://127.0.0.1:2",
            "--ack-endpoint",
            "in.gen.a.*=tcp://127.0.0.1:3",
        ])
        .unwrap();
        assert_eq!(s.routes[0].ack, None);
        assert_eq!(s.routes[1].ack.as_deref(), Some("tcp://127.0.0.1:3"));
        assert_eq!(s.ack_timeout, Duration::from_secs(30));
        for bad in ["in.gen.b.*=tcp://127.0.0.1:3", "*", "*=nope"] {
            let e = settings(&["--ack-endpoint", bad]).unwrap_err();
            assert!(e.to_string().contains("--ack-endpoint"), "{bad}: {e}");
        }
        // Bound, not connected to: any host.
        let any = settings(&["--ack-endpoint", "*=tcp://*:5557"]).unwrap();
        assert_eq!(any.routes[0].ack.as_deref(), Some("tcp://*:5557"));
        let twice = ["--ack-endpoint", "*=tcp://127.0.0.1:3;*=tcp://127.0.0.1:4"];
        assert!(settings(&twice).is_err());
    }

    #[test]
    fn bad_options_name_the_option() {
        for (args, option) in [
            (&["--push", "nope"][..], "--push"),
            (&["--push", "tcp://127.0.0.1"], "--push"),
            (&["--push", "inproc://x"], "--push"),
            (&["--route", "x"], "--route"),
            (&["--frames", "xml"], "--frames"),
            (&["--cores", "0"], "--cores"),
            (&["--node-id", "16"], "--node-id"),
            (&["--trusted-proxy", "10.0.0.0/33"], "--trusted-proxy"),
            (&["--max-body", "lots"], "--max-body"),
            (&["--max-body", "129MiB"], "--max-body"),
            (&["--listen", "nowhere"], "--listen"),
            (&["--idle-timeout", "0s"], "--idle-timeout"),
            (&["--admin", "nowhere"], "--admin"),
            (&["--drain-timeout", "x"], "--drain-timeout"),
            (&["--ack", "maybe"], "--ack"),
            (&["--spool-max-bytes", "12"], "--spool-max-bytes"),
            (&["--spool-min-free", "60%"], "--spool-min-free"),
            (&["--spool-min-free", "some"], "--spool-min-free"),
            (&["--resend-buffer", "much"], "--resend-buffer"),
            (&["--zmq-sched", "fifo"], "--zmq-sched"),
            (&["--resend-buffer", "1PiB"], "--resend-buffer"),
            (&["--max-inflight-body", "much"], "--max-inflight-body"),
            (
                &["--max-inflight-body", "1MiB", "--cores", "2"],
                "--max-inflight-body",
            ),
        ] {
            let err = settings(args).unwrap_err().to_string();
            assert!(err.starts_with(option), "{args:?}: {err}");
        }
    }

    #[test]
    fn spool_min_free_is_a_size_or_a_share() {
        let of = |v: &str| settings(&["--spool-min-free", v]).unwrap().spool_min_free;
        assert_eq!(of("64MiB").bytes(1 << 30), 64 << 20);
        assert_eq!(of("0").bytes(1 << 30), 0);
        assert_eq!(of("1%").bytes(1 << 30), (1 << 30) / 100);
        assert_eq!(of("2.5 %").bytes(1000), 25);
        let default = settings(&[]).unwrap().spool_min_free;
        assert_eq!(default.bytes(4 << 20), (4 << 20) / 100, "1% by default");
    }

    #[test]
    fn file_under_flags() {
        let dir = std::env::temp_dir().join(format!("hookwire-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmax-body = \"64KiB\"\nnode-id = 3\nfrnames = 1\n",
        )
        .unwrap();
        let err = settings(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--config") && err.contains("frnames"),
            "{err}"
        );

        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmax-body = 65536\nnode-id = 3\nresend-buffer = \"8MiB\"\n\
             flush-interval = 0\nshare-port = true\n",
        )
        .unwrap();
        let s = settings(&["--config", path.to_str().unwrap(), "--node-id", "4"]).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.max_body, 65536);
        assert_eq!(s.node_id, 4);
        assert_eq!(s.resend_buffer, 8 << 20);
        assert_eq!(s.flush_interval, Duration::ZERO);
        assert!(s.share_port);
        assert!(!settings(&[]).unwrap().share_port);

        // A duration as a bare number other than 0 has no unit to go by.
        std::fs::write(&path, "idle-timeout = 30\n").unwrap();
        let err = settings(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("--idle-timeout") && err.contains("'30'"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A flag replaces the file's value without reading it, a bad one too;
    /// an empty trusted-proxy list is the default, as an absent one.
    #[test]
    fn flags_override_the_file_unread_and_empty_lists_are_defaults() {
        let dir = std::env::temp_dir().join(format!("hookwire-override-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.toml");
        std::fs::write(&path, "max-body = \"lots\"\ntrusted-proxy = []\n").unwrap();
        let file = path.to_str().unwrap();
        let s = settings(&["--config", file, "--max-body", "64KiB"]).unwrap();
        assert_eq!(s.max_body, 64 << 10);
        assert_eq!(s.trusted_proxies, settings(&[]).unwrap().trusted_proxies);
        assert_eq!(s.trusted_proxies.len(), 2);
        let err = settings(&["--config", file]).unwrap_err().to_string();
        assert!(
            err.starts_with("--max-body") && err.contains("'lots'"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A core's share must hold one request of --max-body past the
    /// resting buffer: the refusal names both options and the minimum.
    #[test]
    fn inflight_body_holds_one_request_per_core() {
        let s = settings(&[
            "--max-inflight-body",
            "2MiB",
            "--max-body",
            "512KiB",
            "--cores",
            "1",
        ])
        .unwrap();
        assert_eq!(s.inflight_body_per_core(), 2 << 20);
        let two = settings(&["--max-inflight-body", "2MiB", "--cores", "2"]).unwrap();
        assert_eq!(two.inflight_body_per_core(), 1 << 20);
        let err = settings(&[
            "--max-inflight-body",
            "1MiB",
            "--max-body",
            "1MiB",
            "--cores",
            "2",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--max-inflight-body: 1MiB over 2 core(s) is 512KiB per core")
                && err.contains("--max-body 1MiB")
                && err.contains("at least 2MiB (1MiB per core)"),
            "{err}"
        );
        // A larger head limit needs more.
        let err = settings(&[
            "--max-inflight-body",
            "1MiB",
            "--max-header",
            "64KiB",
            "--cores",
            "1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("at least 1072KiB"), "{err}");
    }

    /// An option given without a value keeps clap's own message.
    #[test]
    fn a_missing_value_is_said_by_clap() {
        let argv: Vec<std::ffi::OsString> = vec!["hookwire".into(), "--frames".into()];
        let err = Cli::try_parse_from(&argv).unwrap_err();
        assert!(cli::refused_value(&err, &argv).is_none());
        assert!(err.to_string().contains("a value is required"), "{err}");
    }

    /// As the flag and the variable take one value or a list (`,`; `;`
    /// between routes), so does the file: a string or an array of them.
    #[test]
    fn file_lists_take_a_string_or_an_array() {
        let dir = std::env::temp_dir().join(format!("hookwire-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.toml");
        let from_file = |text: &str| {
            std::fs::write(&path, text).unwrap();
            settings(&["--config", path.to_str().unwrap()]).unwrap()
        };
        let one = from_file(
            "push = \"tcp://127.0.0.1:5601\"\nroute = \"a.*=tcp://127.0.0.1:5602\"\n\
             trusted-proxy = \"10.0.0.0/8\"\n",
        );
        assert_eq!(one.routes.len(), 2);
        assert_eq!(one.routes[0].endpoints, ["tcp://127.0.0.1:5601"]);
        assert_eq!(one.routes[1].pattern, "a.*");
        assert_eq!(
            one.trusted_proxies,
            ["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        let joined = from_file(
            "push = \"tcp://127.0.0.1:5601,tcp://127.0.0.1:5603\"\n\
             route = \"a.*=tcp://127.0.0.1:5602;b.*=tcp://127.0.0.1:5604\"\n\
             trusted-proxy = \"10.0.0.0/8,192.168.0.0/16\"\n",
        );
        let listed = from_file(
            "push = [\"tcp://127.0.0.1:5601\", \"tcp://127.0.0.1:5603\"]\n\
             route = [\"a.*=tcp://127.0.0.1:5602\", \"b.*=tcp://127.0.0.1:5604\"]\n\
             trusted-proxy = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n",
        );
        assert_eq!(joined.routes, listed.routes);
        assert_eq!(joined.routes.len(), 3);
        assert_eq!(joined.routes[0].endpoints.len(), 2);
        assert_eq!(joined.trusted_proxies, listed.trusted_proxies);
        assert_eq!(joined.trusted_proxies.len(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
