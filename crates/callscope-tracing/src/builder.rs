//! The one builder agent services call: it assembles the subscriber (filter,
//! OpenTelemetry spans, the call-log layer, optional console output) and the OTLP (or
//! custom) exporters behind it.

use std::{borrow::Cow, fmt, time::Duration};

use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    logs::{LogExporter, LoggerProviderBuilder, SdkLoggerProvider},
    trace::{SdkTracerProvider, SpanExporter, TracerProviderBuilder},
};
use tracing::Dispatch;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::filter_fn, layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

use crate::{
    CallLogLayer, DEFAULT_LOG_QUEUE_CAPACITY, Error, LogEmitter, Result,
    layer::{CALL_SPAN_TARGET, EVENT_TARGET, STAGE_SPAN_TARGET, TURN_SPAN_TARGET},
    runtime::OnRuntime,
};

/// The OTLP endpoint used for gRPC when neither the builder nor the environment names
/// one: the local callscope collector.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";
/// The OTLP/HTTP base URL used when neither the builder nor the environment names one.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://127.0.0.1:4318";
/// Log filter directives used when neither `RUST_LOG` nor the builder gives any.
pub const DEFAULT_FILTER: &str = "info";

/// Directives always added to the filter: call spans and call events are product data,
/// not debug output, so no log level hides them.
const ALWAYS_ON: [&str; 4] = [
    "callscope::event=trace",
    "callscope::call=trace",
    "callscope::turn=trace",
    "callscope::stage=trace",
];
/// Directives added to the default filter: the exporter's own transport would otherwise
/// log about every export, which would be exported in turn.
const QUIET_TRANSPORT: &str = "h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off";

/// How OTLP is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP/gRPC (port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318).
    HttpProtobuf,
}

impl Protocol {
    /// Reads the value of an `OTEL_EXPORTER_OTLP_*PROTOCOL` variable.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedProtocol`] for anything but `grpc` and `http/protobuf`
    /// (`http/json` included: callscope senders use protobuf).
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(Error::UnsupportedProtocol(other.to_owned())),
        }
    }
}

/// How records and spans reach the exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Processor {
    /// Batched on a background thread: the emitting thread only captures each event and
    /// queues it; records are built on a background thread (the default).
    #[default]
    Batch,
    /// Built and exported synchronously on the emitting thread: for tests that read an
    /// in-memory exporter right after emitting, and for local sinks.
    Simple,
}

/// The entry point: `CallscopeTracing::builder()`.
#[derive(Debug, Clone, Copy)]
pub struct CallscopeTracing;

impl CallscopeTracing {
    /// A builder with callscope's defaults: OTLP/gRPC to the local collector, batch
    /// processors, filter `info`, no console output.
    #[must_use]
    pub fn builder() -> CallscopeTracingBuilder {
        CallscopeTracingBuilder::default()
    }
}

type AttachLogs = Box<dyn FnOnce(LoggerProviderBuilder, Processor) -> LoggerProviderBuilder + Send>;
type AttachSpans =
    Box<dyn FnOnce(TracerProviderBuilder, Processor) -> TracerProviderBuilder + Send>;

/// Configures and builds callscope telemetry. See the [crate docs](crate) for how
/// settings and environment variables combine.
#[derive(Default)]
pub struct CallscopeTracingBuilder {
    service_name: Option<String>,
    resource: Vec<KeyValue>,
    protocol: Option<Protocol>,
    endpoint: Option<String>,
    timeout: Option<Duration>,
    processor: Processor,
    otlp: Option<bool>,
    log_exporters: Vec<AttachLogs>,
    span_exporters: Vec<AttachSpans>,
    fmt_layer: bool,
    filter: Option<String>,
    span_events: bool,
    log_queue_capacity: Option<usize>,
}

impl fmt::Debug for CallscopeTracingBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallscopeTracingBuilder")
            .field("service_name", &self.service_name)
            .field("resource", &self.resource)
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("processor", &self.processor)
            .field("otlp", &self.otlp)
            .field("log_exporters", &self.log_exporters.len())
            .field("span_exporters", &self.span_exporters.len())
            .field("fmt_layer", &self.fmt_layer)
            .field("filter", &self.filter)
            .field("span_events", &self.span_events)
            .field("log_queue_capacity", &self.log_queue_capacity)
            .finish()
    }
}

impl CallscopeTracingBuilder {
    /// The `service.name` resource attribute. Wins over `OTEL_SERVICE_NAME`.
    #[must_use]
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds a resource attribute (e.g. `tenant.id` for a single-tenant service,
    /// `deployment.environment`). Merged over `OTEL_RESOURCE_ATTRIBUTES`.
    #[must_use]
    pub fn resource_attribute(
        mut self,
        key: impl Into<opentelemetry::Key>,
        value: impl Into<opentelemetry::Value>,
    ) -> Self {
        self.resource.push(KeyValue::new(key, value));
        self
    }

    /// The OTLP protocol. Wins over `OTEL_EXPORTER_OTLP_PROTOCOL`.
    #[must_use]
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The OTLP base endpoint, e.g. `http://collector:4317` (gRPC) or
    /// `http://collector:4318` (HTTP; `/v1/logs` and `/v1/traces` are appended). Wins
    /// over `OTEL_EXPORTER_OTLP_ENDPOINT` and the signal-specific variables.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP export timeout. Wins over `OTEL_EXPORTER_OTLP_TIMEOUT`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Batch (the default) or simple processors, for every exporter.
    #[must_use]
    pub fn processor(mut self, processor: Processor) -> Self {
        self.processor = processor;
        self
    }

    /// Whether to export over OTLP. By default OTLP is on unless a custom exporter was
    /// added for a signal; with `true`, OTLP runs next to custom exporters.
    #[must_use]
    pub fn otlp(mut self, enabled: bool) -> Self {
        self.otlp = Some(enabled);
        self
    }

    /// Adds a log exporter (e.g. the SDK's `InMemoryLogExporter` in tests, or a local
    /// store). Replaces OTLP log export unless [`otlp(true)`](Self::otlp) is set.
    #[must_use]
    pub fn with_log_exporter<E: LogExporter + 'static>(mut self, exporter: E) -> Self {
        self.log_exporters
            .push(Box::new(move |builder, processor| match processor {
                Processor::Batch => builder.with_batch_exporter(exporter),
                Processor::Simple => builder.with_simple_exporter(exporter),
            }));
        self
    }

    /// Adds a span exporter. Replaces OTLP span export unless
    /// [`otlp(true)`](Self::otlp) is set.
    #[must_use]
    pub fn with_span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        self.span_exporters
            .push(Box::new(move |builder, processor| match processor {
                Processor::Batch => builder.with_batch_exporter(exporter),
                Processor::Simple => builder.with_simple_exporter(exporter),
            }));
        self
    }

    /// Also print events to stderr with `tracing-subscriber`'s fmt layer.
    #[must_use]
    pub fn fmt_layer(mut self, enabled: bool) -> Self {
        self.fmt_layer = enabled;
        self
    }

    /// Default filter directives (`EnvFilter` syntax), used when `RUST_LOG` is unset.
    /// Call spans and call events pass whatever the filter says.
    #[must_use]
    pub fn env_filter(mut self, directives: impl Into<String>) -> Self {
        self.filter = Some(directives.into());
        self
    }

    /// Also record every tracing event as an event on its OpenTelemetry span (off by
    /// default: events already travel as log records carrying the span's ids).
    #[must_use]
    pub fn span_events(mut self, enabled: bool) -> Self {
        self.span_events = enabled;
        self
    }

    /// How many call-log records may wait for the background emitter thread with the
    /// batch processor ([`DEFAULT_LOG_QUEUE_CAPACITY`] by default). When the queue is
    /// full a record is dropped and counted ([`TelemetryGuard::dropped_records`]); the
    /// emitting thread never waits. Unused with the simple processor.
    #[must_use]
    pub fn log_queue_capacity(mut self, capacity: usize) -> Self {
        self.log_queue_capacity = Some(capacity);
        self
    }

    /// Builds the subscriber and providers without installing anything globally. Use
    /// the dispatch with `tracing::dispatcher::with_default` or
    /// `WithSubscriber::with_subscriber`.
    ///
    /// # Errors
    ///
    /// An unsupported protocol, a bad endpoint, OTLP export asked for outside a Tokio
    /// runtime, filter directives that do not parse, or (batch processor) the log
    /// emitter thread failing to start.
    pub fn build(self) -> Result<Telemetry> {
        self.build_with(&|name| std::env::var(name).ok())
    }

    /// Builds, then installs the subscriber as the global default (with a bridge for
    /// the `log` crate) and the tracer provider as OpenTelemetry's global one. Keep the
    /// guard alive: dropping it flushes and shuts down export.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and [`Error::AlreadyInstalled`] when a global
    /// subscriber exists.
    pub fn init(self) -> Result<TelemetryGuard> {
        let telemetry = self.build()?;
        let (dispatch, guard) = telemetry.into_parts();
        dispatch.try_init().map_err(|_| Error::AlreadyInstalled)?;
        if let Some(traces) = &guard.traces {
            opentelemetry::global::set_tracer_provider(traces.clone());
        }
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        Ok(guard)
    }

    fn build_with(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Telemetry> {
        let filter = build_filter(self.filter.as_deref(), env("RUST_LOG"))?;

        let mut resource = Resource::builder();
        if let Some(name) = self.service_name.clone() {
            resource = resource.with_service_name(name);
        }
        let resource = resource.with_attributes(self.resource.clone()).build();

        let otlp_logs = self.otlp.unwrap_or(self.log_exporters.is_empty());
        let otlp_traces = self.otlp.unwrap_or(self.span_exporters.is_empty());
        let otlp = if otlp_logs || otlp_traces {
            Some(OtlpSettings::resolve(
                self.protocol,
                self.endpoint.as_deref(),
                self.timeout,
                env,
            )?)
        } else {
            None
        };

        let mut logs = SdkLoggerProvider::builder().with_resource(resource.clone());
        for attach in self.log_exporters {
            logs = attach(logs, self.processor);
        }
        let mut traces = SdkTracerProvider::builder().with_resource(resource);
        for attach in self.span_exporters {
            traces = attach(traces, self.processor);
        }
        if let Some(otlp) = &otlp {
            if otlp_logs {
                let exporter = otlp.log_exporter()?;
                logs = match self.processor {
                    Processor::Batch => logs.with_batch_exporter(exporter),
                    Processor::Simple => logs.with_simple_exporter(exporter),
                };
            }
            if otlp_traces {
                let exporter = otlp.span_exporter()?;
                traces = match self.processor {
                    Processor::Batch => traces.with_batch_exporter(exporter),
                    Processor::Simple => traces.with_simple_exporter(exporter),
                };
            }
        }
        let logs = logs.build();
        let traces = traces.build();
        // With a batch processor the record is cloned and queued anyway: build it off
        // the agent's thread too. A simple processor exports on the emitting thread, so
        // building there keeps "emitted" meaning "exported".
        let (call_logs, emitter) = match self.processor {
            Processor::Simple => (CallLogLayer::new(&logs), None),
            Processor::Batch => {
                let capacity = self
                    .log_queue_capacity
                    .unwrap_or(DEFAULT_LOG_QUEUE_CAPACITY);
                let (layer, emitter) = CallLogLayer::deferred(&logs, capacity)?;
                (layer, Some(emitter))
            }
        };

        let tracer = traces.tracer(env!("CARGO_PKG_NAME"));
        // Exactly one of the two is Some: spans and their events, or spans only.
        let otel_all = self
            .span_events
            .then(|| tracing_opentelemetry::layer().with_tracer(tracer.clone()));
        let otel_spans = (!self.span_events).then(|| {
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(filter_fn(spans_only))
        });
        let fmt = self
            .fmt_layer
            .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(otel_all)
            .with(otel_spans)
            .with(call_logs)
            .with(fmt);

        Ok(Telemetry {
            dispatch: Dispatch::new(subscriber),
            guard: TelemetryGuard {
                emitter,
                logs: Some(logs),
                traces: Some(traces),
            },
        })
    }
}

/// Lets spans through and keeps events away from the span layer.
fn spans_only(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
}

fn build_filter(default: Option<&str>, rust_log: Option<String>) -> Result<EnvFilter> {
    let directives: Cow<'_, str> = match rust_log.filter(|s| !s.trim().is_empty()) {
        Some(from_env) => from_env.into(),
        None => format!("{},{QUIET_TRANSPORT}", default.unwrap_or(DEFAULT_FILTER)).into(),
    };
    let invalid = |message: String| Error::Filter {
        directives: directives.to_string(),
        message,
    };
    let mut filter = EnvFilter::builder()
        .parse(&*directives)
        .map_err(|e| invalid(e.to_string()))?;
    for directive in ALWAYS_ON {
        filter = filter.add_directive(directive.parse().map_err(|e| invalid(format!("{e}")))?);
    }
    debug_assert!(
        [
            EVENT_TARGET,
            CALL_SPAN_TARGET,
            TURN_SPAN_TARGET,
            STAGE_SPAN_TARGET
        ]
        .iter()
        .all(|t| ALWAYS_ON.iter().any(|d| d.starts_with(&format!("{t}="))))
    );
    Ok(filter)
}

/// OTLP settings after applying builder > environment > callscope defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OtlpSettings {
    protocol: Protocol,
    /// `Some` when we must pass an endpoint; `None` lets the exporter read its variable.
    logs_endpoint: Option<String>,
    traces_endpoint: Option<String>,
    timeout: Option<Duration>,
}

impl OtlpSettings {
    fn resolve(
        protocol: Option<Protocol>,
        endpoint: Option<&str>,
        timeout: Option<Duration>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let protocol = match protocol {
            Some(p) => p,
            None => match set("OTEL_EXPORTER_OTLP_PROTOCOL") {
                Some(v) => Protocol::parse(&v)?,
                None => Protocol::Grpc,
            },
        };
        let generic_env = set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        let endpoint_for = |signal_var: &str, path: &str| -> Option<String> {
            let url = |base: &str| match protocol {
                Protocol::Grpc => base.to_owned(),
                Protocol::HttpProtobuf => format!("{}/{path}", base.trim_end_matches('/')),
            };
            match endpoint {
                Some(e) => Some(url(e)),
                None if generic_env || set(signal_var).is_some() => None,
                None => Some(url(match protocol {
                    Protocol::Grpc => DEFAULT_GRPC_ENDPOINT,
                    Protocol::HttpProtobuf => DEFAULT_HTTP_ENDPOINT,
                })),
            }
        };
        Ok(Self {
            protocol,
            logs_endpoint: endpoint_for("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "v1/logs"),
            traces_endpoint: endpoint_for("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "v1/traces"),
            timeout,
        })
    }

    fn log_exporter(&self) -> Result<OnRuntime<opentelemetry_otlp::LogExporter>> {
        otlp_exporter!(self, opentelemetry_otlp::LogExporter, &self.logs_endpoint)
    }

    fn span_exporter(&self) -> Result<OnRuntime<opentelemetry_otlp::SpanExporter>> {
        otlp_exporter!(
            self,
            opentelemetry_otlp::SpanExporter,
            &self.traces_endpoint
        )
    }
}

/// Builds an OTLP exporter of either signal (`$exporter` is `LogExporter` or
/// `SpanExporter`; their builders share methods but no trait that builds) with the
/// settings' protocol, `$endpoint` and timeout, on the current Tokio runtime.
macro_rules! otlp_exporter {
    ($settings:expr, $exporter:ty, $endpoint:expr) => {{
        let settings: &OtlpSettings = $settings;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let endpoint: &Option<String> = $endpoint;
        let builder = <$exporter>::builder();
        let exporter = match settings.protocol {
            Protocol::Grpc => {
                configure(builder.with_tonic(), endpoint.as_deref(), settings.timeout).build()?
            }
            Protocol::HttpProtobuf => configure(
                builder
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary),
                endpoint.as_deref(),
                settings.timeout,
            )
            .build()?,
        };
        Ok(OnRuntime::new(exporter, runtime))
    }};
}
use otlp_exporter;

/// Sets the endpoint and timeout an exporter builder of any signal or transport takes.
fn configure<B: WithExportConfig>(
    mut b: B,
    endpoint: Option<&str>,
    timeout: Option<Duration>,
) -> B {
    if let Some(e) = endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(t) = timeout {
        b = b.with_timeout(t);
    }
    b
}

/// A built subscriber and the providers behind it, not installed anywhere.
#[derive(Debug)]
pub struct Telemetry {
    dispatch: Dispatch,
    guard: TelemetryGuard,
}

impl Telemetry {
    /// The subscriber, for `tracing::dispatcher::with_default` or
    /// `WithSubscriber::with_subscriber`.
    #[must_use]
    pub fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The log provider (e.g. to add it to a local sink's lifecycle). With the batch
    /// processor, flushing it directly does not wait for records still queued for the
    /// emitter thread: use [`force_flush`](Self::force_flush).
    #[must_use]
    pub fn logger_provider(&self) -> &SdkLoggerProvider {
        self.guard
            .logs
            .as_ref()
            .expect("providers live until shutdown")
    }

    /// The tracer provider.
    #[must_use]
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        self.guard
            .traces
            .as_ref()
            .expect("providers live until shutdown")
    }

    /// Exports every record and span emitted before the call.
    ///
    /// # Errors
    ///
    /// When an exporter fails or times out.
    pub fn force_flush(&self) -> Result<()> {
        self.guard.force_flush()
    }

    /// How many call-log records were dropped because the emitter queue was full.
    #[must_use]
    pub fn dropped_records(&self) -> u64 {
        self.guard.dropped_records()
    }

    /// Hands every queued call-log record to the log provider, then flushes and shuts
    /// down both providers.
    ///
    /// # Errors
    ///
    /// When an exporter fails or times out.
    pub fn shutdown(self) -> Result<()> {
        self.guard.shutdown()
    }

    /// The subscriber and the guard that owns the providers.
    pub fn into_parts(self) -> (Dispatch, TelemetryGuard) {
        (self.dispatch, self.guard)
    }
}

/// Owns the log and tracer providers (and, with the batch processor, the thread that
/// builds call-log records); dropping it hands every queued record to the log provider,
/// then flushes and shuts both providers down (errors are ignored on drop; call
/// [`shutdown`](Self::shutdown) to see them).
///
/// With a gRPC or HTTP exporter, drop it where the Tokio runtime can still make
/// progress: on a multi-threaded runtime, or after leaving a current-thread one.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    emitter: Option<LogEmitter>,
    logs: Option<SdkLoggerProvider>,
    traces: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every record and span emitted before the call: first waits until every
    /// queued call-log record has been handed to the log provider, then flushes both
    /// providers.
    ///
    /// # Errors
    ///
    /// When an exporter fails or times out.
    pub fn force_flush(&self) -> Result<()> {
        if let Some(emitter) = &self.emitter {
            emitter.drain()?;
        }
        if let Some(traces) = &self.traces {
            traces.force_flush()?;
        }
        if let Some(logs) = &self.logs {
            logs.force_flush()?;
        }
        Ok(())
    }

    /// How many call-log records were dropped because the emitter queue was full
    /// (always 0 with the simple processor).
    #[must_use]
    pub fn dropped_records(&self) -> u64 {
        self.emitter.as_ref().map_or(0, LogEmitter::dropped)
    }

    /// Hands every queued call-log record to the log provider, stops the emitter
    /// thread, then flushes and shuts down both providers.
    ///
    /// # Errors
    ///
    /// The first failure; both providers are shut down regardless.
    pub fn shutdown(mut self) -> Result<()> {
        self.close()
    }

    fn close(&mut self) -> Result<()> {
        // The emitter first: what it still holds goes to the log provider before that
        // shuts down. Then spans: their exporter may log, and logs are shut down last.
        let emitter = self.emitter.take().map(LogEmitter::shutdown);
        let traces = self.traces.take().map(|t| t.shutdown());
        let logs = self.logs.take().map(|l| l.shutdown());
        emitter.transpose()?;
        traces.transpose()?;
        logs.transpose()?;
        Ok(())
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn defaults_point_at_the_local_collector() {
        let s = OtlpSettings::resolve(None, None, None, &env_of(&[])).unwrap();
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.logs_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(s.traces_endpoint.as_deref(), Some("http://127.0.0.1:4317"));

        let env = env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]);
        let s = OtlpSettings::resolve(None, None, None, &env).unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            s.logs_endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/logs")
        );
        assert_eq!(
            s.traces_endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
    }

    #[test]
    fn environment_endpoints_are_left_to_the_exporter() {
        let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317")]);
        let s = OtlpSettings::resolve(None, None, None, &env).unwrap();
        assert_eq!((s.logs_endpoint, s.traces_endpoint), (None, None));

        let env = env_of(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4317")]);
        let s = OtlpSettings::resolve(None, None, None, &env).unwrap();
        assert_eq!(s.logs_endpoint, None);
        assert_eq!(s.traces_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    }

    #[test]
    fn builder_settings_win_over_the_environment() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        let s = OtlpSettings::resolve(
            Some(Protocol::HttpProtobuf),
            Some("http://cs:4318/"),
            None,
            &env,
        )
        .unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.logs_endpoint.as_deref(), Some("http://cs:4318/v1/logs"));
        assert_eq!(
            s.traces_endpoint.as_deref(),
            Some("http://cs:4318/v1/traces")
        );
    }

    #[test]
    fn unsupported_protocol_is_an_error() {
        let env = env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]);
        let err = OtlpSettings::resolve(None, None, None, &env).unwrap_err();
        assert!(matches!(err, Error::UnsupportedProtocol(p) if p == "http/json"));
    }

    #[test]
    fn filter_prefers_rust_log_and_rejects_garbage() {
        assert!(build_filter(Some("debug"), None).is_ok());
        assert!(build_filter(None, Some("warn,my_crate=trace".into())).is_ok());
        assert!(matches!(
            build_filter(Some("=="), None),
            Err(Error::Filter { .. })
        ));
    }

    #[test]
    fn otlp_outside_a_runtime_is_refused() {
        let err = CallscopeTracing::builder()
            .build_with(&env_of(&[]))
            .unwrap_err();
        assert!(matches!(err, Error::NoRuntime));
    }
}
