//! A simulated voice agent, instrumented only through `callscope-tracing`, that places
//! several concurrent calls with the full life of real ones: inbound and outbound calls,
//! recording, greeting, conversational turns with latency metrics, an integration tool
//! that succeeds and one that times out, an approval, a transfer to a human, webhooks
//! that succeed, retry and are exhausted, hang-up, usage, and completed, failed and
//! missed outcomes. Next to the customer events it emits internal-only records carrying
//! infrastructure details, and one customer event carrying a key the collector must
//! strip (`host.name`).
//!
//! Each conversational turn is a [`turn_span!`] with `stt`, `llm` and `tts`
//! [`stage_span!`]s, so the call has a timeline: its turn and stage spans are stored for
//! the customer, and the layer emits each turn's `TURN_LATENCY` from them.
//!
//! [`run`] returns a [`SimReport`] saying exactly what each call emitted, so end-to-end
//! tests can compare the stored customer view with it record for record. Everything but
//! the measured stage latencies is decided by the seed. By default nothing sleeps (the
//! calls run as fast as they can, and their stages take microseconds); with
//! [`SimConfig::speed`] every simulated wait (ringing, speech, transcription, the LLM's
//! first token, text-to-speech, tools, transfers) really passes, divided by the speed,
//! so records and spans are spread over the call as they would be on a live call (at
//! speed 1, exactly; at speed 20, twenty times faster).
//!
//! ```
//! use callscope_sim::{Outcome, SimConfig};
//! use callscope_tracing::{CallscopeTracing, Processor};
//! use opentelemetry_sdk::{logs::InMemoryLogExporter, trace::InMemorySpanExporter};
//! use tracing::instrument::WithSubscriber as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let logs = InMemoryLogExporter::default();
//! let telemetry = CallscopeTracing::builder()
//!     .with_log_exporter(logs.clone())
//!     .with_span_exporter(InMemorySpanExporter::default())
//!     .processor(Processor::Simple)
//!     .build()?;
//!
//! let config = SimConfig { calls: 3, ..SimConfig::default() };
//! let report = callscope_sim::run(&config)
//!     .with_subscriber(telemetry.dispatch().clone())
//!     .await;
//!
//! assert_eq!(report.calls.len(), 3);
//! assert_eq!(report.calls[2].outcome, Outcome::Missed);
//! assert_eq!(logs.get_emitted_logs()?.len(), report.total_records());
//! # Ok(()) }
//! ```

use std::{fmt, time::SystemTime};

use callscope_model::{Category, Level};
use callscope_tracing::{call_event, call_span, first_output, stage_span, turn_span};
use rand::{Rng, SeedableRng, rngs::StdRng};
use tracing::{Instrument as _, instrument::WithSubscriber as _};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// How many calls to place, all at once.
    pub calls: usize,
    /// Tenants, assigned to calls round robin (call `i` belongs to `tenants[i % len]`).
    /// Must not be empty.
    pub tenants: Vec<String>,
    /// Decides every id, number, text and latency.
    pub seed: u64,
    /// How much faster than real time the simulated waits pass; `None` (or 0): they
    /// don't pass at all. A completed call lasts about 20 simulated seconds.
    pub speed: Option<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            calls: 6,
            tenants: vec!["acme".to_owned()],
            seed: 42,
            speed: None,
        }
    }
}

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A caller rang the agent.
    Inbound,
    /// The agent rang out (a campaign).
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`, as the `direction` field says.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a simulated call ends. Call `i` gets `[Completed, Failed, Missed][i % 3]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Inbound, full conversation, tool, approval, transfer; ends with `CALL_COMPLETED`.
    Completed,
    /// Outbound; a tool times out, webhooks are exhausted, the agent hangs up; ends with
    /// `CALL_FAILED`.
    Failed,
    /// Inbound, never answered; ends with `CALL_COMPLETED` and `status = "missed"`.
    Missed,
}

impl Outcome {
    /// The call status the customer API should show.
    #[must_use]
    pub fn status(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Missed => "missed",
        }
    }
}

/// What one simulated call emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallReport {
    /// The `call.id` (a UUID).
    pub call_id: String,
    /// The `tenant.id`.
    pub tenant: String,
    /// The `agent.id`.
    pub agent_id: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The caller's number (`from`).
    pub from: String,
    /// The called number (`to`).
    pub to: String,
    /// The campaign of an outbound call.
    pub campaign_id: Option<String>,
    /// How the call ended.
    pub outcome: Outcome,
    /// The expected call status (`outcome.status()`).
    pub status: &'static str,
    /// Customer-visible records emitted (`event_codes.len()`).
    pub customer_events: usize,
    /// Internal records emitted: plain tracing events (all at INFO or above, so the count
    /// is exact unless the filter is stricter than `info`) and the companion records that
    /// carry `internal.*` fields.
    pub internal_records: usize,
    /// The customer event codes, in emission order.
    pub event_codes: Vec<&'static str>,
}

/// What the whole simulation emitted, calls in the order they were configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimReport {
    /// One entry per call.
    pub calls: Vec<CallReport>,
}

impl SimReport {
    /// Customer records over all calls.
    #[must_use]
    pub fn customer_events(&self) -> usize {
        self.calls.iter().map(|c| c.customer_events).sum()
    }

    /// Internal records over all calls (inside call spans).
    #[must_use]
    pub fn internal_records(&self) -> usize {
        self.calls.iter().map(|c| c.internal_records).sum()
    }

    /// Every log record the simulation emitted, customer and internal.
    #[must_use]
    pub fn total_records(&self) -> usize {
        self.customer_events() + self.internal_records()
    }
}

/// Places `config.calls` calls concurrently on the current Tokio runtime and waits for
/// them all. Each call runs in a spawned task that carries its call span and the
/// current tracing dispatcher, so the calls go wherever the caller's subscriber sends
/// them.
///
/// # Panics
///
/// When `config.tenants` is empty, or a call task panics.
pub async fn run(config: &SimConfig) -> SimReport {
    assert!(!config.tenants.is_empty(), "SimConfig::tenants is empty");
    let tasks: Vec<_> = (0..config.calls)
        .map(|i| {
            let mut plan = CallPlan::new(config, i);
            plan.speed = config.speed.filter(|s| *s > 0);
            let span = call_span!(
                call_id = plan.call_id,
                tenant_id = plan.tenant,
                agent_id = plan.agent_id
            );
            tokio::spawn(simulate(plan).instrument(span).with_current_subscriber())
        })
        .collect();
    let mut calls = Vec::with_capacity(tasks.len());
    for task in tasks {
        calls.push(task.await.expect("simulated call panicked"));
    }
    SimReport { calls }
}

/// Everything decided about a call before it starts.
#[derive(Debug)]
struct CallPlan {
    call_id: String,
    tenant: String,
    agent_id: String,
    direction: Direction,
    outcome: Outcome,
    from: String,
    to: String,
    campaign_id: Option<String>,
    rng: StdRng,
    speed: Option<u32>,
}

impl CallPlan {
    fn new(config: &SimConfig, index: usize) -> Self {
        let mut rng =
            StdRng::seed_from_u64(config.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let call_id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let outcome = [Outcome::Completed, Outcome::Failed, Outcome::Missed][index % 3];
        let direction = match outcome {
            Outcome::Failed => Direction::Outbound,
            Outcome::Completed | Outcome::Missed => Direction::Inbound,
        };
        let agent_number = "+14155550100".to_owned();
        let customer_number = format!("+1646555{:04}", rng.random_range(0..10_000));
        let (from, to) = match direction {
            Direction::Inbound => (customer_number, agent_number),
            Direction::Outbound => (agent_number, customer_number),
        };
        Self {
            call_id: call_id.to_string(),
            tenant: config.tenants[index % config.tenants.len()].clone(),
            agent_id: format!("agent-{}", ["support", "sales", "billing"][index % 3]),
            direction,
            outcome,
            from,
            to,
            campaign_id: (direction == Direction::Outbound)
                .then(|| format!("campaign-{}", rng.random_range(100..1000))),
            rng,
            speed: None,
        }
    }
}

/// Counts what a call emits while it emits it.
#[derive(Debug, Default)]
struct Tally {
    codes: Vec<&'static str>,
    internal: usize,
    last_micros: u128,
}

impl Tally {
    /// Keeps consecutive customer events at least a microsecond apart, so a store that
    /// keeps microseconds orders them as they were emitted.
    fn tick(&mut self) {
        loop {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            if now > self.last_micros {
                self.last_micros = now;
                return;
            }
            std::hint::spin_loop();
        }
    }
}

/// Emits a catalogue call event and tallies it.
macro_rules! emit {
    ($tally:expr, level: $level:expr, $code:ident $(, $($rest:tt)*)?) => {{
        $tally.tick();
        call_event!(level: $level, $code $(, $($rest)*)?);
        $tally.codes.push(callscope_model::events::$code.code);
    }};
    ($tally:expr, $code:ident $(, $($rest:tt)*)?) => {{
        $tally.tick();
        call_event!($code $(, $($rest)*)?);
        $tally.codes.push(callscope_model::events::$code.code);
    }};
}

/// Emits an internal record (a plain tracing macro) and tallies it.
macro_rules! internal {
    ($tally:expr, $macro:ident!($($args:tt)*)) => {{
        tracing::$macro!($($args)*);
        $tally.internal += 1;
    }};
}

const HOST: &str = "agent-node-3";
const POD: &str = "voice-agent-7d9f8-x2x4q";

/// Lets other calls run between steps, as real I/O would.
async fn pause() {
    tokio::task::yield_now().await;
}

/// Lets `ms` simulated milliseconds pass: `ms / speed` real ones when the simulation is
/// paced, none otherwise (just a yield).
async fn wait(plan: &CallPlan, ms: i64) {
    match plan.speed {
        Some(speed) => {
            let real = u64::try_from(ms).unwrap_or(0) * 1_000 / u64::from(speed);
            tokio::time::sleep(std::time::Duration::from_micros(real)).await;
        }
        None => pause().await,
    }
}

async fn simulate(mut plan: CallPlan) -> CallReport {
    let mut t = Tally::default();
    internal!(
        t,
        info!(
            host.name = HOST,
            k8s.pod.name = POD,
            "Call assigned to runner."
        )
    );
    match plan.outcome {
        Outcome::Completed => completed_call(&mut plan, &mut t).await,
        Outcome::Failed => failed_call(&mut plan, &mut t).await,
        Outcome::Missed => missed_call(&plan, &mut t),
    }
    CallReport {
        call_id: plan.call_id,
        tenant: plan.tenant,
        agent_id: plan.agent_id,
        direction: plan.direction,
        from: plan.from,
        to: plan.to,
        campaign_id: plan.campaign_id,
        outcome: plan.outcome,
        status: plan.outcome.status(),
        customer_events: t.codes.len(),
        internal_records: t.internal,
        event_codes: t.codes,
    }
}

const USER_LINES: &[&str] = &[
    "Hi, I'd like to check my order status.",
    "It's order 4471.",
    "Can I talk to a person, please?",
    "Yes, that works.",
];
const AGENT_LINES: &[&str] = &[
    "Sure, I can help with that. What's the order number?",
    "Thanks, let me look that up.",
    "Of course, connecting you now.",
    "Great, anything else?",
];

/// Opening shared by answered calls: connect, record, initialise, greet.
async fn open(plan: &mut CallPlan, t: &mut Tally) {
    if plan.direction == Direction::Inbound {
        emit!(t, CALL_RECEIVED, from = %plan.from, to = %plan.to);
    }
    wait(plan, 4_000).await; // ringing
    emit!(
        t,
        CALL_STARTED,
        direction = plan.direction.as_str(),
        from = %plan.from,
        to = %plan.to,
        campaign_id = plan.campaign_id.as_deref().unwrap_or(""),
    );
    pause().await;
    emit!(
        t,
        RECORDING_STARTED,
        recording_url = %format!("https://recordings.example/{}.wav", plan.call_id),
    );
    emit!(
        t,
        AGENT_INITIALIZED,
        model = "voice-llm-small",
        voice = "alloy"
    );
    internal!(
        t,
        info!(
            host.name = HOST,
            process.pid = 4242,
            "Agent pipeline warmed up."
        )
    );
    // A customer event carrying an infrastructure key the collector must strip.
    emit!(
        t,
        GREETING_SENT,
        text = "Hello! Thanks for calling. How can I help?",
        host.name = HOST
    );
    pause().await;
}

/// One conversational turn; `n` counts from 1. The caller speaks, then the turn span
/// times transcription, the LLM's first token and text-to-speech's first byte; the layer
/// emits its `TURN_LATENCY` when it closes. Then the agent speaks.
async fn turn(plan: &mut CallPlan, t: &mut Tally, n: usize) {
    let speech_ms: i64 = plan.rng.random_range(1_500..4_000);
    let stt_ms: i64 = plan.rng.random_range(120..260);
    let llm_ms: i64 = plan.rng.random_range(250..700);
    let llm_rest_ms: i64 = plan.rng.random_range(200..600);
    let tts_ms: i64 = plan.rng.random_range(80..200);
    let reply_ms: i64 = plan.rng.random_range(2_000..5_000);
    let confidence = f64::from(plan.rng.random_range(80..100_u8)) / 100.0;
    let user = USER_LINES[(n - 1) % USER_LINES.len()];
    let reply = AGENT_LINES[(n - 1) % AGENT_LINES.len()];
    wait(plan, speech_ms).await;
    let plan = &*plan;
    async {
        async { wait(plan, stt_ms).await }
            .instrument(stage_span!(stt, provider = "stt-fast"))
            .await;
        emit!(
            t,
            USER_MESSAGE_RECEIVED,
            text = user,
            confidence = confidence
        );
        internal!(
            t,
            info!(
                stt.provider = "stt-fast",
                audio_ms = speech_ms,
                "Transcribed."
            )
        );
        async {
            wait(plan, llm_ms).await;
            first_output();
            wait(plan, llm_rest_ms).await;
        }
        .instrument(stage_span!(llm, model = "voice-llm-small"))
        .await;
        async {
            wait(plan, tts_ms).await;
            first_output();
        }
        .instrument(stage_span!(tts, voice = "alloy"))
        .await;
        emit!(
            t,
            AGENT_MESSAGE_SENT,
            text = reply,
            internal.trace_note = "prompt v7"
        );
        t.internal += 1; // the companion record carrying internal.trace_note
        // The layer's TURN_LATENCY is stamped after this.
        t.tick();
    }
    .instrument(turn_span!(turn = n as i64))
    .await;
    t.codes.push(callscope_model::events::TURN_LATENCY.code);
    t.tick();
    wait(plan, reply_ms).await;
}

/// Webhook deliveries run in their own task that carries the call span.
async fn deliver_webhook(
    mut t: Tally,
    url: &'static str,
    failures: u32,
    max_attempts: u32,
) -> Tally {
    emit!(t, WEBHOOK_QUEUED, url = url, webhook_type = "call.ended");
    for attempt in 1..=max_attempts {
        pause().await;
        emit!(t, WEBHOOK_SENT, url = url, attempt = i64::from(attempt));
        if attempt <= failures {
            emit!(
                t,
                WEBHOOK_RESPONSE_FAILED,
                url = url,
                status_code = 503,
                latency_ms = 1200,
                attempt = i64::from(attempt),
            );
            internal!(
                t,
                warn!(
                    url.full = url,
                    server.address = "hooks.example",
                    "Webhook attempt failed."
                )
            );
        } else {
            emit!(
                t,
                WEBHOOK_RESPONSE_SUCCESS,
                url = url,
                status_code = 200,
                latency_ms = 85
            );
            return t;
        }
    }
    emit!(
        t,
        WEBHOOK_RETRY_EXHAUSTED,
        url = url,
        attempts = i64::from(max_attempts)
    );
    t
}

/// Runs a webhook delivery in a spawned task, then folds its tally back in.
async fn webhook(t: &mut Tally, url: &'static str, failures: u32, max_attempts: u32) {
    let task = std::mem::take(t);
    let done = tokio::spawn(
        deliver_webhook(task, url, failures, max_attempts)
            .in_current_span()
            .with_current_subscriber(),
    )
    .await
    .expect("webhook task panicked");
    *t = done;
}

async fn completed_call(plan: &mut CallPlan, t: &mut Tally) {
    open(plan, t).await;
    let turns = plan.rng.random_range(2..=3);
    for n in 1..=turns {
        turn(plan, t, n).await;
    }
    // An integration tool behind an approval, answered quickly.
    emit!(
        t,
        INTEGRATION_TOOL_INVOKED,
        tool_name = "order_lookup",
        tool_type = "http",
        request_data = r#"{"order":4471}"#
    );
    emit!(t, APPROVAL_REQUESTED, tool_name = "order_lookup");
    wait(plan, 1_200).await;
    emit!(
        t,
        APPROVAL_GRANTED,
        tool_name = "order_lookup",
        approver = "policy"
    );
    let latency: i64 = plan.rng.random_range(150..400);
    wait(plan, latency).await;
    emit!(
        t,
        INTEGRATION_TOOL_COMPLETED,
        tool_name = "order_lookup",
        response_data = r#"{"status":"shipped"}"#,
        latency_ms = latency
    );
    // Transfer to a human.
    emit!(t, TRANSFER_TOOL_INVOKED, destination = "+14155550199");
    emit!(t, HUMAN_PARTICIPANT_DIALING);
    wait(plan, 6_000).await;
    emit!(t, HUMAN_PARTICIPANT_ANSWERED);
    emit!(t, TRANSFER_COMPLETED);
    // The call-ended webhook fails once, then succeeds on retry.
    webhook(t, "https://hooks.example/call-ended", 1, 3).await;
    usage(plan, t);
    let bot_ms: i64 = plan.rng.random_range(60_000..240_000);
    emit!(
        t,
        CALL_COMPLETED,
        duration_ms = bot_ms + 30_000 + 4_000,
        ringing_duration_ms = 4_000,
        bot_duration_ms = bot_ms,
        billed_duration_ms = (bot_ms + 34_000 + 59_999) / 60_000 * 60_000,
        hangup_reason = "transferred",
        hangup_source = "agent",
    );
}

async fn failed_call(plan: &mut CallPlan, t: &mut Tally) {
    open(plan, t).await;
    turn(plan, t, 1).await;
    // An integration tool that times out after 10 s (simulated: the latency is a field).
    emit!(
        t,
        INTEGRATION_TOOL_INVOKED,
        tool_name = "crm_update",
        tool_type = "mcp",
        request_data = r#"{"lead":"L-88"}"#
    );
    wait(plan, 10_000).await;
    internal!(
        t,
        error!(
            exception.stacktrace = "crm::client::send\n  at tokio::time::timeout",
            internal.trace_note = "crm pool exhausted",
            "CRM call timed out."
        )
    );
    emit!(
        t,
        INTEGRATION_TOOL_FAILED,
        tool_name = "crm_update",
        failure_reason = "timeout after 10000 ms",
        latency_ms = 10_000
    );
    emit!(t, level: Level::Warning, AGENT_MESSAGE_SENT, text = "Sorry, I can't update that right now.");
    emit!(t, HANGUP_TOOL_INVOKED, reason = "tool failure");
    emit!(t, HANGUP_TOOL_COMPLETED);
    // The status webhook fails on every attempt.
    webhook(t, "https://hooks.example/status", 3, 3).await;
    usage(plan, t);
    emit!(
        t,
        CALL_FAILED,
        failure_reason = "integration_timeout",
        hangup_reason = "agent_hangup",
        hangup_source = "agent"
    );
}

fn missed_call(plan: &CallPlan, t: &mut Tally) {
    emit!(t, CALL_RECEIVED, from = %plan.from, to = %plan.to);
    internal!(
        t,
        info!(
            sip.response = 480,
            host.name = HOST,
            "No answer from runner pool."
        )
    );
    emit!(
        t,
        CALL_COMPLETED,
        status = "missed",
        duration_ms = 25_000,
        ringing_duration_ms = 25_000,
        bot_duration_ms = 0,
        billed_duration_ms = 0,
        hangup_reason = "no_answer",
        hangup_source = "caller",
    );
    // A sender's own event outside the catalogue, with its category.
    t.tick();
    call_event!(custom "MISSED_CALL_SMS_SENT", category: Category::Workflows, to = %plan.from);
    t.codes.push("MISSED_CALL_SMS_SENT");
}

fn usage(plan: &mut CallPlan, t: &mut Tally) {
    let input: i64 = plan.rng.random_range(800..4_000);
    emit!(
        t,
        USAGE_REPORTED,
        llm_input_tokens = input,
        llm_output_tokens = input / 4,
        tts_characters = input / 2,
        stt_seconds = f64::from(plan.rng.random_range(30..240_u16)),
    );
}
