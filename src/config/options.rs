//! The serve options, each declared once and typed: its flag, variable,
//! file key (the flag's name) and default; and the flags laid over the file.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, FromArgMatches};
use serde::Deserialize;

use super::sources::SourceSpec;
use super::values::{
    list, Ack, AckSpec, Address, Admin, ClientIpHeader, Endpoint, Frames, Headroom, Interval, Io,
    RouteSpec, Sched, Size, TrustedNet,
};

/// The options of `serve`, from the command line and the environment (clap)
/// or from the TOML file (serde, the flags' names as keys: `max-body`, also
/// `max_body`).
#[derive(Debug, Clone, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct ServeOptions {
    /// TOML file with the same keys as the flags (`max-body = "1MiB"`).
    #[arg(long, env = "HOOKWIRE_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address of the public HTTP listener
    #[arg(
        long,
        env = "HOOKWIRE_LISTEN",
        value_name = "ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub listen: Address,
    /// A plain-HTTP listener beside an HTTPS --listen (for health checks
    /// behind a load balancer); serves the same endpoints
    #[arg(long, env = "HOOKWIRE_LISTEN_PLAIN", value_name = "ADDR")]
    pub listen_plain: Option<Address>,
    /// PEM certificate, the server's first, then its chain: with
    /// --tls-key, --listen speaks HTTPS (TLS 1.2 and 1.3); reloaded on
    /// SIGHUP and when the file changes
    #[arg(long, env = "HOOKWIRE_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (ECDSA, RSA or Ed25519)
    #[arg(long, env = "HOOKWIRE_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// ZeroMQ endpoint for the catch-all route `*` (repeatable; consumers bind PULL)
    /// [default: tcp://127.0.0.1:5555 when no --push or --route is given]
    #[arg(
        long,
        env = "HOOKWIRE_PUSH",
        value_name = "ENDPOINT",
        value_delimiter = ','
    )]
    #[serde(deserialize_with = "list::<',', _, _>")]
    pub push: Vec<Endpoint>,
    /// A route: `<key glob>=<endpoint>[,<endpoint>…]` (repeatable; `;` separates routes in the env var)
    #[arg(
        long,
        env = "HOOKWIRE_ROUTE",
        value_name = "GLOB=ENDPOINTS",
        value_delimiter = ';'
    )]
    #[serde(deserialize_with = "list::<';', _, _>")]
    pub route: Vec<RouteSpec>,
    /// Acknowledged delivery for a route: `<route glob>=<endpoint>`, bound
    /// (PULL) for its consumers' acknowledgements (repeatable; `;` separates them in the env var)
    #[arg(
        long,
        env = "HOOKWIRE_ACK_ENDPOINT",
        value_name = "GLOB=ENDPOINT",
        value_delimiter = ';'
    )]
    #[serde(deserialize_with = "list::<';', _, _>")]
    pub ack_endpoint: Vec<AckSpec>,
    /// Acknowledged routes: an event not acknowledged this long after it was sent is sent again
    #[arg(
        long,
        env = "HOOKWIRE_ACK_TIMEOUT",
        value_name = "DURATION",
        default_value = "30s"
    )]
    pub ack_timeout: Interval,
    /// Wire format: one frame (the envelope) or two (the key, then the envelope)
    #[arg(long, env = "HOOKWIRE_FRAMES", default_value = "json")]
    pub frames: Frames,
    /// Executors, one per core [default: every core]
    #[arg(long, env = "HOOKWIRE_CORES")]
    pub cores: Option<usize>,
    /// Node id, 0-15, distinct per hookwire node sharing consumers
    #[arg(long, env = "HOOKWIRE_NODE_ID", default_value_t = 0)]
    pub node_id: u16,
    /// CIDR whose X-Real-IP / X-Forwarded-For / Forwarded are believed (repeatable)
    #[arg(
        long,
        env = "HOOKWIRE_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ',',
        default_values = ["127.0.0.0/8", "::1/128"]
    )]
    #[serde(deserialize_with = "list::<',', _, _>")]
    pub trusted_proxy: Vec<TrustedNet>,
    /// The header a trusted proxy names the client in: `auto` reads the
    /// first present of X-Real-IP, X-Forwarded-For, Forwarded; name the one
    /// your proxy writes so a client cannot supply another (needed for a
    /// source's `allow`)
    #[arg(
        long,
        env = "HOOKWIRE_CLIENT_IP_HEADER",
        value_name = "HEADER",
        default_value = "auto"
    )]
    pub client_ip_header: ClientIpHeader,
    /// Largest accepted body, e.g. `1MiB`, `512k`, `65536`
    #[arg(
        long,
        env = "HOOKWIRE_MAX_BODY",
        value_name = "SIZE",
        default_value = "1MiB"
    )]
    pub max_body: Size,
    /// Largest request line + headers
    #[arg(
        long,
        env = "HOOKWIRE_MAX_HEADER",
        value_name = "SIZE",
        default_value = "16KiB"
    )]
    pub max_header: Size,
    /// Most bytes of request bodies held in memory, for the whole process
    /// (split over the cores); past it, connections wait to read their
    /// bodies
    #[arg(
        long,
        env = "HOOKWIRE_MAX_INFLIGHT_BODY",
        value_name = "SIZE",
        default_value = "256MiB"
    )]
    pub max_inflight_body: Size,
    /// Close a keep-alive connection idle this long
    #[arg(
        long,
        env = "HOOKWIRE_IDLE_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s"
    )]
    pub idle_timeout: Interval,
    /// A started request must arrive completely within this
    #[arg(
        long,
        env = "HOOKWIRE_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub request_timeout: Interval,
    /// Most connections open at once, for the whole process (split over
    /// the cores); past it, a new connection gets 503 overloaded and is
    /// closed [default: from the open-files limit]
    #[arg(long, env = "HOOKWIRE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Also listen when another hookwire of this user already listens on
    /// the address (SO_REUSEPORT; the kernel splits new connections between
    /// them): for a restart without a gap, start the new process with this,
    /// then SIGTERM the old. Without it an address in use is refused
    #[arg(long, env = "HOOKWIRE_SHARE_PORT")]
    pub share_port: bool,
    /// Directory of the on-disk spool (one sub-directory per route and core)
    #[arg(
        long,
        env = "HOOKWIRE_SPOOL_DIR",
        value_name = "DIR",
        default_value = "spool"
    )]
    pub spool_dir: PathBuf,
    /// Most bytes the spool may hold, for the whole process
    #[arg(
        long,
        env = "HOOKWIRE_SPOOL_MAX_BYTES",
        value_name = "SIZE",
        default_value = "1GiB"
    )]
    pub spool_max_bytes: Size,
    /// Free space the spool leaves on its filesystem: a size or a share of
    /// the filesystem (`1%`); below it, events that need the spool get 503
    /// spool_full
    #[arg(
        long,
        env = "HOOKWIRE_SPOOL_MIN_FREE",
        value_name = "SIZE|N%",
        default_value = "1%"
    )]
    pub spool_min_free: Headroom,
    /// When the 200 is sent
    #[arg(
        long,
        env = "HOOKWIRE_ACK",
        value_name = "MODE",
        default_value = "accepted"
    )]
    pub ack: Ack,
    /// Durable mode: one fdatasync covers what was appended in this interval
    #[arg(
        long,
        env = "HOOKWIRE_SYNC_INTERVAL",
        value_name = "DURATION",
        default_value = "2ms"
    )]
    pub sync_interval: Interval,
    /// Accepted mode: while several events wait, a core hands them to ZeroMQ at most once per this interval (0: every loop)
    #[arg(
        long,
        env = "HOOKWIRE_FLUSH_INTERVAL",
        value_name = "DURATION",
        default_value = "0"
    )]
    pub flush_interval: Interval,
    /// Scheduling policy of the ZeroMQ I/O threads: `batch` (woken to send,
    /// a core's I/O thread does not preempt the core's executor but runs
    /// when it waits) or `normal`
    #[arg(
        long,
        env = "HOOKWIRE_ZMQ_SCHED",
        value_name = "POLICY",
        default_value = "batch"
    )]
    pub zmq_sched: Sched,
    /// The connections' data path: `uring` (multishot receive into a shared
    /// buffer ring, batched sends; Linux 6.0+, else `poll`) or `poll`
    /// (readiness through io_uring, then `recv`/`send` calls)
    #[arg(
        long,
        env = "HOOKWIRE_IO",
        value_name = "PATH",
        default_value = "uring"
    )]
    pub io: Io,
    /// Durable mode: journal files are kept this long after delivery, for replay after a crash
    #[arg(
        long,
        env = "HOOKWIRE_REPLAY_WINDOW",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub replay_window: Interval,
    /// ZeroMQ send high-water mark per socket
    #[arg(
        long,
        env = "HOOKWIRE_SNDHWM",
        value_name = "MESSAGES",
        default_value_t = 1_000
    )]
    pub sndhwm: i32,
    /// Accepted mode: copies of the latest events handed to ZeroMQ, re-sent
    /// when a consumer disconnects; for the whole process, 0 = off
    #[arg(
        long,
        env = "HOOKWIRE_RESEND_BUFFER",
        value_name = "SIZE",
        default_value = "64MiB"
    )]
    pub resend_buffer: Size,
    /// Accepted mode: how long after its first send an event may still be
    /// re-sent when a consumer disconnects; 0 = never re-sent
    #[arg(
        long,
        env = "HOOKWIRE_RESEND_WINDOW",
        value_name = "DURATION",
        default_value = "5s"
    )]
    pub resend_window: Interval,
    // Not 9090: Prometheus's own default port, often taken where it scrapes.
    /// Private admin listener (/metrics, /stats, /health, /ready), or `off`
    #[arg(
        long,
        env = "HOOKWIRE_ADMIN",
        value_name = "ADDR|off",
        default_value = "127.0.0.1:9733"
    )]
    pub admin: Admin,
    /// On SIGTERM/SIGINT, how long in-flight requests and queued events may take
    #[arg(
        long,
        env = "HOOKWIRE_DRAIN_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s"
    )]
    pub drain_timeout: Interval,
    /// Refuse services that no `[[source]]` of the config file matches
    /// (404 unknown_service)
    #[arg(long, env = "HOOKWIRE_STRICT")]
    pub strict: bool,
    /// The config file's `[[source]]` tables (the file only).
    #[arg(skip)]
    #[serde(skip)]
    pub source: Vec<SourceSpec>,
}

impl Default for ServeOptions {
    /// The defaults the help shows: clap's `default_value`s, read from an
    /// empty command line without the environment.
    fn default() -> Self {
        let command = Self::augment_args(clap::Command::new("defaults"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command.get_matches_from(["defaults"]);
        Self::from_arg_matches(&matches).expect("the defaults are valid")
    }
}

/// The serve options clap parsed, and where it took each from (by clap
/// id, `max_body`): the command line, the environment or the default.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub options: ServeOptions,
    pub sources: Sources,
}

/// Where clap took each option it saw from, by clap id (`max_body`).
#[derive(Debug, Clone, Default)]
pub struct Sources(Vec<(String, ValueSource)>);

impl Sources {
    /// Where the option with clap id `id` was taken from, if clap saw it.
    pub fn of(&self, id: &str) -> Option<ValueSource> {
        self.0
            .iter()
            .find(|(given, _)| given == id)
            .map(|(_, s)| *s)
    }

    /// Whether the option was given on the command line or in the
    /// environment (so the file's value does not count).
    pub fn given(&self, id: &str) -> bool {
        matches!(
            self.of(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    }
}

impl ServeArgs {
    /// Each option from the command line or the environment where it was
    /// given there, else from `file` (which holds the default for what it
    /// does not set). A list comes whole from one place: `--push` replaces
    /// the file's `push`, it does not add to it.
    pub fn over(self, file: ServeOptions) -> ServeOptions {
        let given = |id: &str| self.sources.given(id);
        let flags = self.options;
        macro_rules! flag_else_file {
            ($($option:ident),*) => {
                // Every field is listed: a new option left out does not compile.
                ServeOptions {
                    config: flags.config,
                    source: file.source,
                    $($option: if given(stringify!($option)) { flags.$option } else { file.$option },)*
                }
            };
        }
        flag_else_file!(
            listen,
            listen_plain,
            tls_cert,
            tls_key,
            push,
            route,
            ack_endpoint,
            ack_timeout,
            frames,
            cores,
            node_id,
            trusted_proxy,
            client_ip_header,
            max_body,
            max_header,
            max_inflight_body,
            idle_timeout,
            request_timeout,
            max_connections,
            share_port,
            spool_dir,
            spool_max_bytes,
            spool_min_free,
            ack,
            sync_interval,
            flush_interval,
            zmq_sched,
            io,
            replay_window,
            sndhwm,
            resend_buffer,
            resend_window,
            admin,
            drain_timeout,
            strict
        )
    }
}

// By hand rather than derived, so that however `Cli` is parsed the options
// come with their sources.
impl Args for ServeArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        ServeOptions::augment_args(command)
    }
    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        ServeOptions::augment_args_for_update(command)
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeArgs {
            options: ServeOptions::from_arg_matches(matches)?,
            sources: sources(matches),
        })
    }
    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.options.update_from_arg_matches(matches)?;
        self.sources = sources(matches);
        Ok(())
    }
}

fn sources(matches: &ArgMatches) -> Sources {
    Sources(
        matches
            .ids()
            .filter_map(|id| Some((id.to_string(), matches.value_source(id.as_str())?)))
            .collect(),
    )
}
