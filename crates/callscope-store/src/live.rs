//! Live streams' side of the store: every committed record carries a commit sequence
//! number (`logs.seq`), and the writer hands what each group commit stored to the
//! streams watching it, without ever waiting for them.
//!
//! # Order and resume
//!
//! The single writer numbers records as it appends them, continuing from the largest
//! stored number when the file is opened, so `seq` is the commit order across groups
//! and restarts. A stream sends records in `seq` order and remembers the last `seq` it
//! sent; resuming after a record means "every matching record with a larger `seq`",
//! which [`Store::stream_page`] reads from the table and the live channel then
//! continues. A stream subscribes before it reads its backlog and drops live records
//! whose `seq` it already sent, so nothing committed between the two is lost or sent
//! twice.
//!
//! # Fan-out
//!
//! After a group's `COMMIT` returns, the writer looks up who watches each stored record
//! (one channel per tenant for the tenant-wide streams, one per call for the per-call
//! streams, created on first subscription and removed with the last) and sends each
//! channel that group's records, in `seq` order, as shared [`LiveRecord`]s. Records
//! nobody watches cost one map look-up; with no stream open at all, one atomic load per
//! group. Sending on a [`broadcast`] channel never blocks: a receiver that falls more
//! than [`TENANT_CHANNEL_BATCHES`] (per call: [`CALL_CHANNEL_BATCHES`]) messages behind finds the oldest ones gone
//! ([`Lag`]), which is how a stream learns its client is too slow.
//!
//! A record's JSON, the one the log list returns, is built once, by the first stream
//! that sends it, not by the writer.

use std::{
    collections::HashMap,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use callscope_model::{Category, Level, LogRecord, Timestamp};
use duckdb::arrow::{
    array::{Array, FixedSizeBinaryArray, Int64Array, StringArray, UInt8Array},
    record_batch::RecordBatch,
};
use parking_lot::Mutex;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{Error, Result, StreamFilter};

/// How many messages a tenant's channel (the tenant-wide streams') holds for a
/// receiver that has not read them. One message is one group commit's records for that
/// channel, at most [`MAX_BATCH_RECORDS`] of them, so a channel retains at most
/// `TENANT_CHANNEL_BATCHES × MAX_BATCH_RECORDS` records for its slowest reader.
pub const TENANT_CHANNEL_BATCHES: usize = 128;

/// The same for a call's channel. A call's records come a few a second, so a
/// per-call stream 64 commits behind has stopped reading; the smaller ring also keeps
/// an idle per-call stream cheap (a slot is allocated up front for every message).
pub const CALL_CHANNEL_BATCHES: usize = 64;

/// The most records one channel message carries; a larger group is split.
pub const MAX_BATCH_RECORDS: usize = 256;

/// One committed record, as the streams see it.
#[derive(Debug)]
pub struct LiveRecord {
    /// The commit sequence number.
    pub seq: i64,
    /// The record's id (the SSE event id).
    pub id: Uuid,
    /// Nanoseconds since the Unix epoch.
    pub ts: i64,
    /// The level.
    pub level: Level,
    /// The category.
    pub category: Category,
    /// The event code.
    pub event: String,
    /// The call.
    pub call_id: String,
    /// The agent.
    pub agent_id: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
    /// The `data` object as stored (JSON text).
    data: Option<String>,
    json: OnceLock<std::result::Result<String, String>>,
}

impl LiveRecord {
    /// The record as the log list returns it, serialized as JSON. Built once and
    /// shared by every stream that sends it.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the stored `data` is not a JSON object.
    pub fn json(&self) -> Result<&str> {
        self.json
            .get_or_init(|| {
                let data = self
                    .data
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let record = LogRecord {
                    id: self.id,
                    timestamp: Timestamp(self.ts),
                    level: self.level,
                    category: self.category,
                    event: self.event.clone(),
                    call_id: self.call_id.clone(),
                    agent_id: self.agent_id.clone(),
                    trace_id: self.trace_id.clone(),
                    span_id: self.span_id.clone(),
                    data,
                };
                serde_json::to_string(&record).map_err(|e| e.to_string())
            })
            .as_deref()
            .map_err(|e| Error::Corrupt(e.clone()))
    }

    /// Does the record pass `filter`?
    #[must_use]
    pub fn matches(&self, filter: &StreamFilter) -> bool {
        let f = &filter.log;
        (f.categories.is_empty() || f.categories.contains(&self.category))
            && (f.levels.is_empty() || f.levels.contains(&self.level))
            && (f.events.is_empty() || f.events.contains(&self.event))
            && f.min_level.is_none_or(|m| self.level >= m)
            && (filter.call_ids.is_empty() || filter.call_ids.contains(&self.call_id))
            && (filter.agent_ids.is_empty()
                || self
                    .agent_id
                    .as_ref()
                    .is_some_and(|a| filter.agent_ids.contains(a)))
    }

    /// Reads a row of [`STREAM_COLUMNS`].
    pub(crate) fn from_row(row: &duckdb::Row<'_>) -> duckdb::Result<Result<LiveRecord>> {
        let id: String = row.get(1)?;
        let level: u8 = row.get(3)?;
        let category: u8 = row.get(4)?;
        Ok(Ok(LiveRecord {
            seq: row.get(0)?,
            id: match crate::query::parse_id(&id) {
                Ok(id) => id,
                Err(e) => return Ok(Err(e)),
            },
            ts: row.get(2)?,
            level: match Level::from_code(level) {
                Some(l) => l,
                None => return Ok(Err(Error::Corrupt(format!("level code {level}")))),
            },
            category: match Category::from_code(category) {
                Some(c) => c,
                None => return Ok(Err(Error::Corrupt(format!("category code {category}")))),
            },
            event: row.get(5)?,
            call_id: row.get(6)?,
            agent_id: row.get(7)?,
            trace_id: row.get(8)?,
            span_id: row.get(9)?,
            data: row.get(10)?,
            json: OnceLock::new(),
        }))
    }
}

/// The columns [`LiveRecord::from_row`] reads.
pub(crate) const STREAM_COLUMNS: &str =
    "seq, id::VARCHAR, ts, level, category, event, call_id, agent_id, trace_id, span_id, data";

/// One channel message: a group commit's records for one channel, in `seq` order.
pub type LiveBatch = Arc<[Arc<LiveRecord>]>;

/// Why [`Subscription::recv`] returned no records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// The receiver fell so far behind that records it had not read were dropped.
    Behind,
    /// The store is shut down: nothing more will be committed.
    Closed,
}

/// A channel per tenant (tenant-wide streams) and per call (per-call streams).
#[derive(Default)]
struct TenantTopics {
    all: Option<broadcast::Sender<LiveBatch>>,
    calls: HashMap<String, broadcast::Sender<LiveBatch>>,
}

/// Who watches which records; the writer publishes through it.
#[derive(Default)]
pub(crate) struct Hub {
    topics: Mutex<HashMap<Arc<str>, TenantTopics>>,
    /// Open subscriptions, so a group nobody watches costs one load.
    open: AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
}

impl Hub {
    /// A receiver of `tenant`'s records (of `call_id` only, when given).
    pub(crate) fn subscribe(self: &Arc<Self>, tenant: &str, call_id: Option<&str>) -> Subscription {
        let mut topics = self.topics.lock();
        let rx = if self.closed.load(Ordering::Acquire) {
            broadcast::channel(1).1
        } else {
            let t = match topics.get_mut(tenant) {
                Some(t) => t,
                None => topics.entry(Arc::from(tenant)).or_default(),
            };
            let tx = match call_id {
                None => t
                    .all
                    .get_or_insert_with(|| broadcast::channel(TENANT_CHANNEL_BATCHES).0),
                Some(c) => t
                    .calls
                    .entry(c.to_owned())
                    .or_insert_with(|| broadcast::channel(CALL_CHANNEL_BATCHES).0),
            };
            tx.subscribe()
        };
        self.open.fetch_add(1, Ordering::AcqRel);
        Subscription {
            rx: Some(rx),
            hub: self.clone(),
            tenant: Arc::from(tenant),
            call_id: call_id.map(str::to_owned),
        }
    }

    /// Ends every subscription: their receivers report [`Lag::Closed`].
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.topics.lock().clear();
    }

    fn unsubscribe(&self, tenant: &str, call_id: Option<&str>) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        let mut topics = self.topics.lock();
        let Some(t) = topics.get_mut(tenant) else {
            return;
        };
        match call_id {
            None => {
                if t.all.as_ref().is_some_and(|tx| tx.receiver_count() == 0) {
                    t.all = None;
                }
            }
            Some(c) => {
                if t.calls.get(c).is_some_and(|tx| tx.receiver_count() == 0) {
                    t.calls.remove(c);
                }
            }
        }
        if t.all.is_none() && t.calls.is_empty() {
            topics.remove(tenant);
        }
    }

    /// Sends the records of `batches` (as appended to `logs`, `seq` last) to the
    /// channels that watch them. Never blocks on a receiver.
    /// Is any stream open?
    pub(crate) fn has_subscribers(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }

    pub(crate) fn publish(&self, batches: &[RecordBatch]) {
        if self.open.load(Ordering::Acquire) == 0 {
            return;
        }
        let topics = self.topics.lock();
        if topics.is_empty() {
            return;
        }
        // Per channel, its records in `seq` order (batches and rows are in that order).
        let mut out: Vec<(&broadcast::Sender<LiveBatch>, Vec<Arc<LiveRecord>>)> = Vec::new();
        let mut slot: HashMap<*const broadcast::Sender<LiveBatch>, usize> = HashMap::new();
        for batch in batches {
            let Some(cols) = Columns::of(batch) else {
                tracing::error!("A committed batch lacks the columns live streams read.");
                continue;
            };
            for row in 0..batch.num_rows() {
                let Some(t) = topics.get(cols.tenant.value(row)) else {
                    continue;
                };
                let call = t.calls.get(cols.call_id.value(row));
                if t.all.is_none() && call.is_none() {
                    continue;
                }
                let Some(record) = cols.record(row) else {
                    continue;
                };
                let record = Arc::new(record);
                for tx in t.all.iter().chain(call) {
                    let i = *slot.entry(std::ptr::from_ref(tx)).or_insert_with(|| {
                        out.push((tx, Vec::new()));
                        out.len() - 1
                    });
                    out[i].1.push(record.clone());
                }
            }
        }
        for (tx, records) in out {
            for chunk in records.chunks(MAX_BATCH_RECORDS) {
                // An error means every receiver is gone: nobody to send to.
                let _ = tx.send(Arc::from(chunk));
            }
        }
    }
}

/// The arrays of an appended batch that a [`LiveRecord`] is built from.
struct Columns<'a> {
    id: &'a FixedSizeBinaryArray,
    tenant: &'a StringArray,
    call_id: &'a StringArray,
    ts: &'a Int64Array,
    level: &'a UInt8Array,
    category: &'a UInt8Array,
    event: &'a StringArray,
    agent_id: &'a StringArray,
    trace_id: &'a StringArray,
    span_id: &'a StringArray,
    data: &'a StringArray,
    seq: &'a Int64Array,
}

impl<'a> Columns<'a> {
    fn of(b: &'a RecordBatch) -> Option<Self> {
        fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Option<&'a T> {
            b.column_by_name(name)?.as_any().downcast_ref::<T>()
        }
        Some(Self {
            id: col(b, "id")?,
            tenant: col(b, "tenant")?,
            call_id: col(b, "call_id")?,
            ts: col(b, "ts")?,
            level: col(b, "level")?,
            category: col(b, "category")?,
            event: col(b, "event")?,
            agent_id: col(b, "agent_id")?,
            trace_id: col(b, "trace_id")?,
            span_id: col(b, "span_id")?,
            data: col(b, "data")?,
            seq: col(b, "seq")?,
        })
    }

    fn record(&self, row: usize) -> Option<LiveRecord> {
        let text = |a: &StringArray| (!a.is_null(row)).then(|| a.value(row).to_owned());
        Some(LiveRecord {
            seq: self.seq.value(row),
            id: Uuid::from_slice(self.id.value(row)).ok()?,
            ts: self.ts.value(row),
            level: Level::from_code(self.level.value(row))?,
            category: Category::from_code(self.category.value(row))?,
            event: self.event.value(row).to_owned(),
            call_id: self.call_id.value(row).to_owned(),
            agent_id: text(self.agent_id),
            trace_id: text(self.trace_id),
            span_id: text(self.span_id),
            data: text(self.data),
            json: OnceLock::new(),
        })
    }
}

/// A live stream's receiver of newly committed records; see [`Store::subscribe`].
pub struct Subscription {
    rx: Option<broadcast::Receiver<LiveBatch>>,
    hub: Arc<Hub>,
    tenant: Arc<str>,
    call_id: Option<String>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("tenant", &self.tenant)
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next records committed for this subscription, in `seq` order.
    ///
    /// # Errors
    /// [`Lag::Behind`] once records this receiver had not read were dropped (it stays
    /// usable, but the caller has a gap); [`Lag::Closed`] after the store shut down.
    pub async fn recv(&mut self) -> std::result::Result<LiveBatch, Lag> {
        let rx = self.rx.as_mut().ok_or(Lag::Closed)?;
        rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(_) => Lag::Behind,
            broadcast::error::RecvError::Closed => Lag::Closed,
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver goes first, so the channel's count no longer includes it.
        drop(self.rx.take());
        self.hub.unsubscribe(&self.tenant, self.call_id.as_deref());
    }
}

/// The `WHERE` condition (and its parameters) for `tenant`'s records, of `call_id`
/// when given, that pass `filter`. `None` when the tenant has no such call.
fn stream_where(
    conn: &duckdb::Connection,
    tenant: &str,
    call_id: Option<&str>,
    filter: &StreamFilter,
) -> Result<Option<(String, Vec<duckdb::types::Value>)>> {
    use duckdb::types::Value;

    use crate::query::push_in;
    let (mut sql, mut params) = match call_id {
        Some(call_id) => {
            let Some(window) = crate::query::call_window(conn, tenant, call_id)? else {
                return Ok(None);
            };
            crate::query::call_log_where(tenant, call_id, window, &filter.log)
        }
        None => {
            let mut sql = String::from("tenant = ?");
            let mut params = vec![Value::Text(tenant.to_owned())];
            let f = &filter.log;
            push_in(
                &mut sql,
                &mut params,
                "category",
                f.categories.iter().map(|c| Value::UTinyInt(c.code())),
            );
            push_in(
                &mut sql,
                &mut params,
                "level",
                f.levels.iter().map(|l| Value::UTinyInt(l.code())),
            );
            push_in(
                &mut sql,
                &mut params,
                "event",
                f.events.iter().map(|e| Value::Text(e.clone())),
            );
            if let Some(min) = f.min_level {
                sql.push_str(" AND level >= ?");
                params.push(Value::UTinyInt(min.code()));
            }
            (sql, params)
        }
    };
    push_in(
        &mut sql,
        &mut params,
        "call_id",
        filter.call_ids.iter().map(|c| Value::Text(c.clone())),
    );
    push_in(
        &mut sql,
        &mut params,
        "agent_id",
        filter.agent_ids.iter().map(|a| Value::Text(a.clone())),
    );
    Ok(Some((sql, params)))
}

/// Up to `limit` of the matching records with `seq` above `after_seq`, in `seq` order;
/// `None` when the tenant has no call `call_id`.
pub(crate) fn page(
    conn: &duckdb::Connection,
    tenant: &str,
    call_id: Option<&str>,
    filter: &StreamFilter,
    after_seq: i64,
    limit: usize,
) -> Result<Option<Vec<LiveRecord>>> {
    let Some((base, mut params)) = stream_where(conn, tenant, call_id, filter)? else {
        return Ok(None);
    };
    params.push(duckdb::types::Value::BigInt(after_seq));
    let sql = format!(
        "SELECT {STREAM_COLUMNS} FROM logs WHERE {base} AND seq > ? ORDER BY seq LIMIT {limit}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        duckdb::params_from_iter(params.iter()),
        LiveRecord::from_row,
    )?;
    rows.map(|r| r.map_err(Error::from).and_then(|x| x))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The `seq` of record `id` among `tenant`'s records (of `call_id` when given);
/// `None` when there is no such record (or no such call).
pub(crate) fn seq_of(
    conn: &duckdb::Connection,
    tenant: &str,
    call_id: Option<&str>,
    id: Uuid,
) -> Result<Option<i64>> {
    use duckdb::OptionalExt as _;
    let Some((base, mut params)) = stream_where(conn, tenant, call_id, &StreamFilter::default())?
    else {
        return Ok(None);
    };
    params.push(duckdb::types::Value::Text(id.to_string()));
    Ok(conn
        .prepare_cached(&format!(
            "SELECT max(seq) FROM logs WHERE {base} AND id = ?::UUID HAVING count(*) > 0"
        ))?
        .query_row(duckdb::params_from_iter(params.iter()), |r| {
            r.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogFilter;

    fn record(level: Level, event: &str, call: &str, agent: Option<&str>) -> LiveRecord {
        LiveRecord {
            seq: 1,
            id: Uuid::nil(),
            ts: 0,
            level,
            category: Category::Agent,
            event: event.into(),
            call_id: call.into(),
            agent_id: agent.map(str::to_owned),
            trace_id: None,
            span_id: None,
            data: Some(r#"{"text":"hi","n":1}"#.into()),
            json: OnceLock::new(),
        }
    }

    #[test]
    fn filters_match_as_the_log_list() {
        let r = record(Level::Warning, "E1", "c1", Some("a1"));
        let f = |log: LogFilter, calls: &[&str], agents: &[&str]| StreamFilter {
            log,
            call_ids: calls.iter().map(|s| (*s).to_owned()).collect(),
            agent_ids: agents.iter().map(|s| (*s).to_owned()).collect(),
        };
        assert!(r.matches(&StreamFilter::default()));
        let min = |l| LogFilter {
            min_level: Some(l),
            ..LogFilter::default()
        };
        assert!(r.matches(&f(min(Level::Warning), &[], &[])));
        assert!(!r.matches(&f(min(Level::Error), &[], &[])));
        let levels = LogFilter {
            levels: vec![Level::Info],
            ..LogFilter::default()
        };
        assert!(!r.matches(&f(levels, &[], &[])));
        let events = LogFilter {
            events: vec!["E2".into(), "E1".into()],
            ..LogFilter::default()
        };
        assert!(r.matches(&f(events, &[], &[])));
        let cats = LogFilter {
            categories: vec![Category::User],
            ..LogFilter::default()
        };
        assert!(!r.matches(&f(cats, &[], &[])));
        assert!(r.matches(&f(LogFilter::default(), &["c0", "c1"], &["a1"])));
        assert!(!r.matches(&f(LogFilter::default(), &["c0"], &[])));
        assert!(!r.matches(&f(LogFilter::default(), &[], &["a2"])));
        let no_agent = record(Level::Info, "E1", "c1", None);
        assert!(!no_agent.matches(&f(LogFilter::default(), &[], &["a1"])));
    }

    #[test]
    fn json_is_the_api_record() {
        let r = record(Level::Info, "GREETING_SENT", "c1", None);
        let v: serde_json::Value = serde_json::from_str(r.json().unwrap()).unwrap();
        assert_eq!(v["event"], "GREETING_SENT");
        assert_eq!(v["data"]["text"], "hi");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["id"], Uuid::nil().to_string());
    }

    #[tokio::test]
    async fn subscriptions_come_and_go() {
        let hub = Arc::new(Hub::default());
        let a = hub.subscribe("t", Some("c"));
        let b = hub.subscribe("t", None);
        assert_eq!(hub.open.load(Ordering::Relaxed), 2);
        drop(a);
        assert!(hub.topics.lock()["t"].calls.is_empty());
        drop(b);
        assert!(hub.topics.lock().is_empty());
        assert_eq!(hub.open.load(Ordering::Relaxed), 0);
        let mut c = hub.subscribe("t", None);
        hub.close();
        assert_eq!(c.recv().await.err(), Some(Lag::Closed));
        drop(c);
        let mut d = hub.subscribe("t", None);
        assert_eq!(d.recv().await.err(), Some(Lag::Closed));
    }
}
