//! What an export reads: its columns and sort keys ([`ExportQuery`]), and the walk
//! that reads it a chunk at a time by keyset ([`Pager`]).

use duckdb::{Connection, types::Value};

use super::{CHUNK_ROWS, Heading};
use crate::{Order, Result, query};

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
    /// `DOUBLE`.
    Float,
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
    /// Its share of a PDF table's width, in characters (longer text wraps).
    pub(crate) width: f32,
    /// Shown in a PDF report's table (every column is in the other formats).
    pub(crate) in_report: bool,
}

impl Column {
    pub(crate) fn new(name: &'static str, sql: impl Into<String>, kind: Kind) -> Self {
        let width = match kind {
            Kind::Text => 11.0,
            Kind::Integer | Kind::Float => 9.0,
            Kind::TimestampNs => 15.0,
            Kind::Json => 44.0,
        };
        Self {
            name,
            sql: sql.into(),
            kind,
            nested: None,
            width,
            in_report: true,
        }
    }

    /// Leaves the column out of a PDF report's table, whose page has room for a set
    /// number of columns.
    pub(crate) fn data_only(mut self) -> Self {
        self.in_report = false;
        self
    }

    /// A PDF table width other than its kind's.
    pub(crate) fn width(mut self, chars: f32) -> Self {
        self.width = chars;
        self
    }

    /// In JSON Lines, `parent.key`.
    pub(crate) fn nested(mut self, parent: &'static str, key: &'static str) -> Self {
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
    /// What a report says about the rows (PDF only).
    pub(crate) heading: Heading,
}

impl ExportQuery {
    pub(crate) fn order_by(&self) -> String {
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
pub(crate) enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Time(i64),
    Json(String),
}

/// A row's values, in column order.
pub(crate) type Row = Vec<Cell>;
/// The sort keys of a row: where the next chunk starts.
pub(crate) type Cursor = Vec<Value>;

/// Reads up to `limit` rows after `cursor` (and, with `until`, whose first key is
/// short of it in the order); returns them and the last row's keys.
pub(crate) fn fetch_chunk(
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
                Kind::Float => row
                    .get::<_, Option<f64>>(i)?
                    .map_or(Cell::Null, Cell::Float),
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
pub(crate) struct Pager {
    cursor: Option<Cursor>,
    /// The first key's smallest and largest values among the rows; `None` until read.
    range: Option<Option<(i64, i64)>>,
    width: Option<i64>,
    pub(crate) done: bool,
}

impl Pager {
    pub(crate) fn next_chunk(&mut self, conn: &Connection, q: &ExportQuery) -> Result<Vec<Row>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
                heading: Heading::default(),
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
            heading: Heading::default(),
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
