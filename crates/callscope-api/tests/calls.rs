//! The calls list's filters (durations, numbers by digits, `q`) on the list and the
//! calls export alike, and a call's transcript, driven directly (no sockets) over a real
//! DuckDB file.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use callscope_api::{ApiState, KeyRing, key_sha256_hex, router};
use callscope_model::{Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp};
use callscope_store::{Store, StoreConfig};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const ACME_KEY: &str = "cs_test_acme";
const GLOBEX_KEY: &str = "cs_test_globex";
/// 2026-09-21T14:13:20Z.
const T0: i64 = 1_790_000_000_000_000_000;

fn rec(tenant: &str, call: &str, ms: i64, event: &str, data: Value) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).str(event).i64(ms);
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(T0 + ms * 1_000_000),
            level: Level::Info,
            category: Category::CallLifecycle,
            event: event.into(),
            call_id: call.into(),
            agent_id: Some("agent-1".into()),
            trace_id: None,
            span_id: None,
            data: match data {
                Value::Object(m) => Some(m),
                _ => None,
            },
        },
    }
}

/// A finished call: its numbers and its ringing, bot and billed durations.
fn call(tenant: &str, id: &str, at: i64, from: &str, to: &str, d: [i64; 4]) -> Vec<TenantRecord> {
    vec![
        rec(
            tenant,
            id,
            at,
            "CALL_RECEIVED",
            json!({"from": from, "to": to}),
        ),
        rec(tenant, id, at + 1, "CALL_STARTED", json!({})),
        rec(
            tenant,
            id,
            at + 2,
            "CALL_COMPLETED",
            json!({"duration_ms": d[0], "ringing_duration_ms": d[1], "bot_duration_ms": d[2],
                   "billed_duration_ms": d[3], "hangup_reason": "customer_hangup"}),
        ),
    ]
}

struct Fixture {
    app: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("calls.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    let mut records = Vec::new();
    records.extend(call(
        "acme",
        "c-100",
        0,
        "+1 (415) 555-0100",
        "+44 20 7946 0958",
        [61_000, 1_000, 30_000, 60_000],
    ));
    records.extend(call(
        "acme",
        "c-101",
        1_000,
        "+14155550199",
        "800.555.0000",
        [20_000, 5_000, 1_000, 0],
    ));
    // In progress: no durations.
    records.push(rec(
        "acme",
        "x-200",
        2_000,
        "CALL_RECEIVED",
        json!({"from": "+49 30 123456", "to": "+1-555-0000"}),
    ));
    // Another tenant's call with the same id and number: never in acme's answers.
    records.extend(call(
        "globex",
        "c-100",
        3_000,
        "+1 (415) 555-0100",
        "+49 30 999",
        [61_000, 1_000, 30_000, 60_000],
    ));
    store.append(records).await.unwrap();
    let keys = Arc::new(KeyRing::new());
    keys.insert(&key_sha256_hex(ACME_KEY), "acme").unwrap();
    keys.insert(&key_sha256_hex(GLOBEX_KEY), "globex").unwrap();
    Fixture {
        app: router(ApiState::new(store.clone(), keys)),
        store,
        _dir: dir,
    }
}

async fn get(app: &Router, uri: &str, key: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut req = Request::get(uri);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, bytes.to_vec())
}

async fn get_json(app: &Router, uri: &str, key: Option<&str>) -> (StatusCode, Value) {
    let (s, b) = get(app, uri, key).await;
    (s, serde_json::from_slice(&b).unwrap())
}

/// The call ids the list answers for `query`, and checks that the calls export (JSON
/// Lines) with the same filters holds the same calls in the same order.
async fn ids(app: &Router, query: &str) -> Vec<String> {
    let (s, body) = get_json(app, &format!("/v1/calls?{query}"), Some(ACME_KEY)).await;
    assert_eq!(s, StatusCode::OK, "{query}: {body}");
    let list: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(body["total_count"], list.len(), "{query}");
    let (s, file) = get(
        app,
        &format!("/v1/calls/export?format=jsonl&{query}"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{query}");
    let exported: Vec<String> = std::str::from_utf8(&file)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["call_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        exported, list,
        "the export selects as the list does: {query}"
    );
    list
}

fn assert_query_error(status: StatusCode, body: &[u8], parameter: &str, what: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}");
    let body: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body["status"], "error", "{what}");
    assert_eq!(body["error_code"], "INVALID_QUERY_PARAMETERS", "{what}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("`{parameter}`")),
        "{what}: {message}"
    );
}

#[tokio::test]
async fn duration_filters_are_inclusive_and_skip_calls_without_one() {
    let f = fixture().await;
    for (query, want) in [
        ("min_ringing_duration_ms=1000", &["c-101", "c-100"][..]),
        ("min_ringing_duration_ms=1001", &["c-101"]),
        ("max_ringing_duration_ms=1000", &["c-100"]),
        ("max_ringing_duration_ms=999", &[]),
        ("min_bot_duration_ms=30000", &["c-100"]),
        ("max_bot_duration_ms=1000", &["c-101"]),
        (
            "min_bot_duration_ms=1000&max_bot_duration_ms=30000",
            &["c-101", "c-100"],
        ),
        ("min_billed_duration_ms=1", &["c-100"]),
        ("max_billed_duration_ms=0", &["c-101"]),
        (
            "min_billed_duration_ms=0&max_billed_duration_ms=60000",
            &["c-101", "c-100"],
        ),
        ("max_duration_ms=20000", &["c-101"]),
        // The last of repeated values wins.
        ("min_bot_duration_ms=0&min_bot_duration_ms=5000", &["c-100"]),
        ("", &["x-200", "c-101", "c-100"]),
    ] {
        assert_eq!(ids(&f.app, query).await, want, "{query}");
    }
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn numbers_match_their_digits_whatever_the_formatting() {
    let f = fixture().await;
    for (query, want) in [
        ("from_number=4155550100", &["c-100"][..]),
        ("from_number=%2B1%20(415)%20555-0100", &["c-100"]),
        ("from_number=555-01", &["c-101", "c-100"]),
        ("from_number=0100", &["c-100"]),
        ("from_number=415.555.0199", &["c-101"]),
        ("from_number=999", &[]),
        ("to_number=7946%200958", &["c-100"]),
        ("to_number=5550000", &["x-200", "c-101"]),
        ("to_number=(800)", &["c-101"]),
        ("from_number=4930&to_number=5550000", &["x-200"]),
    ] {
        assert_eq!(ids(&f.app, query).await, want, "{query}");
    }
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn q_is_a_call_id_prefix_or_a_number() {
    let f = fixture().await;
    for (query, want) in [
        ("q=c-10", &["c-101", "c-100"][..]),
        ("q=c-100", &["c-100"]),
        ("q=x", &["x-200"]),
        ("q=%20x-2%20", &["x-200"]),
        ("q=C-10", &[]),
        ("q=-200", &[]),
        ("q=4930", &["x-200"]),
        ("q=0958", &["c-100"]),
        ("q=(415)%20555-0199", &["c-101"]),
        ("q=c-1&from_number=0199", &["c-101"]),
        ("q=", &["x-200", "c-101", "c-100"]),
    ] {
        assert_eq!(ids(&f.app, query).await, want, "{query}");
    }
    // Another tenant's call of the same id is its own.
    let (_, body) = get_json(&f.app, "/v1/calls?q=c-100", Some(GLOBEX_KEY)).await;
    assert_eq!(body["total_count"], 1);
    assert_eq!(body["data"][0]["to"], "+49 30 999");
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_filter_values_are_422_naming_the_parameter() {
    let f = fixture().await;
    let long_q = "x".repeat(1_001);
    let cases = [
        ("min_ringing_duration_ms", "-1"),
        ("max_ringing_duration_ms", "soon"),
        ("min_bot_duration_ms", "1.5"),
        ("max_bot_duration_ms", ""),
        ("min_billed_duration_ms", "1e3"),
        ("max_billed_duration_ms", "99999999999999999999"),
        ("from_number", "abc"),
        ("from_number", "%2B%20-().%20"),
        ("to_number", "555%3B1"),
        ("to_number", "x1"),
        ("q", long_q.as_str()),
    ];
    for (name, value) in cases {
        for route in ["/v1/calls", "/v1/calls/export"] {
            let (s, body) = get(&f.app, &format!("{route}?{name}={value}"), Some(ACME_KEY)).await;
            assert_query_error(s, &body, name, &format!("{route} {name}={value}"));
        }
    }
    // The key is checked before the filters.
    let (s, _) = get(&f.app, "/v1/calls?from_number=abc", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    f.store.shutdown().await.unwrap();
}

/// The records of a conversation, out of order, with lines that have no text and
/// events that are not part of a transcript.
fn conversation(tenant: &str, call: &str) -> Vec<TenantRecord> {
    let line = |ms: i64, event: &str, data: Value| {
        let mut r = rec(tenant, call, ms, event, data);
        r.record.category = if event == "USER_MESSAGE_RECEIVED" {
            Category::User
        } else {
            Category::Agent
        };
        r
    };
    vec![
        line(
            30,
            "AGENT_MESSAGE_SENT",
            json!({"text": "Sure, let me check.", "turn": "2"}),
        ),
        line(
            10,
            "GREETING_SENT",
            json!({"text": "Hi, this is Ava from Acme.", "turn": 0}),
        ),
        line(
            20,
            "USER_MESSAGE_RECEIVED",
            json!({"text": "<img src=x onerror=alert(1)>", "turn": 1, "confidence": 0.9}),
        ),
        line(25, "TURN_LATENCY", json!({"turn": 1, "end_to_end_ms": 800})),
        line(40, "USER_MESSAGE_RECEIVED", json!({"confidence": 0.1})),
        line(
            50,
            "REMINDER_MESSAGE_SENT",
            json!({"text": "Are you still there? 📞", "turn": 3.5}),
        ),
        line(60, "AGENT_MESSAGE_SENT", json!({"text": 42, "turn": 4})),
        line(0, "CALL_STARTED", json!({})),
    ]
}

#[tokio::test]
async fn the_transcript_is_the_conversation_oldest_first() {
    let f = fixture().await;
    f.store.append(conversation("acme", "talk")).await.unwrap();
    f.store
        .append(conversation("globex", "globex-talk"))
        .await
        .unwrap();
    let (s, body) = get_json(&f.app, "/v1/calls/talk/transcript", Some(ACME_KEY)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["call_id"], "talk");
    let lines = body["data"].as_array().unwrap();
    let got: Vec<(&str, &str, &str, Value)> = lines
        .iter()
        .map(|l| {
            (
                l["role"].as_str().unwrap(),
                l["event"].as_str().unwrap(),
                l["text"].as_str().unwrap(),
                l["turn"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "agent",
                "GREETING_SENT",
                "Hi, this is Ava from Acme.",
                json!(0)
            ),
            (
                "user",
                "USER_MESSAGE_RECEIVED",
                "<img src=x onerror=alert(1)>",
                json!(1)
            ),
            (
                "agent",
                "AGENT_MESSAGE_SENT",
                "Sure, let me check.",
                Value::Null
            ),
            (
                "agent",
                "REMINDER_MESSAGE_SENT",
                "Are you still there? 📞",
                Value::Null
            ),
            ("agent", "AGENT_MESSAGE_SENT", "42", json!(4)),
        ]
    );
    // Each line is the record of that id, at its time.
    let (_, logs) = get_json(
        &f.app,
        "/v1/calls/talk/logs?order=asc&limit=1000",
        Some(ACME_KEY),
    )
    .await;
    for l in lines {
        let record = logs["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == l["id"])
            .unwrap_or_else(|| panic!("{l}"));
        assert_eq!(record["timestamp"], l["timestamp"]);
        assert_eq!(record["event"], l["event"]);
    }
    assert_eq!(lines[0]["timestamp"], "2026-09-21T14:13:20.010000Z");

    // A call without transcript events has an empty transcript.
    let (s, body) = get_json(&f.app, "/v1/calls/c-100/transcript", Some(ACME_KEY)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, json!({"call_id": "c-100", "data": []}));
    // Another tenant's call, or none, is 404 in the contract's shape.
    for (uri, key) in [
        ("/v1/calls/globex-talk/transcript", ACME_KEY),
        ("/v1/calls/talk/transcript", GLOBEX_KEY),
        ("/v1/calls/nope/transcript", ACME_KEY),
    ] {
        let (s, body) = get_json(&f.app, uri, Some(key)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(body["error_code"], "CALL_NOT_FOUND", "{uri}");
        assert!(!body.to_string().contains("Ava"), "{uri}");
    }
    let (s, _) = get(&f.app, "/v1/calls/talk/transcript", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // globex sees its own.
    let (_, body) = get_json(&f.app, "/v1/calls/globex-talk/transcript", Some(GLOBEX_KEY)).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 5);
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn openapi_documents_the_filters_and_the_transcript() {
    let f = fixture().await;
    let (_, doc) = get_json(&f.app, "/openapi.json", None).await;
    let names = |path: &str| -> Vec<String> {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}"))
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let new = [
        "min_ringing_duration_ms",
        "max_ringing_duration_ms",
        "min_bot_duration_ms",
        "max_bot_duration_ms",
        "min_billed_duration_ms",
        "max_billed_duration_ms",
        "from_number",
        "to_number",
        "q",
    ];
    let (list, export) = (names("/v1/calls"), names("/v1/calls/export"));
    for n in new {
        assert!(list.iter().any(|p| p == n), "/v1/calls {n}");
        assert!(export.iter().any(|p| p == n), "/v1/calls/export {n}");
    }
    // One declaration: the export takes exactly the list's filters, plus `format`.
    let mut list_filters: Vec<&String> = list
        .iter()
        .filter(|p| *p != "page" && *p != "limit")
        .collect();
    let mut export_filters: Vec<&String> = export.iter().filter(|p| *p != "format").collect();
    list_filters.sort();
    export_filters.sort();
    assert_eq!(list_filters, export_filters);
    let params = doc["paths"]["/v1/calls"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let min_bot = params
        .iter()
        .find(|p| p["name"] == "min_bot_duration_ms")
        .unwrap();
    assert_eq!(min_bot["schema"]["type"], "integer", "{min_bot}");
    assert!(
        min_bot["description"]
            .as_str()
            .unwrap()
            .contains("milliseconds")
    );

    let op = &doc["paths"]["/v1/calls/{call_id}/transcript"]["get"];
    assert!(op.is_object());
    assert!(op["responses"]["404"].is_object());
    assert!(op["responses"]["401"].is_object());
    let line = &doc["components"]["schemas"]["TranscriptLineBody"]["properties"];
    for field in ["id", "timestamp", "role", "event", "text", "turn"] {
        assert!(line[field].is_object(), "{field}");
    }
    assert!(doc["components"]["schemas"]["TranscriptBody"].is_object());
    let formats = doc["paths"]["/v1/calls/export"]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap();
    assert!(formats.contains_key("application/pdf"));
    f.store.shutdown().await.unwrap();
}
