//! A call's timeline: `GET /v1/calls/{call_id}/spans` (its stored spans, for a
//! waterfall) and `GET /v1/calls/{call_id}/turns` (its turns with per-stage latency).

use axum::{Json, extract::State};
use callscope_model::{LatencySummary, SpanKind, SpanRecord, SpanStatus, Timestamp, Turn};
use serde::Serialize;

use crate::{ApiError, ApiState, auth::Tenant, params::CallId};

/// One stored span.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SpanBody {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The parent span (16 hex digits), null for a root span. The parent may be a span
    /// that is not customer-visible and so not in the list.
    pub parent_span_id: Option<String>,
    /// The span's name, e.g. `turn`, `stt`, `llm`, `tts`, `tool`.
    pub name: String,
    /// `unspecified`, `internal`, `server`, `client`, `producer` or `consumer`.
    pub kind: SpanKind,
    /// When it started (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    pub start_time: Timestamp,
    /// When it ended (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    pub end_time: Timestamp,
    /// `end_time - start_time` in milliseconds, to the microsecond.
    pub duration_ms: f64,
    /// `unset`, `ok` or `error`.
    pub status: SpanStatus,
    /// The status message, when the sender gave one.
    pub status_message: Option<String>,
    /// The span's own attributes, typed, without withheld keys (as a record's `data`).
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl From<SpanRecord> for SpanBody {
    fn from(s: SpanRecord) -> Self {
        Self {
            duration_ms: s.duration_ms(),
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            name: s.name,
            kind: s.kind,
            start_time: s.start_time,
            end_time: s.end_time,
            status: s.status,
            status_message: s.status_message,
            attributes: s.attributes,
        }
    }
}

/// A call's stored spans, by start time.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SpanListBody {
    /// The call.
    pub call_id: String,
    /// Its spans, by start time (ties by span id).
    pub data: Vec<SpanBody>,
}

/// The turns' summary.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TurnSummaryBody {
    /// Turns with a `TURN_LATENCY` event (the call's `turn_count`, 0 when none).
    pub turn_count: u64,
    /// Percentiles of their `end_to_end_ms` (the call's `latency_*_ms`).
    pub end_to_end_ms: LatencySummary,
}

/// A call's turns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TurnListBody {
    /// The call.
    pub call_id: String,
    /// Its turns, by turn number: every number a `TURN_LATENCY`, transcript event or
    /// `AGENT_INTERRUPTED` carries.
    pub data: Vec<Turn>,
    /// Over the turns with a `TURN_LATENCY`.
    pub summary: TurnSummaryBody,
}

/// A call's stored spans, by start time.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}/spans",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call")),
    responses(
        (status = 200, body = SpanListBody),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn call_spans(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
) -> Result<Json<SpanListBody>, ApiError> {
    let spans = state
        .store
        .call_spans(&tenant.0, &call_id)
        .await?
        .ok_or(ApiError::CallNotFound)?;
    Ok(Json(SpanListBody {
        call_id,
        data: spans.into_iter().map(Into::into).collect(),
    }))
}

/// A call's turns, with the latency of each stage.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}/turns",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call")),
    responses(
        (status = 200, body = TurnListBody),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn call_turns(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
) -> Result<Json<TurnListBody>, ApiError> {
    let t = state
        .store
        .call_turns(&tenant.0, &call_id)
        .await?
        .ok_or(ApiError::CallNotFound)?;
    Ok(Json(TurnListBody {
        call_id,
        data: t.turns,
        summary: TurnSummaryBody {
            turn_count: t.turn_count,
            end_to_end_ms: t.end_to_end_ms,
        },
    }))
}
