//! The command line: `hookwire [serve] [OPTIONS]` and `hookwire tap`, and
//! how a value clap refuses is reported (naming the variable that set it).

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

use super::error::{env_var, ConfigError};
use super::options::ServeArgs;
use super::values::{bind_endpoint, connect_endpoint, Invalid};

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

#[derive(Debug, Args, Clone)]
pub struct TapArgs {
    /// Endpoint to bind the PULL socket on
    #[arg(long, default_value = "tcp://127.0.0.1:5555", value_parser = bind_endpoint)]
    pub bind: String,
    /// Exit after this many envelopes
    #[arg(long)]
    pub count: Option<u64>,
    /// Acknowledge each envelope printed to this endpoint (a route's
    /// --ack-endpoint)
    #[arg(long, value_name = "ENDPOINT", value_parser = connect_endpoint)]
    pub ack: Option<String>,
}

impl Cli {
    /// Parses the command line and the environment, noting where each
    /// serve option was set; on a refused value exits with a message
    /// naming where it was set.
    pub fn parse_with_sources() -> Self {
        let argv: Vec<OsString> = std::env::args_os().collect();
        Cli::try_parse_from(&argv).unwrap_or_else(|error| match refused_value(&error, &argv) {
            Some(refused) => {
                eprintln!("hookwire: {refused}");
                std::process::exit(2)
            }
            None => exit_naming_env(error, &argv),
        })
    }
}

/// A value clap refused as a [`ConfigError`], when hookwire itself says
/// what is wrong with it: a message of its own parsers ([`Invalid`]), or a
/// name not among an option's choices. Other refusals (not a number) keep
/// clap's message: `None`.
pub(crate) fn refused_value(error: &clap::Error, argv: &[OsString]) -> Option<ConfigError> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let message = match error.kind() {
        ErrorKind::ValueValidation => {
            let source = std::error::Error::source(error)?;
            source.downcast_ref::<Invalid>()?.to_string()
        }
        ErrorKind::InvalidValue => {
            let (Some(ContextValue::String(value)), Some(ContextValue::Strings(choices))) = (
                error.get(ContextKind::InvalidValue),
                error.get(ContextKind::ValidValue),
            ) else {
                return None;
            };
            if value.is_empty() {
                // No value at all: clap's "a value is required" says so.
                return None;
            }
            format!("'{value}' is not one of: {}", choices.join(", "))
        }
        _ => return None,
    };
    let flag = refused_flag(error)?;
    Some(ConfigError {
        option: flag.strip_prefix("--")?.to_owned(),
        origin: set_by_env(flag, argv),
        message,
    })
}

/// The flag whose value clap refused: `--cores` of `--cores <CORES>`.
fn refused_flag(error: &clap::Error) -> Option<&str> {
    use clap::error::{ContextKind, ContextValue};
    match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.split(' ').next(),
        _ => None,
    }
}

/// The variable that set `flag` (`--cores`), when it is not on the command
/// line `argv` but its `HOOKWIRE_*` variable is set.
fn set_by_env(flag: &str, argv: &[OsString]) -> Option<String> {
    let var = env_var(flag.strip_prefix("--")?);
    let on_line = argv.iter().filter_map(|a| a.to_str()).any(|a| {
        a == flag
            || a.strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
    });
    (!on_line && std::env::var_os(&var).is_some()).then_some(var)
}

/// Exits with clap's error; when the value it refuses came from a
/// `HOOKWIRE_*` variable rather than the command line, says so (clap names
/// only the flag).
fn exit_naming_env(error: clap::Error, argv: &[OsString]) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        let var = refused_flag(&error).and_then(|flag| set_by_env(flag, argv));
        if let (Some(var), Some(ContextValue::String(arg))) =
            (var, error.get(ContextKind::InvalidArg))
        {
            let quoted = format!("'{arg}'");
            let text = error.render().to_string();
            eprint!(
                "{}",
                text.replacen(&quoted, &format!("{quoted} (set by {var})"), 1)
            );
            std::process::exit(2);
        }
    }
    error.exit()
}
