//! `callscope-loadgen`: realistic call-log traffic over OTLP/gRPC or OTLP/HTTP, at full
//! speed or at a fixed rate, measuring what the collector acknowledges.
//!
//! Each sender is one agent-service instance with its own connection. It keeps a number
//! of calls going at once; each call lives for about 100 records (start, recording,
//! greeting, conversational turns with latency metrics, tool calls, webhooks, usage,
//! completion) carrying the attributes `callscope-tracing` puts on call events, built
//! with the shared OTLP builders (`callscope_collector::testing`) from the model's keys
//! and catalogue. A
//! request holds the next `batch` records of the sender's live calls, interleaved the
//! way an SDK batch processor would export them. Every record is unique: call ids carry
//! a per-run nonce, times come from the clock and advance per record.
//!
//! Without `--rate` every sender sends its next request as soon as the previous one is
//! answered (closed loop, the maximum rate). With `--rate` the senders send on a fixed
//! schedule and latency is measured from the scheduled time, so a server that falls
//! behind shows it in the latency rather than hiding it.

use std::{
    collections::BTreeMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use callscope_collector::testing::{IntoAnyValue as _, LogBuilder, kv, map};
use callscope_model::{EventSpec, Visibility, events, keys};
use opentelemetry_proto::tonic::{
    collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse, logs_service_client::LogsServiceClient,
    },
    common::v1::{AnyValue, InstrumentationScope, KeyValue},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};
use prost::Message as _;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

/// The wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC (`LogsService/Export`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/logs`).
    Http,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "OTLP/gRPC",
            Protocol::Http => "OTLP/HTTP",
        })
    }
}

/// `callscope-loadgen` options.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// The protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Where to send, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318`
    /// (HTTP; `/v1/logs` is appended). Default: the local collector's port for the
    /// protocol.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Concurrent senders (each with its own connection and one request in flight).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Seconds to measure.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds to send before measuring.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Target rate in records per second over all senders; without it, as fast as the
    /// server answers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Records per call.
    #[arg(long, default_value_t = 100)]
    pub records_per_call: usize,
    /// Calls each sender has going at once.
    #[arg(long, default_value_t = 50)]
    pub calls_per_sender: usize,
    /// Tenants the calls are spread over.
    #[arg(long, default_value_t = 20)]
    pub tenants: usize,
    /// Percentage of records sent without customer visibility (internal records, which
    /// the collector forwards but does not store).
    #[arg(long, default_value_t = 0)]
    pub internal_percent: u8,
    /// Ingest token (`Authorization: Bearer …`), when the collector requires one.
    #[arg(long, env = "CALLSCOPE_INGEST_TOKEN")]
    pub token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl LoadgenArgs {
    /// The options these arguments describe.
    #[must_use]
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            protocol: self.protocol,
            endpoint: self
                .endpoint
                .clone()
                .unwrap_or_else(|| match self.protocol {
                    Protocol::Grpc => "http://127.0.0.1:4317".to_owned(),
                    Protocol::Http => "http://127.0.0.1:4318".to_owned(),
                }),
            concurrency: self.concurrency.max(1),
            batch: self.batch.max(1),
            duration: Duration::from_secs_f64(self.duration.max(0.1)),
            warmup: Duration::from_secs_f64(self.warmup.max(0.0)),
            rate: self.rate.filter(|r| *r > 0.0),
            workload: Workload {
                records_per_call: self.records_per_call.max(1),
                calls_per_sender: self.calls_per_sender.max(1),
                tenants: self.tenants.max(1),
                internal_percent: self.internal_percent.min(100),
            },
            token: self.token.clone(),
        }
    }
}

/// What the generated traffic looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Records per call.
    pub records_per_call: usize,
    /// Calls a sender has going at once.
    pub calls_per_sender: usize,
    /// Tenants the calls are spread over.
    pub tenants: usize,
    /// Percentage of internal (not customer-visible) records.
    pub internal_percent: u8,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            records_per_call: 100,
            calls_per_sender: 50,
            tenants: 20,
            internal_percent: 0,
        }
    }
}

/// A load run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadOptions {
    /// The protocol.
    pub protocol: Protocol,
    /// The base URL.
    pub endpoint: String,
    /// Concurrent senders.
    pub concurrency: usize,
    /// Records per request.
    pub batch: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to send before measuring.
    pub warmup: Duration,
    /// Records per second over all senders; `None`: as fast as acknowledged.
    pub rate: Option<f64>,
    /// The traffic.
    pub workload: Workload,
    /// Ingest token.
    #[serde(skip)]
    pub token: Option<String>,
}

/// What a load run measured. Only requests answered inside the measured window count.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's settings.
    pub options: LoadOptions,
    /// Seconds measured.
    pub seconds: f64,
    /// Requests answered with success.
    pub acked_requests: u64,
    /// Records in those requests.
    pub acked_records: u64,
    /// Records acknowledged in the whole run, warm-up and stragglers included: what the
    /// collector should now hold (internal records aside).
    pub all_acked_records: u64,
    /// Acknowledged records per second.
    pub records_per_sec: f64,
    /// Records the collector reported as rejected (OTLP `partial_success`).
    pub rejected_records: u64,
    /// Failed requests by code: `UNAVAILABLE` (gRPC), `HTTP 429`, `transport`, ….
    pub errors: BTreeMap<String, u64>,
    /// Acknowledgement latency percentiles, in milliseconds: from sending (or, at a
    /// fixed rate, from the scheduled send time) to the answer.
    pub latency_ms: Percentiles,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of `samples` (microseconds); sorts them.
    #[must_use]
    pub fn of_micros(samples: &mut [u32]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            // Nearest rank.
            let rank = (q * samples.len() as f64).ceil() as usize;
            f64::from(samples[rank.clamp(1, samples.len()) - 1]) / 1000.0
        };
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: f64::from(samples[samples.len() - 1]) / 1000.0,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let rate = o
            .rate
            .map_or_else(|| "max rate".to_owned(), |r| format!("{r:.0} records/s"));
        writeln!(
            f,
            "{} {}: {} senders, {} records/request, {rate}, {:.1} s measured after {:.1} s warm-up",
            o.protocol,
            o.endpoint,
            o.concurrency,
            o.batch,
            self.seconds,
            o.warmup.as_secs_f64()
        )?;
        writeln!(
            f,
            "  acknowledged: {} records in {} requests = {:.0} records/s",
            self.acked_records, self.acked_requests, self.records_per_sec
        )?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "  ack latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        if self.rejected_records > 0 {
            writeln!(f, "  rejected records: {}", self.rejected_records)?;
        }
        if self.errors.is_empty() {
            writeln!(f, "  errors: none")
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            writeln!(f, "  errors: {}", list.join(", "))
        }
    }
}

/// `callscope-loadgen`: runs and prints the report.
///
/// # Errors
/// The endpoint is not a valid URL.
pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    let report = run_load(&args.options()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

/// One sender's tally.
#[derive(Default)]
struct Tally {
    requests: u64,
    records: u64,
    all_records: u64,
    rejected: u64,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
}

/// A connection to the collector.
enum Client {
    Grpc(LogsServiceClient<Channel>),
    Http {
        client: reqwest::Client,
        url: String,
    },
}

enum Outcome {
    Acked { rejected: u64 },
    Failed(String),
}

impl Client {
    async fn connect(o: &LoadOptions) -> anyhow::Result<Self> {
        match o.protocol {
            Protocol::Grpc => {
                let endpoint = Endpoint::from_shared(o.endpoint.clone())
                    .with_context(|| format!("endpoint `{}`", o.endpoint))?
                    .tcp_nodelay(true)
                    .connect_timeout(Duration::from_secs(5));
                Ok(Client::Grpc(LogsServiceClient::new(
                    endpoint.connect_lazy(),
                )))
            }
            Protocol::Http => Ok(Client::Http {
                client: reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(1)
                    .build()?,
                url: format!("{}/v1/logs", o.endpoint.trim_end_matches('/')),
            }),
        }
    }

    async fn send(&mut self, request: ExportLogsServiceRequest, token: Option<&str>) -> Outcome {
        match self {
            Client::Grpc(client) => {
                let mut request = tonic::Request::new(request);
                request.set_timeout(Duration::from_secs(60));
                if let Some(t) = token
                    && let Ok(v) = format!("Bearer {t}").parse()
                {
                    request.metadata_mut().insert("authorization", v);
                }
                match client.export(request).await {
                    Ok(response) => Outcome::Acked {
                        rejected: rejected(response.get_ref()),
                    },
                    Err(status) => Outcome::Failed(
                        callscope_collector::grpc_code_name(status.code()).to_owned(),
                    ),
                }
            }
            Client::Http { client, url } => {
                let mut builder = client
                    .post(url.as_str())
                    .timeout(Duration::from_secs(60))
                    .header("content-type", "application/x-protobuf");
                if let Some(t) = token {
                    builder = builder.bearer_auth(t);
                }
                match builder.body(request.encode_to_vec()).send().await {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.bytes().await.unwrap_or_default();
                        if status.is_success() {
                            let rejected = ExportLogsServiceResponse::decode(&body[..])
                                .map_or(0, |r| self::rejected(&r));
                            Outcome::Acked { rejected }
                        } else {
                            Outcome::Failed(format!("HTTP {}", status.as_u16()))
                        }
                    }
                    Err(e) if e.is_timeout() => Outcome::Failed("timeout".into()),
                    Err(_) => Outcome::Failed("transport".into()),
                }
            }
        }
    }
}

/// Records the collector reported as rejected in an answer's `partial_success`.
fn rejected(response: &ExportLogsServiceResponse) -> u64 {
    response
        .partial_success
        .as_ref()
        .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0))
}

/// Runs the load and measures it.
///
/// # Errors
/// The endpoint is not a valid URL, or a sender task panicked.
pub async fn run_load(o: &LoadOptions) -> anyhow::Result<Report> {
    let o = Arc::new(o.clone());
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    // At a fixed rate, each sender sends one request per `interval`, the senders
    // staggered evenly across it.
    let interval = o
        .rate
        .map(|r| Duration::from_secs_f64(o.batch as f64 * o.concurrency as f64 / r));

    let mut tasks = Vec::with_capacity(o.concurrency);
    for sender in 0..o.concurrency {
        let o = Arc::clone(&o);
        let mut client = Client::connect(&o).await?;
        tasks.push(tokio::spawn(async move {
            let mut traffic = CallTraffic::new(nonce, sender as u64, &o.workload);
            let mut tally = Tally::default();
            let offset = interval.map_or(Duration::ZERO, |i| {
                i.mul_f64(sender as f64 / o.concurrency as f64)
            });
            let mut next = start + offset;
            loop {
                if interval.is_some() {
                    tokio::time::sleep_until(next.into()).await;
                }
                let sent_at = interval.map_or_else(Instant::now, |_| next);
                if sent_at >= end {
                    break;
                }
                let request = traffic.request(o.batch);
                let outcome = client.send(request, o.token.as_deref()).await;
                let done = Instant::now();
                if let Some(i) = interval {
                    next += i;
                }
                let measured = done >= measure_from && done < end;
                if matches!(outcome, Outcome::Acked { .. }) {
                    tally.all_records += o.batch as u64;
                }
                match outcome {
                    Outcome::Acked { rejected } if measured => {
                        tally.requests += 1;
                        tally.records += o.batch as u64;
                        tally.rejected += rejected;
                        let us = done.saturating_duration_since(sent_at).as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                    Outcome::Acked { .. } => {}
                    Outcome::Failed(code) => {
                        if measured {
                            *tally.errors.entry(code).or_default() += 1;
                        }
                        // What an exporter does: back off before the next attempt.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                if done >= end {
                    break;
                }
            }
            tally
        }));
    }

    let mut total = Tally::default();
    for t in tasks {
        let t = t.await.context("a sender failed")?;
        total.requests += t.requests;
        total.records += t.records;
        total.all_records += t.all_records;
        total.rejected += t.rejected;
        for (k, v) in t.errors {
            *total.errors.entry(k).or_default() += v;
        }
        total.latencies_us.extend(t.latencies_us);
    }
    let seconds = o.duration.as_secs_f64();
    Ok(Report {
        options: (*o).clone(),
        seconds,
        acked_requests: total.requests,
        acked_records: total.records,
        all_acked_records: total.all_records,
        records_per_sec: total.records as f64 / seconds,
        rejected_records: total.rejected,
        errors: total.errors,
        latency_ms: Percentiles::of_micros(&mut total.latencies_us),
    })
}

/// One live call of a sender.
struct LiveCall {
    call_id: String,
    tenant: String,
    agent: String,
    trace_id: [u8; 16],
    step: usize,
    /// Picks texts and numbers, so calls differ.
    salt: u64,
}

/// Generates a sender's traffic: requests of interleaved records from its live calls.
pub struct CallTraffic {
    nonce: u64,
    sender: u64,
    workload: Workload,
    calls: Vec<LiveCall>,
    next_call: u64,
    cursor: usize,
    records: u64,
    last_ns: u64,
    resource: Resource,
}

impl fmt::Debug for CallTraffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallTraffic")
            .field("sender", &self.sender)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

fn s(v: impl Into<String>) -> AnyValue {
    v.into().into_any_value()
}

fn i(v: i64) -> AnyValue {
    v.into_any_value()
}

fn f(v: f64) -> AnyValue {
    v.into_any_value()
}

const USER_TEXTS: [&str; 8] = [
    "Hi, I'd like to check the status of my order.",
    "It's the one I placed last Tuesday, order number",
    "Can you tell me when it will arrive?",
    "No, the delivery address is still the same.",
    "Actually, can I change the delivery time to the afternoon?",
    "That works for me, thank you.",
    "Could you also send me a confirmation by text message?",
    "No, that's everything, thanks for your help.",
];

const AGENT_TEXTS: [&str; 8] = [
    "Of course. Could you give me your order number, please?",
    "Thank you. Let me look that up for you.",
    "Your order has shipped and is expected to arrive on Thursday.",
    "I can see the delivery address on file ends in Elm Street.",
    "I've moved the delivery window to between 2 and 6 pm.",
    "You're welcome. Is there anything else I can help with?",
    "Done: a confirmation is on its way to the number on your account.",
    "Thanks for calling Acme, have a great day.",
];

impl CallTraffic {
    /// The traffic of sender `sender` in a run identified by `nonce`.
    #[must_use]
    pub fn new(nonce: u64, sender: u64, workload: &Workload) -> Self {
        let resource = Resource {
            attributes: vec![
                kv("service.name", s("voice-agent")),
                kv("service.version", s("2.4.1")),
                kv("service.instance.id", s(format!("voice-agent-{sender}"))),
                kv("host.name", s(format!("agent-node-{}", sender % 7))),
                kv("k8s.pod.name", s(format!("voice-agent-7d9f-{sender:04x}"))),
                kv("deployment.environment", s("production")),
                kv("telemetry.sdk.name", s("opentelemetry")),
                kv("telemetry.sdk.language", s("rust")),
            ],
            ..Resource::default()
        };
        let mut t = Self {
            nonce,
            sender,
            workload: workload.clone(),
            calls: Vec::new(),
            next_call: 0,
            cursor: 0,
            records: 0,
            last_ns: 0,
            resource,
        };
        t.calls = (0..workload.calls_per_sender.max(1))
            .map(|_| t.new_call())
            .collect();
        // Stagger the calls so they do not all start and end together.
        let n = t.calls.len();
        let per_call = t.workload.records_per_call;
        for (k, c) in t.calls.iter_mut().enumerate() {
            c.step = k * per_call / n;
        }
        t
    }

    fn new_call(&mut self) -> LiveCall {
        let k = self.next_call;
        self.next_call += 1;
        let salt = splitmix(self.nonce ^ (self.sender << 40) ^ k);
        let tenant_n = salt % self.workload.tenants as u64;
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&salt.to_be_bytes());
        trace_id[8..].copy_from_slice(&(k + 1).to_be_bytes());
        LiveCall {
            // UUID-shaped: run nonce, sender, call number.
            call_id: format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                (self.nonce >> 32) as u32,
                (self.nonce >> 16) as u16,
                self.sender & 0xfff,
                (self.sender >> 12) & 0xfff,
                k
            ),
            tenant: format!("tenant-{tenant_n:03}"),
            agent: format!("agent-{:02}", salt % 40),
            trace_id,
            step: 0,
            salt,
        }
    }

    /// Records generated so far.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The next request: `batch` records from the live calls, round robin.
    pub fn request(&mut self, batch: usize) -> ExportLogsServiceRequest {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        // Times never repeat within a sender, even when the clock stands still.
        let mut t = now.max(self.last_ns + 1);
        let mut records = Vec::with_capacity(batch);
        for _ in 0..batch {
            let c = self.cursor % self.calls.len();
            self.cursor = self.cursor.wrapping_add(1);
            records.push(self.record(c, t));
            t += 1_000;
            if self.calls[c].step >= self.workload.records_per_call {
                self.calls[c] = self.new_call();
            }
        }
        self.last_ns = t;
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "callscope-tracing".to_owned(),
                        version: "0.1.0".to_owned(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    /// The next record of live call `c`, at time `t`.
    fn record(&mut self, c: usize, t: u64) -> LogRecord {
        self.records += 1;
        let internal = self.workload.internal_percent > 0
            && splitmix(self.records ^ self.nonce) % 100
                < u64::from(self.workload.internal_percent);
        let per_call = self.workload.records_per_call;
        let call = &mut self.calls[c];
        let step = call.step;
        call.step += 1;
        let salt = call.salt.wrapping_add(step as u64);
        let turn = (step.saturating_sub(3) / 8) as i64;
        let pick = (salt % 8) as usize;

        let (event, severity, fields): (EventSpec, i32, Vec<KeyValue>) = if step == 0 {
            (
                events::CALL_STARTED,
                9,
                vec![
                    kv(
                        "direction",
                        s(if salt.is_multiple_of(3) {
                            "outbound"
                        } else {
                            "inbound"
                        }),
                    ),
                    kv("from", s(format!("+1555{:07}", salt % 10_000_000))),
                    kv("to", s("+18005550100")),
                    kv("campaign_id", s(format!("cmp-{}", salt % 12))),
                ],
            )
        } else if step == 1 {
            (
                events::RECORDING_STARTED,
                9,
                vec![kv(
                    "recording_url",
                    s(format!(
                        "https://recordings.example.com/{}.wav",
                        call.call_id
                    )),
                )],
            )
        } else if step == 2 {
            (
                events::GREETING_SENT,
                9,
                vec![kv(
                    "text",
                    s("Hi, this is Ava from Acme. How can I help you today?"),
                )],
            )
        } else if step + 2 == per_call {
            (
                events::USAGE_REPORTED,
                9,
                vec![
                    kv("llm_input_tokens", i((salt % 9000) as i64 + 1000)),
                    kv("llm_output_tokens", i((salt % 2000) as i64 + 200)),
                    kv("tts_characters", i((salt % 4000) as i64 + 500)),
                    kv("stt_seconds", f((salt % 300) as f64 + 0.5)),
                ],
            )
        } else if step + 1 >= per_call {
            (
                events::CALL_COMPLETED,
                9,
                vec![
                    kv("duration_ms", i((salt % 600_000) as i64 + 30_000)),
                    kv("ringing_duration_ms", i((salt % 8_000) as i64)),
                    kv("bot_duration_ms", i((salt % 500_000) as i64 + 20_000)),
                    kv("billed_duration_ms", i((salt % 600_000) as i64 + 60_000)),
                    kv("hangup_reason", s("caller_hangup")),
                    kv("hangup_source", s("caller")),
                ],
            )
        } else {
            match (step - 3) % 8 {
                0 => (events::USER_STARTED_SPEAKING, 5, vec![]),
                1 => (
                    events::USER_MESSAGE_RECEIVED,
                    9,
                    vec![
                        kv(
                            "text",
                            s(format!("{} {}", USER_TEXTS[pick], 40_000 + salt % 60_000)),
                        ),
                        kv("confidence", f(0.8 + (salt % 200) as f64 / 1000.0)),
                    ],
                ),
                2 => (
                    events::AGENT_MESSAGE_SENT,
                    9,
                    vec![kv("text", s(AGENT_TEXTS[pick]))],
                ),
                3 => (
                    events::TURN_LATENCY,
                    9,
                    vec![
                        kv("turn", i(turn)),
                        kv("stt_ms", i((salt % 200) as i64 + 80)),
                        kv("llm_ttft_ms", i((salt % 600) as i64 + 150)),
                        kv("tts_ttfb_ms", i((salt % 150) as i64 + 60)),
                        kv("end_to_end_ms", i((salt % 900) as i64 + 400)),
                    ],
                ),
                4 => (
                    events::INTEGRATION_TOOL_INVOKED,
                    9,
                    vec![
                        kv("tool_name", s("crm_lookup")),
                        kv("tool_type", s("http")),
                        kv(
                            "request_data",
                            map([
                                ("order_id", format!("ord-{}", salt % 1_000_000)),
                                ("fields", "status,eta".to_owned()),
                            ]),
                        ),
                    ],
                ),
                5 => (
                    events::INTEGRATION_TOOL_COMPLETED,
                    9,
                    vec![
                        kv("tool_name", s("crm_lookup")),
                        kv("latency_ms", i((salt % 900) as i64 + 40)),
                        kv(
                            "response_data",
                            map([("status", "shipped"), ("eta", "Thursday")]),
                        ),
                    ],
                ),
                6 => (
                    events::WEBHOOK_SENT,
                    9,
                    vec![
                        kv("url", s("https://hooks.acme.example/calls")),
                        kv("attempt", i(1)),
                    ],
                ),
                _ => (
                    events::PATH_TRANSITION,
                    9,
                    vec![
                        kv("from_node", s(format!("node-{turn}"))),
                        kv("to_node", s(format!("node-{}", turn + 1))),
                    ],
                ),
            }
        };

        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&(salt | 1).to_be_bytes());
        let record = LogBuilder::bare()
            .call(&call.call_id)
            .tenant(&call.tenant)
            .agent(&call.agent);
        let record = if internal {
            record
        } else {
            record.attr(keys::VISIBILITY, Visibility::Customer.as_str())
        };
        let mut record = record
            .category(event.category.as_str())
            .attrs(fields)
            .time(t)
            .observed(t + 250_000)
            .severity(severity)
            .severity_text(if severity < 9 { "DEBUG" } else { "INFO" })
            .event_name(event.code)
            .trace(&call.trace_id, &span_id)
            .build();
        // Sampled, as an SDK marks the records of a sampled trace.
        record.flags = 1;
        record
    }
}

/// A fast 64-bit mixer (SplitMix64's finaliser).
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    use super::*;

    #[test]
    fn records_are_unique_and_calls_have_their_length() {
        let w = Workload {
            records_per_call: 100,
            calls_per_sender: 7,
            tenants: 3,
            internal_percent: 0,
        };
        let mut a = CallTraffic::new(1, 0, &w);
        let mut b = CallTraffic::new(1, 1, &w);
        let mut seen = HashSet::new();
        let mut per_call: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..10 {
            for req in [a.request(100), b.request(100)] {
                let bytes = req.encode_to_vec();
                let records = &req.resource_logs[0].scope_logs[0].log_records;
                assert_eq!(records.len(), 100);
                assert!(!bytes.is_empty());
                for r in records {
                    let call = match &r.attributes[0].value.as_ref().unwrap().value {
                        Some(Value::StringValue(c)) => c.clone(),
                        _ => panic!("call.id first"),
                    };
                    assert!(seen.insert((call.clone(), r.time_unix_nano)));
                    *per_call.entry(call).or_default() += 1;
                }
            }
        }
        assert!(per_call.values().all(|n| *n <= 100));
        assert!(per_call.values().any(|n| *n == 100));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        let p = Percentiles::of_micros(&mut v);
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
    }
}
