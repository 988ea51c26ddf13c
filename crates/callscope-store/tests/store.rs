//! The store against a real DuckDB file: commit-before-ack, dedupe, paging, restart.

use callscope_model::{Category, Level, LogRecord, RecordIdHasher, TenantRecord, Timestamp};
use callscope_store::{AckAfter, Error, LogFilter, LogQuery, Order, PageAt, Store, StoreConfig};

const T0: i64 = 1_790_000_000_000_000_000;

fn record(tenant: &str, call: &str, n: i64, level: Level, event: &str) -> TenantRecord {
    let mut h = RecordIdHasher::new();
    h.str(tenant).str(call).i64(n).str(event);
    TenantRecord {
        tenant: tenant.into(),
        record: LogRecord {
            id: h.finish(),
            // Every third record shares its timestamp with the one before: ties order by id.
            timestamp: Timestamp(T0 + (n - n % 3 / 2) * 1_000),
            level,
            category: if event.starts_with("CALL_") {
                Category::CallLifecycle
            } else {
                Category::Agent
            },
            event: event.into(),
            call_id: call.into(),
            agent_id: Some("agent-7".into()),
            trace_id: Some(format!("{n:032x}")),
            span_id: Some(format!("{n:016x}")),
            data: Some(
                serde_json::from_value(serde_json::json!({"text": format!("turn {n}"), "n": n}))
                    .unwrap(),
            ),
        },
    }
}

fn call(tenant: &str, call: &str, n: i64) -> Vec<TenantRecord> {
    (0..n)
        .map(|i| {
            let (level, event) = match i % 5 {
                0 => (Level::Info, "CALL_STARTED"),
                1 => (Level::Debug, "AGENT_STARTED_SPEAKING"),
                2 => (Level::Info, "AGENT_MESSAGE_SENT"),
                3 => (Level::Warning, "AGENT_INTERRUPTED"),
                _ => (Level::Error, "CALL_FAILED"),
            };
            record(tenant, call, i, level, event)
        })
        .collect()
}

/// [`call`] for `acme`, moved to begin at `start` instead of `T0`.
fn call_at(call_id: &str, n: i64, start: i64) -> Vec<TenantRecord> {
    call("acme", call_id, n)
        .into_iter()
        .map(|mut r| {
            r.record.timestamp.0 += start - T0;
            r
        })
        .collect()
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig {
        path: dir.path().join("calls.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap()
}

/// [`open`] with acknowledgements after the ack log (`ack_after = "log"`).
fn open_logged(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig {
        path: dir.path().join("calls.duckdb"),
        ack_after: AckAfter::Log,
        ..StoreConfig::default()
    })
    .unwrap()
}

fn query(at: PageAt, limit: u32, order: Order) -> LogQuery {
    LogQuery {
        at,
        limit,
        order,
        filter: LogFilter::default(),
    }
}

fn sorted(mut v: Vec<LogRecord>, order: Order) -> Vec<LogRecord> {
    v.sort_by_key(|a| (a.timestamp, a.id));
    if order == Order::Desc {
        v.reverse();
    }
    v
}

#[tokio::test]
async fn append_then_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let recs = call("acme", "c1", 25);
    let receipt = store.append(recs.clone()).await.unwrap();
    assert_eq!((receipt.inserted, receipt.duplicates), (25, 0));

    let page = store
        .call_logs("acme", "c1", query(PageAt::Page(1), 100, Order::Asc))
        .await
        .unwrap()
        .unwrap();
    let expected = sorted(recs.into_iter().map(|r| r.record).collect(), Order::Asc);
    assert_eq!(page.records, expected);
    assert_eq!(
        (
            page.total_count,
            page.current_page,
            page.total_pages,
            page.has_more
        ),
        (25, Some(1), Some(1), false)
    );
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn retries_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let recs = call("acme", "c1", 10);
    store.append(recs.clone()).await.unwrap();
    // The same request again, and a request that repeats a record inside itself.
    let again = store.append(recs.clone()).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 10));
    let mut doubled = call("acme", "c2", 3);
    doubled.push(doubled[0].clone());
    let r = store.append(doubled).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (3, 1));
    // Concurrent duplicates land in one commit group: still stored once.
    let (a, b) = tokio::join!(
        store.append(call("acme", "c3", 7)),
        store.append(call("acme", "c3", 7))
    );
    assert_eq!(a.unwrap().inserted + b.unwrap().inserted, 7);

    for (c, n) in [("c1", 10), ("c2", 3), ("c3", 7)] {
        let page = store
            .call_logs("acme", c, query(PageAt::Page(1), 1000, Order::Asc))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.total_count, n, "{c}");
        assert_eq!(page.records.len() as u64, n, "{c}");
    }
    assert_eq!(store.metrics().duplicates(), 10 + 1 + 7);
    store.shutdown().await.unwrap();
}

/// The writer remembers the ids it committed since the file was opened and looks up
/// in `logs` only what it can't rule out: a retry after a restart, and a late batch
/// reaching below what it remembers, must still be found there.
#[tokio::test]
async fn retries_after_a_restart_and_late_batches_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let early = call("acme", "c1", 10);
    store.append(early.clone()).await.unwrap();
    store.shutdown().await.unwrap();

    let store = open(&dir);
    // Remembered nothing yet: the retry is found in the table.
    let again = store.append(early.clone()).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 10));
    // A newer call, then a batch that mixes its retry with records older than it.
    let late = call_at("c2", 6, T0 + 3_600_000_000_000);
    assert_eq!(store.append(late.clone()).await.unwrap().inserted, 6);
    let mut mixed = late.clone();
    mixed.extend(early.iter().take(4).cloned());
    mixed.extend(call("acme", "c3", 2));
    let r = store.append(mixed).await.unwrap();
    assert_eq!((r.inserted, r.duplicates), (2, 10));
    for (c, n) in [("c1", 10), ("c2", 6), ("c3", 2)] {
        let page = store
            .call_logs("acme", c, query(PageAt::Page(1), 1000, Order::Asc))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.records.len() as u64, n, "{c}");
    }
    store.shutdown().await.unwrap();
}

/// Ids newer than what the writer remembers skip the look-up in storage; a record
/// stamped a year ahead (a sender's clock gone wrong) must not switch that off, before
/// or after a restart, and its own retry must still be found.
#[tokio::test]
async fn a_record_stamped_far_ahead_leaves_the_look_up_shortcut_alone() {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ahead = call_at("from-the-future", 1, now + 365 * 86_400_000_000_000);
    store
        .append(call_at("c1", 5, now - 3_600_000_000_000))
        .await
        .unwrap();
    store.append(ahead.clone()).await.unwrap();
    let before = store.metrics().dedupe_lookups();
    store
        .append(call_at("c2", 5, now - 1_800_000_000_000))
        .await
        .unwrap();
    assert_eq!(
        store.metrics().dedupe_lookups(),
        before,
        "a live group skips the look-up"
    );
    store.shutdown().await.unwrap();

    let store = open(&dir);
    // Older than what was stored before the restart: looked up.
    store
        .append(call_at("c0", 4, now - 7_200_000_000_000))
        .await
        .unwrap();
    assert_eq!(store.metrics().dedupe_lookups(), 4);
    // Newer than everything stored but the record from the future: not looked up.
    store.append(call_at("c3", 5, now)).await.unwrap();
    assert_eq!(
        store.metrics().dedupe_lookups(),
        4,
        "the far-ahead record lifted the floor"
    );
    let again = store.append(ahead).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 1));
    store.shutdown().await.unwrap();
}

/// A size DuckDB refuses stops the open with a message naming its key.
#[test]
fn a_bad_size_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.duckdb");
    for (config, key) in [
        (
            StoreConfig {
                memory_limit: "lots".into(),
                ..StoreConfig::default()
            },
            "storage.memory_limit = \"lots\"",
        ),
        (
            StoreConfig {
                checkpoint_threshold: "64 parsecs".into(),
                ..StoreConfig::default()
            },
            "storage.checkpoint_threshold = \"64 parsecs\"",
        ),
    ] {
        let Err(err) = Store::open(&StoreConfig {
            path: path.clone(),
            ..config
        }) else {
            panic!("{key} must be refused");
        };
        assert!(err.to_string().contains(key), "{err}");
    }
}

/// `[storage]`'s DuckDB settings reach DuckDB.
#[tokio::test]
async fn storage_settings_reach_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("calls.duckdb"),
        threads: 1,
        checkpoint_threshold: "48MiB".into(),
        ..StoreConfig::default()
    })
    .unwrap();
    let (threads, threshold): (i64, String) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT current_setting('threads'), current_setting('checkpoint_threshold')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(threads, 1);
    assert!(threshold.starts_with("48"), "{threshold}");
    store.shutdown().await.unwrap();
}

/// A file from a newer callscope, or with a version that isn't a number, is refused,
/// and refused before anything in it changes.
#[tokio::test]
async fn a_newer_file_is_refused_untouched() {
    for (version, why) in [("99", "schema version 99"), ("x", "is not a number")] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.append(call("acme", "c1", 3)).await.unwrap();
        store
            .read(move |c| {
                c.execute_batch("DROP TABLE comments;")?;
                c.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'",
                    [version],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        store.shutdown().await.unwrap();

        let path = dir.path().join("calls.duckdb");
        let Err(err) = Store::open(&StoreConfig {
            path: path.clone(),
            ..StoreConfig::default()
        }) else {
            panic!("a file with schema version {version:?} must be refused");
        };
        assert!(err.to_string().contains(why), "{err}");
        let conn = callscope_store::duckdb::Connection::open(&path).unwrap();
        let comments: i64 = conn
            .query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'comments'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(comments, 0, "the refused file was migrated anyway");
    }
}

#[tokio::test]
async fn tenants_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(call("acme", "shared-id", 4)).await.unwrap();
    store.append(call("globex", "shared-id", 6)).await.unwrap();
    let q = || query(PageAt::Page(1), 100, Order::Desc);
    assert_eq!(
        store
            .call_logs("acme", "shared-id", q())
            .await
            .unwrap()
            .unwrap()
            .total_count,
        4
    );
    assert_eq!(
        store
            .call_logs("globex", "shared-id", q())
            .await
            .unwrap()
            .unwrap()
            .total_count,
        6
    );
    assert!(
        store
            .call_logs("initech", "shared-id", q())
            .await
            .unwrap()
            .is_none()
    );
    store.shutdown().await.unwrap();
}

/// Tenant and call id whose concatenations collide ("ab" + "c" and "a" + "bc") are two
/// calls: the one-column call key keeps them apart.
#[tokio::test]
async fn calls_whose_tenant_and_id_concatenate_alike_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(call("ab", "c", 3)).await.unwrap();
    store.append(call("a", "bc", 5)).await.unwrap();
    let q = || query(PageAt::Page(1), 100, Order::Asc);
    for (tenant, id, n) in [("ab", "c", 3), ("a", "bc", 5)] {
        let page = store.call_logs(tenant, id, q()).await.unwrap().unwrap();
        let n = u64::try_from(n).unwrap();
        assert_eq!(page.total_count, n, "{tenant}/{id}");
        let summary = store.call(tenant, id).await.unwrap().unwrap();
        assert_eq!(summary.log_count, n, "{tenant}/{id}");
    }
    assert!(store.call_logs("a", "bcx", q()).await.unwrap().is_none());
    store.shutdown().await.unwrap();
}

/// Files from before the `call_key` column get it filled in and indexed when opened,
/// and their calls are found by it (that the look-up uses the index is checked on the
/// page's own statements in `query.rs`).
#[tokio::test]
async fn one_call_is_read_through_the_call_key_index_also_in_older_files() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        for i in 0..20 {
            store
                .append(call("acme", &format!("call-{i}"), 3))
                .await
                .unwrap();
        }
        // Back to a version 2 file: no index, no key.
        store
            .read(|c| {
                c.execute_batch(
                    "DROP INDEX calls_call_key; UPDATE calls SET call_key = NULL; \
                     UPDATE meta SET value = '2' WHERE key = 'schema_version';",
                )?;
                Ok(())
            })
            .await
            .unwrap();
        store.shutdown().await.unwrap();
    }
    let store = open(&dir);
    let page = store
        .call_logs("acme", "call-7", query(PageAt::Page(1), 100, Order::Asc))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.total_count, 3);
    store.append(call("acme", "call-7", 4)).await.unwrap();
    let summary = store.call("acme", "call-7").await.unwrap().unwrap();
    assert_eq!(
        summary.log_count, 4,
        "the fourth record is new, the first three are retries"
    );
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn cursors_walk_every_record_once_in_both_orders() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let recs = call("acme", "c1", 47);
    store.append(recs.clone()).await.unwrap();
    for order in [Order::Asc, Order::Desc] {
        let all = sorted(recs.iter().map(|r| r.record.clone()).collect(), order);
        for limit in [1u32, 5, 10, 46, 47, 100] {
            // Forwards with `after` from the first page.
            let mut seen = Vec::new();
            let mut page = store
                .call_logs("acme", "c1", query(PageAt::Page(1), limit, order))
                .await
                .unwrap()
                .unwrap();
            loop {
                seen.extend(page.records.iter().cloned());
                if !page.has_more {
                    break;
                }
                let last = page.records.last().unwrap().id;
                page = store
                    .call_logs("acme", "c1", query(PageAt::After(last), limit, order))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(page.current_page, None);
            }
            assert_eq!(seen, all, "after-walk, limit {limit}, {order:?}");

            // Backwards with `before` from the last record.
            let last = all.last().unwrap();
            let mut back = vec![last.clone()];
            let mut cursor = last.id;
            loop {
                let p = store
                    .call_logs("acme", "c1", query(PageAt::Before(cursor), limit, order))
                    .await
                    .unwrap()
                    .unwrap();
                let mut chunk = p.records.clone();
                if chunk.is_empty() {
                    assert!(!p.has_more);
                    break;
                }
                cursor = chunk[0].id;
                chunk.extend(back);
                back = chunk;
                if !p.has_more {
                    break;
                }
            }
            assert_eq!(back, all, "before-walk, limit {limit}, {order:?}");
        }
    }
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn page_numbers_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let recs = call("acme", "c1", 50);
    store.append(recs.clone()).await.unwrap();
    let page3 = store
        .call_logs("acme", "c1", query(PageAt::Page(3), 20, Order::Desc))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (page3.records.len(), page3.has_more, page3.total_pages),
        (10, false, Some(3))
    );
    let page9 = store
        .call_logs("acme", "c1", query(PageAt::Page(9), 20, Order::Desc))
        .await
        .unwrap()
        .unwrap();
    assert!(page9.records.is_empty());

    let filtered = |filter: LogFilter| {
        let store = store.clone();
        async move {
            store
                .call_logs(
                    "acme",
                    "c1",
                    LogQuery {
                        at: PageAt::Page(1),
                        limit: 1000,
                        order: Order::Asc,
                        filter,
                    },
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    let count =
        |f: &dyn Fn(&LogRecord) -> bool| recs.iter().filter(|r| f(&r.record)).count() as u64;

    let p = filtered(LogFilter {
        min_level: Some(Level::Warning),
        ..LogFilter::default()
    })
    .await;
    assert_eq!(p.total_count, count(&|r| r.level >= Level::Warning));
    assert!(p.records.iter().all(|r| r.level >= Level::Warning));

    let p = filtered(LogFilter {
        levels: vec![Level::Debug, Level::Error],
        ..LogFilter::default()
    })
    .await;
    assert_eq!(
        p.total_count,
        count(&|r| matches!(r.level, Level::Debug | Level::Error))
    );

    let p = filtered(LogFilter {
        categories: vec![Category::CallLifecycle],
        ..LogFilter::default()
    })
    .await;
    assert_eq!(
        p.total_count,
        count(&|r| r.category == Category::CallLifecycle)
    );

    let p = filtered(LogFilter {
        events: vec!["AGENT_MESSAGE_SENT".into()],
        min_level: Some(Level::Info),
        ..LogFilter::default()
    })
    .await;
    assert_eq!(p.total_count, count(&|r| r.event == "AGENT_MESSAGE_SENT"));

    // A cursor outside the filtered set is refused.
    let debug_id = recs
        .iter()
        .find(|r| r.record.level == Level::Debug)
        .unwrap()
        .record
        .id;
    let err = store
        .call_logs(
            "acme",
            "c1",
            LogQuery {
                at: PageAt::After(debug_id),
                limit: 10,
                order: Order::Asc,
                filter: LogFilter {
                    min_level: Some(Level::Info),
                    ..LogFilter::default()
                },
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CursorNotFound), "{err}");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn survives_restart_and_purges_by_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(call("acme", "c1", 12)).await.unwrap();
    store.shutdown().await.unwrap();
    assert!(matches!(
        store.append(call("acme", "c9", 1)).await,
        Err(Error::Closed)
    ));
    drop(store);

    let store = open(&dir);
    let q = || query(PageAt::Page(1), 100, Order::Asc);
    assert_eq!(
        store
            .call_logs("acme", "c1", q())
            .await
            .unwrap()
            .unwrap()
            .total_count,
        12
    );
    // Re-sending after the restart stores nothing new.
    assert_eq!(
        store.append(call("acme", "c1", 12)).await.unwrap().inserted,
        0
    );

    let deleted = store.purge_before(Timestamp(T0 + 6_000)).await.unwrap();
    assert_eq!(deleted, 6);
    let page = store.call_logs("acme", "c1", q()).await.unwrap().unwrap();
    assert_eq!(page.total_count, 6);
    // The call the cut-off went through counts only what is left of it.
    let summary = store.call("acme", "c1").await.unwrap().unwrap();
    assert_eq!(summary.log_count, 6);
    for level in [
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ] {
        let left = page.records.iter().filter(|r| r.level == level).count() as u64;
        assert_eq!(summary.level_counts.get(level), left, "{level:?}");
    }
    store.shutdown().await.unwrap();
}

/// Group commits journal their call summaries and counts; the writer folds the journal
/// into `calls` and `log_counts` later. A crash in between leaves the journal committed
/// beside the records, and opening the file folds it before anything is served.
#[tokio::test]
async fn a_journal_left_by_a_crash_is_folded_when_the_file_is_opened() {
    // The writer folds a second after its last fold (or its start): a copy taken
    // within that second is what a crash then leaves. A machine slow enough to miss the
    // second gets three tries.
    let mut crashed = None;
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.append(call("acme", "c1", 7)).await.unwrap();
        store.append(call("acme", "c1", 9)).await.unwrap(); // two new records
        store.append(call("globex", "c2", 3)).await.unwrap();
        // The page sees acknowledged records before any fold: it reads the journal.
        let q = || query(PageAt::Page(1), 100, Order::Asc);
        let page = store.call_logs("acme", "c1", q()).await.unwrap().unwrap();
        assert_eq!(page.total_count, 9);

        // The files as a crash now leaves them: everything committed, nothing folded.
        let copy = tempfile::tempdir().unwrap();
        for name in ["calls.duckdb", "calls.duckdb.wal"] {
            let from = dir.path().join(name);
            if from.exists() {
                std::fs::copy(&from, copy.path().join(name)).unwrap();
            }
        }
        store.shutdown().await.unwrap();
        let c =
            callscope_store::duckdb::Connection::open(copy.path().join("calls.duckdb")).unwrap();
        let (journal, calls): (i64, i64) = c
            .query_row(
                "SELECT (SELECT count(*) FROM call_journal), (SELECT count(*) FROM calls)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        drop(c);
        if calls == 0 {
            assert!(
                journal >= 3,
                "the copy holds the unfolded journal ({journal} rows)"
            );
            crashed = Some(copy);
            break;
        }
    }
    let crashed = crashed.expect("a copy taken before the first fold");
    let path = crashed.path().join("calls.duckdb");

    let store = Store::open(&StoreConfig {
        path,
        ..StoreConfig::default()
    })
    .unwrap();
    let (c1, c2) = (
        store.call("acme", "c1").await.unwrap().unwrap(),
        store.call("globex", "c2").await.unwrap().unwrap(),
    );
    assert_eq!((c1.log_count, c2.log_count), (9, 3));
    assert_eq!(
        c1.level_counts.get(Level::Error),
        1,
        "record 4 is CALL_FAILED"
    );
    assert_eq!(c1.status, "failed");
    let (journal, counted): (i64, i64) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM call_journal) + (SELECT count(*) FROM count_journal), \
                        (SELECT sum(n)::BIGINT FROM log_counts)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!((journal, counted), (0, 12));
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_refuses_fast() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("q.duckdb"),
        queue_records: 10,
        ..StoreConfig::default()
    })
    .unwrap();
    // Polled once, the first append takes all ten queue places and hands its records to
    // the writer; they stay taken until its commit is done (milliseconds, with the WAL's
    // fsync). The next append asks at once, so it finds the queue full.
    let mut first = std::pin::pin!(store.append(call("acme", "c0", 10)));
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(first.as_mut().poll(cx))).await;
    assert!(polled.is_pending(), "the first append waits for its commit");
    let asked = std::time::Instant::now();
    let refused = store.append(call("acme", "c1", 1)).await;
    assert!(matches!(refused, Err(Error::Overloaded)), "{refused:?}");
    assert!(
        asked.elapsed() < std::time::Duration::from_millis(100),
        "refused without waiting: {:?}",
        asked.elapsed()
    );
    assert_eq!(first.await.unwrap().inserted, 10);
    // Once the commit is done the places are free again (the writer lets them go just
    // after it answers).
    let mut again = store.append(call("acme", "c1", 1)).await;
    for _ in 0..100 {
        if !matches!(again, Err(Error::Overloaded)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        again = store.append(call("acme", "c1", 1)).await;
    }
    assert_eq!(again.unwrap().inserted, 1);
    for (c, n) in [("c0", 10), ("c1", 1)] {
        let p = store
            .call_logs("acme", c, query(PageAt::Page(1), 100, Order::Asc))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.total_count, n);
    }
    store.shutdown().await.unwrap();
}

/// Copies `from`'s files named in `names` (a folder's files too) into `to`.
fn copy_files(from: &std::path::Path, to: &std::path::Path, names: &[&str]) {
    for name in names {
        let src = from.join(name);
        if src.is_dir() {
            std::fs::create_dir_all(to.join(name)).unwrap();
            for entry in std::fs::read_dir(&src).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), to.join(name).join(entry.file_name())).unwrap();
            }
        } else if src.exists() {
            std::fs::copy(&src, to.join(name)).unwrap();
        }
    }
}

/// What a crash leaves between an acknowledgement (the ack log's fsync) and the
/// writer's DuckDB commit: the log holds units the file lacks. Opening the file applies
/// them before serving, once, however often the same log is found again.
#[tokio::test]
async fn acknowledged_units_the_database_lacks_are_applied_when_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_logged(&dir);
    store.append(call("acme", "c0", 2)).await.unwrap();
    store.call("acme", "c0").await.unwrap().unwrap(); // applied
    // The database as the writer left it after applying unit 1.
    let crashed = tempfile::tempdir().unwrap();
    copy_files(
        dir.path(),
        crashed.path(),
        &["calls.duckdb", "calls.duckdb.wal"],
    );
    store.append(call("acme", "c1", 7)).await.unwrap();
    store.append(call("globex", "c2", 3)).await.unwrap();
    // The log as it is once both are acknowledged (units 1 to 3).
    let log = tempfile::tempdir().unwrap();
    copy_files(dir.path(), log.path(), &["calls.duckdb.acklog"]);
    store.shutdown().await.unwrap();
    assert!(
        !dir.path().join("calls.duckdb.acklog").exists(),
        "a clean shutdown leaves no ack log"
    );

    let counts = |store: Store| async move {
        let mut out = Vec::new();
        for (tenant, id) in [("acme", "c0"), ("acme", "c1"), ("globex", "c2")] {
            let page = store
                .call_logs(tenant, id, query(PageAt::Page(1), 100, Order::Asc))
                .await
                .unwrap()
                .map(|p| p.total_count);
            let summary = store.call(tenant, id).await.unwrap().map(|c| c.log_count);
            out.push((page, summary));
        }
        store.shutdown().await.unwrap();
        out
    };
    let want = vec![(Some(2), Some(2)), (Some(7), Some(7)), (Some(3), Some(3))];
    for attempt in 0..2 {
        // The second time the same log is found beside a file that has applied it
        // (a crash after the apply, before the log was deleted): nothing twice.
        copy_files(log.path(), crashed.path(), &["calls.duckdb.acklog"]);
        let reopened = open_logged(&crashed);
        assert_eq!(counts(reopened).await, want, "open {attempt}");
    }
    let store = open_logged(&crashed);
    let ids = store
        .read(|c| {
            Ok(
                c.query_row("SELECT count(*), count(DISTINCT id) FROM logs", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })?,
            )
        })
        .await
        .unwrap();
    assert_eq!(ids, (12, 12));
    store.shutdown().await.unwrap();
}

/// A log left beside a different database file (the file deleted and created anew) is
/// set aside, never applied to it.
#[tokio::test]
async fn an_ack_log_of_another_file_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_logged(&dir);
    store.append(call("acme", "c1", 5)).await.unwrap();
    let log = tempfile::tempdir().unwrap();
    copy_files(dir.path(), log.path(), &["calls.duckdb.acklog"]);
    store.shutdown().await.unwrap();

    let fresh = tempfile::tempdir().unwrap();
    copy_files(log.path(), fresh.path(), &["calls.duckdb.acklog"]);
    let store = open_logged(&fresh);
    assert!(store.call("acme", "c1").await.unwrap().is_none());
    store.shutdown().await.unwrap();
    let aside = std::fs::read_dir(fresh.path().join("calls.duckdb.acklog"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "foreign")
        })
        .count();
    assert_eq!(aside, 1);
}

/// With `ack_after = "log"` a record is acknowledged before DuckDB commits it; every
/// read still sees it from the moment it is acknowledged (reads wait for the commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_are_readable_at_once_with_the_ack_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_logged(&dir);
    for i in 0..30u32 {
        let id = format!("c{i}");
        store.append(call("acme", &id, 5)).await.unwrap();
        let page = store
            .call_logs("acme", &id, query(PageAt::Page(1), 100, Order::Asc))
            .await
            .unwrap()
            .expect("the call is there at once");
        assert_eq!(page.total_count, 5, "call {i}");
        let listed = store
            .list_calls("acme", callscope_store::CallFilter::default(), 100, 0)
            .await
            .unwrap();
        assert_eq!(listed.total_count, u64::from(i) + 1, "call {i}");
    }
    store.shutdown().await.unwrap();
    // Everything was committed and the log removed by the clean shutdown.
    assert!(!dir.path().join("calls.duckdb.acklog").exists());
}
