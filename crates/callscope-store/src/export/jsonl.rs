//! JSON Lines: one object per row, in the shape the API returns.

use std::io::Write as _;

use callscope_model::Timestamp;

use super::{
    export_err,
    rows::{Cell, ExportQuery},
};
use crate::{Error, Result};

/// One JSON object per row: the column names as keys, in order (nested columns inside
/// their parent object). JSON columns are embedded as values, normalised the way the
/// API writes them.
pub(super) fn write_json_line(buf: &mut Vec<u8>, q: &ExportQuery, row: &[Cell]) -> Result<()> {
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
            Cell::Float(x) => serde_json::to_writer(&mut *buf, x).map_err(json)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Order,
        export::{
            Heading,
            rows::{Column, Kind},
        },
    };

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
            heading: Heading::default(),
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
}
