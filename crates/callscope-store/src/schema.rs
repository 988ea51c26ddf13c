//! The DuckDB schema and its migrations.
//!
//! `logs` holds one row per customer-visible record. Rows arrive in roughly time order,
//! so DuckDB's per-row-group min/max statistics on `ts` let a query that knows a time
//! window skip most of the table; the per-call query gets that window from `calls` (and
//! from `call_journal` while it holds unfolded deltas).
//!
//! `logs.seq` is the commit sequence number the writer gives each record (see
//! `live.rs`): live streams send records in that order and resume by it.
//!
//! `calls` holds one row per call: the call's time window and counts, and the summary
//! fields its lifecycle events feed (its columns are listed once, in `summary.rs`). One
//! call is looked up by `call_key`, which has a unique index. The view `call_summary`
//! adds the derived fields. `comments` holds the team's notes on calls.
//!
//! `spans` holds customer-visible spans and `call_metrics` one row per stored
//! `TURN_LATENCY` / `USAGE_REPORTED` record (see `timeline.rs`).
//!
//! `search_blocks` is the text index: per tenant, a bitmap of the trigrams in each
//! stretch of its records (see `textindex.rs`).
//!
//! `call_journal` and `count_journal` are the summaries' write-ahead part: each group
//! commit appends its per-call deltas and its counts there, in the same transaction as
//! its records, and the writer folds them into `calls` and `log_counts` later (see
//! `writer.rs`, "The journal"). A crash between the two leaves the deltas in the
//! journal, and the next open folds them.

use duckdb::Connection;

use crate::Result;

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 8;

const DDL: &str = r"
CREATE TABLE IF NOT EXISTS meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS logs (
    id        UUID     NOT NULL,
    tenant    VARCHAR  NOT NULL,
    call_id   VARCHAR  NOT NULL,
    ts        BIGINT   NOT NULL,  -- nanoseconds since the Unix epoch, UTC
    level     UTINYINT NOT NULL,  -- Level::code, 1 (DEBUG) .. 5 (CRITICAL)
    category  UTINYINT NOT NULL,  -- Category::code, 1 .. 12
    event     VARCHAR  NOT NULL,
    agent_id  VARCHAR,
    trace_id  VARCHAR,
    span_id   VARCHAR,
    -- the data object as JSON text; stored uncompressed: choosing a compression at
    -- checkpoint copied every distinct value of a row group outside DuckDB's memory
    -- limit (about 100 MiB for 20,000 4 KB values), and paging reads it faster
    data      VARCHAR USING COMPRESSION uncompressed,
    -- lower-cased message and data values, for text search; stored uncompressed so a
    -- substring scan reads the bytes directly instead of decoding FSST first
    search    VARCHAR USING COMPRESSION uncompressed,
    -- the commit sequence number: the single writer numbers records in the order it
    -- commits them, across restarts (live streams resume by it)
    seq       BIGINT
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_sha256 VARCHAR PRIMARY KEY,
    tenant     VARCHAR NOT NULL,
    created_at BIGINT  NOT NULL
);
-- when each key last authenticated a request, written every few seconds by the server;
-- a table of its own, so files stay readable by builds that do not know it
CREATE TABLE IF NOT EXISTS api_key_uses (
    key_sha256   VARCHAR PRIMARY KEY,
    last_used_at BIGINT  NOT NULL
);
CREATE TABLE IF NOT EXISTS comments (
    id         UUID    NOT NULL PRIMARY KEY,
    tenant     VARCHAR NOT NULL,
    call_id    VARCHAR NOT NULL,
    author     VARCHAR NOT NULL,
    body       VARCHAR NOT NULL,
    created_at BIGINT  NOT NULL   -- nanoseconds since the Unix epoch, UTC
);
";

/// `calls` as the API reads it, with the derived fields (status, start time, duration)
/// computed from the stored ones: `call_summary` over `calls`, and `call_summary_live`
/// over `calls_live` (with the unfolded journal), for when the journal is not empty.
const CALL_SUMMARY_VIEW: &str = "
CREATE OR REPLACE VIEW {name} AS
SELECT tenant, call_id, agent_id, direction, from_number, to_number, campaign_id,
       coalesce(status, 'in_progress') AS status,
       coalesce(start_ts, open_ts, first_ts) AS started_ts,
       end_ts AS ended_ts,
       coalesce(duration_ms,
                CASE WHEN end_ts IS NOT NULL AND start_ts IS NOT NULL AND end_ts >= start_ts
                     THEN (end_ts - start_ts) // 1000000 END) AS duration_ms,
       ringing_duration_ms, bot_duration_ms, billed_duration_ms,
       hangup_reason, hangup_source, recording_url, trace_id,
       log_count, debug_count, info_count, warning_count, error_count, critical_count,
       first_ts, last_ts, call_key
FROM {source};
";

/// Creates missing tables and records the schema version.
///
/// # Errors
/// DuckDB refused the DDL (for example, a read-only file that lacks the tables), or
/// the file was written by a newer callscope.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    if crate::lake::is_lake(conn)? {
        // Instances starting together race to create the same tables and views: the
        // loser of a conflict finds them made and carries on.
        return crate::lake::retry_conflicts(|| migrate_in(conn, true));
    }
    migrate_in(conn, false)
}

fn migrate_in(conn: &Connection, lake: bool) -> Result<()> {
    // DuckLake's dialect of the tables' DDL (`lake.rs`).
    let ddl = |sql: &str| {
        if lake {
            conn.execute_batch(&crate::lake::ddl(sql))
        } else {
            conn.execute_batch(sql)
        }
    };
    // A newer callscope's file is refused before anything in it is touched.
    let found = stored_version(conn)?;
    if let Some(v) = found
        && v > SCHEMA_VERSION
    {
        return Err(crate::Error::Corrupt(format!(
            "the database has schema version {v}; this callscope understands up to {SCHEMA_VERSION}"
        )));
    }
    let had_counts = has_table(conn, "log_counts")?;
    let had_logs = has_table(conn, "logs")?;
    ddl(DDL)?;
    // Version 5: the commit sequence number. Files from before number their records
    // in time order (ties by id), which is the order they were most likely committed.
    if had_logs && !has_column(conn, "logs", "seq")? {
        conn.execute_batch(
            "BEGIN TRANSACTION;
             ALTER TABLE logs ADD COLUMN seq BIGINT;
             UPDATE logs SET seq = n.seq
             FROM (SELECT rowid AS row_id, row_number() OVER (ORDER BY ts, id) AS seq FROM logs) n
             WHERE logs.rowid = n.row_id;
             COMMIT;",
        )?;
    }
    ddl(crate::rollup::DDL)?;
    if !had_counts {
        // Version 1 files: count what they already hold.
        conn.execute_batch(crate::rollup::BACKFILL)?;
    }
    ddl(&format!(
        "CREATE TABLE IF NOT EXISTS calls (\n{},\n    PRIMARY KEY (tenant, call_id)\n);",
        crate::summary::column_ddl(true)
    ))?;
    // Files from before the summary columns get them (appended in table order).
    for (name, ty) in crate::summary::columns() {
        conn.execute_batch(&format!(
            "ALTER TABLE calls ADD COLUMN IF NOT EXISTS {name} {ty};"
        ))?;
    }
    // Version 2 files: fill in `call_key`, then index it. (A later column added above
    // still works with the index present: DuckDB refuses to alter indexed columns only.)
    if found.is_none_or(|v| v < 3) {
        conn.execute_batch(&format!(
            "UPDATE calls SET call_key = {} WHERE call_key IS NULL;",
            crate::summary::CALL_KEY_SQL
        ))?;
    }
    if !lake {
        conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS calls_call_key ON calls (call_key);",
        )?;
    }
    // Version 4: the summaries' journal. A file written by this version must not be
    // opened by an older build, which would ignore what the journal still holds.
    ddl(&format!(
        "CREATE TABLE IF NOT EXISTS call_journal (\n{}\n);\n{}",
        crate::summary::column_ddl(false),
        crate::rollup::JOURNAL_DDL
    ))?;
    // Version 6: spans and the turn facts of the call timeline (`timeline.rs`). Records
    // stored before have no `call_metrics` rows; fill them in once.
    let had_metrics = has_table(conn, "call_metrics")?;
    ddl(crate::timeline::DDL)?;
    if !had_metrics && found.is_some() {
        conn.execute_batch(crate::timeline::BACKFILL)?;
    }
    conn.execute_batch(&crate::summary::live_view_sql())?;
    conn.execute_batch(crate::rollup::LIVE_VIEW)?;
    for (name, source) in [
        ("call_summary", "calls"),
        ("call_summary_live", "calls_live"),
    ] {
        conn.execute_batch(
            &CALL_SUMMARY_VIEW
                .replace("{name}", name)
                .replace("{source}", source),
        )?;
    }
    conn.execute_batch(crate::timeline::VIEWS)?;
    // The text index (`textindex.rs`). Older builds ignore the table; what they store
    // meanwhile is the index's backlog when this build opens the file again.
    ddl(crate::textindex::DDL)?;
    // Version 8: blocks say how many bits each trigram set. A build from before would
    // test four-bit blocks as one-bit ones and miss records, so it must not open the file.
    if !lake {
        conn.execute_batch(crate::textindex::ADD_HASHES)?;
    }
    // Version 7: the ack log's position (`acklog.rs`). An older build would ignore the
    // acknowledged records the log still holds, so it must not open this file.
    conn.execute_batch(crate::acklog::DDL)?;
    if lake {
        conn.execute_batch(crate::lake::FENCE_DDL)?;
        conn.execute_batch(crate::lake::MAINTENANCE_DDL)?;
        crate::lake::init_fence(conn)?;
        if found != Some(SCHEMA_VERSION) {
            conn.execute_batch("BEGIN TRANSACTION")?;
            let set = conn
                .execute("DELETE FROM meta WHERE key = 'schema_version'", [])
                .and_then(|_| {
                    conn.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)",
                        [SCHEMA_VERSION.to_string()],
                    )
                })
                .and_then(|_| conn.execute_batch("COMMIT"));
            if let Err(e) = set {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
        return Ok(());
    }
    if found != Some(SCHEMA_VERSION) {
        conn.execute(
            "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [SCHEMA_VERSION.to_string()],
        )?;
    }
    Ok(())
}

/// Does the file have the table `name`?
fn has_table(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_tables() \
         WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?",
        [name],
        |r| r.get(0),
    )?)
}

/// Does table `table` have the column `name`?
fn has_column(conn: &Connection, table: &str, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_columns() \
         WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ? AND column_name = ?",
        [table, name],
        |r| r.get(0),
    )?)
}

/// The schema version the file records; `None` for a new file (or one from before
/// versions were recorded). A version that isn't a number is refused, like a newer one.
fn stored_version(conn: &Connection) -> Result<Option<i64>> {
    if !has_table(conn, "meta")? {
        return Ok(None);
    }
    let value: Option<String> = match conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |r| r.get(0),
    ) {
        Ok(v) => Some(v),
        Err(duckdb::Error::QueryReturnedNoRows) => None,
        Err(e) => return Err(e.into()),
    };
    value
        .map(|v| {
            v.parse().map_err(|_| {
                crate::Error::Corrupt(format!(
                    "the database's schema version {v:?} is not a number"
                ))
            })
        })
        .transpose()
}
