//! Ingest on the DuckLake backend with one, two and three instances sharing one lake:
//! PostgreSQL (Debian's binaries, a fresh cluster) for the catalog, `moto_server` for
//! S3, every instance a `callscope serve` of its own (this bench re-run as a child),
//! the load generator's senders split evenly over the instances. Reports the combined
//! acknowledged rate, ack latency, the commit conflicts the instances retried, and the
//! lake's Parquet file count before and after one maintenance pass.
//!
//! ```sh
//! pip install 'moto[server]'             # the S3 server (the extensions are fetched
//!                                        # with scripts/ducklake-extensions if missing)
//! cargo bench --workspace --bench lake -- --instances 1,2,3 --duration 20
//! ```

use std::{
    io::{BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use callscope::{Config, Server};
use callscope_bench::{
    child::{ReadyChild, spawn_ready},
    loadgen::{LoadOptions, Protocol, Report, Workload, run_load},
};
use clap::Parser as _;

#[derive(clap::Parser)]
struct Args {
    /// Instance counts to run, one fresh lake each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    instances: Vec<usize>,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Senders over all instances.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Seconds between maintenance passes during the run (0: none, so the file count
    /// after the run is what ingest alone leaves).
    #[arg(long, default_value_t = 0)]
    maintenance_secs: u64,
    #[arg(long, hide = true)]
    serve_child: Option<PathBuf>,
    /// Cargo passes `--bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

// The same PostgreSQL + moto fixture the multi-instance tests start.
#[allow(dead_code, unreachable_pub)]
#[path = "../../../tests/support/lake.rs"]
mod fixture;

/// The config file of the instances of `lake`: its `[storage.ducklake]` and
/// `[storage.s3]`, every listener on a free port.
fn config(lake: &fixture::Lake) -> anyhow::Result<PathBuf> {
    let dir = lake.instance_dir(0);
    let path = dir.join("callscope.toml");
    std::fs::write(
        &path,
        format!(
            "[storage]\nbackend = \"ducklake\"\nretention_days = 0\npath = {:?}\n{}\n\
             [otlp]\ngrpc_addr = \"127.0.0.1:0\"\nhttp_addr = \"127.0.0.1:0\"\n[api]\naddr = \"127.0.0.1:0\"\n",
            dir.join("callscope.duckdb").display().to_string(),
            lake.config_toml()
        ),
    )?;
    Ok(path)
}

/// Maintenance as `CALLSCOPE_*` overrides the instances read: every `secs` (0: never).
fn maintenance(secs: u64) -> [(String, String); 1] {
    [(
        "CALLSCOPE_STORAGE__DUCKLAKE__MAINTENANCE_INTERVAL_SECS".into(),
        secs.to_string(),
    )]
}

/// An instance: this bench re-run with `--serve-child CONFIG`.
struct Instance {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    grpc: String,
    api: String,
}

impl Instance {
    fn start(config: &Path, maintenance_secs: u64) -> anyhow::Result<Self> {
        let ReadyChild {
            child,
            stdout,
            urls,
        } = spawn_ready(
            Command::new(std::env::current_exe()?)
                .arg("--serve-child")
                .arg(config)
                .envs(maintenance(maintenance_secs)),
            2,
        )?;
        let [grpc, api] = [0, 1].map(|i| urls[i].clone());
        Ok(Self {
            child,
            _stdout: stdout,
            grpc,
            api,
        })
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.api))
            .await
            .ok()
            .map(reqwest::Response::text);
        let text = match text {
            Some(t) => t.await.unwrap_or_default(),
            None => String::new(),
        };
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    fn stop(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = self.child.wait();
    }
}

fn serve_child(config: &Path) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let config = Config::load(
            Some(config),
            std::env::vars().filter(|(k, _)| k.starts_with("CALLSCOPE_")),
        )?;
        let server = Server::start(&config).await?;
        println!("READY {} {}", server.grpc_addr, server.api_addr);
        std::io::stdout().flush()?;
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await?;
        server.shutdown().await
    })
}

/// The Parquet files the lake's current snapshot holds, counted through DuckLake itself.
fn data_files(config: &Path) -> anyhow::Result<i64> {
    let config = Config::load(Some(config), maintenance(0))?;
    let store = callscope_store::Store::open(&callscope_store::StoreConfig {
        reader_connections: 1,
        ..config.storage
    })?;
    let rt = tokio::runtime::Runtime::new()?;
    let n = rt.block_on(store.read(|c| {
        let mut n = 0;
        for t in [
            "logs",
            "call_metrics",
            "calls",
            "call_journal",
            "count_journal",
            "log_counts",
        ] {
            n += c.query_row(
                &format!("SELECT count(*) FROM ducklake_list_files('lake', '{t}')"),
                [],
                |r| r.get::<_, i64>(0),
            )?;
        }
        Ok(n)
    }))?;
    rt.block_on(store.shutdown())?;
    Ok(n)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(config) = &args.serve_child {
        return serve_child(config);
    }
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "DuckLake ingest: PostgreSQL catalog, moto S3, gRPC, {} senders x {} records, {:.0} s per run",
        args.concurrency, args.batch, args.duration
    );
    let mut rows = Vec::new();
    for &n in &args.instances {
        let lake = fixture::Lake::start();
        let config = config(&lake)?;
        let instances: Vec<Instance> = (0..n)
            .map(|_| Instance::start(&config, args.maintenance_secs))
            .collect::<anyhow::Result<_>>()?;
        let reports: Vec<Report> = rt.block_on(async {
            let runs = instances.iter().enumerate().map(|(i, inst)| {
                let share = args.concurrency / n + usize::from(i < args.concurrency % n);
                let o = LoadOptions {
                    protocol: Protocol::Grpc,
                    endpoint: inst.grpc.clone(),
                    concurrency: share.max(1),
                    batch: args.batch,
                    duration: Duration::from_secs_f64(args.duration),
                    warmup: Duration::from_secs(3),
                    rate: None,
                    workload: Workload::default(),
                    token: None,
                };
                async move { run_load(&o).await }
            });
            futures_join(runs).await
        })?;
        let conflicts: f64 = rt.block_on(async {
            let mut sum = 0.0;
            for i in &instances {
                sum += i.metric("callscope_store_lake_conflicts_total").await;
            }
            sum
        });
        let rate: f64 = reports.iter().map(|r| r.records_per_sec).sum();
        let requests: u64 = reports.iter().map(|r| r.acked_requests).sum();
        let p50 = reports.iter().map(|r| r.latency_ms.p50).fold(0.0, f64::max);
        let p99 = reports.iter().map(|r| r.latency_ms.p99).fold(0.0, f64::max);
        let errors: u64 = reports.iter().flat_map(|r| r.errors.values()).sum();
        for i in instances {
            i.stop();
        }
        let before = data_files(&config)?;
        // One instance alone on the lake runs the maintenance once it is due (first at
        // about half the interval).
        let maintainer = Instance::start(&config, 4)?;
        std::thread::sleep(Duration::from_secs(8));
        maintainer.stop();
        let after = data_files(&config)?;
        println!(
            "  {n} instance(s): {rate:.0} records/s, ack p50 {p50:.0} ms, p99 {p99:.0} ms, {requests} requests, {errors} errors, {conflicts:.0} conflicts retried, Parquet files {before} -> {after} after maintenance"
        );
        rows.push((
            n, rate, p50, p99, conflicts, requests, errors, before, after,
        ));
    }
    println!(
        "\n| instances | records/s | vs 1 instance | ack p50 ms | ack p99 ms (worst instance) | conflicts retried | acked requests | errors | Parquet files before -> after maintenance |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let one = rows.first().map_or(1.0, |r| r.1);
    for (n, rate, p50, p99, conflicts, requests, errors, before, after) in rows {
        println!(
            "| {n} | {rate:.0} | {:.2} | {p50:.0} | {p99:.0} | {conflicts:.0} | {requests} | {errors} | {before} -> {after} |",
            rate / one
        );
    }
    Ok(())
}

/// Runs the futures concurrently and collects their results in order.
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await??);
    }
    Ok(out)
}
