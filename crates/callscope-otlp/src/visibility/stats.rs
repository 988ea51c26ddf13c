//! What the filter counts: every record it drops or rejects and every key it withholds,
//! by reason, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use callscope_model::metrics::{MetricKind, MetricsSource, PromWriter};

/// Why a customer-visible record was rejected (not stored, reported to the sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// No `call.id` attribute, or an empty one.
    MissingCallId,
    /// `call.id` is not a string, or the record carries two different ones.
    InvalidCallId,
    /// `call.id` is longer than 128 bytes.
    CallIdTooLong,
    /// No `tenant.id` on the record or its resource, and no default tenant.
    MissingTenant,
    /// `tenant.id` is empty, not a string, or given twice with different values.
    InvalidTenant,
    /// Neither the `event_name` field nor an `event.name` attribute names the event.
    MissingEvent,
    /// `callscope.category` names no known category.
    UnknownCategory,
    /// No `callscope.category`, and the event is not in the catalogue.
    MissingCategory,
    /// A span whose trace id or span id is missing or all zero.
    InvalidSpanId,
}

impl RejectReason {
    /// Every reason, in the order error messages list them.
    pub const ALL: [RejectReason; 9] = [
        RejectReason::MissingCallId,
        RejectReason::InvalidCallId,
        RejectReason::CallIdTooLong,
        RejectReason::MissingTenant,
        RejectReason::InvalidTenant,
        RejectReason::MissingEvent,
        RejectReason::UnknownCategory,
        RejectReason::MissingCategory,
        RejectReason::InvalidSpanId,
    ];

    /// The `reason` label on `callscope_records_rejected_total`, e.g. `missing_call_id`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::MissingCallId => "missing_call_id",
            RejectReason::InvalidCallId => "invalid_call_id",
            RejectReason::CallIdTooLong => "call_id_too_long",
            RejectReason::MissingTenant => "missing_tenant",
            RejectReason::InvalidTenant => "invalid_tenant",
            RejectReason::MissingEvent => "missing_event",
            RejectReason::UnknownCategory => "unknown_category",
            RejectReason::MissingCategory => "missing_category",
            RejectReason::InvalidSpanId => "invalid_span_id",
        }
    }

    /// What the sender is told, e.g. `missing call.id`.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            RejectReason::MissingCallId => "missing call.id",
            RejectReason::InvalidCallId => "call.id not a single string",
            RejectReason::CallIdTooLong => "call.id longer than 128 bytes",
            RejectReason::MissingTenant => "missing tenant.id",
            RejectReason::InvalidTenant => "tenant.id not a single non-empty string",
            RejectReason::MissingEvent => "missing event name (event_name or event.name)",
            RejectReason::UnknownCategory => "unknown callscope.category",
            RejectReason::MissingCategory => {
                "no callscope.category for an event not in the catalogue"
            }
            RejectReason::InvalidSpanId => "missing or invalid trace or span id",
        }
    }
}

/// Why an attribute was kept out of a stored record's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StripReason {
    /// A resource attribute (never stored).
    Resource,
    /// An instrumentation-scope attribute (never stored).
    Scope,
    /// A reserved key (`call.id`, `tenant.id`, `agent.id`, `event.name`, `callscope.*`).
    Reserved,
    /// A key on the built-in or configured strip list.
    StripList,
    /// Not on the configured allow list.
    NotAllowed,
}

impl StripReason {
    /// Every reason.
    pub const ALL: [StripReason; 5] = [
        StripReason::Resource,
        StripReason::Scope,
        StripReason::Reserved,
        StripReason::StripList,
        StripReason::NotAllowed,
    ];

    /// The `reason` label on `callscope_attributes_stripped_total`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            StripReason::Resource => "resource",
            StripReason::Scope => "scope",
            StripReason::Reserved => "reserved",
            StripReason::StripList => "strip_list",
            StripReason::NotAllowed => "not_allowed",
        }
    }
}

/// Counts for one request, added to [`FilterStats`] once at the end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) received: u64,
    pub(crate) internal: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: [u64; RejectReason::ALL.len()],
    pub(crate) stripped: [u64; StripReason::ALL.len()],
    pub(crate) masked: u64,
}

impl Tally {
    pub(crate) fn strip(&mut self, reason: StripReason, n: usize) {
        self.stripped[reason as usize] += n as u64;
    }

    pub(crate) fn reject(&mut self, reason: RejectReason) {
        self.rejected[reason as usize] += 1;
    }

    pub(crate) fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// The filter's counters since start-up. Rendered on `/metrics` through
/// [`MetricsSource`]:
///
/// - `callscope_records_received_total`: log records the filter examined;
/// - `callscope_records_dropped_total{reason="internal"}`: records not meant for customers;
/// - `callscope_records_rejected_total{reason}`: customer records that could not be stored;
/// - `callscope_records_accepted_total`: records handed to storage;
/// - `callscope_attributes_stripped_total{reason}`: attributes withheld from stored
///   records (resource and scope attributes once per stored record they were withheld from);
/// - `callscope_values_masked_total`: string values a mask rule rewrote;
/// - `callscope_spans_received_total`, `callscope_spans_dropped_total{reason="internal"}`,
///   `callscope_spans_rejected_total{reason}`, `callscope_spans_accepted_total`: the same
///   for spans (their withheld attributes and masked values count in the two above).
#[derive(Debug, Default)]
pub struct FilterStats {
    received: AtomicU64,
    internal: AtomicU64,
    accepted: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
    stripped: [AtomicU64; StripReason::ALL.len()],
    masked: AtomicU64,
    spans: SpanCounts,
}

/// The span counters, apart from the attributes withheld and the values masked, which
/// count with the records'.
#[derive(Debug, Default)]
struct SpanCounts {
    received: AtomicU64,
    internal: AtomicU64,
    accepted: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl FilterStats {
    /// Adds one traces request's counts.
    pub(crate) fn add_spans(&self, t: &Tally) {
        let add = |c: &AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.spans.received, t.received);
        add(&self.spans.internal, t.internal);
        add(&self.spans.accepted, t.accepted);
        for (c, n) in self.spans.rejected.iter().zip(t.rejected) {
            add(c, n);
        }
        for (c, n) in self.stripped.iter().zip(t.stripped) {
            add(c, n);
        }
        add(&self.masked, t.masked);
    }

    /// Spans examined.
    #[must_use]
    pub fn spans_received(&self) -> u64 {
        self.spans.received.load(Ordering::Relaxed)
    }

    /// Spans dropped as internal.
    #[must_use]
    pub fn spans_dropped_internal(&self) -> u64 {
        self.spans.internal.load(Ordering::Relaxed)
    }

    /// Spans handed to storage.
    #[must_use]
    pub fn spans_accepted(&self) -> u64 {
        self.spans.accepted.load(Ordering::Relaxed)
    }

    /// Customer spans rejected for `reason`.
    #[must_use]
    pub fn spans_rejected(&self, reason: RejectReason) -> u64 {
        self.spans.rejected[reason as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, t: &Tally) {
        let add = |c: &AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.received, t.received);
        add(&self.internal, t.internal);
        add(&self.accepted, t.accepted);
        for (c, n) in self.rejected.iter().zip(t.rejected) {
            add(c, n);
        }
        for (c, n) in self.stripped.iter().zip(t.stripped) {
            add(c, n);
        }
        add(&self.masked, t.masked);
    }

    /// Log records examined.
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Records dropped as internal.
    #[must_use]
    pub fn dropped_internal(&self) -> u64 {
        self.internal.load(Ordering::Relaxed)
    }

    /// Records handed to storage.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Customer records rejected for `reason`.
    #[must_use]
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    /// Attributes withheld for `reason`.
    #[must_use]
    pub fn stripped(&self, reason: StripReason) -> u64 {
        self.stripped[reason as usize].load(Ordering::Relaxed)
    }

    /// String values rewritten by a mask rule.
    #[must_use]
    pub fn masked(&self) -> u64 {
        self.masked.load(Ordering::Relaxed)
    }
}

// Counter values stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
impl MetricsSource for FilterStats {
    fn render(&self, out: &mut PromWriter) {
        out.single(
            "callscope_records_received_total",
            MetricKind::Counter,
            "Log records examined by the visibility filter.",
            self.received() as f64,
        );
        let name = "callscope_records_dropped_total";
        out.family(
            name,
            MetricKind::Counter,
            "Log records not stored, by reason (internal: not customer-visible).",
        )
        .sample(
            name,
            &[("reason", "internal")],
            self.dropped_internal() as f64,
        );
        let name = "callscope_records_rejected_total";
        out.family(
            name,
            MetricKind::Counter,
            "Customer-visible log records refused, by reason.",
        );
        for r in RejectReason::ALL {
            out.sample(name, &[("reason", r.label())], self.rejected(r) as f64);
        }
        out.single(
            "callscope_records_accepted_total",
            MetricKind::Counter,
            "Customer-visible log records handed to storage.",
            self.accepted() as f64,
        );
        out.single(
            "callscope_spans_received_total",
            MetricKind::Counter,
            "Spans examined by the visibility filter.",
            self.spans_received() as f64,
        );
        let name = "callscope_spans_dropped_total";
        out.family(
            name,
            MetricKind::Counter,
            "Spans not stored, by reason (internal: not customer-visible).",
        )
        .sample(
            name,
            &[("reason", "internal")],
            self.spans_dropped_internal() as f64,
        );
        let name = "callscope_spans_rejected_total";
        out.family(
            name,
            MetricKind::Counter,
            "Customer-visible spans refused, by reason.",
        );
        for r in RejectReason::ALL {
            out.sample(
                name,
                &[("reason", r.label())],
                self.spans_rejected(r) as f64,
            );
        }
        out.single(
            "callscope_spans_accepted_total",
            MetricKind::Counter,
            "Customer-visible spans handed to storage.",
            self.spans_accepted() as f64,
        );
        let name = "callscope_attributes_stripped_total";
        out.family(
            name,
            MetricKind::Counter,
            "Attributes withheld from stored records, by reason.",
        );
        for r in StripReason::ALL {
            out.sample(name, &[("reason", r.label())], self.stripped(r) as f64);
        }
        out.single(
            "callscope_values_masked_total",
            MetricKind::Counter,
            "String values rewritten by a mask rule.",
            self.masked() as f64,
        );
    }
}
