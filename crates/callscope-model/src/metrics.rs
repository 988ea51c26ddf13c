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
        assert_eq!(
            w.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{reason=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP depth Queue depth.\n# TYPE depth gauge\ndepth 0.5\n"
        );
    }
}
