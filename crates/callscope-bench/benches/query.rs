//! Query latency on a pre-built store (see `build_store`): the per-call page and search
//! with aggregations.
//!
//! ```sh
//! CALLSCOPE_BENCH_STORE=/root/.cache/callscope/benchdata/10m.duckdb \
//!     cargo bench --workspace --lib --bench query
//! ```
//!
//! The calls case reads the first page of the calls list, unfiltered and with the
//! filters that match inside values (number digits, `q`, a duration range).
//!
//! The timeline case adds one 200-turn call (its records and 800 spans, stored once
//! however often the bench runs) and times `GET /v1/calls/{id}/spans` and `/turns` for
//! it, as the store answers them.
//!
//! The store holds `common::Dataset` records of one tenant, so every search considers
//! every stored record. Each page iteration reads one page of a random call, as
//! `GET /v1/calls/{id}/logs` does; each search iteration runs one search as
//! `POST /v1/logs/search` does. Criterion reports the mean; the percentiles over every
//! timed query are printed after each case (the targets are stated as percentiles).
//! `CALLSCOPE_BENCH_LAKE=<callscope.toml>` runs the same queries on the DuckLake backend
//! that file's `[storage]` describes; an empty lake is first filled with the tables of
//! `CALLSCOPE_BENCH_STORE`.
//! `CALLSCOPE_BENCH_MEMORY_LIMIT` (for example `2GB`) sets DuckDB's buffer pool
//! (`storage.memory_limit`) instead of the store's default. `CALLSCOPE_BENCH_WARM=1`
//! first reads every column a page reads, untimed, as a long-running server would have:
//! without it the page percentiles include each row group's first load into the pool.

#![allow(missing_docs)]

mod common;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use callscope_model::{
    Category, Level, LogRecord, SpanKind, SpanRecord, SpanStatus, TenantRecord, TenantSpan,
    Timestamp,
};
use callscope_store::{
    CallFilter, CallSearch, DurationRange, LogFilter, LogQuery, Order, PageAt, SearchFilter,
    SearchQuery, Store, StoreConfig,
};
use common::{Dataset, START_NS, percentiles, splitmix};
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, criterion_group, criterion_main, measurement::WallTime,
};
use serde_json::json;
use uuid::Uuid;

fn store_path() -> PathBuf {
    std::env::var_os("CALLSCOPE_BENCH_STORE").map_or_else(
        || PathBuf::from("/root/.cache/callscope/benchdata/10m.duckdb"),
        PathBuf::from,
    )
}

/// Fills an empty lake with the tables of the store file at `from` (once: a lake that
/// holds records already is left as it is).
fn copy_into_lake(rt: &tokio::runtime::Runtime, store: &Store, from: &std::path::Path) {
    let from = from.display().to_string();
    let t = Instant::now();
    let copied = rt
        .block_on(store.read(move |c| {
            let n: i64 = c.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?;
            if n > 0 {
                return Ok(false);
            }
            c.execute_batch(&format!("ATTACH '{from}' AS bench_src (READ_ONLY)"))?;
            for table in [
                "logs",
                "calls",
                "log_counts",
                "spans",
                "call_metrics",
                "comments",
            ] {
                c.execute_batch(&format!(
                    "INSERT INTO {table} BY NAME SELECT * FROM bench_src.{table}"
                ))?;
            }
            c.execute_batch(
                "UPDATE lake_fence SET seq = (SELECT max(seq) FROM logs); DETACH bench_src;",
            )?;
            Ok(true)
        }))
        .expect("copy into the lake");
    if copied {
        println!(
            "copied the store into the lake in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
}

fn queries(c: &mut Criterion) {
    let path = store_path();
    if !path.exists() {
        eprintln!(
            "{} does not exist: build it with the build_store bench (see its docs)",
            path.display()
        );
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let defaults = match std::env::var_os("CALLSCOPE_BENCH_LAKE") {
        // The same queries on the DuckLake backend: `[storage]` of that config file.
        Some(config) => {
            callscope::Config::load(Some(config.as_ref()), std::iter::empty())
                .expect("the lake's config")
                .storage
        }
        None => StoreConfig {
            path: path.clone(),
            ..StoreConfig::default()
        },
    };
    let store = Store::open(&StoreConfig {
        retention_days: 0,
        // DuckDB's buffer pool: the store's default unless set.
        memory_limit: std::env::var("CALLSCOPE_BENCH_MEMORY_LIMIT")
            .unwrap_or(defaults.memory_limit.clone()),
        ..defaults
    })
    .expect("opens");
    if std::env::var_os("CALLSCOPE_BENCH_LAKE").is_some() {
        copy_into_lake(&rt, &store, &path);
    }
    let records: i64 = rt
        .block_on(store.read(|c| Ok(c.query_row("SELECT count(*) FROM logs", [], |r| r.get(0))?)))
        .expect("count");
    let data = Dataset::new(u64::try_from(records).unwrap_or(0));
    let calls = data.calls();
    let label = if records >= 1_000_000 {
        format!("{}m", records / 1_000_000)
    } else {
        format!("{}k", records / 1000)
    };
    println!("store {}: {records} records, {calls} calls", path.display());
    // The text index of a file from before it is built while the store serves; the text
    // cases time searches over an index that has caught up, as a server's would be.
    let t = Instant::now();
    while store.metrics().text_index_pending() >= 2 * 65_536 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (blocks, index_bytes, text_bytes): (i64, i64, i64) = rt
        .block_on(store.read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM search_blocks), \
                        (SELECT sum(octet_length(grams))::BIGINT FROM search_blocks), \
                        (SELECT sum(strlen(search))::BIGINT FROM logs)",
                [],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                        r.get(2)?,
                    ))
                },
            )?)
        }))
        .expect("index size");
    println!(
        "text index: caught up in {:.1} s; {blocks} blocks, {:.1} MiB of bitmaps for {:.1} MiB of search text ({} records not in a block)",
        t.elapsed().as_secs_f64(),
        index_bytes as f64 / 1048576.0,
        text_bytes as f64 / 1048576.0,
        store.metrics().text_index_pending()
    );
    if std::env::var_os("CALLSCOPE_BENCH_WARM").is_some() {
        // A server that has been answering for a while: every column a page reads is in
        // DuckDB's buffer pool (if `memory_limit` holds it), not just the row groups the
        // random calls so far happened to touch.
        let t = Instant::now();
        rt.block_on(store.read(|c| {
            c.query_row(
                "SELECT max(id), max(ts), max(level), max(category), max(event), \
                 max(call_id), max(agent_id), max(trace_id), max(span_id), \
                 max(strlen(data)) FROM logs",
                [],
                |_| Ok(()),
            )?;
            Ok(())
        }))
        .expect("warm-up scan");
        println!("warm-up scan: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    }

    // The per-call page.
    let mut group = c.benchmark_group(format!("call_page_{label}"));
    group.measurement_time(Duration::from_secs(10));
    let mut n = 0u64;
    let mut pick = || {
        n += 1;
        data.call(splitmix(n ^ 0xabcd) % calls)
    };
    let page_cases: Vec<(&str, LogQuery)> = vec![
        (
            "page_1_limit_100_asc",
            LogQuery {
                at: PageAt::Page(1),
                limit: 100,
                order: Order::Asc,
                filter: LogFilter::default(),
            },
        ),
        (
            "page_1_limit_100_desc_min_level_warning",
            LogQuery {
                at: PageAt::Page(1),
                limit: 100,
                order: Order::Desc,
                filter: LogFilter {
                    min_level: Some(Level::Warning),
                    ..LogFilter::default()
                },
            },
        ),
        (
            "after_cursor_limit_50",
            LogQuery {
                at: PageAt::Page(1),
                limit: 50,
                order: Order::Asc,
                filter: LogFilter::default(),
            },
        ),
    ];
    for (name, query) in page_cases {
        let cursor = name.starts_with("after");
        let mut samples = timed(&mut group, name, || {
            let (tenant, call) = pick();
            let mut q = query.clone();
            if cursor {
                // The cursor comes from a first page, which is not timed.
                let first = rt
                    .block_on(store.call_logs(&tenant, &call, query.clone()))
                    .expect("query")
                    .expect("call exists");
                q.at = PageAt::After(first.records.last().expect("records").id);
            }
            let filtered = q.filter.min_level.is_some();
            let t = Instant::now();
            let page = rt
                .block_on(store.call_logs(&tenant, &call, q))
                .expect("query")
                .expect("call exists");
            let d = t.elapsed();
            assert!(filtered || !page.records.is_empty());
            d
        });
        println!("call_page_{label}/{name}: {}", percentiles(&mut samples));
    }
    group.finish();

    // Search with aggregations over every record of the tenant.
    let tenant = data.tenant(0);
    let span_ns = records / 1000 * data.step_ns;
    let hour = 3_600_000_000_000i64;
    let search = |filter: SearchFilter, size: u64| SearchQuery {
        filter,
        order: Order::Desc,
        page: 0,
        size,
    };
    let search_cases: Vec<(&str, SearchQuery)> = vec![
        ("no_filter_size_20", search(SearchFilter::default(), 20)),
        (
            "aggregations_only_size_0",
            search(SearchFilter::default(), 0),
        ),
        (
            "min_level_error_size_100",
            search(
                SearchFilter {
                    min_level: Some(Level::Error),
                    ..SearchFilter::default()
                },
                100,
            ),
        ),
        (
            "one_hour_two_events",
            search(
                SearchFilter {
                    from: Some(Timestamp(START_NS + span_ns / 2)),
                    to: Some(Timestamp(START_NS + span_ns / 2 + hour)),
                    events: vec!["WEBHOOK_SENT".into(), "INTEGRATION_TOOL_FAILED".into()],
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
        (
            "text_common_timeout",
            search(
                SearchFilter {
                    text: Some("Timeout".into()),
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
        (
            "text_very_common_order",
            search(
                SearchFilter {
                    text: Some("order".into()),
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
        (
            "text_rare_order_number",
            search(
                SearchFilter {
                    text: Some("ORD-424242".into()),
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
        (
            "text_absent",
            search(
                SearchFilter {
                    text: Some("no such words anywhere".into()),
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
        (
            "text_rare_with_event",
            search(
                SearchFilter {
                    text: Some("ORD-424242".into()),
                    events: vec!["INTEGRATION_TOOL_INVOKED".into()],
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
        (
            "text_common_one_hour",
            search(
                SearchFilter {
                    text: Some("timeout".into()),
                    from: Some(Timestamp(START_NS + span_ns / 2)),
                    to: Some(Timestamp(START_NS + span_ns / 2 + hour)),
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
        (
            // The needle in most records of this data (63 %): every match counted.
            "text_most_records_e",
            search(
                SearchFilter {
                    text: Some("e".into()),
                    ..SearchFilter::default()
                },
                20,
            ),
        ),
    ];
    search_group(
        c,
        &rt,
        &store,
        &tenant,
        &format!("search_{label}"),
        &search_cases,
    );
    calls_list(c, &rt, &store, &tenant, &label);
    timeline(c, &rt, &store, &label);
    rt.block_on(store.shutdown()).expect("shutdown");
    drop(store);

    // The same text searches with the index turned off, for the ratio in one run.
    let store = Store::open(&StoreConfig {
        path: path.clone(),
        retention_days: 0,
        memory_limit: std::env::var("CALLSCOPE_BENCH_MEMORY_LIMIT")
            .unwrap_or(StoreConfig::default().memory_limit),
        text_index_block_records: 0,
        ..StoreConfig::default()
    })
    .expect("opens");
    let text_cases: Vec<_> = search_cases
        .into_iter()
        .filter(|(n, _)| n.starts_with("text"))
        .collect();
    search_group(
        c,
        &rt,
        &store,
        &tenant,
        &format!("search_{label}_without_index"),
        &text_cases,
    );
    rt.block_on(store.shutdown()).expect("shutdown");
}

/// Times each search of `cases` in the criterion group `name`, and prints its
/// percentiles and match count.
fn search_group(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    tenant: &str,
    name: &str,
    cases: &[(&str, SearchQuery)],
) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(15));
    for (case, query) in cases {
        let mut matches = 0;
        let mut samples = timed(&mut group, case, || {
            let t = Instant::now();
            let r = rt
                .block_on(store.search(tenant, query.clone()))
                .expect("search");
            matches = r.total_count;
            t.elapsed()
        });
        println!(
            "{name}/{case} [{matches} matches]: {}",
            percentiles(&mut samples)
        );
    }
    group.finish();
}

/// The calls list as `GET /v1/calls` reads it, a page of 100 newest first, unfiltered
/// and with the filters that match inside values: digits inside a number, `q` (a call-id
/// prefix or digits in either number), and a duration range.
fn calls_list(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    store: &Store,
    tenant: &str,
    label: &str,
) {
    let q = |text: &str, digits: Option<&str>| CallFilter {
        search: Some(CallSearch {
            call_id_prefix: text.into(),
            number_digits: digits.map(Into::into),
        }),
        ..CallFilter::default()
    };
    let cases: Vec<(&str, CallFilter)> = vec![
        ("all", CallFilter::default()),
        (
            "from_number_digits",
            CallFilter {
                from_number: Some("5550012".into()),
                ..CallFilter::default()
            },
        ),
        ("q_number", q("555 0012", Some("5550012"))),
        ("q_call_id_prefix", q("0000", None)),
        (
            "duration_range",
            CallFilter {
                duration: DurationRange {
                    min_ms: Some(60_000),
                    max_ms: Some(120_000),
                },
                ..CallFilter::default()
            },
        ),
    ];
    let mut group = c.benchmark_group(format!("calls_{label}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10));
    for (name, filter) in cases {
        let mut matches = 0;
        let mut samples = timed(&mut group, name, || {
            let t = Instant::now();
            let page = rt
                .block_on(store.list_calls(tenant, filter.clone(), 100, 0))
                .expect("calls");
            matches = page.total_count;
            t.elapsed()
        });
        println!(
            "calls_{label}/{name} [{matches} matches]: {}",
            percentiles(&mut samples)
        );
    }
    group.finish();
}

/// The 200-turn call: per turn a user and an agent message and a `TURN_LATENCY` (600
/// records), and a `turn` span with `stt`, `llm` and `tts` spans under it (800 spans),
/// stamped after the data set so they sit in the newest row groups as a live call would.
fn long_call(start_ns: i64) -> (Vec<TenantRecord>, Vec<TenantSpan>) {
    const TENANT: &str = "tenant-timeline";
    const CALL: &str = "5e3b8f2c-0000-4000-8000-000000000200";
    let ms = 1_000_000i64;
    let mut records = Vec::new();
    let mut spans = Vec::new();
    let id = |n: u64| Uuid::from_u64_pair(splitmix(n ^ 0x7e11), splitmix(n));
    for turn in 0..200i64 {
        let t0 = start_ns + turn * 6_000 * ms;
        let n = u64::try_from(turn).unwrap_or(0) * 8;
        let rec = |k: u64, at: i64, event: &str, data: serde_json::Value| TenantRecord {
            tenant: TENANT.into(),
            record: LogRecord {
                id: id(n + k),
                timestamp: Timestamp(at),
                level: Level::Info,
                category: if event == "TURN_LATENCY" {
                    Category::Metrics
                } else {
                    Category::Agent
                },
                event: event.into(),
                call_id: CALL.into(),
                agent_id: Some("agent-01".into()),
                trace_id: Some("ab".repeat(16)),
                span_id: None,
                data: data.as_object().cloned(),
            },
        };
        records.push(rec(
            0,
            t0 + 300 * ms,
            "USER_MESSAGE_RECEIVED",
            json!({"text": "Where is my order?", "turn": turn}),
        ));
        records.push(rec(
            1,
            t0 + 1_100 * ms,
            "AGENT_MESSAGE_SENT",
            json!({"text": "It ships on Thursday.", "turn": turn}),
        ));
        records.push(rec(2, t0 + 1_200 * ms, "TURN_LATENCY", json!({"turn": turn, "stt_ms": 200, "llm_ttft_ms": 450, "tts_ttfb_ms": 120, "end_to_end_ms": 900 + turn})));
        for (k, (name, from, to)) in [
            ("turn", 0, 1_200),
            ("stt", 0, 200),
            ("llm", 200, 900),
            ("tts", 900, 1_020),
        ]
        .into_iter()
        .enumerate()
        {
            let k = k as u64;
            spans.push(TenantSpan {
                tenant: TENANT.into(),
                span: SpanRecord {
                    id: id(n + 4 + k),
                    call_id: CALL.into(),
                    agent_id: Some("agent-01".into()),
                    trace_id: "ab".repeat(16),
                    span_id: format!("{:016x}", n + 4 + k),
                    parent_span_id: (k > 0).then(|| format!("{:016x}", n + 4)),
                    name: name.into(),
                    kind: SpanKind::Internal,
                    start_time: Timestamp(t0 + from * ms),
                    end_time: Timestamp(t0 + to * ms),
                    status: SpanStatus::Unset,
                    status_message: None,
                    attributes: json!({"turn": turn, "model": "small"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                },
            });
        }
    }
    (records, spans)
}

fn timeline(c: &mut Criterion, rt: &tokio::runtime::Runtime, store: &Store, label: &str) {
    let newest: i64 = rt
        .block_on(store.read(|c| {
            // The data set's newest record, not the long call's: every run then adds
            // the same call at the same times, which are duplicates after the first.
            Ok(c.query_row(
                "SELECT max(ts) FROM logs WHERE tenant <> 'tenant-timeline'",
                [],
                |r| r.get(0),
            )?)
        }))
        .expect("newest");
    let (records, spans) = long_call(newest + 1_000_000_000);
    let (tenant, call) = (records[0].tenant.clone(), records[0].record.call_id.clone());
    // Stored once: a second run's appends are all duplicates.
    rt.block_on(store.append(records)).expect("records");
    rt.block_on(store.append_spans(spans)).expect("spans");
    let mut group = c.benchmark_group(format!("timeline_{label}"));
    group.measurement_time(Duration::from_secs(10));
    for name in ["spans_200_turns", "turns_200_turns"] {
        let mut samples = timed(&mut group, name, || {
            let t = Instant::now();
            let n = if name.starts_with("spans") {
                rt.block_on(store.call_spans(&tenant, &call))
                    .expect("spans")
                    .expect("call")
                    .len()
            } else {
                rt.block_on(store.call_turns(&tenant, &call))
                    .expect("turns")
                    .expect("call")
                    .turns
                    .len()
            };
            let d = t.elapsed();
            assert_eq!(n, if name.starts_with("spans") { 800 } else { 200 });
            d
        });
        println!("timeline_{label}/{name}: {}", percentiles(&mut samples));
    }
    group.finish();
}

/// Benchmarks `name` in `group`, an iteration taking the time `once` returns (so that
/// it can leave its own set-up out); returns every iteration's time in nanoseconds,
/// for the percentiles the targets are stated in (criterion reports the mean).
fn timed(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut once: impl FnMut() -> Duration,
) -> Vec<u64> {
    let mut samples = Vec::new();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let d = once();
                total += d;
                samples.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            }
            total
        });
    });
    samples
}

criterion_group!(benches, queries);
criterion_main!(benches);
