//! Overload of the real binary: many concurrent senders push more than the writer can
//! commit. Every answer is an acknowledgement or a retryable refusal with its retry hint,
//! peak RSS stays under the bound RELIABILITY.md documents for the configured limits
//! whether 8 or 64 senders push, and once the load stops the queue drains and every
//! acknowledged record is served.

mod support;

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use support::{
    api_ids, metric,
    otlp::{self, SenderSpec, Tally, Via},
    process::{Callscope, write_config},
};
use uuid::Uuid;

const MIB: u64 = 1024 * 1024;

/// The limits this test runs with (as `CALLSCOPE_*` overrides).
struct Limits {
    memory_limit_mib: u64,
    queue_records: u64,
    max_in_flight_requests: u64,
    max_request_bytes: u64,
    max_in_flight_bytes: u64,
}

impl Limits {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "CALLSCOPE_STORAGE__MEMORY_LIMIT".into(),
                format!("\"{}MB\"", self.memory_limit_mib),
            ),
            (
                "CALLSCOPE_STORAGE__QUEUE_RECORDS".into(),
                self.queue_records.to_string(),
            ),
            (
                "CALLSCOPE_STORAGE__COMMIT_GROUP_RECORDS".into(),
                (self.queue_records / 4).to_string(),
            ),
            (
                "CALLSCOPE_OTLP__MAX_IN_FLIGHT_REQUESTS".into(),
                self.max_in_flight_requests.to_string(),
            ),
            (
                "CALLSCOPE_OTLP__MAX_REQUEST_BYTES".into(),
                self.max_request_bytes.to_string(),
            ),
            (
                "CALLSCOPE_OTLP__MAX_IN_FLIGHT_BYTES".into(),
                self.max_in_flight_bytes.to_string(),
            ),
        ]
    }

    /// The peak-RSS bound of RELIABILITY.md ("Overload"), in bytes:
    /// 160 MiB + 2 × DuckDB's memory limit + 8 × the in-flight bytes
    /// + 2 × in-flight requests × the request limit + 4 KiB × the queue's records.
    fn rss_bound(&self) -> u64 {
        160 * MIB
            + 2 * self.memory_limit_mib * MIB
            + 8 * self.max_in_flight_bytes
            + 2 * self.max_in_flight_requests * self.max_request_bytes
            + 4096 * self.queue_records
    }
}

/// `senders` senders push for `for_`; returns each one's tenant, call and tally.
async fn push(
    server: &Callscope,
    senders: usize,
    first_call: usize,
    for_: Duration,
) -> Vec<(String, String, Tally)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..senders {
        let via = [Via::Http, Via::Grpc, Via::HttpGzip][i % 3];
        let url = match via {
            Via::Grpc => server.grpc_url(),
            _ => server.http_url(""),
        };
        let n = first_call + i;
        tasks.push(tokio::spawn(otlp::sender(
            SenderSpec {
                via,
                url,
                tenant: support::TENANTS[n % 2].into(),
                call_id: format!("load-{n}"),
                first_seq: n as u64 * 1_000_000_000,
                per_request: 200,
                pad: 4000,
                stop_on_transport_error: false,
                // Push hard: barely wait after a refusal.
                backoff: Duration::from_millis(2),
            },
            stop.clone(),
        )));
    }
    tokio::time::sleep(for_).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.into_iter()
        .enumerate()
        .map(|(i, t)| {
            let n = first_call + i;
            (support::TENANTS[n % 2].to_owned(), format!("load-{n}"), t)
        })
        .collect()
}

fn summary(tallies: &[(String, String, Tally)]) -> BTreeMap<String, usize> {
    let mut codes = BTreeMap::new();
    for (_, _, t) in tallies {
        for (c, n) in &t.codes {
            *codes.entry(c.clone()).or_default() += n;
        }
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_refuses_retryably_bounds_memory_and_drains() {
    let limits = Limits {
        memory_limit_mib: 64,
        queue_records: 10_000,
        max_in_flight_requests: 8,
        max_request_bytes: 2 * MIB,
        max_in_flight_bytes: 8 * MIB,
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), None, "");
    let env = limits.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Callscope::start(&config, &env);
    let idle = server.peak_rss_kib();

    let mut all = Vec::new();
    let mut peaks = Vec::new();
    for (phase, senders) in [(0, 8), (1, 96)] {
        let tallies = push(&server, senders, phase * 1000, Duration::from_secs(6)).await;
        let peak = server.peak_rss_kib() * 1024;
        let codes = summary(&tallies);
        let acked: usize = tallies.iter().map(|(_, _, t)| t.acked.len()).sum();
        eprintln!(
            "{senders} senders: answers {codes:?}, {acked} records acknowledged, peak RSS {} MiB (idle {} MiB, bound {} MiB)",
            peak / MIB,
            idle / 1024,
            limits.rss_bound() / MIB
        );
        for (_, _, t) in &tallies {
            assert!(
                t.unexpected.is_empty(),
                "only acknowledgements and retryable refusals: {:?}",
                t.unexpected
            );
        }
        let lost: Vec<&String> = tallies
            .iter()
            .flat_map(|(_, _, t)| &t.transport_errors)
            .collect();
        assert!(lost.is_empty(), "every request was answered: {lost:?}");
        assert!(acked > 0);
        assert!(
            peak < limits.rss_bound(),
            "peak RSS {} MiB is over the documented bound {} MiB",
            peak / MIB,
            limits.rss_bound() / MIB
        );
        peaks.push(peak);
        all.extend(tallies);
    }
    let codes = summary(&all);
    let refused: usize = ["429", "503", "Unavailable"]
        .iter()
        .filter_map(|c| codes.get(*c))
        .sum();
    assert!(
        refused > 0,
        "the load was more than callscope could take: {codes:?}"
    );

    // The load has stopped: the queue drains, storage is ready, and every acknowledged
    // record is served (and nothing that was never sent).
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = http
            .get(server.api_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric(&text, "callscope_store_queue_depth_records") == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = http.get(server.api_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    for (tenant, call, t) in &all {
        let shown: HashSet<Uuid> = api_ids(&http, server.api, tenant, call)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert!(
            t.acked.is_subset(&shown),
            "call {call} lost acknowledged records"
        );
        let sent: HashSet<Uuid> = t.sent.iter().flat_map(|b| b.ids.iter().copied()).collect();
        assert!(
            shown.is_subset(&sent),
            "call {call} shows records never sent"
        );
    }
    let (status, logs) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(status.success(), "{logs}");
}
