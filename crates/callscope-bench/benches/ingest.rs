//! End-to-end ingest, measured against its limits in the same run.
//!
//! ```sh
//! cargo bench --workspace --bench ingest -- [--protocol grpc,http] [--concurrency 8]
//!     [--batch 500] [--duration 20] [--base-store FILE] [--no-limits] [--no-load80]
//!     [--probe-reads] [--load-fraction 0.8] [--peer 'COMMAND {grpc}']
//! ```
//!
//! 1. **Limits**, on the very records the load generator sends: raw prost decode of the
//!    requests, the visibility filter, and DuckDB's Appender inserting the rows the
//!    store stores for them (columnar with one commit, columnar
//!    with a commit per request, and one row at a time).
//! 2. **End to end**: a callscope server (the same `Server` as `callscope serve`) runs in
//!    a child process on ephemeral ports with a fresh DuckDB file (or a copy of
//!    `--base-store`), and the `callscope-loadgen` code drives it at full speed over
//!    OTLP/gRPC or OTLP/HTTP. Acknowledgements come only after the commit. The server's
//!    peak RSS and CPU are read from `/proc`.
//! 3. **Latency at 80 %**: the same server at 80 % of the rate just measured, on a fixed
//!    schedule, latency measured from the scheduled send time. With `--probe-reads`,
//!    the customer API's reads are timed during that run and again with no ingest.
//!    `--load-fraction` sets another share of the measured rate.
//! 4. **A peer**, with `--peer`: after callscope's closed loop, the same load at full
//!    speed against another collector started from the command given (`{grpc}` becomes
//!    a free `127.0.0.1:port` for its OTLP/gRPC receiver), e.g. rotel discarding
//!    everything: `--peer 'rotel-agent start --exporter blackhole --otlp-grpc-endpoint {grpc}'`.
//!    Its rate is the ceiling of receive, decode and acknowledge on this machine.
//!
//! Each (protocol, concurrency, batch) combination gets a fresh server.

use std::{
    io::{BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use callscope::{Config, Server};
use callscope_bench::{
    child::{ReadyChild, spawn_ready},
    loadgen::{CallTraffic, LoadOptions, Protocol, Report, Workload, run_load},
    raw,
};
use callscope_collector::{VisibilityConfig, VisibilityFilter};
use clap::Parser;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;

/// The server child allocates as `callscope serve` does (see its `main.rs`), so its RSS
/// and CPU are the product's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, as `callscope serve` sets them.
#[allow(unsafe_code, non_upper_case_globals)]
// SAFETY: jemalloc reads this symbol once, as a NUL-terminated C string; the value is
// a `'static` byte string ending in NUL, and nothing writes it.
#[unsafe(export_name = "malloc_conf")]
static malloc_conf: &[u8; 59] = b"background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0\0";

#[derive(Parser, Debug)]
#[command(about = "callscope ingest benchmark")]
struct Args {
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Protocols to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "grpc")]
    protocol: Vec<Protocol>,
    /// Sender concurrencies to measure.
    #[arg(long, value_delimiter = ',', default_value = "8")]
    concurrency: Vec<usize>,
    /// Records per request to measure.
    #[arg(long, value_delimiter = ',', default_value = "500")]
    batch: Vec<usize>,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of warm-up per run.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Skip the limits.
    #[arg(long)]
    no_limits: bool,
    /// Skip the 80 % latency run.
    #[arg(long)]
    no_load80: bool,
    /// Records used for the limits.
    #[arg(long, default_value_t = 200_000)]
    limit_records: usize,
    /// Start each server from a copy of this DuckDB file (a pre-built store).
    #[arg(long)]
    base_store: Option<PathBuf>,
    /// Where the servers' files go (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// DuckDB memory limit for the server (`[storage] memory_limit`).
    #[arg(long)]
    memory_limit: Option<String>,
    /// DuckDB worker threads for the server (`[storage] threads`; 0: one per core).
    #[arg(long, default_value_t = 0)]
    storage_threads: usize,
    /// DuckDB's checkpoint threshold for the server (`[storage] checkpoint_threshold`).
    #[arg(long)]
    checkpoint_threshold: Option<String>,
    /// During the 80 % run, and again once it is over, time the customer API's reads
    /// (calls list, a call's page, a search) five times a second.
    #[arg(long)]
    probe_reads: bool,
    /// When the server acknowledges (`[storage] ack_after`): `commit` or `log`.
    #[arg(long, default_value = "commit")]
    ack_after: String,
    /// The latency run's rate, as a share of the closed loop's.
    #[arg(long, default_value_t = 0.8)]
    load_fraction: f64,
    /// A peer collector to run the same closed loop against (gRPC only): a shell
    /// command in which `{grpc}` is replaced by the address it must listen on.
    #[arg(long)]
    peer: Option<String>,
    /// Internal: run as the server child, storing under this folder.
    #[arg(long, hide = true)]
    serve_child: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.serve_child {
        return serve_child(dir, &args);
    }
    let rt = tokio::runtime::Runtime::new()?;
    print_machine();
    let workload = Workload::default();
    let limits = if args.no_limits {
        None
    } else {
        Some(limits(&args, &workload)?)
    };

    let tmp = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::Builder::new().prefix("ingest-").tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let mut results = Vec::new();
    let mut n = 0;
    for &protocol in &args.protocol {
        for &concurrency in &args.concurrency {
            for &batch in &args.batch {
                n += 1;
                let dir = tmp.path().join(format!("run-{n}"));
                let r = rt.block_on(one_run(&args, &dir, protocol, concurrency, batch))?;
                let _ = std::fs::remove_dir_all(&dir);
                results.push(r);
            }
        }
    }

    println!("\n== summary ==");
    if let Some(l) = &limits {
        println!(
            "limits (records/s): prost decode {:.0}, filter {:.0}, \
             raw Appender columnar {:.0} (commit per request {:.0}), append_row {:.0}",
            l.decode, l.filter, l.appender, l.appender_per_request, l.append_row
        );
    }
    println!(
        "| protocol | senders | batch | records/s | p50 ms | p99 ms | errors | vs Appender | vs decode | server CPU µs/record | peak RSS MiB | p99 ms at 80% |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        let m = &r.max;
        let errors: u64 = m.errors.values().sum();
        // With `--no-limits` there is nothing to compare with: "-", not NaN.
        let (vs_app, vs_dec) = limits.as_ref().map_or_else(
            || ("-".to_owned(), "-".to_owned()),
            |l| {
                (
                    format!("{:.2}", m.records_per_sec / l.appender),
                    format!("{:.2}", m.records_per_sec / l.decode),
                )
            },
        );
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {} | {:.2} | {:.0} | {} |",
            m.options.protocol,
            m.options.concurrency,
            m.options.batch,
            m.records_per_sec,
            m.latency_ms.p50,
            m.latency_ms.p99,
            errors,
            vs_app,
            vs_dec,
            r.server_cpu_us_per_record,
            r.peak_rss_mib,
            r.load80
                .as_ref()
                .map_or_else(|| "-".to_owned(), |l| format!("{:.1}", l.latency_ms.p99)),
        );
    }
    for r in &results {
        let m = &r.max;
        if m.options.protocol != Protocol::Grpc || m.options.batch != 500 {
            continue;
        }
        let check = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "targets (gRPC, batch 500, {} senders):",
            m.options.concurrency
        );
        println!(
            "  durable ingest >= 250,000 records/s: {:.0} -> {}",
            m.records_per_sec,
            check(m.records_per_sec >= 250_000.0)
        );
        if let Some(peer) = &r.peer {
            let ratio = m.records_per_sec / peer.records_per_sec;
            println!(
                "  durable ingest >= 0.5x the peer ({:.0}): {ratio:.2}x -> {}",
                peer.records_per_sec,
                check(ratio >= 0.5)
            );
        }
        println!(
            "  server CPU <= 10 us per durable record: {:.2} -> {}",
            r.server_cpu_us_per_record,
            check(r.server_cpu_us_per_record <= 10.0)
        );
        if let Some(l) = &limits {
            let ratio = m.records_per_sec / l.appender;
            println!(
                "  >= 50% of the raw Appender rate ({:.0}): {:.0}% -> {}",
                l.appender,
                ratio * 100.0,
                check(ratio >= 0.5)
            );
        }
        if let Some(l80) = &r.load80 {
            println!(
                "  p99 <= 100 ms at 80% load ({:.0} records/s offered = {:.0}%, {:.0} acknowledged): {:.1} ms -> {}",
                l80.options.rate.unwrap_or(0.0),
                args.load_fraction * 100.0,
                l80.records_per_sec,
                l80.latency_ms.p99,
                check(l80.latency_ms.p99 <= 100.0 && l80.errors.is_empty())
            );
        }
        println!(
            "  peak RSS <= 512 MiB: {:.0} MiB -> {}",
            r.peak_rss_mib,
            check(r.peak_rss_mib <= 512.0)
        );
    }
    Ok(())
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} x {cpu}; load average before: {}",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The limits, in records per second.
struct Limits {
    decode: f64,
    filter: f64,
    appender: f64,
    appender_per_request: f64,
    append_row: f64,
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Best of `reps` timings of `f`.
fn best<T>(reps: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut out = f();
    for _ in 1..reps {
        let next = f();
        if next.0 < out.0 {
            out = next;
        }
    }
    out
}

fn limits(args: &Args, workload: &Workload) -> anyhow::Result<Limits> {
    let batch = args.batch.first().copied().unwrap_or(500).max(1);
    let senders = args.concurrency.first().copied().unwrap_or(8).max(1) as u64;
    let requests = args.limit_records.div_ceil(batch);
    let n = requests * batch;
    println!(
        "\n== limits: {n} records in {requests} requests of {batch} (the load generator's records) =="
    );
    let mut traffic: Vec<CallTraffic> = (0..senders)
        .map(|s| CallTraffic::new(0x5eed, s, workload))
        .collect();
    let started = Instant::now();
    let encoded: Vec<Vec<u8>> = (0..requests)
        .map(|i| {
            let k = i % traffic.len();
            traffic[k].request(batch).encode_to_vec()
        })
        .collect();
    let generate = rate(n, started.elapsed());
    println!("  load generator (build + encode requests): {generate:.0} records/s on one core");
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    println!(
        "  request size: {:.0} bytes/record on the wire",
        bytes as f64 / n as f64
    );

    let (d, decoded) = best(3, || {
        let t = Instant::now();
        let v: Vec<ExportLogsServiceRequest> = encoded
            .iter()
            .map(|b| ExportLogsServiceRequest::decode(&b[..]).expect("decodes"))
            .collect();
        (t.elapsed(), v)
    });
    let decode = rate(n, d);
    println!("  raw prost decode: {decode:.0} records/s");

    let filter = VisibilityFilter::new(&VisibilityConfig::default())?;
    let (d, filtered) = best(3, || {
        let t = Instant::now();
        let v: Vec<_> = decoded.iter().map(|r| filter.apply(r).records).collect();
        (t.elapsed(), v)
    });
    let stored: usize = filtered.iter().map(Vec::len).sum();
    anyhow::ensure!(stored == n, "every generated record is customer-visible");
    let filter_rate = rate(n, d);
    println!("  visibility filter (ids included): {filter_rate:.0} records/s");
    drop(decoded);

    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let records: Vec<_> = filtered.into_iter().flatten().collect();
    let batches = rt.block_on(raw::stored_batches(dir.path(), records, batch))?;
    let run_app = |name: &str, commit_every: Option<usize>| -> anyhow::Result<f64> {
        let (d, ()) = best(2, || {
            let path = dir
                .path()
                .join(format!("{name}-{}.duckdb", rand::random::<u32>()));
            let conn = rt.block_on(raw::open_raw(&path)).expect("opens");
            let d = raw::append_columnar(&conn, &batches, commit_every).expect("appends");
            drop(conn);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("duckdb.wal"));
            (d, ())
        });
        Ok(rate(n, d))
    };
    let appender = run_app("columnar", None)?;
    println!("  raw Appender, columnar, one commit: {appender:.0} records/s");
    let appender_per_request = run_app("per-request", Some(1))?;
    println!(
        "  raw Appender, columnar, one commit per request: {appender_per_request:.0} records/s"
    );
    let rows_n = (50_000 / batch).max(1).min(batches.len());
    let path = dir.path().join("rows.duckdb");
    let conn = rt.block_on(raw::open_raw(&path))?;
    let d = raw::append_rows(&conn, &batches[..rows_n])?;
    let append_row = rate(rows_n * batch, d);
    println!("  raw Appender, append_row one row at a time: {append_row:.0} records/s");
    Ok(Limits {
        decode,
        filter: filter_rate,
        appender,
        appender_per_request,
        append_row,
    })
}

struct RunResult {
    max: Report,
    peer: Option<Report>,
    load80: Option<Report>,
    peak_rss_mib: f64,
    server_cpu_us_per_record: f64,
}

/// The server child: its pid and addresses.
struct ServerChild {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    grpc: String,
    http: String,
    api: String,
}

impl ServerChild {
    fn start(dir: &Path, args: &Args) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        if let Some(base) = &args.base_store {
            let t = Instant::now();
            std::fs::copy(base, dir.join("callscope.duckdb"))
                .with_context(|| format!("copying {}", base.display()))?;
            println!(
                "  copied {} in {:.1} s",
                base.display(),
                t.elapsed().as_secs_f64()
            );
        }
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("--serve-child").arg(dir);
        if let Some(m) = &args.memory_limit {
            cmd.arg("--memory-limit").arg(m);
        }
        cmd.arg("--storage-threads")
            .arg(args.storage_threads.to_string());
        if let Some(t) = &args.checkpoint_threshold {
            cmd.arg("--checkpoint-threshold").arg(t);
        }
        cmd.arg("--ack-after").arg(&args.ack_after);
        let ReadyChild {
            child,
            stdout,
            urls,
        } = spawn_ready(&mut cmd, 3)?;
        let [grpc, http, api] = [0, 1, 2].map(|i| urls[i].clone());
        Ok(Self {
            child,
            _stdout: stdout,
            grpc,
            http,
            api,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) -> anyhow::Result<()> {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "server child exited with {status}");
        Ok(())
    }
}

/// `/proc/<pid>/status` field in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) a process has used.
fn proc_cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let hz = 100.0;
    (ticks(11) + ticks(12)) / hz
}

async fn one_run(
    args: &Args,
    dir: &Path,
    protocol: Protocol,
    concurrency: usize,
    batch: usize,
) -> anyhow::Result<RunResult> {
    println!(
        "\n== {protocol}, {concurrency} senders, {batch} records/request, ack after {} ==",
        args.ack_after
    );
    let server = ServerChild::start(dir, args)?;
    let pid = server.pid();
    let endpoint = match protocol {
        Protocol::Grpc => server.grpc.clone(),
        Protocol::Http => server.http.clone(),
    };
    let options = LoadOptions {
        protocol,
        endpoint,
        concurrency,
        batch,
        duration: Duration::from_secs_f64(args.duration),
        warmup: Duration::from_secs_f64(args.warmup),
        rate: None,
        workload: Workload::default(),
        token: None,
    };

    // Sample the server's RSS while it runs.
    let stop = Arc::new(AtomicBool::new(false));
    let peak_kib = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak_kib));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = proc_status_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let cpu_before = proc_cpu_secs(pid);
    let t0 = Instant::now();
    let max = run_load(&options).await?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = proc_cpu_secs(pid) - cpu_before;
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    print!("{max}");
    // CPU per record over the whole run, warm-up included, at the measured rate.
    let records_total = max.records_per_sec * wall;
    let server_cpu_us_per_record = cpu / records_total * 1e6;
    println!(
        "  server: {:.2} cores busy, ~{server_cpu_us_per_record:.2} µs CPU per record; peak RSS {:.0} MiB (VmHWM {:.0} MiB)",
        cpu / wall,
        peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
        hwm as f64 / 1024.0
    );

    let peer = match (&args.peer, protocol) {
        (Some(cmd), Protocol::Grpc) => {
            let r = peer_run(cmd, &options).await?;
            println!(
                "  peer `{cmd}`: {:.0} records/s (ack p99 {:.1} ms); callscope/peer = {:.2}",
                r.records_per_sec,
                r.latency_ms.p99,
                max.records_per_sec / r.records_per_sec
            );
            Some(r)
        }
        _ => None,
    };

    let load80 = if args.no_load80 || max.records_per_sec <= 0.0 {
        None
    } else {
        println!(
            "  latency run at {:.0} % of that rate:",
            args.load_fraction * 100.0
        );
        let o = LoadOptions {
            rate: Some(max.records_per_sec * args.load_fraction),
            warmup: Duration::from_secs(2),
            ..options.clone()
        };
        let probe = args
            .probe_reads
            .then(|| tokio::spawn(probe_reads(server.api.clone(), o.duration + o.warmup)));
        let r = run_load(&o).await?;
        print!("{r}");
        if let Some(p) = probe {
            p.await??.print("under the 80 % load");
            // The same reads on the same server with no ingest running.
            probe_reads(server.api.clone(), Duration::from_secs(5))
                .await?
                .print("idle, after it");
        }
        Some(r)
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let hwm = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    server.stop()?;
    Ok(RunResult {
        max,
        peer,
        load80,
        peak_rss_mib: hwm as f64 / 1024.0,
        server_cpu_us_per_record,
    })
}

/// Starts the peer collector, runs `options`' closed loop against its gRPC receiver,
/// and stops it.
async fn peer_run(cmd: &str, options: &LoadOptions) -> anyhow::Result<Report> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {}", cmd.replace("{grpc}", &addr.to_string())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting the peer: {cmd}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            bail!("the peer did not listen on {addr}: {cmd}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = LoadOptions {
        endpoint: format!("http://{addr}"),
        ..options.clone()
    };
    let report = run_load(&o).await;
    let _ = child.kill();
    let _ = child.wait();
    report
}

/// The server child: a callscope server on ephemeral ports storing under `dir`, until
/// a line arrives on stdin (or stdin closes).
fn serve_child(dir: &Path, args: &Args) -> anyhow::Result<()> {
    // `CALLSCOPE_LOG` (e.g. `callscope_store=debug`) prints the server's own log to
    // stderr as JSON lines: the writer's per-group phases and its journal folds.
    if let Ok(filter) = std::env::var("CALLSCOPE_LOG") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut config = Config::default();
        config.storage.path = dir.join("callscope.duckdb");
        config.storage.retention_days = 0;
        if let Some(m) = &args.memory_limit {
            config.storage.memory_limit.clone_from(m);
        }
        if let Some(t) = &args.checkpoint_threshold {
            config.storage.checkpoint_threshold.clone_from(t);
        }
        config.storage.threads = args.storage_threads;
        config.storage.ack_after = match args.ack_after.as_str() {
            "log" => callscope_store::AckAfter::Log,
            "commit" => callscope_store::AckAfter::Commit,
            other => bail!("--ack-after {other}: commit or log"),
        };
        config.otlp.grpc_addr = "127.0.0.1:0".parse()?;
        config.otlp.http_addr = "127.0.0.1:0".parse()?;
        config.api.addr = "127.0.0.1:0".parse()?;
        config.api.keys.push(callscope_api::ApiKeyConfig {
            tenant: PROBE_TENANT.to_owned(),
            key_sha256: callscope_api::key_sha256_hex(PROBE_KEY),
        });
        let server = Server::start(&config).await?;
        println!(
            "READY {} {} {}",
            server.grpc_addr, server.http_addr, server.api_addr
        );
        std::io::stdout().flush()?;
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await?;
        server.shutdown().await
    })
}

/// The tenant the read probe reads (one of the load generator's), and its key.
const PROBE_TENANT: &str = "tenant-000";
const PROBE_KEY: &str = "cs_bench_probe_key";

/// Read latencies by kind, in milliseconds.
#[derive(Default)]
struct ReadTimes {
    list: Vec<f64>,
    page: Vec<f64>,
    /// The page of the list's last (earliest) call, most likely one no longer written.
    earlier_page: Vec<f64>,
    search: Vec<f64>,
    errors: usize,
}

impl ReadTimes {
    fn print(&self, when: &str) {
        let line = |name: &str, v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            let q = |p: f64| v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)));
            match (q(0.5), q(0.99), v.last()) {
                (Some(a), Some(b), Some(c)) => println!(
                    "    {name}: n={} p50 {a:.1} ms, p99 {b:.1} ms, max {c:.1} ms",
                    v.len()
                ),
                _ => println!("    {name}: no samples"),
            }
        };
        println!("  reads {when} (errors: {}):", self.errors);
        line("calls list, 20", &self.list);
        line("a call's page, 100", &self.page);
        line("an earlier call's page, 100", &self.earlier_page);
        line("search, no filter, 20", &self.search);
    }
}

/// Times the customer API's reads five times a second for `for_how_long`: the calls
/// list and a search (both wait for the writer to fold what is pending) and the page of
/// the newest call the list returned (which reads the journal instead).
async fn probe_reads(api: String, for_how_long: Duration) -> anyhow::Result<ReadTimes> {
    let client = reqwest::Client::new();
    let auth = format!("Bearer {PROBE_KEY}");
    let auth = auth.as_str();
    // Sends one request; its time in milliseconds and its body, or `None` on an error
    // status.
    let timed = |req: reqwest::RequestBuilder| async move {
        let t = Instant::now();
        let response = req.header("authorization", auth).send().await?;
        let ok = response.status().is_success();
        let body = response.bytes().await?;
        anyhow::Ok(ok.then(|| (t.elapsed().as_secs_f64() * 1e3, body)))
    };
    let mut times = ReadTimes::default();
    let end = Instant::now() + for_how_long;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while Instant::now() < end {
        tick.tick().await;
        let Some((ms, body)) = timed(client.get(format!("{api}/v1/calls?limit=20"))).await? else {
            times.errors += 1;
            continue;
        };
        times.list.push(ms);
        let list: serde_json::Value = serde_json::from_slice(&body)?;
        let page_of = |call: &serde_json::Value| {
            call["call_id"]
                .as_str()
                .map(|call| client.get(format!("{api}/v1/calls/{call}/logs?limit=100")))
        };
        let calls = list["data"].as_array().cloned().unwrap_or_default();
        let page = calls.first().and_then(page_of);
        let earlier = calls.last().and_then(page_of);
        let search = client
            .post(format!("{api}/v1/logs/search"))
            .json(&serde_json::json!({"size": 20}));
        for (req, into) in [
            (page, &mut times.page),
            (earlier, &mut times.earlier_page),
            (Some(search), &mut times.search),
        ] {
            let Some(req) = req else { continue };
            match timed(req).await? {
                Some((ms, _)) => into.push(ms),
                None => times.errors += 1,
            }
        }
    }
    Ok(times)
}
