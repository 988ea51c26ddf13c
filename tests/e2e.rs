//! End to end: the simulated voice agent exports through opentelemetry-otlp (gRPC and
//! HTTP) to a real callscope server on real ports, and the customer API must show exactly
//! the customer records, cleaned, typed, ordered and paged.

mod support;

use std::collections::HashSet;

use callscope_tracing::Protocol;
use serde_json::Value;
use support::{Harness, assert_clean, metric};

async fn assert_customer_view(h: &Harness, report: &callscope_sim::SimReport) {
    let mut traces = HashSet::new();
    for call in &report.calls {
        let records = h.call_records(&call.tenant, &call.call_id).await;
        let events: Vec<&str> = records
            .iter()
            .map(|r| r["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events, call.event_codes,
            "call {} shows exactly its customer events, in order",
            call.call_id
        );
        assert_eq!(records.len(), call.customer_events);

        let trace = records[0]["trace_id"]
            .as_str()
            .expect("trace id")
            .to_owned();
        assert_eq!(trace.len(), 32);
        assert!(traces.insert(trace.clone()), "each call has its own trace");
        for r in &records {
            assert_eq!(r["call_id"], call.call_id.as_str());
            assert_eq!(r["agent_id"], call.agent_id.as_str());
            assert_eq!(
                r["trace_id"],
                trace.as_str(),
                "every record carries the call span's trace id"
            );
            assert_eq!(r["span_id"].as_str().map(str::len), Some(16));
            assert_clean(&r["data"]);
        }
        // Timestamps never go backwards in ascending order.
        let ts: Vec<&str> = records
            .iter()
            .map(|r| r["timestamp"].as_str().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        assert!(
            ts.iter()
                .all(|t| t.ends_with('Z') && t.len() >= "2026-01-01T00:00:00.000000Z".len())
        );

        // Typed data: numbers stay numbers.
        for r in records.iter().filter(|r| r["event"] == "TURN_LATENCY") {
            assert!(
                r["data"]["end_to_end_ms"].is_i64() || r["data"]["end_to_end_ms"].is_f64(),
                "{r}"
            );
        }
        if let Some(failed) = records
            .iter()
            .find(|r| r["event"] == "INTEGRATION_TOOL_FAILED")
        {
            assert_eq!(failed["data"]["latency_ms"], 10000);
            assert_eq!(failed["level"], "ERROR");
            assert_eq!(failed["category"], "INTEGRATION_TOOLS");
        }
    }
}

async fn ingest_and_check(protocol: Protocol) {
    let h = Harness::start().await;
    let report = h.run_agent(protocol, 6, 7).await;
    assert_customer_view(&h, &report).await;

    let m = h.metrics().await;
    let internal = metric(&m, "callscope_records_dropped_total{reason=\"internal\"}");
    assert!(
        internal >= report.internal_records() as f64,
        "internal records are kept out and counted: {internal}"
    );
    assert_eq!(
        metric(&m, "callscope_records_stored_total"),
        report.customer_events() as f64
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_agent_over_grpc() {
    ingest_and_check(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_agent_over_http() {
    ingest_and_check(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pagination_path_visits_each_record_once() {
    let h = Harness::start().await;
    let report = h.run_agent(Protocol::Grpc, 3, 11).await;
    let call = &report.calls[0];
    let all = h.call_records(&call.tenant, &call.call_id).await;
    let ids = |v: &[Value]| {
        v.iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let base = format!("/v1/calls/{}/logs", call.call_id);

    for order in ["asc", "desc"] {
        let mut expected = ids(&all);
        if order == "desc" {
            expected.reverse();
        }
        for limit in [1, 3, 7, expected.len()] {
            // Page numbers.
            let (_, first) = h
                .get(
                    &format!("{base}?order={order}&limit={limit}"),
                    Some(&call.tenant),
                )
                .await;
            let pages = first["total_pages"].as_u64().unwrap();
            let mut seen = Vec::new();
            for p in 1..=pages {
                let (_, body) = h
                    .get(
                        &format!("{base}?order={order}&limit={limit}&page={p}"),
                        Some(&call.tenant),
                    )
                    .await;
                assert_eq!(body["has_more"], p < pages);
                seen.extend(ids(body["data"].as_array().unwrap()));
            }
            assert_eq!(seen, expected, "pages, {order}, limit {limit}");

            // `after` from the first page.
            let mut seen = ids(first["data"].as_array().unwrap());
            let mut body = first.clone();
            while body["has_more"] == true {
                let after = body["last_id"].as_str().unwrap().to_owned();
                body = h
                    .get(
                        &format!("{base}?order={order}&limit={limit}&after={after}"),
                        Some(&call.tenant),
                    )
                    .await
                    .1;
                seen.extend(ids(body["data"].as_array().unwrap()));
            }
            assert_eq!(seen, expected, "after, {order}, limit {limit}");

            // `before` from the last record.
            let mut seen = vec![expected.last().unwrap().clone()];
            loop {
                let before = seen[0].clone();
                let body = h
                    .get(
                        &format!("{base}?order={order}&limit={limit}&before={before}"),
                        Some(&call.tenant),
                    )
                    .await
                    .1;
                let mut chunk = ids(body["data"].as_array().unwrap());
                chunk.extend(seen);
                seen = chunk;
                if body["has_more"] != true {
                    break;
                }
            }
            assert_eq!(seen, expected, "before, {order}, limit {limit}");
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_errors_over_http() {
    let h = Harness::start().await;
    let report = h.run_agent(Protocol::Grpc, 3, 5).await;
    let call = &report.calls[1]; // a failed outbound call
    let all = h.call_records(&call.tenant, &call.call_id).await;
    let base = format!("/v1/calls/{}/logs", call.call_id);
    let count = |pred: &dyn Fn(&Value) -> bool| all.iter().filter(|r| pred(r)).count() as u64;

    let (_, b) = h
        .get(
            &format!("{base}?level=ERROR,WARNING&limit=1000"),
            Some(&call.tenant),
        )
        .await;
    assert_eq!(
        b["total_count"].as_u64().unwrap(),
        count(&|r| r["level"] == "ERROR" || r["level"] == "WARNING")
    );
    let (_, b) = h
        .get(
            &format!("{base}?min_level=WARNING&limit=1000"),
            Some(&call.tenant),
        )
        .await;
    assert_eq!(
        b["total_count"].as_u64().unwrap(),
        count(&|r| ["WARNING", "ERROR", "CRITICAL"].contains(&r["level"].as_str().unwrap()))
    );
    let (_, b) = h
        .get(
            &format!("{base}?category=WEBHOOKS&limit=1000"),
            Some(&call.tenant),
        )
        .await;
    assert_eq!(
        b["total_count"].as_u64().unwrap(),
        count(&|r| r["category"] == "WEBHOOKS")
    );
    assert!(b["total_count"].as_u64().unwrap() > 0);
    let (_, b) = h
        .get(
            &format!("{base}?event=CALL_STARTED,CALL_FAILED"),
            Some(&call.tenant),
        )
        .await;
    assert_eq!(
        b["total_count"].as_u64().unwrap(),
        count(&|r| r["event"] == "CALL_STARTED" || r["event"] == "CALL_FAILED")
    );

    let other = if call.tenant == "acme" {
        "globex"
    } else {
        "acme"
    };
    for (path, tenant, status, code) in [
        (base.clone(), None, 401, "UNAUTHORIZED"),
        (base.clone(), Some(other), 404, "CALL_NOT_FOUND"),
        (
            format!("{base}?limit=0"),
            Some(call.tenant.as_str()),
            422,
            "INVALID_PAGINATION_PARAMETERS",
        ),
        (
            format!("{base}?order=sideways"),
            Some(call.tenant.as_str()),
            422,
            "INVALID_QUERY_PARAMETERS",
        ),
        (
            "/v1/calls/does-not-exist/logs".to_owned(),
            Some(call.tenant.as_str()),
            404,
            "CALL_NOT_FOUND",
        ),
    ] {
        let (s, body) = h.get(&path, tenant).await;
        assert_eq!(
            (s, body["error_code"].as_str()),
            (status, Some(code)),
            "{path}: {body}"
        );
        assert_eq!(body["status"], "error");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything() {
    let mut h = Harness::start().await;
    let report = h.run_agent(Protocol::Grpc, 4, 3).await;
    let before: Vec<Vec<Value>> = {
        let mut v = Vec::new();
        for c in &report.calls {
            v.push(h.call_records(&c.tenant, &c.call_id).await);
        }
        v
    };
    h.restart().await;
    for (c, expected) in report.calls.iter().zip(before) {
        assert_eq!(
            h.call_records(&c.tenant, &c.call_id).await,
            expected,
            "call {} after restart",
            c.call_id
        );
    }
    h.stop().await;
}
