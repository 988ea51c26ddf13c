//! A call's timeline: its stored spans, and the turn facts its `TURN_LATENCY` and
//! `USAGE_REPORTED` records carry.
//!
//! # Tables
//!
//! `spans` holds one row per customer-visible span. Its id is derived from the tenant,
//! trace id and span id, and the writer drops ids already stored, so a retried export
//! stores each span once. A span also widens its call's window in `calls` (through the
//! same journal as records, with no record counted), so a call known only from its spans
//! exists for the API.
//!
//! `call_metrics` holds one row per stored `TURN_LATENCY` or `USAGE_REPORTED` record,
//! keyed by the record's id and written in the same transaction as the record, by the
//! same duplicate check: a record stored once has one row.
//!
//! # Aggregates
//!
//! The call fields `turn_count`, `latency_p50_ms`, `latency_p95_ms`, `latency_max_ms`,
//! `llm_input_tokens`, `llm_output_tokens`, `tts_characters` and `stt_seconds` are
//! computed when a call is read, from its `call_metrics` rows: percentiles cannot be
//! summed the way the journal sums counts, and a table of a few facts per turn answers
//! them quickly. The calls list computes them for the calls of the page only.
//! Every fold is order-free, so arrival order, splits and retries don't change them:
//! - each turn number counts once, with the `TURN_LATENCY` of the earliest record (ties:
//!   the smaller record id) carrying it; a `TURN_LATENCY` without a whole-number `turn`
//!   joins no turn;
//! - the percentiles are nearest-rank over those turns' `end_to_end_ms`;
//! - the usage fields are sums over the records that carry them (`stt_seconds` is
//!   summed in whole microseconds, so the sum is exact in any order).
//!
//! `/turns` joins the same `TURN_LATENCY` choice with the transcript events and
//! `AGENT_INTERRUPTED` of the same turn, read from `logs`, and its summary uses the same
//! percentile function, so it always agrees with the call's fields.

use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

use callscope_model::{
    LatencySummary, LogRecord, SpanKind, SpanRecord, SpanStatus, TenantSpan, Timestamp, Turn,
};
use duckdb::{
    Connection,
    arrow::{
        array::{ArrayRef, FixedSizeBinaryArray, Int64Array, StringArray, UInt8Array},
        datatypes::{DataType, Field, Schema, SchemaRef},
        record_batch::RecordBatch,
    },
    types::Value,
};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::{
    Error, Result,
    query::parse_id,
    summary::{CallDelta, millis},
};

/// The tables this module reads and writes.
pub(crate) const DDL: &str = "
CREATE TABLE IF NOT EXISTS spans (
    id             UUID     NOT NULL,
    tenant         VARCHAR  NOT NULL,
    call_id        VARCHAR  NOT NULL,
    trace_id       VARCHAR  NOT NULL,
    span_id        VARCHAR  NOT NULL,
    parent_span_id VARCHAR,
    name           VARCHAR  NOT NULL,
    kind           UTINYINT NOT NULL,  -- SpanKind::code (the OTLP number)
    start_ns       BIGINT   NOT NULL,  -- nanoseconds since the Unix epoch, UTC
    end_ns         BIGINT   NOT NULL,
    status         UTINYINT NOT NULL,  -- SpanStatus::code (the OTLP number)
    status_message VARCHAR,
    agent_id       VARCHAR,
    attributes     VARCHAR             -- JSON object
);
CREATE TABLE IF NOT EXISTS call_metrics (
    id                UUID     NOT NULL,  -- the record's id
    call_key          VARCHAR  NOT NULL,
    ts                BIGINT   NOT NULL,
    kind              UTINYINT NOT NULL,  -- 1: TURN_LATENCY, 2: USAGE_REPORTED
    turn              BIGINT,
    end_to_end_ms     BIGINT,
    llm_input_tokens  BIGINT,
    llm_output_tokens BIGINT,
    tts_characters    BIGINT,
    stt_us            BIGINT              -- stt_seconds in whole microseconds: sums exactly in any order
);
";

/// Fills `call_metrics` from the records of a file written before the table existed,
/// with the same parsing as [`MetricRow::of`] in SQL.
pub(crate) const BACKFILL: &str = "
INSERT INTO call_metrics
SELECT id, strlen(tenant)::VARCHAR || ':' || tenant || call_id, ts,
       CASE event WHEN 'TURN_LATENCY' THEN 1 ELSE 2 END,
       CASE WHEN event = 'TURN_LATENCY' THEN TRY_CAST(json_extract_string(data, '$.turn') AS BIGINT) END,
       CASE WHEN event = 'TURN_LATENCY' THEN round(TRY_CAST(json_extract_string(data, '$.end_to_end_ms') AS DOUBLE))::BIGINT END,
       CASE WHEN event = 'USAGE_REPORTED' THEN round(TRY_CAST(json_extract_string(data, '$.llm_input_tokens') AS DOUBLE))::BIGINT END,
       CASE WHEN event = 'USAGE_REPORTED' THEN round(TRY_CAST(json_extract_string(data, '$.llm_output_tokens') AS DOUBLE))::BIGINT END,
       CASE WHEN event = 'USAGE_REPORTED' THEN round(TRY_CAST(json_extract_string(data, '$.tts_characters') AS DOUBLE))::BIGINT END,
       CASE WHEN event = 'USAGE_REPORTED' THEN round(TRY_CAST(json_extract_string(data, '$.stt_seconds') AS DOUBLE) * 1000000)::BIGINT END
FROM logs WHERE event IN ('TURN_LATENCY', 'USAGE_REPORTED');
";

/// The timeline fields of every call, in SQL, for the calls export: the same folds as
/// [`aggregates`] (nearest rank is `l[ceil(n * p / 100)]` of the sorted list), and the
/// export views joining them to the call summaries.
pub(crate) const VIEWS: &str = "
CREATE OR REPLACE VIEW call_timeline AS
WITH turns AS (
    SELECT call_key, turn, arg_min_null(end_to_end_ms, (ts, id::VARCHAR)) AS e2e
    FROM call_metrics WHERE kind = 1 AND turn IS NOT NULL GROUP BY call_key, turn
), latency AS (
    SELECT call_key, count(*) AS turn_count,
           list_sort(list(e2e) FILTER (WHERE e2e IS NOT NULL)) AS l
    FROM turns GROUP BY call_key
), usage AS (
    SELECT call_key, sum(llm_input_tokens)::BIGINT AS llm_input_tokens,
           sum(llm_output_tokens)::BIGINT AS llm_output_tokens,
           sum(tts_characters)::BIGINT AS tts_characters, sum(stt_us)::BIGINT AS stt_us
    FROM call_metrics WHERE kind = 2 GROUP BY call_key
)
SELECT coalesce(latency.call_key, usage.call_key) AS call_key, turn_count,
       CASE WHEN len(l) > 0 THEN l[greatest((len(l) * 50 + 99) // 100, 1)] END AS latency_p50_ms,
       CASE WHEN len(l) > 0 THEN l[greatest((len(l) * 95 + 99) // 100, 1)] END AS latency_p95_ms,
       CASE WHEN len(l) > 0 THEN l[len(l)] END AS latency_max_ms,
       llm_input_tokens, llm_output_tokens, tts_characters, stt_us / 1000000.0 AS stt_seconds
FROM latency FULL OUTER JOIN usage ON latency.call_key = usage.call_key;
CREATE OR REPLACE VIEW call_export AS
SELECT s.*, t.turn_count, t.latency_p50_ms, t.latency_p95_ms, t.latency_max_ms,
       t.llm_input_tokens, t.llm_output_tokens, t.tts_characters, t.stt_seconds
FROM call_summary s LEFT JOIN call_timeline t ON s.call_key = t.call_key;
CREATE OR REPLACE VIEW call_export_live AS
SELECT s.*, t.turn_count, t.latency_p50_ms, t.latency_p95_ms, t.latency_max_ms,
       t.llm_input_tokens, t.llm_output_tokens, t.tts_characters, t.stt_seconds
FROM call_summary_live s LEFT JOIN call_timeline t ON s.call_key = t.call_key;
";

/// The writer's scratch table for the look-up of incoming span ids.
pub(crate) const SCRATCH_DDL: &str =
    "CREATE TEMP TABLE IF NOT EXISTS _incoming_span_ids (id UUID NOT NULL);";

const TURN_LATENCY: &str = "TURN_LATENCY";
const USAGE_REPORTED: &str = "USAGE_REPORTED";
const AGENT_INTERRUPTED: &str = "AGENT_INTERRUPTED";
const USER_TEXT: &[&str] = &["USER_MESSAGE_RECEIVED"];
const AGENT_TEXT: &[&str] = &[
    "GREETING_SENT",
    "AGENT_MESSAGE_SENT",
    "REMINDER_MESSAGE_SENT",
];

/// The turn number a record carries: `data.turn` as a whole number.
fn turn_of(r: &LogRecord) -> Option<i64> {
    let data = r.data.as_ref()?;
    match data.get("turn")? {
        Json::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn number(r: &LogRecord, key: &str) -> Option<f64> {
    match r.data.as_ref()?.get(key)? {
        Json::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        Json::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// One `call_metrics` row, from the record at `row` of its batch.
#[derive(Debug, Clone)]
pub(crate) struct MetricRow {
    pub(crate) row: u32,
    pub(crate) id: Uuid,
    pub(crate) call_key: String,
    pub(crate) ts: i64,
    pub(crate) kind: u8,
    pub(crate) turn: Option<i64>,
    pub(crate) end_to_end_ms: Option<i64>,
    pub(crate) llm_input_tokens: Option<i64>,
    pub(crate) llm_output_tokens: Option<i64>,
    pub(crate) tts_characters: Option<i64>,
    pub(crate) stt_us: Option<i64>,
}

impl MetricRow {
    /// The row a record adds, if it is a `TURN_LATENCY` or `USAGE_REPORTED`.
    pub(crate) fn of(row: u32, call_key: &str, r: &LogRecord) -> Option<Self> {
        let data = r.data.as_ref();
        let base = |kind| Self {
            row,
            id: r.id,
            call_key: call_key.to_owned(),
            ts: r.timestamp.as_nanos(),
            kind,
            turn: None,
            end_to_end_ms: None,
            llm_input_tokens: None,
            llm_output_tokens: None,
            tts_characters: None,
            stt_us: None,
        };
        match r.event.as_str() {
            TURN_LATENCY => Some(Self {
                turn: turn_of(r),
                end_to_end_ms: millis(data, "end_to_end_ms"),
                ..base(1)
            }),
            USAGE_REPORTED => Some(Self {
                llm_input_tokens: millis(data, "llm_input_tokens"),
                llm_output_tokens: millis(data, "llm_output_tokens"),
                tts_characters: millis(data, "tts_characters"),
                stt_us: number(r, "stt_seconds")
                    .filter(|s| s.abs() < 9.0e12)
                    .map(|s| (s * 1e6).round() as i64),
                ..base(2)
            }),
            _ => None,
        }
    }
}

/// One `append_spans` request, ready for the writer.
#[derive(Debug)]
pub(crate) struct PreparedSpans {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) batch: RecordBatch,
    /// Each span's start time, by row.
    pub(crate) starts: Vec<i64>,
    /// What the spans add to their calls' summaries (the window, agent and trace), one
    /// delta per call. Built here, off the writer's thread; a span stored before adds
    /// nothing new, so a request's deltas apply whichever of its spans are new.
    pub(crate) calls: Vec<CallDelta>,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
}

/// The Arrow schema of the `spans` table, in column order.
pub(crate) fn spans_schema() -> SchemaRef {
    let uuid_meta = HashMap::from([("ARROW:extension:name".to_owned(), "arrow.uuid".to_owned())]);
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::FixedSizeBinary(16), false).with_metadata(uuid_meta),
        text("tenant", false),
        text("call_id", false),
        text("trace_id", false),
        text("span_id", false),
        text("parent_span_id", true),
        text("name", false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("start_ns", DataType::Int64, false),
        Field::new("end_ns", DataType::Int64, false),
        Field::new("status", DataType::UInt8, false),
        text("status_message", true),
        text("agent_id", true),
        text("attributes", true),
    ]))
}

/// Builds the columnar batch for `spans`.
pub(crate) fn prepare_spans(spans: &[TenantSpan], schema: &SchemaRef) -> Result<PreparedSpans> {
    let corrupt = |e: duckdb::arrow::error::ArrowError| Error::Corrupt(e.to_string());
    let ids: Vec<Uuid> = spans.iter().map(|s| s.span.id).collect();
    let mut attributes = Vec::with_capacity(spans.len());
    for s in spans {
        attributes.push(if s.span.attributes.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&s.span.attributes)
                    .map_err(|e| Error::Corrupt(e.to_string()))?,
            )
        });
    }
    let (min_ts, max_ts) = spans.iter().fold((i64::MAX, i64::MIN), |(lo, hi), s| {
        (lo.min(s.span.start_time.0), hi.max(s.span.start_time.0))
    });
    let text = |f: fn(&TenantSpan) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(spans.iter().map(f)))
    };
    let opt = |f: fn(&TenantSpan) -> Option<&str>| -> ArrayRef {
        Arc::new(spans.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            FixedSizeBinaryArray::try_from_iter(ids.iter().map(Uuid::as_bytes))
                .or_else(|_| {
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        std::iter::empty::<Option<&[u8]>>(),
                        16,
                    )
                })
                .map_err(corrupt)?,
        ),
        text(|s| &s.tenant),
        text(|s| &s.span.call_id),
        text(|s| &s.span.trace_id),
        text(|s| &s.span.span_id),
        opt(|s| s.span.parent_span_id.as_deref()),
        text(|s| &s.span.name),
        Arc::new(UInt8Array::from_iter_values(
            spans.iter().map(|s| s.span.kind.code()),
        )),
        Arc::new(Int64Array::from_iter_values(
            spans.iter().map(|s| s.span.start_time.0),
        )),
        Arc::new(Int64Array::from_iter_values(
            spans.iter().map(|s| s.span.end_time.0),
        )),
        Arc::new(UInt8Array::from_iter_values(
            spans.iter().map(|s| s.span.status.code()),
        )),
        opt(|s| s.span.status_message.as_deref()),
        opt(|s| s.span.agent_id.as_deref()),
        Arc::new(StringArray::from(attributes)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(corrupt)?;
    let mut calls: Vec<CallDelta> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for s in spans {
        let (tenant, call_id) = (s.tenant.as_str(), s.span.call_id.as_str());
        let i = *index.entry((tenant, call_id)).or_insert_with(|| {
            let mut d = CallDelta::new(tenant, call_id, s.span.start_time.0);
            d.agent_id.clone_from(&s.span.agent_id);
            d.trace_id = Some(s.span.trace_id.clone());
            calls.push(d);
            calls.len() - 1
        });
        let d = &mut calls[i];
        d.first_ts = d.first_ts.min(s.span.start_time.0);
        d.last_ts = d.last_ts.max(s.span.end_time.0).max(s.span.start_time.0);
        if d.agent_id.is_none() {
            d.agent_id.clone_from(&s.span.agent_id);
        }
    }
    Ok(PreparedSpans {
        ids,
        batch,
        starts: spans.iter().map(|s| s.span.start_time.0).collect(),
        calls,
        min_ts,
        max_ts,
    })
}

/// A call's stored spans, by start time (ties: span id); `None` when `tenant` has no call
/// `call_id`.
pub(crate) fn call_spans(
    conn: &Connection,
    tenant: &str,
    call_id: &str,
) -> Result<Option<Vec<SpanRecord>>> {
    let Some((lo, hi)) = crate::query::call_window(conn, tenant, call_id)? else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id::VARCHAR, call_id, agent_id, trace_id, span_id, parent_span_id, name, kind, \
                start_ns, end_ns, status, status_message, attributes \
         FROM spans WHERE tenant = ? AND call_id = ? AND start_ns BETWEEN ? AND ? \
         ORDER BY start_ns, span_id",
    )?;
    let rows = stmt.query_map(duckdb::params![tenant, call_id, lo, hi], |r| {
        Ok((
            r.get::<_, String>(0)?,
            SpanRecord {
                id: Uuid::nil(),
                call_id: r.get(1)?,
                agent_id: r.get(2)?,
                trace_id: r.get(3)?,
                span_id: r.get(4)?,
                parent_span_id: r.get(5)?,
                name: r.get(6)?,
                kind: SpanKind::from_code(r.get(7)?),
                start_time: Timestamp(r.get(8)?),
                end_time: Timestamp(r.get(9)?),
                status: SpanStatus::from_code(r.get(10)?),
                status_message: r.get(11)?,
                attributes: serde_json::Map::new(),
            },
            r.get::<_, Option<String>>(12)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, mut span, attributes) = row?;
        span.id = parse_id(&id)?;
        if let Some(a) = attributes {
            span.attributes =
                serde_json::from_str(&a).map_err(|e| Error::Corrupt(e.to_string()))?;
        }
        out.push(span);
    }
    Ok(Some(out))
}

/// A call's turns and their latency summary.
#[derive(Debug, Clone, PartialEq)]
pub struct CallTurns {
    /// The turns, by turn number.
    pub turns: Vec<Turn>,
    /// Turns with a `TURN_LATENCY`.
    pub turn_count: u64,
    /// Percentiles of their `end_to_end_ms`.
    pub end_to_end_ms: LatencySummary,
}

/// What is known of one turn while the call's records are read.
#[derive(Default)]
struct TurnAcc {
    started: Option<i64>,
    user: Vec<(i64, String, String)>,
    agent: Vec<(i64, String, String)>,
    /// The chosen `TURN_LATENCY`: its (time, id) and record.
    latency: Option<((i64, String), LogRecord)>,
    interrupted: bool,
}

/// A call's turns; `None` when `tenant` has no call `call_id`.
pub(crate) fn call_turns(
    conn: &Connection,
    tenant: &str,
    call_id: &str,
) -> Result<Option<CallTurns>> {
    let Some(window) = crate::query::call_window(conn, tenant, call_id)? else {
        return Ok(None);
    };
    let events: Vec<String> = [TURN_LATENCY, AGENT_INTERRUPTED]
        .iter()
        .chain(USER_TEXT)
        .chain(AGENT_TEXT)
        .map(|e| (*e).to_owned())
        .collect();
    let filter = callscope_query::LogFilter {
        events,
        ..callscope_query::LogFilter::default()
    };
    let (base, params) = crate::query::call_log_where(tenant, call_id, window, &filter);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM logs WHERE {base} ORDER BY ts, id",
        crate::query::RECORD_COLUMNS
    ))?;
    let rows = stmt.query_map(
        duckdb::params_from_iter(params.iter()),
        crate::query::read_record,
    )?;
    let mut turns: BTreeMap<i64, TurnAcc> = BTreeMap::new();
    for row in rows {
        let r = row??;
        let Some(turn) = turn_of(&r) else { continue };
        let ts = r.timestamp.as_nanos();
        let acc = turns.entry(turn).or_default();
        acc.started = Some(acc.started.map_or(ts, |s| s.min(ts)));
        let text = || {
            r.data
                .as_ref()
                .and_then(|d| d.get("text"))
                .and_then(Json::as_str)
                .map(str::to_owned)
        };
        match r.event.as_str() {
            TURN_LATENCY => {
                let key = (ts, r.id.to_string());
                if acc.latency.as_ref().is_none_or(|(k, _)| key < *k) {
                    acc.latency = Some((key, r));
                }
            }
            AGENT_INTERRUPTED => acc.interrupted = true,
            e if USER_TEXT.contains(&e) => {
                if let Some(t) = text() {
                    acc.user.push((ts, r.id.to_string(), t));
                }
            }
            e if AGENT_TEXT.contains(&e) => {
                if let Some(t) = text() {
                    acc.agent.push((ts, r.id.to_string(), t));
                }
            }
            _ => {}
        }
    }
    let join = |mut parts: Vec<(i64, String, String)>| {
        parts.sort();
        (!parts.is_empty()).then(|| {
            parts
                .into_iter()
                .map(|(_, _, t)| t)
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    let mut out = Vec::with_capacity(turns.len());
    let mut e2e = Vec::new();
    let mut turn_count = 0;
    for (turn, acc) in turns {
        let latency = acc.latency.map(|(_, r)| r);
        let ms = |key| latency.as_ref().and_then(|r| millis(r.data.as_ref(), key));
        if latency.is_some() {
            turn_count += 1;
            if let Some(v) = ms("end_to_end_ms") {
                e2e.push(v);
            }
        }
        out.push(Turn {
            turn,
            started_at: Timestamp(acc.started.unwrap_or_default()),
            user_text: join(acc.user),
            agent_text: join(acc.agent),
            stt_ms: ms("stt_ms"),
            llm_ttft_ms: ms("llm_ttft_ms"),
            tts_ttfb_ms: ms("tts_ttfb_ms"),
            end_to_end_ms: ms("end_to_end_ms"),
            interrupted: acc.interrupted,
        });
    }
    Ok(Some(CallTurns {
        turns: out,
        turn_count,
        end_to_end_ms: LatencySummary::of(&e2e),
    }))
}

/// The timeline fields of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Aggregates {
    pub(crate) turn_count: Option<u64>,
    pub(crate) latency: LatencySummary,
    pub(crate) llm_input_tokens: Option<i64>,
    pub(crate) llm_output_tokens: Option<i64>,
    pub(crate) tts_characters: Option<i64>,
    pub(crate) stt_seconds: Option<f64>,
}

/// The timeline fields of the calls `keys` (their `call_key`s), whose records all lie in
/// `[lo, hi]`. Calls without any are absent from the map.
pub(crate) fn aggregates(
    conn: &Connection,
    keys: &[String],
    (lo, hi): (i64, i64),
) -> Result<HashMap<String, Aggregates>> {
    let mut out: HashMap<String, Aggregates> = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let marks = vec!["?"; keys.len()].join(", ");
    let mut params: Vec<Value> = keys.iter().map(|k| Value::Text(k.clone())).collect();
    params.push(Value::BigInt(lo));
    params.push(Value::BigInt(hi));
    let filter = format!("call_key IN ({marks}) AND ts BETWEEN ? AND ?");
    // One turn per number: the earliest `TURN_LATENCY` carrying it.
    let mut stmt = conn.prepare(&format!(
        "SELECT call_key, count(*), list(e2e) FILTER (WHERE e2e IS NOT NULL) FROM ( \
           SELECT call_key, turn, arg_min_null(end_to_end_ms, (ts, id::VARCHAR)) AS e2e \
           FROM call_metrics WHERE kind = 1 AND turn IS NOT NULL AND {filter} \
           GROUP BY call_key, turn) GROUP BY call_key"
    ))?;
    let rows = stmt.query_map(duckdb::params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<duckdb::types::Value>>(2)?,
        ))
    })?;
    for row in rows {
        let (key, n, list) = row?;
        let values: Vec<i64> = match list {
            Some(Value::List(items)) => items
                .into_iter()
                .filter_map(|v| match v {
                    Value::BigInt(i) => Some(i),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let a = out.entry(key).or_default();
        a.turn_count = Some(u64::try_from(n).unwrap_or(0));
        a.latency = LatencySummary::of(&values);
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT call_key, sum(llm_input_tokens)::BIGINT, sum(llm_output_tokens)::BIGINT, \
                sum(tts_characters)::BIGINT, sum(stt_us)::BIGINT \
         FROM call_metrics WHERE kind = 2 AND {filter} GROUP BY call_key"
    ))?;
    let rows = stmt.query_map(duckdb::params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<i64>>(1)?,
            r.get::<_, Option<i64>>(2)?,
            r.get::<_, Option<i64>>(3)?,
            r.get::<_, Option<i64>>(4)?,
        ))
    })?;
    for row in rows {
        let (key, llm_in, llm_out, tts, stt) = row?;
        let a = out.entry(key).or_default();
        a.llm_input_tokens = llm_in;
        a.llm_output_tokens = llm_out;
        a.tts_characters = tts;
        #[allow(clippy::cast_precision_loss)]
        let seconds = stt.map(|us| us as f64 / 1e6);
        a.stt_seconds = seconds;
    }
    Ok(out)
}

impl Aggregates {
    /// Sets the call's timeline fields.
    pub(crate) fn apply(self, call: &mut callscope_model::Call) {
        call.turn_count = self.turn_count;
        call.latency_p50_ms = self.latency.p50;
        call.latency_p95_ms = self.latency.p95;
        call.latency_max_ms = self.latency.max;
        call.llm_input_tokens = self.llm_input_tokens;
        call.llm_output_tokens = self.llm_output_tokens;
        call.tts_characters = self.tts_characters;
        call.stt_seconds = self.stt_seconds;
    }
}
