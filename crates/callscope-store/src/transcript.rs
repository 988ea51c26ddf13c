//! A call's conversation: what the caller and the agent said, read from the transcript
//! events' `data.text`, oldest first.

use callscope_model::{Timestamp, events};
use duckdb::{Connection, types::Value};
use uuid::Uuid;

use crate::{
    Error, Result,
    query::{call_window, parse_id},
};

/// Who said a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Speaker {
    /// The caller.
    User,
    /// The voice agent.
    Agent,
}

impl Speaker {
    /// `user` or `agent`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::User => "user",
            Speaker::Agent => "agent",
        }
    }
}

/// The events a transcript is made of, and who speaks in each.
pub const TRANSCRIPT_EVENTS: [(&str, Speaker); 4] = [
    (events::USER_MESSAGE_RECEIVED.code, Speaker::User),
    (events::GREETING_SENT.code, Speaker::Agent),
    (events::AGENT_MESSAGE_SENT.code, Speaker::Agent),
    (events::REMINDER_MESSAGE_SENT.code, Speaker::Agent),
];

/// One line of a call's transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    /// The record's id.
    pub id: Uuid,
    /// When it was said.
    pub timestamp: Timestamp,
    /// Who said it.
    pub speaker: Speaker,
    /// The event it comes from, e.g. `AGENT_MESSAGE_SENT`.
    pub event: String,
    /// What was said.
    pub text: String,
    /// The conversation turn, when the event's `data.turn` is an integer.
    pub turn: Option<i64>,
}

/// `tenant`'s call `call_id` as transcript lines, oldest first (ties by id); `None`
/// when the tenant has no such call. A transcript event without a `data.text` has no
/// line (a number or other scalar there is shown as written).
pub(crate) fn transcript(
    conn: &Connection,
    tenant: &str,
    call_id: &str,
) -> Result<Option<Vec<TranscriptLine>>> {
    let Some((first, last)) = call_window(conn, tenant, call_id)? else {
        return Ok(None);
    };
    let mut params = vec![
        Value::Text(tenant.to_owned()),
        Value::Text(call_id.to_owned()),
        Value::BigInt(first),
        Value::BigInt(last),
    ];
    params.extend(
        TRANSCRIPT_EVENTS
            .iter()
            .map(|(code, _)| Value::Text((*code).to_owned())),
    );
    let mut stmt = conn.prepare_cached(
        "SELECT id::VARCHAR, ts, event, data FROM logs \
         WHERE tenant = ? AND call_id = ? AND ts BETWEEN ? AND ? AND event IN (?, ?, ?, ?) \
         ORDER BY ts, id",
    )?;
    let rows = stmt.query_map(duckdb::params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
        ))
    })?;
    let mut lines = Vec::new();
    for row in rows {
        let (id, ts, event, data) = row?;
        let Some(speaker) = TRANSCRIPT_EVENTS
            .iter()
            .find(|(code, _)| *code == event)
            .map(|(_, s)| *s)
        else {
            continue;
        };
        let data: serde_json::Value = match data {
            Some(d) => serde_json::from_str(&d).map_err(|e| Error::Corrupt(e.to_string()))?,
            None => continue,
        };
        let text = match &data["text"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null
            | serde_json::Value::Array(_)
            | serde_json::Value::Object(_) => continue,
            scalar => scalar.to_string(),
        };
        lines.push(TranscriptLine {
            id: parse_id(&id)?,
            timestamp: Timestamp(ts),
            speaker,
            event,
            text,
            turn: data["turn"].as_i64(),
        });
    }
    Ok(Some(lines))
}
