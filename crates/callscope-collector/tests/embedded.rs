//! The embedded exporter end to end: SDK log records through the visibility filter into
//! a real DuckDB file, read back with the store's query API.

use std::{sync::Arc, time::SystemTime};

use callscope_collector::{EmbeddedLogExporter, VisibilityConfig, VisibilityFilter};
use callscope_model::{Category, Level};
use callscope_store::{LogQuery, Order, PageAt, Store, StoreConfig};
use opentelemetry::{
    KeyValue,
    logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity},
};
use opentelemetry_sdk::{Resource, logs::SdkLoggerProvider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_records_are_filtered_and_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig {
        path: dir.path().join("callscope.duckdb"),
        ..StoreConfig::default()
    })
    .unwrap();
    let filter = Arc::new(VisibilityFilter::new(&VisibilityConfig::default()).unwrap());
    let provider = SdkLoggerProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("tenant.id", "acme"),
                    KeyValue::new("host.name", "node-7"),
                ])
                .build(),
        )
        .with_simple_exporter(EmbeddedLogExporter::new(Arc::clone(&filter), store.clone()))
        .build();

    // The simple processor exports synchronously; keep that off the async workers.
    tokio::task::spawn_blocking(move || {
        let logger = provider.logger("voice_agent");
        let emit = |visibility: Option<&str>, text: &str| {
            let mut r = logger.create_log_record();
            r.set_event_name("AGENT_MESSAGE_SENT");
            r.set_timestamp(SystemTime::now());
            r.set_severity_number(Severity::Warn);
            r.set_body(AnyValue::from(text.to_owned()));
            r.add_attribute("call.id", "call-1");
            r.add_attribute("internal.prompt", "secret");
            r.add_attribute("text", text.to_owned());
            if let Some(v) = visibility {
                r.add_attribute("callscope.visibility", v.to_owned());
            }
            logger.emit(r);
        };
        emit(Some("customer"), "hello");
        emit(None, "internal only");
        emit(Some("customer"), "goodbye");
        provider.shutdown().unwrap();
    })
    .await
    .unwrap();

    assert_eq!(filter.stats().accepted(), 2);
    assert_eq!(filter.stats().dropped_internal(), 1);
    let page = store
        .call_logs(
            "acme",
            "call-1",
            LogQuery {
                at: PageAt::Page(1),
                limit: 100,
                order: Order::Asc,
                filter: Default::default(),
            },
        )
        .await
        .unwrap()
        .expect("the call is stored for its tenant");
    let texts: Vec<_> = page
        .records
        .iter()
        .map(|r| {
            r.data.as_ref().unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(texts, ["hello", "goodbye"]);
    let r = &page.records[0];
    assert_eq!((r.level, r.category), (Level::Warning, Category::Agent));
    let data = serde_json::to_string(&r.data).unwrap();
    assert!(
        !data.contains("secret") && !data.contains("node-7"),
        "{data}"
    );
    assert!(
        store
            .call_logs(
                "other",
                "call-1",
                LogQuery {
                    at: PageAt::Page(1),
                    limit: 100,
                    order: Order::Asc,
                    filter: Default::default(),
                },
            )
            .await
            .unwrap()
            .is_none()
    );
    store.shutdown().await.unwrap();
}
