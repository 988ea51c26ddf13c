//! End to end: an agent instrumented only with callscope-tracing (turn and stage spans,
//! its own call events, plain tracing spans) exports through opentelemetry-otlp over gRPC
//! and HTTP to a real server, and the customer API serves the call's turns and spans as
//! the agent lived them; internal spans never appear and a retried export stores nothing
//! twice.

mod support;

use std::time::Duration;

use callscope_collector::testing::{SpanBuilder, trace_request};
use callscope_tracing::{
    CallscopeTracing, Protocol, call_event, call_span, first_output, stage_span, turn_span,
};
use prost::Message as _;
use serde_json::Value;
use support::{Harness, metric};
use tracing::{Instrument as _, instrument::WithSubscriber as _};

const CALL: &str = "7d1e0c52-8a51-4c4e-9b1f-2f7f6c1d0a01";

/// Sleeps in a stage, long enough to measure in milliseconds.
async fn work(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The agent: three turns; turn 3 reports its own latency.
async fn agent() {
    let call = call_span!(call_id = CALL, tenant_id = "acme", agent_id = "support-bot");
    async {
        call_event!(
            CALL_STARTED,
            direction = "inbound",
            from = "+15550001",
            to = "+15550002"
        );
        for n in 1..=3_i64 {
            async {
                async { work(20).await }.instrument(stage_span!(stt)).await;
                call_event!(USER_MESSAGE_RECEIVED, text = format!("question {n}"));
                async {
                    work(30).await;
                    first_output();
                    work(30).await;
                }
                .instrument(stage_span!(llm, model = "small"))
                .await;
                // Internal work: a plain tracing span, never stored.
                async { work(1).await }
                    .instrument(tracing::info_span!("retrieval", host.name = "node-7"))
                    .await;
                async {
                    work(15).await;
                    first_output();
                }
                .instrument(stage_span!(tts))
                .await;
                call_event!(AGENT_MESSAGE_SENT, text = format!("answer {n}"));
                if n == 3 {
                    call_event!(TURN_LATENCY, turn = 3, end_to_end_ms = 4321);
                }
            }
            .instrument(turn_span!(turn = n))
            .await;
        }
        call_event!(
            USAGE_REPORTED,
            llm_input_tokens = 900,
            llm_output_tokens = 120
        );
    }
    .instrument(call)
    .await;
}

fn num(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

async fn check(protocol: Protocol) {
    let h = Harness::start().await;
    let endpoint = match protocol {
        Protocol::Grpc => format!("http://{}", h.server().grpc_addr),
        _ => format!("http://{}", h.server().http_addr),
    };
    let telemetry = CallscopeTracing::builder()
        .service_name("timeline-agent")
        .protocol(protocol)
        .endpoint(endpoint)
        .build()
        .unwrap();
    agent().with_subscriber(telemetry.dispatch().clone()).await;
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap()
        .expect("export flushed");

    // Turns: one row per turn, stages measured from the spans, the agent's own report kept.
    let (status, turns) = h
        .get(&format!("/v1/calls/{CALL}/turns"), Some("acme"))
        .await;
    assert_eq!(status, 200, "{turns}");
    assert_eq!(turns["call_id"], CALL);
    let rows = turns["data"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{turns}");
    for (i, t) in rows.iter().enumerate() {
        let n = i as i64 + 1;
        assert_eq!(num(&t["turn"]), n);
        assert_eq!(t["user_text"], format!("question {n}"));
        assert_eq!(t["agent_text"], format!("answer {n}"));
        assert_eq!(t["interrupted"], false);
        if n < 3 {
            let (stt, ttft, ttfb, e2e) = (
                num(&t["stt_ms"]),
                num(&t["llm_ttft_ms"]),
                num(&t["tts_ttfb_ms"]),
                num(&t["end_to_end_ms"]),
            );
            assert!(stt >= 20 && ttft >= 30 && ttfb >= 15, "{t}");
            assert!(ttft < 60, "the first token, not the whole llm stage: {t}");
            assert!(e2e >= stt + 60 + ttfb, "{t}");
        } else {
            assert_eq!(
                num(&t["end_to_end_ms"]),
                4321,
                "the agent's own TURN_LATENCY"
            );
            assert_eq!(t["stt_ms"], Value::Null);
        }
    }
    let summary = &turns["summary"];
    assert_eq!(num(&summary["turn_count"]), 3);
    assert_eq!(num(&summary["end_to_end_ms"]["max"]), 4321);

    let (_, call) = h.get(&format!("/v1/calls/{CALL}"), Some("acme")).await;
    assert_eq!(num(&call["turn_count"]), 3);
    assert_eq!(call["latency_p50_ms"], summary["end_to_end_ms"]["p50"]);
    assert_eq!(call["latency_p95_ms"], summary["end_to_end_ms"]["p95"]);
    assert_eq!(num(&call["latency_max_ms"]), 4321);
    assert_eq!(
        (
            num(&call["llm_input_tokens"]),
            num(&call["llm_output_tokens"])
        ),
        (900, 120)
    );
    assert_eq!(call["tts_characters"], Value::Null);

    // Spans: the turn and stage spans only, by start time, nested as the agent nested them.
    let (status, spans) = h
        .get(&format!("/v1/calls/{CALL}/spans"), Some("acme"))
        .await;
    assert_eq!(status, 200);
    let data = spans["data"].as_array().unwrap();
    let names: Vec<&str> = data.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "turn", "stt", "llm", "tts", "turn", "stt", "llm", "tts", "turn", "stt", "llm", "tts"
        ],
        "no call span, no internal span"
    );
    let starts: Vec<&str> = data
        .iter()
        .map(|s| s["start_time"].as_str().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    let trace = data[0]["trace_id"].as_str().unwrap();
    for chunk in data.chunks(4) {
        let turn = &chunk[0];
        assert!(turn["attributes"]["turn"].is_i64(), "{turn}");
        for stage in &chunk[1..] {
            assert_eq!(stage["parent_span_id"], turn["span_id"]);
            assert_eq!(stage["trace_id"], trace, "one trace: the call's");
        }
        assert!(turn["duration_ms"].as_f64().unwrap() >= 65.0, "{turn}");
        assert_eq!(chunk[2]["attributes"]["model"], "small");
    }
    for s in data {
        assert_eq!(s["status"], "unset");
        assert_eq!(s["kind"], "internal");
        let attrs = s["attributes"].as_object().unwrap();
        assert!(
            attrs.keys().all(|k| !k.starts_with("callscope.")
                && k != "call.id"
                && k != "tenant.id"
                && k != "agent.id"
                && !k.starts_with("host.")),
            "{s}"
        );
    }

    // Scoped like the log list.
    for path in ["spans", "turns"] {
        let (status, body) = h
            .get(&format!("/v1/calls/{CALL}/{path}"), Some("globex"))
            .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (404, Some("CALL_NOT_FOUND"))
        );
        let (status, _) = h.get(&format!("/v1/calls/nope/{path}"), Some("acme")).await;
        assert_eq!(status, 404);
    }

    // A retried export stores each span once and says so in /metrics.
    let request = trace_request(
        [("tenant.id", "acme")],
        [SpanBuilder::customer("tool", 9)
            .call(CALL)
            .trace(&[3; 16])
            .attr("tool_name", "crm")],
    );
    let url = format!("http://{}/v1/traces", h.server().http_addr);
    for _ in 0..2 {
        let resp = h
            .http
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    }
    let (_, spans) = h
        .get(&format!("/v1/calls/{CALL}/spans"), Some("acme"))
        .await;
    let tools = spans["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "tool")
        .count();
    assert_eq!(tools, 1);
    let m = h.metrics().await;
    assert_eq!(
        metric(
            &m,
            "callscope_ingest_committed_spans_total{outcome=\"duplicate\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        metric(&m, "callscope_spans_dropped_total{reason=\"internal\"}") >= 4.0,
        "{m}"
    );
    assert_eq!(metric(&m, "callscope_spans_accepted_total"), 14.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_and_spans_over_grpc() {
    check(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_and_spans_over_http() {
    check(Protocol::HttpProtobuf).await;
}
