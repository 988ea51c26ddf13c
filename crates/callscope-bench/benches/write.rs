//! The DuckDB write path against DuckDB's own Appender, on the same rows in the same run.
//!
//! ```sh
//! cargo bench --workspace --bench write
//! ```
//!
//! - `store_append/…`: `Store::append` of fresh, unique 500-record requests (conversion,
//!   de-duplication, the ack log's write and fsync), one at a time and eight at once
//!   (group commit). The eight-at-once cases time until the writer has applied them to
//!   DuckDB too (`Store::applied`): ingest up to readable records, not only durable ones.
//! - `raw_appender/…`: the same kind of rows, as the store stored them (read back from a
//!   scratch store as Arrow batches), appended to a bare file with the store's schema:
//!   columnar with a commit per request, columnar with one commit per eight requests,
//!   and one row at a time.
//! - `store_append/8x500_concurrent_with_spans`: the eight concurrent record requests of
//!   `store_append/8x500_concurrent`, each next to a request of 400 spans of the same
//!   calls (a turn span and three stage spans for every five records, more than a voice
//!   agent sends), all stored by the same writer; `..._with_spans_as_simulated` the same
//!   with a turn for every fifteen records, the simulator's mix. Throughput counts
//!   records only, so the cases compare what storing spans costs log ingest.

#![allow(missing_docs)]

mod common;

use std::time::{Duration, Instant};

use callscope_bench::raw;
use callscope_model::{SpanKind, SpanRecord, SpanStatus, TenantRecord, TenantSpan, Timestamp};
use callscope_store::{Store, StoreConfig};
use common::Dataset;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const BATCH: u64 = 500;
/// Batches in the raw Appender's pool.
const POOL: u64 = 64;

/// Four spans (a turn and its three stages) for every `turn` records, of the same calls,
/// starting at the records' times.
fn spans_for(records: &[TenantRecord], turn: usize) -> Vec<TenantSpan> {
    records
        .iter()
        .enumerate()
        .filter(|(i, _)| i % turn < 4)
        .map(|(i, r)| {
            let id = r.record.id;
            let ts = r.record.timestamp.0;
            TenantSpan {
                tenant: r.tenant.clone(),
                span: SpanRecord {
                    id: uuid::Uuid::from_u64_pair(id.as_u64_pair().1, id.as_u64_pair().0),
                    call_id: r.record.call_id.clone(),
                    agent_id: r.record.agent_id.clone(),
                    trace_id: r.record.trace_id.clone().unwrap_or_default(),
                    span_id: format!("{:016x}", id.as_u64_pair().0),
                    parent_span_id: (i % turn != 0).then(|| "00000000000000aa".to_owned()),
                    name: ["turn", "stt", "llm", "tts"][i % turn].to_owned(),
                    kind: SpanKind::Internal,
                    start_time: Timestamp(ts),
                    end_time: Timestamp(ts + 350_000_000),
                    status: SpanStatus::Unset,
                    status_message: None,
                    attributes: serde_json::json!({"turn": i / turn, "model": "voice-llm-small"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                },
            }
        })
        .collect()
}

/// Span mixes beside the records: a turn's four spans for every five records (more than a
/// voice agent sends), and for every fifteen, as the simulator's calls store them (188
/// spans beside 707 records for 40 calls of `callscope demo`).
const SPAN_MIXES: [(&str, usize); 2] = [("with_spans", 5), ("with_spans_as_simulated", 15)];

fn write(c: &mut Criterion) {
    // `CALLSCOPE_LOG=callscope_store=debug` prints the writer's phases per group commit.
    if let Ok(filter) = std::env::var("CALLSCOPE_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    // Plenty of unique records: the benchmark takes fresh ones as it goes.
    let data = Dataset::new(u64::MAX / 2);
    let mut next = 0u64;
    let mut take = |n: u64| {
        let v = data.slice(next, n);
        next += n;
        v
    };

    let mut g = c.benchmark_group("write_path");
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(BATCH));

    // The raw Appender's rows: a pool of stored 500-row batches, used round robin
    // (`logs` has no key, so appending a batch again is as costly as the first time).
    let pool = rt
        .block_on(raw::stored_batches(
            dir.path(),
            take(POOL * BATCH),
            BATCH as usize,
        ))
        .expect("the pool is stored");
    let mut turn = 0usize;
    let mut next_batch = || {
        turn += 1;
        pool[turn % pool.len()].clone()
    };

    let store = Store::open(&StoreConfig {
        path: dir.path().join("store.duckdb"),
        retention_days: 0,
        ..StoreConfig::default()
    })
    .expect("opens");
    g.bench_function("store_append/500", |b| {
        b.iter_batched(
            || take(BATCH),
            |records| rt.block_on(store.append(records)).expect("appends"),
            BatchSize::SmallInput,
        );
    });

    let raw_conn = rt
        .block_on(raw::open_raw(&dir.path().join("raw.duckdb")))
        .expect("opens");
    g.bench_function("raw_appender/columnar_500_commit_each", |b| {
        b.iter_batched(
            &mut next_batch,
            |batch| raw::append_columnar(&raw_conn, &[batch], Some(1)).expect("appends"),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("raw_appender/row_by_row_500", |b| {
        b.iter_batched(
            &mut next_batch,
            |batch| raw::append_rows(&raw_conn, &[batch]).expect("appends"),
            BatchSize::SmallInput,
        );
    });

    // The same store without the text index, for the index's cost in one run.
    let plain = Store::open(&StoreConfig {
        path: dir.path().join("plain.duckdb"),
        retention_days: 0,
        text_index_block_records: 0,
        ..StoreConfig::default()
    })
    .expect("opens");
    g.throughput(Throughput::Elements(8 * BATCH));
    for (name, store) in [
        ("store_append/8x500_concurrent", &store),
        ("store_append/8x500_concurrent_no_text_index", &plain),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batches: Vec<_> = (0..8).map(|_| take(BATCH)).collect();
                    let t = Instant::now();
                    rt.block_on(async {
                        let tasks: Vec<_> = batches
                            .into_iter()
                            .map(|r| {
                                let s = store.clone();
                                tokio::spawn(async move { s.append(r).await })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("task").expect("appends");
                        }
                        store.applied().await.expect("applied");
                    });
                    total += t.elapsed();
                }
                total
            });
        });
    }
    for (name, turn) in SPAN_MIXES {
        g.bench_function(format!("store_append/8x500_concurrent_{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batches: Vec<_> = (0..8).map(|_| take(BATCH)).collect();
                    let spans: Vec<_> = batches.iter().map(|r| spans_for(r, turn)).collect();
                    let t = Instant::now();
                    rt.block_on(async {
                        let mut tasks = Vec::new();
                        for (r, sp) in batches.into_iter().zip(spans) {
                            let s = store.clone();
                            tasks.push(tokio::spawn(async move { s.append(r).await }));
                            let s = store.clone();
                            tasks.push(tokio::spawn(async move { s.append_spans(sp).await }));
                        }
                        for t in tasks {
                            t.await.expect("task").expect("appends");
                        }
                        store.applied().await.expect("applied");
                    });
                    total += t.elapsed();
                }
                total
            });
        });
    }
    g.bench_function("raw_appender/columnar_8x500_one_commit", |b| {
        b.iter_batched(
            || (0..8).map(|_| next_batch()).collect::<Vec<_>>(),
            |batches| raw::append_columnar(&raw_conn, &batches, None).expect("appends"),
            BatchSize::SmallInput,
        );
    });
    g.finish();
    rt.block_on(store.shutdown()).expect("shutdown");
}

criterion_group!(benches, write);
criterion_main!(benches);
