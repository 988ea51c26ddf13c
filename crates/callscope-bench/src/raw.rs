//! DuckDB's own Appender on the rows the store writes: the limit the store's write path
//! is measured against.
//!
//! [`stored_batches`] gets the very rows `Store::append` inserts for some records (it
//! stores them in a scratch store and reads `logs` back), [`open_raw`] is a bare
//! connection to a file with the store's schema, and [`append_columnar`] /
//! [`append_rows`] are the two Appender loops. Only the store's public API is used.

use std::{path::Path, time::Duration, time::Instant};

use callscope_model::TenantRecord;
use callscope_store::{
    Store, StoreConfig,
    duckdb::{Connection, arrow::record_batch::RecordBatch, params},
};

/// The rows `Store::append` inserts into `logs` for `records`, as Arrow batches of at
/// most `rows_per_batch` rows, in the records' order of time. The scratch store lives
/// in `dir`.
///
/// # Errors
/// The scratch store cannot be opened, written or read.
pub async fn stored_batches(
    dir: &Path,
    records: Vec<TenantRecord>,
    rows_per_batch: usize,
) -> anyhow::Result<Vec<RecordBatch>> {
    let path = dir.join(format!("rows-{}.duckdb", rand::random::<u32>()));
    let store = Store::open(&StoreConfig {
        path: path.clone(),
        retention_days: 0,
        queue_records: records.len().max(1),
        commit_group_records: records.len().max(1),
        ..StoreConfig::default()
    })?;
    store.append(records).await?;
    let batches = store
        .read(|c| {
            // UUIDs as 16-byte values with their Arrow extension type, as the store
            // appends them, rather than as text.
            c.execute_batch("SET arrow_lossless_conversion = true")?;
            let mut stmt = c.prepare("SELECT * FROM logs ORDER BY ts, id")?;
            Ok(stmt.query_arrow([])?.collect::<Vec<_>>())
        })
        .await?;
    store.shutdown().await?;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("duckdb.wal"));
    let mut out = Vec::new();
    for b in batches {
        let mut at = 0;
        while at < b.num_rows() {
            let n = rows_per_batch.max(1).min(b.num_rows() - at);
            out.push(b.slice(at, n));
            at += n;
        }
    }
    Ok(out)
}

/// A bare connection to a new database file at `path` with the store's schema and
/// nothing else running: no writer, no de-duplication, no `calls` upkeep.
///
/// # Errors
/// The file cannot be created or the schema cannot be applied.
pub async fn open_raw(path: &Path) -> anyhow::Result<Connection> {
    let store = Store::open(&StoreConfig {
        path: path.to_owned(),
        retention_days: 0,
        ..StoreConfig::default()
    })?;
    store.shutdown().await?;
    Ok(Connection::open(path)?)
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
) -> anyhow::Result<Duration> {
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
pub fn append_rows(conn: &Connection, batches: &[RecordBatch]) -> anyhow::Result<Duration> {
    use callscope_store::duckdb::arrow::array::{Array, AsArray, StringArray};
    use callscope_store::duckdb::arrow::datatypes::{Int64Type, UInt8Type};
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
    let bad = || anyhow::anyhow!("not a batch of the `logs` columns");
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
        // The commit sequence number, when the batch has it.
        let seq = b
            .column_by_name("seq")
            .and_then(|c| c.as_primitive_opt::<Int64Type>());
        let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
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
                seq.and_then(|a| a.is_valid(i).then(|| a.value(i))),
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
