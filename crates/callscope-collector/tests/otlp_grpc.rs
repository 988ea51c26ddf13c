//! The OTLP/gRPC receiver over a loopback socket with tonic clients: every status it
//! answers, compression, partial success, tokens, overload and storage failure.

mod common;

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use callscope_collector::OtlpConfig;
use common::{call_request, harness, rejected_request};
use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::logs_service_client::LogsServiceClient,
        metrics::v1::{ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient},
        trace::v1::{ExportTraceServiceRequest, trace_service_client::TraceServiceClient},
    },
    logs::v1::LogRecord,
};
use tonic::{
    Code,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};
use tonic_types::StatusExt as _;

async fn client(addr: &str) -> LogsServiceClient<Channel> {
    LogsServiceClient::connect(addr.to_owned()).await.unwrap()
}

#[tokio::test]
async fn logs_are_committed_before_ok() {
    let h = harness(OtlpConfig::default(), vec![]);
    let addr = h.serve_grpc().await;
    let response = client(&addr)
        .await
        .export(call_request("g1"))
        .await
        .unwrap();
    assert_eq!(response.into_inner().partial_success, None);
    assert_eq!(h.stored("g1").await.len(), 2);
    assert!(h.metrics().contains(
        "callscope_otlp_requests_total{signal=\"logs\",transport=\"grpc\",status=\"OK\"} 1"
    ));
}

#[tokio::test]
async fn partial_success_and_compression() {
    let h = harness(OtlpConfig::default(), vec![]);
    let addr = h.serve_grpc().await;
    let partial = client(&addr)
        .await
        .export(rejected_request())
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(partial.error_message.contains("call.id"));

    for (encoding, call) in [
        (CompressionEncoding::Gzip, "gz"),
        (CompressionEncoding::Zstd, "zs"),
    ] {
        let mut c = client(&addr)
            .await
            .send_compressed(encoding)
            .accept_compressed(encoding);
        c.export(call_request(call)).await.unwrap();
        assert_eq!(h.stored(call).await.len(), 2, "{encoding:?}");
    }
}

#[tokio::test]
async fn traces_and_metrics_are_accepted() {
    let h = harness(OtlpConfig::default(), vec![]);
    let addr = h.serve_grpc().await;
    TraceServiceClient::connect(addr.clone())
        .await
        .unwrap()
        .export(ExportTraceServiceRequest::default())
        .await
        .unwrap();
    MetricsServiceClient::connect(addr)
        .await
        .unwrap()
        .export(ExportMetricsServiceRequest::default())
        .await
        .unwrap();
    let m = h.metrics();
    assert!(
        m.contains(
            "callscope_otlp_requests_total{signal=\"traces\",transport=\"grpc\",status=\"OK\"} 1"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "callscope_otlp_requests_total{signal=\"metrics\",transport=\"grpc\",status=\"OK\"} 1"
        ),
        "{m}"
    );
}

#[tokio::test]
async fn tokens_are_required_when_configured() {
    let h = harness(
        OtlpConfig {
            ingest_tokens: vec!["tok-1".into()],
            ..OtlpConfig::default()
        },
        vec![],
    );
    let addr = h.serve_grpc().await;
    let mut c = client(&addr).await;
    let err = c.export(call_request("t1")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(call_request("t1"));
    request
        .metadata_mut()
        .insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(
        c.export(request).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut request = tonic::Request::new(call_request("t1"));
    request
        .metadata_mut()
        .insert("authorization", "Bearer tok-1".parse().unwrap());
    c.export(request).await.unwrap();
    assert_eq!(h.stored("t1").await.len(), 2);
}

fn big_request(
    bytes: usize,
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest {
    let mut r = call_request("big");
    let record = LogRecord {
        body: Some(callscope_collector::testing::bytes(&vec![0u8; bytes])),
        ..LogRecord::default()
    };
    r.resource_logs[0].scope_logs[0].log_records.push(record);
    r
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted_even_compressed() {
    let h = harness(
        OtlpConfig {
            max_request_bytes: 64 * 1024,
            ..OtlpConfig::default()
        },
        vec![],
    );
    let addr = h.serve_grpc().await;
    let err = client(&addr)
        .await
        .export(big_request(128 * 1024))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // 16 MiB of zeros compresses to a few KiB: refused while inflating.
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let err = client(&addr)
            .await
            .send_compressed(encoding)
            .export(big_request(16 * 1024 * 1024))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{encoding:?}: {err:?}");
    }
    assert!(h.stored("big").await.is_empty());
    assert!(h.metrics().contains(
        "callscope_otlp_requests_total{signal=\"logs\",transport=\"grpc\",status=\"RESOURCE_EXHAUSTED\"} 3"
    ));
}

/// Sends raw bytes as the request message.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::test]
async fn malformed_messages_are_invalid_argument() {
    let h = harness(OtlpConfig::default(), vec![]);
    let addr = h.serve_grpc().await;
    let channel = Channel::from_shared(addr).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    );
    let err = grpc
        .unary(
            tonic::Request::new(Bytes::from_static(b"\xff\xff\xff")),
            path,
            Raw,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test]
async fn a_full_pipeline_is_unavailable_with_retry_info() {
    let h = harness(
        OtlpConfig {
            max_in_flight_requests: 1,
            retry_after_secs: 2,
            ..OtlpConfig::default()
        },
        vec![],
    );
    let addr = h.serve_grpc().await;
    // An OTLP/HTTP sender that never finishes its body holds the only place.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let stalled =
        axum::body::Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let request = http::Request::post("/v1/logs")
        .header("content-type", "application/x-protobuf")
        .body(stalled)
        .unwrap();
    let app = callscope_collector::http_router(h.collector.clone());
    let first = tokio::spawn(tower::ServiceExt::oneshot(app, request));
    h.wait_in_flight(1).await;

    let err = client(&addr)
        .await
        .export(call_request("busy"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    let retry = err.get_details_retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(2)));

    drop(tx);
    first.await.unwrap().unwrap();
    h.wait_in_flight(0).await;
    client(&addr)
        .await
        .export(call_request("busy"))
        .await
        .unwrap();
}

#[tokio::test]
async fn failed_storage_is_unavailable() {
    let h = harness(OtlpConfig::default(), vec![]);
    let addr = h.serve_grpc().await;
    h.store.shutdown().await.unwrap();
    let err = client(&addr)
        .await
        .export(call_request("lost"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.get_details_retry_info().is_some());
}
