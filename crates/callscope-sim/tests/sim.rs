//! The simulation emits exactly what its report says.

use std::collections::HashMap;

use callscope_sim::{Direction, Outcome, SimConfig, SimReport};
use callscope_tracing::{CallscopeTracing, Processor};
use opentelemetry::{Key, logs::AnyValue};
use opentelemetry_sdk::{
    logs::{InMemoryLogExporter, SdkLogRecord},
    trace::InMemorySpanExporter,
};
use tracing::instrument::WithSubscriber as _;

fn attr(r: &SdkLogRecord, key: &'static str) -> Option<AnyValue> {
    let key = Key::from_static_str(key);
    r.attributes_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
}

fn str_attr(r: &SdkLogRecord, key: &'static str) -> Option<String> {
    match attr(r, key)? {
        AnyValue::String(s) => Some(s.as_str().to_owned()),
        other => panic!("{key}: {other:?}"),
    }
}

fn simulate(config: &SimConfig) -> (SimReport, Vec<SdkLogRecord>) {
    let logs = InMemoryLogExporter::default();
    let telemetry = CallscopeTracing::builder()
        .with_log_exporter(logs.clone())
        .with_span_exporter(InMemorySpanExporter::default())
        .processor(Processor::Simple)
        .env_filter("debug")
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report =
        rt.block_on(callscope_sim::run(config).with_subscriber(telemetry.dispatch().clone()));
    let records = logs
        .get_emitted_logs()
        .unwrap()
        .into_iter()
        .map(|l| l.record)
        .collect();
    (report, records)
}

#[test]
fn records_match_the_report_exactly() {
    let config = SimConfig {
        calls: 9,
        tenants: vec!["acme".into(), "globex".into()],
        seed: 7,
        speed: None,
    };
    let (report, records) = simulate(&config);
    assert_eq!(report.calls.len(), 9);
    assert_eq!(records.len(), report.total_records());

    let mut customer: HashMap<String, Vec<&'static str>> = HashMap::new();
    let mut internal: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let call_id = str_attr(r, "call.id").expect("every record belongs to a call");
        if str_attr(r, "callscope.visibility").as_deref() == Some("customer") {
            customer
                .entry(call_id)
                .or_default()
                .push(r.event_name().unwrap());
            assert!(
                r.attributes_iter()
                    .all(|(k, _)| !k.as_str().starts_with("internal.")),
                "internal fields stay internal"
            );
            assert!(str_attr(r, "callscope.category").is_some());
        } else {
            *internal.entry(call_id).or_default() += 1;
        }
        assert!(r.trace_context().is_some());
    }
    for (i, call) in report.calls.iter().enumerate() {
        assert_eq!(call.tenant, config.tenants[i % 2]);
        assert_eq!(
            customer[&call.call_id], call.event_codes,
            "{}",
            call.call_id
        );
        assert_eq!(call.customer_events, call.event_codes.len());
        assert_eq!(internal[&call.call_id], call.internal_records);
        assert_eq!(call.status, call.outcome.status());
        let last_terminal = call
            .event_codes
            .iter()
            .rev()
            .find(|c| c.starts_with("CALL_COMPLETED") || c.starts_with("CALL_FAILED"))
            .unwrap();
        match call.outcome {
            Outcome::Completed | Outcome::Missed => assert_eq!(*last_terminal, "CALL_COMPLETED"),
            Outcome::Failed => {
                assert_eq!(*last_terminal, "CALL_FAILED");
                assert_eq!(call.direction, Direction::Outbound);
                assert!(call.campaign_id.is_some());
                assert!(call.event_codes.contains(&"WEBHOOK_RETRY_EXHAUSTED"));
            }
        }
    }
    // Tenants and calls stay apart.
    for r in &records {
        let call_id = str_attr(r, "call.id").unwrap();
        let call = report.calls.iter().find(|c| c.call_id == call_id).unwrap();
        assert_eq!(str_attr(r, "tenant.id").unwrap(), call.tenant);
        assert_eq!(str_attr(r, "agent.id").unwrap(), call.agent_id);
    }
}

#[test]
fn the_life_of_each_kind_of_call() {
    let (report, records) = simulate(&SimConfig {
        calls: 3,
        ..SimConfig::default()
    });
    let [completed, failed, missed] = &report.calls[..] else {
        panic!("three calls")
    };
    assert_eq!(completed.outcome, Outcome::Completed);
    for code in [
        "CALL_RECEIVED",
        "CALL_STARTED",
        "RECORDING_STARTED",
        "AGENT_INITIALIZED",
        "GREETING_SENT",
        "USER_MESSAGE_RECEIVED",
        "AGENT_MESSAGE_SENT",
        "TURN_LATENCY",
        "APPROVAL_GRANTED",
        "INTEGRATION_TOOL_COMPLETED",
        "TRANSFER_TOOL_INVOKED",
        "HUMAN_PARTICIPANT_DIALING",
        "HUMAN_PARTICIPANT_ANSWERED",
        "TRANSFER_COMPLETED",
        "WEBHOOK_RESPONSE_FAILED",
        "WEBHOOK_RESPONSE_SUCCESS",
        "USAGE_REPORTED",
    ] {
        assert!(completed.event_codes.contains(&code), "{code}");
    }
    assert_eq!(completed.event_codes.last(), Some(&"CALL_COMPLETED"));
    assert_eq!(failed.event_codes.last(), Some(&"CALL_FAILED"));
    assert!(failed.event_codes.contains(&"HANGUP_TOOL_INVOKED"));
    assert_eq!(
        missed.event_codes,
        ["CALL_RECEIVED", "CALL_COMPLETED", "MISSED_CALL_SMS_SENT"]
    );

    let of = |call: &str, code: &str| -> Vec<&SdkLogRecord> {
        records
            .iter()
            .filter(|r| {
                str_attr(r, "call.id").as_deref() == Some(call)
                    && r.event_name() == Some(code)
                    && str_attr(r, "callscope.visibility").as_deref() == Some("customer")
            })
            .collect()
    };
    let tool_failed = of(&failed.call_id, "INTEGRATION_TOOL_FAILED");
    assert_eq!(
        attr(tool_failed[0], "latency_ms"),
        Some(AnyValue::Int(10_000))
    );
    let greeting = of(&completed.call_id, "GREETING_SENT");
    assert!(
        str_attr(greeting[0], "host.name").is_some(),
        "left for the collector to strip"
    );
    let done = of(&missed.call_id, "CALL_COMPLETED");
    assert_eq!(str_attr(done[0], "status").as_deref(), Some("missed"));
    let started = of(&failed.call_id, "CALL_STARTED");
    assert_eq!(
        str_attr(started[0], "direction").as_deref(),
        Some("outbound")
    );

    // Internal records carry infrastructure details, never customer visibility.
    assert!(records.iter().any(|r| {
        str_attr(r, "callscope.visibility").is_none() && str_attr(r, "k8s.pod.name").is_some()
    }));
    assert!(
        records
            .iter()
            .any(|r| str_attr(r, "exception.stacktrace").is_some())
    );
}

#[test]
fn the_seed_decides_everything() {
    let config = SimConfig::default();
    let (a, _) = simulate(&config);
    let (b, _) = simulate(&config);
    assert_eq!(a, b);
    let (c, _) = simulate(&SimConfig { seed: 43, ..config });
    assert_ne!(a.calls[0].call_id, c.calls[0].call_id);
}

#[test]
fn a_paced_call_spreads_its_records_and_turns_over_its_duration() {
    let (report, records) = simulate(&SimConfig {
        calls: 1,
        speed: Some(100),
        ..SimConfig::default()
    });
    let call = &report.calls[0];
    assert_eq!(call.outcome, Outcome::Completed);
    let times: Vec<std::time::SystemTime> = records
        .iter()
        .filter(|r| str_attr(r, "callscope.visibility").as_deref() == Some("customer"))
        .map(|r| r.timestamp().unwrap())
        .collect();
    let spread = times
        .iter()
        .max()
        .unwrap()
        .duration_since(*times.iter().min().unwrap())
        .unwrap();
    // Ringing, two or three turns with speech, approval, tool and transfer: at least
    // 19.6 simulated seconds, 196 ms at speed 100.
    assert!(spread.as_millis() >= 190, "{spread:?}");
    let turns: Vec<&SdkLogRecord> = records
        .iter()
        .filter(|r| r.event_name() == Some("TURN_LATENCY"))
        .collect();
    assert!(turns.len() >= 2);
    for (n, r) in turns.iter().enumerate() {
        assert_eq!(attr(r, "turn"), Some(AnyValue::Int(n as i64 + 1)));
        let Some(AnyValue::Int(e2e)) = attr(r, "end_to_end_ms") else {
            panic!("{r:?}")
        };
        let Some(AnyValue::Int(ttft)) = attr(r, "llm_ttft_ms") else {
            panic!("{r:?}")
        };
        // stt ≥ 120, first token ≥ 250, rest ≥ 200, tts ≥ 80 simulated ms.
        assert!(e2e >= 6 && ttft >= 2 && ttft < e2e, "{e2e} {ttft}");
    }
}
