//! Turn and stage spans: customer-visible spans with the call's identity, the turn
//! number on the events inside, and the `TURN_LATENCY` the layer emits when a turn ends.

mod common;

use std::time::Duration;

use callscope_tracing::{call_event, call_span, first_output, stage_span, turn_span};
use common::{Harness, attr, s, str_attr};
use opentelemetry::{Value, logs::AnyValue};
use opentelemetry_sdk::trace::SpanData;

fn span_attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn int(record: &opentelemetry_sdk::logs::SdkLogRecord, key: &str) -> i64 {
    match attr(record, key) {
        Some(AnyValue::Int(i)) => i,
        other => panic!("{key}: {other:?}"),
    }
}

fn one_turn(h: &Harness, stt: u64, llm_first: u64, llm_rest: u64, tts_first: u64) {
    h.run(|| {
        let call = call_span!(call_id = "c-7", tenant_id = "acme", agent_id = "bot");
        let _in_call = call.enter();
        let turn = turn_span!(turn = 3, user = "caller");
        let _in_turn = turn.enter();
        call_event!(USER_MESSAGE_RECEIVED, text = "Where is my order?");
        {
            let span = stage_span!(stt);
            let _g = span.enter();
            std::thread::sleep(Duration::from_millis(stt));
        }
        {
            let span = stage_span!(llm, model = "small");
            let _g = span.enter();
            std::thread::sleep(Duration::from_millis(llm_first));
            first_output();
            std::thread::sleep(Duration::from_millis(llm_rest));
            first_output(); // a later mark changes nothing
        }
        {
            let span = stage_span!(tts);
            let _g = span.enter();
            std::thread::sleep(Duration::from_millis(tts_first));
            first_output();
        }
        call_event!(AGENT_MESSAGE_SENT, text = "It ships today.");
        let plain = tracing::info_span!("retrieval");
        let _g = plain.enter();
    });
}

#[test]
fn turn_and_stage_spans_are_customer_spans_of_the_call() {
    let h = Harness::new();
    one_turn(&h, 5, 5, 5, 5);
    for name in ["turn", "stt", "llm", "tts"] {
        let span = h.span(name);
        assert_eq!(
            span_attr(&span, "callscope.visibility"),
            Some(Value::from("customer")),
            "{name}"
        );
        assert_eq!(
            span_attr(&span, "call.id"),
            Some(Value::from("c-7")),
            "{name}"
        );
        assert_eq!(
            span_attr(&span, "tenant.id"),
            Some(Value::from("acme")),
            "{name}"
        );
        assert_eq!(
            span_attr(&span, "agent.id"),
            Some(Value::from("bot")),
            "{name}"
        );
    }
    let turn = h.span("turn");
    assert_eq!(span_attr(&turn, "turn"), Some(Value::I64(3)));
    assert_eq!(span_attr(&turn, "user"), Some(Value::from("caller")));
    assert_eq!(h.span("llm").parent_span_id, turn.span_context.span_id());
    let plain = h.span("retrieval");
    assert_eq!(
        span_attr(&plain, "callscope.visibility"),
        None,
        "plain spans stay internal"
    );
    assert_eq!(span_attr(&h.span("call"), "callscope.visibility"), None);
}

#[test]
fn a_closed_turn_reports_its_latency_by_stage() {
    let h = Harness::new();
    one_turn(&h, 30, 40, 60, 20);
    let records = h.records();
    let events: Vec<_> = records.iter().map(|r| r.event_name().unwrap()).collect();
    assert_eq!(
        events,
        [
            "USER_MESSAGE_RECEIVED",
            "AGENT_MESSAGE_SENT",
            "TURN_LATENCY"
        ]
    );
    for r in &records {
        assert_eq!(int(r, "turn"), 3, "every event of the turn carries it");
        assert_eq!(str_attr(r, "call.id").as_deref(), Some("c-7"));
        assert_eq!(attr(r, "callscope.visibility"), Some(s("customer")));
    }
    let latency = &records[2];
    assert_eq!(attr(latency, "callscope.category"), Some(s("METRICS")));
    let stt = int(latency, "stt_ms");
    let ttft = int(latency, "llm_ttft_ms");
    let ttfb = int(latency, "tts_ttfb_ms");
    let e2e = int(latency, "end_to_end_ms");
    assert!((30..100).contains(&stt), "stt {stt}");
    assert!(
        (40..100).contains(&ttft),
        "the first token, not the whole llm span: {ttft}"
    );
    assert!((20..80).contains(&ttfb), "ttfb {ttfb}");
    assert!(e2e >= stt + ttft + 60 + ttfb, "e2e {e2e}");
    let turn = h.span("turn");
    let (trace, span) = (turn.span_context.trace_id(), turn.span_context.span_id());
    assert_eq!(
        latency.trace_context().map(|t| (t.trace_id, t.span_id)),
        Some((trace, span)),
        "the record belongs to the turn span"
    );
}

#[test]
fn a_turn_latency_the_agent_emitted_wins() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-8", tenant_id = "acme");
        let _in_call = call.enter();
        let turn = turn_span!(turn = 1);
        let _in_turn = turn.enter();
        call_event!(TURN_LATENCY, turn = 1, end_to_end_ms = 777);
    });
    let records = h.records();
    assert_eq!(records.len(), 1, "the layer emitted no second one");
    assert_eq!(int(&records[0], "end_to_end_ms"), 777);
}

#[test]
fn the_batch_processor_builds_the_same_turn_records() {
    let h = Harness::batched();
    one_turn(&h, 1, 1, 1, 1);
    h.flush();
    let events: Vec<_> = h
        .records()
        .iter()
        .map(|r| (r.event_name().unwrap().to_owned(), int(r, "turn")))
        .collect();
    assert_eq!(
        events,
        [
            ("USER_MESSAGE_RECEIVED".to_owned(), 3),
            ("AGENT_MESSAGE_SENT".to_owned(), 3),
            ("TURN_LATENCY".to_owned(), 3)
        ]
    );
}
