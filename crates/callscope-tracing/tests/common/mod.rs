//! Shared fixtures: telemetry wired to in-memory exporters, and record accessors.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use callscope_tracing::{CallscopeTracing, Processor, Telemetry};
use opentelemetry::{Key, logs::AnyValue};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    logs::{InMemoryLogExporter, LogBatch, LogExporter, SdkLogRecord},
    trace::{InMemorySpanExporter, SpanData},
};

pub struct Harness {
    pub telemetry: Telemetry,
    pub logs: InMemoryLogExporter,
    pub spans: InMemorySpanExporter,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_filter("trace")
    }

    pub fn with_filter(filter: &str) -> Self {
        Self::with(filter, Processor::Simple)
    }

    /// The production set-up: batch processors, records built on the emitter thread.
    /// Read records only after [`flush`](Self::flush).
    pub fn batched() -> Self {
        Self::with("trace", Processor::Batch)
    }

    fn with(filter: &str, processor: Processor) -> Self {
        let logs = InMemoryLogExporter::default();
        let spans = InMemorySpanExporter::default();
        let telemetry = CallscopeTracing::builder()
            .service_name("test-agent")
            .env_filter(filter)
            .with_log_exporter(logs.clone())
            .with_span_exporter(spans.clone())
            .processor(processor)
            .build()
            .expect("telemetry builds");
        Self {
            telemetry,
            logs,
            spans,
        }
    }

    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        tracing::dispatcher::with_default(self.telemetry.dispatch(), f)
    }

    pub fn flush(&self) {
        self.telemetry.force_flush().expect("telemetry flushes");
    }

    pub fn records(&self) -> Vec<SdkLogRecord> {
        self.logs
            .get_emitted_logs()
            .unwrap()
            .into_iter()
            .map(|l| l.record)
            .collect()
    }

    pub fn spans(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().unwrap()
    }

    pub fn span(&self, name: &str) -> SpanData {
        let spans = self.spans();
        let mut found = spans.iter().filter(|s| s.name == name);
        let span = found.next().unwrap_or_else(|| panic!("no span {name}"));
        assert!(found.next().is_none(), "more than one span {name}");
        span.clone()
    }
}

/// The record's attributes, in order, values rendered for comparison.
pub fn attrs(record: &SdkLogRecord) -> Vec<(String, AnyValue)> {
    record
        .attributes_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

pub fn attr(record: &SdkLogRecord, key: &str) -> Option<AnyValue> {
    let key = Key::from(key.to_owned());
    record
        .attributes_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
}

pub fn str_attr(record: &SdkLogRecord, key: &str) -> Option<String> {
    match attr(record, key)? {
        AnyValue::String(s) => Some(s.as_str().to_owned()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

pub fn s(v: &str) -> AnyValue {
    AnyValue::String(v.to_owned().into())
}

/// Keeps every exported record, also after shutdown (the SDK's in-memory exporter
/// forgets them when it shuts down).
#[derive(Debug, Clone, Default)]
pub struct KeepingExporter {
    pub records: Arc<Mutex<Vec<SdkLogRecord>>>,
}

impl KeepingExporter {
    pub fn records(&self) -> Vec<SdkLogRecord> {
        self.records.lock().unwrap().clone()
    }
}

impl LogExporter for KeepingExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let mut records = self.records.lock().unwrap();
        records.extend(batch.iter().map(|(record, _)| record.clone()));
        Ok(())
    }
}
