//! A refused option, named by where its value was set so the operator knows
//! what to fix: the flag, its `HOOKWIRE_*` variable, or its key in the file.

use std::path::Path;

use clap::parser::ValueSource;

use super::options::Sources;

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
        // A `[[source]]` is a table of the file, not a flag.
        if self.option.starts_with("[[") {
            write!(f, "{}", self.option)?;
            if let Some(origin) = &self.origin {
                write!(f, " in {origin}")?;
            }
            return write!(f, ": {}", self.message);
        }
        write!(f, "--{}", self.option)?;
        if let Some(origin) = &self.origin {
            write!(f, " (set by {origin})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// `option` (`max-body`) refused, its origin not yet known.
pub(crate) fn bad(option: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        option: option.into(),
        origin: None,
        message: message.to_string(),
    }
}

/// Refuses `option` unless `ok`.
pub(crate) fn ensure(
    ok: bool,
    option: &str,
    message: impl std::fmt::Display,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(bad(option, message))
    }
}

/// The environment variable of a flag: `--max-body` is `HOOKWIRE_MAX_BODY`.
pub(crate) fn env_var(option: &str) -> String {
    format!("HOOKWIRE_{}", option.replace('-', "_").to_ascii_uppercase())
}

/// Where the value of the flag `option` (`max-body`) came from, when not
/// from the command line: its environment variable (as clap noted in
/// `sources`, by clap id: `max_body`), or its key in the config file.
pub(crate) fn origin(
    option: &str,
    sources: &Sources,
    file: Option<(&Path, &[String])>,
) -> Option<String> {
    let id = option.replace('-', "_");
    match sources.of(&id) {
        Some(ValueSource::CommandLine) => return None,
        Some(ValueSource::EnvVariable) => return Some(env_var(option)),
        _ => {}
    }
    let (path, keys) = file?;
    let key = keys.iter().find(|key| key.replace('_', "-") == option)?;
    Some(format!("{key} in {}", path.display()))
}
