//! Measuring the write path against its limits (not part of the stable API).
//!
//! The benchmarks compare [`crate::Store::append`] with DuckDB's own Appender inserting
//! the very rows the store would insert, already converted: [`prepare_logs`] is the
//! store's conversion, [`open_raw`] a bare connection with the store's schema, and
//! [`append_columnar`] / [`append_rows`] the two Appender loops.

use std::{path::Path, time::Duration, time::Instant};

use callscope_model::TenantRecord;
use duckdb::{Connection, arrow::record_batch::RecordBatch, params};

use crate::{Error, Result};

/// `records` as the Arrow batch the writer appends to `logs` (the store's own conversion).
///
/// # Errors
/// Arrow refused the arrays.
pub fn prepare_logs(records: &[TenantRecord]) -> Result<RecordBatch> {
    Ok(crate::prepare::prepare(records, &crate::prepare::logs_schema())?.batch)
}

/// A bare connection to a new database file at `path` with the store's schema and
/// nothing else: no writer, no de-duplication, no `calls` upkeep.
///
/// # Errors
/// The file cannot be created or the schema cannot be applied.
pub fn open_raw(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| Error::Open {
        path: path.to_owned(),
        source: Box::new(e),
    })?;
    crate::schema::migrate(&conn)?;
    Ok(conn)
}

/// Appends `batches` to `logs` with one Appender, columnar (`append_record_batch`), and
/// commits every `commit_every` batches (`None`: once at the end). Returns the time taken,
/// commits included.
///
/// # Errors
/// DuckDB refused a batch or a commit.
pub fn append_columnar(
    conn: &Connection,
    batches: &[RecordBatch],
    commit_every: Option<usize>,
) -> Result<Duration> {
    let started = Instant::now();
    let every = commit_every.unwrap_or(usize::MAX).max(1);
    for group in batches.chunks(every.min(batches.len().max(1))) {
        conn.execute_batch("BEGIN TRANSACTION")?;
        {
            let mut app = conn.appender("logs")?;
            for b in group {
                app.append_record_batch(b.clone())?;
            }
            app.flush()?;
        }
        conn.execute_batch("COMMIT")?;
    }
    Ok(started.elapsed())
}

/// Appends the rows of `batches` to `logs` one row at a time (`append_row`), in one
/// transaction. The values are read out of the batches first, so only the Appender is
/// timed. Returns the time taken.
///
/// # Errors
/// DuckDB refused a row or the commit, or a batch does not have the `logs` columns.
pub fn append_rows(conn: &Connection, batches: &[RecordBatch]) -> Result<Duration> {
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::{Int64Type, UInt8Type};
    type Row = (
        String,
        String,
        String,
        i64,
        u8,
        u8,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let bad = || Error::Corrupt("not a logs batch".into());
    let mut rows: Vec<Row> = Vec::new();
    for b in batches {
        let ids = b.column(0).as_fixed_size_binary_opt().ok_or_else(bad)?;
        let s = |i: usize| b.column(i).as_string_opt::<i32>().ok_or_else(bad);
        let (tenant, call, event) = (s(1)?, s(2)?, s(6)?);
        let (agent, trace, span, data, search) = (s(7)?, s(8)?, s(9)?, s(10)?, s(11)?);
        let ts = b
            .column(3)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(bad)?;
        let level = b
            .column(4)
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(bad)?;
        let category = b
            .column(5)
            .as_primitive_opt::<UInt8Type>()
            .ok_or_else(bad)?;
        let opt = |a: &duckdb::arrow::array::StringArray, i: usize| {
            a.is_valid(i).then(|| a.value(i).to_owned())
        };
        for i in 0..b.num_rows() {
            let id = uuid::Uuid::from_slice(ids.value(i)).map_err(|_| bad())?;
            rows.push((
                id.to_string(),
                tenant.value(i).to_owned(),
                call.value(i).to_owned(),
                ts.value(i),
                level.value(i),
                category.value(i),
                event.value(i).to_owned(),
                opt(agent, i),
                opt(trace, i),
                opt(span, i),
                opt(data, i),
                opt(search, i),
                None,
            ));
        }
    }
    let started = Instant::now();
    conn.execute_batch("BEGIN TRANSACTION")?;
    {
        let mut app = conn.appender("logs")?;
        for r in &rows {
            app.append_row(params![
                r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12
            ])?;
        }
        app.flush()?;
    }
    conn.execute_batch("COMMIT")?;
    Ok(started.elapsed())
}
