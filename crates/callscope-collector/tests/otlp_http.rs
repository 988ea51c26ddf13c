//! The OTLP/HTTP receiver driven as a service (no sockets): every status it answers,
//! protobuf and JSON, compression, partial success, tokens, overload and storage failure.

mod common;

use std::io::Write as _;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, Response, StatusCode, header},
};
use callscope_collector::{OtlpConfig, http_router};
use common::{Harness, call_request, harness, rejected_request};
use http_body_util::BodyExt as _;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceResponse, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message as _;
use tower::ServiceExt as _;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn app(h: &Harness) -> Router {
    http_router(h.collector.clone())
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

async fn send(h: &Harness, request: Request<Body>) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let response: Response<Body> = app(h).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn status_message(body: &[u8]) -> (i32, String) {
    let s = tonic_types::Status::decode(body).unwrap();
    (s.code, s.message)
}

#[tokio::test]
async fn protobuf_logs_are_committed_before_200() {
    let h = harness(OtlpConfig::default(), vec![]);
    let body = call_request("c1").encode_to_vec();
    let (status, headers, body) = send(&h, post("/v1/logs", PROTOBUF, body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], PROTOBUF);
    let response = ExportLogsServiceResponse::decode(&body[..]).unwrap();
    assert_eq!(response.partial_success, None);
    let stored = h.stored("c1").await;
    let events: Vec<_> = stored.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["CALL_STARTED", "AGENT_MESSAGE_SENT"]);
    assert!(h.metrics().contains(
        "callscope_otlp_requests_total{signal=\"logs\",transport=\"http\",status=\"200\"} 1"
    ));
    assert!(
        h.metrics()
            .contains("callscope_ingest_commit_seconds_count 1")
    );
}

#[tokio::test]
async fn json_logs_in_the_otlp_encoding() {
    let h = harness(OtlpConfig::default(), vec![]);
    let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"tenant.id","value":{"stringValue":"acme"}}]},
      "scopeLogs":[{"scope":{"name":"s"},"logRecords":[{
        "timeUnixNano":"1763719200000000000","severityNumber":13,"eventName":"AGENT_MESSAGE_SENT",
        "body":{"stringValue":"hi"},"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "attributes":[{"key":"call.id","value":{"stringValue":"j1"}},
          {"key":"callscope.visibility","value":{"stringValue":"customer"}},
          {"key":"turn","value":{"intValue":"3"}},{"key":"retries","value":{"intValue":2}}],
        "futureField":true}]}]}]}"#;
    let (status, headers, body) = send(
        &h,
        post("/v1/logs", "application/json; charset=utf-8", body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], JSON);
    assert_eq!(body, b"{}");
    let stored = h.stored("j1").await;
    assert_eq!(stored.len(), 1);
    let r = &stored[0];
    assert_eq!(r.level, callscope_model::Level::Warning);
    assert_eq!(
        r.trace_id.as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
    let data = r.data.as_ref().unwrap();
    assert_eq!(data["turn"], 3);
    assert_eq!(data["retries"], 2);
    assert_eq!(data["message"], "hi");
}

#[tokio::test]
async fn partial_success_reports_rejected_records() {
    let h = harness(OtlpConfig::default(), vec![]);
    let (status, _, body) = send(
        &h,
        post("/v1/logs", PROTOBUF, rejected_request().encode_to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportLogsServiceResponse::decode(&body[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("call.id"),
        "{}",
        partial.error_message
    );

    let json = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"tenant.id","value":{"stringValue":"acme"}}]},
      "scopeLogs":[{"logRecords":[{"eventName":"AGENT_MESSAGE_SENT",
        "attributes":[{"key":"callscope.visibility","value":{"stringValue":"customer"}}]}]}]}]}"#;
    let (status, _, body) = send(&h, post("/v1/logs", JSON, json)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("call.id")
    );
}

#[tokio::test]
async fn gzip_and_zstd_bodies() {
    let h = harness(OtlpConfig::default(), vec![]);
    let mut request = post(
        "/v1/logs",
        PROTOBUF,
        gzip(&call_request("gz").encode_to_vec()),
    );
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    assert_eq!(send(&h, request).await.0, StatusCode::OK);
    let zst = zstd::encode_all(&call_request("zs").encode_to_vec()[..], 3).unwrap();
    let mut request = post("/v1/logs", PROTOBUF, zst);
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "zstd".parse().unwrap());
    assert_eq!(send(&h, request).await.0, StatusCode::OK);
    assert_eq!(h.stored("gz").await.len(), 2);
    assert_eq!(h.stored("zs").await.len(), 2);

    let mut request = post("/v1/logs", PROTOBUF, "not gzip");
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    assert_eq!(send(&h, request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn malformed_bodies_are_400_with_a_status_in_the_request_format() {
    let h = harness(OtlpConfig::default(), vec![]);
    let (status, headers, body) = send(&h, post("/v1/logs", PROTOBUF, &b"\xff\xff\xff"[..])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], PROTOBUF);
    let (code, message) = status_message(&body);
    assert_eq!(code, tonic::Code::InvalidArgument as i32);
    assert!(message.contains("protobuf"), "{message}");

    let (status, headers, body) =
        send(&h, post("/v1/traces", JSON, r#"{"resourceSpans": 7}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], JSON);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], 3);
    assert!(v["message"].as_str().unwrap().contains("OTLP JSON"), "{v}");
}

#[tokio::test]
async fn unknown_types_paths_and_methods() {
    let h = harness(OtlpConfig::default(), vec![]);
    let (status, _, body) = send(&h, post("/v1/logs", "text/plain", "hi")).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(String::from_utf8_lossy(&body).contains("application/x-protobuf"));
    let mut request = post("/v1/logs", PROTOBUF, "");
    request.headers_mut().remove(header::CONTENT_TYPE);
    assert_eq!(
        send(&h, request).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let mut request = post("/v1/logs", PROTOBUF, "");
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "br".parse().unwrap());
    assert_eq!(
        send(&h, request).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    assert_eq!(
        send(&h, post("/v1/profiles", PROTOBUF, "")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        send(&h, post("/", PROTOBUF, "")).await.0,
        StatusCode::NOT_FOUND
    );
    let get = Request::get("/v1/logs").body(Body::empty()).unwrap();
    assert_eq!(send(&h, get).await.0, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bodies_over_the_limit_after_decompression_are_413() {
    let limit = 64 * 1024;
    let h = harness(
        OtlpConfig {
            max_request_bytes: limit,
            ..OtlpConfig::default()
        },
        vec![],
    );
    let big = vec![0u8; limit + 1];
    let (status, _, body) = send(&h, post("/v1/logs", PROTOBUF, big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (code, _) = status_message(&body);
    assert_eq!(code, tonic::Code::ResourceExhausted as i32);

    // A declared length over the limit is refused before the body is read.
    let mut request = post("/v1/logs", PROTOBUF, Body::empty());
    request.headers_mut().insert(
        header::CONTENT_LENGTH,
        (limit + 1).to_string().parse().unwrap(),
    );
    assert_eq!(send(&h, request).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    // Bombs: a few KiB that inflate to 64 MiB are refused at the limit.
    let zeros = vec![0u8; 64 * 1024 * 1024];
    let gz = gzip(&zeros);
    let zst = zstd::encode_all(&zeros[..], 19).unwrap();
    drop(zeros);
    for (encoding, body) in [("gzip", gz), ("zstd", zst)] {
        assert!(
            body.len() < limit,
            "{encoding} bomb is {} bytes",
            body.len()
        );
        let mut request = post("/v1/logs", PROTOBUF, body);
        request
            .headers_mut()
            .insert(header::CONTENT_ENCODING, encoding.parse().unwrap());
        assert_eq!(
            send(&h, request).await.0,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{encoding}"
        );
    }
    assert!(h.metrics().contains(
        "callscope_otlp_requests_total{signal=\"logs\",transport=\"http\",status=\"413\"} 4"
    ));
}

#[tokio::test]
async fn ingest_tokens_are_required_when_configured() {
    let h = harness(
        OtlpConfig {
            ingest_tokens: vec!["tok-1".into(), "tok-2".into()],
            ..OtlpConfig::default()
        },
        vec![],
    );
    let body = call_request("t1").encode_to_vec();
    let (status, headers, _) = send(&h, post("/v1/logs", PROTOBUF, body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    for bad in ["Bearer tok-3", "Bearer tok-1x", "Basic tok-1", "tok-1"] {
        let mut request = post("/v1/logs", PROTOBUF, body.clone());
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, bad.parse().unwrap());
        assert_eq!(send(&h, request).await.0, StatusCode::UNAUTHORIZED, "{bad}");
    }
    assert!(h.stored("t1").await.is_empty());
    let mut request = post("/v1/logs", PROTOBUF, body);
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer tok-2".parse().unwrap());
    assert_eq!(send(&h, request).await.0, StatusCode::OK);
    assert_eq!(h.stored("t1").await.len(), 2);
}

#[tokio::test]
async fn a_full_pipeline_refuses_at_once_with_retry_after() {
    let h = harness(
        OtlpConfig {
            max_in_flight_requests: 1,
            retry_after_secs: 3,
            ..OtlpConfig::default()
        },
        vec![],
    );
    // A sender that never finishes its body holds the only place.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let stalled = Body::from_stream(tokio_stream_from(rx));
    let first = tokio::spawn(app(&h).oneshot(post("/v1/logs", PROTOBUF, stalled)));
    h.wait_in_flight(1).await;

    let (status, headers, body) = send(&h, post("/v1/logs", JSON, "{}")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "3");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["code"], tonic::Code::Unavailable as i32);

    tx.send(Ok(call_request("slow").encode_to_vec().into()))
        .await
        .unwrap();
    drop(tx);
    let response = first.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    h.wait_in_flight(0).await;
    assert_eq!(
        send(&h, post("/v1/logs", JSON, "{}")).await.0,
        StatusCode::OK
    );
    assert!(
        h.metrics()
            .contains("callscope_otlp_refused_total{limit=\"requests\"} 1")
    );
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn failed_storage_is_503_and_never_acknowledged() {
    let h = harness(OtlpConfig::default(), vec![]);
    h.store.shutdown().await.unwrap();
    let (status, headers, body) = send(
        &h,
        post("/v1/logs", PROTOBUF, call_request("lost").encode_to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[header::RETRY_AFTER], "1");
    let (code, _) = status_message(&body);
    assert_eq!(code, tonic::Code::Unavailable as i32);
    // Requests without customer records need no storage.
    let (status, _, _) = send(&h, post("/v1/logs", PROTOBUF, Vec::new())).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        h.metrics()
            .contains("callscope_ingest_storage_errors_total{kind=\"closed\"} 1")
    );
}

#[tokio::test]
async fn traces_and_metrics_are_accepted_and_not_stored() {
    let h = harness(OtlpConfig::default(), vec![]);
    let traces = ExportTraceServiceRequest::default().encode_to_vec();
    let (status, headers, _) = send(&h, post("/v1/traces", PROTOBUF, traces)).await;
    assert_eq!(
        (status, &headers[header::CONTENT_TYPE]),
        (StatusCode::OK, &PROTOBUF.parse().unwrap())
    );
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
        "spanId":"eee19b7ec3c1b174","name":"turn","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    let (status, _, body) = send(&h, post("/v1/traces", JSON, json)).await;
    assert_eq!((status, body), (StatusCode::OK, b"{}".to_vec()));

    let metrics = ExportMetricsServiceRequest::default().encode_to_vec();
    assert_eq!(
        send(&h, post("/v1/metrics", PROTOBUF, metrics)).await.0,
        StatusCode::OK
    );
    let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"calls","sum":{
        "aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"5"},{"asInt":6}]}}]}]}]}"#;
    assert_eq!(
        send(&h, post("/v1/metrics", JSON, json)).await.0,
        StatusCode::OK
    );
    let m = h.metrics();
    assert!(
        m.contains("callscope_otlp_received_items_total{signal=\"traces\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("callscope_otlp_received_items_total{signal=\"metrics\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("callscope_ingest_committed_records_total{outcome=\"inserted\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn customer_spans_are_committed_and_rejections_reported_as_partial_success() {
    use callscope_collector::testing::{SpanBuilder, trace_request};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

    let h = harness(OtlpConfig::default(), vec![]);
    let request = trace_request(
        [("tenant.id", "acme")],
        [
            SpanBuilder::customer("llm", 2)
                .call("c9")
                .attr("model", "small"),
            SpanBuilder::customer("tts", 3).trace(&[9; 16]),
            SpanBuilder::bare("db.query", 4).call("c9"),
        ],
    );
    let (status, _, body) = send(&h, post("/v1/traces", PROTOBUF, request.encode_to_vec())).await;
    assert_eq!(status, StatusCode::OK);
    let partial = ExportTraceServiceResponse::decode(&body[..])
        .unwrap()
        .partial_success
        .expect("partial success");
    assert_eq!(partial.rejected_spans, 1);
    assert_eq!(
        partial.error_message,
        "1 customer span rejected: 1 missing call.id"
    );
    let spans = h.store.call_spans("acme", "c9").await.unwrap().unwrap();
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["llm"],
        "committed before the 200; the internal span is not stored"
    );

    // The same request again, as JSON: stored once, rejected again.
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"tenant.id","value":{"stringValue":"acme"}}]},
        "scopeSpans":[{"spans":[{"traceId":"01010101010101010101010101010101","spanId":"0202020202020202",
        "name":"llm","kind":1,"startTimeUnixNano":"1763719200000000000","endTimeUnixNano":"1763719200001000000",
        "attributes":[{"key":"callscope.visibility","value":{"stringValue":"customer"}},
                      {"key":"call.id","value":{"stringValue":"c9"}}]},
        {"traceId":"09090909090909090909090909090909","spanId":"0303030303030303","name":"tts",
        "attributes":[{"key":"callscope.visibility","value":{"stringValue":"customer"}}]}]}]}]}"#;
    let (status, _, body) = send(&h, post("/v1/traces", JSON, json)).await;
    assert_eq!(status, StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "1");
    assert_eq!(
        h.store
            .call_spans("acme", "c9")
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    let m = h.metrics();
    for series in [
        "callscope_ingest_committed_spans_total{outcome=\"inserted\"} 1",
        "callscope_ingest_committed_spans_total{outcome=\"duplicate\"} 1",
        "callscope_ingest_rejected_spans_total 2",
        "callscope_spans_dropped_total{reason=\"internal\"} 1",
        "callscope_spans_rejected_total{reason=\"missing_call_id\"} 2",
    ] {
        assert!(m.contains(series), "{series}\n{m}");
    }
}
