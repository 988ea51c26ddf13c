//! The DuckDB write path against DuckDB's own Appender, on the same rows in the same run.
//!
//! ```sh
//! cargo bench --workspace --bench write
//! ```
//!
//! - `store_append/…`: `Store::append` of fresh, unique 500-record requests (conversion,
//!   hand-off to the writer, de-duplication look-up, `calls` upkeep, COMMIT), one at a
//!   time and eight at once (group commit).
//! - `raw_appender/…`: the same kind of rows, as the store stored them (read back from a
//!   scratch store as Arrow batches), appended to a bare file with the store's schema:
//!   columnar with a commit per request, columnar with one commit per eight requests,
//!   and one row at a time.

#![allow(missing_docs)]

mod common;

use std::time::{Duration, Instant};

use callscope_bench::raw;
use callscope_store::{Store, StoreConfig};
use common::Dataset;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const BATCH: u64 = 500;
/// Batches in the raw Appender's pool.
const POOL: u64 = 64;

fn write(c: &mut Criterion) {
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

    g.throughput(Throughput::Elements(8 * BATCH));
    g.bench_function("store_append/8x500_concurrent", |b| {
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
                });
                total += t.elapsed();
            }
            total
        });
    });
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
