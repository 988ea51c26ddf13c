//! Exports end to end: records arrive over real OTLP (the simulated agent through the
//! OpenTelemetry exporters, and hand-built OTLP/HTTP requests), are downloaded from the
//! running server, read back with real readers, and match what `callscope export`
//! writes from the same database file.

mod support;

use std::{path::Path, process::Command, time::Instant};

use callscope_tracing::Protocol;
use opentelemetry_proto::tonic::{
    collector::logs::v1::ExportLogsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    logs::v1::{LogRecord, ResourceLogs, ScopeLogs},
};
use prost::Message as _;
use serde_json::{Value, json};
use support::{Harness, key_for, metric};

const FORMATS: [&str; 4] = ["csv", "jsonl", "parquet", "xlsx"];

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

/// A customer-visible OTLP log record of `call` for `tenant`.
fn otlp_record(tenant: &str, call: &str, n: u64, extra: Vec<KeyValue>) -> LogRecord {
    let mut attributes = vec![
        kv("call.id", text(call)),
        kv("tenant.id", text(tenant)),
        kv("agent.id", text("agent-e2e")),
        kv("callscope.visibility", text("customer")),
        kv("turn", any_value::Value::IntValue(n as i64)),
    ];
    attributes.extend(extra);
    LogRecord {
        time_unix_nano: 1_790_000_000_000_000_000 + n * 1_000_000,
        severity_number: 9,
        event_name: "AGENT_MESSAGE_SENT".into(),
        attributes,
        trace_id: vec![0x0a; 16],
        span_id: vec![0xb7; 8],
        ..LogRecord::default()
    }
}

/// Sends records over OTLP/HTTP (protobuf), as an exporter would.
async fn send_otlp(h: &Harness, records: Vec<LogRecord>) {
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: None,
            scope_logs: vec![ScopeLogs {
                scope: None,
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    let resp = h
        .http
        .post(format!("http://{}/v1/logs", h.server().http_addr))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Downloads an export: status, headers, body.
async fn download(
    h: &Harness,
    path: &str,
    tenant: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = h
        .http
        .get(h.api(path))
        .bearer_auth(key_for(tenant))
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

fn python(script: &str, file: &Path) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every format, read back by a real reader, as `[{column: value}]`: the columns in
/// `times` as nanoseconds since the epoch, JSON columns as JSON text (CSV, Parquet,
/// XLSX) or values (JSON Lines), nulls as null (CSV: empty text), XLSX numbers as
/// numbers.
fn read_back(format: &str, path: &Path, sheet: &str, times: &[&str]) -> Vec<Value> {
    let mut rows: Vec<Value> = match format {
        "csv" => python(
            r#"
import csv, json, sys
with open(sys.argv[1], newline="", encoding="utf-8-sig") as f:
    print(json.dumps(list(csv.DictReader(f))))
"#,
            path,
        )
        .as_array()
        .unwrap()
        .clone(),
        "jsonl" => std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        "parquet" => python(
            r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
times = [f.name for f in t.schema if pa.types.is_timestamp(f.type)]
for name in times:
    assert str(t.schema.field(name).type) == "timestamp[us, tz=UTC]", t.schema
rows = t.to_pylist()
for r in rows:
    for name in times:
        r[name] = r[name] and r[name].isoformat()
print(json.dumps(rows))
"#,
            path,
        )
        .as_array()
        .unwrap()
        .clone(),
        "xlsx" => {
            use calamine::{Data, Reader as _, Xlsx, open_workbook};
            let mut book: Xlsx<_> = open_workbook(path).unwrap();
            let range = book.worksheet_range(sheet).unwrap();
            let mut rows = range.rows();
            let header: Vec<String> = rows
                .next()
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect();
            rows.map(|r| {
                let mut obj = serde_json::Map::new();
                for (name, cell) in header.iter().zip(r) {
                    let v = match cell {
                        Data::Empty => Value::Null,
                        Data::String(s) => Value::String(s.clone()),
                        Data::Float(x) if x.fract() == 0.0 => json!(*x as i64),
                        // Excel serial days, UTC.
                        Data::DateTime(dt) => {
                            json!(((dt.as_f64() - 25_569.0) * 86_400e9).round() as i64)
                        }
                        other => panic!("{name}: unexpected cell {other:?}"),
                    };
                    obj.insert(name.clone(), v);
                }
                Value::Object(obj)
            })
            .collect()
        }
        _ => unreachable!(),
    };
    for r in &mut rows {
        for t in times {
            if let Some(ts) = r[*t].as_str().filter(|s| !s.is_empty()) {
                r[*t] = json!(nanos(ts));
            }
        }
    }
    rows
}

/// Compares a time read back from `format` with the API's.
fn assert_time(format: &str, got: &Value, want: &str, what: &str) {
    let (got, want) = (got.as_i64().unwrap(), nanos(want));
    match format {
        "csv" | "jsonl" => assert_eq!(got, want, "{format}: {what}"),
        // Parquet keeps microseconds.
        "parquet" => assert_eq!(got, want.div_euclid(1000) * 1000, "{format}: {what}"),
        // Excel keeps a double of days; it shows milliseconds.
        _ => assert!((got - want).abs() < 1_000_000, "{format}: {what}"),
    }
}

fn nanos(rfc3339: &str) -> i64 {
    callscope_model::Timestamp::parse_rfc3339(rfc3339)
        .unwrap()
        .as_nanos()
}

/// Compares exported rows with the API's records.
fn assert_same(format: &str, got: &[Value], api: &[Value]) {
    assert_eq!(got.len(), api.len(), "{format}: record count");
    for (g, a) in got.iter().zip(api) {
        let id = &a["id"];
        for (k, want) in a.as_object().unwrap() {
            let got = &g[k];
            match (k.as_str(), want) {
                ("timestamp", w) => {
                    assert_time(format, got, w.as_str().unwrap(), &format!("{k} of {id}"));
                }
                (_, Value::Null) if format == "csv" => assert_eq!(got, "", "{format}: {k} of {id}"),
                (_, Value::Null) => assert!(got.is_null(), "{format}: {k} of {id}"),
                ("data", w) if format != "jsonl" => {
                    let parsed: Value = serde_json::from_str(got.as_str().unwrap()).unwrap();
                    assert_eq!(&parsed, w, "{format}: {k} of {id}");
                }
                (_, w) => assert_eq!(got, w, "{format}: {k} of {id}"),
            }
        }
    }
}

/// Compares calls read back from `format` with the calls list's, flattening
/// `level_counts` into `debug_count` … `critical_count` for the tabular formats.
fn assert_same_calls(format: &str, got: &[Value], list: &[Value]) {
    assert_eq!(got.len(), list.len(), "{format}: call count");
    for (g, call) in got.iter().zip(list) {
        let id = &call["call_id"];
        let mut want = call.as_object().unwrap().clone();
        let mut g = g.as_object().unwrap().clone();
        if format != "jsonl" {
            let counts = want.remove("level_counts").unwrap();
            for level in ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] {
                want.insert(
                    format!("{}_count", level.to_lowercase()),
                    counts[level].clone(),
                );
            }
        }
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{format}: columns"
        );
        for (k, w) in &want {
            let got = g.remove(k).unwrap();
            let what = format!("{k} of {id}");
            match (k.as_str(), w) {
                (_, Value::Null) if format == "csv" => assert_eq!(got, "", "{format}: {what}"),
                ("started_at" | "ended_at", Value::String(t)) => {
                    assert_time(format, &got, t, &what);
                }
                (_, Value::Number(n)) if format == "csv" => {
                    assert_eq!(got, n.to_string(), "{format}: {what}");
                }
                // A spreadsheet number has no integer or float type: `47.0` reads back
                // as `47`. The value must be the same.
                (_, Value::Number(n)) if format == "xlsx" => {
                    assert_eq!(got.as_f64(), n.as_f64(), "{format}: {what}");
                }
                _ => assert_eq!(&got, w, "{format}: {what}"),
            }
        }
    }
}

/// Records from the simulated agent (OpenTelemetry exporters over gRPC) plus records
/// whose text is built to break CSV and spreadsheet writers (OTLP/HTTP), exported in
/// every format: each reads back to exactly the API's records. Another tenant gets 404
/// and no file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_matches_the_api_after_otlp_ingest() {
    let h = Harness::start().await;
    let report = h.run_agent(Protocol::Grpc, 3, 21).await;
    let tricky = "call-tricky-e2e";
    send_otlp(
        &h,
        (0..5)
            .map(|n| {
                otlp_record(
                    "acme",
                    tricky,
                    n,
                    vec![
                        kv(
                            "text",
                            text("Comma, \"quote\"\nnew line\r\n☎️ 電話 — Zoë =SUM(A1)"),
                        ),
                        kv("ratio", any_value::Value::DoubleValue(0.5)),
                        kv("internal.secret", text("never exported")),
                    ],
                )
            })
            .collect(),
    )
    .await;

    let mut calls: Vec<(String, String)> = report
        .calls
        .iter()
        .map(|c| (c.tenant.clone(), c.call_id.clone()))
        .collect();
    calls.push(("acme".into(), tricky.into()));
    for (tenant, call) in &calls {
        let api = h.call_records(tenant, call).await;
        assert!(!api.is_empty());
        for format in FORMATS {
            let (status, headers, body) = download(
                &h,
                &format!("/v1/calls/{call}/logs/export?format={format}"),
                tenant,
            )
            .await;
            assert_eq!(status, 200, "{format}");
            assert_eq!(
                headers["content-disposition"],
                format!("attachment; filename=\"call-{call}-logs.{format}\"").as_str()
            );
            assert!(!String::from_utf8_lossy(&body).contains("never exported"));
            let path = h.dir.path().join(format!("{call}.{format}"));
            std::fs::write(&path, &body).unwrap();
            assert_same(
                format,
                &read_back(format, &path, "logs", &["timestamp"]),
                &api,
            );
        }

        // Tenant isolation: the other tenant cannot tell the call exists.
        let other = if tenant == "acme" { "globex" } else { "acme" };
        for format in FORMATS {
            let (status, headers, body) = download(
                &h,
                &format!("/v1/calls/{call}/logs/export?format={format}"),
                other,
            )
            .await;
            assert_eq!(status, 404);
            assert!(headers.get("content-disposition").is_none());
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                (body["status"].as_str(), body["error_code"].as_str()),
                (Some("error"), Some("CALL_NOT_FOUND"))
            );
        }
    }
    // The calls list, exported: each tenant gets exactly its own calls.
    for tenant in support::TENANTS {
        let (status, list) = h.get("/v1/calls?limit=1000", Some(tenant)).await;
        assert_eq!(status, 200);
        let list = list["data"].as_array().unwrap().clone();
        assert!(!list.is_empty());
        for format in FORMATS {
            let (status, _, body) =
                download(&h, &format!("/v1/calls/export?format={format}"), tenant).await;
            assert_eq!(status, 200, "{format}");
            let path = h.dir.path().join(format!("calls-{tenant}.{format}"));
            std::fs::write(&path, &body).unwrap();
            let got = read_back(format, &path, "calls", &["started_at", "ended_at"]);
            assert_same_calls(format, &got, &list);
        }
    }
    let (status, _, body) = download(
        &h,
        &format!("/v1/calls/{tricky}/logs/export?format=docx"),
        "acme",
    )
    .await;
    assert_eq!(status, 422);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error_code"], "INVALID_QUERY_PARAMETERS");
    h.stop().await;
}

/// A streamed HTTP/1.1 download over a socket with a small receive buffer (so the
/// kernel cannot soak up the file on the client's behalf while it pauses).
struct SlowClient {
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl SlowClient {
    async fn get(addr: std::net::SocketAddr, path: &str, key: &str) -> SlowClient {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: callscope\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut reader = tokio::io::BufReader::with_capacity(16 * 1024, stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        let mut chunked = false;
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            chunked |= line.eq_ignore_ascii_case("transfer-encoding: chunked\r\n");
        }
        assert!(chunked, "a streamed body has no length up front");
        SlowClient { reader }
    }

    /// The next chunk of the body; `None` at its end.
    async fn chunk(&mut self) -> Option<Vec<u8>> {
        use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _};
        let mut line = String::new();
        self.reader.read_line(&mut line).await.unwrap();
        let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).await.unwrap();
        assert!(data.ends_with(b"\r\n"));
        data.truncate(size);
        (size > 0).then_some(data)
    }
}

/// 50,000 records of one call over OTLP/HTTP, exported over a real socket: the first
/// bytes arrive long before the last, and while the client stops reading the server
/// stops producing (it does not build the file in memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_export_streams() {
    const N: u64 = 50_000;
    let h = Harness::start().await;
    let ingest = Instant::now();
    let payload = "x".repeat(300);
    for start in (0..N).step_by(5_000) {
        send_otlp(
            &h,
            (start..start + 5_000)
                .map(|n| otlp_record("acme", "call-large", n, vec![kv("text", text(&payload))]))
                .collect(),
        )
        .await;
    }
    let ingest = ingest.elapsed();

    for format in ["csv", "jsonl"] {
        let before = metric(&h.metrics().await, "callscope_export_bytes_total");
        let started = Instant::now();
        let mut client = SlowClient::get(
            h.server().api_addr,
            &format!("/v1/calls/call-large/logs/export?format={format}"),
            &key_for("acme"),
        )
        .await;
        let first = client.chunk().await.unwrap();
        let first_after = started.elapsed();
        let pause = std::time::Duration::from_secs(1);
        tokio::time::sleep(pause).await;
        let ahead = metric(&h.metrics().await, "callscope_export_bytes_total") - before;
        let mut total = first.len();
        let mut lines = first.iter().filter(|b| **b == b'\n').count();
        while let Some(c) = client.chunk().await {
            total += c.len();
            lines += c.iter().filter(|b| **b == b'\n').count();
        }
        let took = started.elapsed() - pause;
        assert_eq!(lines as u64, if format == "csv" { N + 1 } else { N });
        // The server's socket buffer (up to 4 MiB here) holds some; the rest of the
        // file must not have been produced.
        assert!(
            ahead < total as f64 / 3.0,
            "{format}: {ahead} of {total} bytes produced while the client paused"
        );
        assert!(
            first_after < took / 4,
            "{format}: first bytes after {first_after:?} of {took:?}"
        );
        eprintln!(
            "{format}: {N} records ({total} bytes) in {took:?} = {:.0} records/s, first bytes after {first_after:?}, {ahead} bytes produced during a 1 s pause (ingest took {ingest:?})",
            N as f64 / took.as_secs_f64()
        );
    }
    h.stop().await;
}

fn cli(db: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_callscope"))
        .arg("export")
        .args(args)
        .env("CALLSCOPE_STORAGE__PATH", db)
        .env_remove("CALLSCOPE_CONFIG")
        .output()
        .unwrap()
}

/// `callscope export` writes the same files as the API for the same queries (a call's
/// records, and the calls list; PDF reports read the same but for their generation
/// time), refuses politely while a server holds the database, and writes nothing for a
/// call the tenant does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_writes_what_the_api_serves() {
    let mut h = Harness::start().await;
    let report = h.run_agent(Protocol::HttpProtobuf, 2, 8).await;
    let call = &report.calls[0];
    // The same query through the API and the CLI: a call's records, and the calls list.
    let agent = call.agent_id.clone();
    let cases: [(&str, String, Vec<&str>); 2] = [
        (
            "logs",
            format!(
                "/v1/calls/{}/logs/export?level=INFO,WARNING,ERROR&order=desc",
                call.call_id
            ),
            vec![
                "--call",
                &call.call_id,
                "--level",
                "INFO,WARNING,ERROR",
                "--order",
                "desc",
            ],
        ),
        (
            "calls",
            format!("/v1/calls/export?agent_id={agent}"),
            vec!["--agent-id", &agent],
        ),
    ];
    let mut from_api = Vec::new();
    for (_, url, _) in &cases {
        for format in FORMATS {
            let (status, _, body) =
                download(&h, &format!("{url}&format={format}"), &call.tenant).await;
            assert_eq!(status, 200);
            from_api.push(body);
        }
    }
    let mut api_pdfs = Vec::new();
    for (_, url, _) in &cases {
        let (status, _, body) = download(&h, &format!("{url}&format=pdf"), &call.tenant).await;
        assert_eq!(status, 200);
        api_pdfs.push(body);
    }
    let db = h.db_path();
    let out = h.dir.path().join("cli-out");
    std::fs::create_dir(&out).unwrap();

    // The server holds the file: the CLI says so and writes nothing.
    let target = out.join("while-serving.csv");
    let o = cli(
        &db,
        &[
            "--tenant",
            &call.tenant,
            "--call",
            &call.call_id,
            "-o",
            target.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("in use by another process") && stderr.contains("callscope serve"),
        "{stderr}"
    );
    assert!(!target.exists());

    h.server.take().unwrap().shutdown().await.unwrap();
    let mut api_bytes = from_api.iter();
    for (what, _, args) in &cases {
        for format in FORMATS {
            let api_bytes = api_bytes.next().unwrap();
            let file = out.join(format!("{what}.{format}"));
            let mut all = vec!["--tenant", &call.tenant, "--format", format];
            all.extend(args.iter().copied());
            all.extend(["-o", file.to_str().unwrap()]);
            let o = cli(&db, &all);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let cli_bytes = std::fs::read(&file).unwrap();
            if format == "xlsx" {
                // Workbooks carry their creation time; compare what they hold.
                let api_file = out.join(format!("api-{what}.xlsx"));
                std::fs::write(&api_file, api_bytes).unwrap();
                let cells = read_back("xlsx", &file, what, &[]);
                assert!(!cells.is_empty());
                assert_eq!(cells, read_back("xlsx", &api_file, what, &[]), "{what}");
            } else {
                assert!(
                    &cli_bytes == api_bytes,
                    "{what}, {format}: the CLI's file equals the API's"
                );
            }
        }
    }

    // PDF reports: the same report but for its generation time.
    let pdfs = h.dir.path().join("pdf");
    std::fs::create_dir(&pdfs).unwrap();
    for ((what, _, args), api_pdf) in cases.iter().zip(&api_pdfs) {
        let file = pdfs.join(format!("{what}.pdf"));
        let mut all = vec!["--tenant", &call.tenant];
        all.extend(args.iter().copied());
        all.extend(["-o", file.to_str().unwrap()]);
        let o = cli(&db, &all);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let api_file = pdfs.join(format!("api-{what}.pdf"));
        std::fs::write(&api_file, api_pdf).unwrap();
        let text = |path: &Path| {
            let o = Command::new("pdftotext")
                .args(["-layout", "-enc", "UTF-8"])
                .arg(path)
                .arg("-")
                .output()
                .expect("pdftotext (poppler-utils) is installed");
            assert!(o.status.success());
            String::from_utf8(o.stdout)
                .unwrap()
                .lines()
                .filter(|l| !l.to_lowercase().contains("generated"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let (cli_text, api_text) = (text(&file), text(&api_file));
        assert!(cli_text.contains(&call.tenant), "{what}: {cli_text}");
        assert_eq!(
            cli_text, api_text,
            "{what}: the CLI's report reads as the API's"
        );
    }

    // Another tenant's call: an error, and no file.
    let other = if call.tenant == "acme" {
        "globex"
    } else {
        "acme"
    };
    let file = out.join("other.csv");
    let o = cli(
        &db,
        &[
            "--tenant",
            other,
            "--call",
            &call.call_id,
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no call"));
    assert!(!file.exists());
    // Only the requested files were written; no temporary files are left behind.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api-calls.xlsx",
            "api-logs.xlsx",
            "calls.csv",
            "calls.jsonl",
            "calls.parquet",
            "calls.xlsx",
            "logs.csv",
            "logs.jsonl",
            "logs.parquet",
            "logs.xlsx"
        ]
    );
    let leftovers = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".callscope-export-")
        })
        .count();
    assert_eq!(leftovers, 0);
}
