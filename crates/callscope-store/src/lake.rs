//! The DuckLake backend: several callscope processes share one lake (catalog in
//! PostgreSQL, Parquet data files in S3-compatible storage or a shared directory).
//!
//! Each process runs the same store as the embedded backend, on an in-memory DuckDB
//! whose default catalog is the attached lake, so every query reads and writes the
//! shared tables. What differs is written here:
//!
//! - **The schema's dialect.** DuckLake has no primary keys, unique indexes, column
//!   compression choices or `ON CONFLICT`; [`ddl`] strips the first three and the
//!   upserts are `MERGE` statements instead.
//! - **One ingest commit at a time across the lake.** Every transaction that writes
//!   ingest data (records, spans, the summaries' journal) also updates the single row
//!   of `lake_fence`. DuckLake lets only one of two
//!   transactions that change the same table commit, so the others fail with a
//!   conflict and the writer retries them on a fresh snapshot ([`apply`]). That makes
//!   two things exact that a lake of independent writers would not have:
//!   - *duplicates are removed at commit*: inside the transaction the writer looks up
//!     the ids it is about to store; the fence guarantees no other instance committed
//!     between that look-up and the commit, so a record retried through another
//!     instance is stored once;
//!   - *commit sequence numbers are global*: `lake_fence.seq` is the last number
//!     given, so live-stream cursors and `seq` order mean the same on every instance.
//!
//!   The price is that the instances' commits are serialised (each still groups many
//!   requests per commit); BENCHMARKS.md reports the rate and the conflicts.
//! - **Folds and retention** rewrite `calls` and `log_counts` from what they read, so
//!   they exclude each other through a second row, `lake_fold_fence`, but not ingest: a
//!   fold deletes only the journal rows its snapshot holds.
//! - **Acknowledgement after the lake's commit**: `ack_after = "log"` is refused
//!   (a local log would make an acknowledgement durable on one machine only).
//! - **Live streams** hear every instance's commits from a feed that reads the records
//!   past the last `seq` it saw ([`spawn_feed`]).
//! - **Maintenance** (DuckLake's own: flushing inlined rows, merging files, expiring
//!   snapshots) runs on one instance at a time, under a lease ([`Maintenance`]).
//! - **No text index**: `search_text` scans, as `docs/storage.md` says.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use duckdb::{
    Connection,
    arrow::{
        array::{Array, FixedSizeBinaryArray, Int64Array},
        record_batch::RecordBatch,
    },
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Error, Result, StoreConfig,
    acklog::{Table, Unit},
};

/// `[storage] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// One embedded DuckDB file (`[storage] path`).
    #[default]
    Duckdb,
    /// A DuckLake shared by several instances (`[storage.ducklake]`, `[storage.s3]`).
    Ducklake,
}

/// `[storage.ducklake]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// The catalog database, as DuckLake's `ATTACH` takes it, e.g.
    /// `"postgres:host=127.0.0.1 port=5432 dbname=callscope user=callscope"`.
    pub catalog: String,
    /// Where the Parquet data files go: `s3://bucket/prefix/` or a local directory.
    pub data_path: String,
    /// The folder holding `v1.5.5/linux_amd64/*.duckdb_extension` (ducklake,
    /// postgres_scanner, httpfs); empty: DuckDB's default, `~/.duckdb/extensions`.
    /// Extensions are only loaded from here, never downloaded.
    pub extension_directory: String,
    /// Seconds between runs of DuckLake's maintenance (flushing inlined data, merging
    /// small files, expiring snapshots, deleting unreferenced files), which one instance
    /// at a time performs; 0 never runs it.
    pub maintenance_interval_secs: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            catalog: String::new(),
            data_path: String::new(),
            extension_directory: String::new(),
            maintenance_interval_secs: 600,
        }
    }
}

/// `[storage.s3]`: the object store `data_path` names, when it is `s3://…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// `host:port` of an S3-compatible server; empty: AWS.
    pub endpoint: String,
    /// The bucket's region.
    pub region: String,
    /// Credentials; empty values are left to DuckDB's own lookup.
    pub access_key_id: String,
    /// The secret of `access_key_id`.
    pub secret_access_key: String,
    /// `"path"` (most self-hosted servers) or `"vhost"`.
    pub url_style: String,
    /// HTTPS (`true`) or plain HTTP.
    pub use_ssl: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            url_style: "path".into(),
            use_ssl: true,
        }
    }
}

/// The name the lake is attached under, and so the catalog every query runs in.
pub(crate) const CATALOG: &str = "lake";

/// How often a commit that lost a conflict to another instance is tried again before
/// the write fails (the sender then hears a retryable error).
const ATTEMPTS: u32 = 12;

/// SQL string literal.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Loads the extensions from the configured directory and attaches the lake as the
/// default catalog of `conn` (a fresh in-memory database).
pub(crate) fn attach(conn: &Connection, config: &StoreConfig) -> Result<()> {
    let lake = &config.ducklake;
    if lake.catalog.is_empty() || lake.data_path.is_empty() {
        return Err(Error::InvalidArgument(
            "storage.backend = \"ducklake\" needs storage.ducklake.catalog and storage.ducklake.data_path".into(),
        ));
    }
    if config.ack_after == crate::AckAfter::Log {
        return Err(Error::InvalidArgument(
            "storage.ack_after = \"log\" is for the embedded backend: on DuckLake an acknowledgement means committed to the lake".into(),
        ));
    }
    let mut sql = String::from(
        "SET autoinstall_known_extensions = false; SET autoload_known_extensions = false;\n",
    );
    if !lake.extension_directory.is_empty() {
        sql += &format!(
            "SET extension_directory = {};\n",
            quote(&lake.extension_directory)
        );
    }
    let s3 = lake.data_path.starts_with("s3://");
    let mut extensions = vec!["ducklake"];
    if lake.catalog.starts_with("postgres:") {
        extensions.push("postgres_scanner");
    }
    if s3 {
        extensions.push("httpfs");
    }
    for ext in &extensions {
        sql += &format!("LOAD {ext};\n");
    }
    conn.execute_batch(&sql).map_err(|e| {
        Error::InvalidArgument(format!(
            "loading the DuckDB extensions {extensions:?} from {:?} failed ({e}); docs/ducklake.md says how to get them",
            if lake.extension_directory.is_empty() { "~/.duckdb/extensions" } else { &lake.extension_directory }
        ))
    })?;
    if s3 {
        let c = &config.s3;
        let mut secret = format!(
            "CREATE OR REPLACE SECRET callscope_s3 (TYPE s3, REGION {}, URL_STYLE {}, USE_SSL {}",
            quote(&c.region),
            quote(&c.url_style),
            c.use_ssl
        );
        if !c.endpoint.is_empty() {
            secret += &format!(", ENDPOINT {}", quote(&c.endpoint));
        }
        if !c.access_key_id.is_empty() {
            secret += &format!(
                ", KEY_ID {}, SECRET {}",
                quote(&c.access_key_id),
                quote(&c.secret_access_key)
            );
        }
        secret += ");";
        conn.execute_batch(&secret)?;
    }
    let sql = format!(
        "ATTACH IF NOT EXISTS {} AS {CATALOG} (DATA_PATH {}); USE {CATALOG};",
        quote(&format!("ducklake:{}", lake.catalog)),
        quote(&lake.data_path)
    );
    // Instances starting together on a new catalog race to create its tables in
    // PostgreSQL; the loser finds them made when it attaches again.
    let mut attempt = 0;
    loop {
        match conn.execute_batch(&sql).map_err(Error::from) {
            Err(e)
                if attempt < 5 && (e.is_conflict() || e.to_string().contains("already exists")) =>
            {
                attempt += 1;
                std::thread::sleep(backoff(attempt + 4));
            }
            other => return other,
        }
    }
}

/// Is `conn`'s default catalog the lake?
pub(crate) fn is_lake(conn: &Connection) -> Result<bool> {
    Ok(conn.query_row("SELECT current_database() = ?", [CATALOG], |r| r.get(0))?)
}

/// `sql` (CREATE TABLE statements of the embedded schema) in DuckLake's dialect: no
/// primary keys and no column compression. (Unique indexes are skipped where they are
/// created.)
pub(crate) fn ddl(sql: &str) -> String {
    let mut out = sql.replace(" USING COMPRESSION uncompressed", "");
    // Table constraints: `,\n    PRIMARY KEY (a, b)`.
    while let Some(at) = out.find("PRIMARY KEY (") {
        let start = out[..at].rfind(',').unwrap_or(at);
        let end = out[at..].find(')').map_or(out.len(), |i| at + i + 1);
        out.replace_range(start..end, "");
    }
    out.replace(" PRIMARY KEY", "")
}

/// The fence every ingest transaction updates (see the module's docs).
pub(crate) const FENCE_DDL: &str = "CREATE TABLE IF NOT EXISTS lake_fence (seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS lake_fold_fence (n BIGINT NOT NULL);";

/// Creates the fence's one row if the lake has none (numbering after what `logs`
/// holds).
pub(crate) fn init_fence(conn: &Connection) -> Result<()> {
    retry_conflicts(|| {
        conn.execute_batch(
            "BEGIN TRANSACTION;
             INSERT INTO lake_fence SELECT coalesce((SELECT max(seq) FROM logs), 0)
             WHERE NOT EXISTS (SELECT 1 FROM lake_fence);
             INSERT INTO lake_maintenance SELECT NULL, 0
             WHERE NOT EXISTS (SELECT 1 FROM lake_maintenance);
             INSERT INTO lake_fold_fence SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM lake_fold_fence);
             COMMIT;",
        )
        .inspect_err(|_| {
            let _ = conn.execute_batch("ROLLBACK");
        })
        .map_err(Error::from)
    })
}

/// Takes `n` sequence numbers in the open transaction, returning the last one before
/// them. Updating the fence is also what makes two ingest transactions conflict.
pub(crate) fn take_seq(conn: &Connection, n: i64) -> Result<i64> {
    let base: i64 = conn.query_row("SELECT seq FROM lake_fence", [], |r| r.get(0))?;
    conn.prepare_cached("UPDATE lake_fence SET seq = ?")?
        .execute([base + n])?;
    Ok(base)
}

/// Applies `units` to the lake in one transaction: the units none of whose records or
/// spans another commit stored meanwhile (see the module's docs), with `seq` numbers
/// taken from the fence. Answers, per unit, whether it was applied (`false`: at least
/// one of its rows is stored already, by another instance or by an earlier commit of
/// this one that reported an error, so the unit is dropped whole and its senders'
/// retry stores what is missing).
pub(crate) fn apply(conn: &Connection, units: &[&Unit]) -> Result<Vec<bool>> {
    retry_conflicts(|| {
        conn.execute_batch("BEGIN TRANSACTION")?;
        let applied = apply_in(conn, units).and_then(|kept| {
            conn.execute_batch("COMMIT")?;
            Ok(kept)
        });
        if applied.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        applied
    })
}

fn apply_in(conn: &Connection, units: &[&Unit]) -> Result<Vec<bool>> {
    let stored_logs = stored_of(conn, units, Table::Logs, &crate::accept::LOGS, "ts")?;
    let stored_spans = stored_of(conn, units, Table::Spans, &crate::accept::SPANS, "start_ns")?;
    let kept: Vec<bool> = units
        .iter()
        .map(|u| {
            !u.parts.iter().any(|(t, b)| match t {
                Table::Logs => any_id_in(b, &stored_logs),
                Table::Spans => any_id_in(b, &stored_spans),
                _ => false,
            })
        })
        .collect();
    let records: usize = units
        .iter()
        .zip(&kept)
        .filter(|(_, k)| **k)
        .flat_map(|(u, _)| u.logs())
        .map(RecordBatch::num_rows)
        .sum();
    let mut next = take_seq(conn, i64::try_from(records).unwrap_or(i64::MAX))? + 1;
    let mut logs = Vec::with_capacity(units.len());
    for (u, k) in units.iter().zip(&kept) {
        let mut numbered = Vec::new();
        if *k {
            for b in u.logs() {
                numbered.push(crate::prepare::with_seq(b, next)?);
                next += i64::try_from(b.num_rows()).unwrap_or(i64::MAX);
            }
        }
        logs.push(numbered);
    }
    for table in Table::ALL {
        let mut batches: Vec<&RecordBatch> = Vec::new();
        for ((u, k), numbered) in units.iter().zip(&kept).zip(&logs) {
            if !*k {
                continue;
            }
            if table == Table::Logs {
                batches.extend(numbered);
            } else {
                batches.extend(u.parts.iter().filter(|(t, _)| *t == table).map(|(_, b)| b));
            }
        }
        if batches.is_empty() {
            continue;
        }
        let mut app = conn.appender(table.name())?;
        for b in batches {
            app.append_record_batch(b.clone())?;
        }
        app.flush()?;
    }
    Ok(kept)
}

/// The ids of the units' `table` rows that the lake holds already, in this
/// transaction's snapshot.
fn stored_of(
    conn: &Connection,
    units: &[&Unit],
    table: Table,
    kind: &crate::accept::Deduped,
    ts: &str,
) -> Result<HashSet<Uuid>> {
    let mut lookup = Vec::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (_, b) in units
        .iter()
        .flat_map(|u| u.parts.iter())
        .filter(|(t, _)| *t == table)
    {
        if b.num_rows() == 0 {
            continue;
        }
        let times = b
            .column_by_name(ts)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| Error::Corrupt(format!("a {} batch without {ts}", table.name())))?;
        for t in times.iter().flatten() {
            (lo, hi) = (lo.min(t), hi.max(t));
        }
        lookup.push(b.project(&[0]).map_err(|e| Error::Corrupt(e.to_string()))?);
    }
    if lookup.is_empty() {
        return Ok(HashSet::new());
    }
    crate::accept::stored(conn, kind, &lookup, (lo, hi))
}

/// Does the `id` column (the first) of `batch` hold any of `ids`?
fn any_id_in(batch: &RecordBatch, ids: &HashSet<Uuid>) -> bool {
    if ids.is_empty() {
        return false;
    }
    let column = batch.column(0);
    let Some(bytes) = column.as_any().downcast_ref::<FixedSizeBinaryArray>() else {
        return false;
    };
    bytes
        .iter()
        .flatten()
        .any(|b| Uuid::from_slice(b).is_ok_and(|id| ids.contains(&id)))
}

/// How often a lake's journal is folded into `calls` and `log_counts` when no read
/// asks for it sooner: a fold conflicts with every instance's commits, and reads add
/// the unfolded journal meanwhile.
pub(crate) const FOLD_EVERY: Duration = Duration::from_secs(30);

/// DuckLake's own maintenance, run by one instance at a time: whichever takes the lease
/// in `lake_maintenance` (a row naming the holder and until when), every
/// `maintenance_every`:
/// 1. `ducklake_flush_inlined_data`: small commits the catalog holds inline become
///    Parquet files;
/// 2. `ducklake_merge_adjacent_files`: the many files of small commits become few;
/// 3. `ducklake_expire_snapshots` older than [`KEEP_SNAPSHOTS`] (readers never hold a
///    snapshot that long), then `ducklake_cleanup_old_files` deletes the files
///    nothing refers to any more.
pub(crate) struct Maintenance {
    every: Duration,
    next: std::time::Instant,
    holder: String,
}

/// How much longer than two intervals the maintenance lease lasts.
const LEASE_SLACK: Duration = Duration::from_secs(300);

/// Snapshots younger than this are kept (time travel is not offered; this only has to
/// outlast the longest read).
const KEEP_SNAPSHOTS: Duration = Duration::from_secs(600);

impl Maintenance {
    pub(crate) fn new(config: &StoreConfig) -> Self {
        let every = Duration::from_secs(config.ducklake.maintenance_interval_secs);
        Self {
            every,
            // Instances started together would all find it due at once.
            next: std::time::Instant::now() + every / 2 + backoff(8).min(every / 2),
            holder: Uuid::new_v4().to_string(),
        }
    }

    /// Runs the schedule on a thread of its own, on `conn`, until `stop` is set: the
    /// writer goes on committing meanwhile (conflicts between the two are retried).
    pub(crate) fn spawn(
        mut self,
        conn: Connection,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("callscope-lake-maintenance".into())
            .spawn(move || {
                loop {
                    let now = std::time::Instant::now();
                    std::thread::sleep(
                        self.next
                            .saturating_duration_since(now)
                            .min(Duration::from_secs(1)),
                    );
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    if std::time::Instant::now() < self.next {
                        continue;
                    }
                    if let Err(e) = self.run(&conn) {
                        tracing::warn!(error = %e, "Lake maintenance failed; tried again later.");
                    }
                }
            })
    }

    /// Takes the lease if it is free, and if so runs the maintenance. `Ok(false)`: another
    /// instance holds the lease.
    pub(crate) fn run(&mut self, conn: &Connection) -> Result<bool> {
        self.next = std::time::Instant::now() + self.every;
        let now = callscope_model::Timestamp::now().as_nanos();
        // Twice the interval and five minutes more: the holder renews it at every run,
        // so it lapses (and another instance takes over) only when the holder has
        // stopped, never while a slow run is still going.
        let lease = i64::try_from((self.every * 2 + LEASE_SLACK).as_nanos()).unwrap_or(i64::MAX);
        let taken = (|| {
            conn.execute_batch("BEGIN TRANSACTION")?;
            let n = conn.execute(
                "UPDATE lake_maintenance SET holder = ?, until_ns = ? WHERE until_ns < ? OR holder = ?",
                duckdb::params![self.holder, now.saturating_add(lease), now, self.holder],
            )?;
            conn.execute_batch("COMMIT")?;
            Ok::<_, Error>(n == 1)
        })();
        let taken = match taken {
            Ok(t) => t,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                if e.is_conflict() {
                    return Ok(false);
                }
                return Err(e);
            }
        };
        if !taken {
            return Ok(false);
        }
        let started = std::time::Instant::now();
        let files_before = data_files(conn)?;
        // As seconds since the epoch: this DuckDB has no time zone arithmetic (no ICU).
        let keep_after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(KEEP_SNAPSHOTS)
            .as_secs();
        for call in [
            format!("CALL ducklake_flush_inlined_data('{CATALOG}')"),
            format!("CALL ducklake_merge_adjacent_files('{CATALOG}')"),
            format!(
                "CALL ducklake_expire_snapshots('{CATALOG}', older_than => to_timestamp({keep_after}))"
            ),
            format!(
                "CALL ducklake_cleanup_old_files('{CATALOG}', older_than => to_timestamp({keep_after}))"
            ),
        ] {
            retry_conflicts(|| {
                // A failed call leaves the catalog's transaction aborted.
                conn.execute_batch(&call)
                    .inspect_err(|_| {
                        let _ = conn.execute_batch("ROLLBACK");
                    })
                    .map_err(Error::from)
            })?;
        }
        let files_after = data_files(conn)?;
        tracing::info!(
            files_before,
            files_after,
            ms = started.elapsed().as_millis(),
            "Lake maintenance: inlined data flushed, adjacent files merged, old snapshots expired and their files deleted."
        );
        Ok(true)
    }
}

/// The Parquet data files the lake's current snapshot consists of.
pub(crate) fn data_files(conn: &Connection) -> Result<i64> {
    let mut n = 0;
    for table in [
        "logs",
        "spans",
        "call_metrics",
        "calls",
        "call_journal",
        "count_journal",
        "log_counts",
    ] {
        n += conn.query_row(
            &format!("SELECT count(*) FROM ducklake_list_files('{CATALOG}', '{table}')"),
            [],
            |r| r.get::<_, i64>(0),
        )?;
    }
    Ok(n)
}

/// The lease row's table, and its one row.
pub(crate) const MAINTENANCE_DDL: &str =
    "CREATE TABLE IF NOT EXISTS lake_maintenance (holder VARCHAR, until_ns BIGINT NOT NULL);";

/// How often an instance looks for records other instances committed, for its live
/// streams.
const FEED_EVERY: Duration = Duration::from_millis(200);

/// Feeds the live streams of this instance on a lake: every [`FEED_EVERY`] it reads the
/// records committed since it last looked (by any instance: `seq` numbers follow the
/// lake's commit order, see the module's docs) and publishes them in `seq` order.
/// Runs until `stop` is set (by `Store::shutdown`) or the store is dropped.
pub(crate) fn spawn_feed(
    conn: Connection,
    hub: std::sync::Weak<crate::live::Hub>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("callscope-lake-feed".into())
        .spawn(move || {
            // Ids as 16 bytes, as appended batches carry them.
            if let Err(e) = conn.execute_batch("SET arrow_lossless_conversion = true") {
                tracing::error!(error = %e, "Live streams on the lake cannot start.");
                return;
            }
            let mut last: Option<i64> = None;
            loop {
                std::thread::sleep(FEED_EVERY);
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let Some(hub) = hub.upgrade() else { return };
                if let Err(e) = feed_once(&conn, &hub, &mut last) {
                    tracing::warn!(error = %e, "Reading new records for live streams failed; tried again.");
                }
            }
        })
}

fn feed_once(conn: &Connection, hub: &crate::live::Hub, last: &mut Option<i64>) -> Result<()> {
    let newest: i64 = conn.query_row("SELECT seq FROM lake_fence", [], |r| r.get(0))?;
    let from = match *last {
        // Streams opened later read what came before from storage.
        None => newest,
        Some(from) => from,
    };
    if newest > from && hub.has_subscribers() {
        let mut stmt =
            conn.prepare_cached("SELECT * FROM logs WHERE seq > ? AND seq <= ? ORDER BY seq")?;
        let batches: Vec<RecordBatch> = stmt.query_arrow([from, newest])?.collect();
        hub.publish(&batches);
    }
    *last = Some(newest);
    Ok(())
}

/// Makes the open transaction conflict with every other fold or purge (they both
/// rewrite `calls` and `log_counts` from what they read), but not with ingest: a fold
/// deletes only the journal rows its snapshot holds, and rows committed meanwhile wait
/// for the next fold.
pub(crate) fn touch_fold_fence(conn: &Connection) -> Result<()> {
    conn.prepare_cached("UPDATE lake_fold_fence SET n = n + 1")?
        .execute([])?;
    Ok(())
}

/// Runs `f` (a whole transaction) until it does not lose a commit conflict to another
/// instance, at most [`ATTEMPTS`] times, with a growing, jittered pause in between.
pub(crate) fn retry_conflicts<T>(f: impl FnMut() -> Result<T>) -> Result<T> {
    retry_conflicts_upto(ATTEMPTS, f)
}

/// [`retry_conflicts`] with at most `attempts` tries.
pub(crate) fn retry_conflicts_upto<T>(
    attempts: u32,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if e.is_conflict() && attempt + 1 < attempts => {
                attempt += 1;
                crate::metrics::LAKE_CONFLICTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(backoff(attempt));
            }
            other => return other,
        }
    }
}

/// 2, 4, 8 … ms up to 256 ms, each with up to as much again at random, so instances
/// that conflicted do not meet again at once.
fn backoff(attempt: u32) -> Duration {
    let base = 1u64 << attempt.min(8);
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * base / 256;
    Duration::from_millis(base + jitter)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ddl_drops_what_ducklake_lacks() {
        let sql = "CREATE TABLE t (\n    a VARCHAR PRIMARY KEY,\n    b VARCHAR USING COMPRESSION uncompressed,\n    c BIGINT,\n    PRIMARY KEY (a, c)\n);";
        assert_eq!(
            super::ddl(sql),
            "CREATE TABLE t (\n    a VARCHAR,\n    b VARCHAR,\n    c BIGINT\n);"
        );
    }
}
