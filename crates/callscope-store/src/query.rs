//! Read queries: one call's records, page by page.

use callscope_model::{Category, Level, LogRecord, Timestamp};
use duckdb::{Connection, OptionalExt, types::Value};
use uuid::Uuid;

use crate::{Error, LogFilter, LogQuery, Order, PageAt, Result};

/// `ASC` or `DESC`.
pub(crate) fn order_sql(order: Order) -> &'static str {
    match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    }
}

/// One page of a call's records.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// The records, in the query's order.
    pub records: Vec<LogRecord>,
    /// More records exist past this page in its direction.
    pub has_more: bool,
    /// Records matching the filters, on every page.
    pub total_count: u64,
    /// The page number, for page-number queries.
    pub current_page: Option<u64>,
    /// Pages at this limit, for page-number queries.
    pub total_pages: Option<u64>,
}

/// A record or comment id as read back with `id::VARCHAR`.
pub(crate) fn parse_id(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| Error::Corrupt(e.to_string()))
}

pub(crate) const RECORD_COLUMNS: &str =
    "id::VARCHAR, ts, level, category, event, call_id, agent_id, trace_id, span_id, data";

pub(crate) fn read_record(row: &duckdb::Row<'_>) -> duckdb::Result<Result<LogRecord>> {
    let id: String = row.get(0)?;
    let ts: i64 = row.get(1)?;
    let level: u8 = row.get(2)?;
    let category: u8 = row.get(3)?;
    let data: Option<String> = row.get(9)?;
    let build = || -> Result<LogRecord> {
        Ok(LogRecord {
            id: parse_id(&id)?,
            timestamp: Timestamp(ts),
            level: Level::from_code(level)
                .ok_or_else(|| Error::Corrupt(format!("level code {level}")))?,
            category: Category::from_code(category)
                .ok_or_else(|| Error::Corrupt(format!("category code {category}")))?,
            event: row.get(4)?,
            call_id: row.get(5)?,
            agent_id: row.get(6)?,
            trace_id: row.get(7)?,
            span_id: row.get(8)?,
            data: data
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| Error::Corrupt(e.to_string()))?,
        })
    };
    Ok(build())
}

/// Appends `AND column IN (?, ?, …)` for a non-empty list.
pub(crate) fn push_in(
    sql: &mut String,
    params: &mut Vec<Value>,
    column: &str,
    values: impl ExactSizeIterator<Item = Value>,
) {
    if values.len() == 0 {
        return;
    }
    sql.push_str(" AND ");
    sql.push_str(column);
    sql.push_str(" IN (");
    for (i, v) in values.enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('?');
        params.push(v);
    }
    sql.push(')');
}

/// The call's time window (first and last record time); `None` when the tenant has
/// no such call. While the journal holds unfolded deltas it reads the journal beside
/// `calls`, so it covers every acknowledged record without waiting for the writer to
/// fold the journal; otherwise `calls` alone already does.
pub(crate) fn call_window(
    conn: &Connection,
    tenant: &str,
    call_id: &str,
) -> Result<Option<(i64, i64)>> {
    let key = crate::summary::call_key(tenant, call_id);
    // Deltas committed after this check belong to requests acknowledged after the read
    // began; one seen here is either still in the journal below or already in `calls`.
    if !crate::summary::journal_pending(conn)? {
        return Ok(conn
            .prepare_cached(CALL_WINDOW)?
            .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?);
    }
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .prepare_cached(CALL_WINDOW_WITH_JOURNAL)?
        .query_row([&key, &key], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(lo.zip(hi))
}

/// A call's time window when the journal is empty. Its filter is the `call_key`
/// equality alone, the only shape DuckDB answers from the column's ART index.
const CALL_WINDOW: &str = "SELECT first_ts, last_ts FROM calls WHERE call_key = ?";

/// A call's time window from `calls` and the journal together. One statement, so both
/// tables are read as of one moment: a fold moves deltas from the journal into `calls`
/// atomically. The `calls` branch is still answered from the `call_key` index.
const CALL_WINDOW_WITH_JOURNAL: &str = "SELECT min(first_ts), max(last_ts) FROM ( \
     SELECT first_ts, last_ts FROM calls WHERE call_key = ? \
     UNION ALL SELECT first_ts, last_ts FROM call_journal WHERE call_key = ?)";

/// The `WHERE` condition (with its parameters) selecting one call's records that
/// match `f`.
pub(crate) fn call_log_where(
    tenant: &str,
    call_id: &str,
    (first_ts, last_ts): (i64, i64),
    f: &LogFilter,
) -> (String, Vec<Value>) {
    // The call's time window prunes the scan to the row groups written during the call.
    let mut base = String::from("tenant = ? AND call_id = ? AND ts BETWEEN ? AND ?");
    let mut params: Vec<Value> = vec![
        Value::Text(tenant.to_owned()),
        Value::Text(call_id.to_owned()),
        Value::BigInt(first_ts),
        Value::BigInt(last_ts),
    ];
    push_in(
        &mut base,
        &mut params,
        "category",
        f.categories.iter().map(|c| Value::UTinyInt(c.code())),
    );
    push_in(
        &mut base,
        &mut params,
        "level",
        f.levels.iter().map(|l| Value::UTinyInt(l.code())),
    );
    push_in(
        &mut base,
        &mut params,
        "event",
        f.events.iter().map(|e| Value::Text(e.clone())),
    );
    if let Some(min) = f.min_level {
        base.push_str(" AND level >= ?");
        params.push(Value::UTinyInt(min.code()));
    }
    (base, params)
}

/// Reads a page of one call's records; `None` when the tenant has no such call.
pub(crate) fn call_logs(
    conn: &Connection,
    tenant: &str,
    call_id: &str,
    q: &LogQuery,
) -> Result<Option<LogPage>> {
    let Some(window) = call_window(conn, tenant, call_id)? else {
        return Ok(None);
    };
    let (base, params) = call_log_where(tenant, call_id, window, &q.filter);

    let limit = u64::from(q.limit);
    let count = || -> Result<u64> {
        let n: i64 = conn
            .prepare_cached(&format!("SELECT count(*) FROM logs WHERE {base}"))?
            .query_row(duckdb::params_from_iter(params.iter()), |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    // The page is read without counting: a `count(*) OVER ()` beside it makes DuckDB
    // materialise every column of every match before the top-N (BENCHMARKS.md, "per-call
    // page"). The count is a separate scan of three narrow columns, run only when the
    // page itself doesn't tell it.
    let fetch = |extra: &str,
                 extra_params: Vec<Value>,
                 order: Order,
                 n: u64,
                 offset: u64|
     -> Result<Vec<LogRecord>> {
        let dir = order_sql(order);
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM logs WHERE {base}{extra} \
             ORDER BY ts {dir}, id {dir} LIMIT {n} OFFSET {offset}"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let all: Vec<Value> = params.iter().cloned().chain(extra_params).collect();
        let rows = stmt.query_map(duckdb::params_from_iter(all.iter()), read_record)?;
        rows.map(|r| r.map_err(Error::from).and_then(|x| x))
            .collect::<Result<Vec<_>>>()
    };

    match q.at {
        PageAt::Page(page) => {
            let offset = page.saturating_sub(1).saturating_mul(limit);
            let mut records = fetch("", vec![], q.order, limit + 1, offset)?;
            let has_more = records.len() as u64 > limit;
            records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            // A first page that holds every match has counted them.
            let total_count = if offset == 0 && !has_more {
                records.len() as u64
            } else {
                count()?
            };
            Ok(Some(LogPage {
                has_more,
                records,
                total_count,
                current_page: Some(page),
                total_pages: Some(total_count.div_ceil(limit)),
            }))
        }
        PageAt::After(cursor) | PageAt::Before(cursor) => {
            let before = matches!(q.at, PageAt::Before(_));
            // One scan counts the matches and finds the cursor, which must be one of them.
            let (total_count, cursor_ts): (i64, Option<i64>) = conn
                .prepare_cached(&format!(
                    "SELECT count(*), max(ts) FILTER (WHERE id = ?::UUID) FROM logs WHERE {base}"
                ))?
                .query_row(
                    duckdb::params_from_iter(
                        std::iter::once(Value::Text(cursor.to_string()))
                            .chain(params.iter().cloned()),
                    ),
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
            let total_count = u64::try_from(total_count).unwrap_or(0);
            let Some(cursor_ts) = cursor_ts else {
                return Err(Error::CursorNotFound);
            };
            // Walk away from the cursor: forwards in the query's order for `after`,
            // backwards for `before` (then flip the page back into the query's order).
            let walk = if before { q.order.reverse() } else { q.order };
            let cmp = match walk {
                Order::Asc => ">",
                Order::Desc => "<",
            };
            let extra = format!(" AND (ts {cmp} ? OR (ts = ? AND id {cmp} ?::UUID))");
            let extra_params = vec![
                Value::BigInt(cursor_ts),
                Value::BigInt(cursor_ts),
                Value::Text(cursor.to_string()),
            ];
            let mut records = fetch(&extra, extra_params, walk, limit + 1, 0)?;
            let has_more = records.len() as u64 > limit;
            records.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            if before {
                records.reverse();
            }
            Ok(Some(LogPage {
                records,
                has_more,
                total_count,
                current_page: None,
                total_pages: None,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use callscope_model::{Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp};

    use super::{CALL_WINDOW, CALL_WINDOW_WITH_JOURNAL};
    use crate::{Store, StoreConfig, summary::call_key};

    fn records(call: &str) -> Vec<TenantRecord> {
        (0..3)
            .map(|n| TenantRecord {
                tenant: "acme".into(),
                record: LogRecord {
                    id: {
                        let mut h = RecordIdHasher::new();
                        h.str(call).i64(n);
                        h.finish()
                    },
                    timestamp: Timestamp(1_790_000_000_000_000_000 + n),
                    level: Level::Info,
                    category: Category::Agent,
                    event: "AGENT_MESSAGE_SENT".into(),
                    call_id: call.into(),
                    agent_id: None,
                    trace_id: None,
                    span_id: None,
                    data: None,
                },
            })
            .collect()
    }

    /// DuckDB's plan for `sql` with every parameter bound to `key`.
    async fn plan(store: &Store, sql: &'static str, key: String) -> String {
        store
            .read(move |c| {
                let explain = format!("EXPLAIN ANALYZE {sql}");
                let params = vec![key; sql.matches('?').count()];
                Ok(c.prepare(&explain)?
                    .query_row(duckdb::params_from_iter(params.iter()), |r| {
                        r.get::<_, String>(1)
                    })?)
            })
            .await
            .unwrap()
    }

    /// Both statements the per-call page finds its call with read `calls` through the
    /// `call_key` index, also in a file from before the key, which gets it on open.
    #[tokio::test]
    async fn the_call_window_statements_use_the_call_key_index() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("calls.duckdb"),
            ..StoreConfig::default()
        };
        {
            let store = Store::open(&config).unwrap();
            for i in 0..20 {
                store.append(records(&format!("call-{i}"))).await.unwrap();
            }
            // Back to a version 2 file: no index, no key.
            store
                .read(|c| {
                    c.execute_batch(
                        "DROP INDEX calls_call_key; UPDATE calls SET call_key = NULL; \
                         UPDATE meta SET value = '2' WHERE key = 'schema_version';",
                    )?;
                    Ok(())
                })
                .await
                .unwrap();
            store.shutdown().await.unwrap();
        }
        let store = Store::open(&config).unwrap();
        for sql in [CALL_WINDOW, CALL_WINDOW_WITH_JOURNAL] {
            let plan = plan(&store, sql, call_key("acme", "call-7")).await;
            assert!(plan.contains("Index Scan"), "{sql}:\n{plan}");
        }
        store.shutdown().await.unwrap();
    }
}
