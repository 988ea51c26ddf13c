//! Shared set-up for the collector's integration tests: a collector over a real DuckDB
//! store in a temporary folder.

#![allow(dead_code, unreachable_pub)]

use std::{sync::Arc, time::Duration};

use callscope_collector::{
    Collector, ForwardConfig, OtlpConfig, VisibilityConfig, serve_grpc,
    testing::{LogBuilder, ResourceBuilder, ScopeBuilder, request},
};
use callscope_model::{LogRecord, metrics::MetricsSource as _, metrics::PromWriter};
use callscope_store::{LogFilter, LogQuery, Order, PageAt, Store, StoreConfig};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use tempfile::TempDir;

/// A collector, its store, and the folder that holds the store's file.
pub struct Harness {
    pub collector: Arc<Collector>,
    pub store: Store,
    _dir: TempDir,
}

/// A collector with `otlp` and `forward`, over a fresh store.
pub fn harness(otlp: OtlpConfig, forward: Vec<ForwardConfig>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("callscope.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    let collector = Collector::builder(store.clone())
        .otlp(otlp)
        .visibility(VisibilityConfig::default())
        .forward(forward)
        .build()
        .unwrap();
    Harness {
        collector,
        store,
        _dir: dir,
    }
}

impl Harness {
    /// The records stored for `call` of tenant `acme`, oldest first.
    pub async fn stored(&self, call: &str) -> Vec<LogRecord> {
        let query = LogQuery {
            at: PageAt::Page(1),
            limit: 1000,
            order: Order::Asc,
            filter: LogFilter::default(),
        };
        self.store
            .call_logs("acme", call, query)
            .await
            .unwrap()
            .map(|page| page.records)
            .unwrap_or_default()
    }

    /// The collector's `/metrics` text.
    pub fn metrics(&self) -> String {
        let mut w = PromWriter::new();
        self.collector.render(&mut w);
        w.finish()
    }

    /// Waits until the collector has `n` requests in flight.
    pub async fn wait_in_flight(&self, n: u64) {
        let line = format!("callscope_otlp_in_flight_requests {n}\n");
        for _ in 0..500 {
            if self.metrics().contains(&line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never reached {n} requests in flight:\n{}", self.metrics());
    }

    /// Serves OTLP/gRPC on a fresh loopback port; returns its `http://` address.
    pub async fn serve_grpc(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_grpc(
            listener,
            Arc::clone(&self.collector),
            std::future::pending(),
        ));
        format!("http://{addr}")
    }

    /// Serves OTLP/HTTP on a fresh loopback port; returns its `http://` address.
    pub async fn serve_http(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = callscope_collector::http_router(Arc::clone(&self.collector));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }
}

/// Two customer records and one internal record of `call` (tenant `acme`).
pub fn call_request(call: &str) -> ExportLogsServiceRequest {
    request([ResourceBuilder::new()
        .tenant("acme")
        .attr("host.name", "node-7")
        .scope(
            ScopeBuilder::new("voice_agent").logs([
                LogBuilder::customer("CALL_STARTED")
                    .call(call)
                    .attr("direction", "inbound"),
                LogBuilder::customer("AGENT_MESSAGE_SENT")
                    .call(call)
                    .attr("text", "hello")
                    .time(callscope_collector::testing::T0 + 1),
                LogBuilder::internal("LLM_REQUEST_SENT")
                    .call(call)
                    .attr("internal.prompt", "secret"),
            ]),
        )
        .build()])
}

/// A customer record that lacks `call.id`: rejected.
pub fn rejected_request() -> ExportLogsServiceRequest {
    request([ResourceBuilder::new()
        .tenant("acme")
        .logs([LogBuilder::customer("AGENT_MESSAGE_SENT").attr("text", "orphan")])
        .build()])
}
