//! Builds a pre-populated store for the query and scaling benchmarks, through
//! `Store::append` in big batches (the same writer, de-duplication and `calls` upkeep as
//! live ingest).
//!
//! ```sh
//! cargo bench --workspace --bench build_store -- --records 10000000 \
//!     --out /root/.cache/callscope/benchdata/10m.duckdb
//! ```
//!
//! The data set is `common::Dataset::new(records)`: 100 records per call, 1,000 calls at
//! a time, one tenant. An existing file is extended from where it stops, so a 30 M
//! store can be made from a copy of a 10 M one.

#![allow(missing_docs)]

mod common;

use std::{path::PathBuf, time::Instant};

use callscope_store::{Store, StoreConfig};
use common::Dataset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut records: u64 = 1_000_000;
    let mut out: Option<PathBuf> = None;
    let mut chunk: u64 = 25_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--records" => records = args.next().ok_or("--records N")?.replace('_', "").parse()?,
            "--out" => out = Some(args.next().ok_or("--out FILE")?.into()),
            "--chunk" => chunk = args.next().ok_or("--chunk N")?.parse()?,
            _ => {}
        }
    }
    let out = out.ok_or("--out FILE is required")?;
    let data = Dataset::new(records);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = Store::open(&StoreConfig {
            path: out.clone(),
            retention_days: 0,
            queue_records: 1_000_000,
            commit_group_records: 100_000,
            ..StoreConfig::default()
        })?;
        let have: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?))
            .await?;
        let have = u64::try_from(have).unwrap_or(0);
        println!(
            "{}: has {have} records; building up to {records} ({} calls)",
            out.display(),
            data.calls()
        );
        let started = Instant::now();
        let mut next = have;
        let mut tasks = tokio::task::JoinSet::new();
        let mut done = 0u64;
        while next < records || !tasks.is_empty() {
            while next < records && tasks.len() < 4 {
                let (s, first) = (store.clone(), next);
                tasks.spawn(async move {
                    let batch = data.slice(first, chunk);
                    s.append(batch).await
                });
                next += chunk;
            }
            if let Some(r) = tasks.join_next().await {
                done += r??.inserted as u64;
                if done % 1_000_000 < chunk {
                    println!(
                        "  {} records, {:.0} records/s",
                        have + done,
                        done as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }
        store.shutdown().await?;
        println!(
            "built {} new records in {:.1} s ({:.0} records/s, checkpoint included); file {:.0} MiB",
            done,
            started.elapsed().as_secs_f64(),
            done as f64 / started.elapsed().as_secs_f64(),
            std::fs::metadata(&out).map_or(0, |m| m.len()) as f64 / 1048576.0
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
