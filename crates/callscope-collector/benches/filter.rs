//! The visibility filter's cost per record. Run: `cargo bench -p callscope-collector --bench filter`.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use callscope_collector::{
    testing::realistic_request,
    visibility::{MaskRule, VisibilityConfig, VisibilityFilter, record_id},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn filter(c: &mut Criterion) {
    // Five calls of 100 records: ~10 attributes each, a third of them infrastructure.
    let req = realistic_request(5, 100);
    let n: usize = req
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    let f = VisibilityFilter::new(&VisibilityConfig::default()).expect("default config");
    assert_eq!(
        f.apply(&req).records.len(),
        400,
        "four in five records are customer"
    );

    let mut g = c.benchmark_group("visibility");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("apply_500_records", |b| b.iter(|| f.apply(black_box(&req))));

    let masked = VisibilityFilter::new(&VisibilityConfig {
        mask: vec![MaskRule {
            pattern: r"\b\d{13,19}\b".into(),
            replacement: "[card]".into(),
            keys: None,
        }],
        ..VisibilityConfig::default()
    })
    .expect("valid mask");
    g.bench_function("apply_500_records_one_mask", |b| {
        b.iter(|| masked.apply(black_box(&req)));
    });

    // Id derivation alone: the same records, hashed the way the filter hashes them.
    let records = &req.resource_logs[0].scope_logs[0].log_records;
    g.bench_function("record_id_500_records", |b| {
        b.iter(|| {
            for r in records {
                let id = record_id("acme", "call", &r.event_name, r);
                black_box(id);
            }
        });
    });
    g.finish();
}

criterion_group!(benches, filter);
criterion_main!(benches);
