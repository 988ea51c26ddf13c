//! Search across a tenant's calls: filters, case-insensitive text, one page of
//! records, and the event / level / category counts of every match.
//!
//! Searches without text or call filters take their counts from `log_counts` (see
//! [`crate::rollup`]) and read records only for the page and for the partial minutes at
//! the ends of the time range.
//!
//! Text search runs over the `search` column, which ingest fills with the lower-cased
//! text of every `data` value (the message included), one value per line. The needle is
//! lower-cased the same way and matched as a substring with DuckDB's `contains`, a
//! vectorised byte search over a column that holds only the text worth searching. The
//! column is stored uncompressed: it takes more disk than DuckDB's default FSST
//! compression, and a scan of it is faster, because no string is decoded before it is
//! searched (BENCHMARKS.md has the figures). Files created before this layout keep
//! their compressed column; their searches are correct, only slower.
//! The other filters are evaluated first where DuckDB can: `ts` bounds prune whole
//! row groups by their min/max statistics before any string is read.

use std::collections::BTreeMap;

use callscope_model::{Category, Level, LogRecord};
use duckdb::{Connection, types::Value};

use crate::{
    Error, Order, Result, SearchFilter, SearchQuery,
    query::{RECORD_COLUMNS, push_in, read_record},
    rollup::{minute_start, whole_minutes},
    summary::Sources,
    textindex::{self, Bitmaps, Narrowed},
};

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResult {
    /// The page of records.
    pub records: Vec<LogRecord>,
    /// Every matching record, on all pages.
    pub total_count: u64,
    /// Matches per event code.
    pub event_counts: BTreeMap<String, u64>,
    /// Matches per level name (levels without matches are absent).
    pub level_counts: BTreeMap<String, u64>,
    /// Matches per category name (categories without matches are absent).
    pub category_counts: BTreeMap<String, u64>,
}

/// Appends the record filters other than tenant and time: calls, agents, events,
/// categories, levels and text.
fn push_record_filters(sql: &mut String, params: &mut Vec<Value>, f: &SearchFilter) {
    let texts = |v: &[String]| {
        v.iter()
            .map(|s| Value::Text(s.clone()))
            .collect::<Vec<_>>()
            .into_iter()
    };
    push_in(sql, params, "call_id", texts(&f.call_ids));
    push_in(sql, params, "agent_id", texts(&f.agent_ids));
    push_in(sql, params, "event", texts(&f.events));
    push_in(
        sql,
        params,
        "category",
        f.categories.iter().map(|c| Value::UTinyInt(c.code())),
    );
    push_in(
        sql,
        params,
        "level",
        f.levels.iter().map(|l| Value::UTinyInt(l.code())),
    );
    if let Some(min) = f.min_level {
        sql.push_str(" AND level >= ?");
        params.push(Value::UTinyInt(min.code()));
    }
    if let Some(text) = needle(f) {
        sql.push_str(" AND contains(search, ?)");
        params.push(Value::Text(text.to_lowercase()));
    }
}

/// The search text, when there is one.
fn needle(f: &SearchFilter) -> Option<&str> {
    f.text.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

/// The `logs` condition for `tenant`'s records in `[lo, hi]` matching `f`.
fn logs_where(tenant: &str, lo: Option<i64>, hi: Option<i64>, f: &SearchFilter) -> Where {
    logs_where_in(None, tenant, lo, hi, f)
}

/// The same, over only the stretches of `logs` the text index left (`None`: all of it).
fn logs_where_in(
    narrowed: Option<&Narrowed>,
    tenant: &str,
    lo: Option<i64>,
    hi: Option<i64>,
    f: &SearchFilter,
) -> Where {
    let mut sql = String::from("tenant = ?");
    let mut params = vec![Value::Text(tenant.to_owned())];
    if let Some(lo) = lo {
        sql.push_str(" AND ts >= ?");
        params.push(Value::BigInt(lo));
    }
    if let Some(hi) = hi {
        sql.push_str(" AND ts <= ?");
        params.push(Value::BigInt(hi));
    }
    push_record_filters(&mut sql, &mut params, f);
    let (from, rid) = match narrowed {
        Some(n) if n.ranges.len() > 1 => (n.source(), "rid"),
        Some(n) => {
            sql.push_str(&n.condition());
            ("logs".to_owned(), "rowid")
        }
        None => ("logs".to_owned(), "rowid"),
    };
    Where {
        from,
        rid,
        sql,
        params,
    }
}

/// The `log_counts` condition for `tenant`'s counts in minutes `lo..=hi` matching `f`
/// (which has no call or text filter: counts don't know them).
fn counts_where(tenant: &str, (lo, hi): (i64, i64), f: &SearchFilter) -> Where {
    let mut sql = String::from("tenant = ? AND minute BETWEEN ? AND ?");
    let mut params = vec![
        Value::Text(tenant.to_owned()),
        Value::BigInt(lo),
        Value::BigInt(hi),
    ];
    push_record_filters(&mut sql, &mut params, f);
    Where {
        from: String::new(),
        rid: "rowid",
        sql,
        params,
    }
}

/// A `WHERE` condition and its parameters, and the `logs` rows it applies to.
struct Where {
    /// What to read `logs` from: the table, or the stretches the text index left.
    from: String,
    /// The column holding the row's `logs.rowid` in `from`.
    rid: &'static str,
    sql: String,
    params: Vec<Value>,
}

/// Matches per (event, level, category).
type Groups = Vec<(String, u8, u8, u64)>;

fn groups(conn: &Connection, sql: &str, params: &[Value]) -> Result<Groups> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u8>(1)?,
            r.get::<_, u8>(2)?,
            u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        ))
    })?;
    Ok(rows.collect::<duckdb::Result<_>>()?)
}

fn log_groups(conn: &Connection, w: &Where) -> Result<Groups> {
    groups(
        conn,
        &format!(
            "SELECT event, level, category, count(*) FROM {} WHERE {} GROUP BY ALL",
            w.from, w.sql
        ),
        &w.params,
    )
}

fn count_groups(conn: &Connection, w: &Where, sources: Sources) -> Result<Groups> {
    groups(
        conn,
        &format!(
            "SELECT event, level, category, sum(n)::BIGINT FROM {} WHERE {} GROUP BY ALL",
            sources.log_counts, w.sql
        ),
        &w.params,
    )
}

fn total(groups: &Groups) -> u64 {
    groups.iter().map(|g| g.3).sum()
}

/// Folds match groups into the result's counts.
fn add_groups(out: &mut SearchResult, groups: Groups) -> Result<()> {
    for (event, level, category, n) in groups {
        let level =
            Level::from_code(level).ok_or_else(|| Error::Corrupt(format!("level code {level}")))?;
        let category = Category::from_code(category)
            .ok_or_else(|| Error::Corrupt(format!("category code {category}")))?;
        out.total_count += n;
        *out.event_counts.entry(event).or_default() += n;
        *out.level_counts
            .entry(level.as_str().to_owned())
            .or_default() += n;
        *out.category_counts
            .entry(category.as_str().to_owned())
            .or_default() += n;
    }
    Ok(())
}

/// Reads the page: `size` records from `offset` in `order`, among `w`'s matches.
fn page(conn: &Connection, w: &Where, q: &SearchQuery) -> Result<Vec<LogRecord>> {
    let dir = match q.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let offset = q.page.saturating_mul(q.size);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM {} WHERE {} ORDER BY ts {dir}, id {dir} LIMIT {} OFFSET {offset}",
        w.from, w.sql, q.size
    ))?;
    let rows = stmt.query_map(duckdb::params_from_iter(w.params.iter()), read_record)?;
    rows.map(|r| r.map_err(Error::from).and_then(|x| x))
        .collect()
}

/// Runs `q` over `tenant`'s records; `index`: narrow text searches with the text index.
pub(crate) fn search(
    conn: &Connection,
    tenant: &str,
    q: &SearchQuery,
    index: Option<&Bitmaps>,
) -> Result<SearchResult> {
    // One snapshot for the counts and the page, however many statements they take.
    let tx = conn.unchecked_transaction()?;
    let sources = Sources::of(&tx)?;
    let f = &q.filter;
    let from = f.from.map(callscope_model::Timestamp::as_nanos);
    let to = f.to.map(callscope_model::Timestamp::as_nanos);
    let result = match whole_minutes(from, to) {
        Some(minutes) if needle(f).is_none() && f.call_ids.is_empty() => {
            search_with_counts(&tx, tenant, q, (from, to), minutes, sources)
        }
        _ => search_by_scan(&tx, tenant, q, (from, to), sources, index),
    };
    tx.rollback()?;
    result
}

/// Every match is read from `logs` (text and call filters). With call filters, the
/// scan is confined to the calls' time windows.
///
/// The plan depends on how many records match, estimated from a sample. A needle that
/// matches much of the table is counted in one scan, and the page query then reads
/// only the newest (or oldest) row groups. A rare needle would make that page query
/// read the whole table again, so its matches' keys are materialised in a single scan
/// instead. Either plan gives the same answer.
fn search_by_scan(
    conn: &Connection,
    tenant: &str,
    q: &SearchQuery,
    (mut from, mut to): (Option<i64>, Option<i64>),
    sources: Sources,
    index: Option<&Bitmaps>,
) -> Result<SearchResult> {
    let f = &q.filter;
    let mut out = SearchResult::default();
    if !f.call_ids.is_empty() {
        let mut sql = format!(
            "SELECT min(first_ts), max(last_ts) FROM {} WHERE tenant = ?",
            sources.calls
        );
        let mut params = vec![Value::Text(tenant.to_owned())];
        push_in(
            &mut sql,
            &mut params,
            "call_id",
            f.call_ids
                .iter()
                .map(|c| Value::Text(c.clone()))
                .collect::<Vec<_>>()
                .into_iter(),
        );
        let window: (Option<i64>, Option<i64>) = conn
            .prepare_cached(&sql)?
            .query_row(duckdb::params_from_iter(params.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        let (Some(first), Some(last)) = window else {
            return Ok(out);
        };
        from = Some(from.map_or(first, |t| t.max(first)));
        to = Some(to.map_or(last, |t| t.min(last)));
    }
    let narrowed = match (needle(f), index) {
        (Some(text), Some(index)) => {
            textindex::narrow(index, tenant, &text.to_lowercase(), (from, to))
        }
        _ => None,
    };
    let w = logs_where_in(narrowed.as_ref(), tenant, from, to, f);
    if q.size == 0 {
        add_groups(&mut out, log_groups(conn, &w)?)?;
        return Ok(out);
    }
    // What the index left is a bounded number of records: one scan of them.
    let few = match &narrowed {
        Some(n) if n.records < NARROWED_SCAN_ONCE => true,
        // The sample reads `logs` under `w`'s conditions: with one stretch left that
        // includes it, with several it counts as if every block were left (a plan
        // choice only).
        _ => estimated_matches(conn, &w)? < MANY_MATCHES,
    };
    if few {
        scan_once(conn, &w, q)
    } else {
        count_then_page(conn, &w, q)
    }
}

/// Many matches: counts them in one scan; the page query then stops early, as DuckDB's
/// top-N narrows its `ts` bound and skips the row groups beyond it.
fn count_then_page(conn: &Connection, w: &Where, q: &SearchQuery) -> Result<SearchResult> {
    let mut out = SearchResult::default();
    add_groups(&mut out, log_groups(conn, w)?)?;
    if q.page.saturating_mul(q.size) < out.total_count {
        out.records = page(conn, w, q)?;
    }
    Ok(out)
}

/// Few matches: one scan. Their keys are materialised once, then grouped for the counts
/// and ordered for the page, whose records are then read by row id.
fn scan_once(conn: &Connection, w: &Where, q: &SearchQuery) -> Result<SearchResult> {
    let mut out = SearchResult::default();
    let dir = match q.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let offset = q.page.saturating_mul(q.size);
    let sql = format!(
        "WITH m AS MATERIALIZED (SELECT {} AS r, ts, id, event, level, category FROM {} WHERE {}) \
         SELECT event, level, category, count(*)::BIGINT, NULL::BIGINT FROM m GROUP BY ALL \
         UNION ALL \
         SELECT * FROM (SELECT NULL, NULL, NULL, NULL, r FROM m ORDER BY ts {dir}, id {dir} LIMIT {} OFFSET {offset})",
        w.rid, w.from, w.sql, q.size
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(w.params.iter()), |r| {
        Ok(match r.get::<_, Option<i64>>(4)? {
            Some(row) => Err(row),
            None => Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u8>(1)?,
                r.get::<_, u8>(2)?,
                u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
            )),
        })
    })?;
    let mut groups = Vec::new();
    let mut row_ids = Vec::new();
    for row in rows {
        match row? {
            Ok(g) => groups.push(g),
            Err(id) => row_ids.push(id),
        }
    }
    add_groups(&mut out, groups)?;
    if !row_ids.is_empty() {
        let list = row_ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut stmt = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM logs WHERE rowid = ANY([{list}])"
        ))?;
        let mut records = stmt
            .query_map([], read_record)?
            .map(|r| r.map_err(Error::from).and_then(|x| x))
            .collect::<Result<Vec<_>>>()?;
        records.sort_by_key(|r| (r.timestamp, r.id));
        if q.order == Order::Desc {
            records.reverse();
        }
        out.records = records;
    }
    Ok(out)
}

/// Below this many records in the stretches the text index left, a text search
/// materialises every match in one scan (the matches are at most these records).
const NARROWED_SCAN_ONCE: i64 = 1_000_000;

/// From this many estimated matches on, a text search counts and pages in two queries
/// rather than materialising every match (see [`search_by_scan`]).
const MANY_MATCHES: u64 = 5_000;

/// The number of `w`'s matches, estimated from a 1 % sample of the table's vectors:
/// a few milliseconds at 10 M records, and only a choice of plan depends on it.
fn estimated_matches(conn: &Connection, w: &Where) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(&format!(
            "SELECT count(*) FROM logs TABLESAMPLE SYSTEM (1%) WHERE {}",
            w.sql
        ))?
        .query_row(duckdb::params_from_iter(w.params.iter()), |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0).saturating_mul(100))
}

/// Counts come from `log_counts` for the whole minutes of the range and from `logs` for
/// the partial minutes at its ends; the counts per minute then bound the page query to
/// the time where the page lies.
fn search_with_counts(
    conn: &Connection,
    tenant: &str,
    q: &SearchQuery,
    (from, to): (Option<i64>, Option<i64>),
    (lo, hi): (i64, i64),
    sources: Sources,
) -> Result<SearchResult> {
    let f = &q.filter;
    let mut out = SearchResult::default();
    // Before the first whole minute, and after the last one (unless it is open-ended).
    let before = log_groups(
        conn,
        &logs_where(tenant, from, Some(minute_start(lo) - 1), f),
    )?;
    let after = if hi == i64::MAX {
        Vec::new()
    } else {
        log_groups(conn, &logs_where(tenant, Some(minute_start(hi + 1)), to, f))?
    };
    let cw = counts_where(tenant, (lo, hi), f);
    let whole = count_groups(conn, &cw, sources)?;
    let (n_before, n_after) = (total(&before), total(&after));
    add_groups(&mut out, before)?;
    add_groups(&mut out, whole)?;
    add_groups(&mut out, after)?;

    let offset = q.page.saturating_mul(q.size);
    if q.size == 0 || offset >= out.total_count {
        return Ok(out);
    }
    // The page lies among the first `need` matches in the query's order: find the
    // minute by which that many have been counted.
    let need = offset.saturating_add(q.size);
    let (mut lo_ts, mut hi_ts) = (from, to);
    match q.order {
        Order::Desc if n_after >= need => lo_ts = Some(minute_start(hi + 1)),
        Order::Asc if n_before >= need => hi_ts = Some(minute_start(lo) - 1),
        order => {
            let (dir, already) = match order {
                Order::Desc => ("DESC", n_after),
                Order::Asc => ("ASC", n_before),
            };
            let sql = format!(
                "SELECT minute FROM (SELECT minute, sum(sum(n)) OVER (ORDER BY minute {dir}) AS seen \
                 FROM {} WHERE {} GROUP BY minute) WHERE seen >= ? ORDER BY minute {dir} LIMIT 1",
                sources.log_counts, cw.sql
            );
            let params: Vec<Value> = cw
                .params
                .iter()
                .cloned()
                .chain([Value::BigInt(
                    i64::try_from(need - already).unwrap_or(i64::MAX),
                )])
                .collect();
            let minute: Option<i64> = conn
                .prepare_cached(&sql)?
                .query_row(duckdb::params_from_iter(params.iter()), |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    duckdb::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            match (order, minute) {
                (Order::Desc, Some(m)) => {
                    lo_ts = Some(minute_start(m).max(from.unwrap_or(i64::MIN)));
                }
                (Order::Asc, Some(m)) => {
                    hi_ts = Some((minute_start(m + 1) - 1).min(to.unwrap_or(i64::MAX)));
                }
                // Not enough in the whole minutes: the page reaches into the far edge.
                _ => {}
            }
        }
    }
    out.records = page(conn, &logs_where(tenant, lo_ts, hi_ts, f), q)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use callscope_model::Timestamp;

    use super::*;

    /// A store with `n` records whose text repeats in a few patterns, one of them rare,
    /// with ties on `ts` so that the page order needs its `id` tie-break.
    fn corpus(n: i64) -> Connection {
        fill(Connection::open_in_memory().unwrap(), n)
    }

    fn fill(conn: Connection, n: i64) -> Connection {
        crate::schema::migrate(&conn).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO logs SELECT uuid(), 't1', 'call-' || (i % 17), 1000 * (i // 3), \
             1 + i % 5, 1 + i % 12, ['A', 'B', 'C'][1 + i % 3], 'agent-' || (i % 4), \
             NULL, NULL, '{{\"text\": \"x\"}}', \
             CASE WHEN i % 97 = 0 THEN 'rare needle ' ELSE 'common words ' END || (i % 10), \
             i + 1 FROM range({n}) t(i)"
        ))
        .unwrap();
        conn
    }

    #[test]
    fn both_text_plans_give_the_same_answer() {
        let conn = corpus(5_000);
        let mut checked = 0;
        for text in ["common", "rare needle", "needle 3", "words 7", "absent"] {
            for (page, size) in [(0, 1), (0, 50), (3, 20), (40, 100), (1_000, 10)] {
                for order in [Order::Asc, Order::Desc] {
                    for min_level in [None, Some(Level::Warning)] {
                        let filter = SearchFilter {
                            text: Some(text.to_owned()),
                            min_level,
                            from: Some(Timestamp(200_000)),
                            ..SearchFilter::default()
                        };
                        let q = SearchQuery {
                            filter,
                            order,
                            page,
                            size,
                        };
                        let w = logs_where("t1", Some(200_000), None, &q.filter);
                        let a = count_then_page(&conn, &w, &q).unwrap();
                        let b = scan_once(&conn, &w, &q).unwrap();
                        assert_eq!(a, b, "{text:?} page {page} size {size} {order:?}");
                        let groups = log_groups(&conn, &w).unwrap();
                        assert_eq!(a.total_count, total(&groups));
                        let offset = page * size;
                        let expect = a.total_count.saturating_sub(offset).min(size);
                        assert_eq!(a.records.len() as u64, expect);
                        checked += usize::from(expect > 0);
                    }
                }
            }
        }
        assert!(checked >= 40, "too few non-empty pages: {checked}");
    }

    #[test]
    fn the_estimate_sees_a_common_needle_in_a_large_table() {
        let conn = corpus(1_000_000);
        let text = |needle: &str| {
            logs_where(
                "t1",
                None,
                None,
                &SearchFilter {
                    text: Some(needle.into()),
                    ..SearchFilter::default()
                },
            )
        };
        let (common, absent) = (text("common"), text("absent"));
        assert!(estimated_matches(&conn, &common).unwrap() >= MANY_MATCHES);
        assert_eq!(estimated_matches(&conn, &absent).unwrap(), 0);
    }

    #[test]
    fn the_search_and_data_columns_are_stored_uncompressed() {
        let dir = tempfile::tempdir().unwrap();
        let conn = fill(
            Connection::open(dir.path().join("s.duckdb")).unwrap(),
            300_000,
        );
        conn.execute_batch("CHECKPOINT").unwrap();
        // `search` is scanned whole; `data` would otherwise cost a compression analysis
        // at every checkpoint that holds a copy of its values outside the memory limit.
        for column in ["search", "data"] {
            let kinds: Vec<String> = conn
                .prepare(
                    "SELECT DISTINCT compression FROM pragma_storage_info('logs') \
                     WHERE column_name = ? AND segment_type = 'VARCHAR'",
                )
                .unwrap()
                .query_map([column], |r| r.get(0))
                .unwrap()
                .collect::<duckdb::Result<_>>()
                .unwrap();
            assert_eq!(kinds, ["Uncompressed"], "{column}");
        }
    }
}
