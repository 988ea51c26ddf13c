//! Parquet: written by DuckDB itself (`COPY … TO`) to a temporary file, within the
//! store's `memory_limit`, then streamed from that file.

use std::path::Path;

use duckdb::Connection;

use super::rows::{ExportQuery, Kind};
use crate::{Error, Result};

/// `'…'` with quotes doubled.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// DuckDB writes the Parquet file: times as UTC timestamps (microseconds).
pub(super) fn write_parquet(conn: &Connection, q: &ExportQuery, path: &Path) -> Result<()> {
    let columns = q
        .columns
        .iter()
        .map(|c| {
            let expr = match c.kind {
                // TIMESTAMP → TIMESTAMPTZ takes the value as UTC (no time zone
                // extension is loaded); Parquet marks the column as adjusted to UTC.
                Kind::TimestampNs => format!("make_timestamp(({}) // 1000)::TIMESTAMPTZ", c.sql),
                Kind::Integer => format!("({})::BIGINT", c.sql),
                Kind::Float => format!("({})::DOUBLE", c.sql),
                Kind::Text | Kind::Json => format!("({})::VARCHAR", c.sql),
            };
            format!("{expr} AS \"{}\"", c.name)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let path = path
        .to_str()
        .ok_or_else(|| Error::Export("the database folder's path is not UTF-8".into()))?;
    let sql = format!(
        "COPY (SELECT {columns} FROM {} WHERE {} ORDER BY {}) TO {} (FORMAT parquet, COMPRESSION zstd)",
        q.from,
        q.filter,
        q.order_by(),
        sql_string(path),
    );
    conn.prepare(&sql)?
        .execute(duckdb::params_from_iter(q.params.iter()))?;
    Ok(())
}
