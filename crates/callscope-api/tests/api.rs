//! The customer API driven directly (no sockets) over a real DuckDB file.

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

fn record(tenant: &str, call: &str, n: i64) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).i64(n);
    let (level, category, event) = match n % 4 {
        0 => (Level::Info, Category::CallLifecycle, "CALL_STARTED"),
        1 => (Level::Info, Category::User, "USER_MESSAGE_RECEIVED"),
        2 => (
            Level::Error,
            Category::IntegrationTools,
            "INTEGRATION_TOOL_FAILED",
        ),
        _ => (Level::Debug, Category::Agent, "AGENT_STARTED_SPEAKING"),
    };
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(1_790_000_000_000_000_000 + n * 1_000_000),
            level,
            category,
            event: event.into(),
            call_id: call.into(),
            agent_id: Some("agent-1".into()),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: Some("b7ad6b7169203331".into()),
            data: Some(
                serde_json::from_value(json!({"text": format!("turn {n}"), "latency_ms": n * 10}))
                    .unwrap(),
            ),
        },
    }
}

struct Fixture {
    app: Router,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("api.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    store
        .append((0..30).map(|n| record("acme", "call-1", n)).collect())
        .await
        .unwrap();
    store
        .append((0..5).map(|n| record("globex", "call-g", n)).collect())
        .await
        .unwrap();
    let keys = Arc::new(KeyRing::new());
    keys.insert(&key_sha256_hex(ACME_KEY), "acme").unwrap();
    keys.insert(&key_sha256_hex(GLOBEX_KEY), "globex").unwrap();
    Fixture {
        app: router(ApiState::new(store.clone(), keys)),
        store,
        _dir: dir,
    }
}

async fn get(app: &Router, uri: &str, key: Option<&str>) -> (StatusCode, Value) {
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
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["status"], "error", "{}", got.1);
    assert_eq!(got.1["error_code"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn keys_decide_the_tenant() {
    let f = fixture().await;
    assert_error(
        &get(&f.app, "/v1/calls/call-1/logs", None).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    assert_error(
        &get(&f.app, "/v1/calls/call-1/logs", Some("cs_wrong")).await,
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
    );
    // Another tenant's call is indistinguishable from a missing one.
    assert_error(
        &get(&f.app, "/v1/calls/call-1/logs", Some(GLOBEX_KEY)).await,
        StatusCode::NOT_FOUND,
        "CALL_NOT_FOUND",
    );
    assert_error(
        &get(&f.app, "/v1/calls/nope/logs", Some(ACME_KEY)).await,
        StatusCode::NOT_FOUND,
        "CALL_NOT_FOUND",
    );
    let (status, body) = get(&f.app, "/v1/calls/call-g/logs", Some(GLOBEX_KEY)).await;
    assert_eq!(
        (status, body["total_count"].as_u64()),
        (StatusCode::OK, Some(5))
    );
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn page_shape_and_alias() {
    let f = fixture().await;
    let (status, body) = get(
        &f.app,
        "/v1/calls/call-1/logs?limit=10&order=asc",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 10);
    assert_eq!(body["first_id"], data[0]["id"]);
    assert_eq!(body["last_id"], data[9]["id"]);
    assert_eq!(
        (
            body["has_more"].as_bool(),
            body["current_page"].as_u64(),
            body["total_pages"].as_u64(),
            body["total_count"].as_u64()
        ),
        (Some(true), Some(1), Some(3), Some(30))
    );
    let first = &data[0];
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "agent_id",
            "call_id",
            "category",
            "data",
            "event",
            "id",
            "level",
            "span_id",
            "timestamp",
            "trace_id"
        ]
    );
    assert_eq!(first["timestamp"], "2026-09-21T14:13:20.000000Z");
    assert_eq!(first["data"], json!({"text": "turn 0", "latency_ms": 0}));

    let alias = get(
        &f.app,
        "/v1/log/call/call-1?limit=10&order=asc",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(alias.1, body);

    // Cursor pages carry no page numbers.
    let last = body["last_id"].as_str().unwrap();
    let (_, next) = get(
        &f.app,
        &format!("/v1/calls/call-1/logs?limit=10&order=asc&after={last}"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(
        (next["current_page"].clone(), next["total_pages"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(next["data"].as_array().unwrap().len(), 10);
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn filters_select_exactly() {
    let f = fixture().await;
    let count = |q: &'static str| {
        let app = f.app.clone();
        async move {
            get(&app, &format!("/v1/calls/call-1/logs?{q}"), Some(ACME_KEY))
                .await
                .1["total_count"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(count("level=ERROR").await, 7); // n % 4 == 2 for n < 30
    assert_eq!(count("min_level=INFO").await, 23);
    assert_eq!(count("category=USER,CALL_LIFECYCLE").await, 8 + 8);
    assert_eq!(count("event=AGENT_STARTED_SPEAKING").await, 7);
    assert_eq!(count("event=UNKNOWN_EVENT").await, 0);
    assert_eq!(count("level=debug&category=AGENT").await, 7);
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_get_the_contract_codes() {
    let f = fixture().await;
    let id = "00000000-0000-0000-0000-000000000000";
    for q in [
        format!("after={id}&before={id}"),
        format!("after={id}&page=2"),
        "limit=0".to_owned(),
        "limit=1001".to_owned(),
        "page=0".to_owned(),
        "page=abc".to_owned(),
        format!("after={id}"), // a cursor not in the result set
    ] {
        let got = get(
            &f.app,
            &format!("/v1/calls/call-1/logs?{q}"),
            Some(ACME_KEY),
        )
        .await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PAGINATION_PARAMETERS",
        );
    }
    for q in ["category=BILLING", "level=LOUD", "order=up", "min_level=x"] {
        let got = get(
            &f.app,
            &format!("/v1/calls/call-1/logs?{q}"),
            Some(ACME_KEY),
        )
        .await;
        assert_error(
            &got,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_QUERY_PARAMETERS",
        );
    }
    // SQL metacharacters are data, never syntax.
    let got = get(&f.app, "/v1/calls/x'%20OR%20'1'='1/logs", Some(ACME_KEY)).await;
    assert_error(&got, StatusCode::NOT_FOUND, "CALL_NOT_FOUND");
    let got = get(
        &f.app,
        "/v1/calls/call-1/logs?event=x'%20OR%201=1--",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(got.1["total_count"], 0);
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn operations_endpoints() {
    let f = fixture().await;
    assert_eq!(get(&f.app, "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(get(&f.app, "/readyz", None).await.0, StatusCode::OK);

    let (status, doc) = get(&f.app, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/v1/calls/{call_id}/logs"]["get"].is_object());
    assert!(doc["paths"]["/v1/log/call/{call_id}"]["get"].is_object());
    for (path, method) in [
        ("/v1/logs/search", "post"),
        ("/v1/calls", "get"),
        ("/v1/calls/{call_id}", "get"),
        ("/v1/calls/{call_id}/comments", "get"),
        ("/v1/calls/{call_id}/comments", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path}");
    }
    for path in ["/v1/calls/{call_id}/logs/stream", "/v1/logs/stream"] {
        let op = &doc["paths"][path]["get"];
        assert!(
            op["responses"]["200"]["content"]["text/event-stream"].is_object(),
            "{path}: {op}"
        );
        for status in ["401", "422"] {
            assert!(op["responses"][status].is_object(), "{path} {status}");
        }
    }
    assert!(doc["paths"]["/v1/calls/{call_id}/logs/stream"]["get"]["responses"]["404"].is_object());
    for schema in [
        "Call",
        "LevelCounts",
        "SearchBody",
        "SearchResponse",
        "CommentBody",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(doc["components"]["schemas"]["LogRecord"].is_object());

    // Folding the journalled summaries is timed.
    f.store.sync().await.unwrap();
    let (status, text) = get(&f.app, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(text.contains("callscope_records_stored_total 35"), "{text}");
    let folds: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("callscope_store_fold_seconds_count "))
        .unwrap_or_else(|| panic!("{text}"))
        .parse()
        .unwrap();
    assert!(folds >= 1.0, "{text}");
    assert!(
        !text.contains("acme") && !text.contains("call-1"),
        "metrics must not reveal tenant data"
    );

    assert_error(
        &get(&f.app, "/v2/nothing", Some(ACME_KEY)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
    f.store.shutdown().await.unwrap();
}
