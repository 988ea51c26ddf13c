//! The cost of one call event on the emitting thread, inside an entered call span.
//!
//! Compared against the baseline of a plain `tracing::info!` turned into a log record by
//! `opentelemetry-appender-tracing`'s `OpenTelemetryTracingBridge`. What makes it fair:
//!
//! - Both subscribers are the same registry with the same `tracing-opentelemetry` layer
//!   (spans only, as `CallscopeTracing` sets it up by default) and differ only in the
//!   log layer: `CallLogLayer` or the bridge.
//! - Both log providers use a simple processor and an exporter that drops every batch, so
//!   the figure is building and handing over the record, not exporting it (a batch
//!   processor would add a record clone and a channel send to both, and its background
//!   thread would compete for the two cores).
//! - Both events carry the same fields (a string and an integer) inside the same entered
//!   span. The call event does more by design: five more attributes (the call's identity,
//!   visibility, category), which overflow the SDK record's five inline attribute slots
//!   into a heap vector, and the span's trace context. A fourth case builds the same
//!   seven-attribute record through the bridge by passing the identity as fields, which
//!   is what a service without callscope would have to write.
//!
//! Run: `cargo bench -p callscope-tracing --bench call_event`.

use std::hint::black_box;

use callscope_tracing::{CallLogLayer, call_event, call_span};
use criterion::{Criterion, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    logs::{LogBatch, LogExporter, SdkLoggerProvider},
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tracing::Dispatch;
use tracing_subscriber::{Layer as _, filter::filter_fn, prelude::*};

/// Drops every batch: export cost is not what is measured.
#[derive(Debug)]
struct Discard;

impl LogExporter for Discard {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        black_box(batch.iter().count());
        Ok(())
    }
}

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch.len());
        Ok(())
    }
}

fn providers() -> (SdkLoggerProvider, SdkTracerProvider) {
    let logs = SdkLoggerProvider::builder()
        .with_simple_exporter(Discard)
        .build();
    let traces = SdkTracerProvider::builder()
        .with_simple_exporter(Discard)
        .build();
    (logs, traces)
}

fn callscope_dispatch(logs: &SdkLoggerProvider, traces: &SdkTracerProvider) -> Dispatch {
    let otel = tracing_opentelemetry::layer()
        .with_tracer(traces.tracer("bench"))
        .with_filter(filter_fn(spans_only));
    Dispatch::new(
        tracing_subscriber::registry()
            .with(otel)
            .with(CallLogLayer::new(logs)),
    )
}

fn bridge_dispatch(logs: &SdkLoggerProvider, traces: &SdkTracerProvider) -> Dispatch {
    let otel = tracing_opentelemetry::layer()
        .with_tracer(traces.tracer("bench"))
        .with_filter(filter_fn(spans_only));
    Dispatch::new(
        tracing_subscriber::registry()
            .with(otel)
            .with(OpenTelemetryTracingBridge::new(logs)),
    )
}

fn bench(c: &mut Criterion) {
    let (logs, traces) = providers();
    let mut group = c.benchmark_group("event_in_call_span");

    let callscope = callscope_dispatch(&logs, &traces);
    tracing::dispatcher::with_default(&callscope, || {
        let call = call_span!(
            call_id = "call-0001",
            tenant_id = "acme",
            agent_id = "support"
        );
        let _in_call = call.enter();
        group.bench_function("call_event (CallLogLayer)", |b| {
            b.iter(|| call_event!(AGENT_MESSAGE_SENT, text = "How can I help?", turn = 3));
        });
        group.bench_function("tracing::info (CallLogLayer, internal)", |b| {
            b.iter(|| tracing::info!(text = "How can I help?", turn = 3));
        });
    });

    let bridge = bridge_dispatch(&logs, &traces);
    tracing::dispatcher::with_default(&bridge, || {
        let call = call_span!(
            call_id = "call-0001",
            tenant_id = "acme",
            agent_id = "support"
        );
        let _in_call = call.enter();
        group.bench_function("tracing::info (OpenTelemetryTracingBridge)", |b| {
            b.iter(|| tracing::info!(text = "How can I help?", turn = 3));
        });
        // The same record as the call event's, built by hand through the bridge.
        let (call_id, tenant_id, agent_id) = ("call-0001", "acme", "support");
        group.bench_function(
            "tracing::info, same attributes (OpenTelemetryTracingBridge)",
            |b| {
                b.iter(|| {
                    tracing::info!(
                        call.id = call_id,
                        tenant.id = tenant_id,
                        agent.id = agent_id,
                        callscope.visibility = "customer",
                        callscope.category = "AGENT",
                        text = "How can I help?",
                        turn = 3
                    );
                });
            },
        );
    });

    group.finish();
    let _ = logs.shutdown();
    let _ = traces.shutdown();
}

mod group {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::bench);
}
criterion_main!(group::benches);

/// Lets spans through and keeps events away from the span layer.
fn spans_only(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
}
