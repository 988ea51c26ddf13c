//! What agent services link to send callscope call logs: call spans, call events, and the
//! OpenTelemetry set-up that exports them over OTLP.
//!
//! # The model
//!
//! A **call span** ([`call_span!`]) says which call, tenant and agent the code inside it
//! works for. A **call event** ([`call_event!`]) is something the platform's customer
//! should see in the call log: it becomes an OpenTelemetry log record with
//! `callscope.visibility = "customer"`, its catalogue category and level, its fields as
//! typed attributes, the call's identity, and the trace and span ids of the span it was
//! emitted in. Every other tracing event (`tracing::info!` and friends) becomes an
//! **internal** record: exported with the same identity and trace context for the
//! platform's own stack, never marked customer-visible (it carries no
//! `callscope.visibility` attribute, which the collector reads as internal).
//!
//! Spans become OTLP traces through `tracing-opentelemetry`; records become OTLP logs
//! through [`CallLogLayer`].
//!
//! ```
//! use callscope_tracing::{CallscopeTracing, Processor, call_event, call_span};
//! use opentelemetry_sdk::logs::InMemoryLogExporter;
//! use opentelemetry_sdk::trace::InMemorySpanExporter;
//!
//! let logs = InMemoryLogExporter::default();
//! let telemetry = CallscopeTracing::builder()
//!     .service_name("voice-agent")
//!     .with_log_exporter(logs.clone())
//!     .with_span_exporter(InMemorySpanExporter::default())
//!     .processor(Processor::Simple)
//!     .build()?;
//!
//! tracing::dispatcher::with_default(telemetry.dispatch(), || {
//!     let call = call_span!(call_id = "c-42", tenant_id = "acme", agent_id = "support");
//!     let _in_call = call.enter();
//!     call_event!(AGENT_MESSAGE_SENT, text = "Hello! How can I help?");
//!     tracing::info!(model = "small", "Generated reply."); // internal
//! });
//!
//! let records = logs.get_emitted_logs()?;
//! assert_eq!(records.len(), 2);
//! assert_eq!(records[0].record.event_name(), Some("AGENT_MESSAGE_SENT"));
//! telemetry.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In a service, install it globally and keep the guard until exit:
//!
//! ```no_run
//! # async fn run() -> Result<(), callscope_tracing::Error> {
//! use callscope_tracing::{CallscopeTracing, Protocol};
//!
//! let _telemetry = CallscopeTracing::builder()
//!     .service_name("voice-agent")
//!     .protocol(Protocol::Grpc)
//!     .fmt_layer(true)
//!     .env_filter("info")
//!     .init()?;
//! # Ok(()) }
//! ```
//!
//! # Settings and the environment
//!
//! One rule: what the code sets wins, the standard environment variables fill in what it
//! leaves unset, and callscope's defaults come last.
//!
//! | setting | builder | environment | default |
//! |---|---|---|---|
//! | protocol | [`protocol`](CallscopeTracingBuilder::protocol) | `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, `http/protobuf`) | gRPC |
//! | endpoint | [`endpoint`](CallscopeTracingBuilder::endpoint) (a base URL) | `OTEL_EXPORTER_OTLP_{LOGS,TRACES}_ENDPOINT`, then `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://127.0.0.1:4317` (gRPC), `http://127.0.0.1:4318` (HTTP) |
//! | timeout | [`timeout`](CallscopeTracingBuilder::timeout) | `OTEL_EXPORTER_OTLP_TIMEOUT` and per signal | 10 s |
//! | headers, compression, TLS | — | `OTEL_EXPORTER_OTLP_HEADERS`, `..._COMPRESSION`, `..._INSECURE` and per signal | none |
//! | `service.name` | [`service_name`](CallscopeTracingBuilder::service_name) | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | `unknown_service` |
//! | log filter | [`env_filter`](CallscopeTracingBuilder::env_filter) is the default | `RUST_LOG` replaces it | `info` |
//!
//! The log filter is the one exception to the rule, as its name says: `RUST_LOG` is for
//! operators to turn up. Whatever it says, call spans and call events always pass: they
//! are product data, not debug output.
//!
//! OTLP export needs a Tokio runtime (build inside one); the exporter's transport crates
//! (`tonic`, `h2`, `hyper`, `reqwest`) are silenced by the default filter so that
//! exporting never logs about itself.
//!
//! # Where records are built
//!
//! With the batch processor (the default, and what agents run in production) the agent's
//! thread does as little as it can: it reads what only it can read (the event's
//! metadata, its call identity and trace context from the entered span, the clock) and
//! copies the event's fields into a compact owned form, then queues that without
//! blocking. A background thread named `callscope-log-emitter` builds the SDK log records
//! from the queue and hands them to the batch processor (every 100 ms, or sooner once a
//! quarter of the queue is used: agent threads do not wake it per event). The queue is
//! bounded ([`log_queue_capacity`](CallscopeTracingBuilder::log_queue_capacity), 2048 by
//! default): when it is full the record is dropped, counted
//! ([`TelemetryGuard::dropped_records`]) and reported once on stderr, so a stalled
//! pipeline never blocks a call. [`TelemetryGuard::force_flush`] first waits until every
//! record queued before it reached the processor, then flushes; dropping the guard (or
//! [`shutdown`](TelemetryGuard::shutdown)) does the same, stops the thread and shuts the
//! providers down, so nothing emitted before it is lost.
//!
//! With the simple processor the record is built and exported on the emitting thread,
//! as the processor's name promises: a test can read an in-memory exporter right after
//! emitting, without flushing. Either way the records are the same.
//!
//! [`CallLogLayer::new`] builds on the emitting thread; [`CallLogLayer::deferred`] gives
//! the background thread to subscribers composed by hand.
//!
//! # Turns and their latency
//!
//! A voice conversation is a sequence of turns, and what customers ask of a call is
//! where each turn's time went. Open each turn with [`turn_span!`] and each of its stages
//! with [`stage_span!`] (`stt`, `llm`, `tts`, `tool`); mark the LLM's first token and
//! text-to-speech's first byte with [`first_output`]. Both spans are customer-visible,
//! carry the call's identity, and are stored by the collector for the call's timeline;
//! plain `tracing` spans stay internal. Call events emitted inside a turn carry its
//! number, and when the turn span closes the layer emits the turn's `TURN_LATENCY`
//! (unless you emitted one inside the turn yourself):
//!
//! ```
//! use callscope_tracing::{
//!     CallscopeTracing, Processor, call_event, call_span, first_output, stage_span, turn_span,
//! };
//! use opentelemetry_sdk::logs::InMemoryLogExporter;
//! use opentelemetry_sdk::trace::InMemorySpanExporter;
//!
//! let logs = InMemoryLogExporter::default();
//! let telemetry = CallscopeTracing::builder()
//!     .with_log_exporter(logs.clone())
//!     .with_span_exporter(InMemorySpanExporter::default())
//!     .processor(Processor::Simple)
//!     .build()?;
//!
//! tracing::dispatcher::with_default(telemetry.dispatch(), || {
//!     let call = call_span!(call_id = "c-42", tenant_id = "acme");
//!     let _in_call = call.enter();
//!     let turn = turn_span!(turn = 1);
//!     let _in_turn = turn.enter();
//!     call_event!(USER_MESSAGE_RECEIVED, text = "Is my order shipped?");
//!     {
//!         let llm = stage_span!(llm, model = "small");
//!         let _in_llm = llm.enter();
//!         first_output(); // the first token
//!     }
//!     call_event!(AGENT_MESSAGE_SENT, text = "It ships today.");
//! }); // the turn span closes: TURN_LATENCY with llm_ttft_ms and end_to_end_ms
//!
//! let records = logs.get_emitted_logs()?;
//! assert_eq!(records.last().unwrap().record.event_name(), Some("TURN_LATENCY"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! In async code, `.instrument(turn)` a turn's future and `.instrument(stage)` a stage's,
//! as with the call span.
//!
//! # Internal fields on call events
//!
//! A call event field named `internal.*` (e.g. `internal.pod = "p1"`) never enters the
//! customer record. It travels in a companion record with the same event name, call
//! identity and trace context, marked `callscope.visibility = "internal"`, so the
//! platform's own stack still sees it. (The collector strips `internal.*` and other
//! infrastructure keys from customer records too; dropping them at the source means they
//! never leave the service in a customer-visible record at all.)
//!
//! # Composing your own subscriber
//!
//! [`CallLogLayer`] is an ordinary `Layer`. Put it after (outside) the
//! `tracing-opentelemetry` layer: it reads each span's trace context when the span is
//! entered, from the OpenTelemetry context that layer has just made current.

mod builder;
mod emitter;
mod error;
mod layer;
mod macros;
mod record;
mod runtime;

pub use builder::{
    CallscopeTracing, CallscopeTracingBuilder, DEFAULT_FILTER, DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT, Processor, Protocol, Telemetry, TelemetryGuard,
};
pub use emitter::{DEFAULT_LOG_QUEUE_CAPACITY, LogEmitter};
pub use error::{Error, Result};
pub use layer::{
    CALL_SPAN_NAME, CALL_SPAN_TARGET, CallLogLayer, EVENT_TARGET, STAGE_SPAN_TARGET,
    TURN_SPAN_NAME, TURN_SPAN_TARGET, first_output,
};
pub use record::severity_of;

/// What the macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::layer::{PendingGuard, attach_call};
    pub use crate::record::tracing_level;
    /// The stages [`stage_span!`](crate::stage_span) accepts.
    #[allow(non_upper_case_globals)]
    pub mod stage {
        /// Speech to text.
        pub const stt: &str = "stt";
        /// The language model (first token: [`crate::first_output`]).
        pub const llm: &str = "llm";
        /// Text to speech (first byte: [`crate::first_output`]).
        pub const tts: &str = "tts";
        /// A tool call.
        pub const tool: &str = "tool";
    }
    pub use callscope_model::{Level, events};
    pub use tracing;
}
