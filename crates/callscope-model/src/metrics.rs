//! A small writer for the Prometheus text exposition format, so every crate can expose
//! its counters on `/metrics` without sharing a registry.

use std::fmt::Write as _;

/// Something that can append its metrics to a `/metrics` page.
pub trait MetricsSource: Send + Sync {
    /// Appends metric families in Prometheus text format.
    fn render(&self, out: &mut PromWriter);
}

/// Builds a Prometheus text page, one metric family at a time.
#[derive(Debug, Default)]
pub struct PromWriter {
    out: String,
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl PromWriter {
    /// An empty page.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: MetricKind, help: &str) -> &mut Self {
        let kind = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample of the family just started. Label values are escaped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: MetricKind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The page.
    #[must_use]
    pub fn finish(self) -> String {
        self.out
    }
}

/// A latency histogram with fixed buckets (seconds), safe to update from many threads.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<std::sync::atomic::AtomicU64>,
    sum_micros: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU64,
}

/// Bucket bounds suited to request and commit latencies, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    /// An empty histogram over `bounds` (ascending upper bounds, in seconds).
    #[must_use]
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds
                .iter()
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            sum_micros: std::sync::atomic::AtomicU64::new(0),
            count: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// How many observations so far.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes the histogram as a Prometheus family named `name`.
    pub fn render(&self, w: &mut PromWriter, name: &str, help: &str, labels: &[(&str, &str)]) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = writeln!(w.out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let le = b.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            w.sample(&bucket, &l, cumulative as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        let count = self.count.load(Relaxed);
        w.sample(&bucket, &l, count as f64);
        w.sample(
            &format!("{name}_sum"),
            labels,
            self.sum_micros.load(Relaxed) as f64 / 1e6,
        );
        w.sample(&format!("{name}_count"), labels, count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_escapes_labels() {
        let mut w = PromWriter::new();
        w.family("x_total", MetricKind::Counter, "Things.").sample(
            "x_total",
            &[("reason", "a\"b\\c\nd")],
            3.0,
        );
        w.single("depth", MetricKind::Gauge, "Queue depth.", 0.5);
        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(std::time::Duration::from_millis(5));
        h.observe(std::time::Duration::from_millis(50));
        h.observe(std::time::Duration::from_secs(1));
        let mut hw = PromWriter::new();
        h.render(&mut hw, "lat_seconds", "Latency.", &[("signal", "logs")]);
        let text = hw.finish();
        assert!(
            text.contains("lat_seconds_bucket{signal=\"logs\",le=\"0.01\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{signal=\"logs\",le=\"0.1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{signal=\"logs\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_count{signal=\"logs\"} 3\n"),
            "{text}"
        );
        assert_eq!(
            w.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{reason=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP depth Queue depth.\n# TYPE depth gauge\ndepth 0.5\n"
        );
    }
}
