//! `[api]` in callscope.toml.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The customer API's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the customer API (and `/healthz`, `/readyz`, `/metrics`,
    /// `/openapi.json`) listens.
    pub addr: SocketAddr,
    /// API keys, by hash. `callscope keys create --tenant ID` makes one.
    pub keys: Vec<ApiKeyConfig>,
    /// A connection whose client reads nothing of its response for this many seconds
    /// is closed: a live stream or an export nobody reads any more, which would
    /// otherwise also hold up a graceful shutdown. At least 1.
    pub write_stall_timeout_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            keys: Vec::new(),
            write_stall_timeout_secs: 30,
        }
    }
}

/// One `[[api.keys]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The tenant the key may read.
    pub tenant: String,
    /// The SHA-256 of the key, as 64 hex digits. The key itself is never stored.
    pub key_sha256: String,
}
