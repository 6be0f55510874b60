//! The TOML config file (`--config`): read into the same [`ServeOptions`]
//! as the command line; a refused value is named by its key in the file.

use std::path::Path;

use clap::Args;

use super::error::{bad, ConfigError};
use super::options::{ServeOptions, Sources};
use super::sources::SourceSpec;

/// The file's options (the defaults for what it does not set), and its
/// keys as written there. A key whose option the command line or the
/// environment gives is not read: their value wins, even over a bad one.
pub fn load(path: &Path, given: &Sources) -> Result<(ServeOptions, Vec<String>), ConfigError> {
    let refused =
        |message: &dyn std::fmt::Display| bad("config", format!("{}: {message}", path.display()));
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| refused(&e))?;
    let sources = match table.remove("source") {
        Some(value) => sources(value, path)?,
        None => Vec::new(),
    };
    let keys: Vec<String> = table.keys().cloned().collect();
    // `max_body` is `max-body`.
    let mut kebab = toml::Table::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if kebab.insert(name.clone(), value).is_some() {
            return Err(refused(&format!("{name} is set twice")));
        }
        if is_option(&name) && given.given(&name.replace('-', "_")) {
            kebab.remove(&name);
        }
    }
    match serde_path_to_error::deserialize(toml::Value::Table(kebab)) {
        Ok(options) => Ok((
            ServeOptions {
                source: sources,
                ..options
            },
            keys,
        )),
        Err(error) => {
            let message = error.inner().message().trim_end().to_owned();
            let name = error.path().iter().next().map(|key| key.to_string());
            match name.filter(|name| is_option(name)) {
                Some(name) => {
                    let key = keys.iter().find(|key| key.replace('_', "-") == name);
                    Err(ConfigError {
                        origin: Some(format!("{} in {}", key.unwrap_or(&name), path.display())),
                        option: name,
                        message,
                    })
                }
                // An unknown key, or not a table.
                None => Err(refused(&message)),
            }
        }
    }
}

/// Whether `name` is a serve option that the file may set (all but
/// `config`).
fn is_option(name: &str) -> bool {
    name != "config"
        && ServeOptions::augment_args(clap::Command::new("options"))
            .get_arguments()
            .any(|arg| arg.get_long() == Some(name))
}

/// The `[[source]]` tables, as written (`delivery_header` is
/// `delivery-header`); a refused key is named with its source.
fn sources(value: toml::Value, path: &Path) -> Result<Vec<SourceSpec>, ConfigError> {
    let toml::Value::Array(tables) = value else {
        return Err(bad(
            "config",
            format!(
                "{}: source: write each source as a [[source]] table",
                path.display()
            ),
        ));
    };
    let mut specs = Vec::with_capacity(tables.len());
    for (i, table) in tables.into_iter().enumerate() {
        let table = match table {
            toml::Value::Table(t) => t,
            _ => {
                return Err(bad(
                    "config",
                    format!(
                        "{}: source: write each source as a [[source]] table",
                        path.display()
                    ),
                ))
            }
        };
        let service = table
            .get("service")
            .and_then(|s| s.as_str())
            .unwrap_or("")
            .to_owned();
        let kebab: toml::Table = table
            .into_iter()
            .map(|(k, v)| (k.replace('_', "-"), v))
            .collect();
        let spec = serde_path_to_error::deserialize(toml::Value::Table(kebab)).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().message().trim_end().to_owned();
            ConfigError {
                option: format!("[[source]] #{} (service = {service:?})", i + 1),
                origin: Some(path.display().to_string()),
                message: match key.as_str() {
                    "." => message,
                    key => format!("{key}: {message}"),
                },
            }
        })?;
        specs.push(spec);
    }
    Ok(specs)
}
