//! The OTLP/gRPC receiver: `LogsService`, `TraceService` and `MetricsService` Export,
//! accepting gzip- and zstd-compressed messages.
//!
//! A gate in front of the services checks the ingest token and takes a pipeline place
//! *before* the message is read, so an unauthenticated or overflowing sender costs next
//! to nothing.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Instant,
};

use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::{LogsService, LogsServiceServer},
    },
    metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
};
use tokio::net::TcpListener;
use tonic::{
    Code, Request, Response, Status,
    codec::CompressionEncoding,
    transport::{Server, server::TcpIncoming},
};
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::layer::util::{Identity, Stack};
use tracing::debug;

use crate::{
    Collector, Error, Result, Signal,
    metrics::Transport,
    pipeline::{Accepted, IngestError},
};

/// Serves OTLP/gRPC on `listener` until `shutdown` completes, then finishes the requests
/// in progress and returns.
///
/// # Errors
/// [`Error::Serve`] when the server fails.
pub async fn serve_grpc(
    listener: TcpListener,
    collector: Arc<Collector>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    grpc_server(&collector)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| Error::Serve(e.to_string()))
}

/// The same settings for each generated server type.
macro_rules! configure {
    ($server:expr, $limit:expr) => {
        $server
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size($limit)
    };
}

/// The three OTLP services behind the gate, ready to serve.
fn grpc_server(
    collector: &Arc<Collector>,
) -> tonic::transport::server::Router<Stack<GateLayer, Identity>> {
    let limit = collector.config().max_request_bytes;
    let receiver = Receiver(Arc::clone(collector));
    Server::builder()
        .layer(GateLayer(Arc::clone(collector)))
        .add_service(configure!(LogsServiceServer::new(receiver.clone()), limit))
        .add_service(configure!(TraceServiceServer::new(receiver.clone()), limit))
        .add_service(configure!(MetricsServiceServer::new(receiver), limit))
}

/// Builds the status for a refused request.
fn status(e: &IngestError) -> Status {
    let message = e.to_string();
    match e {
        IngestError::Unauthenticated => Status::unauthenticated(message),
        IngestError::TooLarge { .. } => Status::resource_exhausted(message),
        IngestError::Malformed(_) | IngestError::UnsupportedMediaType(_) => {
            Status::invalid_argument(message)
        }
        IngestError::Overloaded(_, after) | IngestError::Unavailable(_, after) => {
            Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(*after)),
            )
        }
    }
}

/// The gRPC code's canonical name (`UNAVAILABLE`, …), as used in the `status` label of
/// the request counter.
#[must_use]
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Marks a request that reached a service: its answer is counted there, and the gate
/// counts only what it, or tonic's decoding, refused.
#[derive(Debug, Clone, Default)]
struct Reached(Arc<AtomicBool>);

/// The services: each hands its request to the pipeline.
#[derive(Debug, Clone)]
struct Receiver(Arc<Collector>);

impl Receiver {
    /// Takes the message out of the request, marking the request as having reached a
    /// service, and measures it.
    fn open<T: prost::Message>(request: Request<T>) -> (T, usize) {
        if let Some(reached) = request.extensions().get::<Reached>() {
            reached.0.store(true, Relaxed);
        }
        let message = request.into_inner();
        let size = message.encoded_len();
        (message, size)
    }

    /// Bounds `work` by the request timeout, then counts and converts its outcome.
    async fn answer(
        &self,
        signal: Signal,
        work: impl Future<Output = Result<Accepted, IngestError>>,
    ) -> Result<Accepted, Status> {
        let c = &self.0;
        let result = tokio::time::timeout(c.config().request_timeout(), work)
            .await
            .unwrap_or_else(|_| Err(c.timed_out()));
        let answer = result.map_err(|e| {
            debug!(%signal, error = %e, "Refused an OTLP/gRPC request.");
            status(&e)
        });
        let code = answer.as_ref().map_or_else(Status::code, |_| Code::Ok);
        c.count(signal, Transport::Grpc, code_label(code));
        answer
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let started = Instant::now();
        let (message, size) = Self::open(request);
        let c = &self.0;
        let work = async {
            let _bytes = c.admit_bytes(size)?;
            c.export_logs(message, None, size, started).await
        };
        let accepted = self.answer(Signal::Logs, work).await?;
        let partial = accepted.rejected > 0 || !accepted.message.is_empty();
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: partial.then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                error_message: accepted.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let started = Instant::now();
        let (message, size) = Self::open(request);
        let c = &self.0;
        let work = async {
            let _bytes = c.admit_bytes(size)?;
            c.export_traces(message, None, size, started).await
        };
        let accepted = self.answer(Signal::Traces, work).await?;
        let partial = accepted.rejected > 0 || !accepted.message.is_empty();
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: partial.then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                error_message: accepted.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let (message, size) = Self::open(request);
        let c = &self.0;
        let work = async {
            let _bytes = c.admit_bytes(size)?;
            c.export_metrics(&message, None, size);
            Ok(Accepted::default())
        };
        self.answer(Signal::Metrics, work).await?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Wraps the services in [`Gate`].
#[derive(Debug, Clone)]
pub(crate) struct GateLayer(Arc<Collector>);

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            collector: Arc::clone(&self.0),
        }
    }
}

/// Checks the token and takes a pipeline place before the message is read; reports
/// tonic's refusal of an oversized message as `RESOURCE_EXHAUSTED`, as OTLP expects.
#[derive(Debug, Clone)]
pub(crate) struct Gate<S> {
    inner: S,
    collector: Arc<Collector>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Gate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The ready service handles this call; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let c = Arc::clone(&self.collector);
        let signal = Signal::ALL
            .into_iter()
            .find(|s| s.grpc_path() == request.uri().path());
        Box::pin(async move {
            let Some(signal) = signal else {
                // Not an OTLP export: tonic answers UNIMPLEMENTED.
                return inner.call(request).await;
            };
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(http::HeaderValue::as_bytes);
            let admitted = if c.authorize(authorization) {
                c.admit()
            } else {
                Err(IngestError::Unauthenticated)
            };
            let admission = match admitted {
                Ok(a) => a,
                Err(e) => {
                    debug!(%signal, error = %e, "Refused an OTLP/gRPC request.");
                    let status = status(&e);
                    c.count(signal, Transport::Grpc, code_label(status.code()));
                    return Ok(status.into_http());
                }
            };
            let reached = Reached::default();
            request.extensions_mut().insert(reached.clone());
            let mut response = inner.call(request).await?;
            drop(admission);
            if !reached.0.load(Relaxed) {
                // tonic refused the message before it reached a service.
                let headers = response.headers_mut();
                let code = headers
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .map(Code::from_i32);
                if let Some(code) = code {
                    // What OTLP expects instead of tonic's codes: an oversized message is
                    // RESOURCE_EXHAUSTED (tonic: OUT_OF_RANGE), a malformed or corrupt
                    // one INVALID_ARGUMENT (tonic: INTERNAL, which nothing else here
                    // produces before the service).
                    let code = match code {
                        Code::OutOfRange => Code::ResourceExhausted,
                        Code::Internal => Code::InvalidArgument,
                        other => other,
                    };
                    headers.insert("grpc-status", http::HeaderValue::from(code as i32));
                    c.count(signal, Transport::Grpc, code_label(code));
                }
            }
            Ok(response)
        })
    }
}
