//! File exports: every row of a query as CSV, JSON Lines, Parquet or XLSX, produced a
//! piece at a time so that memory stays bounded however large the export is.
//!
//! An export is an [`ExportQuery`]: a `WHERE` clause with `?` parameters (values are
//! always bound, never spliced into the SQL), the columns to write and the keys that
//! order the rows. How each format is produced:
//!
//! - **CSV and JSON Lines** are encoded in chunks of [`CHUNK_ROWS`] rows. Each chunk is
//!   read by keyset (the rows after the previous chunk's last sort key, within a window
//!   of the time key sized from the previous chunk, see [`Pager`]) on a reader
//!   connection that is released between chunks, so a slow client never pins one. The
//!   encoded chunks go through a channel of [`CHANNEL_CHUNKS`] entries: when the client
//!   stops reading, the reader stops too.
//! - **XLSX** is written row by row to a worksheet in constant-memory mode (rows go to
//!   a temporary file, not to memory), from the same keyset chunks, then streamed.
//! - **Parquet** is written by DuckDB itself, `COPY (SELECT …) TO '<temporary file>'`,
//!   then streamed. DuckDB sorts and writes within its `memory_limit` (the sort spills
//!   to disk), so this export's memory follows that setting, not the export's size.
//!
//! Temporary files live next to the database (the disk sized for the data), are named
//! `.callscope-export-*`, are deleted when their export ends, and any left behind by a
//! crash are deleted when the store next opens.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use callscope_model::{Category, Level, Timestamp};
use duckdb::{Connection, types::Value};
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, Worksheet};
use tokio::{io::AsyncReadExt as _, sync::mpsc};

use crate::{CallFilter, Error, LogFilter, Order, Result, Store, query};

/// Rows read and encoded per chunk.
pub(crate) const CHUNK_ROWS: usize = 1024;
/// Encoded chunks that may wait for the client.
pub(crate) const CHANNEL_CHUNKS: usize = 2;
/// Bytes per piece when streaming a finished file.
const FILE_PIECE: usize = 256 * 1024;
/// Temporary export files start with this.
const TEMP_PREFIX: &str = ".callscope-export-";
/// Rows per XLSX worksheet, the header included (Excel's limit).
const XLSX_MAX_ROWS: u32 = 1_048_576;
/// Characters per XLSX cell (Excel's limit).
const XLSX_MAX_CHARS: usize = 32_767;

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
}

impl ExportFormat {
    /// Every format.
    pub const ALL: [ExportFormat; 4] = [
        ExportFormat::Csv,
        ExportFormat::Jsonl,
        ExportFormat::Parquet,
        ExportFormat::Xlsx,
    ];

    /// The name used in `format=…` and as the file extension.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::Parquet => "parquet",
            ExportFormat::Xlsx => "xlsx",
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

/// A format name that is none of `csv`, `jsonl`, `parquet`, `xlsx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format `{0}`; expected one of csv, jsonl, parquet, xlsx")]
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
            _ => Err(UnknownFormat(s.to_owned())),
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

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `VARCHAR`.
    Text,
    /// `BIGINT`.
    Integer,
    /// `BIGINT` nanoseconds since the Unix epoch, UTC.
    TimestampNs,
    /// `VARCHAR` holding JSON text.
    Json,
}

/// One output column: its name in the file, the SQL expression for it, its kind.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) sql: String,
    pub(crate) kind: Kind,
    /// In JSON Lines, the column is `key` inside the object `parent` (adjacent columns
    /// with one parent share the object); the tabular formats keep it flat as `name`.
    pub(crate) nested: Option<(&'static str, &'static str)>,
}

impl Column {
    pub(crate) fn new(name: &'static str, sql: impl Into<String>, kind: Kind) -> Self {
        Self {
            name,
            sql: sql.into(),
            kind,
            nested: None,
        }
    }

    /// In JSON Lines, `parent.key`.
    fn nested(mut self, parent: &'static str, key: &'static str) -> Self {
        self.nested = Some((parent, key));
        self
    }
}

/// The type of a sort key, for reading it back and binding it as a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// `BIGINT`.
    Integer,
    /// `VARCHAR`.
    Text,
    /// `UUID` (compared as UUIDs, carried as text).
    Uuid,
}

/// A sort key: together the keys must order the rows totally, and none may be null.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SortKey {
    pub(crate) sql: &'static str,
    pub(crate) kind: KeyKind,
}

/// What to export.
#[derive(Debug, Clone)]
pub(crate) struct ExportQuery {
    /// The worksheet name for XLSX.
    pub(crate) sheet: &'static str,
    pub(crate) columns: Vec<Column>,
    /// A table name.
    pub(crate) from: &'static str,
    /// A `WHERE` condition with `?` placeholders for `params`.
    pub(crate) filter: String,
    pub(crate) params: Vec<Value>,
    pub(crate) keys: Vec<SortKey>,
    pub(crate) order: Order,
}

impl ExportQuery {
    fn order_by(&self) -> String {
        let dir = query::order_sql(self.order);
        self.keys
            .iter()
            .map(|k| format!("{} {dir}", k.sql))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `k1 >= ? AND ((k1 > ?) OR (k1 = ? AND k2 > ?) …)`: the rows after `cursor` in
    /// the order. The leading bound on the first key alone lets DuckDB skip the row
    /// groups before the cursor (min/max statistics), so each chunk reads only what
    /// follows it.
    fn after(&self, cursor: &[Value], params: &mut Vec<Value>) -> String {
        let (cmp, bound) = match self.order {
            Order::Asc => (">", ">="),
            Order::Desc => ("<", "<="),
        };
        let placeholder = |k: &SortKey| match k.kind {
            KeyKind::Uuid => "?::UUID",
            KeyKind::Integer | KeyKind::Text => "?",
        };
        let first = &self.keys[0];
        let lead = format!("{} {bound} {}", first.sql, placeholder(first));
        params.push(cursor[0].clone());
        let mut ors = Vec::new();
        for i in 0..self.keys.len() {
            let mut ands = Vec::new();
            for (j, k) in self.keys[..=i].iter().enumerate() {
                let op = if j == i { cmp } else { "=" };
                ands.push(format!("{} {op} {}", k.sql, placeholder(k)));
                params.push(cursor[j].clone());
            }
            ors.push(format!("({})", ands.join(" AND ")));
        }
        format!("{lead} AND ({})", ors.join(" OR "))
    }
}

/// One value read from a row.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Text(String),
    Int(i64),
    Time(i64),
    Json(String),
}

/// A row's values, in column order.
type Row = Vec<Cell>;
/// The sort keys of a row: where the next chunk starts.
type Cursor = Vec<Value>;

/// Reads up to `limit` rows after `cursor` (and, with `until`, whose first key is
/// short of it in the order); returns them and the last row's keys.
fn fetch_chunk(
    conn: &Connection,
    q: &ExportQuery,
    cursor: Option<&[Value]>,
    until: Option<i64>,
    limit: usize,
) -> Result<(Vec<Row>, Option<Cursor>)> {
    let keys = q
        .keys
        .iter()
        .map(|k| match k.kind {
            KeyKind::Uuid => format!("{}::VARCHAR", k.sql),
            KeyKind::Integer | KeyKind::Text => k.sql.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let columns = q
        .columns
        .iter()
        .map(|c| c.sql.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut params = q.params.clone();
    let mut sql = format!(
        "SELECT {keys}, {columns} FROM {} WHERE {}",
        q.from, q.filter
    );
    if let Some(cursor) = cursor {
        sql.push_str(" AND ");
        sql.push_str(&q.after(cursor, &mut params));
    }
    if let Some(until) = until {
        let cmp = match q.order {
            Order::Asc => "<",
            Order::Desc => ">",
        };
        sql.push_str(&format!(" AND {} {cmp} ?", q.keys[0].sql));
        params.push(Value::BigInt(until));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", q.order_by()));

    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(duckdb::params_from_iter(params.iter()))?;
    let nk = q.keys.len();
    let mut out = Vec::with_capacity(limit);
    let mut last = None;
    while let Some(row) = rows.next()? {
        let mut key = Vec::with_capacity(nk);
        for (i, k) in q.keys.iter().enumerate() {
            key.push(match k.kind {
                KeyKind::Integer => Value::BigInt(row.get(i)?),
                KeyKind::Text | KeyKind::Uuid => Value::Text(row.get(i)?),
            });
        }
        let mut cells = Vec::with_capacity(q.columns.len());
        for (j, c) in q.columns.iter().enumerate() {
            let i = nk + j;
            cells.push(match c.kind {
                Kind::Text => row
                    .get::<_, Option<String>>(i)?
                    .map_or(Cell::Null, Cell::Text),
                Kind::Json => row
                    .get::<_, Option<String>>(i)?
                    .map_or(Cell::Null, Cell::Json),
                Kind::Integer => row.get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Int),
                Kind::TimestampNs => row.get::<_, Option<i64>>(i)?.map_or(Cell::Null, Cell::Time),
            });
        }
        out.push(cells);
        last = Some(key);
    }
    Ok((out, last))
}

/// Walks a query a chunk at a time.
///
/// A keyset condition alone makes DuckDB skip what precedes the cursor but still read
/// everything after it to pick the next chunk, which is quadratic over a long export.
/// When the first sort key is an integer (a time), each read is also bounded to a
/// window of that key sized from the previous chunk (twice its span), so a read costs
/// about two chunks' worth of rows. A window that holds fewer rows than a chunk
/// doubles until it reaches the end of the key's range, where the walk ends.
#[derive(Debug, Default)]
struct Pager {
    cursor: Option<Cursor>,
    /// The first key's smallest and largest values among the rows; `None` until read.
    range: Option<Option<(i64, i64)>>,
    width: Option<i64>,
    done: bool,
}

impl Pager {
    fn next_chunk(&mut self, conn: &Connection, q: &ExportQuery) -> Result<Vec<Row>> {
        let windowed = q.keys[0].kind == KeyKind::Integer;
        if windowed && self.range.is_none() {
            let sql = format!(
                "SELECT min({k}), max({k}) FROM {} WHERE {}",
                q.from,
                q.filter,
                k = q.keys[0].sql
            );
            let (lo, hi): (Option<i64>, Option<i64>) = conn
                .prepare_cached(&sql)?
                .query_row(duckdb::params_from_iter(q.params.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            self.range = Some(lo.zip(hi));
        }
        loop {
            // Where this read starts on the first key, and where its window ends.
            let from = match (&self.cursor, self.range.flatten()) {
                (Some(c), _) => match c[0] {
                    Value::BigInt(v) => Some(v),
                    _ => None,
                },
                (None, Some((lo, hi))) => Some(if q.order == Order::Asc { lo } else { hi }),
                (None, None) => None,
            };
            let until = match (from, self.width, self.range.flatten()) {
                (Some(from), Some(w), Some((lo, hi))) => match q.order {
                    Order::Asc => Some(from.saturating_add(w)).filter(|end| *end <= hi),
                    Order::Desc => Some(from.saturating_sub(w)).filter(|end| *end >= lo),
                },
                _ => None,
            };
            let (rows, last) = fetch_chunk(conn, q, self.cursor.as_deref(), until, CHUNK_ROWS)?;
            if let Some(last) = last {
                self.cursor = Some(last);
            }
            if rows.len() == CHUNK_ROWS {
                if let (true, Some(from), Some(Value::BigInt(to))) =
                    (windowed, from, self.cursor.as_ref().map(|c| &c[0]))
                {
                    let span = from.abs_diff(*to).saturating_mul(2);
                    self.width = Some(i64::try_from(span).unwrap_or(i64::MAX).max(1));
                }
                return Ok(rows);
            }
            if until.is_none() {
                self.done = true;
                return Ok(rows);
            }
            // The window held less than a chunk: widen it.
            self.width = self.width.map(|w| w.saturating_mul(2));
            if !rows.is_empty() {
                return Ok(rows);
            }
        }
    }
}

fn export_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Export(format!("{what}: {e}"))
}

/// A file deleted when dropped.
#[derive(Debug)]
struct TempFile(PathBuf);

impl TempFile {
    fn new(dir: &Path, extension: &str) -> TempFile {
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
    Csv(Vec<u8>),
    Jsonl(Vec<u8>),
    Xlsx(Box<XlsxSink>),
}

impl Sink {
    fn new(format: ExportFormat, q: &ExportQuery, dir: &Path) -> Result<Sink> {
        match format {
            ExportFormat::Csv => {
                // The byte-order mark tells spreadsheet programs the file is UTF-8.
                let mut buf = b"\xEF\xBB\xBF".to_vec();
                let mut w = csv_writer(&mut buf);
                w.write_record(q.columns.iter().map(|c| c.name))
                    .and_then(|()| w.flush().map_err(csv::Error::from))
                    .map_err(|e| export_err("csv", e))?;
                drop(w);
                Ok(Sink::Csv(buf))
            }
            ExportFormat::Jsonl => Ok(Sink::Jsonl(Vec::new())),
            ExportFormat::Xlsx => Ok(Sink::Xlsx(Box::new(XlsxSink::new(q, dir)?))),
            ExportFormat::Parquet => Err(Error::Export("parquet is not row-encoded".into())),
        }
    }

    fn write_rows(&mut self, q: &ExportQuery, rows: &[Row]) -> Result<()> {
        match self {
            Sink::Csv(buf) => {
                let mut w = csv_writer(buf);
                let mut fields: Vec<String> = Vec::with_capacity(q.columns.len());
                for row in rows {
                    fields.clear();
                    fields.extend(row.iter().map(|cell| match cell {
                        Cell::Null => String::new(),
                        Cell::Text(s) | Cell::Json(s) => s.clone(),
                        Cell::Int(n) => n.to_string(),
                        Cell::Time(ns) => Timestamp(*ns).to_rfc3339(),
                    }));
                    w.write_record(&fields).map_err(|e| export_err("csv", e))?;
                }
                w.flush().map_err(|e| export_err("csv", e))
            }
            Sink::Jsonl(buf) => {
                for row in rows {
                    write_json_line(buf, q, row)?;
                }
                Ok(())
            }
            Sink::Xlsx(x) => rows.iter().try_for_each(|row| x.write_row(q, row)),
        }
    }

    /// The bytes encoded so far and not yet taken.
    fn take(&mut self) -> Result<Vec<u8>> {
        match self {
            Sink::Csv(buf) | Sink::Jsonl(buf) => Ok(std::mem::take(buf)),
            Sink::Xlsx(_) => Ok(Vec::new()),
        }
    }

    /// Completes the file; for XLSX, the finished workbook's temporary file.
    fn finish(self) -> Result<Option<TempFile>> {
        match self {
            Sink::Csv(_) | Sink::Jsonl(_) => Ok(None),
            Sink::Xlsx(x) => x.finish().map(Some),
        }
    }
}

/// RFC 4180: fields quoted only when they need it, quotes doubled, CRLF line ends.
fn csv_writer(buf: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(buf)
}

/// One JSON object per row: the column names as keys, in order (nested columns inside
/// their parent object). JSON columns are embedded as values, normalised the way the
/// API writes them.
fn write_json_line(buf: &mut Vec<u8>, q: &ExportQuery, row: &[Cell]) -> Result<()> {
    let json = |e: serde_json::Error| export_err("json", e);
    buf.push(b'{');
    let mut open: Option<&str> = None;
    for (i, (col, cell)) in q.columns.iter().zip(row).enumerate() {
        let parent = col.nested.map(|(p, _)| p);
        if open.is_some() && open != parent {
            buf.push(b'}');
            open = None;
        }
        if i > 0 && !(open.is_some() && open == parent) {
            buf.push(b',');
        }
        let key = match col.nested {
            Some((p, key)) => {
                if open == Some(p) {
                    buf.push(b',');
                } else {
                    serde_json::to_writer(&mut *buf, p).map_err(json)?;
                    buf.extend_from_slice(b":{");
                    open = Some(p);
                }
                key
            }
            None => col.name,
        };
        serde_json::to_writer(&mut *buf, key).map_err(json)?;
        buf.push(b':');
        match cell {
            Cell::Null => buf.extend_from_slice(b"null"),
            Cell::Text(s) => serde_json::to_writer(&mut *buf, s).map_err(json)?,
            Cell::Int(n) => write!(buf, "{n}").map_err(|e| export_err("json", e))?,
            Cell::Time(ns) => serde_json::to_writer(&mut *buf, &Timestamp(*ns)).map_err(json)?,
            Cell::Json(s) => {
                let v: serde_json::Value =
                    serde_json::from_str(s).map_err(|e| Error::Corrupt(e.to_string()))?;
                serde_json::to_writer(&mut *buf, &v).map_err(json)?;
            }
        }
    }
    if open.is_some() {
        buf.push(b'}');
    }
    buf.extend_from_slice(b"}\n");
    Ok(())
}

/// An XLSX workbook written in constant-memory mode.
struct XlsxSink {
    workbook: Workbook,
    file: TempFile,
    sheet: usize,
    row: u32,
    bold: Format,
    time: Format,
}

impl XlsxSink {
    fn new(q: &ExportQuery, dir: &Path) -> Result<XlsxSink> {
        let xlsx = |e: rust_xlsxwriter::XlsxError| export_err("xlsx", e);
        let mut workbook = Workbook::new();
        workbook.set_tempdir(dir).map_err(xlsx)?;
        let mut sink = XlsxSink {
            workbook,
            file: TempFile::new(dir, "xlsx"),
            sheet: 0,
            row: 0,
            bold: Format::new().set_bold(),
            time: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss.000"),
        };
        sink.add_sheet(q, q.sheet.to_owned())?;
        Ok(sink)
    }

    fn add_sheet(&mut self, q: &ExportQuery, name: String) -> Result<()> {
        let xlsx = |e: rust_xlsxwriter::XlsxError| export_err("xlsx", e);
        let ws = self.workbook.add_worksheet_with_constant_memory();
        ws.set_name(name).map_err(xlsx)?;
        for (col, c) in (0u16..).zip(&q.columns) {
            let width = match c.kind {
                Kind::Json => 60.0,
                Kind::TimestampNs => 24.0,
                Kind::Integer => 14.0,
                Kind::Text => 20.0,
            };
            ws.set_column_width(col, width).map_err(xlsx)?;
            ws.write_string_with_format(0, col, c.name, &self.bold)
                .map_err(xlsx)?;
        }
        ws.set_freeze_panes(1, 0).map_err(xlsx)?;
        self.sheet = self.workbook.worksheets().len() - 1;
        self.row = 1;
        Ok(())
    }

    fn write_row(&mut self, q: &ExportQuery, row: &[Cell]) -> Result<()> {
        let xlsx = |e: rust_xlsxwriter::XlsxError| export_err("xlsx", e);
        if self.row >= XLSX_MAX_ROWS {
            let n = self.workbook.worksheets().len() + 1;
            self.add_sheet(q, format!("{} {n}", q.sheet))?;
        }
        let (r, time) = (self.row, &self.time);
        let ws: &mut Worksheet = self
            .workbook
            .worksheet_from_index(self.sheet)
            .map_err(xlsx)?;
        for (col, cell) in (0u16..).zip(row) {
            match cell {
                Cell::Null => {}
                Cell::Text(s) | Cell::Json(s) => {
                    ws.write_string(r, col, excel_text(s)).map_err(xlsx)?;
                }
                // Excel numbers are doubles: integers beyond 2^53 lose their last digits.
                #[allow(clippy::cast_precision_loss)]
                Cell::Int(n) => {
                    ws.write_number(r, col, *n as f64).map_err(xlsx)?;
                }
                Cell::Time(ns) => match ExcelDateTime::from_serial_datetime(excel_serial(*ns)) {
                    Ok(dt) => {
                        ws.write_datetime_with_format(r, col, dt, time)
                            .map_err(xlsx)?;
                    }
                    // Before 1900 or after 9999: Excel cannot show it as a date.
                    Err(_) => {
                        ws.write_string(r, col, Timestamp(*ns).to_rfc3339())
                            .map_err(xlsx)?;
                    }
                },
            }
        }
        self.row += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<TempFile> {
        self.workbook
            .save(&self.file.0)
            .map_err(|e| export_err("xlsx", e))?;
        Ok(self.file)
    }
}

/// Excel's serial date-time (days since 1899-12-30) of a UTC time in nanoseconds.
#[allow(clippy::cast_precision_loss)]
fn excel_serial(ns: i64) -> f64 {
    const DAY: i64 = 86_400_000_000_000;
    const UNIX_EPOCH_SERIAL: f64 = 25_569.0;
    UNIX_EPOCH_SERIAL + ns.div_euclid(DAY) as f64 + ns.rem_euclid(DAY) as f64 / DAY as f64
}

/// Text cut to Excel's cell limit, marked with an ellipsis when cut.
fn excel_text(s: &str) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(XLSX_MAX_CHARS) {
        None => s.into(),
        Some(_) => {
            let end = s
                .char_indices()
                .nth(XLSX_MAX_CHARS - 1)
                .map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..end]).into()
        }
    }
}

/// `'…'` with quotes doubled.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// DuckDB writes the Parquet file: times as UTC timestamps (microseconds).
fn write_parquet(conn: &Connection, q: &ExportQuery, path: &Path) -> Result<()> {
    let columns = q
        .columns
        .iter()
        .map(|c| {
            let expr = match c.kind {
                // TIMESTAMP → TIMESTAMPTZ takes the value as UTC (no time zone
                // extension is loaded); Parquet marks the column as adjusted to UTC.
                Kind::TimestampNs => format!("make_timestamp(({}) // 1000)::TIMESTAMPTZ", c.sql),
                Kind::Integer => format!("({})::BIGINT", c.sql),
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
        store.read_now(move |c| write_parquet(c, &q, &path)).await?;
        return send_file(store, tx, file).await;
    }

    let mut state = (Sink::new(format, &q, &dir)?, Pager::default());
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        let q2 = q.clone();
        let (next, bytes) = store
            .read_now(move |c| {
                let (mut sink, mut pager) = state;
                let rows = pager.next_chunk(c, &q2)?;
                sink.write_rows(&q2, &rows)?;
                let bytes = sink.take()?;
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
    let file = tokio::task::spawn_blocking(move || sink.finish())
        .await
        .map_err(|_| Error::Closed)??;
    match file {
        Some(file) => send_file(store, tx, file).await,
        None => Ok(()),
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
        Column::new("id", "id::VARCHAR", Kind::Text),
        Column::new("timestamp", "ts", Kind::TimestampNs),
        Column::new("level", level_name_sql("level"), Kind::Text),
        Column::new("category", category_name_sql("category"), Kind::Text),
        Column::new("event", "event", Kind::Text),
        Column::new("call_id", "call_id", Kind::Text),
        Column::new("agent_id", "agent_id", Kind::Text),
        Column::new("trace_id", "trace_id", Kind::Text),
        Column::new("span_id", "span_id", Kind::Text),
        Column::new("data", "data", Kind::Json),
    ]
}

/// Exports one call's records; `None` when the tenant has no such call.
pub(crate) async fn call_logs(
    store: &Store,
    tenant: &str,
    call_id: &str,
    filter: LogFilter,
    order: Order,
    format: ExportFormat,
) -> Result<Option<ExportStream>> {
    let (t, c) = (tenant.to_owned(), call_id.to_owned());
    let Some(window) = store
        .read_now(move |conn| query::call_window(conn, &t, &c))
        .await?
    else {
        return Ok(None);
    };
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
    };
    start(store, q, format).await.map(Some)
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
        Column::new("recording_url", "recording_url", Kind::Text),
        Column::new("trace_id", "trace_id", Kind::Text),
        Column::new("log_count", "log_count", Kind::Integer),
    ];
    for (level, (name, sql)) in Level::ALL.iter().zip([
        ("debug_count", "debug_count"),
        ("info_count", "info_count"),
        ("warning_count", "warning_count"),
        ("error_count", "error_count"),
        ("critical_count", "critical_count"),
    ]) {
        cols.push(Column::new(name, sql, Kind::Integer).nested("level_counts", level.as_str()));
    }
    cols
}

/// Exports `tenant`'s calls matching `filter`, newest first (the calls list's order).
pub(crate) async fn calls(
    store: &Store,
    tenant: &str,
    filter: &CallFilter,
    format: ExportFormat,
) -> Result<ExportStream> {
    let (where_sql, params) = crate::calls::call_where(tenant, filter);
    // Chosen once: an export that starts while the journal is empty reads `calls`
    // throughout, and covers what was acknowledged when it started.
    let view = store
        .read_now(|c| Ok(crate::summary::Sources::of(c)?.call_summary))
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

    #[test]
    fn excel_serials() {
        assert!((excel_serial(0) - 25_569.0).abs() < 1e-12);
        // 2026-09-21T14:13:20Z and a half second.
        let ns = 1_790_000_000_500_000_000;
        let expected = 25_569.0 + 1_790_000_000.5 / 86_400.0;
        assert!((excel_serial(ns) - expected).abs() < 1e-9);
    }

    #[test]
    fn excel_text_is_cut_at_the_cell_limit() {
        let short = "ü".repeat(XLSX_MAX_CHARS);
        assert_eq!(excel_text(&short), short);
        let long = "ü".repeat(XLSX_MAX_CHARS + 5);
        let cut = excel_text(&long);
        assert_eq!(cut.chars().count(), XLSX_MAX_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn json_lines_nest_grouped_columns() {
        let q = ExportQuery {
            sheet: "t",
            columns: vec![
                Column::new("a", "a", Kind::Text),
                Column::new("x", "x", Kind::Integer).nested("counts", "X"),
                Column::new("y", "y", Kind::Integer).nested("counts", "Y"),
                Column::new("t", "t", Kind::TimestampNs),
                Column::new("z", "z", Kind::Integer).nested("more", "Z"),
            ],
            from: "t",
            filter: "true".into(),
            params: vec![],
            keys: vec![],
            order: Order::Asc,
        };
        let mut buf = Vec::new();
        write_json_line(
            &mut buf,
            &q,
            &[
                Cell::Text("é\"".into()),
                Cell::Int(1),
                Cell::Null,
                Cell::Time(0),
                Cell::Int(-3),
            ],
        )
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            "{\"a\":\"é\\\"\",\"counts\":{\"X\":1,\"Y\":null},\"t\":\"1970-01-01T00:00:00.000000Z\",\"more\":{\"Z\":-3}}\n"
        );
    }

    /// The windowed walk visits every row once, in order, whatever the spacing of the
    /// first key: ties wider than a chunk, huge gaps, lone outliers.
    #[test]
    fn pager_visits_every_row_in_order() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (k BIGINT, id VARCHAR, tag VARCHAR);
             INSERT INTO t SELECT 5, 'tie' || lpad(i::VARCHAR, 5, '0'), 'a' FROM range(3000) r(i);
             INSERT INTO t SELECT 1000 + i * 7, 'dense' || i, 'a' FROM range(2500) r(i);
             INSERT INTO t SELECT 1000000000000 + i, 'far' || i, 'a' FROM range(1500) r(i);
             INSERT INTO t VALUES (-9000000000000000000, 'min', 'a'), (9000000000000000000, 'max', 'a'),
                                  (7, 'other-tenant', 'b');",
        )
        .unwrap();
        for (order, first) in [
            (Order::Asc, KeyKind::Integer),
            (Order::Desc, KeyKind::Integer),
            (Order::Asc, KeyKind::Text),
        ] {
            let keys = if first == KeyKind::Integer {
                vec![
                    SortKey {
                        sql: "k",
                        kind: KeyKind::Integer,
                    },
                    SortKey {
                        sql: "id",
                        kind: KeyKind::Text,
                    },
                ]
            } else {
                vec![
                    SortKey {
                        sql: "id",
                        kind: KeyKind::Text,
                    },
                    SortKey {
                        sql: "k",
                        kind: KeyKind::Integer,
                    },
                ]
            };
            let q = ExportQuery {
                sheet: "t",
                columns: vec![Column::new("id", "id", Kind::Text)],
                from: "t",
                filter: "tag = ?".into(),
                params: vec![Value::Text("a".into())],
                keys,
                order,
            };
            let expected: Vec<String> = conn
                .prepare(&format!(
                    "SELECT id FROM t WHERE tag = 'a' ORDER BY {}",
                    q.order_by()
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<duckdb::Result<_>>()
                .unwrap();
            let mut pager = Pager::default();
            let mut got = Vec::new();
            let mut reads = 0;
            while !pager.done {
                for row in pager.next_chunk(&conn, &q).unwrap() {
                    match &row[0] {
                        Cell::Text(id) => got.push(id.clone()),
                        other => panic!("{other:?}"),
                    }
                }
                reads += 1;
                assert!(reads < 100, "the walk ends");
            }
            assert_eq!(got.len(), 7002, "{order:?} {first:?}");
            assert_eq!(got, expected, "{order:?} {first:?}");
        }
    }

    #[test]
    fn keyset_condition_binds_every_key() {
        let q = ExportQuery {
            sheet: "t",
            columns: vec![],
            from: "t",
            filter: "true".into(),
            params: vec![],
            keys: vec![
                SortKey {
                    sql: "a",
                    kind: KeyKind::Integer,
                },
                SortKey {
                    sql: "b",
                    kind: KeyKind::Uuid,
                },
            ],
            order: Order::Desc,
        };
        let mut params = Vec::new();
        let sql = q.after(&[Value::BigInt(1), Value::Text("x".into())], &mut params);
        assert_eq!(sql, "a <= ? AND ((a < ?) OR (a = ? AND b < ?::UUID))");
        assert_eq!(
            params,
            [
                Value::BigInt(1),
                Value::BigInt(1),
                Value::BigInt(1),
                Value::Text("x".into())
            ]
        );
    }
}
