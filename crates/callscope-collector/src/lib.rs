//! The callscope collector: OTLP receivers, the customer-visibility filter, forwarding to
//! the platform's own observability stack, and the ingest pipeline into storage.
//!
//! ```text
//!  OTLP/gRPC :4317 ─┐                         ┌─▶ [[forward]] queues ─▶ Jaeger, Tempo, …
//!                   ├─▶ Collector ─ decode ───┤   (unfiltered; never waits)
//!  OTLP/HTTP :4318 ─┘                         └─▶ logs: VisibilityFilter ─▶ Store::append
//!                                                  └─▶ acknowledged after the commit
//! ```
//!
//! The binary builds one [`Collector`], serves it with [`serve_grpc`] and
//! [`http_router`], and calls [`Collector::shutdown`] once both servers have stopped:
//!
//! ```no_run
//! # async fn demo(store: callscope_store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use callscope_collector::{Collector, OtlpConfig, http_router, serve_grpc};
//!
//! let config = OtlpConfig::default();
//! let collector = Collector::builder(store).otlp(config.clone()).build()?;
//! let grpc = tokio::net::TcpListener::bind(config.grpc_addr).await?;
//! let http = tokio::net::TcpListener::bind(config.http_addr).await?;
//! let (stop, stopped) = tokio::sync::watch::channel(false);
//! let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
//!     let _ = rx.wait_for(|s| *s).await;
//! };
//! let grpc = tokio::spawn(serve_grpc(grpc, collector.clone(), wait(stopped.clone())));
//! let http = axum::serve(http, http_router(collector.clone()))
//!     .with_graceful_shutdown(wait(stopped));
//! # let _ = stop;
//! http.await?;
//! grpc.await??;
//! collector.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod config;
pub mod embedded;
mod forward;
mod grpc;
mod http;
mod metrics;
mod pipeline;

/// Fake OTLP requests for tests and benches (feature `testing`): the same module as
/// `callscope_otlp::testing`.
#[cfg(any(test, feature = "testing"))]
pub use callscope_otlp::testing;
pub use callscope_otlp::{decode, visibility};

pub use config::{Compression, ForwardConfig, ForwardProtocol, OtlpConfig, Signal};
pub use embedded::EmbeddedLogExporter;
pub use grpc::{code_label as grpc_code_name, serve_grpc};
pub use http::http_router;
pub use metrics::Transport;
pub use pipeline::{Collector, CollectorBuilder};
pub use visibility::{VisibilityConfig, VisibilityFilter};

/// What can go wrong setting up or running the collector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting cannot be used; `key` names it, e.g. `forward[0].endpoint`.
    #[error("{key}: {message}")]
    Config {
        /// The setting, e.g. `otlp.max_request_bytes`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `[visibility]` setting cannot be used.
    #[error(transparent)]
    Visibility(#[from] visibility::ConfigError),
    /// A server failed.
    #[error("the OTLP server failed: {0}")]
    Serve(String),
}

/// The collector's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
