//! DuckDB storage for customer call logs: one embedded file, one writer, many readers.
//!
//! - [`Store::append`] hands records to the acceptor thread and resolves only after
//!   they are durable: written to the store's ack log and fsynced, so a caller may
//!   acknowledge its sender then. Waiting requests are written together (group
//!   commit). The writer thread applies acknowledged groups to DuckDB afterwards, many
//!   per transaction, so a DuckDB checkpoint never delays an acknowledgement; every read
//!   first waits until what was acknowledged before it began is applied, and opening
//!   the file applies what a crash left in the log (see `accept.rs`, `acklog.rs`).
//! - Record ids are content-derived, so an exporter's retry is stored once: the
//!   acceptor drops ids already stored or already acknowledged.
//! - The write queue is bounded in records; when it is full, `append` fails fast with
//!   [`Error::Overloaded`] rather than buffering without limit.
//! - A failed write is never acknowledged: every request in the group gets
//!   [`Error::Unavailable`] and [`Store::is_ready`] turns false until a write succeeds.
//!   While the writer cannot apply what was acknowledged, nothing more is acknowledged.
//!   When the failure left DuckDB unusable (a checkpoint that failed on a full disk
//!   invalidates the database instance), the writer closes it and reopens the file,
//!   retrying until it opens, so ingest recovers without a restart once the fault
//!   clears. Everything committed before stays in the file and its write-ahead log.
//! - [`Store::append_spans`] stores spans the same way: one queue, the same groups (a
//!   group may hold record and span requests alike), acknowledged once in the ack log,
//!   retries dropped by their content-derived ids. A span also widens its
//!   call's window in `calls`, so a call known only from its spans exists. Retention
//!   deletes spans that ended before the cut-off. (See `timeline.rs`.)
//! - Every write goes through the writer thread, one at a time: record groups, the
//!   retention purge, comments and API keys. Reads run on their own connections, off
//!   the async runtime. (Opening migrates the schema before the writer starts.)
//!
//! ```no_run
//! # async fn demo() -> callscope_store::Result<()> {
//! use callscope_store::{Store, StoreConfig};
//!
//! let store = Store::open(&StoreConfig { path: "calls.duckdb".into(), ..StoreConfig::default() })?;
//! let receipt = store.append(vec![/* TenantRecord … */]).await?;
//! println!("stored {} new records", receipt.inserted);
//! store.shutdown().await?;
//! # Ok(()) }
//! ```

mod accept;
mod acklog;
mod calls;
mod error;
mod export;
mod keys;
mod lake;
mod live;
mod metrics;
mod prepare;
mod query;
mod recent;
mod rollup;
mod schema;
mod search;
mod summary;
mod textindex;
mod timeline;
mod transcript;
mod writer;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use callscope_model::{SpanRecord, TenantRecord, TenantSpan};
use duckdb::{Config, Connection};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, oneshot, watch};

pub use calls::{CallPage, Comment};
pub use callscope_query::{
    CallFilter, CallSearch, DurationRange, LogFilter, LogQuery, Order, PageAt, SearchFilter,
    SearchQuery, StreamFilter,
};
/// The DuckDB crate, for the connection [`Store::read`] lends.
pub use duckdb;
pub use error::{Error, Result};
pub use export::{ExportFormat, ExportStream, UnknownFormat};
pub use keys::{FINGERPRINT_LEN, Revoked, StoredKey};
pub use lake::{Backend, LakeConfig, S3Config};
pub use live::{
    CALL_CHANNEL_BATCHES, Lag, LiveBatch, LiveRecord, MAX_BATCH_RECORDS, Subscription,
    TENANT_CHANNEL_BATCHES,
};
pub use metrics::StoreMetrics;
pub use query::LogPage;
pub use search::SearchResult;
pub use timeline::CallTurns;
pub use transcript::{Speaker, TRANSCRIPT_EVENTS, TranscriptLine};

/// `[storage]` in callscope.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The DuckDB file. Its folder is created when missing.
    pub path: PathBuf,
    /// Records older than this many days are deleted in the background; 0 keeps
    /// everything.
    pub retention_days: u32,
    /// How many records may wait to be acknowledged, and how many acknowledged records
    /// may wait to be applied to DuckDB. When full, ingest is refused with a retryable
    /// status instead of buffering more (this bounds memory).
    pub queue_records: usize,
    /// The most records one ack log write, and one DuckDB transaction, holds; waiting
    /// requests are grouped up to it.
    pub commit_group_records: usize,
    /// Connections for API queries (each query holds one while it runs).
    pub reader_connections: usize,
    /// DuckDB's memory limit, e.g. `"512MB"`.
    pub memory_limit: String,
    /// DuckDB worker threads; 0 means one per core.
    pub threads: usize,
    /// How much write-ahead log DuckDB gathers before a commit checkpoints it into the
    /// file, e.g. `"16MB"`. A checkpoint holds up every commit while it runs.
    pub checkpoint_threshold: String,
    /// When a sender is acknowledged: once its records are committed to DuckDB
    /// (`"commit"`, the default: reads never wait, an acknowledgement may wait for a
    /// checkpoint), or once they are fsynced in the ack log (`"log"`: no checkpoint
    /// delays an acknowledgement, and reads wait for what was acknowledged before them
    /// to be committed). See docs/storage.md, "The write path".
    pub ack_after: AckAfter,
    /// Where the data lives: `"duckdb"` (the file at `path`) or `"ducklake"` (a lake
    /// several instances share: `[storage.ducklake]`, `[storage.s3]`; see
    /// docs/ducklake.md).
    pub backend: Backend,
    /// `[storage.ducklake]`: the lake's catalog, data path and extension folder.
    pub ducklake: LakeConfig,
    /// `[storage.s3]`: the object store of an `s3://` data path.
    pub s3: S3Config,
    /// The most records in one text index block; 0 builds no index and searches scan
    /// without it.
    /// Not a `[storage]` key: tests and benchmarks change it.
    #[doc(hidden)]
    #[serde(skip)]
    pub text_index_block_records: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("callscope-data/callscope.duckdb"),
            retention_days: 90,
            queue_records: 100_000,
            commit_group_records: 50_000,
            reader_connections: 4,
            memory_limit: "512MB".to_owned(),
            threads: 0,
            checkpoint_threshold: "64MB".to_owned(),
            ack_after: AckAfter::Commit,
            backend: Backend::Duckdb,
            ducklake: LakeConfig::default(),
            s3: S3Config::default(),
            text_index_block_records: textindex::BLOCK_RECORDS,
        }
    }
}

/// `[storage] ack_after`: when an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckAfter {
    /// After the DuckDB commit that holds the records.
    #[default]
    Commit,
    /// After the records are fsynced in the ack log; DuckDB commits them after.
    Log,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Records newly stored.
    pub inserted: usize,
    /// Records not stored because the same record was already stored.
    pub duplicates: usize,
}

/// The reader connections, behind a gate of one slot per connection. A query holds a
/// slot while it runs; the writer takes every slot before it reopens the database, so no
/// query runs on a connection of the instance being replaced.
pub(crate) struct Readers {
    pub(crate) pool: Mutex<Vec<Connection>>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) count: usize,
}

impl Readers {
    /// `count` connections to the database `conn` belongs to.
    pub(crate) fn connect(conn: &Connection, count: usize) -> duckdb::Result<Vec<Connection>> {
        (0..count).map(|_| clone_connection(conn)).collect()
    }
}

/// Another connection to `conn`'s database, in the same default catalog (a clone starts
/// in the process's own database; on DuckLake everything lives in the attached lake).
pub(crate) fn clone_connection(conn: &Connection) -> duckdb::Result<Connection> {
    let clone = conn.try_clone()?;
    let catalog: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
    if catalog == lake::CATALOG {
        clone.execute_batch(&format!("USE {catalog}"))?;
    }
    Ok(clone)
}

/// Marks the writer as ended when dropped (by the acceptor's thread or the writer's,
/// whichever ends first).
struct ExitSignal(Arc<watch::Sender<bool>>);

impl Drop for ExitSignal {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Opens the database file with the configured memory and thread settings.
pub(crate) fn open_connection(config: &StoreConfig) -> Result<Connection> {
    let open_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Open {
        path: config.path.clone(),
        source: e,
    };
    // DuckDB's own message for a bad size names neither the key nor the problem.
    let not_a_size = |key: &str, value: &str| {
        open_err(
            format!("storage.{key} = {value:?} is not a size DuckDB accepts, such as \"512MB\"")
                .into(),
        )
    };
    let mut db_config = Config::default()
        .max_memory(&config.memory_limit)
        .map_err(|_| not_a_size("memory_limit", &config.memory_limit))?;
    if config.threads > 0 {
        db_config = db_config
            .threads(i64::try_from(config.threads).unwrap_or(i64::MAX))
            .map_err(|e| open_err(Box::new(e)))?;
    }
    db_config = db_config
        .with("checkpoint_threshold", &config.checkpoint_threshold)
        .map_err(|_| not_a_size("checkpoint_threshold", &config.checkpoint_threshold))?;
    if config.backend == Backend::Ducklake {
        // The process's own database holds only scratch tables; everything stored is in
        // the lake, attached as the default catalog.
        let conn =
            Connection::open_in_memory_with_flags(db_config).map_err(|e| open_err(Box::new(e)))?;
        lake::attach(&conn, config).map_err(|e| match e {
            Error::InvalidArgument(_) => e,
            // Named by its data path: `path` is only a local scratch folder on a lake,
            // and the catalog string may hold a password.
            other => Error::Open {
                path: format!("the DuckLake at {}", config.ducklake.data_path).into(),
                source: Box::new(other),
            },
        })?;
        return Ok(conn);
    }
    Connection::open_with_flags(&config.path, db_config).map_err(|e| match Error::from(e) {
        locked @ Error::Locked(_) => locked,
        Error::Database(e) | Error::Invalidated(e) | Error::Constraint(e) | Error::Conflict(e) => {
            open_err(Box::new(e))
        }
        other => other,
    })
}

struct Inner {
    tx: Mutex<Option<mpsc::Sender<writer::Command>>>,
    queue: Arc<Semaphore>,
    queue_records: usize,
    ready: Arc<AtomicBool>,
    readers: Arc<Readers>,
    metrics: Arc<StoreMetrics>,
    schema: duckdb::arrow::datatypes::SchemaRef,
    span_schema: duckdb::arrow::datatypes::SchemaRef,
    /// The acceptor's thread (`accept.rs`), then the writer's.
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    applier_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    acks: Arc<accept::Acks>,
    /// Turns true when the writer thread has ended, however it ended.
    writer_exited: watch::Receiver<bool>,
    path: PathBuf,
    journal: Arc<writer::Journal>,
    hub: Arc<live::Hub>,
    /// The text index's bitmaps, which text searches test; `None` when the index is
    /// off (`text_index_block_records` 0, or a lake).
    bitmaps: Option<Arc<textindex::Bitmaps>>,
    /// On DuckLake, the live-stream feed's and the maintenance's threads, and the flag
    /// that stops them.
    lake_threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    lake_stop: Arc<AtomicBool>,
}

/// The call-log store. Cheap to clone; every clone shares one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database file, migrates the schema and starts the writer.
    ///
    /// # Errors
    /// The file cannot be opened or created (permissions, a lock held by another
    /// process), or its schema is newer than this build understands.
    pub fn open(config: &StoreConfig) -> Result<Store> {
        let lake_config;
        let config = if config.backend == Backend::Ducklake {
            // Text searches scan on the lake (docs/storage.md, "The DuckLake backend").
            lake_config = StoreConfig {
                text_index_block_records: 0,
                ..config.clone()
            };
            &lake_config
        } else {
            config
        };
        let path = config.path.clone();
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Open {
            path: path.clone(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        }
        let conn = open_connection(config)?;
        schema::migrate(&conn)?;
        export::remove_stale(&path);

        // Acknowledged records the last run left unapplied go in first.
        let (store_id, applied) = acklog::state(&conn)?;
        let opened = acklog::AckLog::open(&acklog::AckLog::dir_for(&path), store_id, applied)?;
        let group = config.commit_group_records.max(1);
        writer::replay(&conn, &opened.replay, group)?;
        let applied = opened.replay.last().map_or(applied, |u| u.no);
        drop(opened.replay);

        let reader_count = config.reader_connections.max(1);
        let readers = Arc::new(Readers {
            pool: Mutex::new(Readers::connect(&conn, reader_count)?),
            slots: Arc::new(Semaphore::new(reader_count)),
            count: reader_count,
        });
        let ready = Arc::new(AtomicBool::new(true));
        let metrics = Arc::new(StoreMetrics::default());
        let queue_records = config.queue_records.max(1);
        let (tx, rx) = mpsc::channel();
        let (writer_tx, writer_rx) = mpsc::channel();
        let journal = Arc::new(writer::Journal::default());
        let hub = Arc::new(live::Hub::default());
        let acks = Arc::new(accept::Acks::new(applied));
        let lookup = Arc::new(Mutex::new(Some(writer::lookup_connection(&conn)?)));
        let bitmaps = Arc::new(textindex::Bitmaps::default());
        let acceptor = accept::Acceptor::new(
            config.ack_after,
            rx,
            writer_tx,
            opened.log,
            lookup.clone(),
            &conn,
            opened.last_unit,
            acks.clone(),
            queue_records,
            hub.clone(),
            metrics.clone(),
            journal.clone(),
            group,
        )?;
        metrics.watch_backlog(queue_records, acceptor.backlog.clone());
        let w = writer::Writer::new(
            conn,
            writer_rx,
            ready.clone(),
            metrics.clone(),
            group,
            writer::Reopen {
                config: config.clone(),
                readers: readers.clone(),
                lookup,
                bitmaps: bitmaps.clone(),
            },
            journal.clone(),
            acks.clone(),
            hub.clone(),
        )?;
        let (exited_tx, writer_exited) = watch::channel(false);
        let exited_tx = Arc::new(exited_tx);
        let spawn =
            |name: &str, exited: Arc<watch::Sender<bool>>, run: Box<dyn FnOnce() + Send>| {
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || {
                        // Dropped when `run` returns or unwinds, so a panic is seen too.
                        let _exited = ExitSignal(exited);
                        run();
                    })
                    .map_err(|e| open_err(Box::new(e)))
            };
        let writer_handle = spawn(
            "callscope-writer",
            exited_tx.clone(),
            Box::new(move || w.run()),
        )?;
        let handle = spawn(
            "callscope-acceptor",
            exited_tx,
            Box::new(move || acceptor.run()),
        )?;

        let queue = Arc::new(Semaphore::new(queue_records));
        metrics.watch_queue(queue_records, queue.clone());
        let store = Store {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                queue,
                queue_records,
                ready,
                readers,
                metrics,
                schema: prepare::logs_schema(),
                span_schema: timeline::spans_schema(),
                writer_thread: Mutex::new(Some(handle)),
                applier_thread: Mutex::new(Some(writer_handle)),
                acks,
                writer_exited,
                path,
                journal,
                hub,
                bitmaps: (config.text_index_block_records > 0).then_some(bitmaps),
                lake_threads: Mutex::new(Vec::new()),
                lake_stop: Arc::new(AtomicBool::new(false)),
            }),
        };
        if config.retention_days > 0 {
            store.spawn_retention(config.retention_days);
        }
        if config.backend == Backend::Ducklake {
            let feed = {
                let pool = store.inner.readers.pool.lock();
                let conn = pool.first().ok_or(Error::Closed)?;
                clone_connection(conn)?
            };
            let maintenance_conn = clone_connection(&feed)?;
            let stop = store.inner.lake_stop.clone();
            let mut threads = vec![lake::spawn_feed(
                feed,
                Arc::downgrade(&store.inner.hub),
                stop.clone(),
            )];
            if config.ducklake.maintenance_interval_secs > 0 {
                threads.push(lake::Maintenance::new(config).spawn(maintenance_conn, stop));
            }
            for t in threads {
                let handle = t.map_err(|e| Error::Open {
                    path: config.path.clone(),
                    source: Box::new(e),
                })?;
                store.inner.lake_threads.lock().push(handle);
            }
        }
        tracing::info!(path = %store.inner.path.display(), "Opened store.");
        Ok(store)
    }

    fn spawn_retention(&self, days: u32) {
        let weak = Arc::downgrade(&self.inner);
        let keep = Duration::from_secs(u64::from(days) * 86_400);
        std::thread::Builder::new()
            .name("callscope-retention".into())
            .spawn(move || {
                let mut next = Instant::now();
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let Some(inner) = weak.upgrade() else { return };
                    if Instant::now() < next {
                        continue;
                    }
                    next = Instant::now() + Duration::from_secs(3600);
                    let cutoff = callscope_model::Timestamp::now()
                        .as_nanos()
                        .saturating_sub(i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX));
                    let (reply, rx) = oneshot::channel();
                    let sent = inner.tx.lock().as_ref().is_some_and(|tx| {
                        tx.send(writer::Command::Purge {
                            before_ns: cutoff,
                            reply,
                        })
                        .is_ok()
                    });
                    drop(inner);
                    if !sent {
                        return;
                    }
                    match rx.blocking_recv() {
                        Ok(Ok(n)) if n > 0 => {
                            tracing::info!(records = n, days, "Purged records past retention.");
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "Retention purge failed; will retry.");
                        }
                        _ => {}
                    }
                }
            })
            .ok();
    }

    /// Stores `records` and resolves once they are durable (in the ack log; the writer
    /// applies them to DuckDB after, and reads wait for that).
    ///
    /// # Errors
    /// [`Error::Overloaded`] when the write queue is full (nothing was queued);
    /// [`Error::Unavailable`] when DuckDB refused the write (nothing was committed);
    /// [`Error::Closed`] after [`Store::shutdown`].
    pub async fn append(&self, records: Vec<TenantRecord>) -> Result<AppendReceipt> {
        if records.is_empty() {
            return Ok(AppendReceipt::default());
        }
        let want = u32::try_from(records.len().min(self.inner.queue_records)).unwrap_or(u32::MAX);
        let permit = self
            .inner
            .queue
            .clone()
            .try_acquire_many_owned(want)
            .map_err(|_| Error::Overloaded)?;
        let batch = prepare::prepare(&records, &self.inner.schema)?;
        drop(records);
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.inner.tx.lock();
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            tx.send(writer::Command::Append {
                batch: Box::new(batch),
                reply,
                enqueued: Instant::now(),
                _permit: permit,
            })
            .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Stores customer-visible `spans` and resolves once they are committed, exactly
    /// as [`Store::append`] stores records (the receipt counts spans).
    ///
    /// # Errors
    /// As [`Store::append`].
    pub async fn append_spans(&self, spans: Vec<TenantSpan>) -> Result<AppendReceipt> {
        if spans.is_empty() {
            return Ok(AppendReceipt::default());
        }
        let want = u32::try_from(spans.len().min(self.inner.queue_records)).unwrap_or(u32::MAX);
        let permit = self
            .inner
            .queue
            .clone()
            .try_acquire_many_owned(want)
            .map_err(|_| Error::Overloaded)?;
        let prepared = timeline::prepare_spans(&spans, &self.inner.span_schema)?;
        drop(spans);
        let batch = prepare::PreparedBatch::of_spans(prepared, &self.inner.schema);
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.inner.tx.lock();
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            tx.send(writer::Command::Append {
                batch: Box::new(batch),
                reply,
                enqueued: Instant::now(),
                _permit: permit,
            })
            .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Deletes records older than `before` now, as the retention task does hourly.
    /// Returns how many were deleted.
    ///
    /// # Errors
    /// The store is shut down or the delete failed.
    pub async fn purge_before(&self, before: callscope_model::Timestamp) -> Result<u64> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.inner.tx.lock();
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            tx.send(writer::Command::Purge {
                before_ns: before.as_nanos(),
                reply,
            })
            .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Resolves once the writer thread has ended: after [`Store::shutdown`], or
    /// because it panicked. Whoever runs the store watches it to stop the process
    /// rather than refuse every write until someone notices.
    pub async fn writer_exited(&self) {
        let mut rx = self.inner.writer_exited.clone();
        let _ = rx.wait_for(|exited| *exited).await;
    }

    /// Did the last write succeed? (`/readyz`.)
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
            && self.inner.acks.log_ok()
            && self.inner.tx.lock().is_some()
    }

    /// The store's counters.
    #[must_use]
    pub fn metrics(&self) -> Arc<StoreMetrics> {
        self.inner.metrics.clone()
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// Runs `f` with a reader connection on a blocking thread, once the tables `calls`
    /// and `log_counts` hold every acknowledged record (see [`Store::sync`]). The
    /// store's own queries don't wait: they read the views `calls_live` and
    /// `log_counts_live`, which add the unfolded journal.
    ///
    /// # Errors
    /// Whatever `f` returns, [`Error::Unavailable`] when the summaries could not be
    /// brought up to date, or [`Error::Closed`] if the blocking task was cancelled.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.sync().await?;
        self.read_live(f).await
    }

    /// Waits until the writer has applied to DuckDB every record acknowledged so far:
    /// what every read waits for before it runs. Benchmarks use it to time ingest up
    /// to the point where the records are readable, not only durable.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the writer is failing to apply them, or has not
    /// within ten seconds.
    pub async fn applied(&self) -> Result<()> {
        self.inner.acks.barrier(accept::Scope::All).await
    }

    /// Waits until `calls` and `log_counts` account for every record acknowledged so
    /// far. Group commits journal their summaries and the writer folds the journal in
    /// about once a second; this asks for the fold now when anything is pending, and
    /// returns at once when nothing is.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the fold failed; [`Error::Closed`] after
    /// [`Store::shutdown`].
    pub async fn sync(&self) -> Result<()> {
        let Some(rx) = self.inner.journal.request() else {
            return Ok(());
        };
        {
            let tx = self.inner.tx.lock();
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            tx.send(writer::Command::Fold).map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// A read on a reader connection that does not wait for the journal to be folded:
    /// for reads of `logs`, of the live views (`calls_live`, `log_counts_live`, which add
    /// the unfolded journal), or of one call's window ([`query::call_window`] reads the
    /// journal too). Every query of the API goes through here; [`Store::read`] is the
    /// same after a fold, for callers that read the tables themselves. Nothing written
    /// here: writes go through the writer ([`Store::write`]).
    pub(crate) async fn read_live<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.read_in(accept::Scope::All, f).await
    }

    /// [`Store::read_live`] of what `scope` covers: with `ack_after = "log"` it waits
    /// only for the acknowledged units that hold rows of that tenant or call.
    pub(crate) async fn read_in<T, F>(&self, scope: accept::Scope<'_>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        // A read that starts after an acknowledgement sees what it acknowledged.
        self.inner.acks.barrier(scope).await?;
        // The slot moves into the blocking task, so it is held until the connection is
        // back in the pool even if this future is dropped early.
        let slot = self
            .inner
            .readers
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Closed)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let Some(conn) = inner.readers.pool.lock().pop() else {
                return Err(Error::Unavailable("storage is being reopened".into()));
            };
            let out = f(&conn);
            inner.readers.pool.lock().push(conn);
            drop(slot);
            out.map_err(|e| match e {
                // The database instance is unusable until the writer has reopened it;
                // ask it to, in case no write is coming to find out.
                Error::Invalidated(e) => {
                    if let Some(tx) = inner.tx.lock().as_ref() {
                        let _ = tx.send(writer::Command::CheckHealth);
                    }
                    Error::Unavailable(e.to_string())
                }
                e => e,
            })
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// Runs `f` on the writer's connection, after the appends queued before it, and
    /// returns what it returned: every write to the database goes through the writer.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let run = Box::new(move |conn: Result<&Connection>| {
            let out = conn.and_then(f);
            let failed = out.is_err();
            let _ = reply.send(out);
            if failed {
                Err(Error::Unavailable("the write failed".into()))
            } else {
                Ok(())
            }
        });
        {
            let tx = self.inner.tx.lock();
            let tx = tx.as_ref().ok_or(Error::Closed)?;
            tx.send(writer::Command::Write(run))
                .map_err(|_| Error::Closed)?;
        }
        rx.await.map_err(|_| Error::Closed)?
    }

    /// One page of a call's records; `None` when `tenant` has no call `call_id`.
    ///
    /// # Errors
    /// [`Error::CursorNotFound`] when the query's cursor is not among the records the
    /// query matches; a database error otherwise.
    pub async fn call_logs(
        &self,
        tenant: &str,
        call_id: &str,
        query: LogQuery,
    ) -> Result<Option<LogPage>> {
        let scope = accept::Scope::Call(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.read_in(scope, move |c| {
            query::call_logs(c, &tenant, &call_id, &query)
        })
        .await
    }

    /// Every record of a call that matches `filter`, in `order`, as a file in `format`,
    /// produced as it is read (see [`ExportStream`]); `None` when `tenant` has no call
    /// `call_id`. `applied` is the filter as the caller spelled it (`name`, value),
    /// printed in a PDF report's heading after the call's fields.
    ///
    /// # Errors
    /// A database error, or a failure writing the file, before any bytes were produced.
    pub async fn export_call_logs(
        &self,
        tenant: &str,
        call_id: &str,
        filter: LogFilter,
        order: Order,
        format: ExportFormat,
        applied: &[(String, String)],
    ) -> Result<Option<ExportStream>> {
        export::call_logs(self, tenant, call_id, filter, order, format, applied).await
    }

    /// Every one of `tenant`'s calls that `filter` selects, newest first (the calls
    /// list's order), as a file in `format`, produced as it is read. `applied` is the
    /// filter as the caller spelled it (`name`, value), printed in a PDF report's
    /// heading.
    ///
    /// # Errors
    /// A database error, or a failure writing the file, before any bytes were produced.
    pub async fn export_calls(
        &self,
        tenant: &str,
        filter: &CallFilter,
        format: ExportFormat,
        applied: &[(String, String)],
    ) -> Result<ExportStream> {
        export::calls(self, tenant, filter, format, applied).await
    }

    /// Searches `tenant`'s records across calls.
    ///
    /// # Errors
    /// A database error.
    pub async fn search(&self, tenant: &str, query: SearchQuery) -> Result<SearchResult> {
        let scope = accept::Scope::Tenant(tenant);
        let tenant = tenant.to_owned();
        let bitmaps = self.inner.bitmaps.clone();
        self.read_in(scope, move |c| {
            search::search(c, &tenant, &query, bitmaps.as_deref())
        })
        .await
    }

    /// A page of `tenant`'s calls matching `filter`, newest first.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_calls(
        &self,
        tenant: &str,
        filter: CallFilter,
        limit: u64,
        offset: u64,
    ) -> Result<CallPage> {
        let scope = accept::Scope::Tenant(tenant);
        let tenant = tenant.to_owned();
        self.read_in(scope, move |c| {
            calls::list_calls(c, &tenant, &filter, limit, offset)
        })
        .await
    }

    /// One call's summary; `None` when `tenant` has no call `call_id`.
    ///
    /// # Errors
    /// A database error.
    pub async fn call(&self, tenant: &str, call_id: &str) -> Result<Option<callscope_model::Call>> {
        let scope = accept::Scope::Call(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.read_in(scope, move |c| calls::get_call(c, &tenant, &call_id))
            .await
    }

    /// A call's stored spans, by start time; `None` when `tenant` has no call `call_id`.
    ///
    /// # Errors
    /// A database error.
    pub async fn call_spans(&self, tenant: &str, call_id: &str) -> Result<Option<Vec<SpanRecord>>> {
        let scope = accept::Scope::Call(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.read_in(scope, move |c| timeline::call_spans(c, &tenant, &call_id))
            .await
    }

    /// A call's turns, by turn number, and their latency summary; `None` when `tenant`
    /// has no call `call_id`.
    ///
    /// # Errors
    /// A database error.
    pub async fn call_turns(&self, tenant: &str, call_id: &str) -> Result<Option<CallTurns>> {
        let scope = accept::Scope::Call(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.read_in(scope, move |c| timeline::call_turns(c, &tenant, &call_id))
            .await
    }

    /// Adds a comment to a call; `None` when `tenant` has no call `call_id`.
    ///
    /// # Errors
    /// A database error.
    pub async fn add_comment(
        &self,
        tenant: &str,
        call_id: &str,
        author: &str,
        text: &str,
    ) -> Result<Option<Comment>> {
        let args = (
            tenant.to_owned(),
            call_id.to_owned(),
            author.to_owned(),
            text.to_owned(),
        );
        self.write(move |c| calls::add_comment(c, &args.0, &args.1, &args.2, &args.3))
            .await
    }

    /// A call's comments, oldest first; `None` when `tenant` has no call `call_id`.
    ///
    /// # Errors
    /// A database error.
    pub async fn comments(&self, tenant: &str, call_id: &str) -> Result<Option<Vec<Comment>>> {
        let scope = accept::Scope::Call(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.read_in(scope, move |c| calls::comments(c, &tenant, &call_id))
            .await
    }

    /// A call's transcript (what the caller and the agent said), oldest first; `None`
    /// when `tenant` has no call `call_id`.
    ///
    /// # Errors
    /// A database error.
    pub async fn transcript(
        &self,
        tenant: &str,
        call_id: &str,
    ) -> Result<Option<Vec<TranscriptLine>>> {
        let scope = accept::Scope::Call(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.read_in(scope, move |c| transcript::transcript(c, &tenant, &call_id))
            .await
    }

    /// Newly committed records of `tenant` (of one call, with `call_id`), from now on,
    /// in commit order: what a live stream listens to. Subscribe before reading the
    /// backlog with [`Store::stream_page`], then skip live records whose `seq` was
    /// already sent, and nothing committed in between is lost.
    #[must_use]
    pub fn subscribe(&self, tenant: &str, call_id: Option<&str>) -> Subscription {
        self.inner.hub.subscribe(tenant, call_id)
    }

    /// Up to `limit` of `tenant`'s records (of call `call_id`, when given) that pass
    /// `filter` and were committed after the record numbered `after_seq`, in commit
    /// order; `None` when the tenant has no call `call_id`.
    ///
    /// # Errors
    /// A database error.
    pub async fn stream_page(
        &self,
        tenant: &str,
        call_id: Option<&str>,
        filter: StreamFilter,
        after_seq: i64,
        limit: usize,
    ) -> Result<Option<Vec<LiveRecord>>> {
        let scope = accept::Scope::of(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.map(str::to_owned));
        self.read_in(scope, move |c| {
            live::page(c, &tenant, call_id.as_deref(), &filter, after_seq, limit)
        })
        .await
    }

    /// The commit sequence number of `tenant`'s record `id` (within call `call_id`,
    /// when given): where a stream resuming after that record starts. `None` when
    /// there is no such record.
    ///
    /// # Errors
    /// A database error.
    pub async fn stream_position(
        &self,
        tenant: &str,
        call_id: Option<&str>,
        id: uuid::Uuid,
    ) -> Result<Option<i64>> {
        let scope = accept::Scope::of(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.map(str::to_owned));
        self.read_in(scope, move |c| {
            live::seq_of(c, &tenant, call_id.as_deref(), id)
        })
        .await
    }

    /// Does `tenant` have the call `call_id`?
    ///
    /// # Errors
    /// A database error.
    pub async fn has_call(&self, tenant: &str, call_id: &str) -> Result<bool> {
        let scope = accept::Scope::Call(tenant, call_id);
        let (tenant, call_id) = (tenant.to_owned(), call_id.to_owned());
        self.read_in(scope, move |c| {
            Ok(query::call_window(c, &tenant, &call_id)?.is_some())
        })
        .await
    }

    /// Stops taking writes, commits what is queued, checkpoints, and stops the writer.
    /// Later appends fail with [`Error::Closed`].
    ///
    /// # Errors
    /// The final checkpoint failed (everything committed before is still durable in
    /// the write-ahead log).
    pub async fn shutdown(&self) -> Result<()> {
        let Some(tx) = self.inner.tx.lock().take() else {
            return Ok(());
        };
        let (reply, rx) = oneshot::channel();
        let sent = tx.send(writer::Command::Shutdown { reply }).is_ok();
        drop(tx);
        let result = if sent {
            rx.await.unwrap_or(Ok(()))
        } else {
            Ok(())
        };
        // The lake's feed and maintenance threads stop too: none may be inside DuckDB
        // when the process exits and the database is torn down under it.
        self.inner.lake_stop.store(true, Ordering::Release);
        let mut threads = vec![
            self.inner.writer_thread.lock().take(),
            self.inner.applier_thread.lock().take(),
        ];
        threads.extend(self.inner.lake_threads.lock().drain(..).map(Some));
        for h in threads.into_iter().flatten() {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        // Nothing more will be committed: live streams end.
        self.inner.hub.close();
        tracing::info!(path = %self.inner.path.display(), "Store closed.");
        result
    }
}
