//! The visibility filter over structured records: mixes of customer and internal records,
//! reserved and infrastructure keys at any depth and in any case, secrets under withheld
//! keys. Nothing withheld, and no secret, may reach a stored record.
#![no_main]

use callscope_model::keys;
use libfuzzer_sys::{
    arbitrary::{self, Arbitrary},
    fuzz_target,
};
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
    resource::v1::Resource,
};

/// What withheld keys carry: it must never be stored.
const SECRET: &str = "s3cr3t-vALUE";

const KEYS: &[&str] = &[
    "text", "turn", "tool_name", "message", "body", "details", "http", "k8s", "host",
    "host.name", "HOST.NAME", " internal.x ", "internal", "db.statement", "url.full",
    "http.request.header.authorization", "billing.card", "call.id", "tenant.id", "agent.id",
    "event.name", "callscope.visibility", "callscope.category", "service.name", "code.lineno",
    "exception.stacktrace", "user_agent.original", "cloud.region", "request.header.x",
];

#[derive(Arbitrary, Debug)]
enum Val {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Array(Vec<Val>),
    Map(Vec<(u8, Val)>),
    Empty,
}

#[derive(Arbitrary, Debug)]
struct Rec {
    visibility: u8,
    call: Option<String>,
    tenant: Option<String>,
    event: u8,
    category: Option<String>,
    severity: i32,
    severity_text: String,
    time: u64,
    trace: Vec<u8>,
    span: Vec<u8>,
    body: Option<Val>,
    attrs: Vec<(u8, Val)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    resource_tenant: Option<String>,
    records: Vec<Rec>,
}

fn key(k: u8) -> &'static str {
    KEYS[usize::from(k) % KEYS.len()]
}

/// Sender text, lower-cased so it can never spell the secret (which has capitals).
fn clean(s: &str) -> String {
    s.to_lowercase()
}

fn any(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

/// An OTLP value; under a withheld key every string is the secret.
fn value(v: &Val, depth: usize, withheld: bool) -> AnyValue {
    let s = |x: &str| if withheld { SECRET.to_owned() } else { clean(x) };
    match v {
        _ if depth > 8 => any(Value::IntValue(0)),
        Val::Str(x) => any(Value::StringValue(s(x))),
        Val::Int(i) => any(Value::IntValue(*i)),
        Val::Double(d) => any(Value::DoubleValue(*d)),
        Val::Bool(b) => any(Value::BoolValue(*b)),
        Val::Bytes(b) => any(Value::BytesValue(if withheld { SECRET.into() } else { b.clone() })),
        Val::Array(a) => any(Value::ArrayValue(ArrayValue {
            values: a.iter().map(|v| value(v, depth + 1, withheld)).collect(),
        })),
        Val::Map(m) => any(Value::KvlistValue(KeyValueList {
            values: m
                .iter()
                .map(|(k, v)| kv(key(*k), v, depth + 1, withheld))
                .collect(),
        })),
        Val::Empty => AnyValue { value: None },
    }
}

fn kv(k: &str, v: &Val, depth: usize, withheld: bool) -> KeyValue {
    // Reserved keys (`tenant.id`, `call.id`, …) are read as the record's fields, never
    // copied into `data`; the strip list's keys are withheld: they carry the secret.
    let withheld = withheld
        || (callscope_fuzz::must_withhold(k) && !keys::is_reserved(&k.trim().to_lowercase()));
    KeyValue {
        key: k.to_owned(),
        value: Some(value(v, depth, withheld)),
        ..KeyValue::default()
    }
}

fn string(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(any(Value::StringValue(v.to_owned()))),
        ..KeyValue::default()
    }
}

fuzz_target!(|input: Input| {
    let events = ["AGENT_MESSAGE_SENT", "CALL_STARTED", "NOT_IN_CATALOGUE", ""];
    let records = input
        .records
        .iter()
        .map(|r| {
            let mut attrs: Vec<KeyValue> = r.attrs.iter().map(|(k, v)| kv(key(*k), v, 0, false)).collect();
            match r.visibility % 4 {
                0 => attrs.push(string(keys::VISIBILITY, "customer")),
                1 => attrs.push(string(keys::VISIBILITY, "Customer")),
                2 => {}
                _ => {
                    attrs.push(string(keys::VISIBILITY, "customer"));
                    attrs.push(string(keys::VISIBILITY, "internal"));
                }
            }
            if let Some(c) = &r.call {
                attrs.push(string(keys::CALL_ID, &clean(c)));
            }
            if let Some(t) = &r.tenant {
                attrs.push(string(keys::TENANT_ID, &clean(t)));
            }
            if let Some(c) = &r.category {
                attrs.push(string(keys::CATEGORY, &clean(c)));
            }
            LogRecord {
                time_unix_nano: r.time,
                severity_number: r.severity,
                severity_text: clean(&r.severity_text),
                event_name: events[usize::from(r.event) % events.len()].to_owned(),
                trace_id: r.trace.clone(),
                span_id: r.span.clone(),
                body: r.body.as_ref().map(|b| value(b, 0, false)),
                attributes: attrs,
                ..LogRecord::default()
            }
        })
        .collect();
    let mut resource_attrs = vec![string("host.name", SECRET), string("k8s.pod.name", SECRET)];
    if let Some(t) = &input.resource_tenant {
        resource_attrs.push(string(keys::TENANT_ID, &clean(t)));
    }
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: resource_attrs,
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    };
    thread_local!(static FILTER: callscope_otlp::visibility::VisibilityFilter = callscope_fuzz::filter());
    let out = FILTER.with(|f| callscope_fuzz::check_filter(f, &req));
    let json = serde_json::to_string(&out.records).unwrap();
    assert!(!json.contains(SECRET), "a withheld value was stored: {json}");
});
