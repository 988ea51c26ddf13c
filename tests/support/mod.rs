//! Shared fixtures for the end-to-end tests: a real callscope server on free ports over a
//! DuckDB file in a temporary folder, API keys for two tenants, and the simulated voice
//! agent exporting through the real OTLP exporters.

#![allow(dead_code, unreachable_pub)]

pub mod lake;
pub mod otlp;
pub mod process;

use std::{net::SocketAddr, path::PathBuf};

use callscope::{Config, Server};
use callscope_api::{ApiKeyConfig, key_sha256_hex};
use callscope_sim::{SimConfig, SimReport};
use callscope_tracing::{CallscopeTracing, Protocol};
use serde_json::Value;
use tracing::instrument::WithSubscriber as _;

pub const TENANTS: [&str; 2] = ["acme", "globex"];

pub fn key_for(tenant: &str) -> String {
    format!("cs_test_key_for_{tenant}")
}

pub struct Harness {
    pub server: Option<Server>,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

pub fn config_in(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.storage.path = dir.join("callscope.duckdb");
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    (
        config.otlp.grpc_addr,
        config.otlp.http_addr,
        config.api.addr,
    ) = (any, any, any);
    for t in TENANTS {
        config.api.keys.push(ApiKeyConfig {
            tenant: t.into(),
            key_sha256: key_sha256_hex(&key_for(t)),
        });
    }
    config
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Self::start_with(config_in(dir.path()), dir).await
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> Harness {
        let server = Server::start(&config).await.expect("server starts");
        Harness {
            server: Some(server),
            config,
            dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn db_path(&self) -> PathBuf {
        self.config.storage.path.clone()
    }

    /// Stops the server gracefully and starts a new one on the same file.
    pub async fn restart(&mut self) {
        self.server
            .take()
            .expect("running")
            .shutdown()
            .await
            .expect("clean shutdown");
        self.server = Some(Server::start(&self.config).await.expect("restarts"));
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://{}{path}", self.server().api_addr)
    }

    /// GET on the API as `tenant` (None: no key). Returns status and JSON body.
    pub async fn get(&self, path: &str, tenant: Option<&str>) -> (u16, Value) {
        self.send(self.http.get(self.api(path)), tenant).await
    }

    /// POST `body` as JSON to the API as `tenant`. Returns status and JSON body.
    pub async fn post(&self, path: &str, tenant: Option<&str>, body: &Value) -> (u16, Value) {
        self.send(self.http.post(self.api(path)).json(body), tenant)
            .await
    }

    async fn send(&self, mut req: reqwest::RequestBuilder, tenant: Option<&str>) -> (u16, Value) {
        if let Some(t) = tenant {
            req = req.bearer_auth(key_for(t));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Every record of a call, oldest first.
    pub async fn call_records(&self, tenant: &str, call_id: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!("/v1/calls/{call_id}/logs?order=asc&limit=1000"),
                Some(tenant),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.api("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Runs the simulated voice agent against this server through the real OTLP
    /// exporter, and waits until export has flushed (every request acknowledged).
    pub async fn run_agent(&self, protocol: Protocol, calls: usize, seed: u64) -> SimReport {
        let endpoint = match protocol {
            Protocol::Grpc => format!("http://{}", self.server().grpc_addr),
            _ => format!("http://{}", self.server().http_addr),
        };
        let telemetry = CallscopeTracing::builder()
            .service_name("voice-agent-under-test")
            .protocol(protocol)
            .endpoint(endpoint)
            .build()
            .expect("telemetry");
        let sim = SimConfig {
            calls,
            tenants: TENANTS.iter().map(|t| (*t).to_owned()).collect(),
            seed,
            speed: None,
        };
        let report = callscope_sim::run(&sim)
            .with_subscriber(telemetry.dispatch().clone())
            .await;
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .expect("export flushed");
        report
    }
}

pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Keys that must never reach a customer, at any depth.
pub fn assert_clean(data: &Value) {
    const PREFIXES: &[&str] = &[
        "internal.",
        "code.",
        "thread.",
        "host.",
        "os.",
        "process.",
        "container.",
        "k8s.",
        "cloud.",
        "net.",
        "network.",
        "server.",
        "client.",
        "db.",
        "http.request.header.",
        "http.response.header.",
        "user_agent.",
        "service.",
        "telemetry.",
        "callscope.",
    ];
    const EXACT: &[&str] = &[
        "exception.stacktrace",
        "url.full",
        "call.id",
        "tenant.id",
        "agent.id",
        "event.name",
    ];
    if let Some(map) = data.as_object() {
        for (k, v) in map {
            let lower = k.to_ascii_lowercase();
            assert!(
                !EXACT.contains(&lower.as_str())
                    && !PREFIXES
                        .iter()
                        .any(|p| lower.starts_with(p) || lower == p[..p.len() - 1]),
                "key `{k}` must not reach customers: {data}"
            );
            assert_clean(v);
        }
    } else if let Some(items) = data.as_array() {
        items.iter().for_each(assert_clean);
    }
}

/// Every record id in the DuckDB file at `db`, with how many rows carry it, and each
/// call's `log_count` from the `calls` table. Opens the file itself, so no server may be
/// running on it.
pub async fn stored_ids(
    db: &std::path::Path,
) -> (
    std::collections::HashMap<uuid::Uuid, usize>,
    std::collections::HashMap<(String, String), i64>,
) {
    let store = callscope_store::Store::open(&callscope_store::StoreConfig {
        path: db.to_owned(),
        retention_days: 0,
        ..callscope_store::StoreConfig::default()
    })
    .expect("the file opens");
    let ids = store
        .read(|c| {
            let mut stmt = c.prepare("SELECT id::VARCHAR, count(*) FROM logs GROUP BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
        .into_iter()
        .map(|(id, n)| (id.parse().unwrap(), usize::try_from(n).unwrap()))
        .collect();
    let calls = store
        .read(|c| {
            let mut stmt = c.prepare("SELECT tenant, call_id, log_count FROM calls")?;
            let rows = stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
        .into_iter()
        .collect();
    store.shutdown().await.unwrap();
    (ids, calls)
}

/// Every record id the API shows `tenant` for `call_id` (all pages, oldest first), or
/// `None` when the call is not found.
pub async fn api_ids(
    http: &reqwest::Client,
    api: std::net::SocketAddr,
    tenant: &str,
    call_id: &str,
) -> Option<Vec<uuid::Uuid>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("http://{api}/v1/calls/{call_id}/logs?order=asc&limit=1000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let resp = http
            .get(url)
            .bearer_auth(key_for(tenant))
            .send()
            .await
            .unwrap();
        if resp.status() == 404 {
            return None;
        }
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        for r in body["data"].as_array().unwrap() {
            out.push(r["id"].as_str().unwrap().parse().unwrap());
        }
        if body["has_more"] != true {
            return Some(out);
        }
        after = body["last_id"].as_str().map(str::to_owned);
    }
}
