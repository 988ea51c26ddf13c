//! `log_counts`: records counted per tenant, minute, agent, event, level and category.
//! Each group commit appends its counts to `count_journal` in the same transaction as
//! the records; the writer folds the journal in (see `writer.rs`, "The journal").
//!
//! Search answers its aggregations from these counts instead of grouping every stored
//! record: a search without text over ten million records reads a few thousand count
//! rows, plus the records of the partial minutes at the edges of its time range. The
//! counts also tell the search where its page lies in time, so the page query reads only
//! the row groups written around then.
//!
//! A minute is `ts / MINUTE_NS`, truncated (DuckDB's `//` and Rust's `/` agree), and the
//! query side only ever uses whole minutes from 1 upwards, whose time range is exact.

use std::{collections::HashMap, sync::Arc};

use duckdb::arrow::{
    array::{ArrayRef, Int64Array, StringArray, UInt8Array},
    datatypes::{DataType, Field, Schema},
    record_batch::RecordBatch,
};

use crate::{Error, Result};

/// Nanoseconds in a rollup bucket.
pub(crate) const MINUTE_NS: i64 = 60_000_000_000;

/// The table, its upsert scratch table and the statement folding the scratch rows in.
pub(crate) const DDL: &str = "
CREATE TABLE IF NOT EXISTS log_counts (
    tenant   VARCHAR  NOT NULL,
    minute   BIGINT   NOT NULL,  -- ts // 60e9
    agent_id VARCHAR  NOT NULL,  -- '' for records without an agent
    event    VARCHAR  NOT NULL,
    level    UTINYINT NOT NULL,
    category UTINYINT NOT NULL,
    n        BIGINT   NOT NULL,
    PRIMARY KEY (tenant, minute, agent_id, event, level, category)
);
";

/// Fills `log_counts` from the stored records (a file from before the table existed).
pub(crate) const BACKFILL: &str = "
INSERT INTO log_counts
SELECT tenant, ts // 60000000000, coalesce(agent_id, ''), event, level, category, count(*)
FROM logs GROUP BY ALL;
";

/// The columns of `count_journal` and of the scratch table `_count_delta`: those of
/// `log_counts`, without its key.
macro_rules! count_columns {
    () => {
        "
    tenant   VARCHAR  NOT NULL,
    minute   BIGINT   NOT NULL,
    agent_id VARCHAR  NOT NULL,
    event    VARCHAR  NOT NULL,
    level    UTINYINT NOT NULL,
    category UTINYINT NOT NULL,
    n        BIGINT   NOT NULL
"
    };
}

/// The counts each group commit appends, until the writer folds them into `log_counts`.
pub(crate) const JOURNAL_DDL: &str = concat!(
    "CREATE TABLE IF NOT EXISTS count_journal (",
    count_columns!(),
    ");"
);

/// Sums `count_journal` per key into the scratch table `_count_delta`, which
/// [`UPSERT`] then folds into `log_counts`.
pub(crate) const JOURNAL_TO_SCRATCH: &str = "
DELETE FROM _count_delta;
INSERT INTO _count_delta
SELECT tenant, minute, agent_id, event, level, category, sum(n)::BIGINT
FROM count_journal GROUP BY ALL HAVING sum(n) <> 0;
";

pub(crate) const SCRATCH_DDL: &str = concat!(
    "CREATE TEMP TABLE IF NOT EXISTS _count_delta (",
    count_columns!(),
    ");"
);

/// `log_counts` as every acknowledged record has it, folded or not. Every query sums
/// `n`, so the journal's rows simply join the table's.
pub(crate) const LIVE_VIEW: &str = "
CREATE OR REPLACE VIEW log_counts_live AS
SELECT tenant, minute, agent_id, event, level, category, n FROM log_counts
UNION ALL
SELECT tenant, minute, agent_id, event, level, category, n FROM count_journal;
";

pub(crate) const UPSERT: &str = "
INSERT INTO log_counts SELECT * FROM _count_delta
ON CONFLICT (tenant, minute, agent_id, event, level, category)
DO UPDATE SET n = log_counts.n + excluded.n;
";

/// [`UPSERT`] for DuckLake, which has no keys for `ON CONFLICT`.
pub(crate) const MERGE: &str = "
MERGE INTO log_counts USING _count_delta AS excluded
ON log_counts.tenant = excluded.tenant AND log_counts.minute = excluded.minute
   AND log_counts.agent_id = excluded.agent_id AND log_counts.event = excluded.event
   AND log_counts.level = excluded.level AND log_counts.category = excluded.category
WHEN MATCHED THEN UPDATE SET n = log_counts.n + excluded.n
WHEN NOT MATCHED THEN INSERT VALUES (excluded.tenant, excluded.minute, excluded.agent_id,
    excluded.event, excluded.level, excluded.category, excluded.n);
";

/// The minute of a record time.
pub(crate) fn minute_of(ts: i64) -> i64 {
    ts / MINUTE_NS
}

/// The key a record is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CountKey {
    pub(crate) tenant: String,
    pub(crate) minute: i64,
    pub(crate) agent_id: String,
    pub(crate) event: String,
    pub(crate) level: u8,
    pub(crate) category: u8,
}

/// One batch's counts: a row per distinct key, in first-seen order. `prepare` builds it
/// with its own borrowed-key index, so the batch holds no map of its own.
pub(crate) type BatchCounts = Vec<(CountKey, i64)>;

/// A group's counts: the batches' rows folded per key, in first-seen order.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    index: HashMap<CountKey, usize>,
    pub(crate) rows: Vec<(CountKey, i64)>,
}

impl Counts {
    /// Adds a batch's counts.
    pub(crate) fn merge(&mut self, batch: &[(CountKey, i64)]) {
        for (key, n) in batch {
            if *n == 0 {
                continue;
            }
            match self.index.get(key) {
                Some(&i) => self.rows[i].1 += n,
                None => {
                    self.index.insert(key.clone(), self.rows.len());
                    self.rows.push((key.clone(), *n));
                }
            }
        }
    }

    fn batch(&self) -> Result<RecordBatch> {
        let rows: Vec<&(CountKey, i64)> = self.rows.iter().filter(|(_, n)| *n != 0).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant", DataType::Utf8, false),
            Field::new("minute", DataType::Int64, false),
            Field::new("agent_id", DataType::Utf8, false),
            Field::new("event", DataType::Utf8, false),
            Field::new("level", DataType::UInt8, false),
            Field::new("category", DataType::UInt8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(k, _)| k.tenant.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|(k, _)| k.minute),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(k, _)| k.agent_id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(k, _)| k.event.as_str()),
            )),
            Arc::new(UInt8Array::from_iter_values(
                rows.iter().map(|(k, _)| k.level),
            )),
            Arc::new(UInt8Array::from_iter_values(
                rows.iter().map(|(k, _)| k.category),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|(_, n)| *n))),
        ];
        RecordBatch::try_new(schema, columns).map_err(|e| Error::Corrupt(e.to_string()))
    }

    /// Appends the counts to `count_journal`, inside the caller's transaction; the
    /// writer folds them into `log_counts` later.
    /// The rows to append to `count_journal`, unless every count is zero.
    pub(crate) fn batch_if_any(&self) -> Result<Option<RecordBatch>> {
        if self.rows.iter().all(|(_, n)| *n == 0) {
            return Ok(None);
        }
        self.batch().map(Some)
    }
}

/// The whole minutes inside `[from, to]` (either end open), from minute 1 upwards:
/// `None` when there is no such minute.
pub(crate) fn whole_minutes(from: Option<i64>, to: Option<i64>) -> Option<(i64, i64)> {
    // The first minute starting at or after `from`.
    let lo = from.map_or(1, |f| {
        if f <= MINUTE_NS {
            1
        } else {
            (f - 1) / MINUTE_NS + 1
        }
    });
    // The last minute ending at or before `to`.
    let hi = match to {
        None => i64::MAX,
        Some(t) if t < 0 => return None,
        Some(t) => (t.saturating_add(1)) / MINUTE_NS - 1,
    };
    (lo <= hi).then_some((lo, hi))
}

/// The first nanosecond of minute `m`.
pub(crate) fn minute_start(m: i64) -> i64 {
    m.saturating_mul(MINUTE_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_minutes_lie_inside_the_range() {
        let m = MINUTE_NS;
        assert_eq!(whole_minutes(None, None), Some((1, i64::MAX)));
        assert_eq!(whole_minutes(Some(5 * m), Some(8 * m - 1)), Some((5, 7)));
        assert_eq!(whole_minutes(Some(5 * m + 1), Some(8 * m)), Some((6, 7)));
        assert_eq!(whole_minutes(Some(5 * m + 1), Some(6 * m + 5)), None);
        assert_eq!(whole_minutes(Some(-3), Some(2 * m - 1)), Some((1, 1)));
        assert_eq!(whole_minutes(None, Some(m - 2)), None);
        for (from, to) in [(3 * m + 7, 9 * m - 3), (m, 2 * m - 1), (0, 5 * m)] {
            let (lo, hi) = whole_minutes(Some(from), Some(to)).unwrap();
            assert!(minute_start(lo) >= from && minute_start(hi + 1) - 1 <= to);
            assert!(minute_start(lo - 1) < from || lo == 1);
            assert!(minute_start(hi + 2) - 1 > to);
            for ts in [minute_start(lo), minute_start(hi + 1) - 1] {
                assert!((lo..=hi).contains(&minute_of(ts)));
            }
        }
    }

    #[test]
    fn duplicates_taken_back_cancel_out() {
        let key = |event: &str| CountKey {
            tenant: "t".into(),
            minute: 7,
            agent_id: String::new(),
            event: event.into(),
            level: 2,
            category: 3,
        };
        // A batch that counted A twice and B once, then took one A back.
        let mut a: BatchCounts = vec![(key("A"), 2), (key("B"), 1)];
        a[0].1 -= 1;
        let mut all = Counts::default();
        all.merge(&a);
        all.merge(&a);
        assert_eq!(all.rows, vec![(key("A"), 2), (key("B"), 2)]);
    }
}
