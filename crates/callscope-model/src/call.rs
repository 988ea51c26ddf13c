//! The call summary: one row per call, built from the call's lifecycle events
//! (the catalogue, `docs/events.md`, says which events carry them) and kept current as records arrive.

use serde::{Deserialize, Serialize};

use crate::{Level, Timestamp};

/// A call as `GET /v1/calls` and `GET /v1/calls/{call_id}` return it.
///
/// Each field comes from the lifecycle event that carries it; when several events
/// carry one, the earliest wins, so the summary does not depend on the order in which
/// records arrive. `status` is `in_progress` until a terminal event arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Call {
    /// The call.
    pub call_id: String,
    /// The voice agent that handled the call.
    pub agent_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// The caller's number.
    pub from: Option<String>,
    /// The called number.
    pub to: Option<String>,
    /// The campaign an outbound call belongs to.
    pub campaign_id: Option<String>,
    /// `in_progress`, `completed`, `failed`, `canceled`, or the terminal event's own
    /// `data.status` (e.g. `missed`).
    pub status: String,
    /// When the call connected (`CALL_STARTED`); for a call that never connected,
    /// when it was received or created; failing those, its first record.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub started_at: Timestamp,
    /// When the terminal event happened; null while the call is in progress.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub ended_at: Option<Timestamp>,
    /// The terminal event's `duration_ms`, or the time from `CALL_STARTED` to the
    /// terminal event when the event does not say.
    pub duration_ms: Option<i64>,
    /// Time spent ringing.
    pub ringing_duration_ms: Option<i64>,
    /// Time the voice agent was on the call.
    pub bot_duration_ms: Option<i64>,
    /// Billed time.
    pub billed_duration_ms: Option<i64>,
    /// Why the call ended, e.g. `customer_hangup`.
    pub hangup_reason: Option<String>,
    /// Who ended the call, e.g. `customer`.
    pub hangup_source: Option<String>,
    /// The recording (`RECORDING_STARTED`).
    pub recording_url: Option<String>,
    /// The call's trace id (32 hex digits).
    pub trace_id: Option<String>,
    /// Customer-visible records stored for the call.
    pub log_count: u64,
    /// Those records by level.
    pub level_counts: LevelCounts,
    /// Turns with a `TURN_LATENCY` event (one per turn number); null when none.
    pub turn_count: Option<u64>,
    /// The median of those turns' `end_to_end_ms` (nearest rank); null when none.
    pub latency_p50_ms: Option<i64>,
    /// Their 95th percentile (nearest rank); null when none.
    pub latency_p95_ms: Option<i64>,
    /// The slowest of them; null when none.
    pub latency_max_ms: Option<i64>,
    /// The sum of `USAGE_REPORTED` `llm_input_tokens`; null when none carries it.
    pub llm_input_tokens: Option<i64>,
    /// The sum of `USAGE_REPORTED` `llm_output_tokens`; null when none carries it.
    pub llm_output_tokens: Option<i64>,
    /// The sum of `USAGE_REPORTED` `tts_characters`; null when none carries it.
    pub tts_characters: Option<i64>,
    /// The sum of `USAGE_REPORTED` `stt_seconds`; null when none carries it.
    pub stt_seconds: Option<f64>,
}

/// Record counts per level; every level is present, zero included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub struct LevelCounts {
    /// `DEBUG` records.
    pub debug: u64,
    /// `INFO` records.
    pub info: u64,
    /// `WARNING` records.
    pub warning: u64,
    /// `ERROR` records.
    pub error: u64,
    /// `CRITICAL` records.
    pub critical: u64,
}

impl LevelCounts {
    /// The count for `level`.
    #[must_use]
    pub fn get(&self, level: Level) -> u64 {
        match level {
            Level::Debug => self.debug,
            Level::Info => self.info,
            Level::Warning => self.warning,
            Level::Error => self.error,
            Level::Critical => self.critical,
        }
    }

    /// Sets the count for `level`.
    pub fn set(&mut self, level: Level, n: u64) {
        let slot = match level {
            Level::Debug => &mut self.debug,
            Level::Info => &mut self.info,
            Level::Warning => &mut self.warning,
            Level::Error => &mut self.error,
            Level::Critical => &mut self.critical,
        };
        *slot = n;
    }

    /// The sum over every level.
    #[must_use]
    pub fn total(&self) -> u64 {
        Level::ALL.iter().map(|l| self.get(*l)).sum()
    }
}

/// The status of a call whose terminal event has not arrived.
pub const STATUS_IN_PROGRESS: &str = "in_progress";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_counts_serialise_every_level_by_its_contract_name() {
        let mut c = LevelCounts::default();
        c.set(Level::Error, 2);
        c.set(Level::Info, 5);
        assert_eq!(c.total(), 7);
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            serde_json::json!({"DEBUG": 0, "INFO": 5, "WARNING": 0, "ERROR": 2, "CRITICAL": 0})
        );
        for l in Level::ALL {
            assert_eq!(
                c.get(l),
                match l {
                    Level::Error => 2,
                    Level::Info => 5,
                    _ => 0,
                }
            );
        }
    }
}
