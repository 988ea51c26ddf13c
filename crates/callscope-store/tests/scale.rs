//! Query latency at scale: search with aggregations and the per-call page over a store
//! of 10 million records in 100,000 calls. Ignored by default (building the store takes
//! minutes); run it with
//!
//! ```sh
//! CALLSCOPE_SCALE_RECORDS=10000000 cargo test --workspace -- --ignored --nocapture query_latency_at_scale
//! ```
//!
//! The store is built once under `$CALLSCOPE_SCALE_DIR` (default: the system temp
//! directory) and reused. Rows are generated inside DuckDB: 100 records per call, ten
//! calls overlapping at any time, one record per millisecond, typical event mix and
//! message texts. The figures go to BENCHMARKS.md.

use std::time::{Duration, Instant};

use callscope_model::Level;
use callscope_store::{
    LogFilter, LogQuery, Order, PageAt, SearchFilter, SearchQuery, Store, StoreConfig,
};

const T0: i64 = 1_790_000_000_000_000_000;

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn report(name: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<48} p50 {:>7.1} ms   p95 {:>7.1} ms   p99 {:>7.1} ms   (n={})",
        ms(percentile(samples.to_vec(), 0.5)),
        ms(percentile(samples.to_vec(), 0.95)),
        ms(percentile(samples.to_vec(), 0.99)),
        samples.len()
    );
}

/// Fills `logs` and `calls` with `n` generated records (if not already there).
async fn build(store: &Store, n: i64) {
    let have: i64 = store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?))
        .await
        .unwrap();
    if have == n {
        return;
    }
    assert_eq!(have, 0, "a store of another size is in the way");
    let started = Instant::now();
    store
        .read(move |c| {
            c.execute_batch(&format!(
                "INSERT INTO logs
                 SELECT uuid(), 'acme', 'call-' || ((r // 1000) * 10 + r % 10)::VARCHAR,
                        {T0} + r * 1000000,
                        [2, 2, 2, 1, 3, 4][1 + (r % 6)::INT]::UTINYINT,
                        [2, 3, 5, 10, 8, 7][1 + (r % 6)::INT]::UTINYINT,
                        ['USER_MESSAGE_RECEIVED', 'AGENT_MESSAGE_SENT', 'INTEGRATION_TOOL_COMPLETED',
                         'WEBHOOK_SENT', 'WEBHOOK_RESPONSE_FAILED', 'INTEGRATION_TOOL_FAILED'][1 + (r % 6)::INT],
                        'agent-' || (r % 20)::VARCHAR, md5(((r // 1000) * 10 + r % 10)::VARCHAR),
                        substr(md5(r::VARCHAR), 1, 16),
                        '{{\"text\": \"' || msg || '\", \"latency_ms\": ' || (r % 2000)::VARCHAR || '}}',
                        lower(msg) || chr(10) || (r % 2000)::VARCHAR || chr(10), r + 1
                 FROM (SELECT r, [
                         'Hi, I would like to check my order ' || (r % 99991)::VARCHAR,
                         'Hello! Thanks for calling. How can I help?',
                         'crm_lookup returned customer tier gold',
                         'https://hooks.example.com/calls/' || (r % 7919)::VARCHAR,
                         'webhook returned 503 Service Unavailable',
                         'Tool crm_lookup timed out after 10 s'][1 + (r % 6)::INT] AS msg
                       FROM range({n}) t(r));
                 INSERT INTO calls (tenant, call_id, first_ts, last_ts, log_count, debug_count,
                                    info_count, warning_count, error_count, critical_count,
                                    agent_id, trace_id)
                 SELECT tenant, call_id, min(ts), max(ts), count(*),
                        count(*) FILTER (level = 1), count(*) FILTER (level = 2),
                        count(*) FILTER (level = 3), count(*) FILTER (level = 4),
                        count(*) FILTER (level = 5), min(agent_id), min(trace_id)
                 FROM logs GROUP BY ALL;
                 INSERT INTO log_counts
                 SELECT tenant, ts // 60000000000, coalesce(agent_id, ''), event, level,
                        category, count(*)
                 FROM logs GROUP BY ALL;
                 CHECKPOINT;"
            ))?;
            Ok(())
        })
        .await
        .unwrap();
    println!("built {n} records in {:.0?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds a multi-million-record store; run explicitly"]
async fn query_latency_at_scale() {
    let n: i64 = std::env::var("CALLSCOPE_SCALE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::var("CALLSCOPE_SCALE_DIR")
        .map_or_else(|_| std::env::temp_dir(), std::path::PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.join(format!("callscope-scale-{n}.duckdb")),
        retention_days: 0,
        ..StoreConfig::default()
    })
    .unwrap();
    build(&store, n).await;
    let calls = n / 100;
    let runs = 40;

    let search = |filter: SearchFilter, size: u64| SearchQuery {
        filter,
        order: Order::Desc,
        page: 0,
        size,
    };
    let hour = 3_600_000_000_000i64;
    let cases: Vec<(&str, SearchQuery)> = vec![
        (
            "search: no filter, 20 results",
            search(SearchFilter::default(), 20),
        ),
        (
            "search: min_level ERROR, 100 results",
            search(
                SearchFilter {
                    min_level: Some(Level::Error),
                    ..Default::default()
                },
                100,
            ),
        ),
        (
            "search: one hour, 2 events",
            search(
                SearchFilter {
                    from: Some(callscope_model::Timestamp(T0 + hour)),
                    to: Some(callscope_model::Timestamp(T0 + 2 * hour)),
                    events: vec!["WEBHOOK_SENT".into(), "INTEGRATION_TOOL_FAILED".into()],
                    ..Default::default()
                },
                20,
            ),
        ),
        (
            "search: text \"timed out\" (1 in 6 match)",
            search(
                SearchFilter {
                    text: Some("Timed Out".into()),
                    ..Default::default()
                },
                20,
            ),
        ),
        (
            "search: text \"order 4242\" (rare)",
            search(
                SearchFilter {
                    text: Some("order 4242".into()),
                    ..Default::default()
                },
                20,
            ),
        ),
    ];
    for (name, q) in cases {
        let mut samples = Vec::with_capacity(runs);
        let mut total = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let r = store.search("acme", q.clone()).await.unwrap();
            samples.push(t.elapsed());
            total = r.total_count;
            assert!(!r.event_counts.is_empty() || total == 0);
        }
        report(&format!("{name} [{total} matches]"), &samples);
    }

    let mut samples = Vec::new();
    for i in 0..200 {
        let call = format!("call-{}", (i * 7919) % calls);
        let q = LogQuery {
            at: PageAt::Page(1),
            limit: 100,
            order: Order::Asc,
            filter: LogFilter::default(),
        };
        let t = Instant::now();
        let page = store.call_logs("acme", &call, q).await.unwrap().unwrap();
        samples.push(t.elapsed());
        assert_eq!(page.records.len(), 100);
    }
    report("per-call page, 100 records", &samples);
    store.shutdown().await.unwrap();
}
