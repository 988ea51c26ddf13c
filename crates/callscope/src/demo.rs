//! `callscope demo`: a simulated voice agent sends its calls over real OTLP to an
//! in-process callscope, the customer view of one call is printed as a timeline, and
//! the server keeps running with the console's address and an API key printed, so the
//! calls can be explored in a browser. While it serves, the simulated agent goes on
//! placing a call at a time, so the console's live updates have something to show.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use callscope_api::{ApiKeyConfig, key_sha256_hex};
use callscope_sim::{CallReport, SimConfig, SimReport};
use callscope_tracing::{CallscopeTracing, Protocol};
use serde_json::Value;
use tracing::instrument::WithSubscriber as _;

use crate::{Config, Server};

/// `callscope demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many concurrent calls the simulated agent places.
    #[arg(long, default_value_t = 6)]
    pub calls: usize,
    /// Seed for the simulation (ids, texts, latencies).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How much faster than real time the calls run: their records and spans are spread
    /// over the call's simulated duration divided by this (0: no waiting at all).
    #[arg(long, default_value_t = 10)]
    pub speed: u32,
    /// Keep the DuckDB file here instead of a temporary folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Send over OTLP/HTTP (protobuf) instead of OTLP/gRPC.
    #[arg(long)]
    pub http: bool,
    /// Print the call and exit instead of serving the console and API afterwards (on
    /// the default ports, until Ctrl-C).
    #[arg(long)]
    pub no_serve: bool,
}

/// What a demo run produced, for tests.
#[derive(Debug)]
pub struct DemoOutcome {
    /// What the simulated agent sent.
    pub report: SimReport,
    /// The call shown.
    pub shown_call: String,
    /// The customer view of that call, as the API returned it.
    pub records: Vec<Value>,
    /// Records the collector kept out of storage as internal.
    pub internal_kept_out: u64,
    /// The printed timeline.
    pub text: String,
}

const DEMO_TENANT: &str = "acme";

/// A demo whose server is still running: the console and API answer at
/// `server.api_addr` for `key`.
pub struct RunningDemo {
    /// What the demo printed and found.
    pub outcome: DemoOutcome,
    /// The running server.
    pub server: Server,
    /// An API key of the demo tenant (also the console's sign-in key).
    pub key: String,
    /// Holds the temporary database folder for as long as the server runs.
    _dir: Option<tempfile::TempDir>,
}

/// Runs the demo, prints the timeline and, unless `--no-serve`, the console's address
/// and a key, then serves until Ctrl-C.
///
/// # Errors
/// The server could not start, or the API answered unexpectedly.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let demo = start(&args, args.no_serve).await?;
    print!("{}", demo.outcome.text);
    if !args.no_serve {
        println!("Serving until Ctrl-C; the simulated agent places a new call every few seconds …");
        let telemetry = telemetry(&args, &demo.server)?;
        let calling = tokio::spawn(keep_calling(args.clone(), telemetry.dispatch().clone()));
        let _ = tokio::signal::ctrl_c().await;
        calling.abort();
        // What the agent emitted before Ctrl-C is flushed to the server before it stops.
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .context("flushing OTLP export")?
            .context("flushing OTLP export")?;
    }
    demo.server.shutdown().await
}

/// Calls placed one after another while the demo serves, each with a seed of its own,
/// at the demo's speed (10 when it is 0, so that a call is seen live). Runs until
/// dropped or aborted.
pub async fn keep_calling(args: DemoArgs, dispatch: tracing::Dispatch) {
    for round in 1u64.. {
        let sim = SimConfig {
            calls: 1,
            tenants: vec![DEMO_TENANT.into()],
            seed: args.seed.wrapping_add(round),
            speed: Some(if args.speed == 0 { 10 } else { args.speed }),
        };
        callscope_sim::run(&sim)
            .with_subscriber(dispatch.clone())
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The simulated agent's OTLP export to `server`, over the protocol `args` chose.
///
/// # Errors
/// The exporter could not be set up.
pub fn telemetry(args: &DemoArgs, server: &Server) -> anyhow::Result<callscope_tracing::Telemetry> {
    let (protocol, endpoint) = if args.http {
        (
            Protocol::HttpProtobuf,
            format!("http://{}", server.http_addr),
        )
    } else {
        (Protocol::Grpc, format!("http://{}", server.grpc_addr))
    };
    CallscopeTracing::builder()
        .service_name("voice-agent-demo")
        .protocol(protocol)
        .endpoint(endpoint)
        .env_filter("info")
        .build()
        .context("setting up OTLP export")
}

/// Runs the demo on free ports, stops the server, and returns what it would print.
///
/// # Errors
/// The server could not start, or the API answered unexpectedly.
pub async fn run_quiet(args: &DemoArgs) -> anyhow::Result<DemoOutcome> {
    let demo = start(args, true).await?;
    demo.server.shutdown().await?;
    Ok(demo.outcome)
}

/// Starts a server (every listener on a free port with `any_port`, else on the
/// defaults), runs the simulated agent against it and reads one call back; the server
/// keeps running.
///
/// # Errors
/// The server could not start, or the API answered unexpectedly.
pub async fn start(args: &DemoArgs, any_port: bool) -> anyhow::Result<RunningDemo> {
    let tmp = match &args.data {
        Some(_) => None,
        None => Some(tempfile::tempdir().context("creating a temporary folder")?),
    };
    let dir = args
        .data
        .clone()
        .or_else(|| tmp.as_ref().map(|t| t.path().to_owned()))
        .context("no data folder")?;
    let key = crate::keys::generate_key();

    let mut config = Config::default();
    config.storage.path = dir.join("callscope.duckdb");
    if any_port {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        (
            config.otlp.grpc_addr,
            config.otlp.http_addr,
            config.api.addr,
        ) = (any_port, any_port, any_port);
    }
    config.api.keys.push(ApiKeyConfig {
        tenant: DEMO_TENANT.into(),
        key_sha256: key_sha256_hex(&key),
    });
    let server = Server::start(&config).await?;

    // The simulated agent exports over real OTLP, exactly as an agent service would.
    let telemetry = telemetry(args, &server)?;
    let sim = SimConfig {
        calls: args.calls.max(1),
        tenants: vec![DEMO_TENANT.into()],
        seed: args.seed,
        speed: (args.speed > 0).then_some(args.speed),
    };
    let report = callscope_sim::run(&sim)
        .with_subscriber(telemetry.dispatch().clone())
        .await;
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .context("flushing OTLP export")?
        .context("flushing OTLP export")?;

    let call = report
        .calls
        .first()
        .context("the simulation placed no call")?
        .clone();
    let http = reqwest::Client::new();
    let api = format!("http://{}", server.api_addr);
    let records = fetch_call(&http, &api, &key, &call).await?;
    let summary_json: Value = http
        .get(format!("{api}/v1/calls/{}", call.call_id))
        .bearer_auth(&key)
        .send()
        .await?
        .json()
        .await?;
    let metrics = http
        .get(format!("{api}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let internal_kept_out = metric_value(
        &metrics,
        "callscope_records_dropped_total{reason=\"internal\"}",
    );

    let text = render(
        &report,
        &call,
        &summary_json,
        &records,
        internal_kept_out,
        &api,
        &key,
        !args.no_serve,
    );
    let outcome = DemoOutcome {
        shown_call: call.call_id.clone(),
        report,
        records,
        internal_kept_out,
        text,
    };
    Ok(RunningDemo {
        outcome,
        server,
        key,
        _dir: tmp,
    })
}

/// Reads one call's customer view, oldest first. Records are committed before the
/// exporter's request is acknowledged, so they are all there once export has flushed.
async fn fetch_call(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    call: &CallReport,
) -> anyhow::Result<Vec<Value>> {
    let url = format!("{api}/v1/calls/{}/logs?order=asc&limit=1000", call.call_id);
    let mut last = None;
    for _ in 0..50 {
        let resp = http.get(&url).bearer_auth(key).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if status.is_success() {
            return Ok(body["data"].as_array().cloned().unwrap_or_default());
        }
        last = Some(format!("{status}: {body}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "the API did not return the call: {}",
        last.unwrap_or_default()
    )
}

fn metric_value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// One line of key data for a record: the fields people look for first.
fn summary(data: &Value) -> String {
    const FIRST: &[&str] = &[
        "message",
        "text",
        "tool_name",
        "destination",
        "url",
        "status_code",
        "failure_reason",
        "latency_ms",
        "attempt",
        "attempts",
        "direction",
        "from",
        "to",
        "recording_url",
        "end_to_end_ms",
        "duration_ms",
        "hangup_reason",
        "status",
    ];
    let Some(map) = data.as_object() else {
        return String::new();
    };
    let mut parts = Vec::new();
    for key in FIRST
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .chain(
            map.keys()
                .map(String::as_str)
                .filter(|k| !FIRST.contains(k)),
        )
    {
        let v = &map[key];
        let shown = match v {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        parts.push(format!("{key}={shown}"));
        if parts.len() == 4 {
            break;
        }
    }
    let mut line = parts.join(" ");
    if line.chars().count() > 90 {
        line = line.chars().take(89).collect::<String>() + "…";
    }
    line
}

#[allow(clippy::too_many_arguments)]
fn render(
    report: &SimReport,
    call: &CallReport,
    summary_json: &Value,
    records: &[Value],
    internal: u64,
    api: &str,
    key: &str,
    serving: bool,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nThe simulated agent placed {} calls and emitted {} customer events and {} internal records over OTLP.\n",
        report.calls.len(),
        report.customer_events(),
        report.internal_records()
    );
    let field = |k: &str| summary_json[k].as_str().unwrap_or("?").to_owned();
    let duration = summary_json["duration_ms"]
        .as_i64()
        .map_or_else(String::new, |ms| format!(", {:.1} s", ms as f64 / 1000.0));
    let _ = writeln!(
        out,
        "Call {} ({}, {} → {}, {}{duration}), as tenant `{}` sees it:\n",
        call.call_id,
        field("direction"),
        field("from"),
        field("to"),
        field("status"),
        call.tenant
    );
    let _ = writeln!(
        out,
        "  {:<12}  {:<8}  {:<20}  {:<28}  data",
        "time (UTC)", "level", "category", "event"
    );
    for r in records {
        let ts = r["timestamp"].as_str().unwrap_or("");
        let time = ts.get(11..23).unwrap_or(ts);
        let _ = writeln!(
            out,
            "  {:<12}  {:<8}  {:<20}  {:<28}  {}",
            time,
            r["level"].as_str().unwrap_or(""),
            r["category"].as_str().unwrap_or(""),
            r["event"].as_str().unwrap_or(""),
            summary(&r["data"])
        );
    }
    let trace = records
        .first()
        .and_then(|r| r["trace_id"].as_str())
        .unwrap_or("-");
    let _ = writeln!(out, "\n  {} records, trace id {trace}.", records.len());
    let _ = writeln!(
        out,
        "  {internal} internal records (hosts, pods, stack traces) were forwarded to the platform's own stack only and kept out of every customer view."
    );
    if serving {
        let _ = writeln!(
            out,
            "\nThe console (tenant `{tenant}`):\n\n  open     {api}/\n  API key  {key}\n\nSign in with the key to browse the calls, their conversations, logs and timelines.",
            tenant = call.tenant
        );
        let _ = writeln!(
            out,
            "\nOr the API:\n  curl -s -H 'Authorization: Bearer {key}' '{api}/v1/calls/{id}/logs?order=asc&limit=5'\n  curl -s -H 'Authorization: Bearer {key}' '{api}/v1/calls?status=failed,missed'\n  curl -s -H 'Authorization: Bearer {key}' -H 'content-type: application/json' {api}/v1/logs/search -d '{{\"min_level\": \"ERROR\", \"size\": 5}}'\n",
            id = call.call_id
        );
    }
    out
}
