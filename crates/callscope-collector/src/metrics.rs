//! The collector's own counters: requests by signal, transport and status, items received,
//! records committed, storage failures, refusals, and the ingest-to-commit latency.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use callscope_model::metrics::{Histogram, LATENCY_BUCKETS, MetricKind, PromWriter};

use crate::Signal;

/// Which receiver a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
}

impl Transport {
    /// `"grpc"` or `"http"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// Counters shared by both receivers.
#[derive(Debug)]
pub(crate) struct IngestMetrics {
    /// (signal, transport, status) → requests. Status is the HTTP code or the gRPC code name.
    requests: Mutex<BTreeMap<(Signal, Transport, &'static str), u64>>,
    /// Items (log records, spans, metric data points) received, by signal.
    items: [AtomicU64; 3],
    /// Decompressed bytes received, by signal.
    bytes: [AtomicU64; 3],
    committed_inserted: AtomicU64,
    committed_duplicates: AtomicU64,
    rejected: AtomicU64,
    spans_inserted: AtomicU64,
    spans_duplicates: AtomicU64,
    spans_rejected: AtomicU64,
    /// Storage failures by kind.
    storage_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Refusals because the pipeline was full, by the limit hit.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) in_flight_requests: AtomicU64,
    pub(crate) in_flight_bytes: AtomicU64,
    commit_latency: Histogram,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        Self {
            requests: Mutex::default(),
            items: Default::default(),
            bytes: Default::default(),
            committed_inserted: AtomicU64::new(0),
            committed_duplicates: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            spans_inserted: AtomicU64::new(0),
            spans_duplicates: AtomicU64::new(0),
            spans_rejected: AtomicU64::new(0),
            storage_errors: Mutex::default(),
            refused: Mutex::default(),
            in_flight_requests: AtomicU64::new(0),
            in_flight_bytes: AtomicU64::new(0),
            commit_latency: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

fn index(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Logs => 1,
        Signal::Metrics => 2,
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(key)
        .or_default() += 1;
}

impl IngestMetrics {
    pub(crate) fn request(&self, signal: Signal, transport: Transport, status: &'static str) {
        bump(&self.requests, (signal, transport, status));
    }

    pub(crate) fn received(&self, signal: Signal, items: u64, bytes: u64) {
        self.items[index(signal)].fetch_add(items, Relaxed);
        self.bytes[index(signal)].fetch_add(bytes, Relaxed);
    }

    pub(crate) fn committed(&self, inserted: usize, duplicates: usize, latency: Duration) {
        self.committed_inserted.fetch_add(inserted as u64, Relaxed);
        self.committed_duplicates
            .fetch_add(duplicates as u64, Relaxed);
        self.commit_latency.observe(latency);
    }

    pub(crate) fn rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Relaxed);
    }

    pub(crate) fn committed_spans(&self, inserted: usize, duplicates: usize, latency: Duration) {
        self.spans_inserted.fetch_add(inserted as u64, Relaxed);
        self.spans_duplicates.fetch_add(duplicates as u64, Relaxed);
        self.commit_latency.observe(latency);
    }

    pub(crate) fn rejected_spans(&self, n: u64) {
        self.spans_rejected.fetch_add(n, Relaxed);
    }

    pub(crate) fn storage_error(&self, kind: &'static str) {
        bump(&self.storage_errors, kind);
    }

    pub(crate) fn refused(&self, limit: &'static str) {
        bump(&self.refused, limit);
    }

    /// Requests answered so far with `status`, over every signal and transport.
    pub(crate) fn requests_with_status(&self, status: &str) -> u64 {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|((_, _, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    pub(crate) fn render(&self, w: &mut PromWriter) {
        let name = "callscope_otlp_requests_total";
        w.family(
            name,
            MetricKind::Counter,
            "OTLP export requests answered, by signal, transport and status (HTTP code or gRPC code).",
        );
        for ((signal, transport, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            w.sample(
                name,
                &[
                    ("signal", signal.as_str()),
                    ("transport", transport.as_str()),
                    ("status", status),
                ],
                *n as f64,
            );
        }

        let name = "callscope_otlp_received_items_total";
        w.family(
            name,
            MetricKind::Counter,
            "Log records, spans and metric data points received, by signal.",
        );
        for signal in Signal::ALL {
            let n = self.items[index(signal)].load(Relaxed);
            w.sample(name, &[("signal", signal.as_str())], n as f64);
        }
        let name = "callscope_otlp_received_bytes_total";
        w.family(
            name,
            MetricKind::Counter,
            "Decompressed bytes of OTLP requests received, by signal.",
        );
        for signal in Signal::ALL {
            let n = self.bytes[index(signal)].load(Relaxed);
            w.sample(name, &[("signal", signal.as_str())], n as f64);
        }

        let name = "callscope_ingest_committed_records_total";
        w.family(
            name,
            MetricKind::Counter,
            "Customer records acknowledged after the storage commit: inserted, or already stored (a sender's retry).",
        );
        w.sample(
            name,
            &[("outcome", "inserted")],
            self.committed_inserted.load(Relaxed) as f64,
        );
        w.sample(
            name,
            &[("outcome", "duplicate")],
            self.committed_duplicates.load(Relaxed) as f64,
        );
        w.single(
            "callscope_ingest_rejected_records_total",
            MetricKind::Counter,
            "Customer-visible log records rejected (reported to senders as OTLP partial success).",
            self.rejected.load(Relaxed) as f64,
        );

        let name = "callscope_ingest_committed_spans_total";
        w.family(
            name,
            MetricKind::Counter,
            "Customer spans acknowledged after the storage commit: inserted, or already stored (a sender's retry).",
        );
        w.sample(
            name,
            &[("outcome", "inserted")],
            self.spans_inserted.load(Relaxed) as f64,
        );
        w.sample(
            name,
            &[("outcome", "duplicate")],
            self.spans_duplicates.load(Relaxed) as f64,
        );
        w.single(
            "callscope_ingest_rejected_spans_total",
            MetricKind::Counter,
            "Customer-visible spans rejected (reported to senders as OTLP partial success).",
            self.spans_rejected.load(Relaxed) as f64,
        );

        let name = "callscope_ingest_storage_errors_total";
        w.family(
            name,
            MetricKind::Counter,
            "Export requests refused because storage failed, by kind (overloaded, unavailable, closed, timeout, other).",
        );
        for (kind, n) in self
            .storage_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            w.sample(name, &[("kind", kind)], *n as f64);
        }

        let name = "callscope_otlp_refused_total";
        w.family(
            name,
            MetricKind::Counter,
            "Export requests refused because the pipeline was full, by the limit that was hit.",
        );
        for (limit, n) in self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            w.sample(name, &[("limit", limit)], *n as f64);
        }

        w.single(
            "callscope_otlp_in_flight_requests",
            MetricKind::Gauge,
            "Export requests in the pipeline now.",
            self.in_flight_requests.load(Relaxed) as f64,
        );
        w.single(
            "callscope_otlp_in_flight_bytes",
            MetricKind::Gauge,
            "Decompressed request bytes in the pipeline now.",
            self.in_flight_bytes.load(Relaxed) as f64,
        );
        self.commit_latency.render(
            w,
            "callscope_ingest_commit_seconds",
            "Time from receiving a logs or traces export request to the storage commit of its records or spans.",
            &[],
        );
    }
}
