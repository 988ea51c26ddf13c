//! callscope.toml: every section, with `CALLSCOPE_*` environment overrides.
//!
//! An environment variable `CALLSCOPE_<SECTION>__<KEY>` (double underscore between
//! levels) overrides `<section>.<key>`: `CALLSCOPE_STORAGE__RETENTION_DAYS=30`,
//! `CALLSCOPE_API__ADDR=0.0.0.0:8080`. The value is read as a TOML value when it parses
//! as one (`30`, `true`, `["a", "b"]`) and as a string otherwise. Unknown keys, from the
//! file or the environment, stop start-up with a message naming the key.

use std::path::{Path, PathBuf};

use callscope_api::ApiConfig;
use callscope_collector::{ForwardConfig, OtlpConfig, VisibilityConfig};
use callscope_store::StoreConfig;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[storage]`: the DuckDB file and retention.
    pub storage: StoreConfig,
    /// `[otlp]`: the OTLP receivers.
    pub otlp: OtlpConfig,
    /// `[api]`: the customer API and its keys.
    pub api: ApiConfig,
    /// `[visibility]`: what reaches customers.
    pub visibility: VisibilityConfig,
    /// `[[forward]]`: where everything received is forwarded.
    pub forward: Vec<ForwardConfig>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key is unknown or its value is wrong.
    #[error("invalid configuration at `{key}`: {message}")]
    Invalid {
        /// The key, e.g. `storage.retention_days`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

const ENV_PREFIX: &str = "CALLSCOPE_";
/// Variables under the prefix that are not configuration keys.
const ENV_NOT_CONFIG: &[&str] = &["CALLSCOPE_CONFIG", "CALLSCOPE_LOG", "CALLSCOPE_LOG_FORMAT"];

impl Config {
    /// Reads `path` (or the embedded defaults when `None`) and applies environment
    /// overrides from `env`.
    ///
    /// # Errors
    /// The file is unreadable or not TOML, or a key is unknown or has a bad value; the
    /// message names the key.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            None => toml::Table::new(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: p.into(),
                        message: syntax_message(&text, &e),
                    })?
            }
        };
        for (name, value) in env {
            if !name.starts_with(ENV_PREFIX) || ENV_NOT_CONFIG.contains(&name.as_str()) {
                continue;
            }
            let keys: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            set_path(&mut table, &keys, parse_env_value(&value)).map_err(|message| {
                ConfigError::Invalid {
                    key: format!("{} (from {name})", keys.join(".")),
                    message,
                }
            })?;
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                // The parser's message quotes the value; ingest tokens are secrets.
                let message = if key.starts_with("otlp.ingest_tokens") {
                    "must be a list of strings (the value is not shown: it is a secret)".into()
                } else {
                    e.into_inner().to_string()
                };
                ConfigError::Invalid { key, message }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_owned(),
            message,
        };
        for (i, k) in self.api.keys.iter().enumerate() {
            if k.key_sha256.len() != 64 || !k.key_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    &format!("api.keys[{i}].key_sha256"),
                    "must be 64 hex digits (the SHA-256 of the key)".into(),
                ));
            }
            if k.tenant.trim().is_empty() {
                return Err(invalid(
                    &format!("api.keys[{i}].tenant"),
                    "must not be empty".into(),
                ));
            }
        }
        callscope_collector::VisibilityFilter::new(&self.visibility)
            .map_err(|e| invalid("visibility", e.to_string()))?;
        Ok(())
    }
}

/// A TOML syntax error as `line L, column C: message`, without the parser's excerpt of
/// the offending line (which could be a secret such as an ingest token).
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut t = table;
    for k in parents {
        let entry = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{k}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(
            c.storage.path,
            PathBuf::from("callscope-data/callscope.duckdb")
        );
        assert_eq!(c.storage.retention_days, 90);
        assert_eq!(c.otlp.grpc_addr.to_string(), "127.0.0.1:4317");
        assert_eq!(c.otlp.http_addr.to_string(), "127.0.0.1:4318");
        assert_eq!(c.otlp.max_request_bytes, 20_971_520);
        assert!(c.otlp.ingest_tokens.is_empty());
        assert_eq!(c.api.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.visibility.default_tenant, "");
        assert!(c.forward.is_empty());
    }

    #[test]
    fn env_overrides_file() {
        let f = write("[storage]\nretention_days = 7\n[api]\naddr = \"127.0.0.1:9000\"\n");
        let c = Config::load(
            Some(f.path()),
            env(&[
                ("CALLSCOPE_STORAGE__RETENTION_DAYS", "30"),
                ("CALLSCOPE_OTLP__INGEST_TOKENS", "[\"t1\", \"t2\"]"),
                ("CALLSCOPE_VISIBILITY__DEFAULT_TENANT", "acme"),
                ("CALLSCOPE_LOG", "debug"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.storage.retention_days, 30);
        assert_eq!(c.api.addr.to_string(), "127.0.0.1:9000");
        assert_eq!(c.otlp.ingest_tokens, ["t1", "t2"]);
        assert_eq!(c.visibility.default_tenant, "acme");
    }

    #[test]
    fn errors_name_the_key() {
        let f = write("[storage]\nretention_dayz = 7\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage") && e.contains("retention_dayz"), "{e}");

        let f = write("[storage]\nretention_days = \"soon\"\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage.retention_days"), "{e}");

        let e = Config::load(None, env(&[("CALLSCOPE_API__ADDR", "not an address")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.addr"), "{e}");

        let e = Config::load(None, env(&[("CALLSCOPE_NOPE__X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");

        let f = write("[[api.keys]]\ntenant = \"acme\"\nkey_sha256 = \"abc\"\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("api.keys[0].key_sha256"), "{e}");

        let f = write("[storage\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn errors_never_quote_ingest_tokens() {
        let e = Config::load(
            None,
            env(&[("CALLSCOPE_OTLP__INGEST_TOKENS", "tok-secret-1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("otlp.ingest_tokens") && !e.contains("tok-secret-1"),
            "{e}"
        );

        let f = write("[otlp]\ningest_tokens = \"tok-secret-2\"\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("otlp.ingest_tokens") && !e.contains("tok-secret-2"),
            "{e}"
        );

        let f = write("[otlp]\ningest_tokens = [tok-secret-3]\n");
        let e = Config::load(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("tok-secret-3"), "{e}");
    }
}
