//! The `[otlp]` and `[[forward]]` sections of `callscope.toml`: where the receivers listen,
//! what they accept, and where every request is forwarded.

use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The OTLP receivers (`[otlp]` in `callscope.toml`).
///
/// ```toml
/// [otlp]
/// grpc_addr = "127.0.0.1:4317"
/// http_addr = "127.0.0.1:4318"
/// max_request_bytes = 20971520
/// ingest_tokens = []
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Where OTLP/gRPC is served (`LogsService`, `TraceService`, `MetricsService`).
    pub grpc_addr: SocketAddr,
    /// Where OTLP/HTTP is served (`POST /v1/logs`, `/v1/traces`, `/v1/metrics`).
    pub http_addr: SocketAddr,
    /// The largest request accepted, in bytes, measured after decompression: a larger
    /// one is refused with HTTP 413 / gRPC `RESOURCE_EXHAUSTED`, and a compressed body
    /// is never inflated past this size.
    pub max_request_bytes: usize,
    /// Bearer tokens senders must present (`Authorization: Bearer <token>`). Empty (the
    /// default): no ingest authentication. Otherwise a request without one of these
    /// tokens gets HTTP 401 / gRPC `UNAUTHENTICATED`.
    pub ingest_tokens: Vec<String>,
    /// How many export requests may be in the pipeline at once (decoding, filtering or
    /// waiting for the storage commit). When all are taken, a new request is refused at
    /// once with HTTP 429 + `Retry-After` / gRPC `UNAVAILABLE` + `RetryInfo`, so memory
    /// stays bounded instead of requests queuing.
    pub max_in_flight_requests: usize,
    /// How many decompressed request bytes may be in the pipeline at once; refused like
    /// `max_in_flight_requests` when exceeded. Must be at least `max_request_bytes`.
    pub max_in_flight_bytes: usize,
    /// How long a request may take, from its first byte to the storage commit, in
    /// milliseconds. A request that takes longer gets HTTP 503 / gRPC `UNAVAILABLE`; the
    /// sender retries, and records committed meanwhile are not stored twice (their ids
    /// are content-derived).
    pub request_timeout_ms: u64,
    /// The delay, in seconds, that refusals ask senders to wait before retrying
    /// (`Retry-After`, `RetryInfo`).
    pub retry_after_secs: u64,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            max_request_bytes: 20 * 1024 * 1024,
            ingest_tokens: Vec::new(),
            max_in_flight_requests: 64,
            max_in_flight_bytes: 256 * 1024 * 1024,
            request_timeout_ms: 30_000,
            retry_after_secs: 1,
        }
    }
}

// Tokens are secrets: never print them.
impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("max_request_bytes", &self.max_request_bytes)
            .field(
                "ingest_tokens",
                &format_args!("[{} redacted]", self.ingest_tokens.len()),
            )
            .field("max_in_flight_requests", &self.max_in_flight_requests)
            .field("max_in_flight_bytes", &self.max_in_flight_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("retry_after_secs", &self.retry_after_secs)
            .finish()
    }
}

impl OtlpConfig {
    /// Checks the values that serde cannot.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: a zero limit, `max_in_flight_bytes` below
    /// `max_request_bytes`, or an empty ingest token.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, message: &str| {
            Err(Error::Config {
                key: format!("otlp.{key}"),
                message: message.to_owned(),
            })
        };
        if self.max_request_bytes == 0 {
            return bad("max_request_bytes", "must be greater than 0");
        }
        if u32::try_from(self.max_request_bytes).is_err() {
            return bad("max_request_bytes", "must be below 4 GiB");
        }
        if self.max_in_flight_requests == 0 {
            return bad("max_in_flight_requests", "must be greater than 0");
        }
        if self.max_in_flight_bytes < self.max_request_bytes {
            return bad(
                "max_in_flight_bytes",
                "must be at least max_request_bytes, or no large request could ever be accepted",
            );
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms", "must be greater than 0");
        }
        if let Some(i) = self.ingest_tokens.iter().position(|t| t.trim().is_empty()) {
            return bad(&format!("ingest_tokens[{i}]"), "must not be empty");
        }
        Ok(())
    }

    /// [`Self::request_timeout_ms`] as a duration.
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// An OTLP signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Spans (`TraceService`, `/v1/traces`).
    Traces,
    /// Log records (`LogsService`, `/v1/logs`): the only signal callscope stores.
    Logs,
    /// Metrics (`MetricsService`, `/v1/metrics`).
    Metrics,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Logs, Signal::Metrics];

    /// `"traces"`, `"logs"` or `"metrics"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// The OTLP/HTTP path, e.g. `/v1/logs`.
    #[must_use]
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }

    /// The OTLP/gRPC method path, e.g. `/opentelemetry.proto.collector.logs.v1.LogsService/Export`.
    #[must_use]
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a destination is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ForwardProtocol {
    /// OTLP/gRPC; `endpoint` is the server, e.g. `http://127.0.0.1:4317`.
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies; `endpoint` is the base URL, to which
    /// `/v1/traces`, `/v1/logs` and `/v1/metrics` are appended.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// How forwarded requests are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Sent as is.
    None,
    /// gzip (every OTLP receiver accepts it).
    #[default]
    Gzip,
    /// zstd (cheaper on CPU; the destination must accept it).
    Zstd,
}

/// One forwarding destination (`[[forward]]` in `callscope.toml`).
///
/// Every request of a subscribed signal is forwarded unfiltered — internal records
/// included — exactly as it was received. Each destination has its own bounded queue
/// and worker, so a slow or dead destination never delays ingest, storage or the other
/// destinations. When the queue is full the *newest* request is dropped (like the
/// OpenTelemetry Collector's sending queue) and counted in
/// `callscope_forward_requests_total{outcome="dropped"}`.
///
/// Only plain `http://` endpoints are supported: put a TLS-terminating proxy or an
/// OpenTelemetry Collector in between to reach a TLS endpoint.
///
/// ```toml
/// [[forward]]
/// name = "tempo"
/// endpoint = "http://127.0.0.1:14317"
/// protocol = "grpc"
/// signals = ["traces", "logs", "metrics"]
/// headers = { "x-scope-orgid" = "platform" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// A label for metrics and logs. Default: the endpoint.
    #[serde(default)]
    pub name: Option<String>,
    /// Where to send: `http://host:port` (gRPC) or a base URL such as
    /// `http://host:4318` (HTTP/protobuf).
    pub endpoint: String,
    /// `"grpc"` (default) or `"http/protobuf"`.
    #[serde(default = "defaults::protocol")]
    pub protocol: ForwardProtocol,
    /// Which signals this destination receives. Default: all three.
    #[serde(default = "defaults::signals")]
    pub signals: Vec<Signal>,
    /// Extra headers (gRPC metadata) sent with every request, e.g. an API key or a
    /// tenant header such as `X-Scope-OrgID`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `"gzip"` (default), `"zstd"` or `"none"`.
    #[serde(default)]
    pub compression: Compression,
    /// The most requests waiting for this destination.
    #[serde(default = "defaults::queue_capacity")]
    pub queue_capacity: usize,
    /// The most bytes (encoded protobuf) waiting for this destination.
    #[serde(default = "defaults::queue_max_bytes")]
    pub queue_max_bytes: usize,
    /// How long one attempt may take, in milliseconds.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// How many times a request is sent at most (the first try included) before it is
    /// given up and counted as failed. Only retryable failures are retried: connection
    /// errors, timeouts, HTTP 429/502/503/504, gRPC `UNAVAILABLE` and the like.
    #[serde(default = "defaults::retry_max_attempts")]
    pub retry_max_attempts: u32,
    /// The wait before the first retry, in milliseconds; it doubles with each retry, with
    /// random jitter. A `Retry-After` or `RetryInfo` from the destination overrides it.
    #[serde(default = "defaults::retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// The longest wait between two attempts, in milliseconds (also caps `Retry-After`).
    #[serde(default = "defaults::retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
}

mod defaults {
    use super::{ForwardProtocol, Signal};

    pub(super) fn protocol() -> ForwardProtocol {
        ForwardProtocol::Grpc
    }
    pub(super) fn signals() -> Vec<Signal> {
        Signal::ALL.to_vec()
    }
    pub(super) fn queue_capacity() -> usize {
        1024
    }
    pub(super) fn queue_max_bytes() -> usize {
        64 * 1024 * 1024
    }
    pub(super) fn timeout_ms() -> u64 {
        10_000
    }
    pub(super) fn retry_max_attempts() -> u32 {
        5
    }
    pub(super) fn retry_initial_backoff_ms() -> u64 {
        500
    }
    pub(super) fn retry_max_backoff_ms() -> u64 {
        30_000
    }
}

impl ForwardConfig {
    /// A destination with the default settings.
    #[must_use]
    pub fn new(endpoint: impl Into<String>, protocol: ForwardProtocol) -> Self {
        Self {
            name: None,
            endpoint: endpoint.into(),
            protocol,
            signals: defaults::signals(),
            headers: BTreeMap::new(),
            compression: Compression::default(),
            queue_capacity: defaults::queue_capacity(),
            queue_max_bytes: defaults::queue_max_bytes(),
            timeout_ms: defaults::timeout_ms(),
            retry_max_attempts: defaults::retry_max_attempts(),
            retry_initial_backoff_ms: defaults::retry_initial_backoff_ms(),
            retry_max_backoff_ms: defaults::retry_max_backoff_ms(),
        }
    }

    /// The label used in metrics and logs: `name`, else the endpoint.
    #[must_use]
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.endpoint)
    }

    /// Checks the values that serde cannot. `index` is the destination's position in
    /// the `[[forward]]` list, used in the message.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key: an endpoint that is not an `http://` URL, no
    /// signals, a zero queue or timeout, or a header that cannot be sent.
    pub fn validate(&self, index: usize) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(Error::Config {
                key: format!("forward[{index}].{key}"),
                message,
            })
        };
        match self.endpoint.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("http") && uri.authority().is_some() => {}
            Ok(uri) if uri.scheme_str() == Some("https") => {
                return bad(
                    "endpoint",
                    format!(
                        "`{}`: TLS is not supported; use http:// (e.g. through a local proxy or OpenTelemetry Collector)",
                        self.endpoint
                    ),
                );
            }
            _ => {
                return bad(
                    "endpoint",
                    format!(
                        "`{}` is not an http:// URL such as http://127.0.0.1:4317",
                        self.endpoint
                    ),
                );
            }
        }
        if self.signals.is_empty() {
            return bad(
                "signals",
                "must name at least one of traces, logs, metrics".into(),
            );
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity", "must be greater than 0".into());
        }
        if self.queue_max_bytes == 0 {
            return bad("queue_max_bytes", "must be greater than 0".into());
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms", "must be greater than 0".into());
        }
        if self.retry_max_attempts == 0 {
            return bad("retry_max_attempts", "must be at least 1".into());
        }
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms {
            return bad(
                "retry_max_backoff_ms",
                "must be at least retry_initial_backoff_ms".into(),
            );
        }
        for (name, value) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return bad(
                    &format!("headers.{name}"),
                    "is not a valid header name".into(),
                );
            }
            if http::HeaderValue::from_str(value).is_err() {
                return bad(
                    &format!("headers.{name}"),
                    "is not a valid header value".into(),
                );
            }
        }
        Ok(())
    }

    /// [`Self::timeout_ms`] as a duration.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_defaults_match_the_contract() {
        let c = OtlpConfig::default();
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:4317");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:4318");
        assert_eq!(c.max_request_bytes, 20_971_520);
        assert!(c.ingest_tokens.is_empty());
        c.validate().unwrap();
        let parsed: OtlpConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, c);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = toml::from_str::<OtlpConfig>("grpc_adr = \"x\"").unwrap_err();
        assert!(err.to_string().contains("grpc_adr"), "{err}");
        let err = toml::from_str::<ForwardConfig>("endpoint = \"http://x:1\"\nprotocol = \"udp\"")
            .unwrap_err();
        assert!(err.to_string().contains("udp"), "{err}");
        let c: ForwardConfig = toml::from_str("endpoint = \"https://x:1\"").unwrap();
        let err = c.validate(2).unwrap_err();
        assert!(err.to_string().contains("forward[2].endpoint"), "{err}");
        let c = OtlpConfig {
            max_in_flight_bytes: 1,
            ..OtlpConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("otlp.max_in_flight_bytes")
        );
    }

    #[test]
    fn forward_defaults() {
        let c: ForwardConfig = toml::from_str(
            "endpoint = \"http://127.0.0.1:14317\"\nprotocol = \"http/protobuf\"\nsignals = [\"logs\"]",
        )
        .unwrap();
        assert_eq!(c.protocol, ForwardProtocol::HttpProtobuf);
        assert_eq!(c.signals, vec![Signal::Logs]);
        assert_eq!(c.label(), "http://127.0.0.1:14317");
        c.validate(0).unwrap();
        let d: ForwardConfig = toml::from_str("endpoint = \"http://h:1\"").unwrap();
        assert_eq!(d, ForwardConfig::new("http://h:1", ForwardProtocol::Grpc));
    }

    #[test]
    fn debug_redacts_tokens() {
        let c = OtlpConfig {
            ingest_tokens: vec!["s3cret".into()],
            ..OtlpConfig::default()
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
