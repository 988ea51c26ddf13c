//! The `calls` table: one row per call, kept current by the writer from the journal its
//! group commits append to in the same transaction as the call's records.
//!
//! Each batch folds its records into a [`CallDelta`] per call (counts, time window and
//! the summary fields its lifecycle events carry). A group commit appends its deltas to
//! `call_journal`; the writer later sums the journal per call ([`journal_sql`]) and
//! merges that into `calls` with one `MERGE` ([`merge_sql`]). Every merge of the fields
//! below is a commutative "keep the earliest" choice, so they are the same whatever
//! order records arrive in, and a record stored twice is dropped before it reaches a
//! delta:
//! - counts add up; the window widens;
//! - each opening field (`direction`, `from`, `to`, `campaign_id`, `recording_url`)
//!   keeps the value of the earliest event that carried it (ties: the smaller value);
//! - the terminal fields (`status`, `ended_at`, the durations, `hangup_*`) move as one
//!   group and come from the earliest terminal event (ties: the smaller record id).
//!
//! `agent_id` and `trace_id` are the exception: they come from a record that has one,
//! the first to reach `calls` (within one fold, the delta with the earliest first
//! record). A call's records normally agree on both; when they don't, which one shows
//! can depend on arrival order.

use std::sync::Arc;

use callscope_model::{CallOutcome, LogRecord, lookup_event};
use duckdb::arrow::{
    array::{ArrayRef, Int64Array, StringArray},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};
use serde_json::Value;

use crate::{Error, Result};

/// A value and the time of the event that supplied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Picked {
    pub(crate) ts: i64,
    pub(crate) value: String,
}

impl Picked {
    fn merge(slot: &mut Option<Picked>, other: Option<&Picked>) {
        if let Some(o) = other
            && slot
                .as_ref()
                .is_none_or(|s| (o.ts, &o.value) < (s.ts, &s.value))
        {
            *slot = Some(o.clone());
        }
    }
}

/// What the earliest terminal event says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terminal {
    pub(crate) ts: i64,
    /// The record id, as text: the tie-break between terminal events at one instant.
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) status: String,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) ringing_duration_ms: Option<i64>,
    pub(crate) bot_duration_ms: Option<i64>,
    pub(crate) billed_duration_ms: Option<i64>,
    pub(crate) hangup_reason: Option<String>,
    pub(crate) hangup_source: Option<String>,
}

/// The summary fields a set of records carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lifecycle {
    pub(crate) direction: Option<Picked>,
    pub(crate) from: Option<Picked>,
    pub(crate) to: Option<Picked>,
    pub(crate) campaign_id: Option<Picked>,
    pub(crate) recording_url: Option<Picked>,
    /// The earliest `CALL_CREATED` / `CALL_RECEIVED`.
    pub(crate) open_ts: Option<i64>,
    /// The earliest `CALL_STARTED`.
    pub(crate) start_ts: Option<i64>,
    pub(crate) terminal: Option<Terminal>,
}

fn text(data: Option<&serde_json::Map<String, Value>>, key: &str) -> Option<String> {
    match data?.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A whole number of `key` in `data`: an integer, a rounded float, or either as a string.
pub(crate) fn millis(data: Option<&serde_json::Map<String, Value>>, key: &str) -> Option<i64> {
    let as_i64 = |f: f64| (f.is_finite() && f.abs() < 9.0e18).then(|| f.round() as i64);
    match data?.get(key)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(as_i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(as_i64))
        }
        _ => None,
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Lifecycle {
    /// Folds in one record, if it is a lifecycle event.
    pub(crate) fn observe(&mut self, r: &LogRecord) {
        let ts = r.timestamp.as_nanos();
        let data = r.data.as_ref();
        let pick = |key: &str| text(data, key).map(|value| Picked { ts, value });
        let open = |direction: Option<&str>, this: &mut Lifecycle| {
            let direction = pick("direction").or_else(|| {
                direction.map(|d| Picked {
                    ts,
                    value: d.to_owned(),
                })
            });
            Picked::merge(&mut this.direction, direction.as_ref());
            Picked::merge(&mut this.from, pick("from").as_ref());
            Picked::merge(&mut this.to, pick("to").as_ref());
            Picked::merge(&mut this.campaign_id, pick("campaign_id").as_ref());
        };
        match r.event.as_str() {
            "CALL_CREATED" => {
                open(Some("outbound"), self);
                self.open_ts = min_opt(self.open_ts, Some(ts));
            }
            "CALL_RECEIVED" => {
                open(Some("inbound"), self);
                self.open_ts = min_opt(self.open_ts, Some(ts));
            }
            "CALL_STARTED" => {
                open(None, self);
                self.start_ts = min_opt(self.start_ts, Some(ts));
            }
            "RECORDING_STARTED" => {
                Picked::merge(&mut self.recording_url, pick("recording_url").as_ref());
            }
            code => {
                let Some(outcome) = lookup_event(code).and_then(|e| e.outcome) else {
                    return;
                };
                let status = text(data, "status")
                    .map(|s| s.to_lowercase())
                    .unwrap_or_else(|| outcome_status(outcome).to_owned());
                let t = Terminal {
                    ts,
                    id: r.id.to_string(),
                    event: code.to_owned(),
                    status,
                    duration_ms: millis(data, "duration_ms"),
                    ringing_duration_ms: millis(data, "ringing_duration_ms"),
                    bot_duration_ms: millis(data, "bot_duration_ms"),
                    billed_duration_ms: millis(data, "billed_duration_ms"),
                    hangup_reason: text(data, "hangup_reason"),
                    hangup_source: text(data, "hangup_source"),
                };
                self.merge_terminal(Some(&t));
            }
        }
    }

    fn merge_terminal(&mut self, other: Option<&Terminal>) {
        if let Some(o) = other
            && self
                .terminal
                .as_ref()
                .is_none_or(|s| (o.ts, &o.id) < (s.ts, &s.id))
        {
            self.terminal = Some(o.clone());
        }
    }

    /// Folds in another set of records' summary.
    pub(crate) fn merge(&mut self, other: &Lifecycle) {
        Picked::merge(&mut self.direction, other.direction.as_ref());
        Picked::merge(&mut self.from, other.from.as_ref());
        Picked::merge(&mut self.to, other.to.as_ref());
        Picked::merge(&mut self.campaign_id, other.campaign_id.as_ref());
        Picked::merge(&mut self.recording_url, other.recording_url.as_ref());
        self.open_ts = min_opt(self.open_ts, other.open_ts);
        self.start_ts = min_opt(self.start_ts, other.start_ts);
        self.merge_terminal(other.terminal.as_ref());
    }
}

fn outcome_status(o: CallOutcome) -> &'static str {
    o.as_str()
}

/// Per-call counts and summary fields a batch adds to the `calls` table.
#[derive(Debug, Clone)]
pub(crate) struct CallDelta {
    /// [`call_key`] of `tenant` and `call_id`.
    pub(crate) key: String,
    pub(crate) tenant: String,
    pub(crate) call_id: String,
    pub(crate) first_ts: i64,
    pub(crate) last_ts: i64,
    /// Record count per level, indexed by `Level::code() - 1`.
    pub(crate) levels: [i64; 5],
    pub(crate) agent_id: Option<String>,
    pub(crate) trace_id: Option<String>,
    pub(crate) lifecycle: Lifecycle,
}

impl CallDelta {
    pub(crate) fn new(tenant: &str, call_id: &str, ts: i64) -> Self {
        Self {
            key: call_key(tenant, call_id),
            tenant: tenant.to_owned(),
            call_id: call_id.to_owned(),
            first_ts: ts,
            last_ts: ts,
            levels: [0; 5],
            agent_id: None,
            trace_id: None,
            lifecycle: Lifecycle::default(),
        }
    }

    /// Counts one record.
    pub(crate) fn observe(&mut self, r: &LogRecord) {
        let t = r.timestamp.as_nanos();
        self.first_ts = self.first_ts.min(t);
        self.last_ts = self.last_ts.max(t);
        self.levels[usize::from(r.level.code() - 1)] += 1;
        if self.agent_id.is_none() {
            self.agent_id.clone_from(&r.agent_id);
        }
        if self.trace_id.is_none() {
            self.trace_id.clone_from(&r.trace_id);
        }
        self.lifecycle.observe(r);
    }

    pub(crate) fn merge(&mut self, other: &CallDelta) {
        self.first_ts = self.first_ts.min(other.first_ts);
        self.last_ts = self.last_ts.max(other.last_ts);
        for (a, b) in self.levels.iter_mut().zip(other.levels) {
            *a += b;
        }
        if self.agent_id.is_none() {
            self.agent_id.clone_from(&other.agent_id);
        }
        if self.trace_id.is_none() {
            self.trace_id.clone_from(&other.trace_id);
        }
        self.lifecycle.merge(&other.lifecycle);
    }
}

/// A `calls` column: its name, whether it is a number (else text), and how a delta
/// fills it.
struct Column {
    name: &'static str,
    number: bool,
    get: fn(&CallDelta) -> Cell<'_>,
}

enum Cell<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

macro_rules! int {
    ($name:literal, |$d:ident| $e:expr) => {
        Column {
            name: $name,
            number: true,
            get: |$d| Cell::Int($e),
        }
    };
}
macro_rules! txt {
    ($name:literal, |$d:ident| $e:expr) => {
        Column {
            name: $name,
            number: false,
            get: |$d| Cell::Text($e),
        }
    };
}

fn picked_value(p: Option<&Picked>) -> Option<&str> {
    p.map(|p| p.value.as_str())
}
fn picked_ts(p: Option<&Picked>) -> Option<i64> {
    p.map(|p| p.ts)
}
fn term(d: &CallDelta) -> Option<&Terminal> {
    d.lifecycle.terminal.as_ref()
}

/// One column that names a call within its tenant: the tenant's length in bytes, `:`,
/// the tenant, then the call id. The length prefix keeps it unambiguous whatever the
/// two contain. `calls` has a unique index on it, and a look-up of one call filters on
/// this column alone, the only shape DuckDB answers from an ART index (a filter on
/// `tenant` and `call_id` scans the whole table).
pub(crate) fn call_key(tenant: &str, call_id: &str) -> String {
    format!("{}:{tenant}{call_id}", tenant.len())
}

/// [`call_key`] in SQL, over a row's `tenant` and `call_id`.
pub(crate) const CALL_KEY_SQL: &str = "strlen(tenant)::VARCHAR || ':' || tenant || call_id";

/// The `calls` columns, in table order. `tenant` and `call_id` are the key, and
/// `call_key` is the two in one column.
const COLUMNS: &[Column] = &[
    txt!("tenant", |d| Some(d.tenant.as_str())),
    txt!("call_id", |d| Some(d.call_id.as_str())),
    int!("first_ts", |d| Some(d.first_ts)),
    int!("last_ts", |d| Some(d.last_ts)),
    int!("log_count", |d| Some(d.levels.iter().sum())),
    int!("debug_count", |d| Some(d.levels[0])),
    int!("info_count", |d| Some(d.levels[1])),
    int!("warning_count", |d| Some(d.levels[2])),
    int!("error_count", |d| Some(d.levels[3])),
    int!("critical_count", |d| Some(d.levels[4])),
    txt!("agent_id", |d| d.agent_id.as_deref()),
    txt!("trace_id", |d| d.trace_id.as_deref()),
    txt!("direction", |d| picked_value(
        d.lifecycle.direction.as_ref()
    )),
    int!("direction_ts", |d| picked_ts(
        d.lifecycle.direction.as_ref()
    )),
    txt!("from_number", |d| picked_value(d.lifecycle.from.as_ref())),
    int!("from_ts", |d| picked_ts(d.lifecycle.from.as_ref())),
    txt!("to_number", |d| picked_value(d.lifecycle.to.as_ref())),
    int!("to_ts", |d| picked_ts(d.lifecycle.to.as_ref())),
    txt!("campaign_id", |d| picked_value(
        d.lifecycle.campaign_id.as_ref()
    )),
    int!("campaign_ts", |d| picked_ts(
        d.lifecycle.campaign_id.as_ref()
    )),
    txt!("recording_url", |d| picked_value(
        d.lifecycle.recording_url.as_ref()
    )),
    int!("recording_ts", |d| picked_ts(
        d.lifecycle.recording_url.as_ref()
    )),
    int!("open_ts", |d| d.lifecycle.open_ts),
    int!("start_ts", |d| d.lifecycle.start_ts),
    int!("end_ts", |d| term(d).map(|t| t.ts)),
    txt!("end_id", |d| term(d).map(|t| t.id.as_str())),
    txt!("end_event", |d| term(d).map(|t| t.event.as_str())),
    txt!("status", |d| term(d).map(|t| t.status.as_str())),
    int!("duration_ms", |d| term(d).and_then(|t| t.duration_ms)),
    int!("ringing_duration_ms", |d| term(d)
        .and_then(|t| t.ringing_duration_ms)),
    int!("bot_duration_ms", |d| term(d)
        .and_then(|t| t.bot_duration_ms)),
    int!("billed_duration_ms", |d| term(d)
        .and_then(|t| t.billed_duration_ms)),
    txt!("hangup_reason", |d| term(d)
        .and_then(|t| t.hangup_reason.as_deref())),
    txt!("hangup_source", |d| term(d)
        .and_then(|t| t.hangup_source.as_deref())),
    // Last, so files from before it get it appended (`schema::migrate`).
    txt!("call_key", |d| Some(d.key.as_str())),
];

/// Opening fields: each moves with the time of the event that supplied it.
const PICKED: &[(&str, &str)] = &[
    ("direction", "direction_ts"),
    ("from_number", "from_ts"),
    ("to_number", "to_ts"),
    ("campaign_id", "campaign_ts"),
    ("recording_url", "recording_ts"),
];

/// The terminal group: these move together with `end_ts` / `end_id`.
const TERMINAL: &[&str] = &[
    "end_ts",
    "end_id",
    "end_event",
    "status",
    "duration_ms",
    "ringing_duration_ms",
    "bot_duration_ms",
    "billed_duration_ms",
    "hangup_reason",
    "hangup_source",
];

/// Column definitions of `calls` (and of the writer's scratch table).
pub(crate) fn column_ddl(not_null_key: bool) -> String {
    COLUMNS
        .iter()
        .map(|c| {
            let ty = if c.number { "BIGINT" } else { "VARCHAR" };
            let nn = if not_null_key && COLUMNS[..10].iter().any(|k| k.name == c.name) {
                " NOT NULL"
            } else {
                ""
            };
            format!("    {} {ty}{nn}", c.name)
        })
        .collect::<Vec<_>>()
        .join(",\n")
}

/// Every `calls` column with its SQL type, in table order.
pub(crate) fn columns() -> impl Iterator<Item = (&'static str, &'static str)> {
    COLUMNS
        .iter()
        .map(|c| (c.name, if c.number { "BIGINT" } else { "VARCHAR" }))
}

/// The per-level count columns of `calls`, in `Level::code()` order (1 = DEBUG).
const LEVEL_COUNTS: [&str; 5] = [
    "debug_count",
    "info_count",
    "warning_count",
    "error_count",
    "critical_count",
];

/// The statement a purge runs before deleting the records older than its cut-off (each
/// `?` is the cut-off): a call the cut-off goes through keeps its row, so it loses the
/// counts of what is deleted of it, and its window starts at the cut-off at the
/// earliest. Calls wholly before the cut-off are deleted after it.
pub(crate) fn purge_sql() -> String {
    let mut set = vec![
        "first_ts = greatest(calls.first_ts, ?)".to_owned(),
        "log_count = calls.log_count - d.n".to_owned(),
    ];
    let mut count = vec!["count(*) AS n".to_owned()];
    for (code, c) in (1..).zip(LEVEL_COUNTS) {
        set.push(format!("{c} = calls.{c} - d.n{code}"));
        count.push(format!("count(*) FILTER (WHERE level = {code}) AS n{code}"));
    }
    format!(
        "UPDATE calls SET {}\n\
         FROM (SELECT tenant, call_id, {} FROM logs WHERE ts < ? GROUP BY tenant, call_id) AS d\n\
         WHERE calls.tenant = d.tenant AND calls.call_id = d.call_id AND calls.last_ts >= ?",
        set.join(", "),
        count.join(", "),
    )
}

/// [`merge_sql`], built once.
pub(crate) static MERGE_CALLS: std::sync::LazyLock<String> = std::sync::LazyLock::new(merge_sql);

/// The statement that merges the scratch table `_call_delta` (aliased `excluded`) into
/// `calls`: new calls are inserted, known ones folded with the delta.
///
/// `MERGE` rather than `INSERT … ON CONFLICT DO UPDATE`, which DuckDB runs slower
/// (BENCHMARKS.md, "where a group commit's time goes"). It runs once per journal fold.
pub(crate) fn merge_sql() -> String {
    let mut set = vec![
        "first_ts = least(calls.first_ts, excluded.first_ts)".to_owned(),
        "last_ts = greatest(calls.last_ts, excluded.last_ts)".to_owned(),
    ];
    for c in std::iter::once("log_count").chain(LEVEL_COUNTS) {
        set.push(format!("{c} = calls.{c} + excluded.{c}"));
    }
    for c in ["agent_id", "trace_id"] {
        set.push(format!("{c} = coalesce(calls.{c}, excluded.{c})"));
    }
    for (v, k) in PICKED {
        let wins = format!(
            "excluded.{k} IS NOT NULL AND (calls.{k} IS NULL OR excluded.{k} < calls.{k} OR (excluded.{k} = calls.{k} AND excluded.{v} < calls.{v}))"
        );
        set.push(format!(
            "{v} = CASE WHEN {wins} THEN excluded.{v} ELSE calls.{v} END"
        ));
        set.push(format!(
            "{k} = CASE WHEN {wins} THEN excluded.{k} ELSE calls.{k} END"
        ));
    }
    for c in ["open_ts", "start_ts"] {
        set.push(format!(
            "{c} = least(coalesce(calls.{c}, excluded.{c}), coalesce(excluded.{c}, calls.{c}))"
        ));
    }
    let wins = "excluded.end_ts IS NOT NULL AND (calls.end_ts IS NULL OR excluded.end_ts < calls.end_ts OR (excluded.end_ts = calls.end_ts AND excluded.end_id < calls.end_id))";
    for c in TERMINAL {
        set.push(format!(
            "{c} = CASE WHEN {wins} THEN excluded.{c} ELSE calls.{c} END"
        ));
    }
    // Everything but the key columns (`tenant`, `call_id`, `call_key`) is folded.
    debug_assert_eq!(set.len() + 3, COLUMNS.len());
    format!(
        "MERGE INTO calls USING _call_delta AS excluded \
         ON calls.call_key = excluded.call_key\n\
         WHEN MATCHED THEN UPDATE SET {}\n\
         WHEN NOT MATCHED THEN INSERT *",
        set.join(",\n    ")
    )
}

/// [`journal_sql`], built once.
pub(crate) static JOURNAL_TO_SCRATCH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(journal_sql);

/// The statement that sums `call_journal` per call into the scratch table
/// `_call_delta`: the same fold as [`CallDelta::merge`], as aggregates.
///
/// Counts add up and the window widens; `agent_id` and `trace_id` come from the
/// earliest delta that has one; each opening field is the value of its earliest event
/// (ties: the smaller value) and the terminal group comes whole from the earliest
/// terminal event (ties: the smaller record id). `arg_min_null` keeps a `NULL` of the
/// winning row (a terminal event without a duration), where `arg_min` would skip it.
pub(crate) fn journal_sql() -> String {
    format!(
        "INSERT INTO _call_delta\n{}\nFROM call_journal GROUP BY call_key",
        fold_select()
    )
}

/// `calls` as every acknowledged record has it, folded or not: the rows of calls the
/// journal does not touch as they are, and the others summed with their journal rows
/// by the same aggregates as [`journal_sql`]. With an empty journal this is `calls`
/// behind an anti-join against nothing.
pub(crate) fn live_view_sql() -> String {
    let cols = COLUMNS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE OR REPLACE VIEW calls_live AS\n\
         SELECT {cols} FROM calls WHERE call_key NOT IN (SELECT call_key FROM call_journal)\n\
         UNION ALL\n\
         {}\nFROM (\n\
           SELECT {cols} FROM calls WHERE call_key IN (SELECT call_key FROM call_journal)\n\
           UNION ALL SELECT {cols} FROM call_journal\n\
         ) GROUP BY call_key;",
        fold_select()
    )
}

/// Where a read takes call summaries and per-minute counts from, chosen once per
/// snapshot ([`Sources::of`]): the tables while the journal is empty, when they are
/// complete and cost nothing extra to read; the live views, which add the unfolded
/// journal, while it isn't.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sources {
    /// `calls` or `calls_live`.
    pub(crate) calls: &'static str,
    /// `call_summary` or `call_summary_live`.
    pub(crate) call_summary: &'static str,
    /// `log_counts` or `log_counts_live`.
    pub(crate) log_counts: &'static str,
    /// `call_export` or `call_export_live`: the call summary with its timeline fields.
    pub(crate) call_export: &'static str,
}

impl Sources {
    const TABLES: Self = Self {
        calls: "calls",
        call_summary: "call_summary",
        log_counts: "log_counts",
        call_export: "call_export",
    };
    const LIVE: Self = Self {
        calls: "calls_live",
        call_summary: "call_summary_live",
        log_counts: "log_counts_live",
        call_export: "call_export_live",
    };

    /// The sources for reads in `conn`'s current snapshot.
    pub(crate) fn of(conn: &duckdb::Connection) -> Result<Self> {
        Ok(if journal_pending(conn)? {
            Self::LIVE
        } else {
            Self::TABLES
        })
    }
}

/// Does the journal hold unfolded deltas, as this connection sees the database?
pub(crate) fn journal_pending(conn: &duckdb::Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM call_journal) OR EXISTS (SELECT 1 FROM count_journal)",
        )?
        .query_row([], |r| r.get(0))?)
}

/// The aggregates that fold deltas (and `calls` rows, which have the same columns) per
/// call key, as a `SELECT` list in `calls` column order.
fn fold_select() -> String {
    let mut select = Vec::with_capacity(COLUMNS.len());
    for c in COLUMNS {
        let n = c.name;
        let expr = if let Some((v, k)) = PICKED.iter().find(|(v, k)| *v == n || *k == n) {
            if n == *k {
                format!("min({k})")
            } else {
                format!("arg_min_null({v}, ({k}, {v})) FILTER (WHERE {k} IS NOT NULL)")
            }
        } else if TERMINAL.contains(&n) {
            format!("arg_min_null({n}, (end_ts, end_id)) FILTER (WHERE end_ts IS NOT NULL)")
        } else {
            match n {
                "tenant" | "call_id" => format!("any_value({n})"),
                "call_key" => n.to_owned(),
                "first_ts" | "open_ts" | "start_ts" => format!("min({n})"),
                "last_ts" => format!("max({n})"),
                "agent_id" | "trace_id" => format!("arg_min({n}, first_ts)"),
                _ if n == "log_count" || LEVEL_COUNTS.contains(&n) => {
                    format!("sum({n})::BIGINT")
                }
                _ => unreachable!("calls column {n} has no journal fold"),
            }
        };
        select.push(format!("{expr} AS {n}"));
    }
    format!("SELECT {}", select.join(",\n       "))
}

/// The deltas as an Arrow batch in `calls` column order.
pub(crate) fn delta_batch(deltas: &[CallDelta]) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(COLUMNS.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(COLUMNS.len());
    for c in COLUMNS {
        if c.number {
            fields.push(Field::new(c.name, DataType::Int64, true));
            arrays.push(Arc::new(
                deltas
                    .iter()
                    .map(|d| match (c.get)(d) {
                        Cell::Int(v) => v,
                        Cell::Text(_) => None,
                    })
                    .collect::<Int64Array>(),
            ));
        } else {
            fields.push(Field::new(c.name, DataType::Utf8, true));
            arrays.push(Arc::new(
                deltas
                    .iter()
                    .map(|d| match (c.get)(d) {
                        Cell::Text(v) => v,
                        Cell::Int(_) => None,
                    })
                    .collect::<StringArray>(),
            ));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| Error::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use callscope_model::{Category, Level, Timestamp};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn rec(n: u128, ts: i64, event: &str, data: Value) -> LogRecord {
        LogRecord {
            id: Uuid::from_u128(n),
            timestamp: Timestamp(ts),
            level: Level::Info,
            category: Category::CallLifecycle,
            event: event.into(),
            call_id: "c".into(),
            agent_id: None,
            trace_id: None,
            span_id: None,
            data: match data {
                Value::Object(m) => Some(m),
                _ => None,
            },
        }
    }

    fn fold(records: &[LogRecord]) -> Lifecycle {
        let mut l = Lifecycle::default();
        records.iter().for_each(|r| l.observe(r));
        l
    }

    fn lifecycle() -> Vec<LogRecord> {
        vec![
            rec(
                1,
                10,
                "CALL_RECEIVED",
                json!({"from": "+1555", "to": "+1666"}),
            ),
            rec(
                2,
                20,
                "CALL_STARTED",
                json!({"direction": "inbound", "from": "+1999", "campaign_id": "spring"}),
            ),
            rec(
                3,
                25,
                "RECORDING_STARTED",
                json!({"recording_url": "https://r/1"}),
            ),
            rec(
                4,
                90,
                "CALL_COMPLETED",
                json!({"duration_ms": 70, "bot_duration_ms": "65", "hangup_reason": "customer_hangup", "hangup_source": "customer"}),
            ),
            rec(5, 95, "CALL_FAILED", json!({"hangup_reason": "late"})),
            rec(6, 50, "AGENT_MESSAGE_SENT", json!({"status": "missed"})),
        ]
    }

    #[test]
    fn earliest_event_wins_each_field() {
        let l = fold(&lifecycle());
        assert_eq!(l.from.unwrap().value, "+1555");
        assert_eq!(l.to.unwrap().value, "+1666");
        assert_eq!(l.direction.unwrap().value, "inbound");
        assert_eq!(l.campaign_id.unwrap().value, "spring");
        assert_eq!(l.recording_url.unwrap().value, "https://r/1");
        assert_eq!((l.open_ts, l.start_ts), (Some(10), Some(20)));
        let t = l.terminal.unwrap();
        assert_eq!(
            (t.event.as_str(), t.status.as_str(), t.ts),
            ("CALL_COMPLETED", "completed", 90)
        );
        assert_eq!(
            (t.duration_ms, t.bot_duration_ms, t.ringing_duration_ms),
            (Some(70), Some(65), None)
        );
        assert_eq!(t.hangup_source.as_deref(), Some("customer"));
    }

    #[test]
    fn any_order_and_any_split_gives_the_same_summary() {
        let records = lifecycle();
        let want = fold(&records);
        // Every rotation, reversed too, folded in one piece or merged from two halves.
        for k in 0..records.len() {
            let mut r = records.clone();
            r.rotate_left(k);
            for rr in [r.clone(), r.iter().rev().cloned().collect()] {
                assert_eq!(fold(&rr), want);
                let (a, b) = rr.split_at(k);
                let mut m = fold(b);
                m.merge(&fold(a));
                assert_eq!(m, want, "split at {k}");
            }
        }
    }

    #[test]
    fn terminal_status_comes_from_the_event_or_its_data() {
        let missed = fold(&[rec(1, 5, "CALL_COMPLETED", json!({"status": "Missed"}))]);
        assert_eq!(missed.terminal.unwrap().status, "missed");
        for (event, status) in [
            ("CALL_FAILED", "failed"),
            ("CALL_DEADLINE_EXCEEDED", "failed"),
            ("CALL_REJECTED_BY_WEBHOOK", "failed"),
            ("CALL_CANCELED", "canceled"),
        ] {
            let l = fold(&[rec(1, 5, event, json!({}))]);
            assert_eq!(l.terminal.unwrap().status, status, "{event}");
        }
        assert!(
            fold(&[rec(1, 5, "AGENT_MESSAGE_SENT", json!({}))])
                .terminal
                .is_none()
        );
        let outbound = fold(&[rec(1, 5, "CALL_CREATED", json!({}))]);
        assert_eq!(outbound.direction.unwrap().value, "outbound");
    }

    #[test]
    fn the_merge_names_every_column_once() {
        let sql = merge_sql();
        // Every column but the keys (`tenant`, `call_id` first, `call_key` last).
        for c in &COLUMNS[2..COLUMNS.len() - 1] {
            assert!(
                sql.contains(&format!("\n    {} = ", c.name))
                    || sql.contains(&format!("SET {} = ", c.name)),
                "{}",
                c.name
            );
        }
        assert!(delta_batch(&[]).unwrap().num_columns() == COLUMNS.len());
        assert!(
            !sql.contains("\n    call_key = ") && !sql.contains("SET call_key = "),
            "the key is never updated"
        );
    }
}
