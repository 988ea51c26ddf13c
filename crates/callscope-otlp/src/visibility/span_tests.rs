//! The span rules, on small hand-built requests, with spans shaped like callscope's own
//! and like those of Pipecat and LiveKit Agents.

use callscope_model::{SpanKind, SpanStatus};
use serde_json::json;

use super::*;
use crate::testing::{SpanBuilder, T0, trace_request};

fn filter() -> VisibilityFilter {
    VisibilityFilter::new(&VisibilityConfig::default()).unwrap()
}

fn apply(f: &VisibilityFilter, spans: Vec<SpanBuilder>) -> SpanFilterOutput {
    f.apply_spans(&trace_request([("host.name", "n1")], spans))
}

#[test]
fn a_customer_span_is_stored_with_its_own_attributes_only() {
    let f = filter();
    let out = apply(
        &f,
        vec![
            SpanBuilder::customer("llm", 2)
                .call("c1")
                .tenant("acme")
                .attr("agent.id", "bot")
                .attr("model", "small")
                .attr("host.name", "node-7")
                .attr("internal.prompt", "secret")
                .parent(1)
                .time(T0, T0 + 2_500_000)
                .status(2, "timeout")
                .event("token", "text", "hi"),
        ],
    );
    assert_eq!((out.rejected, out.dropped_internal), (0, 0), "{out:?}");
    let s = &out.spans[0];
    assert_eq!(s.tenant, "acme");
    let s = &s.span;
    assert_eq!(
        (s.call_id.as_str(), s.agent_id.as_deref()),
        ("c1", Some("bot"))
    );
    assert_eq!(s.trace_id, "01".repeat(16));
    assert_eq!(s.span_id, "02".repeat(8));
    assert_eq!(s.parent_span_id.as_deref(), Some("01".repeat(8).as_str()));
    assert_eq!((s.kind, s.status), (SpanKind::Internal, SpanStatus::Error));
    assert_eq!(s.status_message.as_deref(), Some("timeout"));
    assert!((s.duration_ms() - 2.5).abs() < 1e-9);
    assert_eq!(
        serde_json::Value::Object(s.attributes.clone()),
        json!({"model": "small"}),
        "reserved, stripped, resource and scope attributes and events never reach it"
    );
    assert_eq!(f.stats().spans_accepted(), 1);
    assert_eq!(f.stats().accepted(), 0, "records count apart");
}

#[test]
fn spans_fail_closed_like_records() {
    let f = filter();
    let out = apply(
        &f,
        vec![
            SpanBuilder::bare("turn", 1).call("c1").tenant("acme"),
            SpanBuilder::customer("turn", 2)
                .tenant("acme")
                .trace(&[9; 16]),
            SpanBuilder::customer("turn", 3).call("c1"),
            SpanBuilder::customer("turn", 4)
                .call("c1")
                .tenant("acme")
                .trace(&[0; 16]),
            SpanBuilder::bare("turn", 5)
                .call("c1")
                .tenant("acme")
                .attr(keys::VISIBILITY, "Customer"),
        ],
    );
    assert!(out.spans.is_empty(), "{out:?}");
    assert_eq!((out.dropped_internal, out.rejected), (2, 3));
    assert_eq!(
        out.error_message,
        "3 customer spans rejected: 1 missing call.id, 1 missing tenant.id, \
         1 missing or invalid trace or span id"
    );
    assert_eq!(f.stats().spans_dropped_internal(), 2);
    assert_eq!(f.stats().spans_rejected(RejectReason::MissingTenant), 1);
    let mut page = callscope_model::metrics::PromWriter::new();
    f.render(&mut page);
    let text = page.finish();
    assert!(
        text.contains("callscope_spans_rejected_total{reason=\"invalid_span_id\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("callscope_spans_dropped_total{reason=\"internal\"} 2"),
        "{text}"
    );
}

#[test]
fn a_span_id_is_its_tenant_trace_and_span_ids() {
    let f = filter();
    let a = apply(
        &f,
        vec![SpanBuilder::customer("tts", 3).call("c1").tenant("acme")],
    );
    let retried = apply(
        &f,
        vec![
            SpanBuilder::customer("tts", 3)
                .call("c1")
                .tenant("acme")
                .time(T0 + 5, T0 + 9),
        ],
    );
    assert_eq!(a.spans[0].span.id, retried.spans[0].span.id);
    let other = apply(
        &f,
        vec![SpanBuilder::customer("tts", 4).call("c1").tenant("acme")],
    );
    assert_ne!(a.spans[0].span.id, other.spans[0].span.id);
    let other_tenant = apply(
        &f,
        vec![SpanBuilder::customer("tts", 3).call("c1").tenant("globex")],
    );
    assert_ne!(a.spans[0].span.id, other_tenant.spans[0].span.id);
}

/// The config of an operator exposing a framework's turn spans.
fn framework(names: &[&str], call_keys: &[&str]) -> VisibilityFilter {
    VisibilityFilter::new(&VisibilityConfig {
        default_tenant: "acme".into(),
        customer_span_names: names.iter().map(|s| (*s).to_owned()).collect(),
        span_call_id_attributes: call_keys.iter().map(|s| (*s).to_owned()).collect(),
        ..VisibilityConfig::default()
    })
    .unwrap()
}

#[test]
fn pipecat_turns_are_stored_by_name_with_the_conversation_as_call() {
    // Pipecat: `conversation` and `turn` spans carry `conversation.id`; the service spans
    // `stt`, `llm`, `tts` under a turn carry none. Its setup-time spans stay internal.
    let f = framework(&["turn", "stt", "llm", "tts"], &["conversation.id"]);
    let out = apply(
        &f,
        vec![
            SpanBuilder::bare("stt", 3)
                .parent(2)
                .attr("gen_ai.system", "deepgram")
                .attr("transcript", "Where is my order?"),
            SpanBuilder::bare("llm", 4)
                .parent(2)
                .attr("gen_ai.request.model", "gpt-4o")
                .attr("metrics.ttfb", 0.41),
            SpanBuilder::bare("tts", 5)
                .parent(2)
                .attr("metrics.ttfb", 0.12),
            SpanBuilder::bare("turn", 2)
                .parent(1)
                .attr("turn.number", 1)
                .attr("turn.was_interrupted", false)
                .attr("conversation.id", "conv-9"),
            SpanBuilder::bare("conversation", 1).attr("conversation.id", "conv-9"),
            SpanBuilder::bare("llm", 6)
                .trace(&[7; 16])
                .attr("gen_ai.request.model", "gpt-4o"),
        ],
    );
    let names: Vec<_> = out.spans.iter().map(|s| s.span.name.as_str()).collect();
    assert_eq!(names, ["stt", "llm", "tts", "turn"]);
    assert!(
        out.spans
            .iter()
            .all(|s| s.span.call_id == "conv-9" && s.tenant == "acme")
    );
    assert_eq!(
        out.dropped_internal, 1,
        "the conversation span is not on the list"
    );
    assert_eq!(
        (out.rejected, out.error_message.as_str()),
        (1, "1 customer span rejected: 1 missing call.id"),
        "an llm span of another trace names no call"
    );
    let turn = &out.spans[3].span;
    assert_eq!(
        turn.attributes.get("conversation.id"),
        None,
        "it is the call id"
    );
    assert_eq!(turn.attributes.get("turn.number"), Some(&json!(1)));
}

#[test]
fn livekit_turns_are_stored_by_name_and_prefix() {
    // LiveKit Agents: `agent_session` (with `lk.room_name`), `user_turn`, `agent_turn`,
    // `llm_node`, `tts_node`, `function_tool`.
    let f = framework(
        &[
            "user_turn",
            "agent_turn",
            "llm_node",
            "tts_node",
            "function_*",
        ],
        &["lk.room_name"],
    );
    let out = apply(
        &f,
        vec![
            SpanBuilder::bare("agent_session", 1).attr("lk.room_name", "room-42"),
            SpanBuilder::bare("user_turn", 2)
                .parent(1)
                .attr("lk.user_transcript", "hi"),
            SpanBuilder::bare("agent_turn", 3)
                .parent(1)
                .attr("lk.speech_id", "sp-1"),
            SpanBuilder::bare("llm_node", 4).parent(3),
            SpanBuilder::bare("tts_node", 5)
                .parent(3)
                .attr("lk.input_text", "Hello!"),
            SpanBuilder::bare("function_tool", 6)
                .parent(4)
                .attr("lk.function_tool.name", "lookup_order"),
        ],
    );
    assert_eq!(out.rejected, 0, "{out:?}");
    assert_eq!(out.dropped_internal, 1);
    let names: Vec<_> = out.spans.iter().map(|s| s.span.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "user_turn",
            "agent_turn",
            "llm_node",
            "tts_node",
            "function_tool"
        ]
    );
    assert!(out.spans.iter().all(|s| s.span.call_id == "room-42"));
}

#[test]
fn a_trace_naming_two_calls_lends_none() {
    let f = framework(&["turn", "llm"], &["conversation.id"]);
    let out = apply(
        &f,
        vec![
            SpanBuilder::bare("turn", 1).attr("conversation.id", "a"),
            SpanBuilder::bare("turn", 2).attr("conversation.id", "b"),
            SpanBuilder::bare("llm", 3),
        ],
    );
    assert_eq!((out.spans.len(), out.rejected), (2, 1));
}

#[test]
fn span_names_are_checked_at_start_up() {
    for (names, key) in [
        (vec![""], "visibility.customer_span_names[0]"),
        (vec!["ok", "a*b"], "visibility.customer_span_names[1]"),
    ] {
        let err = VisibilityFilter::new(&VisibilityConfig {
            customer_span_names: names.into_iter().map(str::to_owned).collect(),
            ..VisibilityConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with(key), "{err}");
    }
    let err = VisibilityFilter::new(&VisibilityConfig {
        span_call_id_attributes: vec![" x".into()],
        ..VisibilityConfig::default()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("visibility.span_call_id_attributes[0]"),
        "{err}"
    );
    let err = toml::from_str::<VisibilityConfig>("customer_spans = []").unwrap_err();
    assert!(err.to_string().contains("customer_spans"), "{err}");
}
