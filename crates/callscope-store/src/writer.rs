//! The writer: one thread owns the write connection and applies to DuckDB the units the
//! acceptor has already acknowledged (`accept.rs`, `acklog.rs`), as many as are waiting
//! in one transaction, recording in it the last unit applied. It also runs every other
//! write (purges, comments and keys) in the order they were sent, folds the summaries'
//! journal, and builds the text index between transactions.
//!
//! # The journal
//!
//! A unit appends its records to `logs`, and its per-call deltas and counts to
//! `call_journal` and `count_journal`: three appends, no update. Folding the journal
//! into `calls` and `log_counts` (a `MERGE` and an upsert, both through ART indexes)
//! cost more than the rest of the group together, so it happens once per
//! [`FOLD_EVERY`] for every unit since, not once per unit. Between folds the journal
//! is part of the committed state:
//! - the API's reads never wait for the fold: they read the views `calls_live` and
//!   `log_counts_live`, which add the journal to the tables, and one call's window
//!   reads the journal beside `calls`. [`crate::Store::read`], which lends a connection
//!   for any SQL, asks for a fold first and waits for it ([`Journal::request`]; the
//!   writer folds between two transactions, ahead of the queue);
//! - a crash leaves the deltas in the journal, committed with their records, and the
//!   next open folds them before anything else;
//! - a purge and a shutdown fold first.
//!
//! # Failures
//!
//! A unit that cannot be applied stays in the backlog (it is durable in the ack log)
//! and is tried again every [`REOPEN_INTERVAL`]; meanwhile `/readyz` is red, reads that
//! would need it answer `Unavailable`, and once the backlog is full appends are refused.
//! When DuckDB has invalidated the database instance (it does when a checkpoint fails,
//! e.g. on a full disk), the writer closes the instance and reopens the file, at most
//! once per [`REOPEN_INTERVAL`].

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use duckdb::{Connection, arrow::record_batch::RecordBatch};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use crate::{
    AckAfter, AppendReceipt, Error, Readers, Result, StoreConfig,
    accept::{Acks, Reply},
    acklog::Unit,
    live::Hub,
    metrics::StoreMetrics,
    open_connection,
    prepare::PreparedBatch,
    rollup, summary,
    textindex::TextIndex,
    timeline,
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

    /// A unit that adds call deltas was acknowledged: the next `Store::sync` folds.
    pub(crate) fn mark_pending(&self) {
        self.pending.store(true, Ordering::Release);
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
    /// The acceptor's look-up connection, replaced with the rest.
    pub(crate) lookup: Arc<Mutex<Option<Connection>>>,
    /// The text index's bitmaps, which searches test and the index keeps.
    pub(crate) bitmaps: Arc<crate::textindex::Bitmaps>,
}

/// A write other than records: given the writer's connection (or why there is none), it
/// runs, answers its caller, and says whether it failed.
pub(crate) type WriteJob = Box<dyn FnOnce(Result<&Connection>) -> Result<()> + Send>;

pub(crate) enum Command {
    /// An append request, for the acceptor.
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
    /// An acknowledged unit, for the writer; the permit holds its room in the backlog.
    Apply {
        unit: Box<Unit>,
        /// With `ack_after = "commit"`, the requests to answer once it is committed.
        replies: Vec<Reply>,
        _permit: OwnedSemaphorePermit,
    },
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
    /// Units not applied yet, oldest first, with the requests waiting for them.
    backlog: VecDeque<(Box<Unit>, Vec<Reply>, OwnedSemaphorePermit)>,
    /// With `ack_after = "commit"`, where committed records go to live streams.
    hub: Option<Arc<Hub>>,
    /// After a failed apply, none is tried before this.
    apply_paused_until: Option<Instant>,
    acks: Arc<Acks>,
    /// The text index's pending work (see `textindex.rs`).
    index: TextIndex,
    /// After a failed index step, none is tried before this.
    index_paused_until: Option<Instant>,
    /// Is the database a DuckLake shared with other instances (`lake.rs`)?
    lake: bool,
    /// How often the journal is folded when no read asks for it: [`FOLD_EVERY`], or
    /// [`crate::lake::FOLD_EVERY`] on a lake, where a fold conflicts with every other
    /// instance's commits.
    fold_every: Duration,
}

/// A connection for the acceptor's duplicate look-ups, with its scratch tables.
pub(crate) fn lookup_connection(conn: &Connection) -> Result<Connection> {
    let lookup = crate::clone_connection(conn)?;
    lookup.execute_batch(&scratch_ddl())?;
    Ok(lookup)
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
        acks: Arc<Acks>,
        hub: Arc<Hub>,
    ) -> Result<Self> {
        conn.execute_batch(&scratch_ddl())?;
        let left: i64 = conn.query_row(
            "SELECT (SELECT count(*) FROM call_journal) + (SELECT count(*) FROM count_journal)",
            [],
            |r| r.get(0),
        )?;
        let index = TextIndex::open(
            &conn,
            reopen.config.text_index_block_records,
            reopen.bitmaps.clone(),
        )?;
        metrics.set_index_state(index.pending_records(), index.memory_bytes());
        let lake = reopen.config.backend == crate::Backend::Ducklake;
        // On a lake the streams hear every instance's commits from the lake's feed
        // (`lake::spawn_feed`), this one's included.
        let hub = (reopen.config.ack_after == AckAfter::Commit && !lake).then_some(hub);
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
            backlog: VecDeque::new(),
            hub,
            apply_paused_until: None,
            acks,
            index,
            index_paused_until: None,
            lake,
            fold_every: if lake {
                crate::lake::FOLD_EVERY
            } else {
                FOLD_EVERY
            },
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
        *self.reopen.lookup.lock() = None;
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
            let lookup = lookup_connection(&conn)?;
            Ok((conn, pool, lookup))
        });
        match opened {
            Ok((conn, pool, lookup)) => {
                *readers.pool.lock() = pool;
                *self.reopen.lookup.lock() = Some(lookup);
                self.conn = Some(conn);
                self.closed = None;
                // The last group may have committed before the instance failed.
                self.journal.pending.store(true, Ordering::Release);
                // Its records too: the index counts what waits from the file again.
                self.reload_index();
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
        loop {
            let received = if !self.backlog.is_empty() {
                // Only after a failed apply: it is tried again when the pause ends.
                let wait = self.apply_paused_until.map_or(Duration::ZERO, |t| {
                    t.saturating_duration_since(Instant::now())
                });
                self.rx.recv_timeout(wait)
            } else if self.index_due() {
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
                    .recv_timeout(self.fold_every.saturating_sub(self.last_fold.elapsed()))
            } else {
                self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            let first = match received {
                Ok(cmd) => cmd,
                Err(RecvTimeoutError::Timeout) => {
                    self.apply_backlog();
                    if self.backlog.is_empty() && self.journal.is_pending() {
                        self.fold_if_due();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut rows = 0usize;
            let mut next = Some(first);
            // Gather the units already waiting, up to the group limit; any other
            // command runs after the units before it.
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Apply {
                        unit,
                        replies,
                        _permit,
                    } => {
                        rows += unit.records();
                        self.backlog.push_back((unit, replies, _permit));
                        if rows < self.max_group_rows {
                            next = self.rx.try_recv().ok();
                        }
                    }
                    Command::Append { reply, .. } => {
                        // Appends go to the acceptor; one sent here has no log entry.
                        let _ = reply.send(Err(Error::Unavailable(
                            "an append reached the writer directly".into(),
                        )));
                    }
                    other => {
                        self.apply_backlog();
                        match other {
                            Command::Purge { before_ns, reply } => {
                                // The purge corrects `calls`, so it must hold everything.
                                self.fold();
                                let result = if self.journal.is_pending()
                                    || !self.backlog.is_empty()
                                {
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
                                // One more try, paused or not: what stays in the backlog
                                // is applied from the ack log at the next open.
                                self.apply_paused_until = None;
                                self.apply_backlog();
                                // On a lake there is no log to keep them: tries go on
                                // while other instances' commits win, for a while.
                                let until = Instant::now() + Duration::from_secs(20);
                                while self.lake
                                    && !self.backlog.is_empty()
                                    && Instant::now() < until
                                {
                                    std::thread::sleep(Duration::from_millis(50));
                                    self.apply_paused_until = None;
                                    self.apply_backlog();
                                }
                                self.fold();
                                let result = if self.lake {
                                    // Everything is committed to the lake; DuckLake's
                                    // CHECKPOINT is its whole maintenance, which the
                                    // lease holder runs on its schedule (here it would
                                    // race the other instances).
                                    if self.backlog.is_empty() {
                                        Ok(())
                                    } else {
                                        Err(Error::Unavailable(
                                            "records not yet committed to the lake were refused"
                                                .into(),
                                        ))
                                    }
                                } else if self.backlog.is_empty() {
                                    // A closed database has nothing to checkpoint: what
                                    // was committed is in the file and its WAL.
                                    self.conn.as_ref().map_or(Ok(()), |c| {
                                        c.execute_batch("CHECKPOINT").map_err(Error::from)
                                    })
                                } else {
                                    Err(Error::Unavailable(
                                        "acknowledged records wait in the ack log for the next start".into(),
                                    ))
                                };
                                let _ = reply.send(result);
                                return;
                            }
                            Command::Apply { .. } | Command::Append { .. } => {
                                unreachable!("handled above")
                            }
                        }
                    }
                }
            }
            self.apply_backlog();
            self.fold_if_due();
            if self.index_due() {
                self.index_step();
            }
        }
    }

    /// Applies the backlog in one transaction, unless a failure paused applying. On
    /// success the readers waiting for it go on, and the acceptor may delete its log.
    fn apply_backlog(&mut self) {
        if self.backlog.is_empty() || self.apply_paused_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let started = Instant::now();
        let retry = self.apply_paused_until.is_some();
        if self.lake {
            return self.apply_backlog_to_lake(started);
        }
        let result = self.connection().map(|_| ()).and_then(|()| {
            let conn = self.conn.as_ref().ok_or(Error::Closed)?;
            if retry {
                // A commit that reported an error may still have been durable: what it
                // applied is not applied again.
                let applied = applied_unit(conn)?;
                while self.backlog.front().is_some_and(|(u, ..)| u.no <= applied) {
                    self.backlog.pop_front();
                }
            }
            let units: Vec<&Unit> = self.backlog.iter().map(|(u, ..)| &**u).collect();
            apply_units(conn, &units)
        });
        match result {
            Ok(()) => {
                let Some(last) = self.backlog.back().map(|(u, ..)| u.no) else {
                    // The failed commit had been durable after all.
                    self.apply_paused_until = None;
                    self.ready.store(true, Ordering::Relaxed);
                    let applied = self.conn.as_ref().map(applied_unit);
                    if let Some(Ok(applied)) = applied {
                        self.acks.set_applied(applied);
                    }
                    return;
                };
                let logs: Vec<RecordBatch> = self
                    .backlog
                    .iter()
                    .flat_map(|(u, ..)| u.logs().cloned())
                    .collect();
                let records: usize = self.backlog.iter().map(|(u, ..)| u.records()).sum();
                self.index.note(&logs);
                self.metrics
                    .set_index_state(self.index.pending_records(), self.index.memory_bytes());
                self.applied_through(last, started, records, "Applied acknowledged units.");
                if let Some(hub) = &self.hub {
                    // Streams hear of the records once they are committed, and before
                    // their senders do.
                    hub.publish(&logs);
                }
                for (_, replies, _permit) in self.backlog.drain(..) {
                    for r in replies {
                        self.metrics.record_ack_latency(r.enqueued.elapsed());
                        let _ = r.to.send(Ok(r.receipt));
                    }
                }
            }
            Err(e) => {
                if let Some(conn) = &self.conn {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                self.apply_failed(
                    &e,
                    "Write failed: applying acknowledged records to the database; they wait in the ack log and are tried again.",
                );
            }
        }
    }

    /// After a failed apply: not ready, nothing more accepted, the units kept for the
    /// next try after a pause. With `ack_after = "commit"` the waiting senders hear now
    /// that nothing of theirs was acknowledged (the units stay, and are tried again: a
    /// retry of theirs is dropped as a duplicate of a unit still waiting).
    fn apply_failed(&mut self, e: &Error, what: &'static str) {
        self.check_health();
        self.ready.store(false, Ordering::Relaxed);
        self.acks.set_failing();
        self.metrics.record_write_error();
        self.apply_paused_until = Some(Instant::now() + REOPEN_INTERVAL);
        self.refuse_waiting(&e.to_string());
        // As for a fold: a failed commit may have been durable.
        self.journal.pending.store(true, Ordering::Release);
        tracing::error!(error = %e, units = self.backlog.len(), "{what}");
    }

    /// Answers every request still waiting on the backlog's units with a retryable
    /// refusal; the units stay.
    fn refuse_waiting(&mut self, msg: &str) {
        for (_, replies, _) in &mut self.backlog {
            for r in replies.drain(..) {
                let _ = r.to.send(Err(Error::Unavailable(msg.to_owned())));
            }
        }
    }

    /// After a commit of units up to `last`: reads waiting for them go on, the
    /// acceptor may take the next group, and the store is ready again.
    fn applied_through(&mut self, last: u64, started: Instant, records: usize, what: &'static str) {
        self.apply_paused_until = None;
        self.acks.set_applied(last);
        self.acks.set_acked(last);
        self.ready.store(true, Ordering::Relaxed);
        self.metrics.record_apply(started.elapsed());
        tracing::debug!(
            records,
            unit = last,
            apply_us = started.elapsed().as_micros(),
            "{what}"
        );
    }

    /// [`Writer::apply_backlog`] on the DuckLake backend (`lake.rs`): one lake
    /// transaction, retried while it loses conflicts to other instances. A unit some of
    /// whose rows the lake already holds is dropped whole and its senders hear a
    /// retryable error (their retry stores the rest once).
    fn apply_backlog_to_lake(&mut self, started: Instant) {
        let result = self.connection().map(|_| ()).and_then(|()| {
            let conn = self.conn.as_ref().ok_or(Error::Closed)?;
            let units: Vec<&Unit> = self.backlog.iter().map(|(u, ..)| &**u).collect();
            crate::lake::apply(conn, &units)
        });
        let applied = match result {
            Ok(applied) => applied,
            Err(e) if e.is_conflict() => {
                // Other instances kept winning: contention, not a failure. The senders
                // hear a retryable refusal now; the units stay and are tried again at
                // once, and nothing else is refused meanwhile.
                self.refuse_waiting(&e.to_string());
                tracing::warn!(
                    units = self.backlog.len(),
                    "Commits of other instances kept winning; trying again."
                );
                return;
            }
            Err(e) => {
                self.apply_failed(&e, "Write failed: committing to the lake; tried again.");
                return;
            }
        };
        let Some(last) = self.backlog.back().map(|(u, ..)| u.no) else {
            return;
        };
        let mut records = 0;
        for ((unit, replies, _permit), kept) in self.backlog.drain(..).zip(applied) {
            if kept {
                records += unit.records();
                for r in replies {
                    self.metrics.record_ack_latency(r.enqueued.elapsed());
                    let _ = r.to.send(Ok(r.receipt));
                }
            } else {
                tracing::info!(
                    unit = unit.no,
                    "Dropped a unit another commit stored part of; its senders retry."
                );
                for r in replies {
                    let _ = r.to.send(Err(Error::Unavailable(
                        "part of the request was stored meanwhile; retry it".into(),
                    )));
                }
            }
        }
        // Live streams hear of these from the lake's feed (`lake::spawn_feed`).
        self.journal.pending.store(true, Ordering::Release);
        self.applied_through(last, started, records, "Committed units to the lake.");
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
        self.metrics
            .set_index_state(self.index.pending_records(), self.index.memory_bytes());
    }

    /// Folds the journal if a read is waiting for it or it has waited [`FOLD_EVERY`].
    fn fold_if_due(&mut self) {
        if !self.journal.waiters.lock().is_empty()
            || (self.journal.is_pending() && self.last_fold.elapsed() >= self.fold_every)
        {
            self.fold();
        }
    }

    /// Folds the journal and answers the reads waiting for it.
    fn fold(&mut self) {
        self.last_fold = Instant::now();
        if !self.backlog.is_empty() {
            // The summaries cannot be whole while acknowledged units wait.
            let waiters = std::mem::take(&mut *self.journal.waiters.lock());
            for w in waiters {
                let _ = w.send(Err(Error::Unavailable(
                    "acknowledged records are not applied yet".into(),
                )));
            }
            return;
        }
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
            Err(e) if e.is_conflict() => {
                // On a lake another instance's fold or a commit won: the journal stays
                // pending (reads add it meanwhile) and the next turn folds it.
                tracing::debug!(error = %e, "Fold lost a conflict; folded at the next turn.");
                Err(e.to_string())
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
        if self.lake {
            // A few tries only: a fold must not hold ingest up while commits of other
            // instances keep winning; the next turn tries again.
            return crate::lake::retry_conflicts_upto(3, || {
                let folded = fold_once(conn, true);
                if folded.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                folded
            })
            .map(|calls| {
                tracing::debug!(
                    calls,
                    fold_us = started.elapsed().as_micros(),
                    "Folded the journal."
                );
            });
        }
        let calls = fold_once(conn, false)?;
        tracing::debug!(
            calls,
            fold_us = started.elapsed().as_micros(),
            "Folded the journal."
        );
        Ok(())
    }

    fn purge(&mut self, before_ns: i64) -> Result<u64> {
        if self.lake {
            self.connection()?;
            let conn = self.conn.as_ref().ok_or(Error::Closed)?;
            return crate::lake::retry_conflicts(|| {
                conn.execute_batch("BEGIN TRANSACTION")?;
                let n = crate::lake::touch_fold_fence(conn)
                    .and_then(|()| purge_in(conn, before_ns, true));
                let n = n.and_then(|n| {
                    conn.execute_batch("COMMIT")?;
                    Ok(n)
                });
                if n.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                n
            });
        }
        self.connection()?;
        let conn = self.conn.as_mut().ok_or(Error::Closed)?;
        let result = (|| {
            let tx = conn.transaction()?;
            let n = purge_in(&tx, before_ns, false)?;
            tx.commit()?;
            Ok(n)
        })();
        if result.is_err() {
            self.check_health();
        } else {
            self.reload_index();
        }
        result
    }

    /// Reads the text index's state from the file again (its backlog and its blocks),
    /// after a purge or a reopen changed what the file holds.
    fn reload_index(&mut self) {
        let Some(conn) = &self.conn else { return };
        if let Err(e) = self.index.reload(conn) {
            tracing::warn!(error = %e, "Reading the text index's backlog failed.");
        }
        self.metrics
            .set_index_state(self.index.pending_records(), self.index.memory_bytes());
    }
}

/// Retention's deletes, in the caller's transaction (see [`Writer::purge`]).
fn purge_in(conn: &Connection, before_ns: i64, lake: bool) -> Result<u64> {
    // `log_counts` keeps counting exactly what is stored: whole minutes before
    // the cut-off go, and the minute it cuts through loses what is deleted of it.
    let minute = rollup::minute_of(before_ns);
    conn.execute_batch("DELETE FROM _count_delta")?;
    conn.execute(
        "INSERT INTO _count_delta
             SELECT tenant, ts // 60000000000, coalesce(agent_id, ''), event, level,
                    category, -count(*)
             FROM logs WHERE ts < ? AND ts // 60000000000 >= ? GROUP BY ALL",
        duckdb::params![before_ns, minute],
    )?;
    conn.execute_batch(if lake { rollup::MERGE } else { rollup::UPSERT })?;
    conn.execute("DELETE FROM log_counts WHERE minute < ? OR n = 0", [minute])?;
    conn.execute(
        &summary::purge_sql(),
        duckdb::params![before_ns, before_ns, before_ns],
    )?;
    let n = conn.execute("DELETE FROM logs WHERE ts < ?", [before_ns])?;
    conn.execute("DELETE FROM call_metrics WHERE ts < ?", [before_ns])?;
    conn.execute("DELETE FROM spans WHERE end_ns < ?", [before_ns])?;
    conn.execute("DELETE FROM search_blocks WHERE ts_hi < ?", [before_ns])?;
    conn.execute("DELETE FROM calls WHERE last_ts < ?", [before_ns])?;
    conn.execute(
        "DELETE FROM comments c WHERE NOT EXISTS \
             (SELECT 1 FROM calls k WHERE k.tenant = c.tenant AND k.call_id = c.call_id)",
        [],
    )?;
    Ok(n as u64)
}

/// Folds the journal in one transaction (see [`Writer::fold_journal`]); the number of
/// calls folded.
fn fold_once(conn: &Connection, lake: bool) -> Result<usize> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    // Prepared afresh each time: a cached prepared copy of this `INSERT … SELECT …
    // GROUP BY`, executed again, filled the scratch table with one row and a garbled
    // key (DuckDB 1.5.5).
    if lake {
        crate::lake::touch_fold_fence(conn)?;
    }
    conn.prepare_cached("DELETE FROM _call_delta")?
        .execute([])?;
    let calls = conn.execute(&summary::JOURNAL_TO_SCRATCH, [])?;
    if calls > 0 {
        conn.prepare_cached(&summary::MERGE_CALLS)?.execute([])?;
    }
    conn.execute_batch(rollup::JOURNAL_TO_SCRATCH)?;
    conn.execute_batch(if lake { rollup::MERGE } else { rollup::UPSERT })?;
    conn.execute_batch("DELETE FROM call_journal; DELETE FROM count_journal;")?;
    conn.execute_batch("COMMIT")?;
    Ok(calls)
}

/// Runs a future to completion on the current thread (the writer has no async runtime).
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
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

/// The last unit applied, as the file records it.
pub(crate) fn applied_unit(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row("SELECT coalesce(max(applied), 0) FROM ack_log", [], |r| {
        r.get(0)
    })?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Appends `units` to their tables in one transaction, with the last one's number as
/// the last unit applied.
pub(crate) fn apply_units(conn: &Connection, units: &[&Unit]) -> Result<()> {
    use crate::acklog::Table;
    let Some(last) = units.last() else {
        return Ok(());
    };
    conn.execute_batch("BEGIN TRANSACTION")?;
    for table in Table::ALL {
        let mut batches = units
            .iter()
            .flat_map(|u| u.parts.iter())
            .filter(|(t, _)| *t == table)
            .peekable();
        if batches.peek().is_none() {
            continue;
        }
        let mut app = conn.appender(table.name())?;
        for (_, batch) in batches {
            app.append_record_batch(batch.clone())?;
        }
        app.flush()?;
    }
    conn.prepare_cached("UPDATE ack_log SET applied = ?")?
        .execute([i64::try_from(last.no).unwrap_or(i64::MAX)])?;
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// Applies what the ack log holds past the last unit applied, before the store serves:
/// in transactions of at most `group` records.
pub(crate) fn replay(conn: &Connection, units: &[Unit], group: usize) -> Result<()> {
    if units.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut chunk: Vec<&Unit> = Vec::new();
    let mut rows = 0;
    let mut total = 0;
    for unit in units {
        rows += unit.records();
        total += unit.records();
        chunk.push(unit);
        if rows >= group {
            apply_units(conn, &chunk).inspect_err(|_| {
                let _ = conn.execute_batch("ROLLBACK");
            })?;
            chunk.clear();
            rows = 0;
        }
    }
    apply_units(conn, &chunk).inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })?;
    tracing::info!(
        units = units.len(),
        records = total,
        ms = started.elapsed().as_millis(),
        "Applied the acknowledged records the ack log held."
    );
    Ok(())
}
