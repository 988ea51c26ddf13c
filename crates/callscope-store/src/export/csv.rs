//! CSV: UTF-8 with a byte-order mark, a header row, RFC 4180 quoting, CRLF line ends.

use callscope_model::Timestamp;

use super::{
    export_err,
    rows::{Cell, ExportQuery, Row},
};
use crate::Result;

/// A CSV file being encoded a chunk at a time.
pub(super) struct CsvSink {
    buf: Vec<u8>,
}

impl CsvSink {
    /// Starts the file: the byte-order mark and the header row.
    pub(super) fn new(q: &ExportQuery) -> Result<CsvSink> {
        // The byte-order mark tells spreadsheet programs the file is UTF-8.
        let mut buf = b"\xEF\xBB\xBF".to_vec();
        let mut w = csv_writer(&mut buf);
        w.write_record(q.columns.iter().map(|c| c.name))
            .and_then(|()| w.flush().map_err(::csv::Error::from))
            .map_err(|e| export_err("csv", e))?;
        drop(w);
        Ok(CsvSink { buf })
    }

    pub(super) fn write_rows(&mut self, q: &ExportQuery, rows: &[Row]) -> Result<()> {
        let mut w = csv_writer(&mut self.buf);
        let mut fields: Vec<String> = Vec::with_capacity(q.columns.len());
        for row in rows {
            fields.clear();
            fields.extend(row.iter().map(text));
            w.write_record(&fields).map_err(|e| export_err("csv", e))?;
        }
        w.flush().map_err(|e| export_err("csv", e))
    }

    /// The bytes encoded since the last call.
    pub(super) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// A cell as CSV text: empty for null, RFC 3339 UTC for times, JSON as JSON text.
/// The PDF report shows the same text, so its rows read like the CSV's.
pub(super) fn text(cell: &Cell) -> String {
    match cell {
        Cell::Null => String::new(),
        Cell::Text(s) | Cell::Json(s) => s.clone(),
        Cell::Int(n) => n.to_string(),
        // As JSON writes it (`47.0`), so the CSV reads like the API.
        Cell::Float(x) => serde_json::to_string(x).unwrap_or_default(),
        Cell::Time(ns) => Timestamp(*ns).to_rfc3339(),
    }
}

/// RFC 4180: fields quoted only when they need it, quotes doubled, CRLF line ends.
fn csv_writer(buf: &mut Vec<u8>) -> ::csv::Writer<&mut Vec<u8>> {
    ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(buf)
}
