//! The DuckDB schema and its migrations.
//!
//! `logs` holds one row per customer-visible record. Rows arrive in roughly time order,
//! so DuckDB's per-row-group min/max statistics on `ts` let a query that knows a time
//! window skip most of the table; the per-call query gets that window from `calls`.
//!
//! `calls` holds one row per call, kept current by the writer in the same transaction
//! as the call's records: the call's time window and counts, and the summary fields
//! its lifecycle events feed.

use duckdb::Connection;

use crate::Result;

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

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
    data      VARCHAR,            -- the data object as JSON text
    search    VARCHAR             -- lower-cased message and data values, for text search
);
CREATE TABLE IF NOT EXISTS calls (
    tenant         VARCHAR NOT NULL,
    call_id        VARCHAR NOT NULL,
    first_ts       BIGINT  NOT NULL,
    last_ts        BIGINT  NOT NULL,
    log_count      BIGINT  NOT NULL,
    debug_count    BIGINT  NOT NULL,
    info_count     BIGINT  NOT NULL,
    warning_count  BIGINT  NOT NULL,
    error_count    BIGINT  NOT NULL,
    critical_count BIGINT  NOT NULL,
    agent_id       VARCHAR,
    trace_id       VARCHAR,
    PRIMARY KEY (tenant, call_id)
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_sha256 VARCHAR PRIMARY KEY,
    tenant     VARCHAR NOT NULL,
    created_at BIGINT  NOT NULL
);
";

/// Creates missing tables and records the schema version.
///
/// # Errors
/// DuckDB refused the DDL (for example, a read-only file that lacks the tables), or
/// the file was written by a newer callscope.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(DDL)?;
    let found: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .ok();
    match found.and_then(|v| v.parse::<i64>().ok()) {
        Some(v) if v > SCHEMA_VERSION => Err(crate::Error::Corrupt(format!(
            "the database has schema version {v}; this callscope understands up to {SCHEMA_VERSION}"
        ))),
        Some(_) => Ok(()),
        None => {
            conn.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [SCHEMA_VERSION.to_string()],
            )?;
            Ok(())
        }
    }
}
