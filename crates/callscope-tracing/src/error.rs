//! The one error type of this crate.

use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::error::OTelSdkError;

/// What can go wrong setting up or tearing down telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (or a signal-specific one) names a protocol this
    /// build cannot speak.
    #[error("unsupported OTLP protocol `{0}` (expected `grpc` or `http/protobuf`)")]
    UnsupportedProtocol(String),
    /// The OTLP exporter could not be built (bad endpoint, TLS, headers).
    #[error("building the OTLP exporter: {0}")]
    Exporter(#[from] ExporterBuildError),
    /// OTLP export was asked for outside a Tokio runtime.
    #[error("OTLP export needs a Tokio runtime: build telemetry from inside one")]
    NoRuntime,
    /// The log filter directives do not parse.
    #[error("invalid log filter `{directives}`: {message}")]
    Filter {
        /// The directives as given.
        directives: String,
        /// Why they were refused.
        message: String,
    },
    /// `init()` found a global tracing subscriber already installed.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
    /// The background thread that emits call-log records could not be started.
    #[error("starting the call-log emitter thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// Flushing or shutting down a provider failed (e.g. a timeout).
    #[error("flushing or shutting down telemetry: {0}")]
    Sdk(#[from] OTelSdkError),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
