//! The call-log layer: a [`tracing_subscriber::Layer`] that turns every tracing event into
//! an OpenTelemetry log record, stamped with the call it belongs to and the trace context
//! of the span it was emitted in.
//!
//! Call events (the [`call_event!`](crate::call_event) macro) become customer-visible
//! records; every other event becomes an internal record. The record is built either
//! right away or, for a deferred layer, from a [`Captured`] event on the emitter thread
//! ([`crate::emitter`]); both go through [`Head::emit`], so the records are the same.

use std::{
    cell::{Cell, RefCell},
    fmt,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use callscope_model::{Category, Level, Visibility, keys, lookup_event};
use opentelemetry::{
    Context, InstrumentationScope, Key, StringValue,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
    trace::{SpanId, TraceContextExt, TraceFlags, TraceId},
};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLogger, SdkLoggerProvider};
use tracing::{Event, Metadata, Subscriber, dispatcher::WeakDispatch, span};
use tracing_core::field::{Field, Visit};
use tracing_subscriber::{Layer, layer::Context as LayerContext, registry::LookupSpan};

use crate::{
    Result,
    emitter::{self, LogEmitter, Queue},
};

/// The target of every call event; the layer recognises call events by it, and the
/// builder's filter always lets it through.
pub const EVENT_TARGET: &str = "callscope::event";
/// The target of every call span.
pub const CALL_SPAN_TARGET: &str = "callscope::call";
/// The name of every call span (also the name of its OpenTelemetry span).
pub const CALL_SPAN_NAME: &str = "call";

/// Field of a hand-written call event naming its category (the macros pass it out of band).
const CATEGORY_FIELD: &str = keys::CATEGORY;
/// Field of a hand-written call event naming its level.
const LEVEL_FIELD: &str = "callscope.level";
/// Fields under this prefix never reach a customer-visible record.
const INTERNAL_PREFIX: &str = "internal.";
const MESSAGE_FIELD: &str = "message";

const CALL_ID: Key = Key::from_static_str(keys::CALL_ID);
const TENANT_ID: Key = Key::from_static_str(keys::TENANT_ID);
const AGENT_ID: Key = Key::from_static_str(keys::AGENT_ID);
const VISIBILITY: Key = Key::from_static_str(keys::VISIBILITY);
const CATEGORY: Key = Key::from_static_str(keys::CATEGORY);

thread_local! {
    /// The spans entered on this thread, as the layer saw them: the registry's span stack,
    /// mirrored so an event finds its call and trace context without a registry look-up.
    static ENTERED: RefCell<Vec<Entered>> = const { RefCell::new(Vec::new()) };
    /// Category and level of the call event being dispatched on this thread. The macros
    /// set it just before the event and restore it right after, so the layer learns the
    /// catalogue entry without a look-up or an extra field.
    static PENDING: Cell<Option<Pending>> = const { Cell::new(None) };
}

/// One entry of [`ENTERED`].
struct Entered {
    /// Which layer pushed it (several subscribers may be nested on one thread).
    layer: usize,
    id: span::Id,
    /// Entered again while already on the stack: not the current span (as in the registry).
    duplicate: bool,
    call: Option<Arc<CallAttrs>>,
    ids: Option<SpanIds>,
}

/// What a call event's macro tells the layer out of band.
#[derive(Debug, Clone, Copy)]
struct Pending {
    category: Category,
    level: Level,
}

/// Holds a call event's category and level for the duration of one dispatch; restores
/// the previous value on drop, so events emitted while a field is evaluated nest cleanly.
#[doc(hidden)]
#[derive(Debug)]
pub struct PendingGuard {
    prev: Option<Pending>,
}

impl PendingGuard {
    /// Announces the next call event's category and level on this thread.
    #[doc(hidden)]
    #[inline]
    #[must_use]
    pub fn set(category: Category, level: Level) -> Self {
        let prev = PENDING.with(|p| p.replace(Some(Pending { category, level })));
        Self { prev }
    }
}

impl Drop for PendingGuard {
    #[inline]
    fn drop(&mut self) {
        PENDING.with(|p| p.set(self.prev));
    }
}

/// The OpenTelemetry severity of a callscope level (its canonical number).
#[must_use]
pub fn severity_of(level: Level) -> Severity {
    match level {
        Level::Debug => Severity::Debug,
        Level::Info => Severity::Info,
        Level::Warning => Severity::Warn,
        Level::Error => Severity::Error,
        Level::Critical => Severity::Fatal,
    }
}

/// The tracing level a call event of `level` is emitted at (tracing has no CRITICAL, so
/// it is emitted at ERROR and the record still says FATAL/CRITICAL).
#[doc(hidden)]
#[must_use]
pub const fn tracing_level(level: Level) -> tracing::Level {
    match level {
        Level::Debug => tracing::Level::DEBUG,
        Level::Info => tracing::Level::INFO,
        Level::Warning => tracing::Level::WARN,
        Level::Error | Level::Critical => tracing::Level::ERROR,
    }
}

/// Severity of a plain tracing event, as the OpenTelemetry log bridge maps it.
fn severity_of_tracing(level: &tracing::Level) -> Severity {
    match *level {
        tracing::Level::TRACE => Severity::Trace,
        tracing::Level::DEBUG => Severity::Debug,
        tracing::Level::INFO => Severity::Info,
        tracing::Level::WARN => Severity::Warn,
        tracing::Level::ERROR => Severity::Error,
    }
}

/// The identity of a call, captured once when its call span is created and shared by
/// every span under it.
#[derive(Debug, Clone, Default)]
struct CallAttrs {
    call_id: Option<StringValue>,
    tenant_id: Option<StringValue>,
    agent_id: Option<StringValue>,
}

impl CallAttrs {
    fn add_to(&self, record: &mut SdkLogRecord) {
        for (key, value) in [
            (&CALL_ID, &self.call_id),
            (&TENANT_ID, &self.tenant_id),
            (&AGENT_ID, &self.agent_id),
        ] {
            if let Some(v) = value {
                record.add_attribute(key.clone(), AnyValue::String(v.clone()));
            }
        }
    }
}

impl Visit for CallAttrs {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Shared (`Arc<str>`) so that copying the value into each record is a refcount bump.
        let value = Some(StringValue::from(Arc::<str>::from(value)));
        match field.name() {
            keys::CALL_ID => self.call_id = value,
            keys::TENANT_ID => self.tenant_id = value,
            keys::AGENT_ID => self.agent_id = value,
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if matches!(
            field.name(),
            keys::CALL_ID | keys::TENANT_ID | keys::AGENT_ID
        ) {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

/// The trace context of a span's OpenTelemetry span.
#[derive(Debug, Clone, Copy)]
struct SpanIds {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

impl SpanIds {
    fn of_context(cx: &Context) -> Option<Self> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| SpanIds {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            flags: sc.trace_flags(),
        })
    }
}

/// What the layer keeps in each span's extensions.
#[derive(Debug)]
struct SpanState {
    /// The nearest enclosing call span's identity (this span's own, for a call span).
    call: Option<Arc<CallAttrs>>,
    /// Filled on first entry, from the context the OpenTelemetry layer just attached.
    ids: OnceLock<SpanIds>,
}

/// The call-log layer. Add it to a registry *after* (outside) the
/// `tracing-opentelemetry` layer, so that when a span is entered its OpenTelemetry
/// context is already current:
///
/// ```
/// use callscope_tracing::CallLogLayer;
/// use opentelemetry::trace::TracerProvider as _;
/// use opentelemetry_sdk::{logs::SdkLoggerProvider, trace::SdkTracerProvider};
/// use tracing_subscriber::prelude::*;
///
/// let logs = SdkLoggerProvider::builder().build();
/// let traces = SdkTracerProvider::builder().build();
/// let subscriber = tracing_subscriber::registry()
///     .with(tracing_opentelemetry::layer().with_tracer(traces.tracer("callscope")))
///     .with(CallLogLayer::new(&logs));
/// # drop(subscriber);
/// ```
///
/// [`new`](Self::new) builds and emits each SDK record on the thread that emitted the
/// event; [`deferred`](Self::deferred) captures the event there and leaves building and
/// emitting to a background thread (see the [crate docs](crate#where-records-are-built)).
/// The [`CallscopeTracing`](crate::CallscopeTracing) builder assembles this for you.
pub struct CallLogLayer {
    sink: Sink,
    id: usize,
    dispatch: OnceLock<WeakDispatch>,
}

/// Where `on_event` sends what it read.
enum Sink {
    /// Build and emit the record on the emitting thread.
    Direct(SdkLogger),
    /// Queue the captured event for the emitter thread.
    Deferred(Queue),
}

impl fmt::Debug for CallLogLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deferred = matches!(self.sink, Sink::Deferred(_));
        f.debug_struct("CallLogLayer")
            .field("deferred", &deferred)
            .finish_non_exhaustive()
    }
}

impl CallLogLayer {
    /// A layer emitting through a logger of `provider`, with the instrumentation scope
    /// `callscope-tracing`, on the thread that emitted each event.
    #[must_use]
    pub fn new(provider: &SdkLoggerProvider) -> Self {
        Self::with_sink(Sink::Direct(logger_of(provider)))
    }

    /// A layer that only captures each event on the emitting thread and queues it (at
    /// most `capacity` at a time) for a background thread named `callscope-log-emitter`,
    /// which builds the records and emits them through a logger of `provider`.
    ///
    /// When the queue is full the event is dropped and counted
    /// ([`LogEmitter::dropped`]). Keep the returned [`LogEmitter`]: call
    /// [`drain`](LogEmitter::drain) before flushing `provider`, and shut it down (or
    /// drop it) before shutting `provider` down, so that no queued record is lost.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`](crate::Error::Spawn) when the thread cannot be started.
    pub fn deferred(provider: &SdkLoggerProvider, capacity: usize) -> Result<(Self, LogEmitter)> {
        let (queue, emitter) = emitter::spawn(logger_of(provider), capacity)?;
        Ok((Self::with_sink(Sink::Deferred(queue)), emitter))
    }

    fn with_sink(sink: Sink) -> Self {
        static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
        Self {
            sink,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            dispatch: OnceLock::new(),
        }
    }

    /// The trace context of `id`'s OpenTelemetry span, asked of the
    /// `tracing-opentelemetry` layer directly. Used only for spans never entered (an
    /// event with an explicit parent); callers must not hold the span's extensions.
    fn ids_from_otel_layer(&self, id: &span::Id) -> Option<SpanIds> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        SpanIds::of_context(&cx)
    }

    /// Call and trace context of an event given an explicit parent (or none, for a root).
    fn explicit_parent<S>(
        &self,
        event: &Event<'_>,
        ctx: &LayerContext<'_, S>,
    ) -> (Option<Arc<CallAttrs>>, Option<SpanIds>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.event_span(event) else {
            return (None, None);
        };
        let known = span
            .extensions()
            .get::<SpanState>()
            .map(|s| (s.call.clone(), s.ids.get().copied()));
        match known {
            Some((call, Some(ids))) => (call, Some(ids)),
            Some((call, None)) => (call, self.ids_from_otel_layer(&span.id())),
            None => (None, self.ids_from_otel_layer(&span.id())),
        }
    }
}

/// The logger every call-log layer emits through.
fn logger_of(provider: &SdkLoggerProvider) -> SdkLogger {
    let scope = InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    provider.logger_with_scope(scope)
}

impl<S> Layer<S> for CallLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let meta = attrs.metadata();
        let call = if meta.target() == CALL_SPAN_TARGET && meta.name() == CALL_SPAN_NAME {
            let mut call = CallAttrs::default();
            attrs.record(&mut call);
            Some(Arc::new(call))
        } else {
            span.parent().and_then(|parent| {
                parent
                    .extensions()
                    .get::<SpanState>()
                    .and_then(|s| s.call.clone())
            })
        };
        span.extensions_mut().insert(SpanState {
            call,
            ids: OnceLock::new(),
        });
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let meta = span.metadata();
        if meta.target() != CALL_SPAN_TARGET || meta.name() != CALL_SPAN_NAME {
            return;
        }
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            let mut call = state.call.as_deref().cloned().unwrap_or_default();
            values.record(&mut call);
            state.call = Some(Arc::new(call));
        }
    }

    fn on_enter(&self, id: &span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let ext = span.extensions();
        let Some(state) = ext.get::<SpanState>() else {
            return;
        };
        let ids = match state.ids.get() {
            Some(ids) => Some(*ids),
            None => {
                let ids = Context::map_current(SpanIds::of_context);
                if let Some(ids) = ids {
                    let _ = state.ids.set(ids);
                }
                ids
            }
        };
        let call = state.call.clone();
        drop(ext);
        ENTERED.with(|stack| {
            let mut stack = stack.borrow_mut();
            let duplicate = stack.iter().any(|e| e.layer == self.id && e.id == *id);
            stack.push(Entered {
                layer: self.id,
                id: id.clone(),
                duplicate,
                call,
                ids,
            });
        });
    }

    fn on_exit(&self, id: &span::Id, _ctx: LayerContext<'_, S>) {
        let popped = ENTERED.with(|stack| {
            let mut stack = stack.borrow_mut();
            let at = stack
                .iter()
                .rposition(|e| e.layer == self.id && e.id == *id)?;
            Some(stack.remove(at))
        });
        // Dropped outside the borrow: releasing the call's strings runs no tracing code,
        // but keep the borrow short anyway.
        drop(popped);
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        if Context::is_current_telemetry_suppressed() {
            return;
        }
        let meta = event.metadata();
        let pending = if meta.target() == EVENT_TARGET {
            PENDING.with(Cell::take)
        } else {
            None
        };
        let time = SystemTime::now();
        let (call, ids) = if event.is_contextual() {
            // The innermost span this layer saw entered on this thread.
            ENTERED.with(|stack| {
                stack
                    .borrow()
                    .iter()
                    .rev()
                    .find(|e| e.layer == self.id && !e.duplicate)
                    .map_or((None, None), |e| (e.call.clone(), e.ids))
            })
        } else {
            self.explicit_parent(event, &ctx)
        };
        let head = Head {
            meta,
            pending,
            time,
            call,
            ids,
        };
        match &self.sink {
            Sink::Direct(logger) => head.emit(logger, |visitor| {
                event.record(&mut Values(|name, value| visitor.put(name, value)));
            }),
            Sink::Deferred(queue) => {
                let mut head = head;
                if head.ids.is_none() {
                    // What the SDK would fill in on this thread: a span made current
                    // through the OpenTelemetry API rather than a tracing span.
                    head.ids = Context::map_current(SpanIds::of_context);
                }
                let mut fields = Vec::with_capacity(meta.fields().len());
                event.record(&mut Values(|name, value| fields.push((name, value))));
                queue.push(Captured { head, fields });
            }
        }
    }
}

/// Everything a record is built from apart from the event's fields: what `on_event`
/// reads on the emitting thread (thread-locals, the span stack, the clock).
struct Head {
    meta: &'static Metadata<'static>,
    /// The macro's category and level, for a call event emitted by `call_event!`.
    pending: Option<Pending>,
    time: SystemTime,
    call: Option<Arc<CallAttrs>>,
    ids: Option<SpanIds>,
}

/// An event captured on the emitting thread for the emitter thread: its head and its
/// fields, owned.
pub(crate) struct Captured {
    head: Head,
    fields: Vec<(&'static str, AnyValue)>,
}

impl Captured {
    /// Builds the event's record(s) and emits them through `logger`.
    pub(crate) fn emit(self, logger: &SdkLogger) {
        let Self { head, fields } = self;
        head.emit(logger, |visitor| {
            for (name, value) in fields {
                visitor.put(name, value);
            }
        });
    }
}

impl Head {
    /// Builds the event's record (and, for a call event with `internal.*` fields, its
    /// companion internal record) and emits it. `record_fields` feeds the event's fields
    /// to the visitor.
    fn emit(self, logger: &SdkLogger, record_fields: impl FnOnce(&mut FieldVisitor<'_>)) {
        let Self {
            meta,
            pending,
            time,
            call,
            ids,
        } = self;
        let mut record = logger.create_log_record();
        record.set_timestamp(time);
        record.set_observed_timestamp(time);
        if let Some(call) = &call {
            call.add_to(&mut record);
        }
        if let Some(ids) = ids {
            record.set_trace_context(ids.trace_id, ids.span_id, Some(ids.flags));
        }

        if meta.target() != EVENT_TARGET {
            record.set_target(meta.target());
            let name = meta.name();
            // Names tracing generates ("event src/x.rs:12") are no event names.
            if !name.starts_with("event ") {
                record.set_event_name(name);
            }
            record.set_severity_number(severity_of_tracing(meta.level()));
            record.set_severity_text(meta.level().as_str());
            record_fields(&mut FieldVisitor::internal(&mut record));
            logger.emit(record);
            return;
        }

        let mut visitor = FieldVisitor::customer(&mut record);
        record_fields(&mut visitor);
        let FieldVisitor {
            internal,
            category,
            level,
            ..
        } = visitor;
        let spec = if pending.is_none() {
            lookup_event(meta.name())
        } else {
            None
        };
        let category = pending
            .map(|p| p.category)
            .or(category)
            .or(spec.map(|s| s.category));
        let level = pending
            .map(|p| p.level)
            .or(level)
            .or(spec.map(|s| s.level))
            .unwrap_or(Level::Info);

        let severity = severity_of(level);
        record.set_event_name(meta.name());
        record.set_severity_number(severity);
        record.set_severity_text(level.severity_text());
        record.add_attribute(VISIBILITY, Visibility::Customer.as_str());
        if let Some(category) = category {
            record.add_attribute(CATEGORY, category.as_str());
        }
        logger.emit(record);

        // `internal.*` fields travel in a companion internal record, so the platform's
        // own stack still sees them next to the customer event.
        if let Some(internal) = internal {
            let mut companion = logger.create_log_record();
            companion.set_timestamp(time);
            companion.set_observed_timestamp(time);
            if let Some(ids) = ids {
                companion.set_trace_context(ids.trace_id, ids.span_id, Some(ids.flags));
            }
            if let Some(call) = &call {
                call.add_to(&mut companion);
            }
            companion.set_event_name(meta.name());
            companion.set_severity_number(severity);
            companion.set_severity_text(level.severity_text());
            companion.add_attribute(VISIBILITY, Visibility::Internal.as_str());
            companion.add_attributes(internal);
            logger.emit(companion);
        }
    }
}

/// Puts an event's fields into a log record as typed attributes; `message` becomes the
/// body. On a call event it holds back `internal.*` fields and reads the
/// `callscope.category` / `callscope.level` of hand-written call events.
struct FieldVisitor<'a> {
    record: &'a mut SdkLogRecord,
    customer: bool,
    internal: Option<Vec<(Key, AnyValue)>>,
    category: Option<Category>,
    level: Option<Level>,
}

impl<'a> FieldVisitor<'a> {
    fn internal(record: &'a mut SdkLogRecord) -> Self {
        Self {
            record,
            customer: false,
            internal: None,
            category: None,
            level: None,
        }
    }

    fn customer(record: &'a mut SdkLogRecord) -> Self {
        Self {
            customer: true,
            ..Self::internal(record)
        }
    }

    #[inline]
    fn put(&mut self, name: &'static str, value: AnyValue) {
        if name == MESSAGE_FIELD {
            self.record.set_body(value);
        } else if self.customer && name.starts_with(INTERNAL_PREFIX) {
            self.internal
                .get_or_insert_with(|| Vec::with_capacity(2))
                .push((Key::from_static_str(name), value));
        } else if self.customer && name.starts_with(keys::RESERVED_PREFIX) {
            // The layer sets callscope.* itself; a hand-written value is read, not copied.
            if let AnyValue::String(s) = &value {
                if name == CATEGORY_FIELD {
                    self.category = s.as_str().parse().ok();
                } else if name == LEVEL_FIELD {
                    self.level = s.as_str().parse().ok();
                }
            }
        } else {
            self.record.add_attribute(Key::from_static_str(name), value);
        }
    }
}

/// Turns an event's field values into OpenTelemetry values (integers, floats and
/// booleans stay typed; everything else becomes a string) and hands each to the closure.
struct Values<F>(F);

impl<F: FnMut(&'static str, AnyValue)> Values<F> {
    #[inline]
    fn put(&mut self, field: &Field, value: AnyValue) {
        (self.0)(field.name(), value);
    }
}

impl<F: FnMut(&'static str, AnyValue)> Visit for Values<F> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, AnyValue::Double(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, AnyValue::Int(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), AnyValue::Int);
        self.put(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), AnyValue::Int);
        self.put(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = i64::try_from(value).map_or_else(|_| value.to_string().into(), AnyValue::Int);
        self.put(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, AnyValue::Boolean(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, AnyValue::String(value.to_owned().into()));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.put(field, AnyValue::Bytes(Box::new(value.to_vec())));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, AnyValue::String(value.to_string().into()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, AnyValue::String(format!("{value:?}").into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_match_the_model() {
        for level in Level::ALL {
            assert_eq!(severity_of(level) as i32, level.severity_number());
            assert_eq!(severity_of(level).name(), level.severity_text());
        }
    }
}
