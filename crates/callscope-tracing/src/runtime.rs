//! Runs OTLP exports on the Tokio runtime the exporter was built in.
//!
//! The SDK's batch processors export from their own OS thread, where neither tonic's
//! timers nor reqwest's connections have a reactor. Each export is therefore driven with
//! `Handle::block_on` of the runtime captured at build time; an export already running
//! inside a runtime (a simple processor on a Tokio task) is awaited in place.

use std::{fmt, time::Duration};

use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    logs::{LogBatch, LogExporter},
    trace::{SpanData, SpanExporter},
};
use tokio::runtime::Handle;

/// An exporter whose exports run on a captured Tokio runtime.
pub(crate) struct OnRuntime<E> {
    inner: E,
    runtime: Handle,
}

impl<E> OnRuntime<E> {
    pub(crate) fn new(inner: E, runtime: Handle) -> Self {
        Self { inner, runtime }
    }

    async fn run<F: Future<Output = OTelSdkResult>>(&self, export: F) -> OTelSdkResult {
        if Handle::try_current().is_ok() {
            export.await
        } else {
            self.runtime.block_on(export)
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for OnRuntime<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnRuntime")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<E: LogExporter> LogExporter for OnRuntime<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        self.run(self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.run(self.inner.export(batch)).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
