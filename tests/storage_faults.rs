//! Storage faults under the real binary, injected for real while senders push:
//!
//! - a read-only database (`chattr +i` on the file, its WAL and its folder: even root
//!   cannot write them),
//! - a full disk (the database on a 64 MiB tmpfs that a filler file fills up),
//! - a failed checkpoint (the database file alone made immutable while the WAL grows past
//!   DuckDB's 16 MiB checkpoint threshold; DuckDB then invalidates the whole instance).
//!
//! In each, nothing is acknowledged that is not committed: the receivers answer 503 /
//! UNAVAILABLE with their retry hints and no internal detail, /readyz turns red, the API
//! answers 503 rather than 500, and once the fault is cleared ingest recovers in the same
//! process, with every record acknowledged before, during and after the fault in the file
//! exactly once.
//!
//! `chattr` needs CAP_LINUX_IMMUTABLE and a file system with attributes (ext4, xfs, …);
//! `mount` needs CAP_SYS_ADMIN. So the tests are ignored by a plain `cargo test` and run
//! with `cargo test -p callscope --test storage_faults -- --ignored` (as `.ci/run` does
//! when it runs as root); run so, a test that cannot inject its fault fails.

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use support::{
    otlp::{self, SenderSpec, Tally, Via},
    process::{Callscope, write_config},
    stored_ids,
};

/// Runs a command; true when it succeeded.
fn sh(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails the test: it was asked to run and cannot inject its fault.
fn unavailable(why: &str) -> ! {
    panic!("cannot inject the fault: {why} (these tests need root on ext4 or xfs)");
}

/// Clears the immutable attribute of `paths` when dropped, so a failing test never leaves
/// undeletable files behind.
struct Mutable(Vec<PathBuf>);

impl Drop for Mutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).output();
        }
    }
}

/// Unmounts `0` when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

async fn get(http: &reqwest::Client, url: String) -> (u16, String) {
    let resp = http
        .get(url)
        .bearer_auth(support::key_for("acme"))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Polls `/readyz` until it answers `status`.
async fn wait_ready(server: &Callscope, status: u16, within: Duration) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if get(&http, server.api_url("/readyz")).await.0 == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {status} within {within:?}; logs:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pushes over HTTP and gRPC while `inject` runs the fault and `clear` ends it; checks
/// the answers, readiness and the API during the fault and the recovery after it.
/// Returns the senders' tallies.
async fn through_fault(
    server: &Callscope,
    db: &Path,
    pad: usize,
    inject: impl FnOnce(),
    clear: impl FnOnce(),
) -> Vec<Tally> {
    let http = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for (i, via) in [Via::Http, Via::Grpc].into_iter().enumerate() {
        let url = match via {
            Via::Grpc => server.grpc_url(),
            _ => server.http_url(""),
        };
        senders.push(tokio::spawn(otlp::sender(
            SenderSpec {
                via,
                url,
                tenant: "acme".into(),
                call_id: format!("fault-{i}"),
                first_seq: i as u64 * 1_000_000_000,
                per_request: 200,
                pad,
                stop_on_transport_error: false,
                backoff: Duration::from_millis(100),
            },
            stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    wait_ready(server, 200, Duration::from_secs(5)).await;

    inject();
    wait_ready(server, 503, Duration::from_secs(30)).await;
    // The API keeps answering without a 500 (503 while the database is closed).
    for _ in 0..5 {
        let (status, body) = get(&http, server.api_url("/v1/calls/fault-0/logs?limit=1")).await;
        assert!(
            [200, 503].contains(&status),
            "{status}: {body}\n{}",
            server
                .logs()
                .lines()
                .filter(|l| l.contains("ERROR"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(!body.contains(&db.display().to_string()), "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    clear();
    wait_ready(server, 200, Duration::from_secs(30)).await;
    // Ingest works again in the same process.
    let b = otlp::batch("acme", "after-fault", 0, 10, 10);
    let answer = otlp::send_http(
        &otlp::http_client(),
        &server.http_url(""),
        &b.request,
        false,
    )
    .await;
    assert!(answer.acked, "{answer:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut tallies = Vec::new();
    for s in senders {
        tallies.push(s.await.unwrap());
    }
    let db_text = db.display().to_string();
    for t in &tallies {
        assert!(t.unexpected.is_empty(), "{:?}", t.unexpected);
        assert!(t.transport_errors.is_empty(), "{:?}", t.transport_errors);
        for m in &t.refusals {
            for secret in [
                db_text.as_str(),
                "duckdb",
                "DuckDB",
                ".wal",
                "No space",
                "not permitted",
                "INSERT",
                "SELECT",
                "Transaction",
            ] {
                assert!(!m.contains(secret), "a refusal reveals `{secret}`: {m}");
            }
        }
    }
    let refused: usize = tallies
        .iter()
        .map(|t| t.codes.get("503").unwrap_or(&0) + t.codes.get("Unavailable").unwrap_or(&0))
        .sum();
    assert!(refused > 0, "the fault was answered with 503 / UNAVAILABLE");
    tallies
}

/// Stops the server and checks that every acknowledged record is in the file, once.
async fn all_acknowledged_stored_once(server: Callscope, db: &Path, tallies: &[Tally]) {
    let (status, logs) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success(), "{logs}");
    let (ids, _) = stored_ids(db).await;
    for t in tallies {
        for id in &t.acked {
            assert_eq!(ids.get(id), Some(&1), "acknowledged record {id}");
        }
    }
    assert!(ids.values().all(|n| *n == 1));
    let acked: usize = tallies.iter().map(|t| t.acked.len()).sum();
    let codes: Vec<_> = tallies.iter().map(|t| &t.codes).collect();
    eprintln!("{acked} records acknowledged; answers {codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "injects real storage faults: needs root (chattr +i, mount); run with --ignored"]
async fn read_only_database_is_refused_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("callscope.duckdb");
    let probe = data.join("probe");
    std::fs::write(&probe, "x").unwrap();
    if !sh("chattr", &["+i", probe.to_str().unwrap()]) {
        unavailable("chattr +i is not permitted here");
    }
    sh("chattr", &["-i", probe.to_str().unwrap()]);
    std::fs::remove_file(&probe).unwrap();

    let config = write_config(dir.path(), Some(&db), "");
    let server = Callscope::start(&config, &[]);
    let wal = data.join("callscope.duckdb.wal");
    let paths = vec![db.clone(), wal.clone(), data.clone()];
    let guard = Mutable(paths.clone());
    let tallies = through_fault(
        &server,
        &db,
        200,
        || {
            for p in &paths {
                assert!(
                    !p.exists() || sh("chattr", &["+i", p.to_str().unwrap()]),
                    "chattr +i {}",
                    p.display()
                );
            }
        },
        || {
            for p in &paths {
                sh("chattr", &["-i", p.to_str().unwrap()]);
            }
        },
    )
    .await;
    drop(guard);
    assert!(server.logs().contains("Write failed"));
    all_acknowledged_stored_once(server, &db, &tallies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "injects real storage faults: needs root (chattr +i, mount); run with --ignored"]
async fn full_disk_is_refused_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    if !sh(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=64m",
            "tmpfs",
            disk.to_str().unwrap(),
        ],
    ) {
        unavailable("mounting a size-limited tmpfs is not permitted here");
    }
    let mounted = Mounted(disk.clone());
    let db = disk.join("callscope.duckdb");
    let config = write_config(dir.path(), Some(&db), "");
    let server = Callscope::start(&config, &[]);
    let filler = disk.join("filler");
    let tallies = through_fault(
        &server,
        &db,
        200,
        || {
            // Fill every free byte.
            use std::io::Write as _;
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![0u8; 64 * 1024];
            while f.write_all(&chunk).is_ok() {}
            while f.write_all(&chunk[..512]).is_ok() {}
        },
        || std::fs::remove_file(&filler).unwrap(),
    )
    .await;
    assert!(server.logs().contains("Write failed"));
    let (status, logs) = tokio::task::spawn_blocking({
        let server = server;
        move || server.terminate(Duration::from_secs(30))
    })
    .await
    .unwrap();
    assert!(status.success(), "{logs}");
    // Read the file while the tmpfs is still mounted.
    let (ids, _) = stored_ids(&db).await;
    for t in &tallies {
        for id in &t.acked {
            assert_eq!(ids.get(id), Some(&1), "acknowledged record {id}");
        }
    }
    assert!(ids.values().all(|n| *n == 1));
    drop(mounted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "injects real storage faults: needs root (chattr +i, mount); run with --ignored"]
async fn failed_checkpoint_reopens_the_database_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("callscope.duckdb");
    let config = write_config(dir.path(), Some(&db), "");
    let server = Callscope::start(&config, &[]);
    let probe = data.join("probe");
    std::fs::write(&probe, "x").unwrap();
    if !sh("chattr", &["+i", probe.to_str().unwrap()]) {
        unavailable("chattr +i is not permitted here");
    }
    sh("chattr", &["-i", probe.to_str().unwrap()]);
    std::fs::remove_file(&probe).unwrap();

    let guard = Mutable(vec![db.clone()]);
    // Only the database file is read-only: commits still reach the WAL until it grows
    // past the checkpoint threshold; that checkpoint fails and DuckDB invalidates the
    // instance, and reopening fails until the file is writable again.
    let tallies = through_fault(
        &server,
        &db,
        4000,
        || assert!(sh("chattr", &["+i", db.to_str().unwrap()])),
        || {
            sh("chattr", &["-i", db.to_str().unwrap()]);
        },
    )
    .await;
    drop(guard);
    let logs = server.logs();
    assert!(
        logs.contains("DuckDB invalidated the database; reopening it."),
        "the checkpoint failed and invalidated the database:\n{logs}"
    );
    assert!(logs.contains("Reopened the database."), "{logs}");
    all_acknowledged_stored_once(server, &db, &tallies).await;
}
