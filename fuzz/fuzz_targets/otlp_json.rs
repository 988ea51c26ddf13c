//! OTLP JSON bodies (canonical and the lenient second pass): decoding never panics, and
//! a decoded logs request goes through the visibility filter with its invariants intact.
#![no_main]

use callscope_otlp::decode;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode::json::<ExportTraceServiceRequest>(data);
    let _ = decode::json::<ExportMetricsServiceRequest>(data);
    if let Ok(req) = decode::json::<ExportLogsServiceRequest>(data) {
        thread_local!(static FILTER: callscope_otlp::visibility::VisibilityFilter = callscope_fuzz::filter());
        FILTER.with(|f| callscope_fuzz::check_filter(f, &req));
    }
});
