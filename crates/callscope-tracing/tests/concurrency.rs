//! Many calls on one runtime: no record may carry another call's identity or trace.

mod common;

use std::collections::{HashMap, HashSet};

use callscope_tracing::{call_event, call_span};
use common::{Harness, str_attr};
use tracing::{Instrument as _, instrument::WithSubscriber as _};

const CALLS: usize = 64;

async fn one_call(n: usize) {
    let call = call_span!(
        call_id = format!("call-{n}"),
        tenant_id = format!("tenant-{}", n % 3),
        agent_id = "agent"
    );
    async move {
        call_event!(CALL_STARTED, direction = "inbound");
        for turn in 0..3 {
            tokio::task::yield_now().await;
            async {
                tokio::task::yield_now().await;
                call_event!(AGENT_MESSAGE_SENT, text = "ok", turn = turn);
                tracing::debug!(turn, "turn done");
            }
            .instrument(tracing::info_span!("turn", turn))
            .await;
        }
        // A spawned task that carries the call span and the dispatcher.
        tokio::spawn(
            async {
                tokio::task::yield_now().await;
                call_event!(WEBHOOK_SENT, url = "https://hooks.example", attempt = 1);
            }
            .instrument(tracing::Span::current())
            .with_current_subscriber(),
        )
        .await
        .unwrap();
        call_event!(CALL_COMPLETED, duration_ms = 1000);
    }
    .instrument(call)
    .await;
}

#[test]
fn concurrent_calls_do_not_bleed_into_each_other() {
    let h = Harness::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(
        async {
            let tasks: Vec<_> = (0..CALLS)
                .map(|n| tokio::spawn(one_call(n).with_current_subscriber()))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
        .with_subscriber(h.telemetry.dispatch().clone()),
    );

    let spans = h.spans();
    // call id -> trace id of its call span; span id -> trace id for every span.
    let mut trace_of_call = HashMap::new();
    let mut trace_of_span = HashMap::new();
    for s in &spans {
        trace_of_span.insert(s.span_context.span_id(), s.span_context.trace_id());
        if s.name == "call" {
            let id = s
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == "call.id")
                .unwrap()
                .value
                .to_string();
            assert!(
                trace_of_call
                    .insert(id, s.span_context.trace_id())
                    .is_none()
            );
        }
    }
    assert_eq!(trace_of_call.len(), CALLS);
    let distinct: HashSet<_> = trace_of_call.values().collect();
    assert_eq!(distinct.len(), CALLS, "each call is its own trace");

    let records = h.records();
    assert_eq!(records.len(), CALLS * (1 + 3 * 2 + 2));
    let mut per_call: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let call_id = str_attr(r, "call.id").expect("every record is in a call");
        let n: usize = call_id["call-".len()..].parse().unwrap();
        assert_eq!(
            str_attr(r, "tenant.id").unwrap(),
            format!("tenant-{}", n % 3)
        );
        let tc = r.trace_context().expect("trace context");
        assert_eq!(tc.trace_id, trace_of_call[&call_id], "{call_id}");
        assert_eq!(
            trace_of_span.get(&tc.span_id),
            Some(&tc.trace_id),
            "span id names a span of the same trace"
        );
        *per_call.entry(call_id).or_default() += 1;
    }
    assert!(per_call.values().all(|&n| n == 9));
}
