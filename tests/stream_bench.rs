//! Live streams under many watchers, against the real binary: memory per open stream,
//! delivery latency with 1,000 streams open, and ingest with and without them. Not run
//! by `cargo test`; figures go to BENCHMARKS.md:
//!
//! `cargo test --workspace --test stream_bench -- --ignored --nocapture`

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use callscope_collector::{
    testing::{LogBuilder, ResourceBuilder, request},
    visibility::record_id,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use support::{
    key_for,
    otlp::{self, SenderSpec, Via},
    process::{Callscope, write_config},
};
use uuid::Uuid;

const STREAMS: usize = 1000;

/// The events one stream received: id and when.
type Arrivals = Arc<Mutex<Vec<(Uuid, Instant)>>>;
const ROUNDS: usize = 30;

/// One request with one record for each of `calls`; returns the ids.
fn one_each(calls: &[String], round: u64) -> (ExportLogsServiceRequest, Vec<Uuid>) {
    let records: Vec<_> = calls
        .iter()
        .map(|c| {
            LogBuilder::customer("AGENT_MESSAGE_SENT")
                .call(c)
                .tenant("acme")
                .agent("bench-agent")
                .time(otlp::base_time() + round * 1_000_000)
                .attr("round", i64::try_from(round).unwrap())
                .attr("text", "Thanks, one moment while I check that.")
                .build()
        })
        .collect();
    let ids: Vec<Uuid> = calls
        .iter()
        .zip(&records)
        .map(|(c, r)| record_id("acme", c, "AGENT_MESSAGE_SENT", r))
        .collect();
    (request([ResourceBuilder::new().logs(records).build()]), ids)
}

/// Records acknowledged per second by four OTLP/HTTP senders writing calls nobody
/// watches, over `for_`.
async fn ingest_rate(server: &Callscope, first: u64, for_: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..4u64)
        .map(|i| {
            tokio::spawn(otlp::sender(
                SenderSpec {
                    via: Via::Http,
                    url: server.http_url(""),
                    tenant: "acme".into(),
                    call_id: format!("load-{first}-{i}"),
                    first_seq: first + i * 100_000_000,
                    per_request: 200,
                    pad: 500,
                    stop_on_transport_error: true,
                    backoff: Duration::from_millis(5),
                },
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(for_).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap().acked.len();
    }
    acked as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test --workspace --test stream_bench -- --ignored --nocapture"]
async fn a_thousand_streams() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), None, "");
    let server = Callscope::start(&config, &[]);
    let http = otlp::http_client();
    let calls: Vec<String> = (0..STREAMS).map(|i| format!("watched-{i}")).collect();
    let (seed, _) = one_each(&calls, 0);
    assert!(
        otlp::send_http(&http, &server.http_url(""), &seed, false)
            .await
            .acked
    );

    let phase = Duration::from_secs(10);
    let before = ingest_rate(&server, 1_000_000_000, phase).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = server.rss_kib();

    // Open the streams; each reader notes when each event arrives.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let arrivals: Vec<Arrivals> = (0..STREAMS).map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for (call, log) in calls.iter().zip(&arrivals) {
        let mut resp = client
            .get(server.api_url(&format!("/v1/calls/{call}/logs/stream")))
            .bearer_auth(key_for("acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let log = log.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                let now = Instant::now();
                buf.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                        log.lock().unwrap().push((id.parse().unwrap(), now));
                    }
                }
            }
        }));
    }
    // Every stream has sent its backlog (the seed record) and is idle.
    let deadline = Instant::now() + Duration::from_secs(60);
    while arrivals.iter().any(|a| a.lock().unwrap().is_empty()) {
        assert!(Instant::now() < deadline, "streams did not all open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = server.rss_kib();
    let per_stream_kib = (rss_open as f64 - rss_before as f64) / STREAMS as f64;

    // Delivery: each round commits one record for every watched call.
    let (mut from_ack, mut from_send) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS as u64 {
        let (batch, ids) = one_each(&calls, round);
        let sent = Instant::now();
        assert!(
            otlp::send_http(&http, &server.http_url(""), &batch, false)
                .await
                .acked
        );
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(10);
        for (id, log) in ids.iter().zip(&arrivals) {
            let at = loop {
                if let Some((_, at)) = log.lock().unwrap().iter().find(|(got, _)| got == id) {
                    break *at;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: {id} not delivered"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            from_ack.push(at.saturating_duration_since(acked));
            from_send.push(at.saturating_duration_since(sent));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    from_ack.sort();
    from_send.sort();

    let with_streams = ingest_rate(&server, 2_000_000_000, phase).await;
    for r in &readers {
        r.abort();
    }
    drop(readers);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = ingest_rate(&server, 3_000_000_000, phase).await;
    let m = reqwest::get(server.api_url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    println!("streams open: {STREAMS} (one per call, idle between rounds)");
    println!(
        "RSS before {rss_before} KiB, with the streams open {rss_open} KiB: {per_stream_kib:.1} KiB per stream"
    );
    println!(
        "delivery, {} events ({ROUNDS} rounds x {STREAMS} streams): from ack p50 {:?} p99 {:?} max {:?}; from request start p50 {:?} p99 {:?}",
        from_ack.len(),
        percentile(&from_ack, 0.5),
        percentile(&from_ack, 0.99),
        from_ack.last().unwrap(),
        percentile(&from_send, 0.5),
        percentile(&from_send, 0.99),
    );
    println!(
        "ingest records/s: without streams {before:.0}, with {STREAMS} open {with_streams:.0} ({:+.1} %), after closing them {after:.0}",
        (with_streams / before - 1.0) * 100.0
    );
    println!(
        "{}",
        m.lines()
            .filter(|l| l.starts_with("callscope_api_stream"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(percentile(&from_ack, 0.99) < Duration::from_secs(1));
    server.terminate(Duration::from_secs(30));
}
