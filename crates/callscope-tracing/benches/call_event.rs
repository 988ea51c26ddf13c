//! The cost of one call event on the emitting thread, inside an entered call span.
//!
//! Compared against the baseline of a plain `tracing::info!` turned into a log record by
//! `opentelemetry-appender-tracing`'s `OpenTelemetryTracingBridge`. What makes it fair:
//!
//! - Both subscribers are the same registry with the same `tracing-opentelemetry` layer
//!   (spans only, as `CallscopeTracing` sets it up by default) and differ only in the
//!   log layer: `CallLogLayer` or the bridge.
//! - Both log providers use the same processor and an exporter that drops every batch, so
//!   the figure is the emitting thread's work, not exporting.
//! - Both events carry the same fields (a string and an integer) inside the same entered
//!   span. The call event does more by design: five more attributes (the call's identity,
//!   visibility, category) and the span's trace context. A further case builds the same
//!   seven-attribute record through the bridge by passing the identity as fields, which
//!   is what a service without callscope would have to write.
//!
//! Two configurations, each compared like with like:
//!
//! - `simple_processor`: both build the SDK record and export it on the emitting thread
//!   (`CallLogLayer::new`, a simple log processor).
//! - `batch_processor`, what agents run in production: the bridge builds the record and
//!   the SDK's batch processor clones it into its queue; callscope captures the event
//!   into its own queue and builds the record on the `callscope-log-emitter` thread
//!   (`CallLogLayer::deferred`). Events are emitted in timed bursts of [`BURST`], and
//!   both pipelines are drained between bursts, untimed: a queue left to fill up would
//!   measure the drop path instead. The bench checks that every event was exported.
//!
//! Run: `cargo bench -p callscope-tracing --bench call_event`.

use std::{
    cell::Cell,
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use callscope_tracing::{CallLogLayer, DEFAULT_LOG_QUEUE_CAPACITY, call_event, call_span};
use criterion::{BenchmarkGroup, Criterion, criterion_main, measurement::WallTime};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    logs::{LogBatch, LogExporter, SdkLoggerProvider},
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tracing::Dispatch;
use tracing_subscriber::{Layer as _, filter::filter_fn, prelude::*};

/// Events per timed burst in the batch configuration: well under both queues' capacity
/// (2048) and under the SDK batch processor's export size (512).
const BURST: u64 = 256;

/// Drops every batch (export cost is not what is measured), counting the records.
#[derive(Debug, Clone, Default)]
struct Discard {
    records: Arc<AtomicU64>,
}

impl LogExporter for Discard {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = black_box(batch.iter().count());
        self.records.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }
}

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch.len());
        Ok(())
    }
}

fn tracer_provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(Discard::default())
        .build()
}

/// The registry, the span layer, and the log layer after it: the only part that differs.
macro_rules! dispatch {
    ($traces:expr, $logs:expr) => {
        Dispatch::new(
            tracing_subscriber::registry()
                .with(
                    tracing_opentelemetry::layer()
                        .with_tracer($traces.tracer("bench"))
                        .with_filter(filter_fn(spans_only)),
                )
                .with($logs),
        )
    };
}

/// Runs `f` with `dispatch` as the default, inside an entered call span.
fn in_call(dispatch: &Dispatch, f: impl FnOnce()) {
    tracing::dispatcher::with_default(dispatch, || {
        let call = call_span!(
            call_id = "call-0001",
            tenant_id = "acme",
            agent_id = "support"
        );
        let _in_call = call.enter();
        f();
    });
}

fn call_event() {
    call_event!(AGENT_MESSAGE_SENT, text = "How can I help?", turn = 3);
}

fn plain_info() {
    tracing::info!(text = "How can I help?", turn = 3);
}

fn same_attributes_info() {
    let (call_id, tenant_id, agent_id) = ("call-0001", "acme", "support");
    tracing::info!(
        call.id = call_id,
        tenant.id = tenant_id,
        agent.id = agent_id,
        callscope.visibility = "customer",
        callscope.category = "AGENT",
        text = "How can I help?",
        turn = 3
    );
}

fn simple_processor(c: &mut Criterion) {
    let traces = tracer_provider();
    let logs = SdkLoggerProvider::builder()
        .with_simple_exporter(Discard::default())
        .build();
    let mut group = c.benchmark_group("simple_processor");

    in_call(&dispatch!(traces, CallLogLayer::new(&logs)), || {
        group.bench_function("call_event (CallLogLayer)", |b| b.iter(call_event));
        group.bench_function("tracing::info (CallLogLayer, internal)", |b| {
            b.iter(plain_info);
        });
    });
    in_call(
        &dispatch!(traces, OpenTelemetryTracingBridge::new(&logs)),
        || {
            group.bench_function("tracing::info (bridge)", |b| b.iter(plain_info));
            group.bench_function("tracing::info, same attributes (bridge)", |b| {
                b.iter(same_attributes_info);
            });
        },
    );

    group.finish();
    let _ = logs.shutdown();
    let _ = traces.shutdown();
}

/// Times `iters` calls of `emit` in bursts of [`BURST`], running `drain` (untimed)
/// after each burst.
fn in_bursts(iters: u64, emit: fn(), drain: &dyn Fn()) -> Duration {
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(BURST);
        let start = Instant::now();
        for _ in 0..n {
            emit();
        }
        timed += start.elapsed();
        drain();
        left -= n;
    }
    timed
}

/// Benchmarks `emit` in bursts and checks afterwards that every event was exported.
fn bench_bursts(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    emit: fn(),
    drain: &dyn Fn(),
    exported: &AtomicU64,
) {
    let emitted = Cell::new(0);
    exported.store(0, Ordering::Relaxed);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            emitted.set(emitted.get() + iters);
            in_bursts(iters, emit, drain)
        });
    });
    let exported = exported.load(Ordering::Relaxed);
    assert_eq!(
        exported,
        emitted.get(),
        "{name}: records were dropped, the figure would not be the emitting path"
    );
}

fn batch_processor(c: &mut Criterion) {
    let traces = tracer_provider();
    let mut group = c.benchmark_group("batch_processor");

    let exporter = Discard::default();
    let logs = SdkLoggerProvider::builder()
        .with_batch_exporter(exporter.clone())
        .build();
    let (layer, emitter) =
        CallLogLayer::deferred(&logs, DEFAULT_LOG_QUEUE_CAPACITY).expect("emitter thread starts");
    let drain = || {
        emitter.drain().expect("emitter drains");
        logs.force_flush().expect("logs flush");
    };
    in_call(&dispatch!(traces, layer), || {
        bench_bursts(
            &mut group,
            "call_event (CallLogLayer, deferred)",
            call_event,
            &drain,
            &exporter.records,
        );
        bench_bursts(
            &mut group,
            "tracing::info (CallLogLayer, deferred, internal)",
            plain_info,
            &drain,
            &exporter.records,
        );
    });
    assert_eq!(emitter.dropped(), 0);
    emitter.shutdown().expect("emitter stops");
    let _ = logs.shutdown();

    let exporter = Discard::default();
    let logs = SdkLoggerProvider::builder()
        .with_batch_exporter(exporter.clone())
        .build();
    let drain = || logs.force_flush().expect("logs flush");
    in_call(
        &dispatch!(traces, OpenTelemetryTracingBridge::new(&logs)),
        || {
            bench_bursts(
                &mut group,
                "tracing::info (bridge)",
                plain_info,
                &drain,
                &exporter.records,
            );
            bench_bursts(
                &mut group,
                "tracing::info, same attributes (bridge)",
                same_attributes_info,
                &drain,
                &exporter.records,
            );
        },
    );
    let _ = logs.shutdown();

    group.finish();
    let _ = traces.shutdown();
}

mod group {
    #![allow(missing_docs, unreachable_pub)]
    criterion::criterion_group!(benches, super::simple_processor, super::batch_processor);
}
criterion_main!(group::benches);

/// Lets spans through and keeps events away from the span layer.
fn spans_only(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
}
