//! End to end: calls, search and comments after the simulated voice agent's traffic
//! went through the real OTLP exporters to a real server and a real DuckDB file. Every
//! answer is checked against what the simulation says it emitted.

mod support;

use std::collections::{BTreeMap, HashSet};

use callscope_sim::{CallReport, SimReport};
use callscope_tracing::Protocol;
use serde_json::{Value, json};
use support::{Harness, TENANTS};

async fn post(h: &Harness, path: &str, tenant: Option<&str>, body: Value) -> (u16, Value) {
    h.post(path, tenant, &body).await
}

fn calls_of<'a>(report: &'a SimReport, tenant: &str) -> Vec<&'a CallReport> {
    report.calls.iter().filter(|c| c.tenant == tenant).collect()
}

fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], "error", "{}", got.1);
    assert_eq!(got.1["error_code"], code, "{}", got.1);
}

async fn check_calls(h: &Harness, report: &SimReport) {
    for tenant in TENANTS {
        let mine = calls_of(report, tenant);
        let (status, body) = h.get("/v1/calls?limit=1000", Some(tenant)).await;
        assert_eq!(status, 200, "{body}");
        let listed = body["data"].as_array().unwrap();
        assert_eq!(body["total_count"], mine.len());
        assert_eq!(listed.len(), mine.len());
        // Newest first.
        let starts: Vec<&str> = listed
            .iter()
            .map(|c| c["started_at"].as_str().unwrap())
            .collect();
        assert!(starts.windows(2).all(|w| w[0] >= w[1]), "{starts:?}");

        for want in &mine {
            let got = listed
                .iter()
                .find(|c| c["call_id"] == want.call_id.as_str())
                .unwrap_or_else(|| panic!("{} missing from the list", want.call_id));
            assert_eq!(got["status"], want.status, "{got}");
            assert_eq!(got["direction"], want.direction.as_str(), "{got}");
            assert_eq!(got["from"], want.from.as_str(), "{got}");
            assert_eq!(got["to"], want.to.as_str(), "{got}");
            assert_eq!(
                got["campaign_id"].as_str(),
                want.campaign_id.as_deref(),
                "{got}"
            );
            assert_eq!(got["agent_id"], want.agent_id.as_str(), "{got}");
            assert_eq!(got["log_count"], want.customer_events, "{got}");
            let levels: u64 = got["level_counts"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
                .sum();
            assert_eq!(levels as usize, want.customer_events, "{got}");
            assert_eq!(got["trace_id"].as_str().unwrap().len(), 32, "{got}");
            assert!(got["ended_at"].as_str().unwrap() >= got["started_at"].as_str().unwrap());
            assert!(got["duration_ms"].as_i64().is_some(), "{got}");

            // The detail is the list entry.
            let (status, one) = h
                .get(&format!("/v1/calls/{}", want.call_id), Some(tenant))
                .await;
            assert_eq!(status, 200);
            assert_eq!(&one, got);
            // Another tenant's key gets a plain 404.
            let other = TENANTS.iter().find(|t| **t != tenant).unwrap();
            assert_error(
                &h.get(&format!("/v1/calls/{}", want.call_id), Some(other))
                    .await,
                404,
                "CALL_NOT_FOUND",
            );
        }

        // Filters select exactly.
        for status_filter in ["completed", "failed", "missed", "in_progress"] {
            let (_, body) = h
                .get(&format!("/v1/calls?status={status_filter}"), Some(tenant))
                .await;
            let got: HashSet<&str> = body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["call_id"].as_str().unwrap())
                .collect();
            let want: HashSet<&str> = mine
                .iter()
                .filter(|c| c.status == status_filter)
                .map(|c| c.call_id.as_str())
                .collect();
            assert_eq!(got, want, "status={status_filter}");
        }
        let (_, body) = h
            .get("/v1/calls?direction=outbound&limit=1", Some(tenant))
            .await;
        let outbound = mine
            .iter()
            .filter(|c| c.direction.as_str() == "outbound")
            .count();
        assert_eq!(body["total_count"], outbound);
        assert_eq!(body["has_more"], outbound > 1);
        assert_eq!(body["total_pages"], outbound);
    }
    assert_error(&h.get("/v1/calls", None).await, 401, "UNAUTHORIZED");
    assert_error(
        &h.get("/v1/calls?limit=0", Some("acme")).await,
        422,
        "INVALID_PAGINATION_PARAMETERS",
    );
    assert_error(
        &h.get("/v1/calls?started_after=tuesday", Some("acme")).await,
        422,
        "INVALID_QUERY_PARAMETERS",
    );
}

async fn check_search(h: &Harness, report: &SimReport) {
    for tenant in TENANTS {
        let mine = calls_of(report, tenant);
        let mut events: BTreeMap<String, u64> = BTreeMap::new();
        for c in &mine {
            for e in &c.event_codes {
                *events.entry((*e).to_owned()).or_default() += 1;
            }
        }
        let total: u64 = events.values().sum();
        let (status, body) = post(h, "/v1/logs/search", Some(tenant), json!({"size": 0})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total_count"], total);
        assert_eq!(body["results"], json!([]));
        assert_eq!(body["total_pages"], 0);
        let got: BTreeMap<String, u64> =
            serde_json::from_value(body["aggregations"]["event_counts"].clone()).unwrap();
        assert_eq!(got, events);
        let levels: u64 = body["aggregations"]["level_counts"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(levels, total);
        assert!(body["execution_time_ms"].is_u64());

        // One call's records through search equal its log.
        let call = &mine[0];
        let (_, body) = post(
            h,
            "/v1/logs/search",
            Some(tenant),
            json!({"call_ids": [call.call_id], "size": 100, "sort_direction": "asc"}),
        )
        .await;
        let via_search: Vec<Value> = body["results"].as_array().unwrap().clone();
        assert_eq!(via_search.len(), call.customer_events);
        assert_eq!(via_search, h.call_records(tenant, &call.call_id).await);

        // Text search is case-insensitive over data values.
        let (_, body) = post(
            h,
            "/v1/logs/search",
            Some(tenant),
            json!({"search_text": "HOW CAN I HELP", "size": 100}),
        )
        .await;
        for r in body["results"].as_array().unwrap() {
            assert!(
                r["data"]
                    .to_string()
                    .to_lowercase()
                    .contains("how can i help"),
                "{r}"
            );
        }

        // Another tenant's call ids find nothing.
        let other = TENANTS.iter().find(|t| **t != tenant).unwrap();
        let theirs = &calls_of(report, other)[0].call_id;
        let (_, body) = post(
            h,
            "/v1/logs/search",
            Some(tenant),
            json!({"call_ids": [theirs]}),
        )
        .await;
        assert_eq!(body["total_count"], 0, "{body}");
    }
    assert_error(
        &post(h, "/v1/logs/search", Some("acme"), json!({"size": 101})).await,
        422,
        "INVALID_PAGINATION_PARAMETERS",
    );
    assert_error(
        &post(
            h,
            "/v1/logs/search",
            Some("acme"),
            json!({"levels": ["LOUD"]}),
        )
        .await,
        422,
        "INVALID_QUERY_PARAMETERS",
    );
    assert_error(
        &post(
            h,
            "/v1/logs/search",
            Some("acme"),
            json!(["not", "an", "object"]),
        )
        .await,
        400,
        "INVALID_REQUEST_BODY",
    );
    assert_error(
        &post(h, "/v1/logs/search", None, json!({})).await,
        401,
        "UNAUTHORIZED",
    );
}

async fn check_comments(h: &Harness, report: &SimReport) {
    let call = &calls_of(report, "acme")[0].call_id;
    let path = format!("/v1/calls/{call}/comments");
    let (status, first) = post(
        h,
        &path,
        Some("acme"),
        json!({"author": "ann", "text": "Refund issued."}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["call_id"], call.as_str());
    assert_eq!(first["author"], "ann");
    let (status, _) = post(
        h,
        &path,
        Some("acme"),
        json!({"author": "bob", "text": "Called back, \"all good\"."}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, list) = h.get(&path, Some("acme")).await;
    assert_eq!(status, 200);
    let list = list["data"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0], first, "oldest first");
    assert_eq!(list[1]["text"], "Called back, \"all good\".");
    assert_error(&h.get(&path, Some("globex")).await, 404, "CALL_NOT_FOUND");
    assert_error(
        &post(
            h,
            &path,
            Some("globex"),
            json!({"author": "eve", "text": "hi"}),
        )
        .await,
        404,
        "CALL_NOT_FOUND",
    );
    assert_error(
        &post(h, &path, Some("acme"), json!({"author": "ann"})).await,
        400,
        "INVALID_REQUEST_BODY",
    );
    assert_error(&h.get(&path, None).await, 401, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_search_and_comments_over_grpc_ingest() {
    let mut h = Harness::start().await;
    let report = h.run_agent(Protocol::Grpc, 9, 11).await;
    check_calls(&h, &report).await;
    check_search(&h, &report).await;
    check_comments(&h, &report).await;
    // Everything is still there after a restart.
    h.restart().await;
    check_calls(&h, &report).await;
    let (_, list) = h
        .get(
            &format!(
                "/v1/calls/{}/comments",
                calls_of(&report, "acme")[0].call_id
            ),
            Some("acme"),
        )
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_search_over_http_ingest() {
    let h = Harness::start().await;
    let report = h.run_agent(Protocol::HttpProtobuf, 6, 5).await;
    check_calls(&h, &report).await;
    check_search(&h, &report).await;
    h.stop().await;
}
