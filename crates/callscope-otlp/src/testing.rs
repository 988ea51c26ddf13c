//! Fake OTLP log and trace requests for tests and benches (feature `testing`).
//!
//! ```
//! use callscope_otlp::testing::{LogBuilder, ResourceBuilder, map, request};
//!
//! let req = request([ResourceBuilder::new()
//!     .attr("host.name", "node-7")
//!     .logs([
//!         LogBuilder::customer("AGENT_MESSAGE_SENT").call("c1").tenant("acme").attr("text", "hi"),
//!         LogBuilder::internal("CACHE_MISS").attr("details", map([("key", 42)])),
//!     ])
//!     .build()]);
//! assert_eq!(req.resource_logs[0].scope_logs[0].log_records.len(), 2);
//! ```

use callscope_model::{Visibility, events, keys};
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceRequest, trace::v1::ExportTraceServiceRequest},
    common::v1::{AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span},
};

/// The time fixture records carry unless told otherwise: 2025-11-21T10:00:00Z.
pub const T0: u64 = 1_763_719_200_000_000_000;

/// Anything that can be an OTLP attribute value.
pub trait IntoAnyValue {
    /// The OTLP value.
    fn into_any_value(self) -> AnyValue;
}

fn any(v: any_value::Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

impl IntoAnyValue for AnyValue {
    fn into_any_value(self) -> AnyValue {
        self
    }
}
impl IntoAnyValue for &str {
    fn into_any_value(self) -> AnyValue {
        any(any_value::Value::StringValue(self.to_owned()))
    }
}
impl IntoAnyValue for String {
    fn into_any_value(self) -> AnyValue {
        any(any_value::Value::StringValue(self))
    }
}
impl IntoAnyValue for i64 {
    fn into_any_value(self) -> AnyValue {
        any(any_value::Value::IntValue(self))
    }
}
impl IntoAnyValue for i32 {
    fn into_any_value(self) -> AnyValue {
        any(any_value::Value::IntValue(self.into()))
    }
}
impl IntoAnyValue for f64 {
    fn into_any_value(self) -> AnyValue {
        any(any_value::Value::DoubleValue(self))
    }
}
impl IntoAnyValue for bool {
    fn into_any_value(self) -> AnyValue {
        any(any_value::Value::BoolValue(self))
    }
}

/// A bytes value.
#[must_use]
pub fn bytes(b: &[u8]) -> AnyValue {
    any(any_value::Value::BytesValue(b.to_vec()))
}

/// An array value.
pub fn array<V: IntoAnyValue>(values: impl IntoIterator<Item = V>) -> AnyValue {
    any(any_value::Value::ArrayValue(ArrayValue {
        values: values
            .into_iter()
            .map(IntoAnyValue::into_any_value)
            .collect(),
    }))
}

/// A map (`kvlist`) value.
pub fn map<K: Into<String>, V: IntoAnyValue>(
    entries: impl IntoIterator<Item = (K, V)>,
) -> AnyValue {
    any(any_value::Value::KvlistValue(KeyValueList {
        values: entries.into_iter().map(|(k, v)| kv(k, v)).collect(),
    }))
}

/// A value with nothing in it (an `AnyValue` whose `value` is unset).
#[must_use]
pub fn empty() -> AnyValue {
    AnyValue { value: None }
}

/// One attribute.
pub fn kv(key: impl Into<String>, value: impl IntoAnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value.into_any_value()),
        ..KeyValue::default()
    }
}

/// Builds one OTLP log record.
#[derive(Debug, Clone, Default)]
pub struct LogBuilder {
    record: LogRecord,
}

impl LogBuilder {
    /// A record with nothing set.
    #[must_use]
    pub fn bare() -> Self {
        Self::default()
    }

    /// A customer-visible event: `event_name` = `event`, `callscope.visibility` =
    /// `customer`, both times [`T0`]. Add `.call(…)` and `.tenant(…)` to make it storable.
    #[must_use]
    pub fn customer(event: &str) -> Self {
        Self::internal(event).attr(keys::VISIBILITY, Visibility::Customer.as_str())
    }

    /// An event without `callscope.visibility` (internal), both times [`T0`].
    #[must_use]
    pub fn internal(event: &str) -> Self {
        let mut b = Self::bare().time(T0).observed(T0);
        b.record.event_name = event.to_owned();
        b
    }

    /// Sets `call.id`.
    #[must_use]
    pub fn call(self, id: &str) -> Self {
        self.attr(keys::CALL_ID, id)
    }

    /// Sets `tenant.id` on the record.
    #[must_use]
    pub fn tenant(self, tenant: &str) -> Self {
        self.attr(keys::TENANT_ID, tenant)
    }

    /// Sets `agent.id`.
    #[must_use]
    pub fn agent(self, agent: &str) -> Self {
        self.attr(keys::AGENT_ID, agent)
    }

    /// Sets `callscope.category`.
    #[must_use]
    pub fn category(self, category: &str) -> Self {
        self.attr(keys::CATEGORY, category)
    }

    /// Replaces every `callscope.visibility` with `value`.
    #[must_use]
    pub fn visibility(self, value: impl IntoAnyValue) -> Self {
        self.without(keys::VISIBILITY).attr(keys::VISIBILITY, value)
    }

    /// Sets the `event_name` field (`""` clears it).
    #[must_use]
    pub fn event_name(mut self, event: &str) -> Self {
        event.clone_into(&mut self.record.event_name);
        self
    }

    /// Appends an attribute (duplicates are kept, as on the wire).
    #[must_use]
    pub fn attr(mut self, key: impl Into<String>, value: impl IntoAnyValue) -> Self {
        self.record.attributes.push(kv(key, value));
        self
    }

    /// Appends attributes.
    #[must_use]
    pub fn attrs(mut self, attrs: impl IntoIterator<Item = KeyValue>) -> Self {
        self.record.attributes.extend(attrs);
        self
    }

    /// Removes every attribute named `key`.
    #[must_use]
    pub fn without(mut self, key: &str) -> Self {
        self.record.attributes.retain(|kv| kv.key != key);
        self
    }

    /// Sets the body.
    #[must_use]
    pub fn body(mut self, body: impl IntoAnyValue) -> Self {
        self.record.body = Some(body.into_any_value());
        self
    }

    /// Sets `severity_number`.
    #[must_use]
    pub fn severity(mut self, n: i32) -> Self {
        self.record.severity_number = n;
        self
    }

    /// Sets `severity_text`.
    #[must_use]
    pub fn severity_text(mut self, text: &str) -> Self {
        text.clone_into(&mut self.record.severity_text);
        self
    }

    /// Sets `time_unix_nano`.
    #[must_use]
    pub fn time(mut self, nanos: u64) -> Self {
        self.record.time_unix_nano = nanos;
        self
    }

    /// Sets `observed_time_unix_nano`.
    #[must_use]
    pub fn observed(mut self, nanos: u64) -> Self {
        self.record.observed_time_unix_nano = nanos;
        self
    }

    /// Sets the trace and span ids (any length, to test invalid ones).
    #[must_use]
    pub fn trace(mut self, trace_id: &[u8], span_id: &[u8]) -> Self {
        self.record.trace_id = trace_id.to_vec();
        self.record.span_id = span_id.to_vec();
        self
    }

    /// The record.
    #[must_use]
    pub fn build(self) -> LogRecord {
        self.record
    }

    /// A request holding just this record, with an empty resource and scope.
    #[must_use]
    pub fn into_request(self) -> ExportLogsServiceRequest {
        request([ResourceBuilder::new().logs([self]).build()])
    }
}

impl From<LogBuilder> for LogRecord {
    fn from(b: LogBuilder) -> Self {
        b.build()
    }
}

/// Builds one instrumentation scope and its records.
#[derive(Debug, Clone, Default)]
pub struct ScopeBuilder {
    scope: ScopeLogs,
}

impl ScopeBuilder {
    /// A scope named `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        let mut s = Self::default();
        s.scope.scope = Some(InstrumentationScope {
            name: name.to_owned(),
            ..InstrumentationScope::default()
        });
        s
    }

    /// Adds a scope attribute.
    #[must_use]
    pub fn attr(mut self, key: impl Into<String>, value: impl IntoAnyValue) -> Self {
        if let Some(scope) = self.scope.scope.as_mut() {
            scope.attributes.push(kv(key, value));
        }
        self
    }

    /// Adds records.
    #[must_use]
    pub fn logs(mut self, records: impl IntoIterator<Item = impl Into<LogRecord>>) -> Self {
        self.scope
            .log_records
            .extend(records.into_iter().map(Into::into));
        self
    }

    /// The scope.
    #[must_use]
    pub fn build(self) -> ScopeLogs {
        self.scope
    }
}

/// Builds one resource and its scopes.
#[derive(Debug, Clone, Default)]
pub struct ResourceBuilder {
    resource: Resource,
    scopes: Vec<ScopeLogs>,
}

impl ResourceBuilder {
    /// A resource without attributes.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a resource attribute.
    #[must_use]
    pub fn attr(mut self, key: impl Into<String>, value: impl IntoAnyValue) -> Self {
        self.resource.attributes.push(kv(key, value));
        self
    }

    /// Sets `tenant.id` on the resource.
    #[must_use]
    pub fn tenant(self, tenant: &str) -> Self {
        self.attr(keys::TENANT_ID, tenant)
    }

    /// Adds a scope.
    #[must_use]
    pub fn scope(mut self, scope: ScopeBuilder) -> Self {
        self.scopes.push(scope.build());
        self
    }

    /// Adds records in a scope of their own named `test`.
    #[must_use]
    pub fn logs(self, records: impl IntoIterator<Item = impl Into<LogRecord>>) -> Self {
        self.scope(ScopeBuilder::new("test").logs(records))
    }

    /// The resource with its scopes.
    #[must_use]
    pub fn build(self) -> ResourceLogs {
        ResourceLogs {
            resource: Some(self.resource),
            scope_logs: self.scopes,
            schema_url: String::new(),
        }
    }
}

/// A request of `resources`.
pub fn request(resources: impl IntoIterator<Item = ResourceLogs>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: resources.into_iter().collect(),
    }
}

/// A realistic request: `calls` calls of tenant `acme` with `per_call` records each, as an
/// agent service sends them. Every record has about ten attributes (call, tenant, agent,
/// visibility, a few data fields, and infrastructure keys the filter strips), a string
/// body, trace context and a distinct time; every fifth record is internal. The resource
/// carries the usual `service.*`/`host.*` attributes.
#[must_use]
pub fn realistic_request(calls: usize, per_call: usize) -> ExportLogsServiceRequest {
    const EVENTS: [&str; 5] = [
        events::USER_MESSAGE_RECEIVED.code,
        events::AGENT_MESSAGE_SENT.code,
        events::TURN_LATENCY.code,
        events::INTEGRATION_TOOL_COMPLETED.code,
        events::WEBHOOK_SENT.code,
    ];
    let mut records = Vec::with_capacity(calls * per_call);
    for c in 0..calls {
        let call = format!("6f1c2a8e-0000-4000-8000-{c:012x}");
        for i in 0..per_call {
            let n = (c * per_call + i) as u64;
            let event = EVENTS[i % EVENTS.len()];
            let b = if i % 5 == 4 {
                LogBuilder::internal("LLM_REQUEST_SENT")
            } else {
                LogBuilder::customer(event)
            };
            let mut trace = [0u8; 16];
            trace[..8].copy_from_slice(&(c as u64 + 1).to_be_bytes());
            let mut span = [0u8; 8];
            span.copy_from_slice(&(n + 1).to_be_bytes());
            records.push(
                b.call(&call)
                    .tenant("acme")
                    .agent("agent-42")
                    .time(T0 + n * 1_000_000)
                    .observed(T0 + n * 1_000_000 + 500)
                    .severity(9)
                    .severity_text("INFO")
                    .trace(&trace, &span)
                    .body(format!("turn {i}: the caller asked about their order"))
                    .attr("text", "I'd like to check my order status, please.")
                    .attr("confidence", 0.93)
                    .attr("turn", i as i64)
                    .attr("latency_ms", 412)
                    .attr("code.function", "voice_agent::turn::handle")
                    .attr("thread.id", 7)
                    .attr("internal.prompt_version", "v17"),
            );
        }
    }
    request([ResourceBuilder::new()
        .attr("service.name", "voice-agent")
        .attr("service.version", "2.4.1")
        .attr("host.name", "agent-node-7")
        .attr("k8s.pod.name", "voice-agent-7d9f")
        .attr("deployment.environment", "production")
        .scope(ScopeBuilder::new("voice_agent").logs(records))
        .build()])
}

/// Builds one OTLP span.
#[derive(Debug, Clone, Default)]
pub struct SpanBuilder {
    span: Span,
}

impl SpanBuilder {
    /// A span named `name` of trace `[1; 16]`, span id `[n; 8]` (`n` from 1), from `T0`
    /// for one millisecond, with no attributes.
    #[must_use]
    pub fn bare(name: &str, n: u8) -> Self {
        Self {
            span: Span {
                trace_id: vec![1; 16],
                span_id: vec![n.max(1); 8],
                name: name.to_owned(),
                kind: 1,
                start_time_unix_nano: T0,
                end_time_unix_nano: T0 + 1_000_000,
                ..Span::default()
            },
        }
    }

    /// [`SpanBuilder::bare`] marked `callscope.visibility = "customer"`.
    #[must_use]
    pub fn customer(name: &str, n: u8) -> Self {
        Self::bare(name, n).attr(keys::VISIBILITY, "customer")
    }

    /// Sets `call.id`.
    #[must_use]
    pub fn call(self, id: &str) -> Self {
        self.attr(keys::CALL_ID, id)
    }

    /// Sets `tenant.id`.
    #[must_use]
    pub fn tenant(self, tenant: &str) -> Self {
        self.attr(keys::TENANT_ID, tenant)
    }

    /// Adds an attribute.
    #[must_use]
    pub fn attr(mut self, key: impl Into<String>, value: impl IntoAnyValue) -> Self {
        self.span.attributes.push(kv(key, value));
        self
    }

    /// Sets the trace id.
    #[must_use]
    pub fn trace(mut self, trace_id: &[u8]) -> Self {
        self.span.trace_id = trace_id.to_vec();
        self
    }

    /// Sets the parent span id.
    #[must_use]
    pub fn parent(mut self, n: u8) -> Self {
        self.span.parent_span_id = vec![n; 8];
        self
    }

    /// Sets the start and end, in nanoseconds since the epoch.
    #[must_use]
    pub fn time(mut self, start: u64, end: u64) -> Self {
        self.span.start_time_unix_nano = start;
        self.span.end_time_unix_nano = end;
        self
    }

    /// Sets the status code (0 unset, 1 ok, 2 error) and message.
    #[must_use]
    pub fn status(mut self, code: i32, message: &str) -> Self {
        self.span.status = Some(Status {
            code,
            message: message.to_owned(),
        });
        self
    }

    /// Adds a span event (never stored) with one attribute.
    #[must_use]
    pub fn event(mut self, name: &str, key: &str, value: impl IntoAnyValue) -> Self {
        self.span.events.push(span::Event {
            time_unix_nano: self.span.start_time_unix_nano,
            name: name.to_owned(),
            attributes: vec![kv(key, value)],
            dropped_attributes_count: 0,
        });
        self
    }

    /// The span.
    #[must_use]
    pub fn build(self) -> Span {
        self.span
    }
}

impl From<SpanBuilder> for Span {
    fn from(b: SpanBuilder) -> Self {
        b.build()
    }
}

/// A traces request of `spans` under one resource with `resource_attrs` and a scope
/// with one attribute.
pub fn trace_request<'a>(
    resource_attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
    spans: impl IntoIterator<Item = impl Into<Span>>,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource_attrs.into_iter().map(|(k, v)| kv(k, v)).collect(),
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "test".to_owned(),
                    attributes: vec![kv("scope.attr", "x")],
                    ..InstrumentationScope::default()
                }),
                spans: spans.into_iter().map(Into::into).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
