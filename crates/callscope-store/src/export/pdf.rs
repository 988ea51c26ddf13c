//! PDF: a printable report (title, tenant, filters, generation time, optional metadata,
//! then a table whose rows read like the CSV's), written page by page so that an
//! export of any size holds one page in memory.
//!
//! The writer is deliberately small: PDF 1.4, uncompressed content streams, the
//! standard Helvetica fonts (every PDF reader has them, so nothing is embedded) in
//! WinAnsi encoding. Text outside that encoding is shown as `?`. The table is laid
//! out on landscape A4; its header row repeats on every page; a cell too long for its
//! column wraps onto at most [`MAX_CELL_LINES`] lines, and the last one ends in `…`
//! when the text is longer still.
//!
//! Objects are written as soon as a page is full, with their byte offsets noted for the
//! cross-reference table; the page tree, which lists every page, is written last (a
//! page names its parent by number, so it may precede it in the file).

use std::fmt::Write as _;

use super::{
    csv,
    rows::{ExportQuery, Row},
};

/// Landscape A4, in points.
const PAGE_W: f32 = 842.0;
const PAGE_H: f32 = 595.0;
const MARGIN: f32 = 24.0;
/// Table text size and line height.
const CELL_SIZE: f32 = 6.0;
const CELL_LEADING: f32 = 7.2;
/// Space around a cell's text.
const CELL_PAD: f32 = 2.5;
/// The most lines a cell wraps onto.
pub(crate) const MAX_CELL_LINES: usize = 6;
/// Columns of the metadata block (a call's fields).
const GRID_COLUMNS: usize = 3;
/// Room kept free at the bottom of a page for its footer.
const FOOTER_H: f32 = 20.0;

/// The fixed objects: catalog, page tree, the two fonts, the document information.
const CATALOG: usize = 1;
const PAGES: usize = 2;
const FONT: usize = 3;
const FONT_BOLD: usize = 4;
const INFO: usize = 5;

/// The PDF format of an export: the query's heading and its report columns (see
/// [`Column::data_only`](super::rows::Column::data_only)), the CSV's text for each cell.
#[derive(Debug)]
pub(super) struct PdfSink {
    writer: PdfWriter,
    /// The indexes of the columns the table shows.
    shown: Vec<usize>,
}

impl PdfSink {
    pub(super) fn new(q: &ExportQuery) -> PdfSink {
        let h = &q.heading;
        // A column is at least as wide as the longest piece of its name, so that a
        // header wraps at its underscores rather than mid-word.
        let shown: Vec<usize> = (0..q.columns.len())
            .filter(|&i| q.columns[i].in_report)
            .collect();
        let widths = shown
            .iter()
            .map(|&i| &q.columns[i])
            .map(|c| {
                let longest = c.name.split('_').map(str::len).max().unwrap_or(1);
                #[allow(clippy::cast_precision_loss)]
                let name = (longest + 1) as f32;
                c.width.max(name)
            })
            .collect();
        PdfSink {
            writer: PdfWriter::new(Report {
                title: h.title.clone(),
                tenant: h.tenant.clone(),
                generated: h.generated.clone(),
                filters: h.filters.clone(),
                metadata: h.metadata.clone(),
                columns: shown
                    .iter()
                    .map(|&i| q.columns[i].name.to_owned())
                    .collect(),
                widths,
                empty: h.empty.clone(),
            }),
            shown,
        }
    }

    pub(super) fn write_rows(&mut self, rows: &[Row]) {
        for row in rows {
            let cells: Vec<String> = self.shown.iter().map(|&i| csv::text(&row[i])).collect();
            self.writer.row(&cells);
        }
    }

    /// The finished pages' bytes since the last call.
    pub(super) fn take(&mut self) -> Vec<u8> {
        self.writer.take()
    }

    /// The rest of the file.
    pub(super) fn finish(self) -> Vec<u8> {
        self.writer.finish()
    }
}

/// What a report says above and around its table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    /// The document's title, e.g. `Calls`.
    pub(crate) title: String,
    /// The tenant whose data it shows.
    pub(crate) tenant: String,
    /// When it was produced (RFC 3339 UTC).
    pub(crate) generated: String,
    /// The filters applied, as `name` and value; none prints "none".
    pub(crate) filters: Vec<(String, String)>,
    /// Labelled values printed before the table (a call's fields).
    pub(crate) metadata: Vec<(String, String)>,
    /// The table's column names.
    pub(crate) columns: Vec<String>,
    /// Relative column widths, in characters (same length as `columns`).
    pub(crate) widths: Vec<f32>,
    /// What an empty table says.
    pub(crate) empty: String,
}

/// A report being written. [`PdfWriter::take`] hands out finished pages' bytes;
/// [`PdfWriter::finish`] the rest of the file.
#[derive(Debug)]
pub(crate) struct PdfWriter {
    report: Report,
    /// Column x positions and widths.
    cols: Vec<(f32, f32)>,
    out: Vec<u8>,
    /// Bytes handed out or pending in `out`: the next object's offset.
    pos: usize,
    /// Byte offset of each object, by number − 1.
    offsets: Vec<usize>,
    /// Page object numbers, in order.
    pages: Vec<usize>,
    /// The page being laid out: its content stream and the next line's baseline.
    content: String,
    y: f32,
    rows: u64,
}

impl PdfWriter {
    /// Starts the file and its first page (heading, filters, metadata, table header).
    pub(crate) fn new(report: Report) -> PdfWriter {
        let usable = PAGE_W - 2.0 * MARGIN;
        let total: f32 = report.widths.iter().sum::<f32>().max(1.0);
        let mut x = MARGIN;
        let cols = report
            .widths
            .iter()
            .map(|w| {
                let width = usable * w / total;
                let col = (x, width);
                x += width;
                col
            })
            .collect();
        let mut w = PdfWriter {
            report,
            cols,
            out: Vec::new(),
            pos: 0,
            offsets: vec![0; INFO],
            pages: Vec::new(),
            content: String::new(),
            y: 0.0,
            rows: 0,
        };
        // The binary comment tells transfer tools the file is not text.
        w.emit(b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n");
        w.object(CATALOG, &format!("<< /Type /Catalog /Pages {PAGES} 0 R >>"));
        for (n, name) in [(FONT, "Helvetica"), (FONT_BOLD, "Helvetica-Bold")] {
            w.object(
                n,
                &format!(
                    "<< /Type /Font /Subtype /Type1 /BaseFont /{name} /Encoding /WinAnsiEncoding >>"
                ),
            );
        }
        let info = format!(
            "<< /Title {} /Author {} /Producer (callscope) >>",
            pdf_string(&w.report.title),
            pdf_string(&w.report.tenant),
        );
        w.object(INFO, &info);
        w.start_page(true);
        w
    }

    /// Adds a table row; starts a new page when it does not fit.
    pub(crate) fn row(&mut self, cells: &[String]) {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(&self.cols)
            .map(|(text, (_, width))| wrap(text, width - 2.0 * CELL_PAD, CELL_SIZE, false))
            .collect();
        let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
        #[allow(clippy::cast_precision_loss)]
        let height = lines as f32 * CELL_LEADING + CELL_PAD;
        if self.y - height < MARGIN + FOOTER_H {
            self.end_page();
            self.start_page(false);
        }
        if self.rows % 2 == 1 {
            self.fill_rect(MARGIN, self.y - height, PAGE_W - 2.0 * MARGIN, height, 0.95);
        }
        for (cell, (x, _)) in wrapped.iter().zip(self.cols.clone()) {
            for (i, line) in cell.iter().enumerate() {
                #[allow(clippy::cast_precision_loss)]
                let baseline = self.y - CELL_LEADING * (i as f32 + 1.0) + 1.5;
                self.text(x + CELL_PAD, baseline, CELL_SIZE, false, line);
            }
        }
        self.y -= height;
        self.rows += 1;
    }

    /// The bytes of the pages finished since the last call.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Ends the last page and writes the page tree, cross-reference table and trailer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.rows == 0 {
            let note = self.report.empty.clone();
            self.text(MARGIN, self.y - 14.0, 9.0, false, &note);
        }
        self.end_page();
        let kids: String = self.pages.iter().map(|p| format!("{p} 0 R ")).collect();
        let tree = format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.trim_end(),
            self.pages.len()
        );
        self.object(PAGES, &tree);
        let xref = self.pos;
        let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", self.offsets.len() + 1);
        for off in &self.offsets {
            let _ = writeln!(table, "{off:010} 00000 n ");
        }
        let _ = write!(
            table,
            "trailer\n<< /Size {} /Root {CATALOG} 0 R /Info {INFO} 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            self.offsets.len() + 1
        );
        self.emit(table.as_bytes());
        self.out
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.pos += bytes.len();
    }

    /// Writes object `n` (numbers from 1) with `body`.
    fn object(&mut self, n: usize, body: &str) {
        self.object_bytes(n, body.as_bytes());
    }

    fn object_bytes(&mut self, n: usize, body: &[u8]) {
        if self.offsets.len() < n {
            self.offsets.resize(n, 0);
        }
        self.offsets[n - 1] = self.pos;
        self.emit(format!("{n} 0 obj\n").as_bytes());
        self.emit(body);
        self.emit(b"\nendobj\n");
    }

    fn next_object(&mut self) -> usize {
        self.offsets.push(0);
        self.offsets.len()
    }

    /// Begins a page: on the first, the report's heading; on every one, the table
    /// header.
    fn start_page(&mut self, first: bool) {
        self.content.clear();
        let mut y = PAGE_H - MARGIN;
        let title = self.report.title.clone();
        let width = PAGE_W - 2.0 * MARGIN;
        if first {
            y -= 16.0;
            self.text(MARGIN, y, 16.0, true, &title);
            y -= 8.0;
            let mut lines = vec![
                ("Tenant".to_owned(), self.report.tenant.clone()),
                ("Generated".to_owned(), self.report.generated.clone()),
            ];
            let filters = if self.report.filters.is_empty() {
                "none".to_owned()
            } else {
                self.report
                    .filters
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            lines.push(("Filters".to_owned(), filters));
            y = self.labelled(&lines, y, width);
            if !self.report.metadata.is_empty() {
                y -= 6.0;
                y -= 11.0;
                self.text(MARGIN, y, 10.0, true, "Call");
                let metadata = self.report.metadata.clone();
                y = self.grid(&metadata, y, width);
            }
            y -= 10.0;
        } else {
            y -= 9.0;
            self.text(MARGIN, y, 9.0, true, &format!("{title} (continued)"));
            y -= 8.0;
        }
        // The table header: bold names on a grey band.
        let names = self.report.columns.clone();
        let wrapped: Vec<Vec<String>> = names
            .iter()
            .zip(&self.cols)
            .map(|(n, (_, w))| wrap(n, w - 2.0 * CELL_PAD, CELL_SIZE, true))
            .collect();
        let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        #[allow(clippy::cast_precision_loss)]
        let height = lines as f32 * CELL_LEADING + CELL_PAD;
        self.fill_rect(MARGIN, y - height, width, height, 0.85);
        for (cell, (x, _)) in wrapped.iter().zip(self.cols.clone()) {
            for (i, line) in cell.iter().enumerate() {
                #[allow(clippy::cast_precision_loss)]
                let baseline = y - CELL_LEADING * (i as f32 + 1.0) + 1.5;
                self.text(x + CELL_PAD, baseline, CELL_SIZE, true, line);
            }
        }
        self.y = y - height;
    }

    /// `label: value` lines at 8 points, values wrapped to the width; returns the
    /// baseline of the last line.
    fn labelled(&mut self, lines: &[(String, String)], mut y: f32, width: f32) -> f32 {
        const SIZE: f32 = 8.0;
        const LABEL_W: f32 = 110.0;
        for (label, value) in lines {
            let wrapped = wrap(value, width - LABEL_W, SIZE, false);
            for (i, line) in wrapped.iter().enumerate() {
                y -= 10.0;
                if i == 0 {
                    self.text(MARGIN, y, SIZE, true, label);
                }
                self.text(MARGIN + LABEL_W, y, SIZE, false, line);
            }
        }
        y
    }

    /// `label value` pairs at 7 points in [`GRID_COLUMNS`] columns, filled row by row,
    /// values wrapped to their column; returns the baseline of the last line.
    fn grid(&mut self, pairs: &[(String, String)], mut y: f32, width: f32) -> f32 {
        const SIZE: f32 = 7.0;
        const LEADING: f32 = 9.0;
        #[allow(clippy::cast_precision_loss)]
        let col_w = width / GRID_COLUMNS as f32;
        let label_w = col_w * 0.4;
        for row in pairs.chunks(GRID_COLUMNS) {
            let cells: Vec<(&String, Vec<String>)> = row
                .iter()
                .map(|(label, value)| (label, wrap(value, col_w - label_w - 6.0, SIZE, false)))
                .collect();
            let lines = cells.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
            for (i, (label, value)) in cells.iter().enumerate() {
                #[allow(clippy::cast_precision_loss)]
                let x = MARGIN + col_w * i as f32;
                let label = wrap(label, label_w - 4.0, SIZE, true);
                self.text(x, y - LEADING, SIZE, true, &label[0]);
                for (j, line) in value.iter().enumerate() {
                    #[allow(clippy::cast_precision_loss)]
                    let baseline = y - LEADING * (j as f32 + 1.0);
                    self.text(x + label_w, baseline, SIZE, false, line);
                }
            }
            #[allow(clippy::cast_precision_loss)]
            {
                y -= LEADING * lines as f32;
            }
        }
        y
    }

    /// Ends the page being laid out: footer, then its content stream and page object.
    fn end_page(&mut self) {
        let n = self.pages.len() + 1;
        let footer = format!(
            "{} \u{b7} {} \u{b7} generated {}",
            self.report.title, self.report.tenant, self.report.generated
        );
        self.text(MARGIN, MARGIN - 4.0, 7.0, false, &footer);
        let page = format!("Page {n}");
        let w = text_width(&page, 7.0, false);
        self.text(PAGE_W - MARGIN - w, MARGIN - 4.0, 7.0, false, &page);

        let content = encode(&std::mem::take(&mut self.content));
        let stream_obj = self.next_object();
        let mut body = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        body.extend_from_slice(&content);
        body.extend_from_slice(b"\nendstream");
        self.object_bytes(stream_obj, &body);
        let page_obj = self.next_object();
        self.object(
            page_obj,
            &format!(
                "<< /Type /Page /Parent {PAGES} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] \
                 /Resources << /Font << /F1 {FONT} 0 R /F2 {FONT_BOLD} 0 R >> >> \
                 /Contents {stream_obj} 0 R >>"
            ),
        );
        self.pages.push(page_obj);
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, s: &str) {
        let font = if bold { "F2" } else { "F1" };
        let _ = writeln!(
            self.content,
            "BT /{font} {size} Tf {x:.2} {y:.2} Td {} Tj ET",
            pdf_string(s)
        );
    }

    fn fill_rect(&mut self, x: f32, y: f32, w: f32, h: f32, grey: f32) {
        let _ = writeln!(
            self.content,
            "{grey} g {x:.2} {y:.2} {w:.2} {h:.2} re f 0 g"
        );
    }
}

/// A PDF literal string: WinAnsi characters, with `\`, `(` and `)` escaped. Built
/// as text here; [`encode`] turns it into WinAnsi bytes when the page is written.
fn pdf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('(');
    for c in s.chars() {
        let c = match c {
            c if c.is_control() => ' ',
            c if winansi(c).is_some() => c,
            _ => '?',
        };
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push(')');
    out
}

/// A content stream's text as WinAnsi bytes (strings in it went through
/// [`pdf_string`]; line breaks separate operators).
fn encode(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| {
            if c == '\n' {
                b'\n'
            } else {
                winansi(c).unwrap_or(b'?')
            }
        })
        .collect()
}

/// The WinAnsi byte of `c`; `None` when the encoding has no such character.
fn winansi(c: char) -> Option<u8> {
    let b = match c {
        ' '..='~' => c as u8,
        '\u{a0}'..='\u{ff}' => u8::try_from(u32::from(c)).ok()?,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        _ => return None,
    };
    Some(b)
}

/// Helvetica's advance widths (thousandths of the text size) for ` ` to `~`.
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278,
    278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584,
    556, // '0'..'?'
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722,
    778, // '@'..'O'
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469,
    556, // 'P'..'_'
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556,
    556, // '`'..'o'
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584, // 'p'..'~'
];

/// Helvetica-Bold's advance widths for ` ` to `~`.
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278,
    278, // ' '..'/'
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584,
    611, // '0'..'?'
    975, 722, 722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722,
    778, // '@'..'O'
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584,
    556, // 'P'..'_'
    333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611,
    611, // '`'..'o'
    611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584, // 'p'..'~'
];

/// The width of `c` in points at `size`; characters past ASCII get a wide letter's
/// width, so that text measured here never overflows its column.
fn char_width(c: char, size: f32, bold: bool) -> f32 {
    let table = if bold { &HELVETICA_BOLD } else { &HELVETICA };
    let units = match c {
        ' '..='~' => table[c as usize - 32],
        '\t' | '\n' | '\r' => table[0],
        _ => 1000,
    };
    f32::from(units) * size / 1000.0
}

fn text_width(s: &str, size: f32, bold: bool) -> f32 {
    s.chars().map(|c| char_width(c, size, bold)).sum()
}

/// `s` broken into lines no wider than `width`: at a space or after punctuation when
/// one is in the line, else mid-word. More than [`MAX_CELL_LINES`] lines are cut, the
/// last ending in `…`. Always at least one line.
fn wrap(s: &str, width: f32, size: f32, bold: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut line_w = 0.0;
    // Byte index in `line` just after the last place it may break.
    let mut last_break: Option<usize> = None;
    let chars: Vec<char> = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let w = char_width(c, size, bold);
        if line_w + w > width && !line.is_empty() {
            let (keep, rest) = match last_break {
                Some(b) if b < line.len() => (line[..b].to_owned(), line[b..].to_owned()),
                _ => (line.clone(), String::new()),
            };
            lines.push(keep.trim_end().to_owned());
            if lines.len() == MAX_CELL_LINES {
                break;
            }
            line = rest.trim_start().to_owned();
            line_w = text_width(&line, size, bold);
            last_break = None;
            continue;
        }
        line.push(c);
        line_w += w;
        if matches!(c, ' ' | '-' | '_' | ',' | '/' | ':' | ';' | '.' | '&' | '=') {
            last_break = Some(line.len());
        }
        i += 1;
    }
    if lines.len() == MAX_CELL_LINES {
        // Cut: the last line makes room for the ellipsis.
        let mut last = lines.pop().unwrap_or_default();
        while !last.is_empty()
            && text_width(&last, size, bold) + char_width('…', size, bold) > width
        {
            last.pop();
        }
        last.push('…');
        lines.push(last);
    } else if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_and_replace_what_winansi_lacks() {
        assert_eq!(pdf_string("a(b)c\\"), "(a\\(b\\)c\\\\)");
        assert_eq!(pdf_string("é€—日本"), "(é€—??)");
        assert_eq!(encode("é€…"), [0xE9, 0x80, 0x85]);
        assert_eq!(pdf_string("a\tb\nc"), "(a b c)");
    }

    #[test]
    fn wrapping_fits_the_width_and_cuts_long_text() {
        let width = 60.0;
        let lines = wrap("customer_hangup after a long wait", width, 6.5, false);
        assert!(lines.len() > 1, "{lines:?}");
        for l in &lines {
            assert!(text_width(l, 6.5, false) <= width, "{l}");
        }
        assert_eq!(
            lines.join(" ").replace("  ", " "),
            "customer_hangup after a long wait"
        );
        let long = "x".repeat(10_000);
        let cut = wrap(&long, width, 6.5, false);
        assert_eq!(cut.len(), MAX_CELL_LINES);
        assert!(cut.last().unwrap().ends_with('…'));
        assert_eq!(wrap("", width, 6.5, false), [""]);
    }

    #[test]
    fn a_long_table_breaks_into_pages_with_a_valid_xref() {
        let mut w = PdfWriter::new(Report {
            title: "Calls".into(),
            tenant: "acme".into(),
            generated: "2026-11-21T10:00:00Z".into(),
            filters: vec![("status".into(), "failed".into())],
            metadata: vec![],
            columns: vec!["call_id".into(), "status".into()],
            widths: vec![20.0, 10.0],
            empty: "No calls.".into(),
        });
        let mut file = w.take();
        for i in 0..500 {
            w.row(&[format!("call-{i:03}"), "failed".into()]);
            file.extend(w.take());
        }
        file.extend(w.finish());
        let text = String::from_utf8_lossy(&file);
        let pages = text.matches("/Type /Page ").count();
        assert!(pages > 5, "{pages}");
        assert!(text.contains(&format!("/Count {pages}")));
        // Every offset in the cross-reference table points at its object.
        let xref = text.rfind("xref\n").unwrap();
        for (n, line) in text[xref..]
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .enumerate()
        {
            let off: usize = line[..10].parse().unwrap();
            assert!(
                file[off..].starts_with(format!("{} 0 obj", n + 1).as_bytes()),
                "{n}"
            );
        }
        let start: usize = text.lines().rev().nth(1).unwrap().parse().unwrap();
        assert!(file[start..].starts_with(b"xref"));
    }
}
