//! `format=pdf` on both exports, read back with poppler's `pdftotext -layout` and
//! `pdfinfo`: the heading (title, tenant, filters, generation time), the call's fields
//! on a call's log report, the rows (the CSV's), and pages that break with the header
//! repeated.

use std::{process::Command, sync::Arc};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
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
/// Calls in the fixture: enough for many pages.
const CALLS: i64 = 500;

fn rec(tenant: &str, call: &str, ms: i64, event: &str, level: Level, data: Value) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).str(event).i64(ms);
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(T0 + ms * 1_000_000),
            level,
            category: Category::CallLifecycle,
            event: event.into(),
            call_id: call.into(),
            agent_id: Some("agent-7".into()),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
            span_id: None,
            data: match data {
                Value::Object(m) => Some(m),
                _ => None,
            },
        },
    }
}

struct Fixture {
    app: Router,
    store: Store,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("pdf.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    let mut records = Vec::new();
    for i in 0..CALLS {
        let call = format!("call-{i:03}");
        let at = i * 10_000;
        records.push(rec(
            "acme",
            &call,
            at,
            "CALL_RECEIVED",
            Level::Info,
            json!({"from": "+1 (415) 555-0100", "to": format!("+1555{i:04}")}),
        ));
        records.push(rec(
            "acme",
            &call,
            at + 1,
            "CALL_STARTED",
            Level::Info,
            json!({}),
        ));
        let (event, status) = if i % 5 == 0 {
            ("CALL_FAILED", "failed")
        } else {
            ("CALL_COMPLETED", "completed")
        };
        records.push(rec(
            "acme",
            &call,
            at + 5_000,
            event,
            Level::Info,
            json!({"duration_ms": 4_999 + i, "hangup_reason": format!("{status}_reason"),
                   "bot_duration_ms": i * 2}),
        ));
    }
    // A long call whose records fill pages of their own.
    records.push(rec(
        "acme",
        "long-call",
        -1_000_000,
        "CALL_RECEIVED",
        Level::Info,
        json!({"from": "+44 20 7946 0958", "to": "+1 800 555 0000", "campaign_id": "Zoë's spring"}),
    ));
    for n in 0..300 {
        let (event, level) = if n % 10 == 9 {
            ("INTEGRATION_TOOL_FAILED", Level::Error)
        } else {
            ("AGENT_MESSAGE_SENT", Level::Info)
        };
        records.push(rec(
            "acme",
            "long-call",
            -1_000_000 + 1 + n,
            event,
            level,
            json!({"text": format!("line {n:03} (ünïcode ok, 日本 not) {}", "long ".repeat(n as usize % 40)), "turn": n}),
        ));
    }
    records.push(rec(
        "globex",
        "globex-call",
        0,
        "CALL_RECEIVED",
        Level::Info,
        json!({"from": "+1 (415) 555-0100", "to": "globex-secret"}),
    ));
    store.append(records).await.unwrap();
    let keys = Arc::new(KeyRing::new());
    keys.insert(&key_sha256_hex(ACME_KEY), "acme").unwrap();
    keys.insert(&key_sha256_hex(GLOBEX_KEY), "globex").unwrap();
    Fixture {
        app: router(ApiState::new(store.clone(), keys)),
        store,
        dir,
    }
}

async fn get(app: &Router, uri: &str, key: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let req = Request::get(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

/// The file's text as `pdftotext -layout` reads it (pages separated by form feeds),
/// and its page count as `pdfinfo` reports it.
fn read_pdf(f: &Fixture, name: &str, bytes: &[u8]) -> (String, usize) {
    assert!(bytes.starts_with(b"%PDF-1.4"), "a PDF file");
    let path = f.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(&path)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils) is installed");
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = Command::new("pdfinfo").arg(&path).output().unwrap();
    assert!(
        info.status.success(),
        "pdfinfo: {}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info = String::from_utf8(info.stdout).unwrap();
    assert!(!info.to_lowercase().contains("syntax error"), "{info}");
    let pages = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (String::from_utf8(out.stdout).unwrap(), pages)
}

/// The CSV export's rows for the same query (after the header), as their fields.
async fn csv_rows(app: &Router, uri: &str) -> Vec<Vec<String>> {
    let (s, _, body) = get(app, uri, ACME_KEY).await;
    assert_eq!(s, StatusCode::OK);
    let mut r = csv::Reader::from_reader(&body[3..]);
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn the_calls_report_is_paginated_with_its_heading_and_the_csv_rows() {
    let f = fixture().await;
    let query = "status=completed,failed&from_number=555-0100";
    let (s, h, body) = get(
        &f.app,
        &format!("/v1/calls/export?format=pdf&{query}"),
        ACME_KEY,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::CONTENT_TYPE], "application/pdf");
    let disposition = h[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"calls-") && disposition.ends_with(".pdf\""),
        "{disposition}"
    );
    let (text, pages) = read_pdf(&f, "calls.pdf", &body);

    // The heading, on the first page.
    let first = text.split('\u{c}').next().unwrap();
    assert!(first.trim_start().starts_with("Calls"), "{first}");
    for line in [
        "Tenant",
        "acme",
        "Generated",
        "Filters",
        "from_number=555-0100",
        "status=completed,failed",
    ] {
        assert!(first.contains(line), "{line} in {first}");
    }
    let generated = first
        .lines()
        .find_map(|l| l.trim().strip_prefix("Generated"))
        .unwrap()
        .trim();
    let when = chrono::DateTime::parse_from_rfc3339(generated).unwrap();
    assert!(
        (chrono::Utc::now() - when.to_utc()).num_seconds().abs() < 120,
        "{generated}"
    );

    // 500 rows: many pages, each with the table header and its number.
    assert!(pages >= 10, "{pages} pages");
    let page_texts: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert_eq!(page_texts.len(), pages);
    for (i, page) in page_texts.iter().enumerate() {
        assert!(
            page.contains("call_id") && page.contains("started_at"),
            "page {}",
            i + 1
        );
        assert!(page.contains(&format!("Page {}", i + 1)), "page {}", i + 1);
    }

    // The rows are the CSV's: every call, newest first, with its values.
    let rows = csv_rows(&f.app, &format!("/v1/calls/export?format=csv&{query}")).await;
    assert_eq!(rows.len(), CALLS as usize);
    let mut at = 0;
    for row in &rows {
        let id = &row[0];
        let found = text[at..]
            .find(id.as_str())
            .unwrap_or_else(|| panic!("{id} after byte {at}"));
        at += found;
    }
    // Values of one row: status, the hang-up reason, durations, the numbers.
    let row = &rows[0];
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&row[0]))
        .unwrap();
    for value in [&row[6], &row[9], &row[11]] {
        assert!(line.contains(value.as_str()), "{value} in {line}");
    }
    assert!(
        text.contains("completed_") && text.contains("failed_"),
        "hang-up reasons"
    );
    assert!(text.contains("+1 (415)") && text.contains("555-0100"));
    assert!(!text.contains("globex"));
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_call_logs_report_starts_with_the_call() {
    let f = fixture().await;
    let (s, h, body) = get(
        &f.app,
        "/v1/calls/long-call/logs/export?format=pdf&level=INFO,ERROR&order=desc",
        ACME_KEY,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"call-long-call-logs.pdf\""
    );
    let (text, pages) = read_pdf(&f, "logs.pdf", &body);
    assert!(pages >= 5, "{pages} pages");
    let first = text.split('\u{c}').next().unwrap();
    assert!(first.contains("Call logs: long-call"), "{first}");
    for line in ["acme", "level=INFO,ERROR", "order=desc", "Call"] {
        assert!(first.contains(line), "{line} in {first}");
    }
    // The call's fields come before the table.
    let table = first.find("timestamp").unwrap();
    for field in [
        "+44 20 7946 0958",
        "+1 800 555 0000",
        "Zoë's spring",
        "in_progress",
    ] {
        let at = first
            .find(field)
            .unwrap_or_else(|| panic!("{field} in {first}"));
        assert!(at < table, "{field} before the table");
    }
    // Newest first, every record; text outside WinAnsi shows as `?`.
    let newest = text.find("line 299").unwrap();
    let oldest = text.find("line 000").unwrap();
    assert!(newest < oldest);
    for n in [0, 150, 299] {
        assert!(text.contains(&format!("line {n:03}")), "line {n:03}");
    }
    assert!(
        text.contains("ünïcode ok, ?? not"),
        "WinAnsi text kept, the rest replaced"
    );
    assert!(text.contains("INTEGRATION_TOOL_FAILED"));

    // A filter that matches nothing: one page saying so.
    let (_, _, body) = get(
        &f.app,
        "/v1/calls/long-call/logs/export?format=pdf&level=CRITICAL",
        ACME_KEY,
    )
    .await;
    let (text, pages) = read_pdf(&f, "empty.pdf", &body);
    assert_eq!(pages, 1);
    assert!(
        text.contains("No records of this call match these filters."),
        "{text}"
    );

    // Another tenant's call is 404, as for every format.
    let (s, h, body) = get(
        &f.app,
        "/v1/calls/long-call/logs/export?format=pdf",
        GLOBEX_KEY,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(h.get(header::CONTENT_DISPOSITION).is_none());
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error_code"], "CALL_NOT_FOUND");
    let (s, _, _) = get(
        &f.app,
        "/v1/calls/globex-call/logs/export?format=pdf",
        ACME_KEY,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_empty_calls_report_is_one_page() {
    let f = fixture().await;
    let (s, _, body) = get(&f.app, "/v1/calls/export?format=PDF&q=nobody", ACME_KEY).await;
    assert_eq!(s, StatusCode::OK);
    let (text, pages) = read_pdf(&f, "none.pdf", &body);
    assert_eq!(pages, 1);
    assert!(text.contains("No calls match these filters."));
    assert!(text.contains("q=nobody"));
    // globex's report holds only globex's call.
    let (_, _, body) = get(&f.app, "/v1/calls/export?format=pdf", GLOBEX_KEY).await;
    let (text, _) = read_pdf(&f, "globex.pdf", &body);
    assert!(text.contains("globex-call") && text.contains("secret"));
    assert!(!text.contains("call-0") && !text.contains("long-call"));
    f.store.shutdown().await.unwrap();
}
