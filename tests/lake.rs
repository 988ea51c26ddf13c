//! Several `callscope serve` processes on one DuckLake (PostgreSQL catalog, S3 data
//! files; both real, started by the test): every record acknowledged by any instance is
//! served once by every instance, a call whose records arrive through different
//! instances is summarised whole, retries through another instance are stored once,
//! and neither `kill -9` of an instance nor a PostgreSQL crash loses anything
//! acknowledged.

mod support;

use std::{
    collections::HashSet,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use support::{
    api_ids, key_for,
    lake::{LAKE_ENV, Lake},
    otlp::{self, Batch, SenderSpec, Tally, Via},
    process::{Callscope, write_config},
};
use uuid::Uuid;

/// The config file of instance `n` of `lake`.
fn instance_config(lake: &Lake, n: usize) -> std::path::PathBuf {
    write_config(&lake.instance_dir(n), None, &lake.config_toml())
}

/// A sender of fresh records for `call_id` through `server`.
fn spec(server: &Callscope, via: Via, tenant: &str, call_id: &str, first: u64) -> SenderSpec {
    SenderSpec {
        url: match via {
            Via::Grpc => server.grpc_url(),
            _ => server.http_url(""),
        },
        via,
        tenant: tenant.into(),
        call_id: call_id.into(),
        first_seq: first,
        per_request: 40,
        pad: 80,
        stop_on_transport_error: false,
        backoff: Duration::from_millis(20),
    }
}

/// Runs `specs` until `stop` is set; their tallies.
async fn run_senders(
    specs: Vec<SenderSpec>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    specs
        .into_iter()
        .map(|s| tokio::spawn(otlp::sender(s, stop.clone())))
        .collect()
}

/// Reads the SSE stream at `url` as `tenant` until `stop` is set and then nothing has
/// arrived for three seconds: the ids of the log events, in the order they came.
fn watch(url: String, tenant: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Uuid>> {
    let key = key_for(tenant);
    tokio::spawn(async move {
        let mut resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (mut buf, mut ids) = (String::new(), Vec::new());
        loop {
            let quiet = if stop.load(std::sync::atomic::Ordering::Relaxed) {
                3
            } else {
                30
            };
            match tokio::time::timeout(Duration::from_secs(quiet), resp.chunk()).await {
                Ok(Ok(Some(bytes))) => buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                _ => return ids,
            }
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if !block.lines().any(|l| l == "event: log") {
                    continue;
                }
                if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                    ids.push(id.parse().unwrap());
                }
            }
        }
    })
}

/// Sends `batch` through `server` until it is acknowledged.
async fn resend(server: &Callscope, batch: &Batch) {
    let http = otlp::http_client();
    for _ in 0..600 {
        let answer = otlp::send_http(&http, &server.http_url(""), &batch.request, false).await;
        if answer.acked {
            return;
        }
        assert!(answer.is_retryable_refusal(), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a retry was never acknowledged");
}

/// The JSON answer to `request` sent as `tenant`.
async fn answer(tenant: &str, request: reqwest::RequestBuilder) -> serde_json::Value {
    request
        .bearer_auth(key_for(tenant))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET /v1/calls/{call_id}` on `server`: the call's `log_count`.
async fn log_count(server: &Callscope, tenant: &str, call_id: &str) -> i64 {
    let resp = reqwest::Client::new()
        .get(server.api_url(&format!("/v1/calls/{call_id}")))
        .bearer_auth(key_for(tenant))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{call_id}");
    let body: serde_json::Value = resp.json().await.unwrap();
    body["log_count"]
        .as_i64()
        .unwrap_or_else(|| panic!("{body}"))
}

/// Every instance serves each call's `expected` ids, each once, and counts them.
async fn assert_served(
    servers: &[&Callscope],
    calls: &[(String, String, HashSet<Uuid>)],
    exact: bool,
) {
    let http = reqwest::Client::new();
    for (i, server) in servers.iter().enumerate() {
        for (tenant, call, expected) in calls {
            let shown = api_ids(&http, server.api, tenant, call)
                .await
                .unwrap_or_else(|| panic!("instance {i}: {call} not found"));
            let unique: HashSet<Uuid> = shown.iter().copied().collect();
            assert_eq!(
                unique.len(),
                shown.len(),
                "instance {i}: {call} shows a record twice"
            );
            let lost = expected.difference(&unique).count();
            assert_eq!(
                lost, 0,
                "instance {i}: {call} lost {lost} acknowledged records"
            );
            if exact {
                assert_eq!(
                    &unique, expected,
                    "instance {i}: {call} shows records never sent"
                );
            }
            assert_eq!(
                log_count(server, tenant, call).await,
                shown.len() as i64,
                "instance {i}: {call}'s log_count"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_serve_every_acknowledged_record_once() {
    let lake = Lake::start();
    // Started at the same moment: they race to create the lake's catalog.
    let configs: Vec<_> = (0..3).map(|n| instance_config(&lake, n)).collect();
    let servers: Vec<Callscope> = std::thread::scope(|s| {
        let started: Vec<_> = configs
            .iter()
            .map(|c| s.spawn(move || Callscope::start(c, &LAKE_ENV)))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // The key commands work on the lake, beside running instances: a key created
    // through one config is listed through another.
    let keys = |config: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(support::process::BIN)
            .args(["keys"])
            .args(args)
            .arg("--config")
            .arg(config)
            .envs(LAKE_ENV)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    keys(&configs[0], &["create", "--tenant", "acme"]);
    assert!(keys(&configs[1], &["list"]).contains("acme"));

    // Two calls whose records arrive through all three instances at once, over both
    // protocols, and one call per instance of its own. A live stream on the third
    // instance watches one of the shared calls: it hears every instance's commits.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(
        servers[2].api_url("/v1/logs/stream?call_ids=shared-a"),
        "acme",
        stop.clone(),
    );
    let mut specs = Vec::new();
    let mut call_of = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        for (k, (tenant, call)) in [("acme", "shared-a"), ("globex", "shared-b")]
            .iter()
            .enumerate()
        {
            let via = if (n + k) % 2 == 0 {
                Via::Grpc
            } else {
                Via::Http
            };
            specs.push(spec(
                server,
                via,
                tenant,
                call,
                (n * 10 + k) as u64 * 1_000_000_000,
            ));
            call_of.push((tenant.to_string(), call.to_string()));
        }
        let own = format!("own-{n}");
        specs.push(spec(
            server,
            Via::Http,
            "acme",
            &own,
            (n * 10 + 5) as u64 * 1_000_000_000,
        ));
        call_of.push(("acme".into(), own));
    }
    let handles = run_senders(specs, stop.clone()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent: Vec<Batch> = Vec::new();
    let mut calls: Vec<(String, String, HashSet<Uuid>)> = Vec::new();
    for (h, (tenant, call)) in handles.into_iter().zip(call_of) {
        let t = h.await.unwrap();
        assert!(t.unexpected.is_empty(), "{:?}", t.unexpected);
        assert!(
            !t.acked.is_empty(),
            "{call}: nothing acknowledged: {:?}",
            t.codes
        );
        match calls.iter_mut().find(|(_, c, _)| *c == call) {
            Some((_, _, ids)) => ids.extend(t.acked),
            None => calls.push((tenant, call, t.acked)),
        }
        sent.extend(t.sent);
    }
    let acked: usize = calls.iter().map(|(.., ids)| ids.len()).sum();
    eprintln!("{acked} records acknowledged through 3 instances");
    let refs: Vec<&Callscope> = servers.iter().collect();
    assert_served(&refs, &calls, false).await;
    let streamed = watcher.await.unwrap();
    let unique: HashSet<Uuid> = streamed.iter().copied().collect();
    assert_eq!(unique.len(), streamed.len(), "the stream repeated a record");
    let shared_a = &calls.iter().find(|(_, c, _)| c == "shared-a").unwrap().2;
    let missed = shared_a.difference(&unique).count();
    assert_eq!(
        missed, 0,
        "the stream on one instance missed {missed} records committed through the others"
    );

    // Every request again, acknowledged or not, each through another instance than
    // before: nothing is stored twice, and what was never acknowledged is now.
    for (i, b) in sent.iter().enumerate() {
        resend(&servers[(i + 1) % 3], b).await;
    }
    for (_, call, ids) in &mut calls {
        ids.extend(
            sent.iter()
                .filter(|b| &b.call_id == call)
                .flat_map(|b| b.ids.iter().copied()),
        );
    }
    assert_served(&refs, &calls, true).await;

    // The same answers from every instance: the calls list with its summaries, and a
    // search with its aggregations over records that came through all three.
    for tenant in ["acme", "globex"] {
        let mut answers = Vec::new();
        for s in &servers {
            let http = reqwest::Client::new();
            let calls = answer(tenant, http.get(s.api_url("/v1/calls?limit=100"))).await;
            let mut search = answer(
                tenant,
                http.post(s.api_url("/v1/logs/search"))
                    .json(&serde_json::json!({"size": 50, "sort_direction": "asc"})),
            )
            .await;
            search.as_object_mut().unwrap().remove("execution_time_ms");
            answers.push((calls, search));
        }
        let total = answers[0].1["total_count"].as_u64().unwrap();
        let expected: usize = calls
            .iter()
            .filter(|(t, ..)| t == tenant)
            .map(|(.., ids)| ids.len())
            .sum();
        assert_eq!(
            total as usize, expected,
            "{tenant}: search counts every record once"
        );
        for (i, a) in answers.iter().enumerate().skip(1) {
            assert_eq!(
                a, &answers[0],
                "{tenant}: instance {i} answers differently from instance 0"
            );
        }
    }

    // The instances' commits are serialised by the lake's fence: some lost conflicts.
    for s in &servers {
        let metrics = reqwest::get(s.api_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        eprintln!(
            "conflicts retried: {}",
            support::metric(&metrics, "callscope_store_lake_conflicts_total")
        );
    }
    for s in servers {
        let (status, logs) =
            tokio::task::spawn_blocking(move || s.terminate(Duration::from_secs(60)))
                .await
                .unwrap();
        assert!(status.success(), "{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_and_a_postgres_crash_lose_nothing_acknowledged() {
    let lake = Lake::start();
    let a = Callscope::start(&instance_config(&lake, 0), &LAKE_ENV);
    let b = Callscope::start(&instance_config(&lake, 1), &LAKE_ENV);

    // Phase 1: ingest through both; A is killed mid-stream.
    let stop = Arc::new(AtomicBool::new(false));
    let specs = vec![
        spec(&a, Via::Grpc, "acme", "kill-a", 0),
        spec(&a, Via::Http, "globex", "kill-a2", 1_000_000_000),
        spec(&b, Via::Grpc, "acme", "kill-b", 2_000_000_000),
    ];
    let handles = run_senders(specs, stop.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(move || a.kill9())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Phase 2: PostgreSQL crashes while B ingests, and comes back.
    lake.stop_pg();
    tokio::time::sleep(Duration::from_secs(2)).await;
    lake.start_pg();
    // Ingest resumes by itself: a fresh request is acknowledged once the catalog is back.
    let fresh = otlp::batch("acme", "after-restart", 3_000_000_000, 10, 10);
    resend(&b, &fresh).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut calls = Vec::new();
    let mut refused = 0;
    for (h, (tenant, call)) in handles.into_iter().zip([
        ("acme", "kill-a"),
        ("globex", "kill-a2"),
        ("acme", "kill-b"),
    ]) {
        let t = h.await.unwrap();
        assert!(t.unexpected.is_empty(), "{call}: {:?}", t.unexpected);
        refused += t.refusals.len();
        calls.push((tenant.to_string(), call.to_string(), t.acked));
    }
    assert!(
        refused > 0,
        "B refused while PostgreSQL was down (503 with a retry hint)"
    );
    calls.push((
        "acme".into(),
        "after-restart".into(),
        fresh.ids.iter().copied().collect(),
    ));

    // B serves everything, and so does A started again.
    let a = Callscope::start(&instance_config(&lake, 0), &LAKE_ENV);
    assert_served(&[&a, &b], &calls, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_instance_at_a_time_merges_the_small_files() {
    let lake = Lake::start();
    let env = [
        LAKE_ENV[0],
        (
            "CALLSCOPE_STORAGE__DUCKLAKE__MAINTENANCE_INTERVAL_SECS",
            "3",
        ),
    ];
    let servers: Vec<Callscope> = (0..2)
        .map(|n| Callscope::start(&instance_config(&lake, n), &env))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let specs = servers
        .iter()
        .enumerate()
        .map(|(n, s)| {
            spec(
                s,
                Via::Http,
                "acme",
                "small-files",
                n as u64 * 1_000_000_000,
            )
        })
        .collect();
    let handles = run_senders(specs, stop.clone()).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ids = HashSet::new();
    let mut commits = 0;
    for h in handles {
        let t = h.await.unwrap();
        assert!(t.unexpected.is_empty(), "{:?}", t.unexpected);
        commits += t.codes.get("200").copied().unwrap_or(0);
        ids.extend(t.acked);
    }
    // Another round after the last commits, so the files they made are merged too.
    tokio::time::sleep(Duration::from_secs(7)).await;

    // (files before, files after) of every run, per instance.
    let runs: Vec<Vec<(i64, i64)>> = servers
        .iter()
        .map(|s| {
            s.logs()
                .lines()
                .filter(|l| l.contains("Lake maintenance:"))
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let f = &v["fields"];
                    (
                        f["files_before"].as_i64().unwrap(),
                        f["files_after"].as_i64().unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    eprintln!("maintenance runs per instance (files before, after): {runs:?}");

    let ran: Vec<usize> = runs.iter().map(Vec::len).collect();
    assert_eq!(
        ran.iter().filter(|n| **n > 0).count(),
        1,
        "exactly one instance holds the lease and runs the maintenance: {ran:?}"
    );
    let all: Vec<(i64, i64)> = runs.into_iter().flatten().collect();
    // Every 3 s, but a pass over many files takes seconds of its own on a loaded machine.
    assert!(all.len() >= 2, "it ran again and again: {all:?}");
    // Every request was a commit of its own (small ones, kept inline in the catalog
    // until flushed); the lake ends as a handful of Parquet files, not one per commit.
    // (A loaded machine makes fewer in the time: 35 was seen under the whole suite.)
    assert!(commits >= 20, "{commits} commits");
    let (_, last) = all.last().copied().unwrap();
    assert!(
        (1..=10).contains(&last),
        "{commits} commits left {last} Parquet files after maintenance: {all:?}"
    );
    // Nothing is lost or doubled by merging and deleting old files.
    let refs: Vec<&Callscope> = servers.iter().collect();
    assert_served(&refs, &[("acme".into(), "small-files".into(), ids)], false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_through_the_lake() {
    let lake = Lake::start();
    let mut table: toml::Table =
        toml::from_str(&format!("[storage]\n{}", lake.config_toml())).unwrap();
    let mut storage = table.remove("storage").unwrap();
    let dir = tempfile::tempdir().unwrap();
    storage.as_table_mut().unwrap().extend([
        ("backend".to_owned(), toml::Value::from("ducklake")),
        ("retention_days".to_owned(), toml::Value::from(0)),
        (
            "path".to_owned(),
            toml::Value::from(dir.path().join("x.duckdb").display().to_string()),
        ),
    ]);
    let config: callscope_store::StoreConfig = storage.try_into().unwrap();
    let store = callscope_store::Store::open(&config).unwrap();
    let record = |call: &str, ts: i64, i: usize| {
        let mut h = callscope_model::RecordIdHasher::new();
        h.str(call).i64(ts).i64(i as i64);
        callscope_model::TenantRecord {
            tenant: "acme".into(),
            record: callscope_model::LogRecord {
                id: h.finish(),
                timestamp: callscope_model::Timestamp(ts),
                level: callscope_model::Level::Info,
                category: callscope_model::Category::Agent,
                event: "AGENT_MESSAGE_SENT".into(),
                call_id: call.into(),
                agent_id: None,
                trace_id: None,
                span_id: None,
                data: Some(
                    serde_json::from_value(serde_json::json!({ "text": format!("record {i}") }))
                        .unwrap(),
                ),
            },
        }
    };
    let now = callscope_model::Timestamp::now().as_nanos();
    let day = 86_400_000_000_000_i64;
    let old: Vec<_> = (0..30)
        .map(|i| record("old-call", now - 10 * day + i as i64, i))
        .collect();
    let new: Vec<_> = (0..20)
        .map(|i| record("new-call", now - day + i as i64, i))
        .collect();
    store.append(old).await.unwrap();
    store.append(new).await.unwrap();
    let deleted = store
        .purge_before(callscope_model::Timestamp(now - 5 * day))
        .await
        .unwrap();
    assert_eq!(deleted, 30);
    let (logs, calls, counted): (i64, Vec<String>, i64) = store
        .read(|c| {
            let logs = c.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?;
            let mut stmt = c.prepare("SELECT call_id FROM calls ORDER BY call_id")?;
            let calls = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()?;
            let counted = c.query_row(
                "SELECT coalesce(sum(n), 0)::BIGINT FROM log_counts",
                [],
                |r| r.get(0),
            )?;
            Ok((logs, calls, counted))
        })
        .await
        .unwrap();
    assert_eq!(logs, 20, "the old records are gone from the lake");
    assert_eq!(calls, ["new-call"], "and so is the call they made up");
    assert_eq!(counted, 20, "the per-minute counts count what is stored");
    store.shutdown().await.unwrap();
}
