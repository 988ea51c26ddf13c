//! What the call-log layer emits, record by record.

mod common;

use callscope_model::{Category, Level};
use callscope_tracing::{call_event, call_span};
use common::{Harness, attr, attrs, s, str_attr};
use opentelemetry::logs::{AnyValue, Severity};

#[test]
fn catalogue_event_becomes_an_exact_customer_record() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme", agent_id = "support");
        let _g = call.enter();
        let reply = "How can I help?";
        call_event!(AGENT_MESSAGE_SENT, text = %reply, "Agent replied");
    });
    let records = h.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.event_name(), Some("AGENT_MESSAGE_SENT"));
    assert_eq!(r.severity_number(), Some(Severity::Info));
    assert_eq!(r.severity_text(), Some("INFO"));
    assert_eq!(r.body(), Some(&s("Agent replied")));
    assert!(r.timestamp().is_some());
    assert_eq!(
        attrs(r),
        [
            ("call.id".to_owned(), s("c-1")),
            ("tenant.id".to_owned(), s("acme")),
            ("agent.id".to_owned(), s("support")),
            ("text".to_owned(), s("How can I help?")),
            ("callscope.visibility".to_owned(), s("customer")),
            ("callscope.category".to_owned(), s("AGENT")),
        ]
    );
}

#[test]
fn fields_keep_their_types() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme");
        let _g = call.enter();
        let url = "https://hooks.example/x";
        call_event!(
            WEBHOOK_RESPONSE_FAILED,
            url = %url,
            status_code = 503,
            latency_ms = 12.5,
            attempt = 2_u64,
            retryable = true,
            reason = ?Some("busy"),
            "huge" = u64::MAX,
        );
    });
    let r = &h.records()[0];
    assert_eq!(attr(r, "url"), Some(s("https://hooks.example/x")));
    assert_eq!(attr(r, "status_code"), Some(AnyValue::Int(503)));
    assert_eq!(attr(r, "latency_ms"), Some(AnyValue::Double(12.5)));
    assert_eq!(attr(r, "attempt"), Some(AnyValue::Int(2)));
    assert_eq!(attr(r, "retryable"), Some(AnyValue::Boolean(true)));
    assert_eq!(attr(r, "reason"), Some(s("Some(\"busy\")")));
    assert_eq!(attr(r, "huge"), Some(s("18446744073709551615")));
    assert_eq!(attr(r, "agent.id"), None, "no agent on this call");
    assert_eq!(r.body(), None);
}

#[test]
fn default_levels_come_from_the_catalogue() {
    // A quiet filter must not hide call events, whatever their level.
    let h = Harness::with_filter("error");
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme");
        let _g = call.enter();
        call_event!(USER_STARTED_SPEAKING);
        call_event!(APPROVAL_DENIED);
        call_event!(CALL_FAILED, failure_reason = "sip 503");
        call_event!(AUTHENTICATION_FAILED, tool_name = "crm");
        tracing::info!("hidden by the filter");
    });
    let got: Vec<_> = h
        .records()
        .iter()
        .map(|r| {
            (
                r.event_name().unwrap(),
                r.severity_number().unwrap() as i32,
                r.severity_text().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("USER_STARTED_SPEAKING", 5, "DEBUG"),
            ("APPROVAL_DENIED", 13, "WARN"),
            ("CALL_FAILED", 17, "ERROR"),
            ("AUTHENTICATION_FAILED", 21, "FATAL"),
        ]
    );
}

#[test]
fn levels_can_be_overridden() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme");
        let _g = call.enter();
        call_event!(level: Level::Warning, AGENT_MESSAGE_SENT, text = "Sorry?");
        call_event!(level: Level::Critical, CALL_FAILED);
        call_event!(level: Level::Debug, TURN_LATENCY, turn = 3);
    });
    let got: Vec<_> = h
        .records()
        .iter()
        .map(|r| {
            (
                r.event_name().unwrap(),
                r.severity_number().unwrap() as i32,
                r.severity_text().unwrap(),
                str_attr(r, "callscope.category").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("AGENT_MESSAGE_SENT", 13, "WARN", "AGENT".to_owned()),
            ("CALL_FAILED", 21, "FATAL", "CALL_LIFECYCLE".to_owned()),
            ("TURN_LATENCY", 5, "DEBUG", "METRICS".to_owned()),
        ]
    );
}

#[test]
fn custom_events_carry_their_category() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme");
        let _g = call.enter();
        call_event!(custom "CRM_NOTE_SAVED", category: Category::IntegrationTools, note_id = 7);
        call_event!(custom "SENTIMENT_DROPPED", category: Category::Agent, level: Level::Warning);
    });
    let records = h.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].event_name(), Some("CRM_NOTE_SAVED"));
    assert_eq!(records[0].severity_number(), Some(Severity::Info));
    assert_eq!(
        str_attr(&records[0], "callscope.category").as_deref(),
        Some("INTEGRATION_TOOLS")
    );
    assert_eq!(attr(&records[0], "note_id"), Some(AnyValue::Int(7)));
    assert_eq!(records[1].event_name(), Some("SENTIMENT_DROPPED"));
    assert_eq!(records[1].severity_number(), Some(Severity::Warn));
    assert_eq!(
        str_attr(&records[1], "callscope.category").as_deref(),
        Some("AGENT")
    );
    for r in &records {
        assert_eq!(
            str_attr(r, "callscope.visibility").as_deref(),
            Some("customer")
        );
    }
}

#[test]
fn hand_written_call_events_are_understood() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme");
        let _g = call.enter();
        // A catalogue code without the macro: category and level from the catalogue.
        tracing::event!(name: "GREETING_SENT", target: "callscope::event", tracing::Level::INFO, text = "Hi");
        // A custom one naming its category and level in fields.
        tracing::event!(
            name: "MY_EVENT",
            target: "callscope::event",
            tracing::Level::INFO,
            callscope.category = "WORKFLOWS",
            callscope.level = "ERROR",
        );
    });
    let records = h.records();
    assert_eq!(
        str_attr(&records[0], "callscope.category").as_deref(),
        Some("AGENT")
    );
    assert_eq!(records[1].severity_number(), Some(Severity::Error));
    assert_eq!(
        attrs(&records[1])
            .iter()
            .filter(|(k, _)| k.starts_with("callscope."))
            .cloned()
            .collect::<Vec<_>>(),
        [
            ("callscope.visibility".to_owned(), s("customer")),
            ("callscope.category".to_owned(), s("WORKFLOWS")),
        ]
    );
}

#[test]
fn plain_tracing_events_are_internal() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme", agent_id = "a");
        let _g = call.enter();
        tracing::trace!("t");
        tracing::debug!(host.name = "node-1", "d");
        tracing::info!(k8s.pod.name = "pod-7", "i");
        tracing::warn!("w");
        tracing::error!(exception.stacktrace = "at main()", "e");
    });
    let records = h.records();
    let got: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r.severity_number().unwrap() as i32,
                r.severity_text().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "TRACE"),
            (5, "DEBUG"),
            (9, "INFO"),
            (13, "WARN"),
            (17, "ERROR")
        ]
    );
    for r in &records {
        assert_eq!(
            str_attr(r, "callscope.visibility"),
            None,
            "internal: no visibility"
        );
        assert_eq!(str_attr(r, "callscope.category"), None);
        assert_eq!(str_attr(r, "call.id").as_deref(), Some("c-1"));
        assert_eq!(str_attr(r, "tenant.id").as_deref(), Some("acme"));
        assert_eq!(str_attr(r, "agent.id").as_deref(), Some("a"));
        assert!(r.trace_context().is_some());
        assert_eq!(r.event_name(), None, "generated names are not event names");
    }
    assert_eq!(
        str_attr(&records[1], "host.name").as_deref(),
        Some("node-1")
    );
    assert_eq!(
        str_attr(&records[2], "k8s.pod.name").as_deref(),
        Some("pod-7")
    );
    assert_eq!(records[2].body(), Some(&s("i")));
}

#[test]
fn internal_fields_never_reach_the_customer_record() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme");
        let _g = call.enter();
        call_event!(
            AGENT_MESSAGE_SENT,
            text = "hi",
            internal.pod = "p1",
            internal.retries = 2
        );
        call_event!(GREETING_SENT, text = "hello");
    });
    let records = h.records();
    assert_eq!(
        records.len(),
        3,
        "customer record, its companion, the greeting"
    );
    let customer = &records[0];
    assert_eq!(
        str_attr(customer, "callscope.visibility").as_deref(),
        Some("customer")
    );
    assert!(
        attrs(customer)
            .iter()
            .all(|(k, _)| !k.starts_with("internal.")),
        "{:?}",
        attrs(customer)
    );
    let companion = &records[1];
    assert_eq!(companion.event_name(), Some("AGENT_MESSAGE_SENT"));
    assert_eq!(
        str_attr(companion, "callscope.visibility").as_deref(),
        Some("internal")
    );
    assert_eq!(str_attr(companion, "call.id").as_deref(), Some("c-1"));
    assert_eq!(str_attr(companion, "internal.pod").as_deref(), Some("p1"));
    assert_eq!(attr(companion, "internal.retries"), Some(AnyValue::Int(2)));
    assert_eq!(attr(companion, "text"), None);
    assert_eq!(
        companion.trace_context().map(|t| t.span_id),
        customer.trace_context().map(|t| t.span_id)
    );
    assert_eq!(companion.timestamp(), customer.timestamp());
    assert_eq!(records[2].event_name(), Some("GREETING_SENT"));
}

#[test]
fn records_carry_the_current_spans_trace_context() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-1", tenant_id = "acme");
        let _g = call.enter();
        call_event!(CALL_STARTED, direction = "inbound");
        let turn = tracing::info_span!("turn", n = 1);
        let _t = turn.enter();
        let llm = tracing::info_span!("llm");
        llm.in_scope(|| tracing::debug!("prompt sent"));
        call_event!(AGENT_MESSAGE_SENT, text = "ok");
    });
    let call = h.span("call");
    let turn = h.span("turn");
    let llm = h.span("llm");
    assert_eq!(turn.parent_span_id, call.span_context.span_id());
    assert_eq!(llm.parent_span_id, turn.span_context.span_id());
    let trace_id = call.span_context.trace_id();
    let ids: Vec<_> = h
        .records()
        .iter()
        .map(|r| {
            let tc = r.trace_context().expect("trace context");
            assert_eq!(tc.trace_id, trace_id);
            (r.event_name(), tc.span_id)
        })
        .collect();
    assert_eq!(
        ids,
        [
            (Some("CALL_STARTED"), call.span_context.span_id()),
            (None, llm.span_context.span_id()),
            (Some("AGENT_MESSAGE_SENT"), turn.span_context.span_id()),
        ]
    );
    assert_eq!(
        call.attributes
            .iter()
            .find(|kv| kv.key.as_str() == "call.id")
            .map(|kv| kv.value.to_string()),
        Some("c-1".to_owned())
    );
}

#[test]
fn events_with_an_explicit_parent_use_that_span() {
    let h = Harness::new();
    h.run(|| {
        let call = call_span!(call_id = "c-9", tenant_id = "acme");
        // Never entered: the layer asks the OpenTelemetry layer for its context.
        tracing::info!(parent: &call, "explicit");
        let other = call_span!(call_id = "c-10", tenant_id = "acme");
        let _g = other.enter();
        tracing::info!(parent: &call, "explicit while another call is current");
    });
    let records = h.records();
    let spans = h.spans();
    let c9 = spans
        .iter()
        .find(|s| s.attributes.iter().any(|kv| kv.value.to_string() == "c-9"))
        .unwrap();
    for r in &records {
        assert_eq!(str_attr(r, "call.id").as_deref(), Some("c-9"));
        let tc = r.trace_context().unwrap();
        assert_eq!(tc.span_id, c9.span_context.span_id());
    }
    assert_eq!(records.len(), 2);
}

#[test]
fn nested_call_spans_use_the_nearest_identity() {
    let h = Harness::new();
    h.run(|| {
        let outer = call_span!(call_id = "outer", tenant_id = "acme", agent_id = "a1");
        let _o = outer.enter();
        let inner = call_span!(call_id = "inner", tenant_id = "globex");
        inner.in_scope(|| call_event!(CALL_CREATED));
        call_event!(CALL_CREATED);
    });
    let records = h.records();
    assert_eq!(str_attr(&records[0], "call.id").as_deref(), Some("inner"));
    assert_eq!(
        str_attr(&records[0], "tenant.id").as_deref(),
        Some("globex")
    );
    assert_eq!(str_attr(&records[0], "agent.id"), None);
    assert_eq!(str_attr(&records[1], "call.id").as_deref(), Some("outer"));
}

#[test]
fn events_outside_a_call_have_no_call_identity() {
    let h = Harness::new();
    h.run(|| {
        call_event!(CALL_CREATED);
        tracing::info!("startup");
    });
    for r in h.records() {
        assert_eq!(str_attr(&r, "call.id"), None);
        assert!(r.trace_context().is_none());
    }
}

#[tokio::test(flavor = "current_thread")]
async fn instrumented_futures_carry_the_call() {
    use tracing::Instrument as _;
    let h = Harness::new();
    let dispatch = h.telemetry.dispatch().clone();
    let _default = tracing::dispatcher::set_default(&dispatch);
    let call = call_span!(call_id = "c-async", tenant_id = "acme");
    async {
        tokio::task::yield_now().await;
        async {
            tokio::task::yield_now().await;
            call_event!(USER_MESSAGE_RECEIVED, text = "hello", confidence = 0.93);
        }
        .instrument(tracing::info_span!("stt"))
        .await;
    }
    .instrument(call)
    .await;
    let stt = h.span("stt");
    let r = &h.records()[0];
    assert_eq!(str_attr(r, "call.id").as_deref(), Some("c-async"));
    assert_eq!(
        r.trace_context().unwrap().span_id,
        stt.span_context.span_id()
    );
    assert_eq!(attr(r, "confidence"), Some(AnyValue::Double(0.93)));
}

#[test]
fn span_events_can_be_switched_on() {
    use callscope_tracing::{CallscopeTracing, Processor};
    use opentelemetry_sdk::{logs::InMemoryLogExporter, trace::InMemorySpanExporter};

    let spans = InMemorySpanExporter::default();
    let telemetry = CallscopeTracing::builder()
        .with_log_exporter(InMemoryLogExporter::default())
        .with_span_exporter(spans.clone())
        .processor(Processor::Simple)
        .span_events(true)
        .build()
        .unwrap();
    tracing::dispatcher::with_default(telemetry.dispatch(), || {
        let call = call_span!(call_id = "c", tenant_id = "t");
        call.in_scope(|| call_event!(CALL_CREATED));
    });
    let finished = spans.get_finished_spans().unwrap();
    assert_eq!(finished[0].events.len(), 1);
}
