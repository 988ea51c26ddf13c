//! End to end over real loopback sockets: the real opentelemetry-otlp exporters send into
//! a collector backed by a DuckDB file, and the collector forwards to in-process OTLP
//! servers — including a dead one and a slow one that must not delay anything.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use axum::{Router, body::Bytes, routing};
use callscope_collector::{ForwardConfig, ForwardProtocol, OtlpConfig, Signal, http_router};
use common::{call_request, harness};
use opentelemetry::{
    KeyValue,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
    trace::{Tracer as _, TracerProvider as _},
};
use opentelemetry_otlp::{LogExporter, Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_proto::tonic::collector::{
    logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
        logs_service_server::{LogsService, LogsServiceServer},
    },
    trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
};
use opentelemetry_sdk::{Resource, logs::SdkLoggerProvider, trace::SdkTracerProvider};
use prost::Message as _;
use tower::ServiceExt as _;

/// Emits one customer and one internal record of `call` through `exporter`, and one span
/// through `spans`, on a blocking thread (the SDK's simple processors block).
async fn emit(exporter: impl FnOnce() -> LogExporter + Send + 'static, call: &'static str) {
    tokio::task::spawn_blocking(move || {
        let provider = SdkLoggerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_attribute(KeyValue::new("tenant.id", "acme"))
                    .build(),
            )
            .with_simple_exporter(exporter())
            .build();
        let logger = provider.logger("voice_agent");
        for (event, customer) in [("CALL_STARTED", true), ("LLM_REQUEST_SENT", false)] {
            let mut record = logger.create_log_record();
            record.set_event_name(event);
            record.set_timestamp(SystemTime::now());
            record.set_severity_number(Severity::Info);
            record.set_body(AnyValue::String("hello".into()));
            record.add_attribute("call.id", call);
            record.add_attribute("turn", 3_i64);
            if customer {
                record.add_attribute("callscope.visibility", "customer");
            }
            logger.emit(record);
        }
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_exporters_over_grpc_and_http() {
    let h = harness(OtlpConfig::default(), vec![]);
    let grpc = h.serve_grpc().await;
    let http = h.serve_http().await;

    emit(
        move || {
            LogExporter::builder()
                .with_tonic()
                .with_endpoint(grpc)
                .build()
                .unwrap()
        },
        "via-grpc",
    )
    .await;
    let stored = h.stored("via-grpc").await;
    assert_eq!(stored.len(), 1, "only the customer record is stored");
    assert_eq!(stored[0].event, "CALL_STARTED");
    assert_eq!(stored[0].data.as_ref().unwrap()["turn"], 3);

    let endpoint = format!("{http}/v1/logs");
    emit(
        move || {
            LogExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .build()
                .unwrap()
        },
        "via-http",
    )
    .await;
    assert_eq!(h.stored("via-http").await.len(), 1);

    // Spans are accepted (and would be forwarded), never stored.
    let endpoint = h.serve_grpc().await;
    tokio::task::spawn_blocking(move || {
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        provider.tracer("voice_agent").in_span("turn", |_| {});
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();
    let m = h.metrics();
    assert!(
        m.contains("callscope_otlp_received_items_total{signal=\"traces\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("callscope_otlp_received_items_total{signal=\"logs\"} 4"),
        "{m}"
    );
}

/// An in-process OTLP/gRPC destination that records what it receives, optionally slowly,
/// or refuses logs with a status not worth retrying.
#[derive(Clone, Default)]
struct Sink {
    logs: Arc<Mutex<Vec<ExportLogsServiceRequest>>>,
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    delay: Duration,
    refuse: bool,
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.delay).await;
        if self.refuse {
            return Err(tonic::Status::invalid_argument("not for us"));
        }
        self.logs.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.delay).await;
        self.traces.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Sink {
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(
                LogsServiceServer::new(self.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .add_service(
                TraceServiceServer::new(self.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        format!("http://{addr}")
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn post(path: &str, body: Vec<u8>) -> http::Request<axum::body::Body> {
    http::Request::post(path)
        .header("content-type", "application/x-protobuf")
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn destinations_receive_unfiltered_requests_over_grpc_and_http() {
    let sink = Sink::default();
    let grpc_endpoint = sink.serve().await;

    // An OTLP/HTTP destination that records gzip bodies.
    let http_bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let recorded = Arc::clone(&http_bodies);
    let app = Router::new().route(
        "/v1/logs",
        routing::post(move |headers: http::HeaderMap, body: Bytes| async move {
            assert_eq!(headers["content-encoding"], "gzip");
            assert_eq!(headers["x-scope-orgid"], "platform");
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut raw)
                .unwrap();
            recorded.lock().unwrap().push(raw.into());
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut to_http = ForwardConfig::new(http_endpoint, ForwardProtocol::HttpProtobuf);
    to_http.name = Some("loki".into());
    to_http.signals = vec![Signal::Logs];
    to_http
        .headers
        .insert("X-Scope-OrgID".into(), "platform".into());
    let mut to_grpc = ForwardConfig::new(grpc_endpoint, ForwardProtocol::Grpc);
    to_grpc.name = Some("tempo".into());
    let h = harness(OtlpConfig::default(), vec![to_grpc, to_http]);

    let request = call_request("fw");
    let response = http_router(h.collector.clone())
        .oneshot(post("/v1/logs", request.encode_to_vec()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let traces = ExportTraceServiceRequest::default();
    let response = http_router(h.collector.clone())
        .oneshot(post("/v1/traces", traces.encode_to_vec()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    eventually("the gRPC destination", || {
        sink.logs.lock().unwrap().len() == 1 && sink.traces.lock().unwrap().len() == 1
    })
    .await;
    // Unfiltered: the internal record and its internal attributes are there.
    assert_eq!(sink.logs.lock().unwrap()[0], request);
    eventually("the HTTP destination", || {
        http_bodies.lock().unwrap().len() == 1
    })
    .await;
    let forwarded =
        ExportLogsServiceRequest::decode(http_bodies.lock().unwrap()[0].clone()).unwrap();
    assert_eq!(forwarded, request);
    // The HTTP destination took logs only.
    assert_eq!(h.collector.forwarded("loki"), Some((1, 0, 0)));
    eventually("the counters", || {
        h.collector.forwarded("tempo") == Some((2, 0, 0))
    })
    .await;
    let m = h.metrics();
    assert!(m.contains(
        "callscope_forward_requests_total{destination=\"tempo\",signal=\"logs\",outcome=\"sent\"} 1"
    ), "{m}");
    h.collector.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn dead_and_slow_destinations_never_delay_acknowledgements() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let slow = Sink {
        delay: Duration::from_secs(30),
        ..Sink::default()
    };
    let slow_endpoint = slow.serve().await;
    let settings = |name: &str, endpoint: String| ForwardConfig {
        name: Some(name.into()),
        queue_capacity: 2,
        timeout_ms: 200,
        retry_max_attempts: 2,
        retry_initial_backoff_ms: 20,
        retry_max_backoff_ms: 50,
        ..ForwardConfig::new(endpoint, ForwardProtocol::Grpc)
    };
    let h = harness(
        OtlpConfig::default(),
        vec![settings("dead", dead), settings("slow", slow_endpoint)],
    );
    let app = http_router(h.collector.clone());

    let requests = 10;
    let started = Instant::now();
    for i in 0..requests {
        let call = format!("ack-{i}");
        let begun = Instant::now();
        let response = app
            .clone()
            .oneshot(post("/v1/logs", call_request(&call).encode_to_vec()))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            begun.elapsed() < Duration::from_millis(500),
            "request {i} took {:?}",
            begun.elapsed()
        );
        assert_eq!(h.stored(&call).await.len(), 2);
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    // Everything the dead destination was offered is missed: failed after retries, or
    // dropped because its queue was full.
    eventually("the dead destination's misses", || {
        let (sent, failed, dropped) = h.collector.forwarded("dead").unwrap();
        sent == 0 && failed + dropped == requests && failed > 0
    })
    .await;
    // The slow one works on one request at a time (each times out) with two more
    // queued; the rest are dropped.
    let (sent, _, dropped) = h.collector.forwarded("slow").unwrap();
    assert_eq!(sent, 0);
    assert!(dropped > 0, "dropped {dropped}");
    let m = h.metrics();
    assert!(
        m.contains("callscope_forward_retries_total{destination=\"dead\"}"),
        "{m}"
    );
    assert!(
        m.contains("callscope_forward_queue_depth{destination=\"slow\"}"),
        "{m}"
    );

    // Each loss is counted under its reason.
    assert!(lost(&m, "dead", "retries_exhausted") > 0, "{m}");
    assert!(lost(&m, "slow", "queue_full") > 0, "{m}");
    assert_eq!(lost(&m, "dead", "refused"), 0, "{m}");

    // Shutdown gives up on what is still queued, within its deadline.
    let begun = Instant::now();
    h.collector.shutdown(Duration::from_millis(300)).await;
    assert!(begun.elapsed() < Duration::from_secs(2));
    let (sent, failed, dropped) = h.collector.forwarded("slow").unwrap();
    assert_eq!(sent, 0);
    assert_eq!(failed + dropped, requests, "every request is accounted for");
    let m = h.metrics();
    assert!(lost(&m, "slow", "shutdown") > 0, "{m}");
    let reasons = [
        "queue_full",
        "shutdown",
        "refused",
        "retries_exhausted",
        "encode_error",
    ];
    for name in ["dead", "slow"] {
        let (_, failed, dropped) = h.collector.forwarded(name).unwrap();
        let by_reason: u64 = reasons.iter().map(|r| lost(&m, name, r)).sum();
        assert_eq!(by_reason, failed + dropped, "{name}: {m}");
    }
}

/// `callscope_forward_lost_requests_total` for the destination's logs and `reason`.
fn lost(metrics: &str, destination: &str, reason: &str) -> u64 {
    let series = format!(
        "callscope_forward_lost_requests_total{{destination=\"{destination}\",signal=\"logs\",reason=\"{reason}\"}} "
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series}in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_refused_request_is_counted_as_refused_and_not_retried() {
    let refusing = Sink {
        refuse: true,
        ..Sink::default()
    };
    let endpoint = refusing.serve().await;
    let h = harness(
        OtlpConfig::default(),
        vec![ForwardConfig {
            name: Some("strict".into()),
            retry_initial_backoff_ms: 20,
            ..ForwardConfig::new(endpoint, ForwardProtocol::Grpc)
        }],
    );
    let response = http_router(h.collector.clone())
        .oneshot(post("/v1/logs", call_request("refused").encode_to_vec()))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "forwarding never affects the answer"
    );
    eventually("the refusal", || {
        h.collector.forwarded("strict") == Some((0, 1, 0))
    })
    .await;
    let m = h.metrics();
    assert_eq!(lost(&m, "strict", "refused"), 1, "{m}");
    assert_eq!(lost(&m, "strict", "retries_exhausted"), 0, "{m}");
    assert!(
        m.contains("callscope_forward_retries_total{destination=\"strict\"} 0"),
        "{m}"
    );
    h.collector.shutdown(Duration::from_secs(1)).await;
}
