//! The batch set-up builds records on the `callscope-log-emitter` thread: the records
//! must be the same as those built on the emitting thread, none may be lost on flush or
//! shutdown, and a full queue drops and counts instead of blocking.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Condvar, Mutex, mpsc},
    thread,
    time::Duration,
};

use callscope_model::{Category, Level};
use callscope_tracing::{CallLogLayer, CallscopeTracing, call_event, call_span};
use common::{Harness, KeepingExporter, attrs, str_attr};
use opentelemetry::{InstrumentationScope, logs::AnyValue, trace::SpanId};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    logs::{LogProcessor, SdkLogRecord, SdkLoggerProvider},
    trace::InMemorySpanExporter,
};
use tracing_subscriber::prelude::*;

/// Every kind of record the layer builds.
fn every_kind_of_record() {
    call_event!(CALL_CREATED);
    tracing::info!(version = "1.2", "startup");
    let call = call_span!(call_id = "c-1", tenant_id = "acme", agent_id = "support");
    let _in_call = call.enter();
    call_event!(
        AGENT_MESSAGE_SENT,
        text = "Hello",
        turn = 1,
        "Agent replied"
    );
    call_event!(level: Level::Warning, AGENT_MESSAGE_SENT, text = "Sorry?", internal.pod = "p1");
    call_event!(
        custom "CRM_NOTE_SAVED",
        category: Category::IntegrationTools,
        note_id = 7_u64,
        big = u64::MAX,
        ok = true,
        ratio = 0.5,
        raw = ?vec![1, 2],
    );
    tracing::event!(
        name: "MY_EVENT",
        target: "callscope::event",
        tracing::Level::INFO,
        callscope.category = "WORKFLOWS",
        callscope.level = "ERROR",
        step = 3,
    );
    tracing::warn!(host.name = "h1", "pool exhausted");
    let turn = tracing::info_span!("turn", n = 1);
    turn.in_scope(|| {
        call_event!(USER_MESSAGE_RECEIVED, text = "hi", confidence = 0.9);
        tracing::debug!("inside the turn");
    });
    let other = call_span!(call_id = "c-2", tenant_id = "globex");
    tracing::info!(parent: &other, "explicit parent, never entered");
    tracing::info!(parent: None, "explicit root");
}

/// A record with its trace context named by span rather than by (random) id.
#[derive(Debug, PartialEq)]
struct Normalized {
    event_name: Option<String>,
    target: Option<String>,
    severity: Option<i32>,
    severity_text: Option<String>,
    body: Option<AnyValue>,
    attributes: Vec<(String, AnyValue)>,
    span: Option<String>,
    has_timestamps: bool,
}

fn normalized(h: &Harness) -> Vec<Normalized> {
    let names: HashMap<SpanId, String> = h
        .spans()
        .into_iter()
        .map(|s| (s.span_context.span_id(), s.name.to_string()))
        .collect();
    h.records()
        .iter()
        .map(|r| Normalized {
            event_name: r.event_name().map(str::to_owned),
            target: r.target().map(ToString::to_string),
            severity: r.severity_number().map(|s| s as i32),
            severity_text: r.severity_text().map(str::to_owned),
            body: r.body().cloned(),
            attributes: attrs(r),
            span: r
                .trace_context()
                .map(|tc| names.get(&tc.span_id).cloned().unwrap_or_default()),
            has_timestamps: r.timestamp().is_some() && r.observed_timestamp().is_some(),
        })
        .collect()
}

#[test]
fn records_built_on_the_emitter_match_those_built_in_place() {
    let simple = Harness::new();
    simple.run(every_kind_of_record);
    let batched = Harness::batched();
    batched.run(every_kind_of_record);
    batched.flush();

    let expected = normalized(&simple);
    assert_eq!(expected.len(), 12, "{expected:#?}");
    assert_eq!(normalized(&batched), expected);
    assert_eq!(batched.telemetry.dropped_records(), 0);
}

#[test]
fn records_from_many_threads_all_arrive_after_flush() {
    const THREADS: usize = 8;
    const TURNS: i64 = 100;
    let h = Harness::batched();
    thread::scope(|scope| {
        for t in 0..THREADS {
            let dispatch = h.telemetry.dispatch().clone();
            scope.spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let call = call_span!(call_id = format!("call-{t}"), tenant_id = "acme");
                    let _in_call = call.enter();
                    for turn in 0..TURNS {
                        let span = tracing::info_span!("turn", turn);
                        let _in_turn = span.enter();
                        call_event!(AGENT_MESSAGE_SENT, text = "ok", turn = turn);
                        tracing::debug!(turn, "turn done");
                    }
                });
            });
        }
    });
    h.flush();

    let spans = h.spans();
    let call_trace: HashMap<String, _> = spans
        .iter()
        .filter(|s| s.name == "call")
        .map(|s| {
            let id = s
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "call.id")
                .unwrap()
                .value
                .to_string();
            (id, s.span_context.trace_id())
        })
        .collect();
    let turn_spans: HashMap<SpanId, _> = spans
        .iter()
        .filter(|s| s.name == "turn")
        .map(|s| (s.span_context.span_id(), s.span_context.trace_id()))
        .collect();

    let records = h.records();
    assert_eq!(records.len(), THREADS * TURNS as usize * 2);
    let mut seen: HashMap<(String, bool), Vec<i64>> = HashMap::new();
    for r in &records {
        let call_id = str_attr(r, "call.id").expect("call identity");
        assert_eq!(str_attr(r, "tenant.id").as_deref(), Some("acme"));
        let tc = r.trace_context().expect("trace context");
        assert_eq!(tc.trace_id, call_trace[&call_id], "{call_id}");
        assert_eq!(turn_spans.get(&tc.span_id), Some(&tc.trace_id));
        let Some(AnyValue::Int(turn)) = common::attr(r, "turn") else {
            panic!("no turn on {r:?}");
        };
        let customer = str_attr(r, "callscope.visibility").is_some();
        seen.entry((call_id, customer)).or_default().push(turn);
    }
    assert_eq!(seen.len(), THREADS * 2);
    for (key, mut turns) in seen {
        turns.sort_unstable();
        assert_eq!(turns, (0..TURNS).collect::<Vec<_>>(), "{key:?}");
    }
    assert_eq!(h.telemetry.dropped_records(), 0);
}

fn emit_calls(n: usize) {
    let call = call_span!(call_id = "c-last", tenant_id = "acme");
    let _in_call = call.enter();
    for turn in 0..n {
        call_event!(AGENT_MESSAGE_SENT, text = "bye", turn = turn);
    }
}

#[test]
fn records_emitted_just_before_the_guard_drops_are_exported() {
    let logs = KeepingExporter::default();
    let telemetry = CallscopeTracing::builder()
        .with_log_exporter(logs.clone())
        .with_span_exporter(InMemorySpanExporter::default())
        .build()
        .unwrap();
    // Once flushed, the emitter is idle: the records below are still queued (fewer than
    // would wake it) when the guard drops.
    telemetry.force_flush().unwrap();
    let (dispatch, guard) = telemetry.into_parts();
    tracing::dispatcher::with_default(&dispatch, || emit_calls(500));
    drop(guard);
    let records = logs.records();
    assert_eq!(records.len(), 500);
    assert!(
        records
            .iter()
            .all(|r| str_attr(r, "call.id").as_deref() == Some("c-last"))
    );
}

#[test]
fn records_emitted_just_before_shutdown_are_exported() {
    let logs = KeepingExporter::default();
    let telemetry = CallscopeTracing::builder()
        .with_log_exporter(logs.clone())
        .with_span_exporter(InMemorySpanExporter::default())
        .build()
        .unwrap();
    telemetry.force_flush().unwrap();
    tracing::dispatcher::with_default(telemetry.dispatch(), || emit_calls(300));
    telemetry.shutdown().unwrap();
    assert_eq!(logs.records().len(), 300);
}

/// A log processor that blocks in `emit` until opened, and says when it got there.
#[derive(Debug)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    arrived: Mutex<mpsc::Sender<Option<String>>>,
    emitted: Mutex<Vec<SdkLogRecord>>,
}

impl Gate {
    fn new() -> (Arc<Self>, mpsc::Receiver<Option<String>>) {
        let (tx, rx) = mpsc::channel();
        let gate = Self {
            open: Mutex::new(false),
            opened: Condvar::new(),
            arrived: Mutex::new(tx),
            emitted: Mutex::new(Vec::new()),
        };
        (Arc::new(gate), rx)
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

#[derive(Debug)]
struct GateProcessor(Arc<Gate>);

impl LogProcessor for GateProcessor {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        let gate = &self.0;
        let name = thread::current().name().map(str::to_owned);
        let _ = gate.arrived.lock().unwrap().send(name);
        let mut open = gate.open.lock().unwrap();
        while !*open {
            open = gate.opened.wait(open).unwrap();
        }
        gate.emitted.lock().unwrap().push(record.clone());
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    const CAPACITY: usize = 4;
    let (gate, arrived) = Gate::new();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(GateProcessor(Arc::clone(&gate)))
        .build();
    let (layer, emitter) = CallLogLayer::deferred(&provider, CAPACITY).unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    tracing::dispatcher::with_default(&dispatch, || {
        let call = call_span!(call_id = "c-full", tenant_id = "acme");
        let _in_call = call.enter();
        call_event!(AGENT_MESSAGE_SENT, text = "first", turn = 0);
        // The emitter has taken the first record and is stuck handing it over.
        let thread = arrived.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(thread.as_deref(), Some("callscope-log-emitter"));
        for turn in 1..=CAPACITY + 3 {
            call_event!(AGENT_MESSAGE_SENT, text = "queued or dropped", turn = turn);
        }
    });
    assert_eq!(emitter.dropped(), 3);

    gate.open();
    emitter.drain().unwrap();
    let emitted = gate.emitted.lock().unwrap().clone();
    let turns: Vec<_> = emitted.iter().map(|r| common::attr(r, "turn")).collect();
    let expected: Vec<_> = (0..=CAPACITY as i64)
        .map(|t| Some(AnyValue::Int(t)))
        .collect();
    assert_eq!(turns, expected);
    emitter.shutdown().unwrap();
    provider.shutdown().unwrap();
}

#[test]
fn records_emitted_after_shutdown_are_discarded_quietly() {
    let logs = KeepingExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_simple_exporter(logs.clone())
        .build();
    let (layer, emitter) = CallLogLayer::deferred(&provider, 8).unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || call_event!(CALL_CREATED));
    emitter.shutdown().unwrap();
    assert_eq!(
        logs.records().len(),
        1,
        "the record before shutdown is exported"
    );

    // Far more than the queue holds: were they queued, the queue would fill and block
    // or count drops; discarded, they cost nothing and reach no exporter.
    let started = std::time::Instant::now();
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..100 {
            call_event!(CALL_CREATED);
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "emitting after shutdown must not wait: {:?}",
        started.elapsed()
    );
    provider.force_flush().unwrap();
    assert_eq!(
        logs.records().len(),
        1,
        "nothing emitted after shutdown is exported"
    );
    provider.shutdown().unwrap();
}
