//! Building OpenTelemetry log records: from a captured tracing event (its [`Head`] and
//! its fields), or from a record the layer makes itself (a turn's `TURN_LATENCY`).
//!
//! The layer ([`crate::layer`]) reads what only the emitting thread can read and hands
//! it here, either at once or through the emitter thread ([`crate::emitter`]); both
//! paths end in [`Head::emit`], so the records are the same.

use std::{fmt, sync::Arc, time::SystemTime};

use callscope_model::{Category, Level, Visibility, keys, lookup_event};
use opentelemetry::{
    Context, Key, StringValue,
    logs::{AnyValue, LogRecord as _, Logger as _, Severity},
    trace::{SpanId, TraceContextExt, TraceFlags, TraceId},
};
use opentelemetry_sdk::logs::{SdkLogRecord, SdkLogger};
use tracing_core::field::{Field, Visit};

/// The target of every call event; the layer recognises call events by it, and the
/// builder's filter always lets it through. (Defined here, where records are built, so
/// that this module needs nothing of the layer's.)
pub const EVENT_TARGET: &str = "callscope::event";

/// Field of a hand-written call event naming its category (the macros pass it out of band).
const CATEGORY_FIELD: &str = keys::CATEGORY;
/// Field of a hand-written call event naming its level.
const LEVEL_FIELD: &str = "callscope.level";
/// Fields under this prefix never reach a customer-visible record.
const INTERNAL_PREFIX: &str = "internal.";
const MESSAGE_FIELD: &str = "message";
/// The turn number call events inside a turn span carry.
pub(crate) const TURN_FIELD: &str = "turn";

const CALL_ID: Key = Key::from_static_str(keys::CALL_ID);
const TENANT_ID: Key = Key::from_static_str(keys::TENANT_ID);
const AGENT_ID: Key = Key::from_static_str(keys::AGENT_ID);
const VISIBILITY: Key = Key::from_static_str(keys::VISIBILITY);
const CATEGORY: Key = Key::from_static_str(keys::CATEGORY);
const TURN: Key = Key::from_static_str(TURN_FIELD);

/// What a call event's macro tells the layer out of band.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) category: Category,
    pub(crate) level: Level,
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
pub(crate) fn severity_of_tracing(level: &tracing::Level) -> Severity {
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
pub(crate) struct CallAttrs {
    pub(crate) call_id: Option<StringValue>,
    pub(crate) tenant_id: Option<StringValue>,
    pub(crate) agent_id: Option<StringValue>,
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
pub(crate) struct SpanIds {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
}

impl SpanIds {
    pub(crate) fn of_context(cx: &Context) -> Option<Self> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| SpanIds {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            flags: sc.trace_flags(),
        })
    }
}

/// Everything a record is built from apart from the event's fields: what `on_event`
/// reads on the emitting thread (thread-locals, the span stack, the clock).
pub(crate) struct Head {
    /// The event's target: [`EVENT_TARGET`] for call events.
    pub(crate) target: &'static str,
    /// The event's name: the event code, for a call event.
    pub(crate) name: &'static str,
    pub(crate) level: tracing::Level,
    /// The macro's category and level, for a call event emitted by `call_event!`.
    pub(crate) pending: Option<Pending>,
    pub(crate) time: SystemTime,
    pub(crate) call: Option<Arc<CallAttrs>>,
    pub(crate) ids: Option<SpanIds>,
    /// The turn the event was emitted in; a call event without a `turn` field gets it.
    pub(crate) turn: Option<i64>,
}

/// An event captured on the emitting thread for the emitter thread: its head and its
/// fields, owned.
pub(crate) struct Captured {
    pub(crate) head: Head,
    pub(crate) fields: Vec<(&'static str, AnyValue)>,
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
    pub(crate) fn emit(
        self,
        logger: &SdkLogger,
        record_fields: impl FnOnce(&mut FieldVisitor<'_>),
    ) {
        let Self {
            target,
            name,
            level: tracing_level,
            pending,
            time,
            call,
            ids,
            turn,
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

        if target != EVENT_TARGET {
            record.set_target(target);
            // Names tracing generates ("event src/x.rs:12") are no event names.
            if !name.starts_with("event ") {
                record.set_event_name(name);
            }
            record.set_severity_number(severity_of_tracing(&tracing_level));
            record.set_severity_text(tracing_level.as_str());
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
            saw_turn,
            ..
        } = visitor;
        if let Some(turn) = turn
            && !saw_turn
        {
            record.add_attribute(TURN, turn);
        }
        let spec = if pending.is_none() {
            lookup_event(name)
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
        record.set_event_name(name);
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
            companion.set_event_name(name);
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
pub(crate) struct FieldVisitor<'a> {
    record: &'a mut SdkLogRecord,
    customer: bool,
    internal: Option<Vec<(Key, AnyValue)>>,
    category: Option<Category>,
    level: Option<Level>,
    saw_turn: bool,
}

impl<'a> FieldVisitor<'a> {
    fn internal(record: &'a mut SdkLogRecord) -> Self {
        Self {
            record,
            customer: false,
            internal: None,
            category: None,
            level: None,
            saw_turn: false,
        }
    }

    fn customer(record: &'a mut SdkLogRecord) -> Self {
        Self {
            customer: true,
            ..Self::internal(record)
        }
    }

    #[inline]
    pub(crate) fn put(&mut self, name: &'static str, value: AnyValue) {
        self.saw_turn |= name == TURN_FIELD;
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
pub(crate) struct Values<F>(pub(crate) F);

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
