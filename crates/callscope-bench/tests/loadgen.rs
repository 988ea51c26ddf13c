//! The load generator against a real server: every record it sends is unique, so the
//! store ends up holding exactly what was acknowledged, over both protocols, and the
//! report's figures are consistent.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use callscope::{Config, Server};
use callscope_bench::loadgen::{LoadOptions, Protocol, Workload, run_load};
use callscope_store::{Store, StoreConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_records_are_stored_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.path = dir.path().join("callscope.duckdb");
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    (
        config.otlp.grpc_addr,
        config.otlp.http_addr,
        config.api.addr,
    ) = (any, any, any);
    let server = Server::start(&config).await.expect("server starts");

    let mut all_acked = 0;
    for (protocol, addr) in [
        (Protocol::Grpc, server.grpc_addr),
        (Protocol::Http, server.http_addr),
    ] {
        let report = run_load(&LoadOptions {
            protocol,
            endpoint: format!("http://{addr}"),
            concurrency: 2,
            batch: 50,
            duration: Duration::from_millis(1500),
            warmup: Duration::from_millis(200),
            rate: None,
            workload: Workload {
                records_per_call: 30,
                calls_per_sender: 4,
                tenants: 2,
                internal_percent: 0,
            },
            token: None,
        })
        .await
        .expect("load runs");
        assert!(report.errors.is_empty(), "{protocol}: {:?}", report.errors);
        assert_eq!(report.rejected_records, 0);
        assert!(report.acked_records > 0, "{protocol}: nothing acknowledged");
        assert_eq!(report.acked_records, report.acked_requests * 50);
        assert!(report.all_acked_records >= report.acked_records);
        let l = report.latency_ms;
        assert!(0.0 < l.p50 && l.p50 <= l.p99 && l.p99 <= l.max, "{l:?}");
        eprintln!("{report}");
        all_acked += report.all_acked_records;
    }
    server.shutdown().await.expect("clean shutdown");

    let store = Store::open(&StoreConfig {
        path: config.storage.path.clone(),
        retention_days: 0,
        ..StoreConfig::default()
    })
    .expect("the file opens");
    let ids: Vec<(String, i64)> = store
        .read(|c| {
            let mut stmt = c.prepare("SELECT id::VARCHAR, count(*) FROM logs GROUP BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap();
    let calls: HashMap<String, i64> = store
        .read(|c| {
            let mut stmt = c.prepare("SELECT call_id, log_count FROM calls")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
        .unwrap()
        .into_iter()
        .collect();
    store.shutdown().await.unwrap();
    assert!(
        ids.iter().all(|(_, n)| *n == 1),
        "a record id is stored twice"
    );
    assert_eq!(
        ids.len() as u64,
        all_acked,
        "the store holds exactly the acknowledged records"
    );
    assert_eq!(calls.values().sum::<i64>() as u64, all_acked);
    assert!(
        calls.values().all(|n| *n <= 30),
        "a call outgrew its length"
    );
}

/// The raw Appender's rows are the rows the store stored: as many, with the same ids,
/// and they append to a bare file with the store's schema.
#[tokio::test]
async fn stored_batches_append_to_a_raw_file() {
    use callscope_bench::loadgen::CallTraffic;
    use callscope_collector::{VisibilityConfig, VisibilityFilter};

    let dir = tempfile::tempdir().unwrap();
    let mut traffic = CallTraffic::new(7, 0, &Workload::default());
    let filter = VisibilityFilter::new(&VisibilityConfig::default()).unwrap();
    let records = filter.apply(&traffic.request(1200)).records;
    assert_eq!(records.len(), 1200);
    let batches = callscope_bench::raw::stored_batches(dir.path(), records, 500)
        .await
        .unwrap();
    let sizes: Vec<usize> = batches
        .iter()
        .map(callscope_store::duckdb::arrow::record_batch::RecordBatch::num_rows)
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 1200, "{sizes:?}");
    assert!(sizes.iter().all(|n| *n <= 500), "{sizes:?}");

    let conn = callscope_bench::raw::open_raw(&dir.path().join("raw.duckdb"))
        .await
        .unwrap();
    callscope_bench::raw::append_columnar(&conn, &batches, Some(1)).unwrap();
    callscope_bench::raw::append_rows(&conn, &batches[..1]).unwrap();
    let (n, distinct): (i64, i64) = conn
        .query_row("SELECT count(*), count(DISTINCT id) FROM logs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, distinct), (1200 + sizes[0] as i64, 1200));
}
