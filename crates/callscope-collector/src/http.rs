//! The OTLP/HTTP receiver: `POST /v1/logs`, `/v1/traces` and `/v1/metrics`, with protobuf
//! or JSON bodies, optionally gzip- or zstd-compressed.
//!
//! Answers follow the OTLP/HTTP specification: a success carries the
//! `Export*ServiceResponse` and a failure a `google.rpc.Status`, each in the request's
//! content type; retryable refusals (429, 503) carry `Retry-After`.

use std::{sync::Arc, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse},
    metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse},
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse},
};
use prost::Message;
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::{
    Collector, Signal,
    decode::{self, DecodeError, Encoding},
    metrics::Transport,
    pipeline::{Accepted, Admission, IngestError},
};

/// Bodies larger than this are decompressed and decoded on the blocking pool.
const BLOCKING_BYTES: usize = 256 * 1024;

/// How long the rest of a refused request's body is read and discarded ([`linger`]).
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// The OTLP/HTTP routes, ready for `axum::serve` (with graceful shutdown).
///
/// Unknown paths answer 404 and other methods on the export paths 405.
pub fn http_router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route(Signal::Logs.http_path(), post(logs))
        .route(Signal::Traces.http_path(), post(traces))
        .route(Signal::Metrics.http_path(), post(metrics))
        .fallback(not_found)
        .with_state(collector)
}

async fn logs(State(c): State<Arc<Collector>>, headers: HeaderMap, body: Body) -> Response {
    export(c, Signal::Logs, headers, body).await
}

async fn traces(State(c): State<Arc<Collector>>, headers: HeaderMap, body: Body) -> Response {
    export(c, Signal::Traces, headers, body).await
}

async fn metrics(State(c): State<Arc<Collector>>, headers: HeaderMap, body: Body) -> Response {
    export(c, Signal::Metrics, headers, body).await
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: OTLP/HTTP accepts POST /v1/logs, /v1/traces and /v1/metrics\n",
    )
        .into_response()
}

/// A body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mime = value.split(';').next()?.trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
            "application/json" => Some(Format::Json),
            _ => None,
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        })
    }
}

async fn export(c: Arc<Collector>, signal: Signal, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let format = Format::from_headers(&headers);
    let work = handle(&c, signal, format, &headers, body, started);
    let result = tokio::time::timeout(c.config().request_timeout(), work)
        .await
        .unwrap_or_else(|_| Err(c.timed_out()));
    let response = match result {
        Ok((format, accepted)) => success(signal, format, &accepted),
        Err(e) => {
            debug!(%signal, error = %e, "Refused an OTLP/HTTP request.");
            failure(format, &e)
        }
    };
    c.count(signal, Transport::Http, status_label(response.status()));
    response
}

async fn handle(
    c: &Arc<Collector>,
    signal: Signal,
    format: Option<Format>,
    headers: &HeaderMap,
    mut body: Body,
    started: Instant,
) -> Result<(Format, Accepted), IngestError> {
    let limit = c.config().max_request_bytes;
    let (format, encoding, admission) = match admit(c, format, headers) {
        Ok(admitted) => admitted,
        Err(e) => {
            linger(body, limit).await;
            return Err(e);
        }
    };
    let raw = match Limited::new(&mut body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            linger(body, limit).await;
            return Err(IngestError::TooLarge { limit });
        }
        Err(e) => {
            return Err(IngestError::Malformed(format!(
                "cannot read the request body: {e}"
            )));
        }
    };
    let big = raw.len() >= BLOCKING_BYTES;
    let body = cpu(big, move || decode::decompress(raw, encoding, limit))
        .await
        .map_err(decode_error)?;
    let size = body.len();
    let bytes = c.admit_bytes(size)?;

    let protobuf = (format == Format::Protobuf).then(|| body.clone());
    let accepted = match signal {
        Signal::Logs => {
            let request: ExportLogsServiceRequest = parse(format, body).await?;
            c.export_logs(request, protobuf, size, started).await?
        }
        Signal::Traces => {
            let request: ExportTraceServiceRequest = parse(format, body).await?;
            c.export_traces(request, protobuf, size, started).await?
        }
        Signal::Metrics => {
            let request: ExportMetricsServiceRequest = parse(format, body).await?;
            c.export_metrics(&request, protobuf, size);
            Accepted::default()
        }
    };
    drop((bytes, admission));
    Ok((format, accepted))
}

/// The checks made before a request's body is read: the ingest token, the content type
/// and encoding, the declared length, and a place in the pipeline.
fn admit(
    c: &Arc<Collector>,
    format: Option<Format>,
    headers: &HeaderMap,
) -> Result<(Format, Encoding, Admission), IngestError> {
    if !c.authorize(
        headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    ) {
        return Err(IngestError::Unauthenticated);
    }
    let Some(format) = format else {
        let given = headers
            .get(header::CONTENT_TYPE)
            .map_or("none", |v| v.to_str().unwrap_or("?"));
        return Err(IngestError::UnsupportedMediaType(format!(
            "unsupported content type `{given}`: use application/x-protobuf or application/json"
        )));
    };
    let encoding_header = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let Some(encoding) = Encoding::from_header(encoding_header) else {
        return Err(IngestError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding `{}`: use gzip, zstd or identity",
            encoding_header.unwrap_or_default()
        )));
    };
    let limit = c.config().max_request_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::TooLarge { limit });
    }
    Ok((format, encoding, c.admit()?))
}

/// Reads and discards what is left of a refused request's body, one frame at a time, up
/// to `max` bytes and [`LINGER`]. Otherwise the connection is closed under a sender still
/// writing a large body, and it sees a reset instead of the refusal and its
/// `Retry-After` (web servers call this a lingering close).
async fn linger(mut body: Body, max: usize) {
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if seen > max {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Runs CPU-heavy work on the blocking pool when the input is big.
async fn cpu<T: Send + 'static>(big: bool, f: impl FnOnce() -> T + Send + 'static) -> T {
    if big {
        match tokio::task::spawn_blocking(f).await {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    } else {
        f()
    }
}

async fn parse<T>(format: Format, body: Bytes) -> Result<T, IngestError>
where
    T: Message + Default + DeserializeOwned + Send + 'static,
{
    let big = body.len() >= BLOCKING_BYTES;
    cpu(big, move || match format {
        Format::Protobuf => decode::protobuf::<T>(&body),
        Format::Json => decode::json::<T>(&body),
    })
    .await
    .map_err(decode_error)
}

fn decode_error(e: DecodeError) -> IngestError {
    match e {
        DecodeError::TooLarge { limit } => IngestError::TooLarge { limit },
        other => IngestError::Malformed(other.to_string()),
    }
}

fn success(signal: Signal, format: Format, accepted: &Accepted) -> Response {
    let partial = accepted.rejected > 0 || !accepted.message.is_empty();
    let body: Vec<u8> = match (format, signal) {
        (Format::Protobuf, Signal::Logs) => ExportLogsServiceResponse {
            partial_success: partial.then(|| ExportLogsPartialSuccess {
                rejected_log_records: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                error_message: accepted.message.clone(),
            }),
        }
        .encode_to_vec(),
        (Format::Protobuf, Signal::Traces) => ExportTraceServiceResponse {
            partial_success: partial.then(|| ExportTracePartialSuccess {
                rejected_spans: i64::try_from(accepted.rejected).unwrap_or(i64::MAX),
                error_message: accepted.message.clone(),
            }),
        }
        .encode_to_vec(),
        (Format::Protobuf, Signal::Metrics) => {
            ExportMetricsServiceResponse::default().encode_to_vec()
        }
        // int64 is a decimal string in the protobuf JSON mapping.
        (Format::Json, Signal::Logs) if partial => serde_json::json!({
            "partialSuccess": {
                "rejectedLogRecords": accepted.rejected.to_string(),
                "errorMessage": accepted.message,
            }
        })
        .to_string()
        .into_bytes(),
        (Format::Json, Signal::Traces) if partial => serde_json::json!({
            "partialSuccess": {
                "rejectedSpans": accepted.rejected.to_string(),
                "errorMessage": accepted.message,
            }
        })
        .to_string()
        .into_bytes(),
        (Format::Json, _) => b"{}".to_vec(),
    };
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

fn failure(format: Option<Format>, e: &IngestError) -> Response {
    use tonic::Code;
    let (status, code) = match e {
        IngestError::Unauthenticated => (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
        IngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted),
        IngestError::Malformed(_) => (StatusCode::BAD_REQUEST, Code::InvalidArgument),
        IngestError::UnsupportedMediaType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument)
        }
        IngestError::Overloaded(..) => (StatusCode::TOO_MANY_REQUESTS, Code::Unavailable),
        IngestError::Unavailable(..) => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
    };
    let message = e.to_string();
    let mut response = match format {
        Some(Format::Protobuf) => {
            let body = tonic_types::Status {
                code: code as i32,
                message,
                details: Vec::new(),
            }
            .encode_to_vec();
            (
                status,
                [(header::CONTENT_TYPE, Format::Protobuf.content_type())],
                body,
            )
                .into_response()
        }
        Some(Format::Json) => {
            let body = serde_json::json!({ "code": code as i32, "message": message }).to_string();
            (
                status,
                [(header::CONTENT_TYPE, Format::Json.content_type())],
                body,
            )
                .into_response()
        }
        None => (status, format!("{message}\n")).into_response(),
    };
    if let Some(after) = e.retry_after() {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(after.as_secs().max(1)),
        );
    }
    if matches!(e, IngestError::Unauthenticated) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        408 => "408",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}
