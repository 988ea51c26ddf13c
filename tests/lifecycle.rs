//! The real `callscope` binary's lifecycle: SIGTERM while senders are pushing (graceful
//! shutdown: exit 0, everything acknowledged is in the file), and `callscope keys create`
//! (the key is printed once, only its hash is stored, and it works against the API).

mod support;

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use callscope_api::key_sha256_hex;
use support::{
    api_ids,
    otlp::{self, SenderSpec, Via},
    process::{Callscope, run, write_config},
    stored_ids,
};

/// Senders push over HTTP (plain and gzip) and gRPC; SIGTERM arrives mid-stream. The
/// process must exit 0 within the grace period, log its clean stop, leave no write-ahead
/// log behind (the final checkpoint ran), and every acknowledged record must be in the
/// file exactly once, and served by the API after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callscope.duckdb");
    let config = write_config(dir.path(), None, "");
    let server = Callscope::start(&config, &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for (i, via) in [Via::Http, Via::HttpGzip, Via::Grpc, Via::Grpc]
        .into_iter()
        .enumerate()
    {
        let url = match via {
            Via::Grpc => server.grpc_url(),
            _ => server.http_url(""),
        };
        senders.push(tokio::spawn(otlp::sender(
            SenderSpec {
                via,
                url,
                tenant: support::TENANTS[i % 2].into(),
                call_id: format!("term-{i}"),
                first_seq: i as u64 * 1_000_000_000,
                per_request: 100,
                pad: 200,
                stop_on_transport_error: true,
                backoff: Duration::from_millis(20),
            },
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, logs) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(status.success(), "exit status {status}; logs:\n{logs}");
    assert_eq!(status.code(), Some(0));
    assert!(logs.contains("Stopped cleanly."), "{logs}");

    let mut tallies = Vec::new();
    for s in senders {
        tallies.push(s.await.unwrap());
    }
    let acked: usize = tallies.iter().map(|t| t.acked.len()).sum();
    let requests: usize = tallies.iter().map(|t| t.sent.len()).sum();
    eprintln!("SIGTERM after {requests} requests, {acked} records acknowledged");
    assert!(acked > 0, "the senders were acknowledged before SIGTERM");
    for t in &tallies {
        assert!(t.unexpected.is_empty(), "{:?}", t.unexpected);
    }
    assert!(
        !dir.path().join("callscope.duckdb.wal").exists(),
        "the final checkpoint folded the write-ahead log into the file"
    );

    let (ids, calls) = stored_ids(&db).await;
    for t in &tallies {
        for id in &t.acked {
            assert_eq!(
                ids.get(id),
                Some(&1),
                "acknowledged record {id} is stored once"
            );
        }
    }
    assert!(ids.values().all(|n| *n == 1), "no record is stored twice");
    let total: i64 = calls.values().sum();
    assert_eq!(
        total as usize,
        ids.len(),
        "calls.log_count agrees with logs"
    );

    // The restarted binary serves the same records.
    let server = Callscope::start(&config, &[]);
    let http = reqwest::Client::new();
    for (i, t) in tallies.iter().enumerate() {
        let tenant = support::TENANTS[i % 2];
        let shown = api_ids(&http, server.api, tenant, &format!("term-{i}"))
            .await
            .unwrap_or_default();
        assert!(t.acked.iter().all(|id| shown.contains(id)), "call term-{i}");
    }
    let (status, _) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success());
}

/// `keys create` prints a new key once on stdout; the database holds its SHA-256 and
/// never the key; `serve` accepts it for that tenant only; while the server runs, keys
/// are created, listed and revoked through it and take effect within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_create_prints_once_stores_only_the_hash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callscope.duckdb");
    let config = write_config(dir.path(), None, "");
    let cfg = config.to_str().unwrap();

    let create = |tenant: &str| {
        run(
            &["keys", "create", "--tenant", tenant, "--config", cfg],
            &[],
        )
    };
    let (status, stdout, stderr) = create("initech");
    assert!(status.success(), "{stderr}");
    let key = stdout.trim().to_owned();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout is the key alone: {stdout:?}"
    );
    assert!(key.starts_with("cs_") && key.len() == 43, "{key}");
    assert!(stderr.contains("shown only this once"), "{stderr}");
    let (status, other, _) = create("initech");
    assert!(status.success());
    assert_ne!(other.trim(), key, "every key is new");
    let (status, stdout, _) = create("  ");
    assert!(
        !status.success() && stdout.is_empty(),
        "an empty tenant is refused"
    );

    // Only the hash is stored: the key's text is nowhere in the database files.
    {
        let store = callscope_store::Store::open(&callscope_store::StoreConfig {
            path: db.clone(),
            ..callscope_store::StoreConfig::default()
        })
        .unwrap();
        let keys = store.api_keys().await.unwrap();
        assert!(keys.contains(&(key_sha256_hex(&key), "initech".to_owned())));
        assert!(keys.iter().all(|(h, _)| h != &key));
        store.shutdown().await.unwrap();
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e != "toml") {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} contains the key",
                path.display()
            );
        }
    }

    // The key reads its tenant's calls, and nothing else.
    let server = Callscope::start(&config, &[]);
    let client = otlp::http_client();
    let b = otlp::batch("initech", "k-1", 0, 5, 10);
    assert!(
        otlp::send_http(&client, &server.http_url(""), &b.request, false)
            .await
            .acked
    );
    let get = |key: Option<String>, call: &'static str| {
        let req = client.get(server.api_url(&format!("/v1/calls/{call}/logs")));
        let req = match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = get(Some(key.clone()), "k-1").await;
    assert_eq!(status, 200, "{body}");
    let mut shown: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    shown.sort();
    let mut expected: Vec<String> = b.ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(shown, expected);
    let mut wrong = key.clone();
    wrong.pop();
    wrong.push(if key.ends_with('0') { '1' } else { '0' });
    for (key, status, code) in [
        (Some(wrong), 401, "UNAUTHORIZED"),
        (None, 401, "UNAUTHORIZED"),
        (Some(support::key_for("acme")), 404, "CALL_NOT_FOUND"),
    ] {
        let (s, body) = get(key, "k-1").await;
        assert_eq!(
            (s, body["error_code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }

    // While the server holds the database, the commands go through it: a created key
    // works within seconds, is listed without its text, and once revoked is refused
    // within seconds. Keys from the configuration are untouched.
    let (status, stdout, stderr) = create("hooli");
    assert!(status.success(), "{stderr}");
    let hooli = stdout.trim().to_owned();
    assert!(hooli.starts_with("cs_"), "{stdout}");
    let fingerprint = key_sha256_hex(&hooli)[..12].to_owned();
    assert!(stderr.contains(&fingerprint), "{stderr}");
    let until = |want: u16, key: String| {
        let get = &get;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let (status, body) = get(Some(key.clone()), "k-1").await;
                if status == want {
                    return std::time::Instant::now();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "still {status} after 10 s: {body}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let created = std::time::Instant::now();
    // hooli has no call k-1: 404 means the key was accepted.
    let accepted = until(404, hooli.clone()).await;
    eprintln!("a created key was accepted after {:?}", accepted - created);

    let (status, listed, stderr) = run(&["keys", "list", "--config", cfg, "--json"], &[]);
    assert!(status.success(), "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["fingerprint"] == fingerprint.as_str())
        .unwrap_or_else(|| panic!("{fingerprint} is not in {listed}"));
    assert_eq!(entry["tenant"], "hooli");
    assert!(entry["created_at"].as_i64().unwrap() > 0);
    assert!(
        entry["last_used_at"].as_i64().is_some(),
        "its use is recorded: {entry}"
    );
    let text = listed.to_string();
    assert!(!text.contains(&hooli) && !text.contains(&key_sha256_hex(&hooli)));
    let (status, table, _) = run(&["keys", "list", "--config", cfg], &[]);
    assert!(status.success());
    assert!(
        table.contains(&fingerprint) && table.contains("hooli"),
        "{table}"
    );

    let (status, _, stderr) = run(&["keys", "revoke", &fingerprint, "--config", cfg], &[]);
    assert!(status.success(), "{stderr}");
    let revoked = std::time::Instant::now();
    let refused = until(401, hooli.clone()).await;
    eprintln!("a revoked key was refused after {:?}", refused - revoked);
    let (status, _, stderr) = run(&["keys", "revoke", &fingerprint, "--config", cfg], &[]);
    assert!(!status.success(), "revoking twice fails");
    assert!(stderr.contains("no stored key"), "{stderr}");
    let (s, _) = get(Some(key.clone()), "k-1").await;
    assert_eq!(s, 200, "the other keys still work");
    let (s, _) = get(Some(support::key_for("acme")), "k-1").await;
    assert_eq!(s, 404, "keys from the configuration still work");

    let (status, logs) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success());
    assert!(!logs.contains(&key), "the server never logs a key");
}

/// The server watches its parts: while they run, [`callscope::Server::failure`] stays
/// pending; once the storage writer ends without the server being shut down, it
/// resolves with an error naming the writer (and `callscope serve` exits with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_writer_fails_the_server() {
    let mut harness = support::Harness::start().await;
    let mut server = harness.server.take().expect("running");
    let healthy = tokio::time::timeout(Duration::from_millis(300), server.failure()).await;
    assert!(healthy.is_err(), "a healthy server reported {healthy:?}");

    server.store().shutdown().await.unwrap();
    let failure = tokio::time::timeout(Duration::from_secs(5), server.failure())
        .await
        .expect("the writer's end is noticed at once");
    assert!(failure.to_string().contains("storage writer"), "{failure}");
    // The listeners are still stopped in order.
    server.shutdown().await.unwrap();
}
