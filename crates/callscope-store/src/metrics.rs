//! What the store counts, for `/metrics`.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use callscope_model::metrics::{Histogram, LATENCY_BUCKETS, MetricKind, MetricsSource, PromWriter};

/// The store's counters.
#[derive(Debug)]
pub struct StoreMetrics {
    commits: AtomicU64,
    rows: AtomicU64,
    duplicates: AtomicU64,
    spans: AtomicU64,
    span_duplicates: AtomicU64,
    looked_up: AtomicU64,
    write_errors: AtomicU64,
    commit_latency: Histogram,
    ack_latency: Histogram,
    fold_latency: Histogram,
    apply_latency: Histogram,
    /// The writer's backlog of acknowledged records: capacity and semaphore.
    backlog: OnceLock<(usize, Arc<tokio::sync::Semaphore>)>,
    index_latency: Histogram,
    index_pending: AtomicU64,
    index_memory: AtomicU64,
    /// The write queue's capacity and its semaphore, read when rendering so the depth
    /// is never stale.
    queue: OnceLock<(usize, Arc<tokio::sync::Semaphore>)>,
    exports: [AtomicU64; crate::ExportFormat::ALL.len()],
    export_bytes: AtomicU64,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            spans: AtomicU64::new(0),
            span_duplicates: AtomicU64::new(0),
            looked_up: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            commit_latency: Histogram::new(LATENCY_BUCKETS),
            ack_latency: Histogram::new(LATENCY_BUCKETS),
            fold_latency: Histogram::new(LATENCY_BUCKETS),
            apply_latency: Histogram::new(LATENCY_BUCKETS),
            backlog: OnceLock::new(),
            index_latency: Histogram::new(LATENCY_BUCKETS),
            index_pending: AtomicU64::new(0),
            index_memory: AtomicU64::new(0),
            queue: OnceLock::new(),
            exports: Default::default(),
            export_bytes: AtomicU64::new(0),
        }
    }
}

impl StoreMetrics {
    pub(crate) fn record_spans(&self, spans: usize, duplicates: usize) {
        self.spans.fetch_add(spans as u64, Relaxed);
        self.span_duplicates.fetch_add(duplicates as u64, Relaxed);
    }

    pub(crate) fn record_commit(&self, rows: usize, duplicates: usize, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.rows.fetch_add(rows as u64, Relaxed);
        self.duplicates.fetch_add(duplicates as u64, Relaxed);
        self.commit_latency.observe(took);
    }

    pub(crate) fn record_looked_up(&self, ids: usize) {
        self.looked_up.fetch_add(ids as u64, Relaxed);
    }

    pub(crate) fn record_ack_latency(&self, took: Duration) {
        self.ack_latency.observe(took);
    }

    pub(crate) fn record_fold(&self, took: Duration) {
        self.fold_latency.observe(took);
    }

    pub(crate) fn record_apply(&self, took: Duration) {
        self.apply_latency.observe(took);
    }

    pub(crate) fn watch_backlog(&self, capacity: usize, backlog: Arc<tokio::sync::Semaphore>) {
        let _ = self.backlog.set((capacity, backlog));
    }

    pub(crate) fn record_index_step(&self, took: Duration) {
        self.index_latency.observe(took);
    }

    /// What the text index has waiting, and the bytes of bitmap it holds in memory.
    pub(crate) fn set_index_state(&self, pending_records: u64, memory_bytes: u64) {
        self.index_pending.store(pending_records, Relaxed);
        self.index_memory.store(memory_bytes, Relaxed);
    }

    /// Records committed and not yet summarised by the text index (see
    /// `callscope_store_text_index_pending_records`). Searches scan them.
    #[must_use]
    pub fn text_index_pending(&self) -> u64 {
        self.index_pending.load(Relaxed)
    }

    /// Bytes of text index bitmaps held in memory for searches (see
    /// `callscope_store_text_index_memory_bytes`).
    #[must_use]
    pub fn text_index_memory(&self) -> u64 {
        self.index_memory.load(Relaxed)
    }

    pub(crate) fn record_write_error(&self) {
        self.write_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn watch_queue(&self, capacity: usize, queue: Arc<tokio::sync::Semaphore>) {
        let _ = self.queue.set((capacity, queue));
    }

    pub(crate) fn record_export(&self, format: usize) {
        self.exports[format].fetch_add(1, Relaxed);
    }

    pub(crate) fn record_export_bytes(&self, n: u64) {
        self.export_bytes.fetch_add(n, Relaxed);
    }

    /// Export bytes handed to clients so far.
    #[must_use]
    pub fn export_bytes(&self) -> u64 {
        self.export_bytes.load(Relaxed)
    }

    /// Records committed so far.
    #[must_use]
    pub fn rows_stored(&self) -> u64 {
        self.rows.load(Relaxed)
    }

    /// Records refused as already stored so far.
    #[must_use]
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Relaxed)
    }

    /// Incoming record ids looked up in the table to find duplicates (see
    /// `callscope_store_dedupe_lookups_total`).
    #[must_use]
    pub fn dedupe_lookups(&self) -> u64 {
        self.looked_up.load(Relaxed)
    }

    /// Journal folds that ran (see `callscope_store_fold_seconds`).
    #[must_use]
    pub fn folds(&self) -> u64 {
        self.fold_latency.count()
    }

    /// Failed commits so far.
    #[must_use]
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Relaxed)
    }
}

/// Commit conflicts lost to other instances of a lake (counted where any transaction
/// is retried, which has no handle on the store's metrics), process-wide.
pub(crate) static LAKE_CONFLICTS: AtomicU64 = AtomicU64::new(0);

impl MetricsSource for StoreMetrics {
    fn render(&self, w: &mut PromWriter) {
        let c = |a: &AtomicU64| a.load(Relaxed) as f64;
        w.single(
            "callscope_store_commits_total",
            MetricKind::Counter,
            "Transactions committed.",
            c(&self.commits),
        );
        w.single(
            "callscope_records_stored_total",
            MetricKind::Counter,
            "Customer records committed to storage.",
            c(&self.rows),
        );
        w.single(
            "callscope_records_duplicate_total",
            MetricKind::Counter,
            "Records not stored again because an identical record was already stored (exporter retries).",
            c(&self.duplicates),
        );
        w.single(
            "callscope_spans_stored_total",
            MetricKind::Counter,
            "Customer spans committed to storage.",
            c(&self.spans),
        );
        w.single(
            "callscope_spans_duplicate_total",
            MetricKind::Counter,
            "Spans not stored again because the same span was already stored (exporter retries).",
            c(&self.span_duplicates),
        );
        w.single(
            "callscope_store_dedupe_lookups_total",
            MetricKind::Counter,
            "Incoming record ids looked up in storage to find duplicates; ids newer than what the writer remembers skip it.",
            c(&self.looked_up),
        );
        w.single(
            "callscope_store_write_errors_total",
            MetricKind::Counter,
            "Writes that failed: ack log appends (nothing acknowledged) and database applies (retried from the ack log).",
            c(&self.write_errors),
        );
        let (cap, available) = self.queue.get().map_or((0.0, 0.0), |(cap, queue)| {
            (*cap as f64, queue.available_permits() as f64)
        });
        w.single(
            "callscope_store_queue_capacity_records",
            MetricKind::Gauge,
            "Records the write queue can hold.",
            cap,
        );
        w.single(
            "callscope_store_queue_depth_records",
            MetricKind::Gauge,
            "Records waiting for the writer.",
            (cap - available).max(0.0),
        );
        let (cap, available) = self.backlog.get().map_or((0.0, 0.0), |(cap, b)| {
            (*cap as f64, b.available_permits() as f64)
        });
        w.single(
            "callscope_store_apply_backlog_records",
            MetricKind::Gauge,
            "Records acknowledged (durable in the ack log) and not yet applied to the database.",
            (cap - available).max(0.0),
        );
        w.single(
            "callscope_store_lake_conflicts_total",
            MetricKind::Counter,
            "DuckLake backend: transactions that lost a commit conflict to another instance and were tried again.",
            LAKE_CONFLICTS.load(Relaxed) as f64,
        );
        let name = "callscope_exports_total";
        w.family(name, MetricKind::Counter, "Exports started, by format.");
        for (f, n) in crate::ExportFormat::ALL.iter().zip(&self.exports) {
            w.sample(name, &[("format", f.as_str())], c(n));
        }
        w.single(
            "callscope_export_bytes_total",
            MetricKind::Counter,
            "Bytes of export files handed to clients.",
            c(&self.export_bytes),
        );
        self.commit_latency.render(
            w,
            "callscope_store_commit_seconds",
            "Time to accept one group: find its duplicates, write it to the ack log and fsync it.",
            &[],
        );
        self.ack_latency.render(
            w,
            "callscope_ingest_to_commit_seconds",
            "Time from a request reaching the write queue to its acknowledgement (durable in the ack log).",
            &[],
        );
        self.apply_latency.render(
            w,
            "callscope_store_apply_seconds",
            "Time to apply acknowledged units to the database in one transaction.",
            &[],
        );
        self.fold_latency.render(
            w,
            "callscope_store_fold_seconds",
            "Time to fold the journalled call summaries and counts into calls and log_counts.",
            &[],
        );
        w.single(
            "callscope_store_text_index_pending_records",
            MetricKind::Gauge,
            "Records committed and not yet in a text index block (text searches scan them).",
            c(&self.index_pending),
        );
        w.single(
            "callscope_store_text_index_memory_bytes",
            MetricKind::Gauge,
            "Bytes of text index bitmaps held in memory for searches (about 0.5 per record indexed).",
            c(&self.index_memory),
        );
        self.index_latency.render(
            w,
            "callscope_store_text_index_step_seconds",
            "Time to build and commit one step of text index blocks.",
            &[],
        );
    }
}
