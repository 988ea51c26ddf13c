//! File exports: every row of a query as CSV, JSON Lines, Parquet, XLSX or a PDF
//! report, produced a piece at a time so that memory stays bounded however large the
//! export is.
//!
//! An export is an [`ExportQuery`](rows::ExportQuery): a `WHERE` clause with `?`
//! parameters (values are always bound, never spliced into the SQL), the columns to
//! write and the keys that order the rows. How each format is produced:
//!
//! - **CSV and JSON Lines** are encoded in chunks of [`CHUNK_ROWS`] rows. Each chunk is
//!   read by keyset (the rows after the previous chunk's last sort key, within a window
//!   of the time key sized from the previous chunk, see [`Pager`](rows::Pager)) on a
//!   reader connection that is released between chunks, so a slow client never pins
//!   one. The encoded chunks go through a channel of [`CHANNEL_CHUNKS`] entries: when
//!   the client stops reading, the reader stops too.
//! - **PDF** is laid out from the same chunks a page at a time; each finished page is
//!   sent at once (the file ends with the page tree and cross-reference table).
//! - **XLSX** is written row by row to a worksheet in constant-memory mode (rows go to
//!   a temporary file, not to memory), from the same keyset chunks, then streamed.
//! - **Parquet** is written by DuckDB itself, `COPY (SELECT …) TO '<temporary file>'`,
//!   then streamed. DuckDB sorts and writes within its `memory_limit` (the sort spills
//!   to disk), so this export's memory follows that setting, not the export's size.
//!
//! Temporary files live next to the database (the disk sized for the data), are named
//! `.callscope-export-*`, are deleted when their export ends, and any left behind by a
//! crash are deleted when the store next opens.
//!
//! Each format has its module; this one holds what they share: the format names, the
//! running export and its channel, temporary files, and the two exports (a call's
//! records, the calls list).

mod csv;
mod jsonl;
mod parquet;
mod pdf;
mod rows;
mod xlsx;

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use callscope_model::{Category, Level};
use duckdb::types::Value;
use tokio::{io::AsyncReadExt as _, sync::mpsc};

use self::rows::{Column, ExportQuery, KeyKind, Kind, Pager, Row, SortKey};
use crate::{CallFilter, Error, LogFilter, Order, Result, Store, query};

/// Rows read and encoded per chunk.
pub(crate) const CHUNK_ROWS: usize = 1024;
/// Encoded chunks that may wait for the client.
pub(crate) const CHANNEL_CHUNKS: usize = 2;
/// Bytes per piece when streaming a finished file.
const FILE_PIECE: usize = 256 * 1024;
/// Temporary export files start with this.
const TEMP_PREFIX: &str = ".callscope-export-";

/// A file format for exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExportFormat {
    /// Comma-separated values: UTF-8 with a byte-order mark (so spreadsheets detect
    /// the encoding), a header row, RFC 4180 quoting, CRLF line ends, RFC 3339 UTC
    /// times. Empty fields are nulls; JSON values are JSON text.
    #[default]
    Csv,
    /// JSON Lines: one JSON object per line, in the shape the API returns.
    Jsonl,
    /// Apache Parquet (zstd): times as UTC timestamps (microseconds), JSON values as
    /// JSON text.
    Parquet,
    /// An Excel workbook: numbers as numbers, times as date-time cells (UTC), JSON
    /// values as text. More than 1,048,575 rows continue on further worksheets.
    Xlsx,
    /// A printable report on landscape A4 pages: title, tenant, the filters applied,
    /// the generation time, then a table with the CSV's rows (the header repeated on
    /// every page, long cells wrapped).
    Pdf,
}

impl ExportFormat {
    /// Every format.
    pub const ALL: [ExportFormat; 5] = [
        ExportFormat::Csv,
        ExportFormat::Jsonl,
        ExportFormat::Parquet,
        ExportFormat::Xlsx,
        ExportFormat::Pdf,
    ];

    /// The name used in `format=…` and as the file extension.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Xlsx => "xlsx",
            ExportFormat::Pdf => "pdf",
        }
    }

    /// The file extension, without the dot.
    #[must_use]
    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    /// The media type to serve the file with.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl => "application/jsonl; charset=utf-8",
            ExportFormat::Parquet => "application/vnd.apache.parquet",
            ExportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
            ExportFormat::Pdf => "application/pdf",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name that is none of `csv`, `jsonl`, `parquet`, `xlsx`, `pdf`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format `{0}`; expected one of csv, jsonl, parquet, xlsx, pdf")]
pub struct UnknownFormat(String);

impl FromStr for ExportFormat {
    type Err = UnknownFormat;

    /// Any case; `ndjson` is accepted for `jsonl`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "jsonl" | "ndjson" => Ok(ExportFormat::Jsonl),
            "parquet" => Ok(ExportFormat::Parquet),
            "xlsx" => Ok(ExportFormat::Xlsx),
            "pdf" => Ok(ExportFormat::Pdf),
            _ => Err(UnknownFormat(s.to_owned())),
        }
    }
}

/// What a report (the PDF format) says about an export besides its rows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heading {
    pub(crate) title: String,
    pub(crate) tenant: String,
    /// When the export started, RFC 3339 UTC to the second.
    pub(crate) generated: String,
    /// The filters as the caller spelled them.
    pub(crate) filters: Vec<(String, String)>,
    /// Labelled values shown before the table.
    pub(crate) metadata: Vec<(String, String)>,
    /// What an empty table says.
    pub(crate) empty: String,
}

impl Heading {
    fn new(title: String, tenant: &str, filters: &[(String, String)], empty: &str) -> Heading {
        Heading {
            title,
            tenant: tenant.to_owned(),
            generated: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            filters: filters.to_vec(),
            metadata: Vec::new(),
            empty: empty.to_owned(),
        }
    }
}

/// A running export: the file's bytes, a chunk at a time. Dropping it stops the
/// export and deletes its temporary file.
#[derive(Debug)]
pub struct ExportStream {
    format: ExportFormat,
    first: Option<Vec<u8>>,
    rx: mpsc::Receiver<Result<Vec<u8>>>,
}

impl ExportStream {
    /// The file's format.
    #[must_use]
    pub fn format(&self) -> ExportFormat {
        self.format
    }

    /// The next piece of the file; `None` at its end. An error ends the export: the
    /// bytes so far are not a complete file.
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<u8>>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        self.rx.recv().await
    }
}

pub(crate) fn export_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Export(format!("{what}: {e}"))
}

/// A file deleted when dropped.
#[derive(Debug)]
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new(dir: &Path, extension: &str) -> TempFile {
        TempFile(dir.join(format!(
            "{TEMP_PREFIX}{}.{extension}",
            uuid::Uuid::new_v4().simple()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The folder for temporary export files: the database's.
pub(crate) fn temp_dir(db_path: &Path) -> PathBuf {
    match db_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Deletes temporary export files a crashed process left next to the database.
pub(crate) fn remove_stale(db_path: &Path) {
    let Ok(entries) = std::fs::read_dir(temp_dir(db_path)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Encodes chunks of rows for the streamed formats.
enum Sink {
    Csv(csv::CsvSink),
    Jsonl(Vec<u8>),
    Xlsx(Box<xlsx::XlsxSink>),
    Pdf(Box<pdf::PdfSink>),
}

/// What is left to send once every row is encoded.
enum Tail {
    Nothing,
    Bytes(Vec<u8>),
    File(TempFile),
}

impl Sink {
    fn new(format: ExportFormat, q: &ExportQuery, dir: &Path) -> Result<Sink> {
        match format {
            ExportFormat::Csv => Ok(Sink::Csv(csv::CsvSink::new(q)?)),
            ExportFormat::Jsonl => Ok(Sink::Jsonl(Vec::new())),
            ExportFormat::Xlsx => Ok(Sink::Xlsx(Box::new(xlsx::XlsxSink::new(q, dir)?))),
            ExportFormat::Pdf => Ok(Sink::Pdf(Box::new(pdf::PdfSink::new(q)))),
            ExportFormat::Parquet => Err(Error::Export("parquet is not row-encoded".into())),
        }
    }

    fn write_rows(&mut self, q: &ExportQuery, rows: &[Row]) -> Result<()> {
        match self {
            Sink::Csv(c) => c.write_rows(q, rows),
            Sink::Jsonl(buf) => {
                for row in rows {
                    jsonl::write_json_line(buf, q, row)?;
                }
                Ok(())
            }
            Sink::Xlsx(x) => rows.iter().try_for_each(|row| x.write_row(q, row)),
            Sink::Pdf(p) => {
                p.write_rows(rows);
                Ok(())
            }
        }
    }

    /// The bytes encoded so far and not yet taken.
    fn take(&mut self) -> Vec<u8> {
        match self {
            Sink::Csv(c) => c.take(),
            Sink::Jsonl(buf) => std::mem::take(buf),
            Sink::Xlsx(_) => Vec::new(),
            Sink::Pdf(p) => p.take(),
        }
    }

    /// Completes the file.
    fn finish(self) -> Result<Tail> {
        match self {
            Sink::Csv(_) | Sink::Jsonl(_) => Ok(Tail::Nothing),
            Sink::Xlsx(x) => x.finish().map(Tail::File),
            Sink::Pdf(p) => Ok(Tail::Bytes(p.finish())),
        }
    }
}

type Tx = mpsc::Sender<Result<Vec<u8>>>;

/// Starts producing `q` as `format`. Resolves once the first bytes are ready, so a
/// failure before any output is an error here rather than a truncated file.
pub(crate) async fn start(
    store: &Store,
    q: ExportQuery,
    format: ExportFormat,
) -> Result<ExportStream> {
    let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
    store.metrics().record_export(format.index());
    let producer = store.clone();
    tokio::spawn(async move {
        if let Err(e) = produce(&producer, Arc::new(q), format, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    let first = match rx.recv().await {
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(e)) => return Err(e),
        None => None,
    };
    Ok(ExportStream { format, first, rx })
}

/// Hands `bytes` to the client; false when the client has gone.
async fn send(store: &Store, tx: &Tx, bytes: Vec<u8>) -> bool {
    let n = bytes.len() as u64;
    let sent = tx.send(Ok(bytes)).await.is_ok();
    if sent {
        store.metrics().record_export_bytes(n);
    }
    sent
}

async fn produce(store: &Store, q: Arc<ExportQuery>, format: ExportFormat, tx: &Tx) -> Result<()> {
    let dir = temp_dir(store.path());
    if format == ExportFormat::Parquet {
        let file = TempFile::new(&dir, "parquet");
        let path = file.0.clone();
        store
            .read_live(move |c| parquet::write_parquet(c, &q, &path))
            .await?;
        return send_file(store, tx, file).await;
    }

    let mut state = (Sink::new(format, &q, &dir)?, Pager::default());
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        let q2 = q.clone();
        let (next, bytes) = store
            .read_live(move |c| {
                let (mut sink, mut pager) = state;
                let rows = pager.next_chunk(c, &q2)?;
                sink.write_rows(&q2, &rows)?;
                let bytes = sink.take();
                Ok(((sink, pager), bytes))
            })
            .await?;
        state = next;
        if !bytes.is_empty() && !send(store, tx, bytes).await {
            return Ok(());
        }
        if state.1.done {
            break;
        }
    }
    let sink = state.0;
    let tail = tokio::task::spawn_blocking(move || sink.finish())
        .await
        .map_err(|_| Error::Closed)??;
    match tail {
        Tail::File(file) => send_file(store, tx, file).await,
        Tail::Bytes(bytes) => {
            send(store, tx, bytes).await;
            Ok(())
        }
        Tail::Nothing => Ok(()),
    }
}

/// Streams a finished file, then deletes it.
async fn send_file(store: &Store, tx: &Tx, file: TempFile) -> Result<()> {
    let io = |e: std::io::Error| export_err("reading the export file", e);
    let mut f = tokio::fs::File::open(&file.0).await.map_err(io)?;
    loop {
        let mut buf = Vec::with_capacity(FILE_PIECE);
        let n = (&mut f)
            .take(FILE_PIECE as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(io)?;
        if n == 0 || !send(store, tx, buf).await {
            return Ok(());
        }
    }
}

/// The SQL that names a level code, from the model's own names.
fn level_name_sql(column: &str) -> String {
    let arms: String = Level::ALL
        .iter()
        .map(|l| format!(" WHEN {} THEN '{}'", l.code(), l.as_str()))
        .collect();
    format!("CASE {column}{arms} END")
}

/// The SQL that names a category code, from the model's own names.
fn category_name_sql(column: &str) -> String {
    let arms: String = Category::ALL
        .iter()
        .map(|c| format!(" WHEN {} THEN '{}'", c.code(), c.as_str()))
        .collect();
    format!("CASE {column}{arms} END")
}

/// The columns of a log record, in the API's order.
fn log_columns() -> Vec<Column> {
    vec![
        Column::new("id", "id::VARCHAR", Kind::Text).width(20.0),
        Column::new("timestamp", "ts", Kind::TimestampNs),
        Column::new("level", level_name_sql("level"), Kind::Text).width(9.0),
        Column::new("category", category_name_sql("category"), Kind::Text).width(20.0),
        Column::new("event", "event", Kind::Text).width(30.0),
        Column::new("call_id", "call_id", Kind::Text),
        Column::new("agent_id", "agent_id", Kind::Text),
        Column::new("trace_id", "trace_id", Kind::Text).width(17.0),
        Column::new("span_id", "span_id", Kind::Text).width(17.0),
        Column::new("data", "data", Kind::Json).width(48.0),
    ]
}

/// Exports one call's records; `None` when the tenant has no such call. `filters` are
/// the filters as the caller spelled them, for a report's heading.
pub(crate) async fn call_logs(
    store: &Store,
    tenant: &str,
    call_id: &str,
    filter: LogFilter,
    order: Order,
    format: ExportFormat,
    filters: &[(String, String)],
) -> Result<Option<ExportStream>> {
    let (t, c) = (tenant.to_owned(), call_id.to_owned());
    let Some(window) = store
        .read_live(move |conn| query::call_window(conn, &t, &c))
        .await?
    else {
        return Ok(None);
    };
    let mut heading = Heading::new(
        format!("Call logs: {call_id}"),
        tenant,
        filters,
        "No records of this call match these filters.",
    );
    if format == ExportFormat::Pdf {
        heading.metadata = call_metadata(store, tenant, call_id).await?;
    }
    let (where_sql, params) = query::call_log_where(tenant, call_id, window, &filter);
    let q = ExportQuery {
        sheet: "logs",
        columns: log_columns(),
        from: "logs",
        filter: where_sql,
        params,
        keys: vec![
            SortKey {
                sql: "ts",
                kind: KeyKind::Integer,
            },
            SortKey {
                sql: "id",
                kind: KeyKind::Uuid,
            },
        ],
        order,
        heading,
    };
    start(store, q, format).await.map(Some)
}

/// A call's fields as the calls export writes them, labelled by column.
async fn call_metadata(
    store: &Store,
    tenant: &str,
    call_id: &str,
) -> Result<Vec<(String, String)>> {
    let (t, c) = (tenant.to_owned(), call_id.to_owned());
    store
        .read_live(move |conn| {
            let q = ExportQuery {
                sheet: "calls",
                columns: call_columns(),
                from: crate::summary::Sources::of(conn)?.call_export,
                filter: "call_key = ?".into(),
                params: vec![Value::Text(crate::summary::call_key(&t, &c))],
                keys: vec![SortKey {
                    sql: "call_id",
                    kind: KeyKind::Text,
                }],
                order: Order::Asc,
                heading: Heading::default(),
            };
            let (rows, _) = rows::fetch_chunk(conn, &q, None, None, 1)?;
            Ok(rows
                .first()
                .map(|row| {
                    q.columns
                        .iter()
                        .zip(row)
                        .map(|(col, cell)| (col.name.to_owned(), csv::text(cell)))
                        .collect()
                })
                .unwrap_or_default())
        })
        .await
}

/// The columns of a call, in the API's order; the level counts are flat columns in
/// the tabular formats and the `level_counts` object in JSON Lines.
fn call_columns() -> Vec<Column> {
    let mut cols = vec![
        Column::new("call_id", "call_id", Kind::Text),
        Column::new("agent_id", "agent_id", Kind::Text),
        Column::new("direction", "direction", Kind::Text),
        Column::new("from", "from_number", Kind::Text),
        Column::new("to", "to_number", Kind::Text),
        Column::new("campaign_id", "campaign_id", Kind::Text),
        Column::new("status", "status", Kind::Text),
        Column::new("started_at", "started_ts", Kind::TimestampNs),
        Column::new("ended_at", "ended_ts", Kind::TimestampNs),
        Column::new("duration_ms", "duration_ms", Kind::Integer),
        Column::new("ringing_duration_ms", "ringing_duration_ms", Kind::Integer),
        Column::new("bot_duration_ms", "bot_duration_ms", Kind::Integer),
        Column::new("billed_duration_ms", "billed_duration_ms", Kind::Integer),
        Column::new("hangup_reason", "hangup_reason", Kind::Text),
        Column::new("hangup_source", "hangup_source", Kind::Text),
        Column::new("recording_url", "recording_url", Kind::Text).width(14.0),
        Column::new("trace_id", "trace_id", Kind::Text).width(13.0),
        Column::new("log_count", "log_count", Kind::Integer).width(7.0),
    ];
    for (level, (name, sql)) in Level::ALL.iter().zip([
        ("debug_count", "debug_count"),
        ("info_count", "info_count"),
        ("warning_count", "warning_count"),
        ("error_count", "error_count"),
        ("critical_count", "critical_count"),
    ]) {
        cols.push(
            Column::new(name, sql, Kind::Integer)
                .width(if name == "warning_count" { 9.0 } else { 7.0 })
                .nested("level_counts", level.as_str()),
        );
    }
    // From `call_timeline` (see `timeline.rs`), joined in by the export views.
    for name in [
        "turn_count",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_max_ms",
        "llm_input_tokens",
        "llm_output_tokens",
        "tts_characters",
    ] {
        cols.push(Column::new(name, name, Kind::Integer).data_only());
    }
    cols.push(Column::new("stt_seconds", "stt_seconds", Kind::Float).data_only());
    cols
}

/// Exports `tenant`'s calls matching `filter`, newest first (the calls list's order).
/// `filters` are the filters as the caller spelled them, for a report's heading.
pub(crate) async fn calls(
    store: &Store,
    tenant: &str,
    filter: &CallFilter,
    format: ExportFormat,
    filters: &[(String, String)],
) -> Result<ExportStream> {
    let (where_sql, params) = crate::calls::call_where(tenant, filter);
    // Chosen once: an export that starts while the journal is empty reads `calls`
    // throughout, and covers what was acknowledged when it started.
    let view = store
        .read_live(|c| Ok(crate::summary::Sources::of(c)?.call_export))
        .await?;
    let q = ExportQuery {
        sheet: "calls",
        columns: call_columns(),
        from: view,
        filter: where_sql,
        params,
        keys: vec![
            SortKey {
                sql: "started_ts",
                kind: KeyKind::Integer,
            },
            SortKey {
                sql: "call_id",
                kind: KeyKind::Text,
            },
        ],
        order: Order::Desc,
        heading: Heading::new(
            "Calls".to_owned(),
            tenant,
            filters,
            "No calls match these filters.",
        ),
    };
    start(store, q, format).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_in_any_case() {
        for f in ExportFormat::ALL {
            assert_eq!(f.as_str().parse::<ExportFormat>(), Ok(f));
            assert_eq!(f.as_str().to_uppercase().parse::<ExportFormat>(), Ok(f));
        }
        assert_eq!("ndjson".parse::<ExportFormat>(), Ok(ExportFormat::Jsonl));
        assert!("xls".parse::<ExportFormat>().is_err());
        assert!("".parse::<ExportFormat>().is_err());
    }
}
