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
/// never the key; `serve` accepts it for that tenant only; a second process cannot take
/// the database from a running server and then prints no key.
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

    // A second process cannot open the database the server holds.
    let (status, stdout, stderr) = create("hooli");
    assert!(!status.success(), "{stdout}");
    assert!(stdout.is_empty(), "no key is printed when none was stored");
    assert!(stderr.contains("is a server running"), "{stderr}");

    let (status, logs) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success());
    assert!(!logs.contains(&key), "the server never logs a key");
}
