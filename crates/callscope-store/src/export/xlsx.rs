//! XLSX: a workbook written in constant-memory mode (rows go to a temporary file, not
//! to memory), with typed cells, then streamed from its file.

use std::path::Path;

use callscope_model::Timestamp;
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, Worksheet};

use super::{
    TempFile, export_err,
    rows::{Cell, ExportQuery, Kind},
};
use crate::Result;

/// Rows per XLSX worksheet, the header included (Excel's limit).
const XLSX_MAX_ROWS: u32 = 1_048_576;
/// Characters per XLSX cell (Excel's limit).
const XLSX_MAX_CHARS: usize = 32_767;

/// An XLSX workbook written in constant-memory mode.
pub(super) struct XlsxSink {
    workbook: Workbook,
    file: TempFile,
    sheet: usize,
    row: u32,
    bold: Format,
    time: Format,
}

impl XlsxSink {
    pub(super) fn new(q: &ExportQuery, dir: &Path) -> Result<XlsxSink> {
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
                Kind::Integer | Kind::Float => 14.0,
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

    pub(super) fn write_row(&mut self, q: &ExportQuery, row: &[Cell]) -> Result<()> {
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
                Cell::Float(x) => {
                    ws.write_number(r, col, *x).map_err(xlsx)?;
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

    pub(super) fn finish(mut self) -> Result<TempFile> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
