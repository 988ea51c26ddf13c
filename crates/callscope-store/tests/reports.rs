//! Call summaries, the calls list, search with aggregations and comments, against a
//! real DuckDB file, each checked against an expectation computed from the input.

use std::collections::BTreeMap;

use callscope_model::{
    Call, Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp, lookup_event,
};
use callscope_store::{
    CallFilter, CallSearch, DurationRange, Order, SearchFilter, SearchQuery, Store, StoreConfig,
};
use serde_json::{Value, json};

const T0: i64 = 1_790_000_000_000_000_000;
const MS: i64 = 1_000_000;

fn rec(tenant: &str, call: &str, t_ms: i64, event: &str, data: Value) -> TenantRecord {
    let spec = lookup_event(event);
    let mut h = RecordIdHasher::new();
    h.str(tenant)
        .str(call)
        .i64(t_ms)
        .str(event)
        .str(&data.to_string());
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(T0 + t_ms * MS),
            level: spec.map_or(Level::Info, |s| s.level),
            category: spec.map_or(Category::Agent, |s| s.category),
            event: event.into(),
            call_id: call.into(),
            agent_id: Some("agent-1".into()),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: None,
            data: match data {
                Value::Object(m) => Some(m),
                _ => None,
            },
        },
    }
}

fn open(dir: &tempfile::TempDir, name: &str) -> Store {
    Store::open(&StoreConfig {
        path: dir.path().join(name),
        ..StoreConfig::default()
    })
    .unwrap()
}

/// A missed inbound call whose terminal event carries its own status, followed by a
/// stray second terminal event that must not win.
fn lifecycle(tenant: &str, call: &str) -> Vec<TenantRecord> {
    vec![
        rec(
            tenant,
            call,
            0,
            "CALL_RECEIVED",
            json!({"from": "+15550001", "to": "+15550002"}),
        ),
        rec(
            tenant,
            call,
            100,
            "CALL_STARTED",
            json!({"direction": "inbound", "from": "+19999999", "campaign_id": "winter"}),
        ),
        rec(
            tenant,
            call,
            150,
            "RECORDING_STARTED",
            json!({"recording_url": "https://rec/1"}),
        ),
        rec(
            tenant,
            call,
            200,
            "USER_MESSAGE_RECEIVED",
            json!({"text": "hello"}),
        ),
        rec(tenant, call, 300, "TOOL_X", json!({"status": "ignored"})),
        rec(
            tenant,
            call,
            5_000,
            "CALL_COMPLETED",
            json!({"status": "missed", "duration_ms": 4900, "ringing_duration_ms": 100,
                   "bot_duration_ms": "4800", "billed_duration_ms": 6000,
                   "hangup_reason": "no_answer", "hangup_source": "caller"}),
        ),
        rec(
            tenant,
            call,
            6_000,
            "CALL_FAILED",
            json!({"hangup_reason": "late"}),
        ),
    ]
}

fn assert_lifecycle(c: &Call) {
    assert_eq!(c.status, "missed");
    assert_eq!(c.direction.as_deref(), Some("inbound"));
    assert_eq!(c.from.as_deref(), Some("+15550001"), "earliest event wins");
    assert_eq!(c.to.as_deref(), Some("+15550002"));
    assert_eq!(c.campaign_id.as_deref(), Some("winter"));
    assert_eq!(c.recording_url.as_deref(), Some("https://rec/1"));
    assert_eq!(c.started_at, Timestamp(T0 + 100 * MS));
    assert_eq!(c.ended_at, Some(Timestamp(T0 + 5_000 * MS)));
    assert_eq!(
        (
            c.duration_ms,
            c.ringing_duration_ms,
            c.bot_duration_ms,
            c.billed_duration_ms
        ),
        (Some(4900), Some(100), Some(4800), Some(6000))
    );
    assert_eq!(c.hangup_reason.as_deref(), Some("no_answer"));
    assert_eq!(c.hangup_source.as_deref(), Some("caller"));
    assert_eq!(c.log_count, 7);
    assert_eq!(
        (
            c.level_counts.info,
            c.level_counts.error,
            c.level_counts.total()
        ),
        (6, 1, 7)
    );
    assert_eq!(
        c.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[tokio::test]
async fn call_summary_ignores_arrival_order_splits_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let records = lifecycle("acme", "c1");
    // In order, one batch.
    let store = open(&dir, "a.duckdb");
    store.append(records.clone()).await.unwrap();
    assert_lifecycle(&store.call("acme", "c1").await.unwrap().unwrap());
    store.shutdown().await.unwrap();

    // Reversed, one record per append, every record sent twice.
    let store = open(&dir, "b.duckdb");
    for r in records.iter().rev() {
        store.append(vec![r.clone()]).await.unwrap();
        store.append(vec![r.clone()]).await.unwrap();
    }
    store.append(records.clone()).await.unwrap();
    assert_lifecycle(&store.call("acme", "c1").await.unwrap().unwrap());

    // Terminal events first, then the rest, in two appends.
    let store2 = open(&dir, "c.duckdb");
    let (head, tail) = records.split_at(5);
    store2.append(tail.to_vec()).await.unwrap();
    let in_flight = store2.call("acme", "c1").await.unwrap().unwrap();
    assert_eq!(
        in_flight.status, "missed",
        "the terminal event alone sets the status"
    );
    assert_eq!(in_flight.from, None);
    store2.append(head.to_vec()).await.unwrap();
    assert_lifecycle(&store2.call("acme", "c1").await.unwrap().unwrap());

    // Another tenant can't see it.
    assert_eq!(store.call("globex", "c1").await.unwrap(), None);
}

/// The API reads the journal's unfolded deltas through the live views: a summary, the
/// calls list and search counts are the same before the writer folds the journal as
/// after.
#[tokio::test]
async fn reads_before_and_after_the_fold_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "live.duckdb");
    let records = lifecycle("acme", "c1");
    // One record per append, reversed: one journal row per record for the same call.
    for r in records.iter().rev() {
        store.append(vec![r.clone()]).await.unwrap();
    }
    store.append(lifecycle("acme", "c2")).await.unwrap();
    let folds = store.metrics().folds();
    let read = || async {
        let call = store.call("acme", "c1").await.unwrap().unwrap();
        let list = store
            .list_calls("acme", CallFilter::default(), 10, 0)
            .await
            .unwrap();
        let q = SearchQuery {
            filter: SearchFilter::default(),
            order: Order::Desc,
            page: 1,
            size: 5,
        };
        let found = store.search("acme", q).await.unwrap();
        (
            call,
            list.total_count,
            list.calls,
            found.total_count,
            found.event_counts,
            found.level_counts,
            found.records,
        )
    };
    let live = read().await;
    assert_lifecycle(&live.0);
    assert_eq!((live.1, live.3), (2, 14));
    let unfolded = store.metrics().folds() == folds;
    store.sync().await.unwrap();
    assert!(store.metrics().folds() > folds, "the journal was folded");
    let folded = read().await;
    assert_lifecycle(&folded.0);
    assert_eq!(live, folded, "read before the fold: {unfolded}");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_is_in_progress_until_a_terminal_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "s.duckdb");
    store
        .append(vec![
            rec("acme", "c", 0, "CALL_CREATED", json!({"campaign_id": "q4"})),
            rec("acme", "c", 10, "CALL_STARTED", json!({"to": "+1222"})),
        ])
        .await
        .unwrap();
    let c = store.call("acme", "c").await.unwrap().unwrap();
    assert_eq!(c.status, "in_progress");
    assert_eq!(
        c.direction.as_deref(),
        Some("outbound"),
        "CALL_CREATED implies outbound"
    );
    assert_eq!((c.ended_at, c.duration_ms), (None, None));
    for (event, status) in [
        ("CALL_FAILED", "failed"),
        ("CALL_DEADLINE_EXCEEDED", "failed"),
        ("CALL_REJECTED_BY_WEBHOOK", "failed"),
        ("CALL_CANCELED", "canceled"),
        ("CALL_COMPLETED", "completed"),
    ] {
        let call = format!("c-{event}");
        store
            .append(vec![
                rec("acme", &call, 0, "CALL_STARTED", json!({})),
                rec("acme", &call, 2_500, event, json!({})),
            ])
            .await
            .unwrap();
        let c = store.call("acme", &call).await.unwrap().unwrap();
        assert_eq!(c.status, status, "{event}");
        assert_eq!(
            c.duration_ms,
            Some(2_500),
            "{event}: derived from the timestamps"
        );
    }
}

/// Spec of one generated call for the list tests.
#[derive(Debug, Clone)]
struct Spec {
    id: String,
    start_ms: i64,
    direction: &'static str,
    from: String,
    agent: &'static str,
    campaign: Option<&'static str>,
    end: Option<(&'static str, i64, &'static str)>, // (event, duration, hangup_reason)
}

fn specs() -> Vec<Spec> {
    (0..40)
        .map(|i| Spec {
            id: format!("call-{i:02}"),
            start_ms: (i * 7919) % 40 * 1_000,
            direction: if i % 2 == 0 { "inbound" } else { "outbound" },
            // One number written three ways: filters must see through the formatting.
            from: match i % 3 {
                0 => format!("+1555{:04}", i % 6),
                1 => format!("+1 (555) {:04}", i % 6),
                _ => format!("1-555-{:02}.{:02}", (i % 6) / 100, i % 6),
            },
            agent: ["a", "b", "c"][i as usize % 3],
            campaign: (i % 4 == 1).then_some("spring"),
            end: match i % 5 {
                0 => None,
                1 => Some(("CALL_FAILED", 1_000 + i, "error")),
                2 => Some(("CALL_CANCELED", 500, "user")),
                _ => Some(("CALL_COMPLETED", 10_000 * i, "customer_hangup")),
            },
        })
        .collect()
}

fn spec_records(s: &Spec) -> Vec<TenantRecord> {
    let mut v = vec![rec(
        "acme",
        &s.id,
        s.start_ms,
        "CALL_STARTED",
        json!({"direction": s.direction, "from": s.from, "to": "+18000", "campaign_id": s.campaign}),
    )];
    if let Some((event, duration, reason)) = s.end {
        v.push(rec(
            "acme",
            &s.id,
            s.start_ms + 100,
            event,
            json!({"duration_ms": duration, "hangup_reason": reason, "hangup_source": "agent",
                   "ringing_duration_ms": spec_ringing(s), "bot_duration_ms": spec_bot(s),
                   "billed_duration_ms": spec_billed(s)}),
        ));
    }
    for r in &mut v {
        r.record.agent_id = Some(s.agent.into());
    }
    v
}

fn spec_status(s: &Spec) -> &'static str {
    match s.end.map(|e| e.0) {
        None => "in_progress",
        Some("CALL_FAILED") => "failed",
        Some("CALL_CANCELED") => "canceled",
        _ => "completed",
    }
}

fn spec_duration(s: &Spec) -> Option<i64> {
    s.end.map(|e| e.1)
}

fn spec_n(s: &Spec) -> i64 {
    s.id["call-".len()..].parse().unwrap()
}

fn spec_ringing(s: &Spec) -> Option<i64> {
    s.end.map(|_| spec_n(s) * 10)
}

fn spec_bot(s: &Spec) -> Option<i64> {
    s.end.map(|_| spec_n(s) * 100)
}

fn spec_billed(s: &Spec) -> Option<i64> {
    s.end.map(|_| spec_n(s) * 1_000)
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn in_range(v: Option<i64>, lo: i64, hi: i64) -> bool {
    v.is_some_and(|v| (lo..=hi).contains(&v))
}

/// Number filters match the digits inside a number however it is written: the filter's
/// digits come from `callscope_query::number_digits` (what the API and CLI use), the
/// stored number's from the store's SQL.
#[tokio::test]
async fn number_filters_match_digits_inside_formatted_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "digits.duckdb");
    store
        .append(vec![
            rec(
                "acme",
                "formatted",
                0,
                "CALL_STARTED",
                json!({"from": "+1 (415) 555-0100", "to": "020 7946.0958"}),
            ),
            rec(
                "acme",
                "plain",
                10,
                "CALL_STARTED",
                json!({"from": "+4930123", "to": "+4930999"}),
            ),
            rec(
                "globex",
                "formatted",
                0,
                "CALL_STARTED",
                json!({"from": "+1 (415) 555-0100"}),
            ),
        ])
        .await
        .unwrap();
    let find = |filter: CallFilter| {
        let store = store.clone();
        async move {
            let page = store.list_calls("acme", filter, 100, 0).await.unwrap();
            page.calls
                .into_iter()
                .map(|c| c.call_id)
                .collect::<Vec<_>>()
        }
    };
    let digits = |s: &str| callscope_query::number_digits(s).unwrap();
    for spelled in ["4155550100", "555-01", "0100", "+1 (415) 555-0100", "1.415"] {
        let from = CallFilter {
            from_number: Some(digits(spelled)),
            ..Default::default()
        };
        assert_eq!(find(from).await, ["formatted"], "from_number {spelled}");
    }
    let to = CallFilter {
        to_number: Some(digits("7946 0958")),
        ..Default::default()
    };
    assert_eq!(find(to).await, ["formatted"]);
    for miss in ["999", "5550100999", "4155550101"] {
        let from = CallFilter {
            from_number: Some(digits(miss)),
            ..Default::default()
        };
        assert!(find(from).await.is_empty(), "from_number {miss}");
    }
    // `q`: the digits in either number, or a call-id prefix.
    let q = |text: &str| CallFilter {
        search: Some(CallSearch {
            call_id_prefix: text.into(),
            number_digits: callscope_query::number_digits(text),
        }),
        ..Default::default()
    };
    assert_eq!(find(q("(415) 555")).await, ["formatted"]);
    assert_eq!(find(q("999")).await, ["plain"], "the called number counts");
    assert_eq!(find(q("4930")).await, ["plain"]);
    assert_eq!(find(q("pla")).await, ["plain"]);
    assert_eq!(find(q("form")).await, ["formatted"]);
    assert!(
        find(q("lain")).await.is_empty(),
        "a prefix, not a substring"
    );
    assert!(
        find(q("Plain")).await.is_empty(),
        "call ids are case-sensitive"
    );
}

#[tokio::test]
async fn calls_list_filters_match_a_computed_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "list.duckdb");
    let specs = specs();
    store
        .append(specs.iter().flat_map(spec_records).collect())
        .await
        .unwrap();
    store
        .append(vec![rec("globex", "call-00", 0, "CALL_STARTED", json!({}))])
        .await
        .unwrap();

    type Pred = Box<dyn Fn(&Spec) -> bool>;
    let cases: Vec<(CallFilter, Pred)> = vec![
        (CallFilter::default(), Box::new(|_| true)),
        (
            CallFilter {
                statuses: vec!["failed".into(), "in_progress".into()],
                ..Default::default()
            },
            Box::new(|s| matches!(spec_status(s), "failed" | "in_progress")),
        ),
        (
            CallFilter {
                directions: vec!["outbound".into()],
                ..Default::default()
            },
            Box::new(|s| s.direction == "outbound"),
        ),
        (
            CallFilter {
                from_number: Some("15550003".into()),
                ..Default::default()
            },
            Box::new(|s| digits(&s.from) == "15550003"),
        ),
        (
            CallFilter {
                from_number: Some("0003".into()),
                ..Default::default()
            },
            Box::new(|s| digits(&s.from).contains("0003")),
        ),
        (
            CallFilter {
                to_number: Some("18000".into()),
                agent_ids: vec!["b".into()],
                ..Default::default()
            },
            Box::new(|s| s.agent == "b"),
        ),
        (
            CallFilter {
                campaign_ids: vec!["spring".into()],
                ..Default::default()
            },
            Box::new(|s| s.campaign == Some("spring")),
        ),
        (
            CallFilter {
                hangup_reasons: vec!["user".into()],
                hangup_sources: vec!["agent".into()],
                ..Default::default()
            },
            Box::new(|s| s.end.is_some_and(|e| e.2 == "user")),
        ),
        (
            CallFilter {
                duration: DurationRange {
                    min_ms: Some(1_010),
                    max_ms: Some(100_000),
                },
                ..Default::default()
            },
            Box::new(|s| spec_duration(s).is_some_and(|d| (1_010..=100_000).contains(&d))),
        ),
        (
            CallFilter {
                ringing_duration: DurationRange {
                    min_ms: Some(100),
                    max_ms: Some(250),
                },
                ..Default::default()
            },
            Box::new(|s| in_range(spec_ringing(s), 100, 250)),
        ),
        (
            CallFilter {
                bot_duration: DurationRange {
                    min_ms: Some(1_500),
                    max_ms: None,
                },
                ..Default::default()
            },
            Box::new(|s| in_range(spec_bot(s), 1_500, i64::MAX)),
        ),
        (
            CallFilter {
                billed_duration: DurationRange {
                    min_ms: None,
                    max_ms: Some(12_000),
                },
                ..Default::default()
            },
            Box::new(|s| in_range(spec_billed(s), 0, 12_000)),
        ),
        (
            CallFilter {
                search: Some(CallSearch {
                    call_id_prefix: "call-1".into(),
                    number_digits: None,
                }),
                ..Default::default()
            },
            Box::new(|s| s.id.starts_with("call-1")),
        ),
        (
            CallFilter {
                search: Some(CallSearch {
                    call_id_prefix: "5550004".into(),
                    number_digits: Some("5550004".into()),
                }),
                ..Default::default()
            },
            Box::new(|s| digits(&s.from).contains("5550004")),
        ),
        (
            CallFilter {
                started_after: Some(Timestamp(T0 + 10_000 * MS)),
                started_before: Some(Timestamp(T0 + 20_000 * MS)),
                ..Default::default()
            },
            Box::new(|s| (10_000..20_000).contains(&s.start_ms)),
        ),
    ];
    for (filter, pred) in cases {
        let mut want: Vec<&Spec> = specs.iter().filter(|s| pred(s)).collect();
        want.sort_by(|a, b| (b.start_ms, &b.id).cmp(&(a.start_ms, &a.id)));
        let want: Vec<&str> = want.iter().map(|s| s.id.as_str()).collect();
        // Walk it in pages of 7.
        let mut got = Vec::new();
        let mut offset = 0;
        loop {
            let page = store
                .list_calls("acme", filter.clone(), 7, offset)
                .await
                .unwrap();
            assert_eq!(page.total_count as usize, want.len(), "{filter:?}");
            if page.calls.is_empty() {
                break;
            }
            got.extend(page.calls.iter().map(|c| c.call_id.clone()));
            offset += 7;
        }
        assert_eq!(got, want, "{filter:?}");
    }
    let page = store
        .list_calls("globex", CallFilter::default(), 100, 0)
        .await
        .unwrap();
    assert_eq!(page.total_count, 1, "tenants are separate");
    let all = store
        .list_calls("acme", CallFilter::default(), 100, 0)
        .await
        .unwrap();
    for c in &all.calls {
        let s = specs.iter().find(|s| s.id == c.call_id).unwrap();
        assert_eq!(c.status, spec_status(s));
        assert_eq!(c.duration_ms, spec_duration(s));
        assert_eq!(c.agent_id.as_deref(), Some(s.agent));
    }
}

fn search_corpus() -> Vec<TenantRecord> {
    let events = [
        "USER_MESSAGE_RECEIVED",
        "AGENT_MESSAGE_SENT",
        "INTEGRATION_TOOL_FAILED",
        "WEBHOOK_RESPONSE_FAILED",
        "TURN_LATENCY",
    ];
    let words = [
        "Refund please",
        "the ORDER is late",
        "Ünïcode café",
        "timeout after 10 s",
        "50% off",
    ];
    (0..300)
        .map(|i| {
            let mut r = rec(
                "acme",
                &format!("s-{}", i % 9),
                i * 10,
                events[i as usize % events.len()],
                json!({"message": words[i as usize % 5], "attempt": i % 4, "nested": {"k": format!("v{}", i % 11)}}),
            );
            r.record.agent_id = Some(format!("ag-{}", i % 2));
            r
        })
        .collect()
}

/// The expected page ids, total and event / level / category counts.
type Expected = (
    Vec<uuid::Uuid>,
    u64,
    BTreeMap<String, u64>,
    BTreeMap<String, u64>,
    BTreeMap<String, u64>,
);

fn expect(records: &[TenantRecord], q: &SearchQuery) -> Expected {
    let f = &q.filter;
    let text = f.text.as_ref().map(|t| t.to_lowercase());
    let mut m: Vec<&LogRecord> = records
        .iter()
        .map(|r| &r.record)
        .filter(|r| f.events.is_empty() || f.events.contains(&r.event))
        .filter(|r| f.categories.is_empty() || f.categories.contains(&r.category))
        .filter(|r| f.levels.is_empty() || f.levels.contains(&r.level))
        .filter(|r| f.min_level.is_none_or(|m| r.level >= m))
        .filter(|r| f.call_ids.is_empty() || f.call_ids.contains(&r.call_id))
        .filter(|r| {
            f.agent_ids.is_empty() || r.agent_id.as_ref().is_some_and(|a| f.agent_ids.contains(a))
        })
        .filter(|r| f.from.is_none_or(|t| r.timestamp >= t))
        .filter(|r| f.to.is_none_or(|t| r.timestamp <= t))
        .filter(|r| {
            text.as_ref().is_none_or(|t| {
                fn walk(v: &Value, t: &str) -> bool {
                    match v {
                        Value::String(s) => s.to_lowercase().contains(t),
                        Value::Number(n) => n.to_string().contains(t),
                        Value::Bool(b) => b.to_string().contains(t),
                        Value::Array(a) => a.iter().any(|x| walk(x, t)),
                        Value::Object(o) => o.values().any(|x| walk(x, t)),
                        Value::Null => false,
                    }
                }
                r.data
                    .as_ref()
                    .is_some_and(|d| d.values().any(|v| walk(v, t)))
            })
        })
        .collect();
    let (mut e, mut l, mut c) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for r in &m {
        *e.entry(r.event.clone()).or_default() += 1;
        *l.entry(r.level.as_str().to_owned()).or_default() += 1;
        *c.entry(r.category.as_str().to_owned()).or_default() += 1;
    }
    m.sort_by_key(|r| (r.timestamp, r.id));
    if q.order == Order::Desc {
        m.reverse();
    }
    let total = m.len() as u64;
    let page = m
        .iter()
        .skip((q.page * q.size) as usize)
        .take(q.size as usize)
        .map(|r| r.id)
        .collect();
    (page, total, e, l, c)
}

#[tokio::test]
async fn search_filters_and_aggregations_match_a_computed_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "search.duckdb");
    let corpus = search_corpus();
    store.append(corpus.clone()).await.unwrap();
    store
        .append(vec![rec(
            "globex",
            "s-1",
            5,
            "AGENT_MESSAGE_SENT",
            json!({"message": "refund please"}),
        )])
        .await
        .unwrap();

    let q = |filter: SearchFilter, page: u64, size: u64, order: Order| SearchQuery {
        filter,
        order,
        page,
        size,
    };
    let cases = vec![
        q(SearchFilter::default(), 0, 20, Order::Desc),
        q(SearchFilter::default(), 3, 100, Order::Asc),
        q(
            SearchFilter {
                text: Some("REFUND".into()),
                ..Default::default()
            },
            0,
            100,
            Order::Desc,
        ),
        q(
            SearchFilter {
                text: Some("CAFÉ".into()),
                ..Default::default()
            },
            0,
            7,
            Order::Asc,
        ),
        q(
            SearchFilter {
                text: Some("50%".into()),
                ..Default::default()
            },
            1,
            5,
            Order::Desc,
        ),
        q(
            SearchFilter {
                text: Some("v10".into()),
                ..Default::default()
            },
            0,
            100,
            Order::Desc,
        ),
        q(
            SearchFilter {
                text: Some("'; DROP TABLE logs; --".into()),
                ..Default::default()
            },
            0,
            10,
            Order::Desc,
        ),
        q(
            SearchFilter {
                events: vec!["INTEGRATION_TOOL_FAILED".into(), "TURN_LATENCY".into()],
                call_ids: vec!["s-1".into(), "s-2".into(), "s-3".into()],
                ..Default::default()
            },
            0,
            50,
            Order::Desc,
        ),
        q(
            SearchFilter {
                categories: vec![Category::Webhooks, Category::User],
                agent_ids: vec!["ag-1".into()],
                from: Some(Timestamp(T0 + 500 * MS)),
                to: Some(Timestamp(T0 + 2_000 * MS)),
                ..Default::default()
            },
            0,
            100,
            Order::Asc,
        ),
        q(
            SearchFilter {
                min_level: Some(Level::Warning),
                ..Default::default()
            },
            0,
            0,
            Order::Desc,
        ),
        q(
            SearchFilter {
                levels: vec![Level::Info],
                text: Some("late".into()),
                ..Default::default()
            },
            0,
            3,
            Order::Desc,
        ),
    ];
    for case in cases {
        let got = store.search("acme", case.clone()).await.unwrap();
        check(&got, &corpus, &case);
    }
    let other = store
        .search(
            "globex",
            q(
                SearchFilter {
                    text: Some("refund".into()),
                    ..Default::default()
                },
                0,
                100,
                Order::Desc,
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        other.total_count, 1,
        "a tenant searches its own records only"
    );
}

#[tokio::test]
async fn comments_belong_to_a_tenants_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "comments.duckdb");
    store.append(lifecycle("acme", "c1")).await.unwrap();
    assert!(
        store
            .add_comment("globex", "c1", "eve", "hi")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .add_comment("acme", "nope", "ann", "hi")
            .await
            .unwrap()
            .is_none()
    );
    let a = store
        .add_comment("acme", "c1", "ann", "Caller was upset; refund issued.")
        .await
        .unwrap()
        .unwrap();
    let b = store
        .add_comment("acme", "c1", "bob", "Followed up \"by\" email, 'ok'")
        .await
        .unwrap()
        .unwrap();
    let list = store.comments("acme", "c1").await.unwrap().unwrap();
    assert_eq!(list, vec![a, b]);
    assert!(store.comments("globex", "c1").await.unwrap().is_none());
    // Comments survive a restart.
    store.shutdown().await.unwrap();
    let store = open(&dir, "comments.duckdb");
    assert_eq!(
        store.comments("acme", "c1").await.unwrap().unwrap().len(),
        2
    );
}

/// A tenant's records spread over an hour, at times that fall anywhere in a minute.
fn spread_corpus(n: i64) -> Vec<TenantRecord> {
    let events = [
        "USER_MESSAGE_RECEIVED",
        "AGENT_MESSAGE_SENT",
        "INTEGRATION_TOOL_FAILED",
        "WEBHOOK_RESPONSE_FAILED",
        "TURN_LATENCY",
        "CALL_STARTED",
    ];
    (0..n)
        .map(|i| {
            // About 1.8 s apart with a jitter, so minute boundaries fall between records
            // and some records share a timestamp.
            let t_ms = i * 1_800 + (i * 7_919) % 1_300;
            let mut r = rec(
                "acme",
                &format!("w-{}", i % 13),
                t_ms,
                events[(i as usize * 7) % events.len()],
                json!({"message": format!("turn {i}"), "n": i % 5}),
            );
            r.record.agent_id = (i % 4 != 3).then(|| format!("ag-{}", i % 3));
            r
        })
        .collect()
}

/// A small deterministic generator for the random queries.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn check(got: &callscope_store::SearchResult, corpus: &[TenantRecord], q: &SearchQuery) {
    let (page, total, e, l, c) = expect(corpus, q);
    assert_eq!(got.total_count, total, "{q:?}");
    assert_eq!(
        got.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        page,
        "{q:?}"
    );
    assert_eq!(
        (&got.event_counts, &got.level_counts, &got.category_counts),
        (&e, &l, &c),
        "{q:?}"
    );
}

/// Searches without text take their counts from the per-minute counts kept at ingest and
/// bound their page by them: random filters, time ranges that cut minutes anywhere,
/// pages deep and shallow, in both orders, must give exactly what a scan would. Records
/// arrive out of order, in several requests, and some twice.
#[tokio::test]
async fn counted_searches_match_a_computed_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "counts.duckdb");
    let corpus = spread_corpus(2_000);
    let mut shuffled = corpus.clone();
    shuffled.reverse();
    for chunk in shuffled.chunks(170) {
        store.append(chunk.to_vec()).await.unwrap();
    }
    // Re-sent: stored once, counted once.
    store.append(corpus[300..700].to_vec()).await.unwrap();

    let span_ms = 2_000 * 1_800;
    let mut rng = Lcg(7);
    let events = ["AGENT_MESSAGE_SENT", "TURN_LATENCY", "CALL_STARTED"];
    for i in 0..300 {
        let mut f = SearchFilter::default();
        if rng.next(3) > 0 {
            f.from = Some(Timestamp(
                T0 + rng.next(span_ms) as i64 * MS + rng.next(1_000_000) as i64,
            ));
        }
        if rng.next(3) > 0 {
            f.to = Some(Timestamp(
                T0 + rng.next(span_ms) as i64 * MS + rng.next(1_000_000) as i64,
            ));
        }
        match rng.next(6) {
            0 => f.events = vec![events[rng.next(3) as usize].into()],
            1 => f.agent_ids = vec![format!("ag-{}", rng.next(3)), "ag-9".into()],
            2 => f.min_level = Some(Level::Warning),
            3 => f.categories = vec![Category::User, Category::Metrics],
            4 => f.levels = vec![Level::Info, Level::Error],
            _ => {}
        }
        let q = SearchQuery {
            filter: f,
            order: if i % 2 == 0 { Order::Desc } else { Order::Asc },
            page: [0, 0, 1, 3, 40][rng.next(5) as usize],
            size: [0, 1, 20, 100][rng.next(4) as usize],
        };
        let got = store.search("acme", q.clone()).await.unwrap();
        check(&got, &corpus, &q);
    }

    // Retention cuts through a minute: the counts still match what is stored.
    let cut = T0 + 1_000 * 1_800 * MS + 17 * MS;
    store.purge_before(Timestamp(cut)).await.unwrap();
    let kept: Vec<TenantRecord> = corpus
        .iter()
        .filter(|r| r.record.timestamp.as_nanos() >= cut)
        .cloned()
        .collect();
    assert!(kept.len() > 900 && kept.len() < corpus.len());
    for (order, to) in [
        (Order::Desc, None),
        (Order::Asc, Some(Timestamp(cut + 600_000 * MS))),
    ] {
        let q = SearchQuery {
            filter: SearchFilter {
                to,
                ..SearchFilter::default()
            },
            order,
            page: 2,
            size: 100,
        };
        let got = store.search("acme", q.clone()).await.unwrap();
        check(&got, &kept, &q);
    }
}

/// A file written before `log_counts` existed gets its counts from the stored records
/// when it is opened.
#[tokio::test]
async fn counts_are_backfilled_for_older_files() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = spread_corpus(500);
    {
        let store = open(&dir, "old.duckdb");
        store.append(corpus.clone()).await.unwrap();
        store
            .read(|c| {
                c.execute_batch(
                    "DROP TABLE log_counts; UPDATE meta SET value = '1' WHERE key = 'schema_version';",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        store.shutdown().await.unwrap();
    }
    let store = open(&dir, "old.duckdb");
    let q = SearchQuery {
        filter: SearchFilter::default(),
        order: Order::Desc,
        page: 1,
        size: 50,
    };
    let got = store.search("acme", q.clone()).await.unwrap();
    check(&got, &corpus, &q);
    let version: String = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(version, "8");
}

/// A call's turns: three `TURN_LATENCY`s (turn 2 reported twice, the earlier wins), one
/// without a turn number (ignored), transcript lines and an interruption, and two
/// usage reports.
fn turn_records(tenant: &str, call: &str) -> Vec<TenantRecord> {
    vec![
        rec(
            tenant,
            call,
            0,
            "CALL_STARTED",
            json!({"direction": "inbound"}),
        ),
        rec(
            tenant,
            call,
            10,
            "GREETING_SENT",
            json!({"text": "Hello!", "turn": 0}),
        ),
        rec(
            tenant,
            call,
            100,
            "USER_MESSAGE_RECEIVED",
            json!({"text": "Order status?", "turn": 1}),
        ),
        rec(
            tenant,
            call,
            150,
            "AGENT_MESSAGE_SENT",
            json!({"text": "Sure.", "turn": 1}),
        ),
        rec(
            tenant,
            call,
            160,
            "AGENT_MESSAGE_SENT",
            json!({"text": "One moment.", "turn": 1}),
        ),
        rec(
            tenant,
            call,
            170,
            "TURN_LATENCY",
            json!({"turn": 1, "stt_ms": 180, "llm_ttft_ms": 400, "tts_ttfb_ms": 90, "end_to_end_ms": 900}),
        ),
        rec(
            tenant,
            call,
            200,
            "USER_MESSAGE_RECEIVED",
            json!({"text": "Thanks", "turn": "2"}),
        ),
        rec(tenant, call, 220, "AGENT_INTERRUPTED", json!({"turn": 2})),
        rec(
            tenant,
            call,
            250,
            "TURN_LATENCY",
            json!({"turn": 2, "end_to_end_ms": 1500.4}),
        ),
        rec(
            tenant,
            call,
            260,
            "TURN_LATENCY",
            json!({"turn": 2, "end_to_end_ms": 99}),
        ),
        rec(
            tenant,
            call,
            300,
            "TURN_LATENCY",
            json!({"turn": 3, "end_to_end_ms": 700}),
        ),
        rec(
            tenant,
            call,
            310,
            "TURN_LATENCY",
            json!({"end_to_end_ms": 5}),
        ),
        rec(
            tenant,
            call,
            400,
            "USAGE_REPORTED",
            json!({"llm_input_tokens": 1000, "llm_output_tokens": 250, "stt_seconds": 12.5}),
        ),
        rec(
            tenant,
            call,
            500,
            "USAGE_REPORTED",
            json!({"llm_input_tokens": 24, "tts_characters": "300", "stt_seconds": 0.25}),
        ),
    ]
}

fn assert_turn_fields(c: &Call) {
    assert_eq!(
        c.turn_count,
        Some(3),
        "turns 1, 2, 3; one TURN_LATENCY per number"
    );
    // 700, 900, 1500: the later report of turn 2 (99) and the unnumbered one don't count.
    assert_eq!(
        (c.latency_p50_ms, c.latency_p95_ms, c.latency_max_ms),
        (Some(900), Some(1500), Some(1500))
    );
    assert_eq!(
        (c.llm_input_tokens, c.llm_output_tokens),
        (Some(1024), Some(250))
    );
    assert_eq!(c.tts_characters, Some(300));
    assert_eq!(c.stt_seconds, Some(12.75));
}

#[tokio::test]
async fn turn_aggregates_ignore_arrival_order_splits_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let records = turn_records("acme", "c1");
    let n = records.len();
    for (k, reversed) in [(0, false), (3, true), (7, false), (n - 1, true)] {
        let mut r = records.clone();
        r.rotate_left(k);
        if reversed {
            r.reverse();
        }
        let store = open(&dir, &format!("t{k}{reversed}.duckdb"));
        let (a, b) = r.split_at(k.max(1));
        store.append(b.to_vec()).await.unwrap();
        for one in a {
            store.append(vec![one.clone()]).await.unwrap();
        }
        // A retry of everything, in one batch and one by one.
        store.append(r.clone()).await.unwrap();
        store
            .append(vec![r[0].clone(), r[0].clone()])
            .await
            .unwrap();
        let call = store.call("acme", "c1").await.unwrap().unwrap();
        assert_turn_fields(&call);
        let list = store
            .list_calls("acme", CallFilter::default(), 10, 0)
            .await
            .unwrap();
        assert_eq!(
            list.calls,
            vec![call.clone()],
            "the list computes the same fields"
        );
        store.sync().await.unwrap();
        assert_eq!(
            store.call("acme", "c1").await.unwrap().unwrap(),
            call,
            "after the fold"
        );

        let turns = store.call_turns("acme", "c1").await.unwrap().unwrap();
        assert_eq!(turns.turn_count, 3);
        assert_eq!(
            (
                turns.end_to_end_ms.p50,
                turns.end_to_end_ms.p95,
                turns.end_to_end_ms.max
            ),
            (
                call.latency_p50_ms,
                call.latency_p95_ms,
                call.latency_max_ms
            ),
            "/turns agrees with the call"
        );
        let numbers: Vec<i64> = turns.turns.iter().map(|t| t.turn).collect();
        assert_eq!(numbers, [0, 1, 2, 3]);
        let t1 = &turns.turns[1];
        assert_eq!(t1.user_text.as_deref(), Some("Order status?"));
        assert_eq!(t1.agent_text.as_deref(), Some("Sure. One moment."));
        assert_eq!(
            (t1.stt_ms, t1.llm_ttft_ms, t1.tts_ttfb_ms, t1.end_to_end_ms),
            (Some(180), Some(400), Some(90), Some(900))
        );
        assert_eq!(t1.started_at, Timestamp(T0 + 100 * MS));
        assert!(!t1.interrupted);
        let t2 = &turns.turns[2];
        assert!(t2.interrupted);
        assert_eq!((t2.end_to_end_ms, t2.stt_ms), (Some(1500), None));
        assert_eq!(t2.agent_text, None);
        let t0 = &turns.turns[0];
        assert_eq!(
            (t0.agent_text.as_deref(), t0.end_to_end_ms),
            (Some("Hello!"), None)
        );
        store.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_call_without_turns_has_null_turn_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, "none.duckdb");
    store.append(lifecycle("acme", "c1")).await.unwrap();
    let c = store.call("acme", "c1").await.unwrap().unwrap();
    assert_eq!(
        (
            c.turn_count,
            c.latency_p50_ms,
            c.llm_input_tokens,
            c.stt_seconds
        ),
        (None, None, None, None)
    );
    let turns = store.call_turns("acme", "c1").await.unwrap().unwrap();
    assert_eq!((turns.turns.len(), turns.turn_count), (0, 0));
    assert_eq!(turns.end_to_end_ms.p50, None);
    assert_eq!(store.call_turns("globex", "c1").await.unwrap(), None);
    assert_eq!(store.call_turns("acme", "nope").await.unwrap(), None);
    store.shutdown().await.unwrap();
}
