//! Stored spans: committed with the writer's group commit, stored once however often they
//! are sent, read back per call by start time, scoped to their tenant, purged by
//! retention; a call known only from its spans exists.

use callscope_model::{
    Category, Level, LogRecord, RecordIdHasher, SpanKind, SpanRecord, SpanStatus, TenantRecord,
    TenantSpan, Timestamp,
};
use callscope_store::{Store, StoreConfig};
use serde_json::json;

const T0: i64 = 1_790_000_000_000_000_000;
const MS: i64 = 1_000_000;

fn span(tenant: &str, call: &str, n: u8, start_ms: i64, len_ms: i64) -> TenantSpan {
    let mut h = RecordIdHasher::new();
    h.str(tenant).bytes(&[n]);
    TenantSpan {
        tenant: tenant.into(),
        span: SpanRecord {
            id: h.finish(),
            call_id: call.into(),
            agent_id: Some("bot".into()),
            trace_id: "ab".repeat(16),
            span_id: format!("{n:016x}"),
            parent_span_id: (n > 1).then(|| format!("{:016x}", 1)),
            name: ["turn", "stt", "llm", "tts"][usize::from(n) % 4].into(),
            kind: SpanKind::Internal,
            start_time: Timestamp(T0 + start_ms * MS),
            end_time: Timestamp(T0 + (start_ms + len_ms) * MS),
            status: if n == 3 {
                SpanStatus::Error
            } else {
                SpanStatus::Unset
            },
            status_message: (n == 3).then(|| "timeout".into()),
            attributes: json!({"model": "small", "n": n})
                .as_object()
                .unwrap()
                .clone(),
        },
    }
}

fn record(tenant: &str, call: &str, t_ms: i64) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).i64(t_ms);
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(T0 + t_ms * MS),
            level: Level::Info,
            category: Category::Agent,
            event: "AGENT_MESSAGE_SENT".into(),
            call_id: call.into(),
            agent_id: None,
            trace_id: None,
            span_id: None,
            data: None,
        },
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig {
        path: dir.path().join("spans.duckdb"),
        retention_days: 0,
        ..StoreConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn spans_are_stored_once_and_read_back_by_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(vec![record("acme", "c1", 0)]).await.unwrap();
    let spans = vec![
        span("acme", "c1", 4, 300, 50),
        span("acme", "c1", 2, 100, 20),
        span("acme", "c1", 1, 90, 500),
        span("acme", "c1", 3, 130, 100),
    ];
    let receipt = store.append_spans(spans.clone()).await.unwrap();
    assert_eq!((receipt.inserted, receipt.duplicates), (4, 0));
    // A retry, and a batch repeating one span twice.
    let again = store.append_spans(spans.clone()).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 4));
    let twice = store
        .append_spans(vec![spans[0].clone(), spans[0].clone()])
        .await
        .unwrap();
    assert_eq!((twice.inserted, twice.duplicates), (0, 2));

    let got = store.call_spans("acme", "c1").await.unwrap().unwrap();
    let mut want: Vec<SpanRecord> = spans.into_iter().map(|s| s.span).collect();
    want.sort_by_key(|s| s.start_time);
    assert_eq!(got, want);
    assert_eq!(got[2].status_message.as_deref(), Some("timeout"));
    assert!((got[0].duration_ms() - 500.0).abs() < 1e-9);

    assert_eq!(store.call_spans("globex", "c1").await.unwrap(), None);
    assert_eq!(store.call_spans("acme", "c2").await.unwrap(), None);
    store.shutdown().await.unwrap();

    // Committed means durable: all there after a restart.
    let store = open(&dir);
    assert_eq!(
        store.call_spans("acme", "c1").await.unwrap().unwrap().len(),
        4
    );
    let again = store
        .append_spans(vec![span("acme", "c1", 1, 90, 500)])
        .await
        .unwrap();
    assert_eq!(again.duplicates, 1, "still a duplicate after a restart");
    // The newest span stored: the writer's remembered ids start empty after a restart,
    // so this one is looked up in the table too.
    let newest = store
        .append_spans(vec![span("acme", "c1", 4, 300, 50)])
        .await
        .unwrap();
    assert_eq!((newest.inserted, newest.duplicates), (0, 1));
    // Live traffic newer than everything stored skips the look-up and is still stored
    // once, its retry refused from the remembered ids.
    let fresh = vec![span("acme", "c1", 9, 900, 10)];
    let first = store.append_spans(fresh.clone()).await.unwrap();
    let retry = store.append_spans(fresh).await.unwrap();
    assert_eq!((first.inserted, retry.duplicates), (1, 1));
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_call_known_only_from_its_spans_exists() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append_spans(vec![
            span("acme", "conv-9", 1, 0, 2_000),
            span("acme", "conv-9", 2, 10, 5),
        ])
        .await
        .unwrap();
    let call = store.call("acme", "conv-9").await.unwrap().unwrap();
    assert_eq!(call.log_count, 0);
    assert_eq!(call.started_at, Timestamp(T0));
    assert_eq!(call.trace_id.as_deref(), Some("ab".repeat(16).as_str()));
    assert_eq!(
        store
            .call_spans("acme", "conv-9")
            .await
            .unwrap()
            .unwrap()
            .len(),
        2
    );
    let turns = store.call_turns("acme", "conv-9").await.unwrap().unwrap();
    assert!(turns.turns.is_empty());
    assert_eq!(store.call("globex", "conv-9").await.unwrap(), None);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn retention_purges_spans_with_their_calls() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append_spans(vec![
            span("acme", "old", 1, 0, 10),
            span("acme", "new", 2, 60_000, 10),
        ])
        .await
        .unwrap();
    store
        .purge_before(Timestamp(T0 + 30_000 * MS))
        .await
        .unwrap();
    assert_eq!(store.call_spans("acme", "old").await.unwrap(), None);
    assert_eq!(
        store
            .call_spans("acme", "new")
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    store.shutdown().await.unwrap();
}
