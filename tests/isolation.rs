//! Tenant isolation and leakage, adversarially, against a real server on real sockets:
//! one tenant's keys against another tenant's call ids on every customer endpoint, ids
//! guessed from answers or timing, SQL metacharacters and path tricks in every parameter,
//! oversized query strings. Answers are 401/404/422 (or 200 with the caller's own data)
//! in the contract's shape, never another tenant's data, never a 500.
//!
//! The visibility property runs over the whole pipeline: generated mixes of customer and
//! internal records with infrastructure attributes go in over OTLP, and the API shows
//! exactly the customer records with exactly the allowed keys.
//!
//! Secrets: API keys and ingest tokens never appear in the logs, even at `trace`.

mod support;

use std::{
    collections::{BTreeSet, HashSet},
    time::{Duration, Instant},
};

use callscope_collector::{
    testing::{LogBuilder, ResourceBuilder, kv, map, request},
    visibility::record_id,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use proptest::prelude::*;
use serde_json::Value;
use support::{Harness, key_for, otlp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A customer endpoint that takes a call id.
struct Endpoint {
    name: &'static str,
    method: &'static str,
    /// The request target for a call id (inserted as given: tests pass raw bytes).
    target: fn(&str) -> String,
    /// The JSON body for a call id, if the endpoint takes one.
    body: Option<fn(&str) -> String>,
    /// What another tenant's (or no) call answers: 404 for per-call routes.
    foreign: u16,
    /// What the caller's own call answers.
    own: u16,
    /// Its answers show the call's records (and so carry the tenant's markers).
    shows_records: bool,
    /// The `/openapi.json` path whose documented query parameters this endpoint takes
    /// (each is tried with hostile values); `None` to try none.
    params: Option<&'static str>,
}

/// A JSON string.
fn js(v: &str) -> String {
    Value::String(v.to_owned()).to_string()
}

/// Every customer endpoint that takes a call id. Adding an endpoint is one entry here;
/// every test below then covers it.
const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        name: "call logs",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/logs"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: true,
        params: Some("/v1/calls/{call_id}/logs"),
    },
    Endpoint {
        name: "call logs (alias)",
        method: "GET",
        target: |c| format!("/v1/log/call/{c}"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: true,
        // The alias takes the same parameters as the route it stands for.
        params: Some("/v1/calls/{call_id}/logs"),
    },
    Endpoint {
        name: "call detail",
        method: "GET",
        target: |c| format!("/v1/calls/{c}"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: false,
        params: None,
    },
    Endpoint {
        name: "comments",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/comments"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: false,
        params: None,
    },
    Endpoint {
        name: "add comment",
        method: "POST",
        target: |c| format!("/v1/calls/{c}/comments"),
        body: Some(|_| r#"{"author": "mallory", "text": "planted"}"#.to_owned()),
        foreign: 404,
        own: 201,
        shows_records: false,
        params: None,
    },
    Endpoint {
        name: "call logs export (csv)",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/logs/export?format=csv"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: true,
        params: Some("/v1/calls/{call_id}/logs/export"),
    },
    Endpoint {
        name: "call logs export (jsonl)",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/logs/export?format=jsonl"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: true,
        params: None,
    },
    Endpoint {
        name: "call logs export (parquet)",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/logs/export?format=parquet"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: false,
        params: None,
    },
    Endpoint {
        name: "call logs export (xlsx)",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/logs/export?format=xlsx"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: false,
        params: None,
    },
    Endpoint {
        name: "call logs export (pdf)",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/logs/export?format=pdf"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: false,
        params: None,
    },
    Endpoint {
        name: "transcript",
        method: "GET",
        target: |c| format!("/v1/calls/{c}/transcript"),
        body: None,
        foreign: 404,
        own: 200,
        shows_records: false,
        params: None,
    },
    Endpoint {
        name: "search by call id",
        method: "POST",
        target: |_| "/v1/logs/search".to_owned(),
        body: Some(|c| format!(r#"{{"call_ids": [{}], "size": 100}}"#, js(c))),
        foreign: 200,
        own: 200,
        shows_records: true,
        params: None,
    },
];

/// Customer endpoints without a call id: method and target. Their query parameters
/// (GET) or body fields (POST) are the ones `/openapi.json` documents.
const COLLECTIONS: &[(&str, &str)] = &[
    ("GET", "/v1/calls"),
    ("GET", "/v1/calls/export"),
    ("POST", "/v1/logs/search"),
];

/// The operation `method path` of the OpenAPI document.
fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &spec["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "/openapi.json documents {method} {path}");
    op
}

/// The query parameters `/openapi.json` documents for `method path`.
fn documented_query(spec: &Value, method: &str, path: &str) -> Vec<String> {
    let names: Vec<String> = operation(spec, method, path)["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !names.is_empty(),
        "{method} {path} documents query parameters"
    );
    names
}

/// The JSON body fields `/openapi.json` documents for `method path`.
fn documented_body(spec: &Value, method: &str, path: &str) -> Vec<String> {
    let schema =
        &operation(spec, method, path)["requestBody"]["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &spec["components"]["schemas"][name]
        }
        None => schema,
    };
    let names: Vec<String> = schema["properties"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    assert!(!names.is_empty(), "{method} {path} documents body fields");
    names
}

/// The API's own OpenAPI document.
async fn openapi(api: std::net::SocketAddr) -> Value {
    let (s, b) = raw(api, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);
    serde_json::from_str(&b).unwrap()
}

/// Values that have broken SQL builders, path handling and parsers elsewhere.
const HOSTILE: &[&str] = &[
    "'",
    "%27",
    "' OR '1'='1",
    "%27%20OR%20%271%27%3D%271",
    "x%27%3B%20DROP%20TABLE%20logs%3B--",
    "1;DELETE FROM logs",
    "\\'",
    "%22",
    "%",
    "%25",
    "_",
    "*",
    "shared-id%25",
    "shared%5Fid",
    "..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fglobex-only",
    "a%2Fb",
    "%00",
    "a%00b",
    "%ff%fe",
    "%C0%AF",
    "%E2%80%AE",
    "$(id)",
    "${jndi:x}",
    "-1",
    "0",
    "18446744073709551616",
    "1e9",
    "NaN",
    "null",
    "[]",
    "{}",
    "00000000-0000-0000-0000-000000000000",
    "INFO,%27",
    "AGENT%27)--",
];

/// The markers in each tenant's records: a response may show its own, never another's.
fn marker(tenant: &str) -> String {
    format!("{}-SECRET", tenant.to_ascii_uppercase())
}

/// Loads each tenant's calls: `shared-id` exists for both (different content), and each
/// has a call only it owns.
async fn load(h: &Harness) -> Vec<uuid::Uuid> {
    let client = otlp::http_client();
    let base = format!("http://{}", h.server().http_addr);
    let mut ids = Vec::new();
    for (t, tenant) in support::TENANTS.iter().enumerate() {
        for call in ["shared-id".to_owned(), format!("{tenant}-only")] {
            let records: Vec<_> = (0..5u64)
                .map(|n| {
                    LogBuilder::customer(otlp::EVENT)
                        .call(&call)
                        .tenant(tenant)
                        .time(otlp::base_time() + t as u64 * 100 + n)
                        .attr("marker", format!("{}-{n}", marker(tenant)))
                        .body(format!("{} says hello", marker(tenant)))
                        .build()
                })
                .collect();
            for r in &records {
                ids.push(record_id(tenant, &call, otlp::EVENT, r));
            }
            let req = request([ResourceBuilder::new().logs(records).build()]);
            assert!(otlp::send_http(&client, &base, &req, false).await.acked);
        }
    }
    ids
}

/// A raw HTTP/1.1 request, so targets reach the server byte for byte (no client-side
/// normalisation of `..` or percent-encoding). Returns status and body.
async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        req.push_str(&format!("Authorization: {k}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let body = &buf[split..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The payload of a chunked body.
fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..eol]);
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// `target` with `query` appended (after `?`, or `&` when it has a query already).
fn with_query(target: &str, query: &str) -> String {
    let sep = if target.contains('?') { '&' } else { '?' };
    format!("{target}{sep}{query}")
}

/// `v` as it may stand in a request target: the characters a URI cannot hold raw
/// (space, quotes, backslash, braces, …) percent-encoded, everything else as given.
fn in_target(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if c.is_ascii_graphic() && !"\"\\{}[]^`|<>#".contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn bearer(tenant: &str) -> String {
    format!("Bearer {}", key_for(tenant))
}

/// Checks what every answer must be: no 5xx, the contract's error shape, no other
/// tenant's data, no internals (beyond what the request itself sent, `echo`).
fn check(what: &str, status: u16, body: &str, caller: Option<&str>, allowed: &[u16]) {
    check_echo(what, status, body, caller, allowed, "");
}

fn check_echo(
    what: &str,
    status: u16,
    body: &str,
    caller: Option<&str>,
    allowed: &[u16],
    echo: &str,
) {
    assert!(
        allowed.contains(&status),
        "{what}: {status} not in {allowed:?}: {body}"
    );
    if status >= 400 {
        let v: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{what}: {status} body is not JSON: {body:?}"));
        assert_eq!(v["status"], "error", "{what}: {body}");
        assert!(
            v["error_code"].is_string() && v["message"].is_string(),
            "{what}: {body}"
        );
    }
    for tenant in support::TENANTS {
        if Some(tenant) != caller {
            for secret in [marker(tenant), format!("{tenant}-only")] {
                assert!(
                    echo.contains(&secret) || !body.contains(&secret),
                    "{what}: leaks {tenant}: {body}"
                );
            }
        }
    }
    for internal in [
        "SELECT",
        "FROM logs",
        "duckdb",
        "DuckDB",
        "/tmp",
        "127.0.0.1",
        "panicked",
    ] {
        assert!(
            status < 400 || echo.contains(internal) || !body.contains(internal),
            "{what}: reveals `{internal}`: {body}"
        );
    }
}

/// A body with the parts that vary between identical requests removed.
fn stable(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(mut v) => {
            if let Some(m) = v.as_object_mut() {
                m.remove("execution_time_ms");
            }
            v.to_string()
        }
        Err(_) => body.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_keys_never_reach_another_tenants_calls() {
    let h = Harness::start().await;
    load(&h).await;
    let api = h.server().api_addr;
    let long_key = format!("Bearer cs_{}", "a".repeat(8000));
    for e in ENDPOINTS {
        let send = |call: &str, key: Option<String>| {
            let target = (e.target)(call);
            let body = e.body.map(|b| b(call));
            async move { raw(api, e.method, &target, key.as_deref(), body.as_deref()).await }
        };
        // Without a valid key: 401, whatever the call.
        for key in [
            None,
            Some(String::new()),
            Some("Bearer".into()),
            Some("Bearer ".into()),
            Some(format!("Basic {}", key_for("acme"))),
            Some(format!("Bearer {}x", key_for("acme"))),
            Some(format!("Bearer {}", key_for("acme").to_uppercase())),
            Some(format!("Bearer {} {}", key_for("acme"), key_for("globex"))),
            Some(long_key.clone()),
        ] {
            for call in ["acme-only", "globex-only", "nope"] {
                let (s, b) = send(call, key.clone()).await;
                check_echo(e.name, s, &b, None, &[401], call);
                assert!(b.contains("UNAUTHORIZED"), "{}: {b}", e.name);
            }
        }
        // Another tenant's call answers exactly as a call that does not exist.
        let (s_foreign, b_foreign) = send("globex-only", Some(bearer("acme"))).await;
        let (s_missing, b_missing) = send("no-such-call", Some(bearer("acme"))).await;
        check_echo(
            e.name,
            s_foreign,
            &b_foreign,
            Some("acme"),
            &[e.foreign],
            "globex-only",
        );
        assert_eq!(
            (s_foreign, stable(&b_foreign)),
            (s_missing, stable(&b_missing)),
            "{}: a foreign call is told apart from a missing one",
            e.name
        );
        // A call id both tenants use shows each tenant only its own records.
        for tenant in support::TENANTS {
            let (s, b) = send("shared-id", Some(bearer(tenant))).await;
            check(e.name, s, &b, Some(tenant), &[e.own]);
            if e.shows_records {
                assert!(b.contains(&marker(tenant)), "{}: {b}", e.name);
            }
        }
    }
    // Lists show the caller's calls only.
    for tenant in support::TENANTS {
        let (s, b) = raw(api, "GET", "/v1/calls", Some(&bearer(tenant)), None).await;
        check("calls list", s, &b, Some(tenant), &[200]);
        let v: Value = serde_json::from_str(&b).unwrap();
        let mut calls: Vec<&str> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap())
            .collect();
        calls.sort_unstable();
        let own = format!("{tenant}-only");
        assert_eq!(calls, [own.as_str(), "shared-id"]);
        assert_eq!(v["total_count"], 2);
        // The calls export holds the same two calls, one line each.
        let (s, b) = raw(
            api,
            "GET",
            "/v1/calls/export?format=jsonl",
            Some(&bearer(tenant)),
            None,
        )
        .await;
        check("calls export", s, &b, Some(tenant), &[200]);
        let mut exported: Vec<String> = b
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["call_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        exported.sort_unstable();
        assert_eq!(exported, [own.as_str(), "shared-id"]);
        let (s, b) = raw(
            api,
            "POST",
            "/v1/logs/search",
            Some(&bearer(tenant)),
            Some("{}"),
        )
        .await;
        check("search everything", s, &b, Some(tenant), &[200]);
        assert_eq!(
            serde_json::from_str::<Value>(&b).unwrap()["total_count"],
            10
        );
    }
    // Nothing was planted on another tenant's call: globex's own call has no comment,
    // and on the shared call id each tenant sees only the one it added itself.
    let comments = |tenant: &'static str, call: &'static str| async move {
        let target = format!("/v1/calls/{call}/comments");
        let (_, b) = raw(api, "GET", &target, Some(&bearer(tenant)), None).await;
        serde_json::from_str::<Value>(&b).unwrap()["data"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(comments("globex", "globex-only").await, 0);
    assert_eq!(comments("globex", "shared-id").await, 1);
    assert_eq!(comments("acme", "shared-id").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_parameters_never_fail_or_leak() {
    let h = Harness::start().await;
    load(&h).await;
    let api = h.server().api_addr;
    let spec = openapi(api).await;
    // The lists below come from the document; it must still list the filters.
    let calls = documented_query(&spec, "GET", "/v1/calls");
    for p in [
        "status",
        "from_number",
        "q",
        "min_billed_duration_ms",
        "page",
        "limit",
    ] {
        assert!(calls.iter().any(|c| c == p), "/v1/calls documents `{p}`");
    }
    let acme = bearer("acme");
    let mut answers = std::collections::BTreeMap::new();
    let mut count = |s: u16| *answers.entry(s).or_insert(0) += 1;
    for e in ENDPOINTS {
        // Hostile call ids: in the path segment (percent-encoded only where a URI must
        // be) or in the body.
        for v in HOSTILE {
            let target = (e.target)(&in_target(v));
            let body = e.body.map(|b| b(v));
            let (s, b) = raw(api, e.method, &target, Some(&acme), body.as_deref()).await;
            let what = format!("{} call id {v:?}", e.name);
            check_echo(&what, s, &b, Some("acme"), &[e.foreign], v);
            count(s);
        }
        // Hostile values of every parameter, on the caller's own call.
        let params = e
            .params
            .map(|path| documented_query(&spec, e.method, path))
            .unwrap_or_default();
        for p in &params {
            for v in HOSTILE {
                let target = with_query(&(e.target)("shared-id"), &format!("{p}={}", in_target(v)));
                let (s, b) = raw(api, e.method, &target, Some(&acme), None).await;
                check_echo(
                    &format!("{} {p}={v:?}", e.name),
                    s,
                    &b,
                    Some("acme"),
                    &[200, 422],
                    v,
                );
                count(s);
            }
        }
        // Oversized query strings: long values, many parameters. Past the API's limit the
        // answer is 414 in the error shape; past the 64 KiB a URI may have, the HTTP
        // layer answers 414 (without a body) before any route runs.
        if let Some(p) = params.first() {
            for n in [10_000, 60_000, 100_000] {
                let own = (e.target)("shared-id");
                for target in [
                    with_query(&own, &format!("event={}", "A".repeat(n))),
                    with_query(&own, &format!("limit={}", "9".repeat(n))),
                    with_query(&own, &"level=INFO&".repeat(n / 11)),
                    with_query(&own, &format!("{p}={}", "%27".repeat(n / 3))),
                ] {
                    let (s, b) = raw(api, e.method, &target, Some(&acme), None).await;
                    let what = format!("{} {} byte query", e.name, target.len());
                    if target.len() > 65_534 {
                        assert_eq!(s, 414, "{what}");
                        assert!(b.is_empty(), "{what}: {b}");
                    } else if target.len() > callscope_api::MAX_URI_BYTES {
                        check(&what, s, &b, Some("acme"), &[414]);
                        assert!(b.contains("URI_TOO_LONG"), "{what}: {b}");
                    } else {
                        check(&what, s, &b, Some("acme"), &[200, 422]);
                    }
                    count(s);
                }
            }
        }
    }
    for (method, target) in COLLECTIONS {
        let fields = if *method == "GET" {
            documented_query(&spec, method, target)
        } else {
            documented_body(&spec, method, target)
        };
        for f in &fields {
            for v in HOSTILE {
                let (s, b) = if *method == "GET" {
                    let t = format!("{target}?{f}={}", in_target(v));
                    raw(api, method, &t, Some(&acme), None).await
                } else {
                    let body = format!("{{{}: {}}}", js(f), js(v));
                    raw(api, method, target, Some(&acme), Some(&body)).await
                };
                check_echo(
                    &format!("{target} {f}={v:?}"),
                    s,
                    &b,
                    Some("acme"),
                    &[200, 400, 422],
                    v,
                );
                count(s);
                if *method == "POST" {
                    let body = format!("{{{}: [{}]}}", js(f), js(v));
                    let (s, b) = raw(api, method, target, Some(&acme), Some(&body)).await;
                    check_echo(
                        &format!("{target} {f}=[{v:?}]"),
                        s,
                        &b,
                        Some("acme"),
                        &[200, 400, 422],
                        v,
                    );
                    count(s);
                }
            }
        }
        if *method == "POST" {
            for body in [
                "",
                "null",
                "[]",
                "\"x\"",
                "{",
                &"[".repeat(100_000),
                &format!("{{\"search_text\": {}}}", js(&"x".repeat(100_000))),
                &format!(
                    "{{\"call_ids\": [{}]}}",
                    vec![js("shared-id"); 5_000].join(",")
                ),
            ] {
                let (s, b) = raw(api, method, target, Some(&acme), Some(body)).await;
                check(
                    &format!("{target} body {} bytes", body.len()),
                    s,
                    &b,
                    Some("acme"),
                    &[200, 400, 422],
                );
                count(s);
            }
        }
    }
    // LIKE wildcards are text like any other.
    for text in ["%", "_", "%%", "\\", "*"] {
        let body = format!("{{\"search_text\": {}}}", js(text));
        let (s, b) = raw(api, "POST", "/v1/logs/search", Some(&acme), Some(&body)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            serde_json::from_str::<Value>(&b).unwrap()["total_count"],
            0,
            "{text}"
        );
    }
    eprintln!("answers: {answers:?}");
    // Nothing was dropped or changed: each tenant still sees its own records.
    for tenant in support::TENANTS {
        let records = h.call_records(tenant, "shared-id").await;
        assert_eq!(records.len(), 5);
        assert!(records.iter().all(|r| {
            r["data"]["marker"]
                .as_str()
                .unwrap()
                .starts_with(&marker(tenant))
        }));
    }
}

/// Looking up another tenant's call costs the same as looking up a missing one: the
/// median latencies of 50 interleaved pairs stay within a factor of two.
///
/// What it guards: every read is scoped to the caller's tenant in its SQL, so a foreign
/// call is a miss like any other. A path that found the call first and checked the
/// tenant afterwards (or went on to read the call's records) would do work a miss does
/// not. The test cannot see a difference smaller than this machine's noise; it catches
/// one that doubles the answer's time. Interleaving puts both kinds under the same load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_does_not_tell_foreign_calls_from_missing_ones() {
    let h = Harness::start().await;
    load(&h).await;
    let client = reqwest::Client::new();
    for e in ENDPOINTS.iter().filter(|e| e.method == "GET") {
        let mut foreign = Vec::new();
        let mut missing = Vec::new();
        for i in 0..60 {
            for (call, out) in [
                ("globex-only", &mut foreign),
                ("no-such-call", &mut missing),
            ] {
                let url = h.api(&(e.target)(call));
                let started = Instant::now();
                let resp = client
                    .get(url)
                    .bearer_auth(key_for("acme"))
                    .send()
                    .await
                    .unwrap();
                let _ = resp.bytes().await.unwrap();
                if i >= 10 {
                    out.push(started.elapsed());
                }
            }
        }
        foreign.sort();
        missing.sort();
        let (f, m) = (foreign[foreign.len() / 2], missing[missing.len() / 2]);
        eprintln!("{}: median foreign {f:?}, missing {m:?}", e.name);
        assert!(
            f < m * 2 && m < f * 2,
            "{}: foreign {f:?} vs missing {m:?}",
            e.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_endpoints_reveal_no_tenant_data() {
    let h = Harness::start().await;
    load(&h).await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/nope",
        "/v1",
    ] {
        let (status, body) = raw(h.server().api_addr, "GET", path, None, None).await;
        assert!([200, 401, 404].contains(&status), "{path}: {status}");
        for secret in [
            "SECRET",
            "shared-id",
            "acme-only",
            "globex-only",
            "acme",
            "globex",
            "cs_test",
        ] {
            assert!(!body.contains(secret), "{path} reveals `{secret}`");
        }
    }
}

/// One generated log record and what the API must make of it.
#[derive(Debug, Clone)]
struct Gen {
    /// 0: customer-visible and complete; 1: internal (no visibility); 2: visibility
    /// `internal`; 3: visibility `Customer` (wrong case); 4: customer without call id.
    kind: u8,
    tenant: usize,
    allowed: Vec<(String, i64)>,
    withheld: Vec<String>,
    nested: bool,
    body: bool,
}

const ALLOWED_KEYS: &[&str] = &[
    "text",
    "turn",
    "tool_name",
    "latency_ms",
    "customer.note",
    "reason",
];
const WITHHELD_KEYS: &[&str] = &[
    "internal.trace",
    "host.name",
    "k8s.pod.name",
    "db.statement",
    "http.request.header.authorization",
    "exception.stacktrace",
    "url.full",
    "user_agent.original",
    "service.version",
    "telemetry.sdk.name",
    "code.filepath",
    "thread.id",
    "process.pid",
    "net.peer.ip",
    "cloud.region",
    "container.id",
    "os.type",
    "server.address",
    "client.address",
    "network.peer.address",
    "callscope.debug",
    "Host.Name",
    " internal.x ",
];

fn record_mix() -> impl Strategy<Value = Gen> {
    (
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8), 1 => Just(4u8)],
        0..2usize,
        prop::sample::subsequence(ALLOWED_KEYS, 0..=ALLOWED_KEYS.len()),
        any::<i64>(),
        prop::sample::subsequence(WITHHELD_KEYS, 0..=6),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(kind, tenant, allowed, v, withheld, nested, body)| Gen {
            kind,
            tenant,
            allowed: allowed.iter().map(|k| ((*k).to_owned(), v)).collect(),
            withheld: withheld.iter().map(|k| (*k).to_owned()).collect(),
            nested,
            body,
        })
}

/// What the API must show of one stored record: tenant, call, id, top-level data keys.
type Expected = (String, String, uuid::Uuid, BTreeSet<String>);

/// Builds the request for case `case` and returns it with the expected customer view of
/// each record that must be stored.
fn build(case: usize, gens: &[Gen]) -> (ExportLogsServiceRequest, Vec<Expected>) {
    let mut expected = Vec::new();
    let mut records = Vec::new();
    for (n, g) in gens.iter().enumerate() {
        let tenant = support::TENANTS[g.tenant];
        let call = format!("prop-{case}-{}", g.tenant);
        let secret = format!("WITHHELD-{case}-{n}");
        let mut b = match g.kind {
            0 | 4 => LogBuilder::customer(otlp::EVENT),
            2 => LogBuilder::internal(otlp::EVENT).visibility("internal"),
            3 => LogBuilder::internal(otlp::EVENT).visibility("Customer"),
            _ => LogBuilder::internal(otlp::EVENT),
        }
        .tenant(tenant)
        .time(otlp::base_time() + (case * 1000 + n) as u64);
        if g.kind != 4 {
            b = b.call(&call);
        }
        if g.kind != 0 {
            b = b
                .attr("internal.marker", secret.as_str())
                .body(secret.as_str());
        }
        let mut keys = BTreeSet::new();
        for (k, v) in &g.allowed {
            b = b.attr(k.as_str(), *v);
            keys.insert(k.clone());
        }
        for k in &g.withheld {
            b = b.attr(k.as_str(), secret.as_str());
        }
        if g.nested {
            let mut entries = vec![("shown".to_owned(), "yes".to_owned())];
            entries.extend(g.withheld.iter().map(|k| (k.clone(), secret.clone())));
            b = b.attr("details", map(entries));
            keys.insert("details".into());
        }
        if g.body && g.kind == 0 {
            b = b.body("a customer message");
            keys.insert("message".into());
        }
        let record = b.build();
        if g.kind == 0 {
            expected.push((
                tenant.to_owned(),
                call,
                record_id(
                    tenant,
                    &format!("prop-{case}-{}", g.tenant),
                    otlp::EVENT,
                    &record,
                ),
                keys,
            ));
        }
        records.push(record);
    }
    let resource = ResourceBuilder::new()
        .attr("host.name", "node-7.internal")
        .attr("k8s.namespace.name", "voice")
        .attr("cloud.region", "eu-west-1")
        .logs(records)
        .build();
    let mut req = request([resource]);
    req.resource_logs[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("service.instance.id", "i-0abc"));
    (req, expected)
}

#[test]
fn visibility_holds_over_the_whole_pipeline() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::start());
    let client = otlp::http_client();
    let base = format!("http://{}", h.server().http_addr);
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(record_mix(), 1..12), |gens| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (req, expected) = build(case, &gens);
            rt.block_on(async {
                let answer = otlp::send_http(&client, &base, &req, case.is_multiple_of(2)).await;
                prop_assert!(answer.acked, "{answer:?}");
                for (t, tenant) in support::TENANTS.iter().enumerate() {
                    let call = format!("prop-{case}-{t}");
                    let want: Vec<_> = expected.iter().filter(|e| e.0 == *tenant).collect();
                    let (status, body) = h
                        .get(
                            &format!("/v1/calls/{call}/logs?order=asc&limit=1000"),
                            Some(tenant),
                        )
                        .await;
                    if want.is_empty() {
                        prop_assert_eq!(status, 404, "{}", body);
                        continue;
                    }
                    prop_assert_eq!(status, 200, "{}", body);
                    let shown = body["data"].as_array().unwrap();
                    let ids: HashSet<String> = shown
                        .iter()
                        .map(|r| r["id"].as_str().unwrap().to_owned())
                        .collect();
                    let want_ids: HashSet<String> = want.iter().map(|e| e.2.to_string()).collect();
                    prop_assert_eq!(ids, want_ids, "exactly the customer records");
                    let text = body.to_string();
                    prop_assert!(
                        !text.contains("WITHHELD"),
                        "a withheld value leaked: {}",
                        text
                    );
                    prop_assert!(
                        !text.contains("node-7") && !text.contains("i-0abc"),
                        "{}",
                        text
                    );
                    for r in shown {
                        support::assert_clean(&r["data"]);
                        let e = want
                            .iter()
                            .find(|e| e.2.to_string() == r["id"].as_str().unwrap())
                            .unwrap();
                        let keys: BTreeSet<String> = r["data"]
                            .as_object()
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_default();
                        prop_assert_eq!(&keys, &e.3, "exactly the allowed keys");
                        if e.3.contains("details") {
                            prop_assert_eq!(
                                &r["data"]["details"],
                                &serde_json::json!({"shown": "yes"})
                            );
                        }
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    rt.block_on(h.stop());
}

/// With `trace` logging, requests carrying valid and invalid API keys and ingest tokens
/// (HTTP and gRPC) leave none of them in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_tokens_are_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let token = "ingest-token-Zq8XwP3";
    let wrong_token = "ingest-token-wrong-Yy7";
    let config = support::process::write_config(dir.path(), None, "");
    let tokens = format!("[\"{token}\"]");
    let server = support::process::Callscope::start(
        &config,
        &[
            ("CALLSCOPE_LOG", "trace"),
            ("CALLSCOPE_OTLP__INGEST_TOKENS", &tokens),
        ],
    );
    let client = otlp::http_client();
    let b = otlp::batch("acme", "secret-call", 0, 3, 10);
    let body = prost::Message::encode_to_vec(&b.request);
    for t in [token, wrong_token] {
        let resp = client
            .post(server.http_url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .bearer_auth(t)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), if t == token { 200 } else { 401 });
        let mut grpc = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(server.grpc_url())
            .await
            .unwrap();
        let mut req = tonic::Request::new(b.request.clone());
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
        let result = grpc.export(req).await;
        assert_eq!(result.is_ok(), t == token);
    }
    let wrong_key = "cs_0123456789abcdef0123456789abcdef01234567";
    for key in [key_for("acme"), wrong_key.to_owned()] {
        let _ = client
            .get(server.api_url("/v1/calls/secret-call/logs"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
    }
    let (status, logs) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success());
    assert!(logs.lines().count() > 20, "trace logging was on");
    for secret in [
        token,
        wrong_token,
        &key_for("acme"),
        &key_for("globex"),
        wrong_key,
    ] {
        assert!(!logs.contains(secret), "the logs contain `{secret}`");
    }
}
