//! Configuration: flags over `HOOKWIRE_*` environment over the TOML file
//! over defaults, validated once into [`Settings`]. Nothing downstream sees
//! the raw flags.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use ipnet::IpNet;
use serde::Deserialize;

use crate::event::id::{MAX_CORES, MAX_NODE_ID};

#[derive(Debug, Parser)]
#[command(
    name = "hookwire",
    version,
    about = "Webhook/postback ingestion: HTTP in, JSON envelopes out over ZeroMQ PUSH",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept webhooks and fan them out (the default).
    Serve(Box<ServeArgs>),
    /// Bind a ZeroMQ PULL socket and print every envelope as a JSON line.
    Tap(TapArgs),
}

#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with the same keys as the flags (`max-body = "1MiB"`).
    #[arg(long, env = "HOOKWIRE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the public HTTP listener [default: 0.0.0.0:8080]
    #[arg(long, env = "HOOKWIRE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// ZeroMQ endpoint for the catch-all route `*` (repeatable; consumers bind PULL)
    /// [default: tcp://127.0.0.1:5555 when no --push or --route is given]
    #[arg(
        long,
        env = "HOOKWIRE_PUSH",
        value_name = "ENDPOINT",
        value_delimiter = ','
    )]
    pub push: Vec<String>,
    /// A route: `<key glob>=<endpoint>[,<endpoint>…]` (repeatable; `;` separates routes in the env var)
    #[arg(
        long,
        env = "HOOKWIRE_ROUTE",
        value_name = "GLOB=ENDPOINTS",
        value_delimiter = ';'
    )]
    pub route: Vec<String>,
    /// Wire format: `json` (one frame) or `key+json` (two frames) [default: json]
    #[arg(long, env = "HOOKWIRE_FRAMES")]
    pub frames: Option<String>,
    /// Executors, one per core [default: every core]
    #[arg(long, env = "HOOKWIRE_CORES")]
    pub cores: Option<usize>,
    /// Node id, 0-15, distinct per hookwire node sharing consumers [default: 0]
    #[arg(long, env = "HOOKWIRE_NODE_ID")]
    pub node_id: Option<u16>,
    /// CIDR whose X-Real-IP / X-Forwarded-For are believed (repeatable) [default: 127.0.0.0/8, ::1/128]
    #[arg(
        long,
        env = "HOOKWIRE_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<String>,
    /// Largest accepted body, e.g. `1MiB`, `512k`, `65536` [default: 1MiB]
    #[arg(long, env = "HOOKWIRE_MAX_BODY", value_name = "SIZE")]
    pub max_body: Option<String>,
    /// Largest request line + headers [default: 16KiB]
    #[arg(long, env = "HOOKWIRE_MAX_HEADER", value_name = "SIZE")]
    pub max_header: Option<String>,
    /// Close a keep-alive connection idle this long [default: 60s]
    #[arg(long, env = "HOOKWIRE_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// A started request must arrive completely within this [default: 10s]
    #[arg(long, env = "HOOKWIRE_REQUEST_TIMEOUT", value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// Also listen when another hookwire of this user already listens on
    /// the address (SO_REUSEPORT; the kernel splits new connections between
    /// them): for a restart without a gap, start the new process with this,
    /// then SIGTERM the old. Without it an address in use is refused
    #[arg(long, env = "HOOKWIRE_SHARE_PORT")]
    pub share_port: bool,
    /// Directory of the on-disk spool (one sub-directory per route and core) [default: ./spool]
    #[arg(long, env = "HOOKWIRE_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// Most bytes the spool may hold, for the whole process [default: 1GiB]
    #[arg(long, env = "HOOKWIRE_SPOOL_MAX_BYTES", value_name = "SIZE")]
    pub spool_max_bytes: Option<String>,
    /// When the 200 is sent: `accepted` (in ZeroMQ's queue or written to the
    /// spool) or `durable` (journaled and fdatasync'ed) [default: accepted]
    #[arg(long, env = "HOOKWIRE_ACK", value_name = "MODE")]
    pub ack: Option<String>,
    /// Durable mode: one fdatasync covers what was appended in this interval [default: 2ms]
    #[arg(long, env = "HOOKWIRE_SYNC_INTERVAL", value_name = "DURATION")]
    pub sync_interval: Option<String>,
    /// Accepted mode: while several events wait, a core hands them to ZeroMQ at most once per this interval (0: every loop) [default: 0]
    #[arg(long, env = "HOOKWIRE_FLUSH_INTERVAL", value_name = "DURATION")]
    pub flush_interval: Option<String>,
    /// Scheduling policy of the ZeroMQ I/O threads: `batch` (SCHED_BATCH: woken
    /// to send, a core's I/O thread does not preempt the core's executor but
    /// runs when it waits) or `normal` (SCHED_OTHER) [default: batch]
    #[arg(long, env = "HOOKWIRE_ZMQ_SCHED", value_name = "POLICY")]
    pub zmq_sched: Option<String>,
    /// Durable mode: journal files are kept this long after delivery, for replay after a crash [default: 10s]
    #[arg(long, env = "HOOKWIRE_REPLAY_WINDOW", value_name = "DURATION")]
    pub replay_window: Option<String>,
    /// ZeroMQ send high-water mark per socket [default: 1000]
    #[arg(long, env = "HOOKWIRE_SNDHWM", value_name = "MESSAGES")]
    pub sndhwm: Option<i32>,
    /// Accepted mode: copies of the latest events handed to ZeroMQ, re-sent
    /// when a consumer disconnects; for the whole process, 0 = off [default: 64MiB]
    #[arg(long, env = "HOOKWIRE_RESEND_BUFFER", value_name = "SIZE")]
    pub resend_buffer: Option<String>,
    /// Private admin listener (/metrics, /stats, /health, /ready), or `off` [default: 127.0.0.1:9090]
    #[arg(long, env = "HOOKWIRE_ADMIN", value_name = "ADDR|off")]
    pub admin: Option<String>,
    /// On SIGTERM/SIGINT, how long in-flight requests and queued events may take [default: 10s]
    #[arg(long, env = "HOOKWIRE_DRAIN_TIMEOUT", value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// Where clap took each given option from (by clap id, `max_body`):
    /// the command line or the environment, so an error can say which to
    /// fix.
    #[arg(skip)]
    pub sources: Vec<(String, ValueSource)>,
}

impl Cli {
    /// Parses the command line and the environment (exiting with clap's
    /// message on a parse error), noting where each serve option was set.
    pub fn parse_with_sources() -> Self {
        let matches = Cli::command()
            .try_get_matches()
            .unwrap_or_else(|e| exit_naming_env(e));
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let (serve, args) = match (&mut cli.command, matches.subcommand()) {
            (Some(Command::Serve(args)), Some(("serve", m))) => (m, &mut **args),
            (None, _) => (&matches, &mut cli.serve),
            _ => return cli,
        };
        args.sources = serve
            .ids()
            .filter_map(|id| Some((id.to_string(), serve.value_source(id.as_str())?)))
            .collect();
        cli
    }
}

#[derive(Debug, Args, Clone)]
pub struct TapArgs {
    /// Endpoint to bind the PULL socket on
    #[arg(long, default_value = "tcp://127.0.0.1:5555")]
    pub bind: String,
    /// Exit after this many envelopes
    #[arg(long)]
    pub count: Option<u64>,
}

/// The TOML file: the flags' names as keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    #[serde(default)]
    push: Vec<String>,
    #[serde(default)]
    route: Vec<String>,
    frames: Option<String>,
    cores: Option<usize>,
    #[serde(alias = "node_id")]
    node_id: Option<u16>,
    #[serde(default, alias = "trusted_proxy")]
    trusted_proxy: Vec<String>,
    #[serde(alias = "max_body")]
    max_body: Option<Value>,
    #[serde(alias = "max_header")]
    max_header: Option<Value>,
    #[serde(alias = "idle_timeout")]
    idle_timeout: Option<Value>,
    #[serde(alias = "request_timeout")]
    request_timeout: Option<Value>,
    #[serde(alias = "share_port")]
    share_port: Option<bool>,
    #[serde(alias = "spool_dir")]
    spool_dir: Option<PathBuf>,
    #[serde(alias = "spool_max_bytes")]
    spool_max_bytes: Option<Value>,
    ack: Option<String>,
    #[serde(alias = "sync_interval")]
    sync_interval: Option<Value>,
    #[serde(alias = "flush_interval")]
    flush_interval: Option<Value>,
    #[serde(alias = "replay_window")]
    replay_window: Option<Value>,
    #[serde(alias = "zmq_sched")]
    zmq_sched: Option<String>,
    sndhwm: Option<i32>,
    #[serde(alias = "resend_buffer")]
    resend_buffer: Option<Value>,
    admin: Option<String>,
    #[serde(alias = "drain_timeout")]
    drain_timeout: Option<Value>,
}

/// A size or a duration in the file: a number (bytes; for a duration only
/// `0`, "off", means anything without a unit) or a string like `"1MiB"`,
/// `"10s"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Value {
    Number(u64),
    Text(String),
}

impl Value {
    fn text(self) -> String {
        match self {
            Value::Number(n) => n.to_string(),
            Value::Text(s) => s,
        }
    }
}

/// How envelopes leave on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    Json,
    KeyJson,
}

/// The Linux scheduling policy of libzmq's I/O threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sched {
    /// `SCHED_BATCH`: a thread woken up does not preempt the one running;
    /// it gets its fair share of the CPU, from the scheduler's tick or when
    /// the running thread waits.
    Batch,
    /// `SCHED_OTHER`, the default of every Linux thread.
    Normal,
}

/// One route: a glob on the key and the endpoints its PUSH socket connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub pattern: String,
    pub endpoints: Vec<String>,
}

/// Validated settings, shared read-only by every core.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Join a port another process listens on (`--share-port`).
    pub share_port: bool,
    pub routes: Vec<RouteSpec>,
    pub frames: Frames,
    pub cores: usize,
    pub node_id: u16,
    pub trusted_proxies: Vec<IpNet>,
    pub max_body: usize,
    pub max_header: usize,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    /// `--ack durable`.
    pub durable: bool,
    pub sync_interval: Duration,
    /// Accepted mode: the least time between two hand-offs of a core's
    /// outbox to ZeroMQ while more than one event waits (zero: none).
    pub flush_interval: Duration,
    pub zmq_sched: Sched,
    pub replay_window: Duration,
    pub sndhwm: i32,
    /// Bytes of recently sent events kept for re-sending (accepted mode).
    pub resend_buffer: u64,
    /// `None`: the admin listener is off.
    pub admin: Option<SocketAddr>,
    pub drain_timeout: Duration,
}

/// Exits with clap's error; when the value it refuses came from a
/// `HOOKWIRE_*` variable rather than the command line, says so (clap names
/// only the flag).
fn exit_naming_env(error: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        if let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) {
            // "--cores <CORES>"
            let flag = arg.split(' ').next().unwrap_or("");
            let name = flag.strip_prefix("--").unwrap_or("");
            let var = format!("HOOKWIRE_{}", name.replace('-', "_").to_ascii_uppercase());
            let on_line = std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
            if !name.is_empty() && !on_line && std::env::var_os(&var).is_some() {
                let text = error.render().to_string();
                let quoted = format!("'{arg}'");
                eprint!(
                    "{}",
                    text.replacen(&quoted, &format!("{quoted} (set by {var})"), 1)
                );
                std::process::exit(2);
            }
        }
    }
    error.exit()
}

/// A refused option: which one, where its value was set when not on the
/// command line, and what is wrong with it.
#[derive(Debug)]
pub struct ConfigError {
    pub option: String,
    pub origin: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}", self.option)?;
        if let Some(origin) = &self.origin {
            write!(f, " (set by {origin})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

fn bad(option: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        option: option.into(),
        origin: None,
        message: msg.to_string(),
    }
}

/// Where the value of the flag `option` (`max-body`) came from, when not
/// from the command line: its environment variable, or its key in the
/// config file.
fn origin(
    option: &str,
    sources: &[(String, ValueSource)],
    file: Option<(&Path, &[String])>,
) -> Option<String> {
    let id = option.replace('-', "_");
    match sources.iter().find(|(given, _)| *given == id) {
        Some((_, ValueSource::CommandLine)) => return None,
        Some((_, ValueSource::EnvVariable)) => {
            return Some(format!("HOOKWIRE_{}", id.to_ascii_uppercase()))
        }
        _ => {}
    }
    let (path, keys) = file?;
    let key = keys.iter().find(|key| key.replace('_', "-") == option)?;
    Some(format!("{key} in {}", path.display()))
}

/// One of `choices` by name; the first when the option is not given.
fn one_of<T: Copy>(
    option: &str,
    value: Option<String>,
    choices: &[(&str, T)],
) -> Result<T, ConfigError> {
    let Some(text) = value else {
        return Ok(choices[0].1);
    };
    match choices.iter().find(|(name, _)| *name == text) {
        Some(&(_, choice)) => Ok(choice),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(bad(
                option,
                format!("'{text}' is not one of: {}", names.join(", ")),
            ))
        }
    }
}

impl Settings {
    /// One core pushing to `endpoint` with a send queue deep enough that
    /// ZeroMQ takes every event directly, and a spool in the temp dir: the
    /// settings of benchmarks and tests that drive `Shard::standalone`.
    pub fn standalone(endpoint: &str) -> Self {
        let spool =
            std::env::temp_dir().join(format!("hookwire-standalone-{}", std::process::id()));
        let spool = spool.to_str().expect("temp dir is UTF-8");
        let args = [
            "hookwire",
            "--push",
            endpoint,
            "--cores",
            "1",
            "--sndhwm",
            "100000",
            "--spool-dir",
            spool,
        ];
        let cli = Cli::try_parse_from(args).expect("valid arguments");
        Self::from_args(cli.serve).expect("valid settings")
    }

    /// Merges flags/env (already merged by clap) with the file and defaults.
    /// A refused value is named by where it was set: the flag, its
    /// environment variable or its key in the file.
    pub fn from_args(mut args: ServeArgs) -> Result<Self, ConfigError> {
        let sources = std::mem::take(&mut args.sources);
        let config = args.config.clone();
        let (file, keys) = match &config {
            Some(path) => load_file(path).map_err(|mut e| {
                e.origin = origin("config", &sources, None);
                e
            })?,
            None => (FileConfig::default(), Vec::new()),
        };
        Self::merge(args, file).map_err(|mut e| {
            let file = config.as_deref().map(|path| (path, &keys[..]));
            e.origin = origin(&e.option, &sources, file);
            e
        })
    }

    fn merge(args: ServeArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let pick = |flag: Vec<String>, file: Vec<String>| if flag.is_empty() { file } else { flag };

        let listen_text = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "0.0.0.0:8080".into());
        let listen = listen_text
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                bad(
                    "listen",
                    format!("'{listen_text}' is not an address like 0.0.0.0:8080"),
                )
            })?;

        let share_port = args.share_port || file.share_port.unwrap_or(false);

        let push = pick(args.push, file.push);
        let route = pick(args.route, file.route);
        let mut routes = Vec::new();
        for text in &route {
            routes.push(parse_route(text)?);
        }
        if !push.is_empty() {
            for e in &push {
                check_endpoint("push", e)?;
            }
            routes.insert(
                0,
                RouteSpec {
                    pattern: "*".into(),
                    endpoints: push,
                },
            );
        }
        if routes.is_empty() {
            routes.push(RouteSpec {
                pattern: "*".into(),
                endpoints: vec!["tcp://127.0.0.1:5555".into()],
            });
        }
        if routes.len() > 64 {
            return Err(bad(
                "route",
                "at most 64 routes (including --push) are supported",
            ));
        }

        let frames = one_of(
            "frames",
            args.frames.or(file.frames),
            &[("json", Frames::Json), ("key+json", Frames::KeyJson)],
        )?;

        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = args
            .cores
            .or(file.cores)
            .unwrap_or(available.min(MAX_CORES));
        if cores == 0 || cores > MAX_CORES {
            return Err(bad("cores", format!("must be 1-{MAX_CORES}, got {cores}")));
        }
        let node_id = args.node_id.or(file.node_id).unwrap_or(0);
        if node_id > MAX_NODE_ID {
            return Err(bad(
                "node-id",
                format!("must be 0-{MAX_NODE_ID}, got {node_id}"),
            ));
        }

        let proxies = pick(args.trusted_proxy, file.trusted_proxy);
        let trusted_proxies = if proxies.is_empty() {
            vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]
        } else {
            proxies
                .iter()
                .map(|p| {
                    p.trim()
                        .parse::<IpNet>()
                        .or_else(|_| p.trim().parse::<std::net::IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            bad(
                                "trusted-proxy",
                                format!("'{p}' is not a CIDR like 10.0.0.0/8 or an IP"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?
        };

        let max_body = size(
            "max-body",
            args.max_body.or(file.max_body.map(Value::text)),
            "1MiB",
        )?;
        // An envelope can be six times its body (a control byte is written
        // `\u00XX`) and a spool record holds at most 1 GiB.
        if !(1..=128 << 20).contains(&max_body) {
            return Err(bad("max-body", "must be between 1 byte and 128MiB"));
        }
        let max_header = size(
            "max-header",
            args.max_header.or(file.max_header.map(Value::text)),
            "16KiB",
        )?;
        if !(1024..=1 << 20).contains(&max_header) {
            return Err(bad("max-header", "must be between 1KiB and 1MiB"));
        }
        let idle_timeout = duration(
            "idle-timeout",
            args.idle_timeout.or(file.idle_timeout.map(Value::text)),
            "60s",
        )?;
        let request_timeout = duration(
            "request-timeout",
            args.request_timeout
                .or(file.request_timeout.map(Value::text)),
            "10s",
        )?;
        let spool_dir = args
            .spool_dir
            .or(file.spool_dir)
            .unwrap_or_else(|| "spool".into());
        let spool_max_bytes = size(
            "spool-max-bytes",
            args.spool_max_bytes
                .or(file.spool_max_bytes.map(Value::text)),
            "1GiB",
        )? as u64;
        if spool_max_bytes < 4096 {
            return Err(bad("spool-max-bytes", "must be at least 4KiB"));
        }
        let durable = one_of(
            "ack",
            args.ack.or(file.ack),
            &[("accepted", false), ("durable", true)],
        )?;
        let sync_interval = duration(
            "sync-interval",
            args.sync_interval.or(file.sync_interval.map(Value::text)),
            "2ms",
        )?;
        let flush_interval = duration_or_zero(
            "flush-interval",
            args.flush_interval.or(file.flush_interval.map(Value::text)),
            "0",
        )?;
        if flush_interval > Duration::from_millis(10) {
            return Err(bad(
                "flush-interval",
                "must be at most 10ms (every 200 waits for it); 0 turns coalescing off",
            ));
        }
        let zmq_sched = one_of(
            "zmq-sched",
            args.zmq_sched.or(file.zmq_sched),
            &[("batch", Sched::Batch), ("normal", Sched::Normal)],
        )?;
        let replay_window = duration(
            "replay-window",
            args.replay_window.or(file.replay_window.map(Value::text)),
            "10s",
        )?;
        let resend_buffer = size(
            "resend-buffer",
            args.resend_buffer.or(file.resend_buffer.map(Value::text)),
            "64MiB",
        )? as u64;
        // Held in memory (each core and route keeps up to its share): more
        // than the machine has could only end in an allocation failure.
        let memory = physical_memory();
        if resend_buffer > memory {
            return Err(bad(
                "resend-buffer",
                format!(
                    "must be at most this machine's memory ({})",
                    bytesize::ByteSize(memory).to_string_as(true)
                ),
            ));
        }
        let sndhwm = args.sndhwm.or(file.sndhwm).unwrap_or(1_000);
        if sndhwm < 0 {
            return Err(bad("sndhwm", "must be 0 (no limit) or more"));
        }

        let admin = match args.admin.or(file.admin).as_deref().map(str::trim) {
            Some("off") => None,
            other => {
                let text = other.unwrap_or("127.0.0.1:9090");
                Some(
                    text.to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .ok_or_else(|| {
                            bad(
                                "admin",
                                format!("'{text}' is not an address like 127.0.0.1:9090 or off"),
                            )
                        })?,
                )
            }
        };
        let drain_timeout = duration(
            "drain-timeout",
            args.drain_timeout.or(file.drain_timeout.map(Value::text)),
            "10s",
        )?;

        Ok(Settings {
            listen,
            share_port,
            routes,
            frames,
            cores,
            node_id,
            trusted_proxies,
            max_body,
            max_header,
            idle_timeout,
            request_timeout,
            spool_dir,
            spool_max_bytes,
            durable,
            sync_interval,
            flush_interval,
            zmq_sched,
            replay_window,
            sndhwm,
            resend_buffer,
            admin,
            drain_timeout,
        })
    }
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

/// The file's settings and the keys it sets.
fn load_file(path: &Path) -> Result<(FileConfig, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
    let refused = |e: toml::de::Error| bad("config", format!("{}: {e}", path.display()));
    let table: toml::Table = toml::from_str(&text).map_err(refused)?;
    let config = FileConfig::deserialize(table.clone()).map_err(refused)?;
    Ok((config, table.into_iter().map(|(key, _)| key).collect()))
}

fn size(option: &str, value: Option<String>, default: &str) -> Result<usize, ConfigError> {
    let text = value.unwrap_or_else(|| default.into());
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64() as usize)
        .map_err(|_| {
            bad(
                option,
                format!("'{text}' is not a size like 1MiB, 512KiB or 65536"),
            )
        })
}

fn duration(option: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let d = duration_or_zero(option, value, default)?;
    if d.is_zero() {
        return Err(bad(option, "must be longer than zero"));
    }
    Ok(d)
}

/// A duration where zero (`0`, `0ms`, …) means "off".
fn duration_or_zero(
    option: &str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.into());
    humantime::parse_duration(text.trim()).map_err(|_| {
        bad(
            option,
            format!("'{text}' is not a duration like 10s or 500ms"),
        )
    })
}

fn parse_route(text: &str) -> Result<RouteSpec, ConfigError> {
    let (pattern, endpoints) = text.split_once('=').ok_or_else(|| {
        bad(
            "route",
            format!("'{text}' is not <key glob>=<endpoint>[,<endpoint>…]"),
        )
    })?;
    let pattern = pattern.trim();
    if pattern.is_empty() || pattern.contains(char::is_whitespace) {
        return Err(bad(
            "route",
            format!("'{text}': the key glob must be non-empty, without spaces"),
        ));
    }
    let endpoints: Vec<String> = endpoints.split(',').map(|e| e.trim().to_owned()).collect();
    for e in &endpoints {
        check_endpoint("route", e)?;
    }
    Ok(RouteSpec {
        pattern: pattern.into(),
        endpoints,
    })
}

/// A TCP endpoint whose host is an IPv6 literal (`tcp://[::1]:5555`): a
/// socket connects to it only with ZMQ_IPV6. Other endpoints keep IPv4
/// resolution, so a name such as `localhost` stays the IPv4 address an
/// IPv4-only consumer listens on.
pub fn needs_ipv6(endpoint: &str) -> bool {
    endpoint.starts_with("tcp://[")
}

/// Refuses what ZeroMQ would refuse, at start rather than at first send.
fn check_endpoint(option: &str, endpoint: &str) -> Result<(), ConfigError> {
    let hint = "expected tcp://host:port or ipc://path";
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(|| {
        bad(
            option,
            format!("'{endpoint}' is not a ZeroMQ endpoint ({hint})"),
        )
    })?;
    if scheme == "inproc" {
        return Err(bad(
            option,
            format!("'{endpoint}': inproc:// reaches only sockets inside hookwire itself, never a consumer; use tcp://host:port or ipc://path"),
        ));
    }
    let ok = match scheme {
        "tcp" => rest.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        }),
        "ipc" => !rest.is_empty(),
        _ => false,
    };
    if !ok {
        return Err(bad(
            option,
            format!("'{endpoint}' is not a ZeroMQ endpoint ({hint})"),
        ));
    }
    // Let libzmq itself judge the address (e.g. an unresolvable host).
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::PUSH).map_err(|e| bad(option, e))?;
    socket.set_linger(0).map_err(|e| bad(option, e))?;
    if needs_ipv6(endpoint) {
        socket.set_ipv6(true).map_err(|e| bad(option, e))?;
    }
    socket
        .connect(endpoint)
        .map_err(|e| bad(option, format!("'{endpoint}': {e}")))?;
    // A name that does not resolve now may later (libzmq keeps trying):
    // said, not refused.
    if let Some(host_port) = endpoint.strip_prefix("tcp://") {
        let host_port = host_port
            .rsplit_once(';')
            .map_or(host_port, |(_, remote)| remote);
        if std::net::ToSocketAddrs::to_socket_addrs(host_port).is_err() {
            eprintln!("hookwire: --{option}: '{endpoint}': the host does not resolve now; events for it wait in the spool until it does and a consumer answers");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["hookwire"];
        argv.extend_from_slice(args);
        Settings::from_args(Cli::try_parse_from(argv).unwrap().serve)
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            s.routes,
            [RouteSpec {
                pattern: "*".into(),
                endpoints: vec!["tcp://127.0.0.1:5555".into()]
            }]
        );
        assert_eq!(s.frames, Frames::Json);
        assert_eq!(s.max_body, 1 << 20);
        assert_eq!(s.node_id, 0);
        assert_eq!(s.admin, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(s.drain_timeout, Duration::from_secs(10));
        assert_eq!(s.resend_buffer, 64 << 20);
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
            (&["--resend-buffer", "much"], "--resend-buffer"),
            (&["--zmq-sched", "fifo"], "--zmq-sched"),
            (&["--resend-buffer", "1PiB"], "--resend-buffer"),
        ] {
            let err = settings(args).unwrap_err().to_string();
            assert!(err.starts_with(option), "{args:?}: {err}");
        }
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
}
