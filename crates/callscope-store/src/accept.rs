//! The acceptor: the thread between `Store::append` and the writer. It gathers whatever
//! append requests are waiting (group commit), drops records already stored or already
//! accepted, numbers the rest (`seq`) and turns the group into a unit for the writer,
//! which applies units to DuckDB. When the senders hear depends on
//! [`crate::StoreConfig::ack_after`]:
//!
//! - `Commit`: the writer answers them once the unit's transaction has committed, and
//!   the acceptor waits for that before it takes the next group (so the requests that
//!   arrive meanwhile share one transaction). Reads never wait.
//! - `Log`: the acceptor writes the unit to the ack log (`acklog.rs`), fsyncs it, tells
//!   live streams and answers them, then hands the unit over. A DuckDB commit held up by
//!   a checkpoint holds up the writer, never an acknowledgement. Reads see what is
//!   acknowledged and not yet applied by waiting for it ([`Acks::barrier`]): for the units
//!   that hold rows of the call or tenant they read.
//!
//! The writer's backlog is bounded ([`crate::StoreConfig::queue_records`] records); when
//! it is full the acceptor waits, the write queue fills and appends are refused with
//! [`Error::Overloaded`].
//!
//! Every other command (purges, comments and keys, folds, shutdown) passes through in
//! order, so the writer runs it after the groups acknowledged before it.
//!
//! # Duplicates
//!
//! Retries are dropped by id, against three sets: the ids of this group, the ids of the
//! units acknowledged and not yet applied ([`Pending`]), and `logs` (`spans`), looked up
//! only for ids [`RecentIds`] may hold when the group is newer than its floor (see
//! `recent.rs`).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use uuid::Uuid;

use crate::{
    AckAfter, AppendReceipt, Error, Result,
    acklog::{self, AckLog, Table, Unit},
    live::Hub,
    metrics::StoreMetrics,
    prepare::{self, PreparedBatch},
    query::parse_id,
    recent::{self, RecentIds},
    rollup::Counts,
    summary::{self, CallDelta},
    timeline::PreparedSpans,
    writer::{Command, Journal, block_on},
};

/// How long a read waits for the writer to apply what was acknowledged before it
/// began, before it answers [`Error::Unavailable`].
pub(crate) const BARRIER_WAIT: Duration = Duration::from_secs(10);

/// What the acceptor, the writer and the readers share about acknowledged units.
pub(crate) struct Acks {
    /// The last unit acknowledged (set before its senders hear): what reads wait for.
    acked: AtomicU64,
    /// The last unit applied to DuckDB, and whether applying is failing now.
    applied: watch::Sender<(u64, bool)>,
    /// Did the last ack log write succeed?
    log_ok: AtomicBool,
    /// With the ack log: per tenant and per call, the last unit acknowledged that holds
    /// their rows and may not be applied yet, so a read of one call waits only for it.
    scopes: Mutex<Scopes>,
}

#[derive(Default)]
struct Scopes {
    tenants: HashMap<String, u64>,
    /// By [`summary::call_key`].
    calls: HashMap<String, u64>,
}

/// What a read covers, and so which acknowledged units it must wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// Anything: every unit acknowledged.
    All,
    /// One tenant's calls and records.
    Tenant(&'a str),
    /// One call of a tenant.
    Call(&'a str, &'a str),
    /// Nothing units write (API keys).
    Unwritten,
}

impl<'a> Scope<'a> {
    /// One call of `tenant`, or the whole tenant.
    pub(crate) fn of(tenant: &'a str, call_id: Option<&'a str>) -> Self {
        call_id.map_or(Scope::Tenant(tenant), |c| Scope::Call(tenant, c))
    }
}

impl Acks {
    pub(crate) fn new(applied: u64) -> Self {
        Self {
            acked: AtomicU64::new(applied),
            applied: watch::Sender::new((applied, false)),
            log_ok: AtomicBool::new(true),
            scopes: Mutex::new(Scopes::default()),
        }
    }

    /// Unit `no`, about to be acknowledged, holds rows of `calls` (tenant, call key).
    fn note_scopes(&self, no: u64, calls: &[(String, String)]) {
        let mut scopes = self.scopes.lock();
        for (tenant, key) in calls {
            if let Some(n) = scopes.tenants.get_mut(tenant.as_str()) {
                *n = no;
            } else {
                scopes.tenants.insert(tenant.clone(), no);
            }
            scopes.calls.insert(key.clone(), no);
        }
    }

    /// Forgets the scopes whose units are all applied.
    fn prune_scopes(&self, applied: u64) {
        let mut scopes = self.scopes.lock();
        scopes.tenants.retain(|_, n| *n > applied);
        scopes.calls.retain(|_, n| *n > applied);
    }

    pub(crate) fn applied(&self) -> u64 {
        self.applied.borrow().0
    }

    /// Is the writer failing to apply what was acknowledged?
    pub(crate) fn failing(&self) -> bool {
        self.applied.borrow().1
    }

    /// Units up to `no` are acknowledged.
    pub(crate) fn set_acked(&self, no: u64) {
        self.acked.fetch_max(no, Ordering::Release);
    }

    /// The writer applied every unit up to `no`.
    pub(crate) fn set_applied(&self, no: u64) {
        self.applied.send_replace((no, false));
    }

    /// The writer failed to apply its backlog (reads waiting for it give up now).
    pub(crate) fn set_failing(&self) {
        self.applied.send_modify(|(_, failing)| *failing = true);
    }

    pub(crate) fn log_ok(&self) -> bool {
        self.log_ok.load(Ordering::Relaxed)
    }

    /// Waits until every unit acknowledged so far that `scope` covers is applied, so a
    /// read that starts after an acknowledgement sees its records.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the writer is failing to apply them, or has not
    /// within [`BARRIER_WAIT`].
    pub(crate) async fn barrier(&self, scope: Scope<'_>) -> Result<()> {
        let target = match scope {
            Scope::All => self.acked.load(Ordering::Acquire),
            Scope::Unwritten => return Ok(()),
            Scope::Tenant(t) => self.scopes.lock().tenants.get(t).copied().unwrap_or(0),
            Scope::Call(t, c) => self
                .scopes
                .lock()
                .calls
                .get(&summary::call_key(t, c))
                .copied()
                .unwrap_or(0),
        };
        let mut rx = self.applied.subscribe();
        if rx.borrow().0 >= target {
            return Ok(());
        }
        let waited = tokio::time::timeout(
            BARRIER_WAIT,
            rx.wait_for(|(applied, failing)| *applied >= target || *failing),
        )
        .await;
        match waited {
            Ok(Ok(state)) if state.0 >= target => Ok(()),
            _ => Err(Error::Unavailable(
                "acknowledged records are not readable yet: storage is catching up".into(),
            )),
        }
    }
}

/// The ids of units acknowledged and not yet applied: a retry of one of them is a
/// duplicate that `logs` does not show yet.
#[derive(Default)]
struct Pending {
    units: VecDeque<(u64, Vec<Uuid>)>,
    ids: HashSet<Uuid>,
}

impl Pending {
    fn add(&mut self, no: u64, ids: Vec<Uuid>) {
        self.ids.extend(ids.iter().copied());
        self.units.push_back((no, ids));
    }

    /// Forgets the units up to `applied`, which `logs` now holds.
    fn drain(&mut self, applied: u64) {
        while self.units.front().is_some_and(|(no, _)| *no <= applied) {
            if let Some((_, ids)) = self.units.pop_front() {
                for id in ids {
                    self.ids.remove(&id);
                }
            }
        }
    }
}

/// An append request waiting in the group.
type Waiting = (
    PreparedBatch,
    oneshot::Sender<Result<AppendReceipt>>,
    Instant,
    OwnedSemaphorePermit,
);

/// A request accepted and not yet answered (with `ack_after = "commit"`, the writer
/// answers it once its unit is committed): its receipt, when it was queued, and its room
/// in the write queue, held until then.
pub(crate) struct Reply {
    pub(crate) to: oneshot::Sender<Result<AppendReceipt>>,
    pub(crate) receipt: AppendReceipt,
    pub(crate) enqueued: Instant,
    pub(crate) _permit: OwnedSemaphorePermit,
}

pub(crate) struct Acceptor {
    /// Acknowledge after the ack log (`Log`), or leave it to the writer (`Commit`).
    mode: AckAfter,
    pub(crate) rx: mpsc::Receiver<Command>,
    pub(crate) writer: mpsc::Sender<Command>,
    pub(crate) log: AckLog,
    /// A connection for duplicate look-ups, replaced by the writer when it reopens
    /// the database (`None` while it is closed).
    pub(crate) lookup: Arc<Mutex<Option<Connection>>>,
    pub(crate) recent: RecentIds,
    /// The same for `spans`, by start time: a span's id is its trace and span ids, and
    /// a retried span keeps its start time.
    pub(crate) recent_spans: RecentIds,
    /// The last commit sequence number given to a record (`logs.seq`). Numbers are
    /// never reused, even by a group that failed.
    pub(crate) last_seq: i64,
    /// The last unit number given.
    pub(crate) last_unit: u64,
    pending: Pending,
    pub(crate) acks: Arc<Acks>,
    /// The writer's backlog, in records.
    pub(crate) backlog: Arc<Semaphore>,
    pub(crate) backlog_records: usize,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: Arc<StoreMetrics>,
    pub(crate) journal: Arc<Journal>,
    pub(crate) max_group_rows: usize,
    /// On a lake other instances store records too: what this one remembers says
    /// nothing of theirs, so every group is looked up.
    lake: bool,
}

impl Acceptor {
    // Each argument is a handle `Store::open` shares with the acceptor.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mode: AckAfter,
        rx: mpsc::Receiver<Command>,
        writer: mpsc::Sender<Command>,
        log: AckLog,
        lookup: Arc<Mutex<Option<Connection>>>,
        conn: &Connection,
        last_unit: u64,
        acks: Arc<Acks>,
        backlog_records: usize,
        hub: Arc<Hub>,
        metrics: Arc<StoreMetrics>,
        journal: Arc<Journal>,
        max_group_rows: usize,
    ) -> Result<Self> {
        let last_seq: i64 =
            conn.query_row("SELECT coalesce(max(seq), 0) FROM logs", [], |r| r.get(0))?;
        let (newest, ahead) = stored_times(conn, &LOGS)?;
        let (newest_span, ahead_spans) = stored_times(conn, &SPANS)?;
        Ok(Self {
            mode,
            rx,
            writer,
            log,
            lookup,
            recent: RecentIds::new(newest, &ahead, recent::GENERATION),
            recent_spans: RecentIds::new(newest_span, &ahead_spans, recent::SPAN_GENERATION),
            last_seq,
            last_unit,
            pending: Pending::default(),
            acks,
            backlog: Arc::new(Semaphore::new(backlog_records)),
            backlog_records,
            hub,
            metrics,
            journal,
            max_group_rows,
            lake: crate::lake::is_lake(conn)?,
        })
    }

    /// Runs until a shutdown command arrives or every sender is gone.
    pub(crate) fn run(mut self) {
        let mut group: Vec<Waiting> = Vec::new();
        while let Ok(first) = self.rx.recv() {
            let mut rows = 0usize;
            let mut next = Some(first);
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
                    Command::Shutdown { reply } => {
                        self.accept_group(&mut group);
                        let result = self.shut_down();
                        let _ = reply.send(result);
                        return;
                    }
                    other => {
                        // A purge, a write or a fold runs after the groups before it.
                        self.accept_group(&mut group);
                        if self.writer.send(other).is_err() {
                            return;
                        }
                    }
                }
            }
            self.accept_group(&mut group);
        }
    }

    /// Hands the writer the shutdown, waits for it to apply and checkpoint everything,
    /// then deletes the log.
    fn shut_down(&mut self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self.writer.send(Command::Shutdown { reply }).is_err() {
            return Err(Error::Closed);
        }
        let result = block_on(rx).unwrap_or(Err(Error::Closed));
        if result.is_ok() {
            self.log.release(self.acks.applied(), true);
        }
        result
    }

    fn accept_group(&mut self, group: &mut Vec<Waiting>) {
        if group.is_empty() {
            return;
        }
        if self.acks.failing() {
            // While the database refuses what was acknowledged, nothing more is: reads
            // cannot see it, and senders keep it better than a log that only grows.
            let msg = "storage is failing; nothing in the group was acknowledged";
            for (_, reply, _, _permit) in group.drain(..) {
                let _ = reply.send(Err(Error::Unavailable(msg.into())));
            }
            return;
        }
        let started = Instant::now();
        let applied = self.acks.applied();
        self.pending.drain(applied);
        self.log.release(applied, false);
        self.acks.prune_scopes(applied);
        let batches: Vec<&PreparedBatch> = group.iter().map(|(b, ..)| b).collect();
        let prepared = self.prepare(&batches);
        // Remembered whether or not the group is acknowledged: an append that reported
        // an error may still have reached the disk.
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
        let written = prepared.and_then(|p| {
            if self.mode == AckAfter::Log {
                self.log.append(&p.unit)?;
            }
            Ok(p)
        });
        match written {
            Ok(Accepted {
                unit,
                receipts,
                kept,
                journaled,
                calls,
            }) => {
                // Marked before the acknowledgement: a `Store::sync` after it must fold.
                if journaled {
                    self.journal.mark_pending();
                }
                self.acks.log_ok.store(true, Ordering::Relaxed);
                self.pending.add(unit.no, kept);
                if self.mode == AckAfter::Log {
                    self.acks.note_scopes(unit.no, &calls);
                    self.acks.set_acked(unit.no);
                    // Streams hear of the records once they are durable, and before
                    // their senders do.
                    let logs: Vec<RecordBatch> = unit.logs().cloned().collect();
                    self.hub.publish(&logs);
                }
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
                    unit = unit.no,
                    us = started.elapsed().as_micros(),
                    "Acknowledged group."
                );
                let replies =
                    group
                        .drain(..)
                        .zip(receipts)
                        .map(|((_, to, enqueued, _permit), receipt)| Reply {
                            to,
                            receipt,
                            enqueued,
                            _permit,
                        });
                let replies = match self.mode {
                    AckAfter::Log => {
                        for r in replies {
                            self.metrics.record_ack_latency(r.enqueued.elapsed());
                            let _ = r.to.send(Ok(r.receipt));
                        }
                        Vec::new()
                    }
                    AckAfter::Commit => replies.collect(),
                };
                self.hand_over(unit, replies);
            }
            Err(e) => {
                self.acks.log_ok.store(false, Ordering::Relaxed);
                self.metrics.record_write_error();
                tracing::error!(error = %e, requests = group.len(), "Write failed; nothing in the group was acknowledged.");
                let msg = e.to_string();
                for (_, reply, _, _permit) in group.drain(..) {
                    let _ = reply.send(Err(Error::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Gives the writer a unit (with the requests it answers after committing it, if
    /// any), once its backlog has room for it.
    fn hand_over(&mut self, unit: Unit, replies: Vec<Reply>) {
        let want = u32::try_from(unit.records().clamp(1, self.backlog_records)).unwrap_or(u32::MAX);
        let waited = Instant::now();
        let Ok(permit) = block_on(self.backlog.clone().acquire_many_owned(want)) else {
            return;
        };
        if waited.elapsed() > Duration::from_millis(100) {
            tracing::debug!(
                waited_ms = waited.elapsed().as_millis(),
                "The writer's backlog was full."
            );
        }
        let no = unit.no;
        let waits = !replies.is_empty();
        if self
            .writer
            .send(Command::Apply {
                unit: Box::new(unit),
                replies,
                _permit: permit,
            })
            .is_err()
        {
            return;
        }
        if waits {
            // With `ack_after = "commit"` the next group waits for this one's commit:
            // the requests that arrive meanwhile then share the next transaction, where
            // accepting them at once would split the senders waiting into two
            // alternating half-size transactions (measured: 0.65x the rate).
            let mut applied = self.acks.applied.subscribe();
            let _ = block_on(applied.wait_for(|(a, failing)| *a >= no || *failing));
        }
    }

    /// Drops the group's duplicates and turns the rest into the next unit.
    fn prepare(&mut self, batches: &[&PreparedBatch]) -> Result<Accepted> {
        let (min_ts, max_ts) = batches.iter().fold((i64::MAX, i64::MIN), |(lo, hi), b| {
            (lo.min(b.min_ts), hi.max(b.max_ts))
        });
        // The ids to look up in `logs`: none of a group newer than the recent ids'
        // floor unless their fingerprints are present, else every one.
        let covered = !self.lake && self.recent.covers(min_ts);
        let mut lookup = Vec::with_capacity(batches.len());
        for b in batches {
            lookup.extend(to_look_up(&self.recent, covered, &b.batch, &b.ids)?);
        }
        let looked_up = lookup.iter().map(RecordBatch::num_rows).sum();
        self.metrics.record_looked_up(looked_up);
        let mut stored = if looked_up == 0 {
            HashSet::new()
        } else {
            self.stored(&LOGS, &lookup, (min_ts, max_ts))?
        };
        for b in batches {
            stored.extend(b.ids.iter().filter(|id| self.pending.ids.contains(*id)));
        }

        let mut seen: HashSet<Uuid> = HashSet::with_capacity(batches.iter().map(|b| b.len()).sum());
        let mut kept_ids = Vec::new();
        let mut receipts = Vec::with_capacity(batches.len());
        let mut to_append: Vec<RecordBatch> = Vec::with_capacity(batches.len());
        let mut deltas: Vec<CallDelta> = Vec::new();
        let mut metrics = Vec::new();
        let mut counts = Counts::default();
        for b in batches {
            let keep = keep_new(&b.ids, &stored, &mut seen, &mut kept_ids);
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
            let mut stored = self.spans_stored(&span_batches)?;
            for (_, sb) in &span_batches {
                stored.extend(sb.ids.iter().filter(|id| self.pending.ids.contains(*id)));
            }
            for (i, sb) in span_batches {
                let keep = keep_new(&sb.ids, &stored, &mut seen, &mut kept_ids);
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

        let mut parts = Vec::new();
        for rb in to_append.into_iter().filter(|b| b.num_rows() > 0) {
            parts.push((Table::Logs, prepare::with_seq(&rb, self.last_seq + 1)?));
            self.last_seq += i64::try_from(rb.num_rows()).unwrap_or(i64::MAX);
        }
        for rb in spans_to_append.into_iter().filter(|b| b.num_rows() > 0) {
            parts.push((Table::Spans, rb));
        }
        if !metrics.is_empty() {
            parts.push((Table::CallMetrics, acklog::metrics_batch(&metrics)?));
        }
        let journaled = !deltas.is_empty();
        let mut calls = Vec::new();
        if journaled {
            let merged = merge_deltas(deltas);
            parts.push((Table::CallJournal, summary::delta_batch(&merged)?));
            calls = merged.into_iter().map(|d| (d.tenant, d.key)).collect();
        }
        if let Some(batch) = counts.batch_if_any()? {
            parts.push((Table::CountJournal, batch));
        }
        self.last_unit += 1;
        Ok(Accepted {
            unit: Unit {
                no: self.last_unit,
                parts,
            },
            receipts,
            kept: kept_ids,
            journaled,
            calls,
        })
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
        let covered = !self.lake && self.recent_spans.covers(lo);
        let mut lookup = Vec::with_capacity(batches.len());
        for (_, b) in batches {
            lookup.extend(to_look_up(&self.recent_spans, covered, &b.batch, &b.ids)?);
        }
        if lookup.is_empty() {
            return Ok(HashSet::new());
        }
        self.stored(&SPANS, &lookup, (lo, hi))
    }

    /// The ids of `lookup` that `kind`'s table holds, on the look-up connection.
    fn stored(
        &self,
        kind: &Deduped,
        lookup: &[RecordBatch],
        window: (i64, i64),
    ) -> Result<HashSet<Uuid>> {
        let conn = self.lookup.lock();
        let conn = conn
            .as_ref()
            .ok_or_else(|| Error::Unavailable("storage is being reopened".into()))?;
        stored(conn, kind, lookup, window)
    }
}

/// A group ready for the log.
struct Accepted {
    unit: Unit,
    receipts: Vec<AppendReceipt>,
    /// The ids it stores (records and spans).
    kept: Vec<Uuid>,
    /// Does it add call deltas to the journal?
    journaled: bool,
    /// The calls it holds rows of: (tenant, call key).
    calls: Vec<(String, String)>,
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

/// A table whose rows are de-duplicated by content id, and how its stored ids are
/// looked up: the column that bounds the look-up (a row and its retry share it, so a
/// group's window of that column is enough, and DuckDB's zone maps prune to the few
/// row groups written around that time) and the scratch table incoming ids go to.
pub(crate) struct Deduped {
    table: &'static str,
    ts: &'static str,
    clear: &'static str,
    incoming: &'static str,
    select: &'static str,
}

pub(crate) const LOGS: Deduped = Deduped {
    table: "logs",
    ts: "ts",
    clear: "DELETE FROM _incoming_ids",
    incoming: "_incoming_ids",
    select: "SELECT l.id::VARCHAR FROM logs l SEMI JOIN _incoming_ids i ON l.id = i.id \
             WHERE l.ts BETWEEN ? AND ?",
};

pub(crate) const SPANS: Deduped = Deduped {
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
pub(crate) fn stored(
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

/// Which of `ids` to store: those neither `stored` nor `seen` already (a group may
/// carry the same record twice). The kept ones join `seen` and `kept`.
fn keep_new(
    ids: &[Uuid],
    stored: &HashSet<Uuid>,
    seen: &mut HashSet<Uuid>,
    kept: &mut Vec<Uuid>,
) -> Vec<bool> {
    ids.iter()
        .map(|id| {
            let new = !stored.contains(id) && seen.insert(*id);
            if new {
                kept.push(*id);
            }
            new
        })
        .collect()
}

fn merge_deltas(deltas: Vec<CallDelta>) -> Vec<CallDelta> {
    let mut index: HashMap<String, usize> = HashMap::new();
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use callscope_model::{Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp};

    use crate::{AckAfter, LogQuery, Store, StoreConfig};

    fn records(tenant: &str, call_id: &str, n: i64) -> Vec<TenantRecord> {
        (0..n)
            .map(|i| {
                let mut h = RecordIdHasher::new();
                h.str(tenant).str(call_id).i64(i);
                TenantRecord {
                    tenant: tenant.into(),
                    record: LogRecord {
                        id: h.finish(),
                        timestamp: Timestamp(1_764_000_000_000_000_000 + i * 1_000_000),
                        level: Level::Info,
                        category: Category::Agent,
                        event: "AGENT_MESSAGE_SENT".into(),
                        call_id: call_id.into(),
                        agent_id: None,
                        trace_id: None,
                        span_id: None,
                        data: None,
                    },
                }
            })
            .collect()
    }

    /// With the ack log, a read waits only for the acknowledged units that hold rows of
    /// what it reads: while the writer is held up, a call (a tenant) with nothing
    /// waiting is read at once, and one with a unit waiting is read once it is applied,
    /// never without it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_waits_only_for_units_of_what_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig {
            path: dir.path().join("calls.duckdb"),
            ack_after: AckAfter::Log,
            ..StoreConfig::default()
        })
        .unwrap();
        store.append(records("acme", "old", 5)).await.unwrap();
        store.append(records("globex", "g", 5)).await.unwrap();
        store.applied().await.unwrap();
        // Hold the writer up for a while, then acknowledge a unit it cannot apply yet.
        let hold = Duration::from_millis(1500);
        let held = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |_| {
                        std::thread::sleep(hold);
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        store.append(records("acme", "new", 7)).await.unwrap();
        assert!(
            started.elapsed() < hold / 2,
            "acknowledged before the writer is free"
        );

        let q = || LogQuery {
            at: crate::PageAt::Page(1),
            limit: 100,
            order: crate::Order::Asc,
            filter: crate::LogFilter::default(),
        };
        let t = Instant::now();
        let old = store.call_logs("acme", "old", q()).await.unwrap().unwrap();
        let other = store
            .list_calls("globex", crate::CallFilter::default(), 10, 0)
            .await
            .unwrap();
        assert!(t.elapsed() < hold / 3, "{:?}", t.elapsed());
        assert_eq!((old.total_count, other.total_count), (5, 1));

        let page = store.call_logs("acme", "new", q()).await.unwrap().unwrap();
        assert_eq!(page.total_count, 7);
        assert!(
            started.elapsed() >= hold / 2,
            "the read waited for the unit"
        );
        let listed = store
            .list_calls("acme", crate::CallFilter::default(), 10, 0)
            .await
            .unwrap();
        assert_eq!(listed.total_count, 2);
        held.await.unwrap().unwrap();
        store.shutdown().await.unwrap();
    }
}
