//! Stored spans and the turns of a call: the call's timeline as the customer API
//! returns it (`/v1/calls/{call_id}/spans` and `/v1/calls/{call_id}/turns`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Timestamp;

/// What kind of operation a span describes (OTLP `SpanKind`), by its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// The sender did not say.
    Unspecified,
    /// An operation inside the service.
    Internal,
    /// The server side of a request.
    Server,
    /// The client side of a request.
    Client,
    /// A message sent for later processing.
    Producer,
    /// A message received for processing.
    Consumer,
}

impl SpanKind {
    /// The kind of an OTLP `SpanKind` number; unknown numbers are `Unspecified`.
    #[must_use]
    pub fn from_otlp(n: i32) -> Self {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The OTLP number (also the stored code).
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            SpanKind::Unspecified => 0,
            SpanKind::Internal => 1,
            SpanKind::Server => 2,
            SpanKind::Client => 3,
            SpanKind::Producer => 4,
            SpanKind::Consumer => 5,
        }
    }

    /// The kind stored as `code`.
    #[must_use]
    pub fn from_code(code: u8) -> Self {
        Self::from_otlp(i32::from(code))
    }
}

/// A span's outcome (OTLP `Status.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SpanStatus {
    /// Not set by the sender.
    Unset,
    /// Explicitly successful.
    Ok,
    /// Failed.
    Error,
}

impl SpanStatus {
    /// The status of an OTLP `Status.code`; unknown numbers are `Unset`.
    #[must_use]
    pub fn from_otlp(n: i32) -> Self {
        match n {
            1 => SpanStatus::Ok,
            2 => SpanStatus::Error,
            _ => SpanStatus::Unset,
        }
    }

    /// The OTLP number (also the stored code).
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            SpanStatus::Unset => 0,
            SpanStatus::Ok => 1,
            SpanStatus::Error => 2,
        }
    }

    /// The status stored as `code`.
    #[must_use]
    pub fn from_code(code: u8) -> Self {
        Self::from_otlp(i32::from(code))
    }
}

/// One customer-visible span, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// Derived from the tenant, trace id and span id: a span sent twice is stored once.
    pub id: Uuid,
    /// The call the span belongs to.
    pub call_id: String,
    /// The voice agent, when the span names one.
    pub agent_id: Option<String>,
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The parent span, 16 lowercase hex digits; `None` for a root span.
    pub parent_span_id: Option<String>,
    /// The span's name, e.g. `llm`.
    pub name: String,
    /// Its kind.
    pub kind: SpanKind,
    /// When it started.
    pub start_time: Timestamp,
    /// When it ended.
    pub end_time: Timestamp,
    /// Its outcome.
    pub status: SpanStatus,
    /// The status message, when the sender gave one.
    pub status_message: Option<String>,
    /// The span's own attributes, typed, minus withheld keys (as a record's `data`).
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl SpanRecord {
    /// `end_time - start_time` in milliseconds, to the microsecond; 0 when the span ends
    /// before it starts.
    #[must_use]
    pub fn duration_ms(&self) -> f64 {
        let ns = (self.end_time.0 - self.start_time.0).max(0);
        // Microseconds fit f64 exactly for any span shorter than 285 years.
        #[allow(clippy::cast_precision_loss)]
        let us = (ns / 1_000) as f64;
        us / 1_000.0
    }
}

/// A span together with the tenant that owns it: what the collector hands the store.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSpan {
    /// The tenant (customer organisation).
    pub tenant: String,
    /// The span.
    pub span: SpanRecord,
}

/// One turn of a conversation, joined from the events that carry its number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Turn {
    /// The turn number (the events' `data.turn`).
    pub turn: i64,
    /// The time of the turn's earliest event.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Timestamp,
    /// What the caller said (`USER_MESSAGE_RECEIVED` texts, oldest first, joined by a
    /// space).
    pub user_text: Option<String>,
    /// What the agent said (`GREETING_SENT`, `AGENT_MESSAGE_SENT`,
    /// `REMINDER_MESSAGE_SENT` texts, oldest first, joined by a space).
    pub agent_text: Option<String>,
    /// Speech-to-text time (`TURN_LATENCY`).
    pub stt_ms: Option<i64>,
    /// Time to the LLM's first token (`TURN_LATENCY`).
    pub llm_ttft_ms: Option<i64>,
    /// Time to text-to-speech's first byte (`TURN_LATENCY`).
    pub tts_ttfb_ms: Option<i64>,
    /// The whole turn (`TURN_LATENCY`).
    pub end_to_end_ms: Option<i64>,
    /// An `AGENT_INTERRUPTED` carries this turn.
    pub interrupted: bool,
}

/// Percentiles of the turns' end-to-end latency; each null when no turn has one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencySummary {
    /// The median (nearest rank).
    pub p50: Option<i64>,
    /// The 95th percentile (nearest rank).
    pub p95: Option<i64>,
    /// The slowest turn.
    pub max: Option<i64>,
}

impl LatencySummary {
    /// The nearest-rank percentiles of `values` (any order).
    #[must_use]
    pub fn of(values: &[i64]) -> Self {
        let mut v = values.to_vec();
        v.sort_unstable();
        Self {
            p50: nearest_rank(&v, 50),
            p95: nearest_rank(&v, 95),
            max: v.last().copied(),
        }
    }
}

/// The nearest-rank `p`-th percentile of `sorted`: the smallest value at or below which
/// at least `p` % of the values lie.
#[must_use]
pub fn nearest_rank(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (n * p as usize).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 50), None);
        assert_eq!(nearest_rank(&[7], 95), Some(7));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 50), Some(50));
        assert_eq!(nearest_rank(&v, 95), Some(95));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50), Some(2));
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 95), Some(4));
        let s = LatencySummary::of(&[40, 10, 30, 20]);
        assert_eq!((s.p50, s.p95, s.max), (Some(20), Some(40), Some(40)));
    }

    #[test]
    fn kinds_and_statuses_round_trip_their_codes() {
        for n in 0..6 {
            assert_eq!(i32::from(SpanKind::from_otlp(n).code()), n);
        }
        assert_eq!(SpanKind::from_otlp(9), SpanKind::Unspecified);
        for n in 0..3 {
            assert_eq!(i32::from(SpanStatus::from_otlp(n).code()), n);
        }
        assert_eq!(
            serde_json::to_value(SpanStatus::Error).unwrap(),
            serde_json::json!("error")
        );
        assert_eq!(
            serde_json::to_value(SpanKind::Client).unwrap(),
            serde_json::json!("client")
        );
    }
}
