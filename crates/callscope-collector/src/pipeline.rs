//! The ingest pipeline both receivers share: admission (bounded in-flight requests and
//! bytes), forwarding, the visibility filter, and the storage commit that must happen
//! before a sender is acknowledged.

use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use bytes::Bytes;
use callscope_model::metrics::{MetricsSource, PromWriter};
use callscope_store::Store;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{error, warn};

use crate::{
    ForwardConfig, OtlpConfig, Result, Signal, VisibilityConfig, VisibilityFilter,
    forward::Forwarders,
    metrics::{IngestMetrics, Transport},
};

/// Requests larger than this are filtered on the blocking pool, off the async workers.
const BLOCKING_FILTER_BYTES: usize = 1024 * 1024;

/// The collector: what the OTLP/gRPC and OTLP/HTTP receivers hand their requests to.
///
/// Build one with [`Collector::builder`], share it as `Arc<Collector>` between
/// [`crate::serve_grpc`] and [`crate::http_router`], and call [`Collector::shutdown`]
/// after both servers have stopped. It is also the [`MetricsSource`] for everything the
/// collector counts (ingest, the visibility filter, forwarding).
#[derive(Debug)]
pub struct Collector {
    config: OtlpConfig,
    filter: VisibilityFilter,
    store: Store,
    forwarders: Forwarders,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    /// SHA-256 of each ingest token: comparing fixed-length digests keeps the
    /// comparison constant-time whatever the tokens' lengths.
    tokens: Vec<[u8; 32]>,
    pub(crate) metrics: Arc<IngestMetrics>,
}

/// Builds a [`Collector`].
#[derive(Debug)]
#[must_use]
pub struct CollectorBuilder {
    store: Store,
    otlp: OtlpConfig,
    visibility: VisibilityConfig,
    forward: Vec<ForwardConfig>,
}

impl CollectorBuilder {
    /// The receivers' settings (`[otlp]`). Default: [`OtlpConfig::default`].
    pub fn otlp(mut self, config: OtlpConfig) -> Self {
        self.otlp = config;
        self
    }

    /// What customers may see (`[visibility]`). Default: [`VisibilityConfig::default`].
    pub fn visibility(mut self, config: VisibilityConfig) -> Self {
        self.visibility = config;
        self
    }

    /// Where requests are forwarded (`[[forward]]`). Default: nowhere.
    pub fn forward(mut self, destinations: Vec<ForwardConfig>) -> Self {
        self.forward = destinations;
        self
    }

    /// Validates the settings and starts the forwarding workers. Must be called inside a
    /// Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] or [`Error::Visibility`] naming the first bad setting.
    pub fn build(self) -> Result<Arc<Collector>> {
        self.otlp.validate()?;
        let filter = VisibilityFilter::new(&self.visibility)?;
        let forwarders = Forwarders::start(&self.forward)?;
        let tokens = self
            .otlp
            .ingest_tokens
            .iter()
            .map(|t| Sha256::digest(t.trim().as_bytes()).into())
            .collect();
        Ok(Arc::new(Collector {
            requests: Arc::new(Semaphore::new(self.otlp.max_in_flight_requests)),
            bytes: Arc::new(Semaphore::new(self.otlp.max_in_flight_bytes)),
            config: self.otlp,
            filter,
            store: self.store,
            forwarders,
            tokens,
            metrics: Arc::default(),
        }))
    }
}

/// Why a request was not acknowledged; each receiver turns it into its status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IngestError {
    #[error("missing or invalid ingest token (send `Authorization: Bearer <token>`)")]
    Unauthenticated,
    #[error("the request exceeds {limit} bytes (measured after decompression)")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The pipeline is full: retry after the delay.
    #[error("{0}; retry later")]
    Overloaded(&'static str, Duration),
    /// Storage cannot take the records now: retry after the delay.
    #[error("{0}; retry later")]
    Unavailable(&'static str, Duration),
}

impl IngestError {
    /// The delay a retryable refusal asks for.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Overloaded(_, d) | IngestError::Unavailable(_, d) => Some(*d),
            _ => None,
        }
    }
}

/// What an accepted request came to: the OTLP `partial_success`, if any.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) rejected: u64,
    pub(crate) message: String,
}

/// A request's place in the pipeline; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<IngestMetrics>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics.in_flight_requests.fetch_sub(1, Relaxed);
    }
}

/// A request's decompressed bytes, reserved in the pipeline; dropping it frees them.
#[derive(Debug)]
pub(crate) struct BytesAdmission {
    permit: OwnedSemaphorePermit,
    metrics: Arc<IngestMetrics>,
}

impl Drop for BytesAdmission {
    fn drop(&mut self) {
        self.metrics
            .in_flight_bytes
            .fetch_sub(self.permit.num_permits() as u64, Relaxed);
    }
}

impl Collector {
    /// Starts building a collector that stores into `store`.
    pub fn builder(store: Store) -> CollectorBuilder {
        CollectorBuilder {
            store,
            otlp: OtlpConfig::default(),
            visibility: VisibilityConfig::default(),
            forward: Vec::new(),
        }
    }

    /// The receivers' settings.
    #[must_use]
    pub fn config(&self) -> &OtlpConfig {
        &self.config
    }

    /// The visibility filter.
    #[must_use]
    pub fn filter(&self) -> &VisibilityFilter {
        &self.filter
    }

    /// Whether the collector can acknowledge logs: storage is writable.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.store.is_ready()
    }

    /// Stops forwarding after sending what is queued, for at most `deadline`. Call it
    /// after the receivers have stopped; requests still queued then are counted as
    /// dropped.
    pub async fn shutdown(&self, deadline: Duration) {
        self.forwarders.shutdown(deadline).await;
    }

    /// Whether `authorization` (the header's value) carries a valid ingest token. Always
    /// true when no tokens are configured.
    pub(crate) fn authorize(&self, authorization: Option<&[u8]>) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let Some(token) = authorization.and_then(bearer) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token).into();
        // Every token is compared, so timing reveals neither which one matched nor where.
        self.tokens
            .iter()
            .fold(subtle::Choice::from(0), |found, t| found | t.ct_eq(&digest))
            .into()
    }

    /// Takes a request place, or refuses at once when all are taken.
    pub(crate) fn admit(&self) -> Result<Admission, IngestError> {
        let Ok(permit) = Arc::clone(&self.requests).try_acquire_owned() else {
            self.metrics.refused("requests");
            return Err(IngestError::Overloaded(
                "too many export requests in flight",
                self.retry_after(),
            ));
        };
        self.metrics.in_flight_requests.fetch_add(1, Relaxed);
        Ok(Admission {
            _permit: permit,
            metrics: Arc::clone(&self.metrics),
        })
    }

    /// Reserves `n` decompressed bytes for an admitted request, or refuses at once.
    pub(crate) fn admit_bytes(&self, n: usize) -> Result<BytesAdmission, IngestError> {
        let permits = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&self.bytes).try_acquire_many_owned(permits) else {
            self.metrics.refused("bytes");
            return Err(IngestError::Overloaded(
                "too many request bytes in flight",
                self.retry_after(),
            ));
        };
        self.metrics
            .in_flight_bytes
            .fetch_add(u64::from(permits), Relaxed);
        Ok(BytesAdmission {
            permit,
            metrics: Arc::clone(&self.metrics),
        })
    }

    fn retry_after(&self) -> Duration {
        Duration::from_secs(self.config.retry_after_secs.max(1))
    }

    pub(crate) fn count(&self, signal: Signal, transport: Transport, status: &'static str) {
        self.metrics.request(signal, transport, status);
    }

    /// Offers the request to the forwarders, encoding it only when someone wants it.
    fn forward(&self, signal: Signal, raw: Option<Bytes>, encode: impl FnOnce() -> Vec<u8>) {
        if self.forwarders.wants(signal) {
            let body = raw.unwrap_or_else(|| encode().into());
            self.forwarders.offer(signal, &body);
        }
    }

    /// Ingests a logs request: forwards it, filters it and commits the customer records.
    /// `raw` is the request's protobuf encoding when the receiver has it; `size` its
    /// decompressed size; `started` when the receiver began reading it.
    pub(crate) async fn export_logs(
        self: &Arc<Self>,
        request: ExportLogsServiceRequest,
        raw: Option<Bytes>,
        size: usize,
        started: Instant,
    ) -> Result<Accepted, IngestError> {
        let items = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        self.metrics.received(Signal::Logs, items, size as u64);
        self.forward(Signal::Logs, raw, || request.encode_to_vec());

        let output = if size >= BLOCKING_FILTER_BYTES {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || this.filter.apply(&request))
                .await
                .map_err(|_| IngestError::Unavailable("the filter failed", self.retry_after()))?
        } else {
            self.filter.apply(&request)
        };
        self.metrics.rejected(output.rejected);
        let accepted = Accepted {
            rejected: output.rejected,
            message: output.error_message,
        };
        if output.records.is_empty() {
            return Ok(accepted);
        }
        let retry = self.retry_after();
        match self.store.append(output.records).await {
            Ok(receipt) => {
                self.metrics
                    .committed(receipt.inserted, receipt.duplicates, started.elapsed());
                Ok(accepted)
            }
            Err(e) => Err(self.storage_error(&e, retry)),
        }
    }

    fn storage_error(&self, e: &callscope_store::Error, retry: Duration) -> IngestError {
        use callscope_store::Error as E;
        match e {
            E::Overloaded => {
                self.metrics.storage_error("overloaded");
                warn!("Storage queue is full; refusing an export request.");
                IngestError::Overloaded("storage is busy", retry)
            }
            E::Closed => {
                self.metrics.storage_error("closed");
                IngestError::Unavailable("callscope is shutting down", retry)
            }
            E::Unavailable(reason) => {
                self.metrics.storage_error("unavailable");
                error!(%reason, "Storage write failed; refusing an export request.");
                IngestError::Unavailable("storage is unavailable", retry)
            }
            other => {
                self.metrics.storage_error("other");
                error!(error = %other, "Storage failed; refusing an export request.");
                IngestError::Unavailable("storage is unavailable", retry)
            }
        }
    }

    /// Counts a request that timed out before its commit.
    pub(crate) fn timed_out(&self) -> IngestError {
        self.metrics.storage_error("timeout");
        warn!(
            timeout_ms = self.config.request_timeout_ms,
            "Export request timed out before its storage commit."
        );
        IngestError::Unavailable("the request timed out", self.retry_after())
    }

    /// Ingests a traces request: forwards it, filters it and commits the customer spans
    /// (see [`VisibilityFilter::apply_spans`]).
    pub(crate) async fn export_traces(
        self: &Arc<Self>,
        request: ExportTraceServiceRequest,
        raw: Option<Bytes>,
        size: usize,
        started: Instant,
    ) -> Result<Accepted, IngestError> {
        let items = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        self.metrics.received(Signal::Traces, items, size as u64);
        self.forward(Signal::Traces, raw, || request.encode_to_vec());

        let output = if size >= BLOCKING_FILTER_BYTES {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || this.filter.apply_spans(&request))
                .await
                .map_err(|_| IngestError::Unavailable("the filter failed", self.retry_after()))?
        } else {
            self.filter.apply_spans(&request)
        };
        self.metrics.rejected_spans(output.rejected);
        let accepted = Accepted {
            rejected: output.rejected,
            message: output.error_message,
        };
        if output.spans.is_empty() {
            return Ok(accepted);
        }
        let retry = self.retry_after();
        match self.store.append_spans(output.spans).await {
            Ok(receipt) => {
                self.metrics.committed_spans(
                    receipt.inserted,
                    receipt.duplicates,
                    started.elapsed(),
                );
                Ok(accepted)
            }
            Err(e) => Err(self.storage_error(&e, retry)),
        }
    }

    /// Ingests a metrics request: counted and forwarded, never stored.
    pub(crate) fn export_metrics(
        &self,
        request: &ExportMetricsServiceRequest,
        raw: Option<Bytes>,
        size: usize,
    ) {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let items = request
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.len(),
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Histogram(h)) => h.data_points.len(),
                Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                Some(Data::Summary(s)) => s.data_points.len(),
                None => 0,
            } as u64)
            .sum();
        self.metrics.received(Signal::Metrics, items, size as u64);
        self.forward(Signal::Metrics, raw, || request.encode_to_vec());
    }

    /// Requests answered so far with `status` (an HTTP code such as `"200"` or a gRPC
    /// code name such as `"OK"`), over every signal and transport.
    #[must_use]
    pub fn requests_with_status(&self, status: &str) -> u64 {
        self.metrics.requests_with_status(status)
    }

    /// Requests sent, failed and dropped for the destination labelled `label` (its
    /// `name`, else its endpoint), over all signals; `None` for an unknown label.
    #[must_use]
    pub fn forwarded(&self, label: &str) -> Option<(u64, u64, u64)> {
        self.forwarders.totals(label)
    }
}

impl MetricsSource for Collector {
    fn render(&self, out: &mut PromWriter) {
        self.metrics.render(out);
        self.filter.stats().render(out);
        self.forwarders.render(out);
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b"Bearer "), None);
    }
}
