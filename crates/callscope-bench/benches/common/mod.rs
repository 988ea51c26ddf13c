//! A synthetic call-log data set for the store benchmarks: `calls` calls of `per_call`
//! records, `concurrent` calls at a time, spread over `tenants` tenants, written in time
//! order the way a collector receives them.
//!
//! Record `r` belongs to a *wave* of `concurrent` calls that run together; inside a wave
//! the calls' records interleave, one step of every call after another. Every record is
//! unique and the whole set is a pure function of the record index, so any slice can be
//! generated on its own (and in parallel).

#![allow(dead_code, unreachable_pub)]

use callscope_model::{Category, Level, LogRecord, TenantRecord, Timestamp};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// 2025-11-21T00:00:00Z.
pub const START_NS: i64 = 1_763_683_200_000_000_000;

/// The shape of a data set.
#[derive(Debug, Clone, Copy)]
pub struct Dataset {
    pub records: u64,
    pub per_call: u64,
    pub concurrent: u64,
    pub tenants: u64,
    /// Nanoseconds between two records of one call.
    pub step_ns: i64,
}

impl Dataset {
    /// `records` records, 100 per call, 1,000 calls at a time, a record every 3 s per
    /// call (a call lasts five minutes), all of one tenant: a search then has every
    /// stored record to consider, the worst case.
    pub fn new(records: u64) -> Self {
        Self {
            records,
            per_call: 100,
            concurrent: 1_000,
            tenants: 1,
            step_ns: 3_000_000_000,
        }
    }

    pub fn calls(&self) -> u64 {
        self.records.div_ceil(self.per_call)
    }

    pub fn call_id(c: u64) -> String {
        format!("9a0c5e1e-0000-4000-8000-{c:012x}")
    }

    pub fn tenant(&self, c: u64) -> String {
        format!("tenant-{:03}", splitmix(c) % self.tenants)
    }

    /// The (tenant, call id) of call `c`.
    pub fn call(&self, c: u64) -> (String, String) {
        (self.tenant(c), Self::call_id(c))
    }

    /// Records `first .. first + n` (clipped to the set).
    pub fn slice(&self, first: u64, n: u64) -> Vec<TenantRecord> {
        let end = (first + n).min(self.records);
        (first..end).map(|r| self.record(r)).collect()
    }

    /// Record `r`.
    pub fn record(&self, r: u64) -> TenantRecord {
        let wave_len = self.concurrent * self.per_call;
        let wave = r / wave_len;
        let k = r % wave_len;
        let step = k / self.concurrent;
        let slot = k % self.concurrent;
        let c = wave * self.concurrent + slot;
        let wave_start = START_NS + wave as i64 * self.per_call as i64 * self.step_ns;
        let ts = wave_start
            + step as i64 * self.step_ns
            + slot as i64 * (self.step_ns / self.concurrent as i64);
        let (event, category, level, data) = content(c, step, self.per_call);
        let salt = splitmix(r);
        TenantRecord {
            tenant: self.tenant(c),
            record: LogRecord {
                id: Uuid::from_u64_pair(salt, splitmix(r ^ 0x5bd1_e995)),
                timestamp: Timestamp(ts),
                level,
                category,
                event: event.to_owned(),
                call_id: Self::call_id(c),
                agent_id: Some(format!("agent-{:02}", splitmix(c) % 40)),
                trace_id: Some(format!("{:016x}{:016x}", splitmix(c), c + 1)),
                span_id: Some(format!("{:016x}", salt | 1)),
                data,
            },
        }
    }
}

const USER_TEXTS: [&str; 4] = [
    "Hi, I'd like to check the status of my order.",
    "Can you tell me when it will arrive?",
    "Actually, can I change the delivery time to the afternoon?",
    "No, that's everything, thanks for your help.",
];

const AGENT_TEXTS: [&str; 4] = [
    "Of course. Could you give me your order number, please?",
    "Your order has shipped and is expected to arrive on Thursday.",
    "I've moved the delivery window to between 2 and 6 pm.",
    "Thanks for calling Acme, have a great day.",
];

fn obj(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// What step `step` of call `c` says: like the load generator's calls.
fn content(
    c: u64,
    step: u64,
    per_call: u64,
) -> (&'static str, Category, Level, Option<Map<String, Value>>) {
    let salt = splitmix(c.wrapping_mul(131) + step);
    let pick = (salt % 4) as usize;
    if step == 0 {
        return (
            "CALL_STARTED",
            Category::CallLifecycle,
            Level::Info,
            obj(
                json!({"direction": "inbound", "from": format!("+1555{:07}", salt % 10_000_000),
                "to": "+18005550100", "campaign_id": format!("cmp-{}", salt % 12)}),
            ),
        );
    }
    if step + 1 == per_call {
        return (
            "CALL_COMPLETED",
            Category::CallLifecycle,
            Level::Info,
            obj(
                json!({"duration_ms": salt % 600_000, "hangup_reason": "caller_hangup",
                "hangup_source": "caller"}),
            ),
        );
    }
    match step % 8 {
        0 => ("USER_STARTED_SPEAKING", Category::User, Level::Debug, None),
        1 => (
            "USER_MESSAGE_RECEIVED",
            Category::User,
            Level::Info,
            obj(
                json!({"text": format!("{} {}", USER_TEXTS[pick], 40_000 + salt % 60_000),
                "confidence": 0.93}),
            ),
        ),
        2 => (
            "AGENT_MESSAGE_SENT",
            Category::Agent,
            Level::Info,
            obj(json!({"text": AGENT_TEXTS[pick]})),
        ),
        3 => (
            "TURN_LATENCY",
            Category::Metrics,
            Level::Info,
            obj(
                json!({"turn": step / 8, "stt_ms": salt % 200 + 80, "llm_ttft_ms": salt % 600 + 150,
                "tts_ttfb_ms": salt % 150 + 60, "end_to_end_ms": salt % 900 + 400}),
            ),
        ),
        4 => (
            "INTEGRATION_TOOL_INVOKED",
            Category::IntegrationTools,
            Level::Info,
            obj(json!({"tool_name": "crm_lookup", "tool_type": "http",
                "request_data": {"order_id": format!("ord-{}", salt % 1_000_000)}})),
        ),
        5 if salt.is_multiple_of(10) => (
            "INTEGRATION_TOOL_FAILED",
            Category::IntegrationTools,
            Level::Error,
            obj(
                json!({"tool_name": "crm_lookup", "failure_reason": "timeout", "latency_ms": 10_000}),
            ),
        ),
        5 => (
            "INTEGRATION_TOOL_COMPLETED",
            Category::IntegrationTools,
            Level::Info,
            obj(
                json!({"tool_name": "crm_lookup", "latency_ms": salt % 900 + 40,
                "response_data": {"status": "shipped", "eta": "Thursday"}}),
            ),
        ),
        6 if salt.is_multiple_of(7) => (
            "WEBHOOK_RESPONSE_FAILED",
            Category::Webhooks,
            Level::Warning,
            obj(
                json!({"url": "https://hooks.acme.example/calls", "status_code": 502, "attempt": 1}),
            ),
        ),
        6 => (
            "WEBHOOK_SENT",
            Category::Webhooks,
            Level::Info,
            obj(json!({"url": "https://hooks.acme.example/calls", "attempt": 1})),
        ),
        _ => (
            "PATH_TRANSITION",
            Category::ConversationalPaths,
            Level::Info,
            obj(
                json!({"from_node": format!("node-{}", step / 8), "to_node": format!("node-{}", step / 8 + 1)}),
            ),
        ),
    }
}

/// SplitMix64's finaliser.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Percentiles (ms) of durations in nanoseconds; sorts them.
pub fn percentiles(samples: &mut [u64]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = (q * samples.len() as f64).ceil() as usize;
        samples[rank.clamp(1, samples.len()) - 1] as f64 / 1e6
    };
    format!(
        "n={} p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        at(0.5),
        at(0.95),
        at(0.99),
        samples[samples.len() - 1] as f64 / 1e6
    )
}
