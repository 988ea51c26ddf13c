//! Read queries over the call summaries: the filtered list, one call, and comments.

use callscope_model::{Call, Level, LevelCounts, Timestamp};
use duckdb::{Connection, OptionalExt as _, types::Value};
use uuid::Uuid;

use crate::{
    CallFilter, Result,
    query::{parse_id, push_in},
    summary::{Sources, call_key},
};

/// A page of the calls list, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPage {
    /// The calls on this page.
    pub calls: Vec<Call>,
    /// Calls matching the filters, on every page.
    pub total_count: u64,
}

fn count(row: &duckdb::Row<'_>, i: usize) -> duckdb::Result<u64> {
    Ok(u64::try_from(row.get::<_, i64>(i)?).unwrap_or(0))
}

pub(crate) fn read_call(row: &duckdb::Row<'_>) -> duckdb::Result<Call> {
    let mut level_counts = LevelCounts::default();
    for (i, level) in Level::ALL.into_iter().enumerate() {
        level_counts.set(level, count(row, 18 + i)?);
    }
    Ok(Call {
        call_id: row.get(0)?,
        agent_id: row.get(1)?,
        direction: row.get(2)?,
        from: row.get(3)?,
        to: row.get(4)?,
        campaign_id: row.get(5)?,
        status: row.get(6)?,
        started_at: Timestamp(row.get(7)?),
        ended_at: row.get::<_, Option<i64>>(8)?.map(Timestamp),
        duration_ms: row.get(9)?,
        ringing_duration_ms: row.get(10)?,
        bot_duration_ms: row.get(11)?,
        billed_duration_ms: row.get(12)?,
        hangup_reason: row.get(13)?,
        hangup_source: row.get(14)?,
        recording_url: row.get(15)?,
        trace_id: row.get(16)?,
        log_count: count(row, 17)?,
        level_counts,
        turn_count: None,
        latency_p50_ms: None,
        latency_p95_ms: None,
        latency_max_ms: None,
        llm_input_tokens: None,
        llm_output_tokens: None,
        tts_characters: None,
        stt_seconds: None,
    })
}

/// The `call_summary` columns a [`Call`] is read from, in [`read_call`]'s order, then
/// what its timeline fields are looked up by: the call's key and time window.
const CALL_COLUMNS_AND_WINDOW: &str = "call_id, agent_id, direction, from_number, to_number, \
     campaign_id, status, started_ts, ended_ts, duration_ms, ringing_duration_ms, \
     bot_duration_ms, billed_duration_ms, hangup_reason, hangup_source, recording_url, \
     trace_id, log_count, debug_count, info_count, warning_count, error_count, critical_count, \
     call_key, first_ts, last_ts";

/// A call, its key and its window, read from [`CALL_COLUMNS_AND_WINDOW`].
fn read_call_and_window(row: &duckdb::Row<'_>) -> duckdb::Result<(Call, String, i64, i64)> {
    Ok((read_call(row)?, row.get(23)?, row.get(24)?, row.get(25)?))
}

/// Fills in the timeline fields of `found` (calls with their keys and windows).
fn with_timeline(conn: &Connection, found: Vec<(Call, String, i64, i64)>) -> Result<Vec<Call>> {
    let lo = found.iter().map(|f| f.2).min().unwrap_or(0);
    let hi = found.iter().map(|f| f.3).max().unwrap_or(0);
    let keys: Vec<String> = found.iter().map(|f| f.1.clone()).collect();
    let mut aggregates = crate::timeline::aggregates(conn, &keys, (lo, hi))?;
    Ok(found
        .into_iter()
        .map(|(mut call, key, ..)| {
            if let Some(a) = aggregates.remove(&key) {
                a.apply(&mut call);
            }
            call
        })
        .collect())
}

/// The `WHERE` clause (and its parameters) for `tenant`'s calls matching `f`.
pub(crate) fn call_where(tenant: &str, f: &CallFilter) -> (String, Vec<Value>) {
    let mut sql = String::from("tenant = ?");
    let mut params = vec![Value::Text(tenant.to_owned())];
    let texts = |v: &[String]| v.iter().map(|s| Value::Text(s.clone())).collect::<Vec<_>>();
    push_in(
        &mut sql,
        &mut params,
        "status",
        texts(&f.statuses).into_iter(),
    );
    push_in(
        &mut sql,
        &mut params,
        "direction",
        texts(&f.directions).into_iter(),
    );
    push_in(
        &mut sql,
        &mut params,
        "agent_id",
        texts(&f.agent_ids).into_iter(),
    );
    push_in(
        &mut sql,
        &mut params,
        "campaign_id",
        texts(&f.campaign_ids).into_iter(),
    );
    push_in(
        &mut sql,
        &mut params,
        "hangup_reason",
        texts(&f.hangup_reasons).into_iter(),
    );
    push_in(
        &mut sql,
        &mut params,
        "hangup_source",
        texts(&f.hangup_sources).into_iter(),
    );
    let mut cmp = |clause: &str, v: Value| {
        sql.push_str(" AND ");
        sql.push_str(clause);
        params.push(v);
    };
    if let Some(d) = &f.from_number {
        cmp(
            &format!("contains({}, ?)", number_digits_sql("from_number")),
            Value::Text(d.clone()),
        );
    }
    if let Some(d) = &f.to_number {
        cmp(
            &format!("contains({}, ?)", number_digits_sql("to_number")),
            Value::Text(d.clone()),
        );
    }
    for (column, range) in [
        ("duration_ms", f.duration),
        ("ringing_duration_ms", f.ringing_duration),
        ("bot_duration_ms", f.bot_duration),
        ("billed_duration_ms", f.billed_duration),
    ] {
        if let Some(v) = range.min_ms {
            cmp(&format!("{column} >= ?"), Value::BigInt(v));
        }
        if let Some(v) = range.max_ms {
            cmp(&format!("{column} <= ?"), Value::BigInt(v));
        }
    }
    if let Some(t) = f.started_after {
        cmp("started_ts >= ?", Value::BigInt(t.as_nanos()));
    }
    if let Some(t) = f.started_before {
        cmp("started_ts < ?", Value::BigInt(t.as_nanos()));
    }
    if let Some(q) = &f.search {
        sql.push_str(" AND (starts_with(call_id, ?)");
        params.push(Value::Text(q.call_id_prefix.clone()));
        if let Some(d) = &q.number_digits {
            for column in ["from_number", "to_number"] {
                sql.push_str(&format!(" OR contains({}, ?)", number_digits_sql(column)));
                params.push(Value::Text(d.clone()));
            }
        }
        sql.push(')');
    }
    (sql, params)
}

/// A stored number's digits, in SQL: every character that is not an ASCII digit
/// dropped, so `+1 (415) 555-0100` reads `14155550100`. Number filters carry digits
/// only ([`callscope_query::number_digits`]), matched as a substring of this.
pub(crate) fn number_digits_sql(column: &str) -> String {
    format!("regexp_replace({column}, '[^0-9]', '', 'g')")
}

/// The newest-first order of the calls list (ties by call id, so pages are stable).
pub(crate) const CALL_ORDER: &str = "ORDER BY started_ts DESC, call_id DESC";

/// One page of `tenant`'s calls matching `filter`, newest first.
pub(crate) fn list_calls(
    conn: &Connection,
    tenant: &str,
    filter: &CallFilter,
    limit: u64,
    offset: u64,
) -> Result<CallPage> {
    let (w, params) = call_where(tenant, filter);
    // One snapshot for the journal check, the count and the page.
    let tx = conn.unchecked_transaction()?;
    let view = Sources::of(&tx)?.call_summary;
    let total: i64 = tx
        .prepare(&format!("SELECT count(*) FROM {view} WHERE {w}"))?
        .query_row(duckdb::params_from_iter(params.iter()), |r| r.get(0))?;
    let mut stmt = tx.prepare(&format!(
        "SELECT {CALL_COLUMNS_AND_WINDOW} FROM {view} WHERE {w} {CALL_ORDER} LIMIT {limit} OFFSET {offset}"
    ))?;
    let found = stmt
        .query_map(
            duckdb::params_from_iter(params.iter()),
            read_call_and_window,
        )?
        .collect::<duckdb::Result<Vec<_>>>()?;
    drop(stmt);
    let calls = with_timeline(&tx, found)?;
    tx.rollback()?;
    Ok(CallPage {
        calls,
        total_count: u64::try_from(total).unwrap_or(0),
    })
}

/// One call; `None` when `tenant` has no call `call_id`.
pub(crate) fn get_call(conn: &Connection, tenant: &str, call_id: &str) -> Result<Option<Call>> {
    let tx = conn.unchecked_transaction()?;
    let view = Sources::of(&tx)?.call_summary;
    let found = tx
        .prepare_cached(&format!(
            "SELECT {CALL_COLUMNS_AND_WINDOW} FROM {view} WHERE call_key = ?"
        ))?
        .query_row([call_key(tenant, call_id)], read_call_and_window)
        .optional()?;
    let call = with_timeline(&tx, found.into_iter().collect())?.pop();
    tx.rollback()?;
    Ok(call)
}

/// A note on a call by the customer's team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The comment's id.
    pub id: Uuid,
    /// The call it is about.
    pub call_id: String,
    /// Who wrote it.
    pub author: String,
    /// What it says.
    pub text: String,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// Does `tenant` have a call `call_id`? (Acknowledged records count, folded or not.)
pub(crate) fn call_exists(conn: &Connection, tenant: &str, call_id: &str) -> Result<bool> {
    Ok(crate::query::call_window(conn, tenant, call_id)?.is_some())
}

/// Stores a comment; `None` when `tenant` has no call `call_id`.
pub(crate) fn add_comment(
    conn: &Connection,
    tenant: &str,
    call_id: &str,
    author: &str,
    text: &str,
) -> Result<Option<Comment>> {
    if !call_exists(conn, tenant, call_id)? {
        return Ok(None);
    }
    let c = Comment {
        id: Uuid::new_v4(),
        call_id: call_id.to_owned(),
        author: author.to_owned(),
        text: text.to_owned(),
        created_at: Timestamp::now(),
    };
    conn.prepare_cached("INSERT INTO comments VALUES (?::UUID, ?, ?, ?, ?, ?)")?
        .execute(duckdb::params![
            c.id.to_string(),
            tenant,
            call_id,
            author,
            text,
            c.created_at.as_nanos()
        ])?;
    Ok(Some(c))
}

/// A call's comments, oldest first; `None` when `tenant` has no call `call_id`.
pub(crate) fn comments(
    conn: &Connection,
    tenant: &str,
    call_id: &str,
) -> Result<Option<Vec<Comment>>> {
    if !call_exists(conn, tenant, call_id)? {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT id::VARCHAR, call_id, author, body, created_at FROM comments \
         WHERE tenant = ? AND call_id = ? ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([tenant, call_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, call_id, author, text, created) = row?;
        out.push(Comment {
            id: parse_id(&id)?,
            call_id,
            author,
            text,
            created_at: Timestamp(created),
        });
    }
    Ok(Some(out))
}
