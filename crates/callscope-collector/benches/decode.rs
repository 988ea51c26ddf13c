//! OTLP decoding: what the receivers do with a request body before the visibility
//! filter, against raw prost decoding of the same bytes.
//!
//! Run: `cargo bench --workspace --bench decode`.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::{hint::black_box, io::Write as _};

use bytes::Bytes;
use callscope_collector::{
    decode::{self, Encoding},
    testing::realistic_request,
    visibility::{VisibilityConfig, VisibilityFilter},
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message as _;

fn decode(c: &mut Criterion) {
    // Five calls of 100 records, ~10 attributes each: a batch processor's export.
    let req = realistic_request(5, 100);
    let n = 500u64;
    let proto = Bytes::from(req.encode_to_vec());
    let json = Bytes::from(serde_json::to_vec(&req).expect("serializes"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&proto).expect("compresses");
    let gzip = Bytes::from(gz.finish().expect("compresses"));
    let limit = 20 * 1024 * 1024;
    println!(
        "request: {} bytes protobuf, {} gzip, {} JSON",
        proto.len(),
        gzip.len(),
        json.len()
    );

    let mut g = c.benchmark_group("otlp_decode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("raw_prost_500_records", |b| {
        b.iter(|| ExportLogsServiceRequest::decode(black_box(&proto[..])).expect("decodes"));
    });
    g.bench_function("http_protobuf_500_records", |b| {
        b.iter(|| {
            let body = decode::decompress(black_box(proto.clone()), Encoding::Identity, limit)
                .expect("ok");
            decode::protobuf::<ExportLogsServiceRequest>(&body).expect("decodes")
        });
    });
    g.bench_function("http_protobuf_gzip_500_records", |b| {
        b.iter(|| {
            let body =
                decode::decompress(black_box(gzip.clone()), Encoding::Gzip, limit).expect("ok");
            decode::protobuf::<ExportLogsServiceRequest>(&body).expect("decodes")
        });
    });
    g.bench_function("http_json_500_records", |b| {
        b.iter(|| decode::json::<ExportLogsServiceRequest>(black_box(&json)).expect("decodes"));
    });
    let filter = VisibilityFilter::new(&VisibilityConfig::default()).expect("default config");
    g.bench_function("prost_decode_and_filter_500_records", |b| {
        b.iter(|| {
            let r = ExportLogsServiceRequest::decode(black_box(&proto[..])).expect("decodes");
            filter.apply(&r)
        });
    });
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
