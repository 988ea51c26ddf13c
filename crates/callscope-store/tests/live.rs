//! Commit sequence numbers and live subscriptions against a real DuckDB file.

use callscope_model::{Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp};
use callscope_store::{Lag, LogFilter, Store, StoreConfig, StreamFilter};

const T0: i64 = 1_790_000_000_000_000_000;

fn record(tenant: &str, call: &str, n: i64, level: Level) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).i64(n);
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            timestamp: Timestamp(T0 + n * 1_000),
            level,
            category: Category::Agent,
            event: "AGENT_MESSAGE_SENT".into(),
            call_id: call.into(),
            agent_id: Some("agent-7".into()),
            trace_id: None,
            span_id: None,
            data: Some(serde_json::from_value(serde_json::json!({"n": n})).unwrap()),
        },
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig {
        path: dir.path().join("calls.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap()
}

/// Every stored `(seq, n)`, by `seq`.
async fn numbered(store: &Store) -> Vec<(i64, i64)> {
    store
        .read(|c| {
            let mut stmt =
                c.prepare("SELECT seq, (data::JSON->>'n')::BIGINT FROM logs ORDER BY seq")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
}

/// The writer numbers records in commit order, never twice, continuing after a
/// restart; a retry is not numbered again.
#[tokio::test]
async fn records_are_numbered_in_commit_order_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    // Committed out of time order: the number follows the commit, not the time.
    store
        .append(
            (5..8)
                .map(|n| record("acme", "c1", n, Level::Info))
                .collect(),
        )
        .await
        .unwrap();
    store
        .append(
            (0..3)
                .map(|n| record("acme", "c1", n, Level::Info))
                .collect(),
        )
        .await
        .unwrap();
    let retry = store
        .append(
            (2..4)
                .map(|n| record("acme", "c1", n, Level::Info))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!((retry.inserted, retry.duplicates), (1, 1));
    assert_eq!(
        numbered(&store).await,
        [(1, 5), (2, 6), (3, 7), (4, 0), (5, 1), (6, 2), (7, 3)]
    );
    store.shutdown().await.unwrap();
    let store = open(&dir);
    store
        .append(vec![record("globex", "c1", 9, Level::Info)])
        .await
        .unwrap();
    assert_eq!(numbered(&store).await.last(), Some(&(8, 9)));
    store.shutdown().await.unwrap();
}

/// A file from before the column gets its records numbered in time order when opened.
#[tokio::test]
async fn older_files_are_numbered_by_time_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        for n in [3, 1, 2, 0] {
            store
                .append(vec![record("acme", "c1", n, Level::Info)])
                .await
                .unwrap();
        }
        store
            .read(|c| {
                c.execute_batch(
                    "ALTER TABLE logs DROP COLUMN seq; \
                     UPDATE meta SET value = '4' WHERE key = 'schema_version';",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        store.shutdown().await.unwrap();
    }
    let store = open(&dir);
    assert_eq!(numbered(&store).await, [(1, 0), (2, 1), (3, 2), (4, 3)]);
    store
        .append(vec![record("acme", "c1", 10, Level::Info)])
        .await
        .unwrap();
    assert_eq!(numbered(&store).await.last(), Some(&(5, 10)));
    store.shutdown().await.unwrap();
}

/// A subscription hears what commits after it, per tenant or per call, in order;
/// pages and positions read the same numbers from storage.
#[tokio::test]
async fn subscriptions_pages_and_positions_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append(
            (0..3)
                .map(|n| record("acme", "c1", n, Level::Info))
                .collect(),
        )
        .await
        .unwrap();
    let mut wide = store.subscribe("acme", None);
    let mut one = store.subscribe("acme", Some("c2"));
    let mut other = store.subscribe("globex", None);
    store
        .append(vec![
            record("acme", "c1", 3, Level::Info),
            record("acme", "c2", 4, Level::Error),
            record("globex", "c2", 5, Level::Info),
        ])
        .await
        .unwrap();
    let got = wide.recv().await.unwrap();
    assert_eq!(
        got.iter()
            .map(|r| (r.seq, r.call_id.as_str()))
            .collect::<Vec<_>>(),
        [(4, "c1"), (5, "c2")]
    );
    let got = one.recv().await.unwrap();
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    let json: serde_json::Value = serde_json::from_str(got[0].json().unwrap()).unwrap();
    let listed = store
        .call_logs(
            "acme",
            "c2",
            callscope_store::LogQuery {
                at: callscope_store::PageAt::Page(1),
                limit: 10,
                order: callscope_store::Order::Asc,
                filter: LogFilter::default(),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(json, serde_json::to_value(&listed.records[0]).unwrap());
    let got = other.recv().await.unwrap();
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), [6]);

    let errors = StreamFilter {
        log: LogFilter {
            min_level: Some(Level::Error),
            ..LogFilter::default()
        },
        ..StreamFilter::default()
    };
    let page = store
        .stream_page("acme", None, errors, 0, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [5]);
    let page = store
        .stream_page("acme", Some("c1"), StreamFilter::default(), 2, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(
        store
            .stream_page("acme", Some("nope"), StreamFilter::default(), 0, 10)
            .await
            .unwrap()
            .is_none()
    );
    let id = page[0].id;
    assert_eq!(
        store.stream_position("acme", Some("c1"), id).await.unwrap(),
        Some(3)
    );
    assert_eq!(
        store.stream_position("acme", None, id).await.unwrap(),
        Some(3)
    );
    assert_eq!(
        store.stream_position("acme", Some("c2"), id).await.unwrap(),
        None
    );
    assert_eq!(
        store.stream_position("globex", None, id).await.unwrap(),
        None
    );

    store.shutdown().await.unwrap();
    assert_eq!(wide.recv().await.err(), Some(Lag::Closed));
}
