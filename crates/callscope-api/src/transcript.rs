//! `GET /v1/calls/{call_id}/transcript`: what the caller and the agent said, oldest
//! first.

use axum::{Json, extract::State};
use callscope_model::Timestamp;
use callscope_store::{Speaker, TranscriptLine};
use serde::Serialize;
use uuid::Uuid;

use crate::{ApiError, ApiState, auth::Tenant, params::CallId};

/// Who said a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The caller (`USER_MESSAGE_RECEIVED`).
    User,
    /// The voice agent (`GREETING_SENT`, `AGENT_MESSAGE_SENT`, `REMINDER_MESSAGE_SENT`).
    Agent,
}

/// One line of a call's transcript.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TranscriptLineBody {
    /// The log record it comes from.
    pub id: Uuid,
    /// When it was said (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: Timestamp,
    /// Who said it.
    pub role: Role,
    /// The event it comes from, e.g. `AGENT_MESSAGE_SENT`.
    pub event: String,
    /// What was said: the event's `data.text`.
    pub text: String,
    /// The conversation turn: the event's `data.turn` when it is an integer.
    pub turn: Option<i64>,
}

impl From<TranscriptLine> for TranscriptLineBody {
    fn from(l: TranscriptLine) -> Self {
        Self {
            id: l.id,
            timestamp: l.timestamp,
            role: match l.speaker {
                Speaker::User => Role::User,
                Speaker::Agent => Role::Agent,
            },
            event: l.event,
            text: l.text,
            turn: l.turn,
        }
    }
}

/// A call's transcript.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TranscriptBody {
    /// The call.
    pub call_id: String,
    /// Its lines, oldest first (ties by id).
    pub data: Vec<TranscriptLineBody>,
}

/// What the caller and the agent said on a call, oldest first.
///
/// Lines come from the call's `USER_MESSAGE_RECEIVED` (role `user`), `GREETING_SENT`,
/// `AGENT_MESSAGE_SENT` and `REMINDER_MESSAGE_SENT` (role `agent`) records: the text is
/// the record's `data.text` (a record without one has no line), the turn its
/// `data.turn` when that is an integer. Text is the customer's data as sent: show it as
/// text, never as markup.
#[utoipa::path(
    get,
    path = "/v1/calls/{call_id}/transcript",
    tag = "calls",
    params(("call_id" = String, Path, description = "The call")),
    responses(
        (status = 200, body = TranscriptBody),
        (status = 401, body = crate::error::ErrorBody, description = "UNAUTHORIZED"),
        (status = 404, body = crate::error::ErrorBody, description = "CALL_NOT_FOUND: no such call for this tenant (also when another tenant has it)"),
    ),
    security(("api_key" = []))
)]
pub(crate) async fn transcript(
    State(state): State<ApiState>,
    tenant: Tenant,
    CallId(call_id): CallId,
) -> Result<Json<TranscriptBody>, ApiError> {
    let lines = state
        .store
        .transcript(&tenant.0, &call_id)
        .await?
        .ok_or(ApiError::CallNotFound)?;
    Ok(Json(TranscriptBody {
        call_id,
        data: lines.into_iter().map(Into::into).collect(),
    }))
}
