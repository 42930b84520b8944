//! The metrics of [`super::metrics::METRICS`] and [`super::metrics::GAUGES`]
//! in a Prometheus registry, for `relay serve`'s `GET /metrics` (text format
//! 0.0.4). Every metric is registered up front, so a scrape lists the whole
//! vocabulary even before anything happened.

use super::metrics::{prometheus_name, MetricDef, Recorder, Unit, GAUGES, METRICS};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::HashMap;

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets in seconds: 1 ms … 30 s.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

enum Series {
    Counter(Family<Labels, Counter>),
    Histogram(Histograms),
    Gauge(Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>),
}

/// The registry and a handle on each metric by its EMF name.
pub struct Registry {
    registry: prometheus_client::registry::Registry,
    series: HashMap<&'static str, Series>,
}

/// The content type of [`Registry::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder for Registry {
    fn record(&self, stage: &str, name: &str, dims: &[(&str, &str)], value: f64) {
        self.add(stage, name, dims, value);
    }
}

impl Registry {
    pub fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let mut series = HashMap::new();
        let name = |d: &MetricDef| {
            // The library adds `_total` to counters and the unit to the others.
            prometheus_name(d).trim_end_matches("_seconds").to_owned()
        };
        for d in METRICS {
            let s = match d.unit {
                Unit::Count => {
                    let f = Family::<Labels, Counter>::default();
                    registry.register(name(d), d.help, f.clone());
                    Series::Counter(f)
                }
                Unit::Milliseconds | Unit::Seconds => {
                    let f: Histograms = Family::new_with_constructor(histogram);
                    registry.register_with_unit(
                        name(d),
                        d.help,
                        prometheus_client::registry::Unit::Seconds,
                        f.clone(),
                    );
                    Series::Histogram(f)
                }
            };
            series.insert(d.name, s);
        }
        for d in GAUGES {
            let f = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
            match d.unit {
                Unit::Seconds | Unit::Milliseconds => registry.register_with_unit(
                    name(d),
                    d.help,
                    prometheus_client::registry::Unit::Seconds,
                    f.clone(),
                ),
                Unit::Count => registry.register(name(d), d.help, f.clone()),
            }
            series.insert(d.name, Series::Gauge(f));
        }
        Self { registry, series }
    }

    fn labels(stage: &str, dims: &[(&str, &str)]) -> Labels {
        let mut l = vec![("stage".to_owned(), stage.to_owned())];
        l.extend(
            dims.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())),
        );
        l
    }

    /// Adds one EMF value: a count, or a latency in milliseconds.
    pub fn add(&self, stage: &str, name: &str, dims: &[(&str, &str)], value: f64) {
        let labels = Self::labels(stage, dims);
        match self.series.get(name) {
            Some(Series::Counter(f)) => {
                f.get_or_create(&labels).inc_by(value.max(0.0) as u64);
            }
            Some(Series::Histogram(f)) => f.get_or_create(&labels).observe(value / 1000.0),
            Some(Series::Gauge(f)) => {
                f.get_or_create(&labels).set(value);
            }
            None => tracing::debug!(metric = name, "not a known metric; not counted"),
        }
    }

    /// Sets a gauge of [`GAUGES`] (in its own unit).
    pub fn set_gauge(&self, stage: &str, name: &str, value: f64) {
        if let Some(Series::Gauge(f)) = self.series.get(name) {
            f.get_or_create(&Self::labels(stage, &[])).set(value);
        }
    }

    /// The Prometheus text format. A metric with no series yet is still
    /// described (`# HELP`, `# TYPE`), so a scrape shows the whole list.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        for d in METRICS.iter().chain(GAUGES) {
            let n = prometheus_name(d);
            let (n, kind) = match (d.unit, self.series.get(d.name)) {
                (_, Some(Series::Gauge(_))) => (n, "gauge"),
                (Unit::Count, _) => (n + "_total", "counter"),
                _ => (n, "histogram"),
            };
            let type_line = format!("# TYPE {n} {kind}\n");
            if !out.contains(&type_line) {
                out.push_str(&format!("# HELP {n} {}\n{type_line}", d.help));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_listed_before_anything_happens() {
        let r = Registry::new();
        let text = r.render();
        for d in METRICS {
            let n = prometheus_name(d);
            let want = match d.unit {
                Unit::Count => format!("# TYPE {n}_total counter"),
                _ => format!("# TYPE {n} histogram"),
            };
            assert!(text.contains(&want), "{want} missing in\n{text}");
        }
        for d in GAUGES {
            let n = prometheus_name(d);
            assert!(text.contains(&format!("# TYPE {n} gauge")), "{n} missing");
        }
    }

    #[test]
    fn counts_and_latencies_with_their_labels() {
        let r = Registry::new();
        r.add(
            "local",
            "Applied",
            &[("Connection", "servicenow"), ("Action", "create")],
            1.0,
        );
        r.add(
            "local",
            "Applied",
            &[("Connection", "servicenow"), ("Action", "create")],
            1.0,
        );
        r.add("local", "HandlerLatency", &[("Function", "worker")], 20.0);
        r.set_gauge("local", "QueueDepth", 3.0);
        let text = r.render();
        assert!(
            text.contains(
                r#"relay_applied_total{stage="local",connection="servicenow",action="create"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"relay_handler_latency_seconds_bucket{le="0.025",stage="local",function="worker"} 1"#
            ) || text.contains(
                r#"relay_handler_latency_seconds_bucket{stage="local",function="worker",le="0.025"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"relay_queue_depth{stage="local"} 3"#),
            "{text}"
        );
    }
}
