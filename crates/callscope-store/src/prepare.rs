//! Turns records into the columnar batch the writer appends.
//!
//! This runs on the caller's task, not on the writer thread: JSON encoding, search
//! text and Arrow array building are the expensive part of a write, and the single
//! writer should spend its time in DuckDB.

use std::{collections::HashMap, sync::Arc};

use callscope_model::TenantRecord;
use duckdb::arrow::{
    array::{ArrayRef, FixedSizeBinaryArray, Int64Array, StringArray, UInt8Array},
    datatypes::{DataType, Field, Schema, SchemaRef},
    record_batch::RecordBatch,
};
use uuid::Uuid;

use crate::{
    Error, Result,
    rollup::{BatchCounts, CountKey, minute_of},
    summary::CallDelta,
    timeline::{MetricRow, PreparedSpans},
};

/// One append request, ready for the writer.
#[derive(Debug)]
pub(crate) struct PreparedBatch {
    pub(crate) ids: Vec<Uuid>,
    pub(crate) batch: RecordBatch,
    /// For each row: its call (index into `calls`) and level code.
    pub(crate) row_call: Vec<(u32, u8)>,
    pub(crate) calls: Vec<CallDelta>,
    /// The batch's `log_counts` rows, and for each row the index of its count.
    pub(crate) counts: BatchCounts,
    pub(crate) row_count: Vec<u32>,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    /// The `call_metrics` rows of the batch's `TURN_LATENCY` and `USAGE_REPORTED`
    /// records, each with its record's row.
    pub(crate) metrics: Vec<MetricRow>,
    /// The spans of an `append_spans` request (which has no records).
    pub(crate) spans: Option<PreparedSpans>,
}

impl PreparedBatch {
    /// Records and spans in the batch.
    pub(crate) fn len(&self) -> usize {
        self.ids.len() + self.spans.as_ref().map_or(0, |s| s.ids.len())
    }

    /// A batch of spans only.
    pub(crate) fn of_spans(spans: PreparedSpans, logs_schema: &SchemaRef) -> Self {
        Self {
            ids: Vec::new(),
            batch: RecordBatch::new_empty(logs_schema.clone()),
            row_call: Vec::new(),
            calls: Vec::new(),
            counts: Vec::new(),
            row_count: Vec::new(),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            metrics: Vec::new(),
            spans: Some(spans),
        }
    }
}

/// The Arrow schema of the `logs` table, in column order.
pub(crate) fn logs_schema() -> SchemaRef {
    let uuid_meta = HashMap::from([("ARROW:extension:name".to_owned(), "arrow.uuid".to_owned())]);
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::FixedSizeBinary(16), false).with_metadata(uuid_meta),
        Field::new("tenant", DataType::Utf8, false),
        Field::new("call_id", DataType::Utf8, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("level", DataType::UInt8, false),
        Field::new("category", DataType::UInt8, false),
        Field::new("event", DataType::Utf8, false),
        Field::new("agent_id", DataType::Utf8, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("data", DataType::Utf8, true),
        Field::new("search", DataType::Utf8, true),
        // Numbered by the writer when it appends the batch (`with_seq`).
        Field::new("seq", DataType::Int64, true),
    ]))
}

/// Appends the lower-cased text of every scalar in `v` to `out`, one per line.
fn collect_search_text(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Null => {}
        Value::String(s) => {
            out.push_str(&s.to_lowercase());
            out.push('\n');
        }
        Value::Bool(b) => {
            out.push_str(if *b { "true\n" } else { "false\n" });
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push('\n');
        }
        Value::Array(a) => a.iter().for_each(|x| collect_search_text(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_search_text(x, out)),
    }
}

/// Builds the columnar batch for `records`.
///
/// # Errors
/// Arrow refused the arrays (a bug, not bad input).
pub(crate) fn prepare(records: &[TenantRecord], schema: &SchemaRef) -> Result<PreparedBatch> {
    let n = records.len();
    let mut ids = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut level = Vec::with_capacity(n);
    let mut category = Vec::with_capacity(n);
    let mut data = Vec::with_capacity(n);
    let mut search = Vec::with_capacity(n);
    let mut row_call = Vec::with_capacity(n);
    let mut calls: Vec<CallDelta> = Vec::new();
    let mut call_index: HashMap<(&str, &str), u32> = HashMap::new();
    let mut counts: BatchCounts = Vec::new();
    let mut row_count = Vec::with_capacity(n);
    let mut count_index: HashMap<(&str, i64, &str, &str, u8, u8), u32> = HashMap::new();
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    let mut metrics = Vec::new();

    for (row, tr) in records.iter().enumerate() {
        let r = &tr.record;
        let t = r.timestamp.as_nanos();
        min_ts = min_ts.min(t);
        max_ts = max_ts.max(t);
        ids.push(r.id);
        ts.push(t);
        level.push(r.level.code());
        category.push(r.category.code());
        match &r.data {
            Some(map) => {
                data.push(Some(
                    serde_json::to_string(map).map_err(|e| Error::Corrupt(e.to_string()))?,
                ));
                let mut text = String::new();
                map.values().for_each(|v| collect_search_text(v, &mut text));
                search.push(Some(text));
            }
            None => {
                data.push(None);
                search.push(None);
            }
        }
        let idx = *call_index
            .entry((tr.tenant.as_str(), r.call_id.as_str()))
            .or_insert_with(|| {
                calls.push(CallDelta::new(&tr.tenant, &r.call_id, t));
                u32::try_from(calls.len() - 1).unwrap_or(u32::MAX)
            });
        calls[idx as usize].observe(r);
        row_call.push((idx, r.level.code()));
        if let Some(m) = MetricRow::of(
            u32::try_from(row).unwrap_or(u32::MAX),
            &calls[idx as usize].key,
            r,
        ) {
            metrics.push(m);
        }
        // Keys repeat across a batch: look them up borrowed, own them once.
        let agent = r.agent_id.as_deref().unwrap_or_default();
        let borrowed = (
            tr.tenant.as_str(),
            minute_of(t),
            agent,
            r.event.as_str(),
            r.level.code(),
            r.category.code(),
        );
        let i = *count_index.entry(borrowed).or_insert_with(|| {
            counts.push((
                CountKey {
                    tenant: tr.tenant.clone(),
                    minute: borrowed.1,
                    agent_id: agent.to_owned(),
                    event: r.event.clone(),
                    level: borrowed.4,
                    category: borrowed.5,
                },
                0,
            ));
            u32::try_from(counts.len() - 1).unwrap_or(u32::MAX)
        });
        counts[i as usize].1 += 1;
        row_count.push(i);
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            FixedSizeBinaryArray::try_from_iter(ids.iter().map(Uuid::as_bytes))
                .or_else(|_| {
                    FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                        std::iter::empty::<Option<&[u8]>>(),
                        16,
                    )
                })
                .map_err(|e| Error::Corrupt(e.to_string()))?,
        ),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.tenant.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.record.call_id.as_str()),
        )),
        Arc::new(Int64Array::from(ts)),
        Arc::new(UInt8Array::from(level)),
        Arc::new(UInt8Array::from(category)),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.record.event.as_str()),
        )),
        Arc::new(
            records
                .iter()
                .map(|r| r.record.agent_id.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| r.record.trace_id.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(
            records
                .iter()
                .map(|r| r.record.span_id.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(StringArray::from(data)),
        Arc::new(StringArray::from(search)),
        Arc::new(Int64Array::new_null(n)),
    ];
    let batch =
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(PreparedBatch {
        ids,
        batch,
        row_call,
        calls,
        counts,
        row_count,
        min_ts,
        max_ts,
        metrics,
        spans: None,
    })
}

/// `batch` (a prepared batch, or rows of one) with its `seq` column numbered from
/// `first`, one per row.
///
/// # Errors
/// The batch does not have the `logs` columns (a bug).
pub(crate) fn with_seq(batch: &RecordBatch, first: i64) -> Result<RecordBatch> {
    let n = i64::try_from(batch.num_rows()).map_err(|e| Error::Corrupt(e.to_string()))?;
    let mut columns = batch.columns().to_vec();
    let last = columns
        .last_mut()
        .ok_or_else(|| Error::Corrupt("a batch without columns".into()))?;
    *last = Arc::new(Int64Array::from_iter_values(first..first + n));
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| Error::Corrupt(e.to_string()))
}
