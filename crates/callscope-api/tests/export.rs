//! Exports driven directly (no sockets) over a real DuckDB file, each format read back
//! by a real reader: Python's csv module, DuckDB and pyarrow for Parquet, calamine for
//! XLSX.

use std::{io::Write as _, process::Command, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode, header},
};
use bytes::Bytes;
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
/// The call whose data is made to break naive CSV, JSON and spreadsheet writers.
const TRICKY: &str = "call-tricky";

fn tricky_data(n: i64) -> Value {
    json!({
        "text": format!("Hello, \"caller\" {n}\nsecond line;\tthird\r\nfourth"),
        "unicode": "📞 ☎️ 電話 مرحبا Zoë",
        "formula_like": "=1+2",
        "latency_ms": n * 10,
        "ratio": 0.25,
        "ok": n % 2 == 0,
        "nested": {"list": [1, "b,c", null]},
    })
}

fn record(tenant: &str, call: &str, n: i64, data: Option<Value>) -> TenantRecord {
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
    let bare = n % 5 == 4; // some records without agent, trace, span and data
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            // Every third record has sub-microsecond digits.
            timestamp: Timestamp(T0 + n * 1_000_000 + if n % 3 == 0 { 789 } else { 0 }),
            level,
            category,
            event: event.into(),
            call_id: call.into(),
            agent_id: (!bare).then(|| "agent-1".into()),
            trace_id: (!bare).then(|| "0af7651916cd43dd8448eb211c80319c".into()),
            span_id: (!bare).then(|| "b7ad6b7169203331".into()),
            data: if bare {
                None
            } else {
                data.map(|d| serde_json::from_value(d).unwrap())
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
        path: dir.path().join("export.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    store
        .append(
            (0..20)
                .map(|n| record("acme", TRICKY, n, Some(tricky_data(n))))
                .collect(),
        )
        .await
        .unwrap();
    store
        .append(
            (0..5)
                .map(|n| {
                    record(
                        "globex",
                        "call-g",
                        n,
                        Some(json!({"secret": "globex only"})),
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    let keys = Arc::new(KeyRing::new());
    keys.insert(&key_sha256_hex(ACME_KEY), "acme").unwrap();
    keys.insert(&key_sha256_hex(GLOBEX_KEY), "globex").unwrap();
    Fixture {
        app: router(ApiState::new(store.clone(), keys)),
        store,
        dir,
    }
}

async fn get_raw(app: &Router, uri: &str, key: Option<&str>) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::get(uri);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}

/// The call's records as the list endpoint returns them, oldest first.
async fn api_records(app: &Router, call: &str, query: &str, key: &str) -> Vec<Value> {
    let (status, _, body) = get_raw(
        app,
        &format!("/v1/calls/{call}/logs?order=asc&limit=1000&{query}"),
        Some(key),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["data"].as_array().unwrap().clone()
}

/// Runs a Python script with the file as its argument and parses what it prints.
fn python(script: &str, file: &std::path::Path) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3 runs (the export tests read files back with Python)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn save(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

const COLUMNS: [&str; 10] = [
    "id",
    "timestamp",
    "level",
    "category",
    "event",
    "call_id",
    "agent_id",
    "trace_id",
    "span_id",
    "data",
];

fn assert_download(headers: &HeaderMap, content_type: &str, filename: &str) {
    assert_eq!(headers[header::CONTENT_TYPE], content_type);
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"{filename}\"").as_str()
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn csv_reads_back_with_pythons_csv_module() {
    let f = fixture().await;
    let expected = api_records(&f.app, TRICKY, "", ACME_KEY).await;
    let (status, headers, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=csv"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_download(
        &headers,
        "text/csv; charset=utf-8",
        "call-call-tricky-logs.csv",
    );
    assert!(
        body.starts_with(b"\xEF\xBB\xBFid,timestamp,level,"),
        "BOM, then the header row"
    );
    let path = save(&f.dir, "logs.csv", &body);

    // Python reads every row back intact and sees UTC times.
    let read = python(
        r#"
import csv, json, sys
from datetime import datetime, timedelta
with open(sys.argv[1], newline="", encoding="utf-8-sig") as f:
    rows = list(csv.reader(f))
utc = all(datetime.fromisoformat(r[1]).utcoffset() == timedelta(0) for r in rows[1:])
print(json.dumps({"rows": rows, "utc": utc}))
"#,
        &path,
    );
    assert_eq!(read["utc"], true);
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows[0], json!(COLUMNS));
    assert_eq!(rows.len(), expected.len() + 1);
    for (row, rec) in rows[1..].iter().zip(&expected) {
        for (i, col) in COLUMNS.iter().enumerate() {
            let cell = row[i].as_str().unwrap();
            match (&rec[*col], *col) {
                (Value::Null, _) => assert_eq!(cell, "", "{col}: null is an empty field"),
                (data, "data") => {
                    assert_eq!(&serde_json::from_str::<Value>(cell).unwrap(), data);
                }
                (v, _) => assert_eq!(cell, v.as_str().unwrap(), "{col}"),
            }
        }
    }
    // The tricky text survived quoting: commas, quotes, CR/LF, tabs, unicode.
    let data: Value = serde_json::from_str(rows[2][9].as_str().unwrap()).unwrap();
    assert_eq!(data, tricky_data(1));
    // Sub-microsecond digits are kept, as the API shows them.
    assert_eq!(rows[1][1], "2026-09-21T14:13:20.000000789Z");
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn jsonl_lines_are_the_api_records() {
    let f = fixture().await;
    let expected = api_records(&f.app, TRICKY, "", ACME_KEY).await;
    let (status, headers, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=jsonl"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_download(
        &headers,
        "application/jsonl; charset=utf-8",
        "call-call-tricky-logs.jsonl",
    );
    let text = std::str::from_utf8(&body).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (line, rec) in lines.iter().zip(&expected) {
        // Byte for byte what the list endpoint writes for the record.
        let typed: LogRecord = serde_json::from_value(rec.clone()).unwrap();
        assert_eq!(*line, serde_json::to_string(&typed).unwrap());
    }
    // Python's json module agrees.
    let path = save(&f.dir, "logs.jsonl", &body);
    let read = python(
        r#"
import json, sys
print(json.dumps([json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]))
"#,
        &path,
    );
    assert_eq!(read, Value::Array(expected));
    f.store.shutdown().await.unwrap();
}

fn micros(rfc3339: &str) -> i64 {
    Timestamp::parse_rfc3339(rfc3339).unwrap().as_nanos() / 1000
}

#[tokio::test]
async fn parquet_reads_back_in_duckdb_and_pyarrow() {
    let f = fixture().await;
    let expected = api_records(&f.app, TRICKY, "", ACME_KEY).await;
    let (status, headers, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=parquet"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_download(
        &headers,
        "application/vnd.apache.parquet",
        "call-call-tricky-logs.parquet",
    );
    assert!(body.starts_with(b"PAR1") && body.ends_with(b"PAR1"));
    let path = save(&f.dir, "logs.parquet", &body);

    // DuckDB.
    let p = path.to_str().unwrap().to_owned();
    let (types, rows) = f
        .store
        .read(move |c| {
            let file = format!("read_parquet('{}')", p.replace('\'', "''"));
            let mut stmt = c.prepare(&format!(
                "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {file})"
            ))?;
            let types = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut stmt = c.prepare(&format!("SELECT * FROM {file}"))?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let mut row = Vec::new();
                for i in 0..10 {
                    row.push(r.get::<_, duckdb_value::Value>(i)?);
                }
                out.push(row);
            }
            Ok((types, out))
        })
        .await
        .unwrap();
    let names: Vec<&str> = types.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, COLUMNS);
    assert_eq!(types[1].1, "TIMESTAMP WITH TIME ZONE");
    assert!(
        types
            .iter()
            .filter(|(n, _)| n != "timestamp")
            .all(|(_, t)| t == "VARCHAR")
    );
    assert_eq!(rows.len(), expected.len());
    for (row, rec) in rows.iter().zip(&expected) {
        assert_eq!(
            row[1],
            duckdb_value::Value::Timestamp(
                duckdb_value::TimeUnit::Microsecond,
                micros(rec["timestamp"].as_str().unwrap())
            )
        );
        for (i, col) in COLUMNS.iter().enumerate().filter(|(i, _)| *i != 1) {
            match (&row[i], &rec[*col]) {
                (duckdb_value::Value::Null, Value::Null) => {}
                (duckdb_value::Value::Text(s), Value::Object(_)) => {
                    assert_eq!(&serde_json::from_str::<Value>(s).unwrap(), &rec[*col]);
                }
                (duckdb_value::Value::Text(s), Value::String(v)) => assert_eq!(s, v),
                (got, want) => panic!("{col}: {got:?} vs {want}"),
            }
        }
    }

    // pyarrow.
    let read = python(
        r#"
import json, sys
try:
    import pyarrow.parquet as pq
except ImportError:
    sys.exit("pyarrow is missing: python3 -m pip install pyarrow (.ci/run installs it)")
t = pq.read_table(sys.argv[1])
ts = t.schema.field("timestamp").type
rows = t.to_pylist()
for r in rows:
    r["timestamp"] = r["timestamp"].isoformat()
print(json.dumps({
    "names": t.schema.names,
    "ts_unit": ts.unit, "ts_tz": ts.tz,
    "types": [str(f.type) for f in t.schema],
    "rows": rows,
}))
"#,
        &path,
    );
    assert_eq!(read["names"], json!(COLUMNS));
    assert_eq!(
        (read["ts_unit"].as_str(), read["ts_tz"].as_str()),
        (Some("us"), Some("UTC"))
    );
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    for (row, rec) in rows.iter().zip(&expected) {
        let ts = row["timestamp"].as_str().unwrap();
        assert!(ts.ends_with("+00:00"), "{ts}");
        assert_eq!(micros(ts), micros(rec["timestamp"].as_str().unwrap()));
        for col in COLUMNS.iter().filter(|c| **c != "timestamp") {
            match &rec[*col] {
                Value::Object(_) => assert_eq!(
                    serde_json::from_str::<Value>(row[*col].as_str().unwrap()).unwrap(),
                    rec[*col]
                ),
                v => assert_eq!(&row[*col], v, "{col}"),
            }
        }
    }
    f.store.shutdown().await.unwrap();
}

/// Values DuckDB hands back.
mod duckdb_value {
    pub(crate) use callscope_store::duckdb::types::{TimeUnit, Value};
}

#[tokio::test]
async fn xlsx_is_a_workbook_with_typed_cells() {
    use calamine::{Data, Reader as _, Xlsx};

    let f = fixture().await;
    let expected = api_records(&f.app, TRICKY, "", ACME_KEY).await;
    let (status, headers, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=xlsx"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_download(
        &headers,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "call-call-tricky-logs.xlsx",
    );
    let mut book = Xlsx::new(std::io::Cursor::new(body.to_vec())).unwrap();
    assert_eq!(book.sheet_names(), ["logs"]);
    let range = book.worksheet_range("logs").unwrap();
    let rows: Vec<&[Data]> = range.rows().collect();
    let header: Vec<String> = rows[0].iter().map(ToString::to_string).collect();
    assert_eq!(header, COLUMNS);
    assert_eq!(rows.len(), expected.len() + 1);
    for (row, rec) in rows[1..].iter().zip(&expected) {
        // Times are date-time cells: Excel's serial day number, in UTC.
        let Data::DateTime(dt) = &row[1] else {
            panic!("timestamp is a date-time cell: {:?}", row[1]);
        };
        let secs = micros(rec["timestamp"].as_str().unwrap()) as f64 / 1e6;
        let serial = 25_569.0 + secs / 86_400.0;
        assert!(
            (dt.as_f64() - serial).abs() * 86_400.0 < 1e-3,
            "within a millisecond"
        );
        for (i, col) in COLUMNS.iter().enumerate().filter(|(i, _)| *i != 1) {
            match (&row[i], &rec[*col]) {
                (Data::Empty, Value::Null) => {}
                (Data::String(s), Value::Object(_)) => {
                    assert_eq!(&serde_json::from_str::<Value>(s).unwrap(), &rec[*col]);
                }
                (Data::String(s), Value::String(v)) => assert_eq!(s, v, "{col}"),
                (got, want) => panic!("{col}: {got:?} vs {want}"),
            }
        }
    }
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn filters_and_order_apply_to_every_format() {
    let f = fixture().await;
    let filters = "level=ERROR,DEBUG&category=AGENT,INTEGRATION_TOOLS&min_level=ERROR";
    let mut expected = api_records(&f.app, TRICKY, filters, ACME_KEY).await;
    expected.reverse();
    let q = format!("{filters}&order=desc");
    let expected_ids: Vec<&str> = expected.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(!expected_ids.is_empty());

    let (_, _, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=jsonl&{q}"),
        Some(ACME_KEY),
    )
    .await;
    let ids: Vec<String> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, expected_ids);

    let (_, _, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=csv&{q}"),
        Some(ACME_KEY),
    )
    .await;
    let text = std::str::from_utf8(&body[3..]).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
    assert_eq!(ids, expected_ids);

    // Filters that match nothing: a header-only CSV, an empty JSON Lines file, a
    // Parquet file with no rows, a workbook with only the header row.
    let none = "event=NO_SUCH_EVENT";
    let (s, _, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?{none}"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!((s, &body[..]), (StatusCode::OK, &b"\xEF\xBB\xBFid,timestamp,level,category,event,call_id,agent_id,trace_id,span_id,data\r\n"[..]));
    let (s, _, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=jsonl&{none}"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!((s, body.len()), (StatusCode::OK, 0));
    let (s, _, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=parquet&{none}"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let path = save(&f.dir, "empty.parquet", &body);
    let p = path.to_str().unwrap().to_owned();
    let n: i64 = f
        .store
        .read(move |c| {
            let sql = format!(
                "SELECT count(*) FROM read_parquet('{}')",
                p.replace('\'', "''")
            );
            Ok(c.query_row(&sql, [], |r| r.get(0))?)
        })
        .await
        .unwrap();
    assert_eq!(n, 0);
    let (s, _, body) = get_raw(
        &f.app,
        &format!("/v1/calls/{TRICKY}/logs/export?format=xlsx&{none}"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    {
        use calamine::Reader as _;
        let mut book = calamine::Xlsx::new(std::io::Cursor::new(body.to_vec())).unwrap();
        assert_eq!(book.worksheet_range("logs").unwrap().height(), 1);
    }
    f.store.shutdown().await.unwrap();
}

fn assert_error(status: StatusCode, body: &[u8], want: StatusCode, code: &str) {
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(status, want, "{v}");
    assert_eq!(v["status"], "error");
    assert_eq!(v["error_code"], code);
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn tenants_cannot_export_each_others_calls() {
    let f = fixture().await;
    for format in ["csv", "jsonl", "parquet", "xlsx"] {
        // Another tenant's call is a call that does not exist: 404 and no file.
        let (s, h, body) = get_raw(
            &f.app,
            &format!("/v1/calls/call-g/logs/export?format={format}"),
            Some(ACME_KEY),
        )
        .await;
        assert_error(s, &body, StatusCode::NOT_FOUND, "CALL_NOT_FOUND");
        assert!(h.get(header::CONTENT_DISPOSITION).is_none());
        assert!(!String::from_utf8_lossy(&body).contains("globex"));
        let (s, _, body) = get_raw(
            &f.app,
            &format!("/v1/calls/{TRICKY}/logs/export?format={format}"),
            Some(GLOBEX_KEY),
        )
        .await;
        assert_error(s, &body, StatusCode::NOT_FOUND, "CALL_NOT_FOUND");
        let (s, _, body) = get_raw(
            &f.app,
            &format!("/v1/calls/{TRICKY}/logs/export?format={format}"),
            None,
        )
        .await;
        assert_error(s, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    // Its own call exports fine.
    let (s, _, body) = get_raw(
        &f.app,
        "/v1/calls/call-g/logs/export?format=jsonl",
        Some(GLOBEX_KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(std::str::from_utf8(&body).unwrap().lines().count(), 5);
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_parameters_get_the_contract_codes() {
    let f = fixture().await;
    for q in [
        "format=xls",
        "format=",
        "format=csv%27%3B%20DROP%20TABLE%20logs",
        "level=LOUD",
        "category=BILLING",
        "min_level=7",
        "order=sideways",
    ] {
        let (s, h, body) = get_raw(
            &f.app,
            &format!("/v1/calls/{TRICKY}/logs/export?{q}"),
            Some(ACME_KEY),
        )
        .await;
        assert_error(
            s,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_QUERY_PARAMETERS",
        );
        assert!(h.get(header::CONTENT_DISPOSITION).is_none(), "{q}");
    }
    // A call id that is not a safe file name is made one.
    let weird = "a\"b;c/../d é";
    f.store
        .append(vec![record("acme", weird, 0, None)])
        .await
        .unwrap();
    let (s, h, _) = get_raw(
        &f.app,
        "/v1/calls/a%22b%3Bc%2F..%2Fd%20%C3%A9/logs/export?format=csv",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"call-a_b_c_.._d__-logs.csv\""
    );
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn openapi_documents_the_export() {
    let f = fixture().await;
    let (_, _, body) = get_raw(&f.app, "/openapi.json", None).await;
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let op = &doc["paths"]["/v1/calls/{call_id}/logs/export"]["get"];
    assert!(op.is_object(), "{doc}");
    let content = &op["responses"]["200"]["content"];
    for t in [
        "text/csv",
        "application/jsonl",
        "application/vnd.apache.parquet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ] {
        assert!(content[t].is_object(), "{t}: {content}");
    }
    f.store.shutdown().await.unwrap();
}

/// 50,000 records: the export starts at once and, while the client does not read,
/// the server stops producing after a couple of chunks instead of building the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_exports_stream_with_backpressure() {
    let f = fixture().await;
    const N: i64 = 50_000;
    let big = json!({"text": "x".repeat(400)});
    for start in (0..N).step_by(10_000) {
        f.store
            .append(
                (start..start + 10_000)
                    .map(|n| record("acme", "call-big", n, Some(big.clone())))
                    .collect(),
            )
            .await
            .unwrap();
    }
    for format in ["csv", "jsonl"] {
        let before = f.store.metrics().export_bytes();
        let started = std::time::Instant::now();
        let resp = f
            .app
            .clone()
            .oneshot(
                Request::get(format!("/v1/calls/call-big/logs/export?format={format}"))
                    .header(header::AUTHORIZATION, format!("Bearer {ACME_KEY}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let first_after = started.elapsed();
        // The client pauses; the producer may run ahead only by the channel's chunks.
        const PAUSE: Duration = Duration::from_millis(500);
        tokio::time::sleep(PAUSE).await;
        let ahead = f.store.metrics().export_bytes() - before;
        let mut total = first.len() as u64;
        let mut lines = bytecount(&first);
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            total += data.len() as u64;
            lines += bytecount(&data);
        }
        let took = started.elapsed() - PAUSE;
        let rows = if format == "csv" { N + 1 } else { N };
        assert_eq!(lines, rows as usize, "{format}: every record, once");
        assert!(total > 20_000_000, "{format}: {total} bytes");
        assert!(
            ahead < total / 10,
            "{format}: {ahead} of {total} bytes produced while the client paused"
        );
        assert!(
            first_after < took / 4,
            "{format}: first bytes after {first_after:?} of {took:?}"
        );
        eprintln!(
            "{format}: {N} records, {total} bytes, first bytes after {first_after:?}, all in {took:?}, {ahead} bytes ahead while paused"
        );
    }
    f.store.shutdown().await.unwrap();
}

/// Line ends; the records' text contains no raw newlines (JSON escapes them).
fn bytecount(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

fn lifecycle(tenant: &str, call: &str, n: i64, event: &str, data: Value) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).str(event).i64(n);
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(T0 + n * 1_000_000_000),
            level: Level::Info,
            category: Category::CallLifecycle,
            event: event.into(),
            call_id: call.into(),
            agent_id: Some("agent-7".into()),
            trace_id: None,
            span_id: None,
            data: Some(serde_json::from_value(data).unwrap()),
        },
    }
}

/// Three finished acme calls with every summary field, beside the fixture's calls.
async fn calls_fixture() -> Fixture {
    let f = fixture().await;
    let mut records = Vec::new();
    for (i, (status_event, reason)) in [
        ("CALL_COMPLETED", "customer_hangup"),
        ("CALL_FAILED", "carrier said \"busy\", retry later"),
        ("CALL_COMPLETED", "agent_hangup"),
    ]
    .into_iter()
    .enumerate()
    {
        let call = format!("call-{i}");
        let t = i as i64 * 100;
        records.push(lifecycle(
            "acme",
            &call,
            t,
            "CALL_RECEIVED",
            json!({"from": "+15550100", "to": format!("+1555020{i}"), "campaign_id": "spring, 2026"}),
        ));
        records.push(lifecycle("acme", &call, t + 1, "CALL_STARTED", json!({})));
        records.push(lifecycle(
            "acme",
            &call,
            t + 2,
            "RECORDING_STARTED",
            json!({"recording_url": format!("https://rec.example/{i}?a=1&b=2")}),
        ));
        records.push(lifecycle(
            "acme",
            &call,
            t + 61,
            status_event,
            json!({"duration_ms": 60_000 + i, "ringing_duration_ms": 1_500, "billed_duration_ms": 61_000,
                   "hangup_reason": reason, "hangup_source": "customer"}),
        ));
    }
    f.store.append(records).await.unwrap();
    f
}

async fn call_list(app: &Router, query: &str, key: &str) -> Vec<Value> {
    let (status, _, body) = get_raw(app, &format!("/v1/calls?limit=1000&{query}"), Some(key)).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).unwrap();
    body["data"].as_array().unwrap().clone()
}

const CALL_COLUMNS: [&str; 31] = [
    "call_id",
    "agent_id",
    "direction",
    "from",
    "to",
    "campaign_id",
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "ringing_duration_ms",
    "bot_duration_ms",
    "billed_duration_ms",
    "hangup_reason",
    "hangup_source",
    "recording_url",
    "trace_id",
    "log_count",
    "debug_count",
    "info_count",
    "warning_count",
    "error_count",
    "critical_count",
    "turn_count",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_max_ms",
    "llm_input_tokens",
    "llm_output_tokens",
    "tts_characters",
    "stt_seconds",
];

/// A call from the list, flattened the way the tabular formats carry it.
fn flat_call(call: &Value) -> serde_json::Map<String, Value> {
    let mut flat = call.as_object().unwrap().clone();
    let counts = flat.remove("level_counts").unwrap();
    for level in ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] {
        flat.insert(
            format!("{}_count", level.to_lowercase()),
            counts[level].clone(),
        );
    }
    flat
}

#[tokio::test]
async fn calls_export_matches_the_list_in_every_format() {
    use calamine::{Data, Reader as _, Xlsx};

    let f = calls_fixture().await;
    let list = call_list(&f.app, "", ACME_KEY).await;
    assert_eq!(list.len(), 4, "three finished calls and the tricky one");
    let url = |format: &str| format!("/v1/calls/export?format={format}");

    // JSON Lines: byte for byte the list's calls, newest first.
    let (status, headers, body) = get_raw(&f.app, &url("jsonl"), Some(ACME_KEY)).await;
    assert_eq!(status, StatusCode::OK);
    let disposition = headers[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"calls-")
            && disposition.ends_with("Z.jsonl\""),
        "{disposition}"
    );
    let lines: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
    assert_eq!(lines.len(), list.len());
    for (line, call) in lines.iter().zip(&list) {
        let typed: callscope_model::Call = serde_json::from_value(call.clone()).unwrap();
        assert_eq!(*line, serde_json::to_string(&typed).unwrap());
    }

    // CSV through Python: the flat columns, numbers and times as text.
    let (_, _, body) = get_raw(&f.app, &url("csv"), Some(ACME_KEY)).await;
    let path = save(&f.dir, "calls.csv", &body);
    let read = python(
        r#"
import csv, json, sys
with open(sys.argv[1], newline="", encoding="utf-8-sig") as f:
    r = csv.reader(f)
    print(json.dumps(list(r)))
"#,
        &path,
    );
    let rows = read.as_array().unwrap();
    assert_eq!(rows[0], json!(CALL_COLUMNS));
    assert_eq!(rows.len(), list.len() + 1);
    for (row, call) in rows[1..].iter().zip(&list) {
        let flat = flat_call(call);
        for (i, col) in CALL_COLUMNS.iter().enumerate() {
            let want = match &flat[*col] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                n => n.to_string(),
            };
            assert_eq!(
                row[i].as_str().unwrap(),
                want,
                "{col} of {}",
                call["call_id"]
            );
        }
    }

    // XLSX: numbers are number cells, times date-time cells, nulls empty.
    let (_, _, body) = get_raw(&f.app, &url("xlsx"), Some(ACME_KEY)).await;
    let mut book = Xlsx::new(std::io::Cursor::new(body.to_vec())).unwrap();
    assert_eq!(book.sheet_names(), ["calls"]);
    let range = book.worksheet_range("calls").unwrap();
    let rows: Vec<&[Data]> = range.rows().collect();
    assert_eq!(rows.len(), list.len() + 1);
    for (row, call) in rows[1..].iter().zip(&list) {
        let flat = flat_call(call);
        for (i, col) in CALL_COLUMNS.iter().enumerate() {
            match (&row[i], &flat[*col]) {
                (Data::Empty, Value::Null) => {}
                (Data::String(s), Value::String(v)) if !col.ends_with("_at") => assert_eq!(s, v),
                (Data::Float(x), Value::Number(n)) => assert_eq!(*x, n.as_f64().unwrap(), "{col}"),
                (Data::DateTime(dt), Value::String(v)) => {
                    let secs = micros(v) as f64 / 1e6;
                    assert!((dt.as_f64() - (25_569.0 + secs / 86_400.0)).abs() * 86_400.0 < 1e-3);
                }
                (got, want) => panic!("{col}: {got:?} vs {want}"),
            }
        }
    }
    let finished = rows[1..]
        .iter()
        .filter(|r| matches!(r[9], Data::Float(_)))
        .count();
    assert_eq!(finished, 3, "durations are numbers");

    // Parquet: typed columns.
    let (_, _, body) = get_raw(&f.app, &url("parquet"), Some(ACME_KEY)).await;
    let path = save(&f.dir, "calls.parquet", &body);
    let read = python(
        r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
rows = t.to_pylist()
for r in rows:
    for k in ("started_at", "ended_at"):
        r[k] = r[k] and r[k].isoformat()
print(json.dumps({"types": {f.name: str(f.type) for f in t.schema}, "rows": rows}))
"#,
        &path,
    );
    let types = &read["types"];
    assert_eq!(types["started_at"], "timestamp[us, tz=UTC]");
    assert_eq!(types["duration_ms"], "int64");
    assert_eq!(types["log_count"], "int64");
    assert_eq!(types["from"], "string");
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(rows.len(), list.len());
    for (row, call) in rows.iter().zip(&list) {
        let flat = flat_call(call);
        for col in CALL_COLUMNS {
            match (&row[col], &flat[col]) {
                (Value::String(got), Value::String(want)) if col.ends_with("_at") => {
                    assert_eq!(micros(got), micros(want), "{col}");
                }
                (got, want) => assert_eq!(got, want, "{col}"),
            }
        }
    }
    f.store.shutdown().await.unwrap();
}

#[tokio::test]
async fn calls_export_filters_and_isolation() {
    let f = calls_fixture().await;
    let ids = |body: &[u8]| -> Vec<String> {
        std::str::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["call_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    for q in [
        "status=completed",
        "status=failed&direction=inbound",
        "hangup_reason=agent_hangup,customer_hangup&min_duration_ms=60001",
        "from_number=%2B15550100&started_before=2026-09-21T14:15:00Z",
        "campaign_id=spring%2C%202026", // a comma inside a value is a list separator
        "agent_id=agent-7",
    ] {
        let list = call_list(&f.app, q, ACME_KEY).await;
        let want: Vec<&str> = list
            .iter()
            .map(|c| c["call_id"].as_str().unwrap())
            .collect();
        let (status, _, body) = get_raw(
            &f.app,
            &format!("/v1/calls/export?format=jsonl&{q}"),
            Some(ACME_KEY),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{q}");
        assert_eq!(ids(&body), want, "{q}");
    }
    // Each tenant exports only its own calls.
    let (_, _, body) = get_raw(&f.app, "/v1/calls/export?format=jsonl", Some(GLOBEX_KEY)).await;
    assert_eq!(ids(&body), ["call-g"]);
    for format in ["csv", "parquet", "xlsx"] {
        let (_, _, body) = get_raw(
            &f.app,
            &format!("/v1/calls/export?format={format}"),
            Some(GLOBEX_KEY),
        )
        .await;
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains(TRICKY) && !text.contains("call-0"),
            "{format}"
        );
    }
    let (s, _, body) = get_raw(&f.app, "/v1/calls/export", None).await;
    assert_error(s, &body, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    for q in [
        "format=docx",
        "direction=sideways",
        "started_after=yesterday",
        "min_duration_ms=-1",
    ] {
        let (s, h, body) = get_raw(&f.app, &format!("/v1/calls/export?{q}"), Some(ACME_KEY)).await;
        assert_error(
            s,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_QUERY_PARAMETERS",
        );
        assert!(h.get(header::CONTENT_DISPOSITION).is_none(), "{q}");
    }
    // No matching calls: a header-only CSV.
    let (s, _, body) = get_raw(
        &f.app,
        "/v1/calls/export?status=no_such_status",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(std::str::from_utf8(&body[3..]).unwrap().lines().count(), 1);
    // The export is in the OpenAPI document.
    let (_, _, doc) = get_raw(&f.app, "/openapi.json", None).await;
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    assert!(doc["paths"]["/v1/calls/export"]["get"].is_object());
    f.store.shutdown().await.unwrap();
}
