//! The single writer: one thread owns the write connection, gathers whatever append
//! requests are waiting into one transaction (group commit), drops records already
//! stored, and answers every request in the group only after `COMMIT` returned.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::Instant,
};

use duckdb::{
    Connection,
    arrow::{
        array::{ArrayRef, BooleanArray},
        compute::filter_record_batch,
        datatypes::{DataType, Field, Schema},
        record_batch::RecordBatch,
    },
};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use uuid::Uuid;

use crate::{
    AppendReceipt, Error, Result,
    metrics::StoreMetrics,
    prepare::PreparedBatch,
    summary::{self, CallDelta},
};

pub(crate) enum Command {
    Append {
        batch: PreparedBatch,
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
}

pub(crate) struct Writer {
    conn: Connection,
    upsert_calls: String,
    rx: mpsc::Receiver<Command>,
    ready: Arc<AtomicBool>,
    metrics: Arc<StoreMetrics>,
    max_group_rows: usize,
}

fn scratch_ddl() -> String {
    format!(
        "CREATE TEMP TABLE IF NOT EXISTS _incoming_ids (id UUID NOT NULL);\n\
         CREATE TEMP TABLE IF NOT EXISTS _call_delta (\n{}\n);",
        summary::column_ddl(false)
    )
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        rx: mpsc::Receiver<Command>,
        ready: Arc<AtomicBool>,
        metrics: Arc<StoreMetrics>,
        max_group_rows: usize,
    ) -> Result<Self> {
        conn.execute_batch(&scratch_ddl())?;
        let upsert_calls = summary::upsert_sql();
        Ok(Self {
            conn,
            upsert_calls,
            rx,
            ready,
            metrics,
            max_group_rows,
        })
    }

    /// Runs until a shutdown command arrives or every sender is gone.
    pub(crate) fn run(mut self) {
        let mut group = Vec::new();
        while let Ok(first) = self.rx.recv() {
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
                        group.push((batch, reply, enqueued, _permit));
                        if rows < self.max_group_rows {
                            next = self.rx.try_recv().ok();
                        }
                    }
                    other => {
                        self.commit_group(&mut group);
                        match other {
                            Command::Purge { before_ns, reply } => {
                                let _ = reply.send(self.purge(before_ns));
                            }
                            Command::Shutdown { reply } => {
                                let _ = reply.send(
                                    self.conn.execute_batch("CHECKPOINT").map_err(Error::from),
                                );
                                return;
                            }
                            Command::Append { .. } => unreachable!("handled above"),
                        }
                    }
                }
            }
            self.commit_group(&mut group);
        }
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
        match self.write(&batches) {
            Ok(receipts) => {
                self.ready.store(true, Ordering::Relaxed);
                let rows: usize = receipts.iter().map(|r| r.inserted).sum();
                let dups: usize = receipts.iter().map(|r| r.duplicates).sum();
                self.metrics.record_commit(rows, dups, started.elapsed());
                tracing::debug!(
                    requests = group.len(),
                    rows,
                    duplicates = dups,
                    "Committed group."
                );
                for ((_, reply, enqueued, _permit), receipt) in group.drain(..).zip(receipts) {
                    self.metrics.record_ack_latency(enqueued.elapsed());
                    let _ = reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.ready.store(false, Ordering::Relaxed);
                self.metrics.record_write_error();
                tracing::error!(error = %e, requests = group.len(), "Write failed; nothing in the group was acknowledged.");
                let msg = e.to_string();
                for (_, reply, _, _permit) in group.drain(..) {
                    let _ = reply.send(Err(Error::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// Writes the group in one transaction and returns each request's receipt.
    fn write(&mut self, batches: &[&PreparedBatch]) -> Result<Vec<AppendReceipt>> {
        let (min_ts, max_ts) = batches.iter().fold((i64::MAX, i64::MIN), |(lo, hi), b| {
            (lo.min(b.min_ts), hi.max(b.max_ts))
        });
        let stored = self.already_stored(batches, min_ts, max_ts)?;

        let mut seen: HashSet<Uuid> = HashSet::with_capacity(batches.iter().map(|b| b.len()).sum());
        let mut receipts = Vec::with_capacity(batches.len());
        let mut to_append: Vec<RecordBatch> = Vec::with_capacity(batches.len());
        let mut deltas: Vec<CallDelta> = Vec::new();
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
            } else {
                for ((call, level), kept) in b.row_call.iter().zip(&keep) {
                    if !kept {
                        calls[*call as usize].levels[usize::from(*level - 1)] -= 1;
                    }
                }
                let mask = BooleanArray::from(keep);
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
            receipts.push(AppendReceipt {
                inserted: b.len() - dropped,
                duplicates: dropped,
            });
        }

        self.conn.execute_batch("BEGIN TRANSACTION")?;
        {
            let mut app = self.conn.appender("logs")?;
            for rb in to_append {
                if rb.num_rows() > 0 {
                    app.append_record_batch(rb)?;
                }
            }
            app.flush()?;
        }
        if !deltas.is_empty() {
            self.conn.execute_batch("DELETE FROM _call_delta")?;
            let merged = merge_deltas(deltas);
            let mut app = self.conn.appender("_call_delta")?;
            app.append_record_batch(summary::delta_batch(&merged)?)?;
            app.flush()?;
            drop(app);
            self.conn.execute_batch(&self.upsert_calls)?;
        }
        self.conn.execute_batch("COMMIT")?;
        Ok(receipts)
    }

    /// The ids in `batches` that the table already holds. Rows carry their time, so the
    /// look-up is confined to the group's time window, which DuckDB's zone maps prune to
    /// the few row groups written around that time.
    fn already_stored(
        &mut self,
        batches: &[&PreparedBatch],
        min_ts: i64,
        max_ts: i64,
    ) -> Result<HashSet<Uuid>> {
        self.conn.execute_batch("DELETE FROM _incoming_ids")?;
        {
            let uuid_meta = std::collections::HashMap::from([(
                "ARROW:extension:name".to_owned(),
                "arrow.uuid".to_owned(),
            )]);
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::FixedSizeBinary(16), false).with_metadata(uuid_meta),
            ]));
            let mut app = self.conn.appender("_incoming_ids")?;
            for b in batches {
                let ids: ArrayRef = b.batch.column(0).clone();
                app.append_record_batch(
                    RecordBatch::try_new(schema.clone(), vec![ids])
                        .map_err(|e| Error::Corrupt(e.to_string()))?,
                )?;
            }
            app.flush()?;
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT l.id::VARCHAR FROM logs l SEMI JOIN _incoming_ids i ON l.id = i.id WHERE l.ts BETWEEN ? AND ?",
        )?;
        let rows = stmt.query_map([min_ts, max_ts], |r| r.get::<_, String>(0))?;
        let mut out = HashSet::new();
        for row in rows {
            let s = row?;
            out.insert(Uuid::parse_str(&s).map_err(|e| Error::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    fn purge(&mut self, before_ns: i64) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM logs WHERE ts < ?", [before_ns])?;
        tx.execute("DELETE FROM calls WHERE last_ts < ?", [before_ns])?;
        tx.execute(
            "DELETE FROM comments c WHERE NOT EXISTS \
             (SELECT 1 FROM calls k WHERE k.tenant = c.tenant AND k.call_id = c.call_id)",
            [],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }
}

fn merge_deltas(deltas: Vec<CallDelta>) -> Vec<CallDelta> {
    let mut index: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    let mut out: Vec<CallDelta> = Vec::with_capacity(deltas.len());
    for d in deltas {
        match index.get(&(d.tenant.clone(), d.call_id.clone())) {
            Some(&i) => out[i].merge(&d),
            None => {
                index.insert((d.tenant.clone(), d.call_id.clone()), out.len());
                out.push(d);
            }
        }
    }
    out
}
