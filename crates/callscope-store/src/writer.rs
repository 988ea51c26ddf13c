//! The single writer: one thread owns the write connection, gathers whatever append
//! requests are waiting into one transaction (group commit), drops records already
//! stored, and answers every request in the group only after `COMMIT` returned.
//!
//! # The journal
//!
//! A group commit appends its records to `logs`, and its per-call deltas and counts to
//! `call_journal` and `count_journal`: three appends, no update. Folding the journal
//! into `calls` and `log_counts` (a `MERGE` and an upsert, both through ART indexes)
//! cost more than the rest of the group together, so it happens once per
//! [`FOLD_EVERY`] for every group since, not once per group. Between folds the journal
//! is part of the committed state:
//! - the API's reads never wait for the writer: they read the views `calls_live` and
//!   `log_counts_live`, which add the journal to the tables, and one call's window
//!   reads the journal beside `calls`. [`crate::Store::read`], which lends a connection
//!   for any SQL, asks for a fold first and waits for it ([`Journal::request`]; the
//!   writer folds between two groups, ahead of the queue);
//! - a crash leaves the deltas in the journal, committed with their records, and the
//!   next open folds them before anything else;
//! - a purge and a shutdown fold first.
//!
//! # Duplicates
//!
//! Retries are dropped by id. Rather than looking every id of a group up in `logs`,
//! the writer asks [`RecentIds`] first: for a group newer than what it remembers
//! only the ids it remembers are looked up, usually none (see `recent.rs`).
//!
//! When a write fails and DuckDB has invalidated the database instance (it does when a
//! checkpoint fails, e.g. on a full disk), the writer closes the instance and reopens the
//! file, at most once per [`REOPEN_INTERVAL`], failing appends fast in between.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use callscope_model::Timestamp;
use duckdb::{
    Connection,
    arrow::{
        array::{Array, BooleanArray, Int64Array},
        compute::filter_record_batch,
        record_batch::RecordBatch,
    },
};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use uuid::Uuid;

use crate::{
    AppendReceipt, Error, Readers, Result, StoreConfig,
    live::Hub,
    metrics::StoreMetrics,
    open_connection,
    prepare::{self, PreparedBatch},
    query::parse_id,
    recent::{self, RecentIds},
    rollup::{self, Counts},
    summary::{self, CallDelta},
    textindex::TextIndex,
    timeline::{self, PreparedSpans},
};

/// How often the writer tries to reopen a database that DuckDB invalidated.
pub(crate) const REOPEN_INTERVAL: Duration = Duration::from_millis(500);

/// How long deltas may wait in the journal while the writer is busy, and how long an
/// idle writer waits before folding them.
pub(crate) const FOLD_EVERY: Duration = Duration::from_secs(1);

/// What the writer and the readers share about the journal.
#[derive(Default)]
pub(crate) struct Journal {
    /// Does the journal hold deltas not yet folded? Set before a group's commit, so a
    /// `Store::sync` that starts after an acknowledgement sees it. (The API's reads
    /// don't use it: they check the journal in their own snapshot.)
    pending: AtomicBool,
    /// Reads waiting for the next fold.
    waiters: Mutex<Vec<oneshot::Sender<Result<()>>>>,
}

impl Journal {
    /// Does the journal hold deltas not yet folded?
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Registers a read that needs the journal folded; the caller then wakes the writer
    /// with [`Command::Fold`] and awaits the receiver. `None` when nothing is pending.
    pub(crate) fn request(&self) -> Option<oneshot::Receiver<Result<()>>> {
        if !self.is_pending() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().push(tx);
        Some(rx)
    }
}

/// What the writer needs to reopen the database.
pub(crate) struct Reopen {
    pub(crate) config: StoreConfig,
    pub(crate) readers: Arc<Readers>,
}

/// A write other than records: given the writer's connection (or why there is none), it
/// runs, answers its caller, and says whether it failed.
pub(crate) type WriteJob = Box<dyn FnOnce(Result<&Connection>) -> Result<()> + Send>;

pub(crate) enum Command {
    Append {
        batch: Box<PreparedBatch>,
        reply: oneshot::Sender<Result<AppendReceipt>>,
        enqueued: Instant,
        _permit: OwnedSemaphorePermit,
    },
    Purge {
        before_ns: i64,
        reply: oneshot::Sender<Result<u64>>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<()>>,
    },
    /// A query found the database invalidated: reopen it if it is.
    CheckHealth,
    /// A write other than records (a comment, an API key), run on the writer's
    /// connection between group commits. It answers its caller itself.
    Write(WriteJob),
    /// A read is waiting for the journal to be folded ([`Journal::request`]).
    Fold,
}

/// Where a group commit's time went, for the debug log.
#[derive(Default)]
struct Phases {
    /// Looking up which incoming ids are already stored.
    dedupe: Duration,
    /// How many of the group's ids were looked up in `logs` (see [`RecentIds`]).
    looked_up: usize,
    /// Appending the records to `logs`.
    append: Duration,
    /// Appending the group's call deltas to `call_journal`.
    calls: Duration,
    /// Appending the group's counts to `count_journal`.
    counts: Duration,
    /// `COMMIT`: the WAL write and its fsync.
    commit: Duration,
}

pub(crate) struct Writer {
    /// `None` while the database is closed after DuckDB invalidated it.
    conn: Option<Connection>,
    rx: mpsc::Receiver<Command>,
    ready: Arc<AtomicBool>,
    metrics: Arc<StoreMetrics>,
    max_group_rows: usize,
    reopen: Reopen,
    /// While the database is closed: when it was last tried, and why it is closed.
    closed: Option<(Instant, String)>,
    journal: Arc<Journal>,
    last_fold: Instant,
    recent: RecentIds,
    /// The same for `spans`, by start time: a span's id is its trace and span ids, and
    /// a retried span keeps its start time.
    recent_spans: RecentIds,
    /// The last commit sequence number given to a record (`logs.seq`). Numbers are
    /// never reused, even by a group that failed: its commit may have been durable.
    last_seq: i64,
    /// Where committed records go to live streams.
    hub: Arc<Hub>,
    /// The text index's pending work (see `textindex.rs`).
    index: TextIndex,
    /// After a failed index step, none is tried before this.
    index_paused_until: Option<Instant>,
}

fn scratch_ddl() -> String {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS _incoming_ids (id UUID NOT NULL);\n\
         CREATE TEMP TABLE IF NOT EXISTS _call_delta (\n{}\n);\n{}\n{}",
        summary::column_ddl(false),
        rollup::SCRATCH_DDL,
        timeline::SCRATCH_DDL
    )
}

impl Writer {
    // Each argument is a handle `Store::open` shares with the writer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        conn: Connection,
        rx: mpsc::Receiver<Command>,
        ready: Arc<AtomicBool>,
        metrics: Arc<StoreMetrics>,
        max_group_rows: usize,
        reopen: Reopen,
        journal: Arc<Journal>,
        hub: Arc<Hub>,
    ) -> Result<Self> {
        conn.execute_batch(&scratch_ddl())?;
        let last_seq: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM logs", [], |r| r.get(0))?;
        let left: i64 = conn.query_row(
            "SELECT (SELECT count(*) FROM call_journal) + (SELECT count(*) FROM count_journal)",
            [],
            |r| r.get(0),
        )?;
        let (newest, ahead) = Self::stored_times(&conn, &LOGS)?;
        let (newest_span, ahead_spans) = Self::stored_times(&conn, &SPANS)?;
        let index = TextIndex::open(&conn, reopen.config.text_index_block_records)?;
        metrics.set_index_pending(index.pending_records());
        let mut writer = Self {
            conn: Some(conn),
            rx,
            ready,
            metrics,
            max_group_rows,
            reopen,
            closed: None,
            journal,
            last_fold: Instant::now(),
            recent: RecentIds::new(newest, &ahead, recent::GENERATION),
            recent_spans: RecentIds::new(newest_span, &ahead_spans, recent::SPAN_GENERATION),
            last_seq,
            hub,
            index,
            index_paused_until: None,
        };
        // What a crash left in the journal is folded before anything is served. Should
        // that fail, the store still opens: reads that need the summaries wait for the
        // run loop's next try (every `FOLD_EVERY`), and `/readyz` says not ready.
        if left > 0 {
            writer.journal.pending.store(true, Ordering::Release);
            writer.fold();
        }
        Ok(writer)
    }

    /// What [`RecentIds`] starts from, for `kind`'s table: the newest stored time no
    /// further ahead of the clock than [`recent::AHEAD`], and the ids of the rows further
    /// ahead (at most one more than [`recent::AHEAD_CAP`]).
    fn stored_times(conn: &Connection, kind: &Deduped) -> Result<(i64, Vec<Uuid>)> {
        let Deduped { table, ts, .. } = kind;
        let horizon = Timestamp::now().0.saturating_add(recent::AHEAD);
        let newest: Option<i64> = conn.query_row(
            &format!("SELECT max({ts}) FROM {table} WHERE {ts} <= ?"),
            [horizon],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT id::VARCHAR FROM {table} WHERE {ts} > ? LIMIT {}",
            recent::AHEAD_CAP + 1
        ))?;
        let ahead = stmt
            .query_map([horizon], |r| r.get::<_, String>(0))?
            .map(|s| parse_id(&s?))
            .collect::<Result<Vec<_>>>()?;
        if ahead.len() > recent::AHEAD_CAP {
            tracing::warn!(
                cap = recent::AHEAD_CAP,
                "The file holds more records stamped over five minutes ahead than are remembered; every group is looked up in storage for duplicates."
            );
        }
        Ok((newest.unwrap_or(i64::MIN), ahead))
    }

    /// The write connection, reopening the database first if it is closed (at most once
    /// per [`REOPEN_INTERVAL`]).
    fn connection(&mut self) -> Result<&Connection> {
        if self.conn.is_none() {
            self.try_reopen(false);
        }
        match &self.conn {
            Some(c) => Ok(c),
            None => Err(Error::Unavailable(
                self.closed
                    .as_ref()
                    .map_or_else(String::new, |(_, why)| why.clone()),
            )),
        }
    }

    /// After a failed write: if DuckDB invalidated the instance, close it and reopen.
    fn check_health(&mut self) {
        let Some(conn) = &self.conn else { return };
        if let Err(e @ Error::Invalidated(_)) = conn.execute_batch("SELECT 1").map_err(Error::from)
        {
            tracing::error!(error = %e, "DuckDB invalidated the database; reopening it.");
            self.close(e.to_string());
            self.try_reopen(true);
        }
    }

    /// Closes the database: every reader connection, then the writer's, once the
    /// queries running on the readers have finished.
    fn close(&mut self, why: String) {
        let readers = self.reopen.readers.clone();
        let all = u32::try_from(readers.count).unwrap_or(u32::MAX);
        let slots = block_on(readers.slots.clone().acquire_many_owned(all));
        readers.pool.lock().clear();
        self.conn = None;
        drop(slots);
        self.closed = Some((Instant::now(), why));
    }

    /// Opens the database again, unless the last attempt is more recent than
    /// [`REOPEN_INTERVAL`] and `now` is false.
    fn try_reopen(&mut self, now: bool) {
        if !now
            && self
                .closed
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < REOPEN_INTERVAL)
        {
            return;
        }
        let readers = self.reopen.readers.clone();
        let all = u32::try_from(readers.count).unwrap_or(u32::MAX);
        let slots = block_on(readers.slots.clone().acquire_many_owned(all));
        let opened = open_connection(&self.reopen.config).and_then(|conn| {
            conn.execute_batch(&scratch_ddl())?;
            let pool = Readers::connect(&conn, readers.count)?;
            Ok((conn, pool))
        });
        match opened {
            Ok((conn, pool)) => {
                *readers.pool.lock() = pool;
                self.conn = Some(conn);
                self.closed = None;
                // The last group may have committed before the instance failed.
                self.journal.pending.store(true, Ordering::Release);
                // Its records too: the index counts what waits from the file again.
                if let Some(conn) = &self.conn
                    && let Err(e) = self.index.reload(conn)
                {
                    tracing::warn!(error = %e, "Reading the text index's backlog failed.");
                }
                tracing::info!("Reopened the database.");
            }
            Err(e) => {
                tracing::warn!(error = %e, "Reopening the database failed; will retry.");
                self.closed = Some((Instant::now(), e.to_string()));
            }
        }
        drop(slots);
    }

    /// Runs until a shutdown command arrives or every sender is gone.
    pub(crate) fn run(mut self) {
        let mut group = Vec::new();
        loop {
            let received = if self.index_due() {
                // Index work runs while nothing else waits.
                match self.rx.try_recv() {
                    Ok(cmd) => Ok(cmd),
                    Err(mpsc::TryRecvError::Empty) => {
                        self.index_step();
                        self.fold_if_due();
                        continue;
                    }
                    Err(mpsc::TryRecvError::Disconnected) => Err(RecvTimeoutError::Disconnected),
                }
            } else if self.journal.is_pending() {
                self.rx
                    .recv_timeout(FOLD_EVERY.saturating_sub(self.last_fold.elapsed()))
            } else {
                self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            let first = match received {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => {
                    self.fold();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut rows = 0usize;
            let mut next = Some(first);
            // Gather what is already waiting, up to the group limit; a purge or
            // shutdown ends the group so it runs after the appends before it.
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append {
                        batch,
                        reply,
                        enqueued,
                        _permit,
                    } => {
                        rows += batch.len();
                        group.push((*batch, reply, enqueued, _permit));
                        if rows < self.max_group_rows {
                            next = self.rx.try_recv().ok();
                        }
                    }
                    other => {
                        self.commit_group(&mut group);
                        match other {
                            Command::Purge { before_ns, reply } => {
                                // The purge corrects `calls`, so it must hold everything.
                                self.fold();
                                let result = if self.journal.is_pending() {
                                    Err(Error::Unavailable(
                                        "the call summaries could not be brought up to date".into(),
                                    ))
                                } else {
                                    self.purge(before_ns)
                                };
                                let _ = reply.send(result);
                            }
                            Command::Fold => self.fold_if_due(),
                            Command::Write(run) => {
                                let failed = run(self.connection()).is_err();
                                if failed {
                                    self.check_health();
                                }
                            }
                            Command::CheckHealth => {
                                if self.conn.is_some() {
                                    self.check_health();
                                } else {
                                    self.try_reopen(false);
                                }
                            }
                            Command::Shutdown { reply } => {
                                self.fold();
                                // A closed database has nothing to checkpoint: what
                                // was committed is in the file and its WAL.
                                let result = self.conn.as_ref().map_or(Ok(()), |c| {
                                    c.execute_batch("CHECKPOINT").map_err(Error::from)
                                });
                                let _ = reply.send(result);
                                return;
                            }
                            Command::Append { .. } => unreachable!("handled above"),
                        }
                    }
                }
            }
            self.commit_group(&mut group);
            self.fold_if_due();
            if self.index_due() {
                self.index_step();
            }
        }
    }

    /// Is a text index step waiting, and not paused after a failure?
    fn index_due(&self) -> bool {
        self.conn.is_some()
            && self.index_paused_until.is_none_or(|t| Instant::now() >= t)
            && self.index.is_due()
    }

    /// Runs one text index step. A failure pauses the index (searches scan the records
    /// it has not covered, so nothing is wrong meanwhile, only slower).
    fn index_step(&mut self) {
        let Some(conn) = &self.conn else { return };
        let started = Instant::now();
        match self.index.step(conn) {
            Ok(_) => {
                self.index_paused_until = None;
                self.metrics.record_index_step(started.elapsed());
            }
            Err(e) => {
                tracing::warn!(error = %e, "Building the text index failed; will retry.");
                self.index_paused_until = Some(Instant::now() + FOLD_EVERY);
                self.check_health();
            }
        }
        self.metrics.set_index_pending(self.index.pending_records());
    }

    /// Folds the journal if a read is waiting for it or it has waited [`FOLD_EVERY`].
    fn fold_if_due(&mut self) {
        if !self.journal.waiters.lock().is_empty()
            || (self.journal.is_pending() && self.last_fold.elapsed() >= FOLD_EVERY)
        {
            self.fold();
        }
    }

    /// Folds the journal and answers the reads waiting for it.
    fn fold(&mut self) {
        self.last_fold = Instant::now();
        let pending = self.journal.is_pending();
        let result = if pending {
            self.connection()
                .map(|_| ())
                .and_then(|()| self.fold_journal())
        } else {
            Ok(())
        };
        let result = match result {
            Ok(()) => {
                if pending {
                    self.metrics.record_fold(self.last_fold.elapsed());
                    self.ready.store(true, Ordering::Relaxed);
                }
                self.journal.pending.store(false, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                if let Some(conn) = &self.conn {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                self.check_health();
                self.ready.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "Folding the call summaries failed; will retry.");
                Err(e.to_string())
            }
        };
        let waiters = std::mem::take(&mut *self.journal.waiters.lock());
        for w in waiters {
            let _ = w.send(result.clone().map_err(Error::Unavailable));
        }
    }

    /// Folds `call_journal` into `calls` and `count_journal` into `log_counts`, and
    /// empties both, in one transaction.
    fn fold_journal(&self) -> Result<()> {
        let Some(conn) = &self.conn else {
            return Err(Error::Closed);
        };
        let started = Instant::now();
        conn.execute_batch("BEGIN TRANSACTION")?;
        conn.prepare_cached("DELETE FROM _call_delta")?
            .execute([])?;
        // Prepared afresh each time: a cached prepared copy of this `INSERT … SELECT …
        // GROUP BY`, executed again, filled the scratch table with one row and a
        // garbled key (DuckDB 1.5.5).
        let calls = conn.execute(&summary::JOURNAL_TO_SCRATCH, [])?;
        if calls > 0 {
            conn.prepare_cached(&summary::MERGE_CALLS)?.execute([])?;
        }
        conn.execute_batch(rollup::JOURNAL_TO_SCRATCH)?;
        conn.execute_batch(rollup::UPSERT)?;
        conn.execute_batch("DELETE FROM call_journal; DELETE FROM count_journal;")?;
        conn.execute_batch("COMMIT")?;
        tracing::debug!(
            calls,
            fold_us = started.elapsed().as_micros(),
            "Folded the journal."
        );
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn commit_group(
        &mut self,
        group: &mut Vec<(
            PreparedBatch,
            oneshot::Sender<Result<AppendReceipt>>,
            Instant,
            OwnedSemaphorePermit,
        )>,
    ) {
        if group.is_empty() {
            return;
        }
        let started = Instant::now();
        let batches: Vec<&PreparedBatch> = group.iter().map(|(b, ..)| b).collect();
        let mut phases = Phases::default();
        let written = self.write(&batches, &mut phases);
        // Tried, committed or not: a commit that reported an error may be durable.
        let n = batches.iter().map(|b| b.ids.len()).sum();
        let ids = batches.iter().flat_map(|b| {
            let ts = b
                .batch
                .column_by_name("ts")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>());
            // `ts` is never null; without the column every id counts as stamped at
            // the batch's newest time, which only raises the floor.
            b.ids
                .iter()
                .enumerate()
                .map(move |(i, id)| (id, ts.map_or(b.max_ts, |t| t.value(i))))
        });
        self.recent.remember(ids, n, Timestamp::now().0);
        let spans = || batches.iter().filter_map(|b| b.spans.as_ref());
        self.recent_spans.remember(
            spans().flat_map(|s| s.ids.iter().zip(s.starts.iter().copied())),
            spans().map(|s| s.ids.len()).sum(),
            Timestamp::now().0,
        );
        match written {
            Ok((receipts, appended)) => {
                // Streams hear of the records once they are durable, and before their
                // senders do, so a sender that reads its own records back finds them.
                self.hub.publish(&appended);
                self.index.note(&appended);
                self.metrics.set_index_pending(self.index.pending_records());
                self.ready.store(true, Ordering::Relaxed);
                // A request holds records or spans, never both.
                let (mut rows, mut dups, mut spans, mut span_dups) = (0, 0, 0, 0);
                for ((b, ..), r) in group.iter().zip(&receipts) {
                    if b.spans.is_some() {
                        (spans, span_dups) = (spans + r.inserted, span_dups + r.duplicates);
                    } else {
                        (rows, dups) = (rows + r.inserted, dups + r.duplicates);
                    }
                }
                self.metrics.record_spans(spans, span_dups);
                self.metrics.record_commit(rows, dups, started.elapsed());
                tracing::debug!(
                    requests = group.len(),
                    rows,
                    duplicates = dups,
                    spans,
                    dedupe_us = phases.dedupe.as_micros(),
                    looked_up = phases.looked_up,
                    append_us = phases.append.as_micros(),
                    calls_us = phases.calls.as_micros(),
                    counts_us = phases.counts.as_micros(),
                    commit_us = phases.commit.as_micros(),
                    "Committed group."
                );
                for ((_, reply, enqueued, _permit), receipt) in group.drain(..).zip(receipts) {
                    self.metrics.record_ack_latency(enqueued.elapsed());
                    let _ = reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                if let Some(conn) = &self.conn {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                self.check_health();
                self.ready.store(false, Ordering::Relaxed);
                self.metrics.record_write_error();
                // A commit that reported an error may still have been durable; its
                // records' retries are then all duplicates and journal nothing. Folding
                // once more costs little and keeps reads from trusting `calls` alone.
                self.journal.pending.store(true, Ordering::Release);
                tracing::error!(error = %e, requests = group.len(), "Write failed; nothing in the group was acknowledged.");
                let msg = e.to_string();
                for (_, reply, _, _permit) in group.drain(..) {
                    let _ = reply.send(Err(Error::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Writes the group in one transaction; returns each request's receipt and the
    /// batches appended (numbered, as stored).
    fn write(
        &mut self,
        batches: &[&PreparedBatch],
        phases: &mut Phases,
    ) -> Result<(Vec<AppendReceipt>, Vec<RecordBatch>)> {
        let (min_ts, max_ts) = batches.iter().fold((i64::MAX, i64::MIN), |(lo, hi), b| {
            (lo.min(b.min_ts), hi.max(b.max_ts))
        });
        let mut clock = Instant::now();
        let mut lap = || {
            let now = Instant::now();
            let d = now - clock;
            clock = now;
            d
        };
        // The ids to look up in `logs`: none of a group newer than the recent ids'
        // floor unless their fingerprints are present, else every one.
        let covered = self.recent.covers(min_ts);
        let mut lookup = Vec::with_capacity(batches.len());
        for b in batches {
            lookup.extend(to_look_up(&self.recent, covered, &b.batch, &b.ids)?);
        }
        phases.looked_up = lookup.iter().map(RecordBatch::num_rows).sum();
        self.metrics.record_looked_up(phases.looked_up);
        let stored = if phases.looked_up == 0 {
            HashSet::new()
        } else {
            stored(self.connection()?, &LOGS, &lookup, (min_ts, max_ts))?
        };

        let mut seen: HashSet<Uuid> = HashSet::with_capacity(batches.iter().map(|b| b.len()).sum());
        let mut receipts = Vec::with_capacity(batches.len());
        let mut to_append: Vec<RecordBatch> = Vec::with_capacity(batches.len());
        let mut deltas: Vec<CallDelta> = Vec::new();
        let mut metrics = Vec::new();
        let mut counts = Counts::default();
        for b in batches {
            let keep: Vec<bool> = b
                .ids
                .iter()
                .map(|id| !stored.contains(id) && seen.insert(*id))
                .collect();
            let dropped = keep.iter().filter(|k| !**k).count();
            let mut calls = b.calls.clone();
            if dropped == 0 {
                to_append.push(b.batch.clone());
                counts.merge(&b.counts);
            } else {
                let mut batch_counts = b.counts.clone();
                for (((call, level), count), kept) in b.row_call.iter().zip(&b.row_count).zip(&keep)
                {
                    if !kept {
                        calls[*call as usize].levels[usize::from(*level - 1)] -= 1;
                        batch_counts[*count as usize].1 -= 1;
                    }
                }
                counts.merge(&batch_counts);
                let mask = BooleanArray::from(keep.clone());
                to_append.push(
                    filter_record_batch(&b.batch, &mask)
                        .map_err(|e| Error::Corrupt(e.to_string()))?,
                );
            }
            deltas.extend(
                calls
                    .into_iter()
                    .filter(|c| c.levels.iter().sum::<i64>() > 0),
            );
            metrics.extend(b.metrics.iter().filter(|m| keep[m.row as usize]));
            receipts.push(AppendReceipt {
                inserted: b.ids.len() - dropped,
                duplicates: dropped,
            });
        }
        let span_batches: Vec<(usize, &PreparedSpans)> = batches
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.spans.as_ref().map(|s| (i, s)))
            .collect();
        let mut spans_to_append = Vec::with_capacity(span_batches.len());
        if !span_batches.is_empty() {
            let stored = self.spans_stored(&span_batches)?;
            for (i, sb) in span_batches {
                let keep: Vec<bool> = sb
                    .ids
                    .iter()
                    .map(|id| !stored.contains(id) && seen.insert(*id))
                    .collect();
                let kept = keep.iter().filter(|k| **k).count();
                if kept > 0 {
                    deltas.extend(sb.calls.iter().cloned());
                }
                receipts[i].inserted += kept;
                receipts[i].duplicates += sb.ids.len() - kept;
                if kept == sb.ids.len() {
                    spans_to_append.push(sb.batch.clone());
                } else {
                    spans_to_append.push(
                        filter_record_batch(&sb.batch, &BooleanArray::from(keep))
                            .map_err(|e| Error::Corrupt(e.to_string()))?,
                    );
                }
            }
        }

        let mut appended = Vec::with_capacity(to_append.len());
        for rb in to_append.into_iter().filter(|b| b.num_rows() > 0) {
            appended.push(prepare::with_seq(&rb, self.last_seq + 1)?);
            self.last_seq += i64::try_from(rb.num_rows()).unwrap_or(i64::MAX);
        }
        phases.dedupe = lap();
        // Marked before the commit: once the group is answered, `Store::sync` must
        // fold it. A group that fails leaves the mark, which costs one empty fold.
        let journaled = !deltas.is_empty();
        if journaled {
            self.journal.pending.store(true, Ordering::Release);
        }
        let conn = self.connection()?;
        conn.execute_batch("BEGIN TRANSACTION")?;
        {
            let mut app = conn.appender("logs")?;
            for rb in &appended {
                app.append_record_batch(rb.clone())?;
            }
            app.flush()?;
        }
        if spans_to_append.iter().any(|b| b.num_rows() > 0) {
            let mut app = conn.appender("spans")?;
            for rb in spans_to_append {
                if rb.num_rows() > 0 {
                    app.append_record_batch(rb)?;
                }
            }
            app.flush()?;
        }
        if !metrics.is_empty() {
            timeline::write_metrics(conn, metrics.into_iter())?;
        }
        phases.append = lap();
        if journaled {
            let merged = merge_deltas(deltas);
            let mut app = conn.appender("call_journal")?;
            app.append_record_batch(summary::delta_batch(&merged)?)?;
            app.flush()?;
        }
        phases.calls = lap();
        counts.write(conn)?;
        phases.counts = lap();
        conn.execute_batch("COMMIT")?;
        phases.commit = lap();
        Ok((receipts, appended))
    }

    /// The ids of the groups' spans that `spans` already holds. As for records, a group
    /// newer than the remembered spans' floor looks up only the ids remembered.
    fn spans_stored(&mut self, batches: &[(usize, &PreparedSpans)]) -> Result<HashSet<Uuid>> {
        let (lo, hi) = batches
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), (_, b)| {
                (lo.min(b.min_ts), hi.max(b.max_ts))
            });
        if lo > hi {
            return Ok(HashSet::new());
        }
        let covered = self.recent_spans.covers(lo);
        let mut lookup = Vec::with_capacity(batches.len());
        for (_, b) in batches {
            lookup.extend(to_look_up(&self.recent_spans, covered, &b.batch, &b.ids)?);
        }
        if lookup.is_empty() {
            return Ok(HashSet::new());
        }
        stored(self.connection()?, &SPANS, &lookup, (lo, hi))
    }

    fn purge(&mut self, before_ns: i64) -> Result<u64> {
        self.connection()?;
        let conn = self.conn.as_mut().ok_or(Error::Closed)?;
        let result = (|| {
            let tx = conn.transaction()?;
            // `log_counts` keeps counting exactly what is stored: whole minutes before
            // the cut-off go, and the minute it cuts through loses what is deleted of it.
            let minute = rollup::minute_of(before_ns);
            tx.execute_batch("DELETE FROM _count_delta")?;
            tx.execute(
                "INSERT INTO _count_delta
                 SELECT tenant, ts // 60000000000, coalesce(agent_id, ''), event, level,
                        category, -count(*)
                 FROM logs WHERE ts < ? AND ts // 60000000000 >= ? GROUP BY ALL",
                duckdb::params![before_ns, minute],
            )?;
            tx.execute_batch(rollup::UPSERT)?;
            tx.execute("DELETE FROM log_counts WHERE minute < ? OR n = 0", [minute])?;
            tx.execute(
                &summary::purge_sql(),
                duckdb::params![before_ns, before_ns, before_ns],
            )?;
            let n = tx.execute("DELETE FROM logs WHERE ts < ?", [before_ns])?;
            tx.execute("DELETE FROM call_metrics WHERE ts < ?", [before_ns])?;
            tx.execute("DELETE FROM spans WHERE end_ns < ?", [before_ns])?;
            tx.execute("DELETE FROM search_blocks WHERE ts_hi < ?", [before_ns])?;
            tx.execute("DELETE FROM calls WHERE last_ts < ?", [before_ns])?;
            tx.execute(
                "DELETE FROM comments c WHERE NOT EXISTS \
                 (SELECT 1 FROM calls k WHERE k.tenant = c.tenant AND k.call_id = c.call_id)",
                [],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })();
        if result.is_err() {
            self.check_health();
        } else if let Some(conn) = &self.conn
            && let Err(e) = self.index.reload(conn)
        {
            tracing::warn!(error = %e, "Reading the text index's backlog failed.");
        }
        result
    }
}

/// Runs a future to completion on the current thread (the writer has no async runtime).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A table whose rows are de-duplicated by content id, and how its stored ids are
/// looked up: the column that bounds the look-up (a row and its retry share it, so a
/// group's window of that column is enough, and DuckDB's zone maps prune to the few
/// row groups written around that time) and the scratch table incoming ids go to.
struct Deduped {
    table: &'static str,
    ts: &'static str,
    clear: &'static str,
    incoming: &'static str,
    select: &'static str,
}

const LOGS: Deduped = Deduped {
    table: "logs",
    ts: "ts",
    clear: "DELETE FROM _incoming_ids",
    incoming: "_incoming_ids",
    select: "SELECT l.id::VARCHAR FROM logs l SEMI JOIN _incoming_ids i ON l.id = i.id \
             WHERE l.ts BETWEEN ? AND ?",
};

const SPANS: Deduped = Deduped {
    table: "spans",
    ts: "start_ns",
    clear: "DELETE FROM _incoming_span_ids",
    incoming: "_incoming_span_ids",
    select: "SELECT s.id::VARCHAR FROM spans s SEMI JOIN _incoming_span_ids i ON s.id = i.id \
             WHERE s.start_ns BETWEEN ? AND ?",
};

/// The ids of a prepared `batch` (`ids`, by row) that may be stored already, as a
/// one-column batch with the `id` field as prepared: every one, or when `covered`, only
/// those whose fingerprints `recent` holds; `None` when there are none.
fn to_look_up(
    recent: &RecentIds,
    covered: bool,
    batch: &RecordBatch,
    ids: &[Uuid],
) -> Result<Option<RecordBatch>> {
    let mask: Option<BooleanArray> =
        covered.then(|| ids.iter().map(|id| Some(recent.may_hold(id))).collect());
    if mask.as_ref().is_some_and(|m| m.true_count() == 0) {
        return Ok(None);
    }
    let column = batch
        .project(&[0])
        .map_err(|e| Error::Corrupt(e.to_string()))?;
    let column = match mask {
        Some(m) => filter_record_batch(&column, &m).map_err(|e| Error::Corrupt(e.to_string()))?,
        None => column,
    };
    Ok((column.num_rows() > 0).then_some(column))
}

/// The ids of `lookup` (one-column `id` batches) that `kind`'s table already holds,
/// within `(lo, hi)` of its bounding column.
fn stored(
    conn: &Connection,
    kind: &Deduped,
    lookup: &[RecordBatch],
    (lo, hi): (i64, i64),
) -> Result<HashSet<Uuid>> {
    conn.prepare_cached(kind.clear)?.execute([])?;
    {
        let mut app = conn.appender(kind.incoming)?;
        for ids in lookup {
            app.append_record_batch(ids.clone())?;
        }
        app.flush()?;
    }
    let mut stmt = conn.prepare_cached(kind.select)?;
    let rows = stmt.query_map([lo, hi], |r| r.get::<_, String>(0))?;
    let mut out = HashSet::new();
    for row in rows {
        out.insert(parse_id(&row?)?);
    }
    Ok(out)
}

fn merge_deltas(deltas: Vec<CallDelta>) -> Vec<CallDelta> {
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut out: Vec<CallDelta> = Vec::with_capacity(deltas.len());
    for d in deltas {
        match index.get(&d.key) {
            Some(&i) => out[i].merge(&d),
            None => {
                index.insert(d.key.clone(), out.len());
                out.push(d);
            }
        }
    }
    out
}
