//! Crash safety of the real binary: SIGKILL mid-stream, over several cycles on the same
//! file, loses nothing that was acknowledged and duplicates nothing; a sender that then
//! re-sends everything it ever sent still gets every record stored exactly once.

mod support;

use std::{
    collections::HashSet,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use rand::{Rng as _, SeedableRng as _};
use support::{
    api_ids,
    otlp::{self, Batch, SenderSpec, Via},
    process::{Callscope, write_config},
    stored_ids,
};
use uuid::Uuid;

const CYCLES: usize = 6;
const SENDERS: [Via; 4] = [Via::Http, Via::HttpGzip, Via::Grpc, Via::Grpc];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_acknowledged() {
    sigkill_cycles(&[]).await;
}

/// The same with acknowledgements after the ack log's fsync (`ack_after = "log"`): the
/// records acknowledged and not yet committed to DuckDB at the kill are applied from the
/// log at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_nothing_acknowledged_with_the_ack_log() {
    sigkill_cycles(&[("CALLSCOPE_STORAGE__ACK_AFTER", "log")]).await;
}

async fn sigkill_cycles(env: &[(&str, &str)]) {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callscope.duckdb");
    let config = write_config(dir.path(), None, "");
    let http = reqwest::Client::new();

    let mut sent: Vec<Batch> = Vec::new();
    let mut acked: HashSet<Uuid> = HashSet::new();
    // (tenant, call) of every call so far, with the ids acknowledged for it.
    let mut calls: Vec<(String, String, HashSet<Uuid>)> = Vec::new();
    let mut cut_off = 0; // requests that got no answer: in flight at the kill, or after it
    for cycle in 0..CYCLES {
        let server = Callscope::start(&config, env);

        // Everything acknowledged before the last kill is served, once.
        for (tenant, call, ids) in &calls {
            let shown = api_ids(&http, server.api, tenant, call)
                .await
                .unwrap_or_default();
            let unique: HashSet<Uuid> = shown.iter().copied().collect();
            assert_eq!(
                unique.len(),
                shown.len(),
                "cycle {cycle}: {call} has duplicates"
            );
            let lost = ids.iter().filter(|id| !unique.contains(id)).count();
            assert_eq!(
                lost, 0,
                "cycle {cycle}: {call} lost {lost} acknowledged records"
            );
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::new();
        for (i, via) in SENDERS.into_iter().enumerate() {
            let url = match via {
                Via::Grpc => server.grpc_url(),
                _ => server.http_url(""),
            };
            senders.push(tokio::spawn(otlp::sender(
                SenderSpec {
                    via,
                    url,
                    tenant: support::TENANTS[i % 2].into(),
                    call_id: format!("crash-{cycle}-{i}"),
                    first_seq: (cycle * SENDERS.len() + i) as u64 * 1_000_000_000,
                    per_request: 50,
                    pad: 100,
                    stop_on_transport_error: true,
                    backoff: Duration::from_millis(10),
                },
                stop.clone(),
            )));
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        tokio::task::spawn_blocking(move || server.kill9())
            .await
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut acked_now = 0;
        for (i, s) in senders.into_iter().enumerate() {
            let t = s.await.unwrap();
            assert!(t.unexpected.is_empty(), "{:?}", t.unexpected);
            cut_off += t.codes.get("transport").copied().unwrap_or(0);
            acked_now += t.acked.len();
            acked.extend(t.acked.iter().copied());
            calls.push((
                support::TENANTS[i % 2].into(),
                format!("crash-{cycle}-{i}"),
                t.acked,
            ));
            sent.extend(t.sent);
        }
        assert!(acked_now > 0, "cycle {cycle}: something was acknowledged");
    }
    let records: usize = sent.iter().map(|b| b.ids.len()).sum();
    eprintln!(
        "{CYCLES} SIGKILL cycles: {} requests ({records} records) sent, {} records acknowledged, {cut_off} requests cut off",
        sent.len(),
        acked.len()
    );

    // The sender re-sends everything it ever sent, acknowledged or not.
    let server = Callscope::start(&config, env);
    let mut resenders = Vec::new();
    let chunk = sent.len().div_ceil(4);
    for (i, part) in sent.chunks(chunk).enumerate() {
        let part = part.to_vec();
        let (via, url) = if i % 2 == 0 {
            (Via::Http, server.http_url(""))
        } else {
            (Via::Grpc, server.grpc_url())
        };
        resenders.push(tokio::spawn(async move {
            let client = otlp::http_client();
            let mut grpc = otlp::grpc_client(&url).await;
            for b in part {
                loop {
                    let answer = match via {
                        Via::Grpc => otlp::send_grpc(grpc.as_mut().unwrap(), &b.request).await,
                        _ => otlp::send_http(&client, &url, &b.request, false).await,
                    };
                    if answer.acked {
                        break;
                    }
                    assert!(answer.is_retryable_refusal(), "{answer:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for r in resenders {
        r.await.unwrap();
    }
    let (status, logs) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success(), "{logs}");

    // Exactly once: every record ever sent, no other, none twice; the per-call counts
    // agree with the rows.
    let (ids, call_counts) = stored_ids(&db).await;
    let all: HashSet<Uuid> = sent.iter().flat_map(|b| b.ids.iter().copied()).collect();
    assert_eq!(all.len(), records, "the test's records are distinct");
    assert!(ids.values().all(|n| *n == 1), "a record is stored twice");
    let stored: HashSet<Uuid> = ids.keys().copied().collect();
    assert_eq!(stored.len(), all.len());
    assert!(stored == all, "the file holds exactly the records sent");
    for (tenant, call, _) in &calls {
        let rows = sent
            .iter()
            .filter(|b| &b.call_id == call)
            .map(|b| b.ids.len())
            .sum::<usize>();
        assert_eq!(
            call_counts.get(&(tenant.clone(), call.clone())).copied(),
            Some(rows as i64),
            "calls.log_count of {call}"
        );
    }
}
