//! The call-log layer: a [`tracing_subscriber::Layer`] that turns every tracing event into
//! an OpenTelemetry log record, stamped with the call it belongs to and the trace context
//! of the span it was emitted in, and that times the turns of a conversation.
//!
//! Call events (the [`call_event!`](crate::call_event) macro) become customer-visible
//! records; every other event becomes an internal record. The layer reads on the
//! emitting thread what only that thread can read (the span stack, the clock) and hands
//! it to [`crate::record`], which builds the record there or on the emitter thread
//! ([`crate::emitter`]).
//!
//! Turn spans ([`turn_span!`](crate::turn_span)) and stage spans
//! ([`stage_span!`](crate::stage_span)) are timed here: when a turn span closes, the
//! layer emits the turn's `TURN_LATENCY` from its stage spans, unless a `TURN_LATENCY`
//! was emitted inside the turn already.

use std::{
    cell::{Cell, RefCell},
    fmt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Instant, SystemTime},
};

use callscope_model::{Category, Level, events};
use opentelemetry::{Context, InstrumentationScope, logs::AnyValue, logs::LoggerProvider as _};
use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
use tracing::{Event, Subscriber, dispatcher::WeakDispatch, span};
use tracing_core::field::{Field, Visit};
use tracing_subscriber::{Layer, layer::Context as LayerContext, registry::LookupSpan};

use crate::{
    Result,
    emitter::{self, LogEmitter, Queue},
    record::{CallAttrs, Captured, Head, Pending, SpanIds, TURN_FIELD, Values},
};

pub use crate::record::EVENT_TARGET;
/// The target of every call span.
pub const CALL_SPAN_TARGET: &str = "callscope::call";
/// The name of every call span (also the name of its OpenTelemetry span).
pub const CALL_SPAN_NAME: &str = "call";
/// The target of every turn span ([`turn_span!`](crate::turn_span)).
pub const TURN_SPAN_TARGET: &str = "callscope::turn";
/// The name of every turn span.
pub const TURN_SPAN_NAME: &str = "turn";
/// The target of every stage span ([`stage_span!`](crate::stage_span)); its name is the
/// stage: `stt`, `llm`, `tts` or `tool`.
pub const STAGE_SPAN_TARGET: &str = "callscope::stage";

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
    turn: Option<Arc<TurnClock>>,
    stage: Option<Arc<StageClock>>,
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

/// A stage of a turn, named by its stage span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Stt,
    Llm,
    Tts,
    Tool,
}

impl Stage {
    fn of_name(name: &str) -> Option<Self> {
        match name {
            "stt" => Some(Stage::Stt),
            "llm" => Some(Stage::Llm),
            "tts" => Some(Stage::Tts),
            "tool" => Some(Stage::Tool),
            _ => None,
        }
    }
}

/// What a turn span's stage spans measured.
#[derive(Debug, Default)]
struct Stages {
    /// Per stage: the earliest-started span's start and its measure, in milliseconds.
    stt: Option<(Instant, i64)>,
    llm_ttft: Option<(Instant, i64)>,
    tts_ttfb: Option<(Instant, i64)>,
    /// Every tool span's duration, added up.
    tool_ms: Option<i64>,
}

/// A turn span's clock, shared with the spans under it.
#[derive(Debug)]
struct TurnClock {
    turn: Option<i64>,
    started: Instant,
    stages: Mutex<Stages>,
    /// A `TURN_LATENCY` was emitted inside the turn: the layer emits none.
    reported: AtomicBool,
}

/// A stage span's clock.
#[derive(Debug)]
struct StageClock {
    stage: Stage,
    started: Instant,
    /// When the stage produced its first output ([`first_output`]).
    first_output: OnceLock<Instant>,
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What the layer keeps in each span's extensions.
#[derive(Debug)]
struct SpanState {
    /// The nearest enclosing call span's identity (this span's own, for a call span).
    call: Option<Arc<CallAttrs>>,
    /// Filled on first entry, from the context the OpenTelemetry layer just attached.
    ids: OnceLock<SpanIds>,
    /// The nearest enclosing turn span's clock (this span's own, for a turn span).
    turn: Option<Arc<TurnClock>>,
    /// This span's clock, for a stage span.
    stage: Option<Arc<StageClock>>,
}

/// Reads a turn span's `turn` field.
#[derive(Default)]
struct TurnNumber(Option<i64>);

impl Visit for TurnNumber {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == TURN_FIELD {
            self.0 = Some(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == TURN_FIELD {
            self.0 = i64::try_from(value).ok();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == TURN_FIELD {
            self.0 = format!("{value:?}").parse().ok();
        }
    }
}

/// Records the identity of the call entered on this thread on `span`'s `call.id`,
/// `tenant.id` and `agent.id` fields (which the turn and stage macros declare empty), so
/// its OpenTelemetry span carries them. Does nothing outside a call.
#[doc(hidden)]
pub fn attach_call(span: &tracing::Span) {
    let call = ENTERED.with(|stack| {
        stack
            .borrow()
            .iter()
            .rev()
            .find(|e| !e.duplicate && e.call.is_some())
            .and_then(|e| e.call.clone())
    });
    let Some(call) = call else { return };
    for (key, value) in [
        (callscope_model::keys::CALL_ID, &call.call_id),
        (callscope_model::keys::TENANT_ID, &call.tenant_id),
        (callscope_model::keys::AGENT_ID, &call.agent_id),
    ] {
        if let Some(v) = value {
            span.record(key, v.as_str());
        }
    }
}

/// Marks the first output of the stage span entered on this thread: the LLM's first
/// token inside an `llm` stage, text-to-speech's first audio byte inside a `tts` stage.
/// The turn's `llm_ttft_ms` and `tts_ttfb_ms` are measured from the stage span's start to
/// this mark (to the span's end when it is never marked). Later marks are ignored.
pub fn first_output() {
    let now = Instant::now();
    ENTERED.with(|stack| {
        if let Some(stage) = stack
            .borrow()
            .iter()
            .rev()
            .find(|e| !e.duplicate && e.stage.is_some())
            .and_then(|e| e.stage.as_ref())
        {
            let _ = stage.first_output.set(now);
        }
    });
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

    /// Call, trace context and turn of an event given an explicit parent (or none, for a
    /// root).
    fn explicit_parent<S>(
        &self,
        event: &Event<'_>,
        ctx: &LayerContext<'_, S>,
    ) -> (
        Option<Arc<CallAttrs>>,
        Option<SpanIds>,
        Option<Arc<TurnClock>>,
    )
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.event_span(event) else {
            return (None, None, None);
        };
        let known = span
            .extensions()
            .get::<SpanState>()
            .map(|s| (s.call.clone(), s.ids.get().copied(), s.turn.clone()));
        match known {
            Some((call, Some(ids), turn)) => (call, Some(ids), turn),
            Some((call, None, turn)) => (call, self.ids_from_otel_layer(&span.id()), turn),
            None => (None, self.ids_from_otel_layer(&span.id()), None),
        }
    }

    /// Emits a record the layer makes itself, through the same sink as events.
    fn emit_own(&self, head: Head, fields: Vec<(&'static str, AnyValue)>) {
        match &self.sink {
            Sink::Direct(logger) => Captured { head, fields }.emit(logger),
            Sink::Deferred(queue) => queue.push(Captured { head, fields }),
        }
    }

    /// The `TURN_LATENCY` of a turn span that just closed, unless the agent reported one.
    fn close_turn(&self, clock: &TurnClock, call: Option<Arc<CallAttrs>>, ids: Option<SpanIds>) {
        if clock.reported.load(Ordering::Relaxed) {
            return;
        }
        let end_to_end = millis(clock.started.elapsed());
        let stages = std::mem::take(
            &mut *clock
                .stages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let spec = events::TURN_LATENCY;
        let mut fields: Vec<(&'static str, AnyValue)> = Vec::with_capacity(6);
        if let Some(turn) = clock.turn {
            fields.push((TURN_FIELD, AnyValue::Int(turn)));
        }
        for (name, value) in [
            ("stt_ms", stages.stt.map(|s| s.1)),
            ("llm_ttft_ms", stages.llm_ttft.map(|s| s.1)),
            ("tts_ttfb_ms", stages.tts_ttfb.map(|s| s.1)),
            ("tool_ms", stages.tool_ms),
            ("end_to_end_ms", Some(end_to_end)),
        ] {
            if let Some(v) = value {
                fields.push((name, AnyValue::Int(v)));
            }
        }
        let head = Head {
            target: EVENT_TARGET,
            name: spec.code,
            level: crate::record::tracing_level(spec.level),
            pending: Some(Pending {
                category: spec.category,
                level: spec.level,
            }),
            time: SystemTime::now(),
            call,
            ids,
            turn: clock.turn,
        };
        self.emit_own(head, fields);
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
        let (inherited_call, inherited_turn) = span.parent().map_or((None, None), |parent| {
            parent
                .extensions()
                .get::<SpanState>()
                .map_or((None, None), |s| (s.call.clone(), s.turn.clone()))
        });
        let call = if meta.target() == CALL_SPAN_TARGET && meta.name() == CALL_SPAN_NAME {
            let mut call = CallAttrs::default();
            attrs.record(&mut call);
            Some(Arc::new(call))
        } else {
            inherited_call
        };
        let mut stage = None;
        let turn = if meta.target() == TURN_SPAN_TARGET && meta.name() == TURN_SPAN_NAME {
            let mut number = TurnNumber::default();
            attrs.record(&mut number);
            Some(Arc::new(TurnClock {
                turn: number.0,
                started: Instant::now(),
                stages: Mutex::default(),
                reported: AtomicBool::new(false),
            }))
        } else {
            if meta.target() == STAGE_SPAN_TARGET {
                stage = Stage::of_name(meta.name()).map(|stage| {
                    Arc::new(StageClock {
                        stage,
                        started: Instant::now(),
                        first_output: OnceLock::new(),
                    })
                });
            }
            inherited_turn
        };
        span.extensions_mut().insert(SpanState {
            call,
            ids: OnceLock::new(),
            turn,
            stage,
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
        let turn = state.turn.clone();
        let stage = state.stage.clone();
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
                turn,
                stage,
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

    fn on_close(&self, id: span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let (stage, turn, call, ids) = {
            let ext = span.extensions();
            let Some(state) = ext.get::<SpanState>() else {
                return;
            };
            (
                state.stage.clone(),
                state.turn.clone(),
                state.call.clone(),
                state.ids.get().copied(),
            )
        };
        let Some(turn) = turn else { return };
        if let Some(stage) = stage {
            let now = Instant::now();
            let whole = millis(now.saturating_duration_since(stage.started));
            let to_first = stage.first_output.get().map_or(whole, |t| {
                millis(t.saturating_duration_since(stage.started))
            });
            let mut stages = turn
                .stages
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let earliest = |slot: &mut Option<(Instant, i64)>, value: i64| {
                if slot.is_none_or(|(at, _)| stage.started < at) {
                    *slot = Some((stage.started, value));
                }
            };
            match stage.stage {
                Stage::Stt => earliest(&mut stages.stt, whole),
                Stage::Llm => earliest(&mut stages.llm_ttft, to_first),
                Stage::Tts => earliest(&mut stages.tts_ttfb, to_first),
                Stage::Tool => stages.tool_ms = Some(stages.tool_ms.unwrap_or(0) + whole),
            }
            return;
        }
        let meta = span.metadata();
        if meta.target() == TURN_SPAN_TARGET && meta.name() == TURN_SPAN_NAME {
            let ids = ids.or_else(|| {
                drop(span);
                self.ids_from_otel_layer(&id)
            });
            self.close_turn(&turn, call, ids);
        }
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
        let (call, ids, turn) = if event.is_contextual() {
            // The innermost span this layer saw entered on this thread.
            ENTERED.with(|stack| {
                stack
                    .borrow()
                    .iter()
                    .rev()
                    .find(|e| e.layer == self.id && !e.duplicate)
                    .map_or((None, None, None), |e| {
                        (e.call.clone(), e.ids, e.turn.clone())
                    })
            })
        } else {
            self.explicit_parent(event, &ctx)
        };
        if let Some(turn) = &turn
            && meta.target() == EVENT_TARGET
            && meta.name() == events::TURN_LATENCY.code
        {
            turn.reported.store(true, Ordering::Relaxed);
        }
        let head = Head {
            target: meta.target(),
            name: meta.name(),
            level: *meta.level(),
            pending,
            time,
            call,
            ids,
            turn: turn.and_then(|t| t.turn),
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
