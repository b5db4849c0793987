//! `--config FILE` (env `BURNLINK_CONFIG`): settings from a TOML file, for either server.
//!
//! Precedence is flag > environment > file > built-in default. The file's values become the
//! arguments' defaults before clap parses, so clap's own order (command line, then `env`,
//! then default) gives exactly that, and its value parsers check file values like any other
//! (an invalid one names the flag). Keys are the long flag names, with `-` or `_`:
//! `token-ttl = 60` or `token_ttl = 60`. A key no flag has stops start-up, naming it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};

/// The flag naming the file, and its environment variable.
pub const FLAG: &str = "config";
pub const ENV: &str = "BURNLINK_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("--config ({ENV}) {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("--config ({ENV}) {path}: not valid TOML: {reason}")]
    Toml { path: String, reason: String },
    #[error("--config ({ENV}) {path}: unknown setting `{key}`")]
    UnknownKey { path: String, key: String },
    #[error("--config ({ENV}) {path}: setting `{key}`: {reason}")]
    BadValue {
        path: String,
        key: String,
        reason: String,
    },
    #[error("{0}")]
    Clap(#[from] clap::Error),
}

impl ConfigFileError {
    /// Prints the error and exits: clap's own errors (and `--help`) keep their format and exit
    /// code; file errors exit with 2, as clap's usage errors do.
    pub fn exit(self) -> ! {
        match self {
            ConfigFileError::Clap(e) => e.exit(),
            other => {
                eprintln!("error: {other}");
                std::process::exit(2)
            }
        }
    }
}

/// Parses `P` from the process's arguments and environment, with `--config` applied.
pub fn parse<P: CommandFactory + FromArgMatches>() -> Result<P, ConfigFileError> {
    parse_from(std::env::args_os())
}

/// Parses `P` from `args` (the first is the program name), with `--config` applied.
pub fn parse_from<P: CommandFactory + FromArgMatches>(
    args: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<P, ConfigFileError> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = P::command();
    if let Some(path) = config_path(&args) {
        command = apply(command, &path)?;
    }
    let matches = command.try_get_matches_from(args)?;
    Ok(P::from_arg_matches(&matches)?)
}

/// `--config PATH` / `--config=PATH` from the arguments, else `BURNLINK_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let long = format!("--{FLAG}");
    let prefix = format!("--{FLAG}=");
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == long {
            return iter.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix(&prefix) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Makes every setting of the file at `path` the default of its argument.
fn apply(mut command: clap::Command, path: &Path) -> Result<clap::Command, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigFileError::Toml {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    for (key, value) in table {
        let long = key.replace('_', "-");
        let id = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != FLAG)
            .map(|a| a.get_id().clone())
            .ok_or_else(|| ConfigFileError::UnknownKey {
                path: shown.clone(),
                key: key.clone(),
            })?;
        let bad = |reason: &str| ConfigFileError::BadValue {
            path: shown.clone(),
            key: key.clone(),
            reason: reason.to_owned(),
        };
        let values: Vec<String> = match value {
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| scalar(v).ok_or_else(|| bad("a list may hold only plain values")))
                .collect::<Result<_, _>>()?,
            other => vec![scalar(other).ok_or_else(|| bad("must be a plain value, not a table"))?],
        };
        // An argument whose environment value `--help` hides holds a secret (a URL with a
        // password): its value from the file is hidden alike.
        command = command.mut_arg(id, |arg| {
            let secret = arg.is_hide_env_values_set();
            arg.default_values(values).hide_default_value(secret)
        });
    }
    Ok(command)
}

fn scalar(value: toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::Config;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn file_values_fill_in_and_flags_win() {
        let f = file("leeway = 7\nread_buffer_kib = 128\npublic-key = [\"a.pem\", \"b.pem\"]\n");
        let path = f.path().to_str().unwrap();
        let config: Config =
            parse_from(["download-server", "--config", path, "--leeway", "9"]).unwrap();
        assert_eq!(config.leeway, 9, "flag beats file");
        assert_eq!(config.read_buffer_kib, 128, "file beats default");
        assert_eq!(config.public_keys.len(), 2);
        assert_eq!(config.shutdown_grace_secs, 30, "default");
    }

    #[test]
    fn the_file_store_settings_come_from_the_file_too() {
        let f = file("file-store = \"s3://burnlink/files\"\ns3_path_style = true\n");
        let path = f.path().to_str().unwrap();
        let config: Config = parse_from(["download-server", "--config", path]).unwrap();
        assert_eq!(config.file_store.file_store, "s3://burnlink/files");
        assert!(config.file_store.s3_path_style);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_setting() {
        let f = file("leeway = 5\nbind_adress = \"0.0.0.0:1\"\n");
        let arg = format!("--config={}", f.path().display());
        let err = parse_from::<Config>(["download-server", arg.as_str()]).unwrap_err();
        assert!(
            err.to_string().contains("unknown setting `bind_adress`"),
            "{err}"
        );

        let f = file("leeway = 500\n");
        let arg = format!("--config={}", f.path().display());
        let err = parse_from::<Config>(["download-server", arg.as_str()]).unwrap_err();
        assert!(err.to_string().contains("--leeway"), "{err}");
    }
}
