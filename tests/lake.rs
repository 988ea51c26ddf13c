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
    process::Callscope,
};
use uuid::Uuid;

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
    let servers: Vec<Callscope> = (0..3)
        .map(|n| Callscope::start(&lake.instance_config(n), &LAKE_ENV))
        .collect();

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
    let a = Callscope::start(&lake.instance_config(0), &LAKE_ENV);
    let b = Callscope::start(&lake.instance_config(1), &LAKE_ENV);

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
    let a = Callscope::start(&lake.instance_config(0), &LAKE_ENV);
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
        .map(|n| Callscope::start(&lake.instance_config(n), &env))
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
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut ids = HashSet::new();
    for h in handles {
        let t = h.await.unwrap();
        assert!(t.unexpected.is_empty(), "{:?}", t.unexpected);
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
    assert!(all.len() >= 3, "it ran every few seconds: {all:?}");
    assert!(
        all.iter().any(|(before, after)| after < before),
        "merging made fewer files: {all:?}"
    );
    // Nothing is lost or doubled by merging and deleting old files.
    let refs: Vec<&Callscope> = servers.iter().collect();
    assert_served(&refs, &[("acme".into(), "small-files".into(), ids)], false).await;
}
