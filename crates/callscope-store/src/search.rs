//! Search across a tenant's calls: filters, case-insensitive text, one page of
//! records, and the event / level / category counts of every match.
//!
//! Text search runs over the `search` column, which ingest fills with the lower-cased
//! text of every `data` value (the message included), one value per line. The needle is
//! lower-cased the same way and matched as a substring with DuckDB's `contains`, a
//! vectorised byte search over a column that holds only the text worth searching.
//! The other filters are evaluated first where DuckDB can: `ts` bounds prune whole
//! row groups by their min/max statistics before any string is read.

use std::collections::BTreeMap;

use callscope_model::{Category, Level, LogRecord};
use duckdb::{Connection, types::Value};

use crate::{
    Error, Order, Result, SearchFilter, SearchQuery,
    query::{RECORD_COLUMNS, push_in, read_record},
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

fn search_where(tenant: &str, f: &SearchFilter) -> (String, Vec<Value>) {
    let mut sql = String::from("tenant = ?");
    let mut params = vec![Value::Text(tenant.to_owned())];
    if let Some(from) = f.from {
        sql.push_str(" AND ts >= ?");
        params.push(Value::BigInt(from.as_nanos()));
    }
    if let Some(to) = f.to {
        sql.push_str(" AND ts <= ?");
        params.push(Value::BigInt(to.as_nanos()));
    }
    let texts = |v: &[String]| {
        v.iter()
            .map(|s| Value::Text(s.clone()))
            .collect::<Vec<_>>()
            .into_iter()
    };
    push_in(&mut sql, &mut params, "call_id", texts(&f.call_ids));
    push_in(&mut sql, &mut params, "agent_id", texts(&f.agent_ids));
    push_in(&mut sql, &mut params, "event", texts(&f.events));
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
    if let Some(min) = f.min_level {
        sql.push_str(" AND level >= ?");
        params.push(Value::UTinyInt(min.code()));
    }
    if let Some(text) = f.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        sql.push_str(" AND contains(search, ?)");
        params.push(Value::Text(text.to_lowercase()));
    }
    (sql, params)
}

/// Runs `q` over `tenant`'s records.
pub(crate) fn search(conn: &Connection, tenant: &str, q: &SearchQuery) -> Result<SearchResult> {
    let (w, params) = search_where(tenant, &q.filter);
    let mut out = SearchResult::default();

    // One pass groups the matches by (event, level, category); the three facets and
    // the total fold out of those few groups.
    let mut stmt = conn.prepare(&format!(
        "SELECT event, level, category, count(*) FROM logs WHERE {w} GROUP BY ALL"
    ))?;
    let groups = stmt.query_map(duckdb::params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u8>(1)?,
            r.get::<_, u8>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for g in groups {
        let (event, level, category, n) = g?;
        let n = u64::try_from(n).unwrap_or(0);
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

    let offset = q.page.saturating_mul(q.size);
    if q.size > 0 && offset < out.total_count {
        let dir = match q.order {
            Order::Asc => "ASC",
            Order::Desc => "DESC",
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM logs WHERE {w} ORDER BY ts {dir}, id {dir} LIMIT {} OFFSET {offset}",
            q.size
        ))?;
        let rows = stmt.query_map(duckdb::params_from_iter(params.iter()), read_record)?;
        out.records = rows
            .map(|r| r.map_err(Error::from).and_then(|x| x))
            .collect::<Result<_>>()?;
    }
    Ok(out)
}
