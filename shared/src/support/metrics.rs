//! Metrics as CloudWatch Embedded Metric Format (EMF) lines.
//!
//! On Lambda, a JSON line on stdout with an `_aws.CloudWatchMetrics`
//! directive becomes a metric without any API call (no PutMetricData, no
//! latency, no IAM). Every metric carries the dimension set `[Stage]`; some
//! also a finer one (`[Stage, Reason]`, `[Stage, Connection, Action]`, …) so
//! alarms can use the total and dashboards the breakdown. Names (the SAM
//! template's alarms and dashboard use exactly these):
//!
//! | metric | unit | extra dimensions | from |
//! |---|---|---|---|
//! | `Received` | Count | | ingress, every webhook POST |
//! | `Rejected` | Count | `Reason` | ingress, every refusal |
//! | `AuthRejected` | Count | | ingress, 401/404 (bad credentials, unknown endpoint) |
//! | `Enqueued` | Count | | ingress, 202 |
//! | `Filtered`, `NoRule`, `Skipped` | Count | | worker |
//! | `Applied` | Count | `Connection`, `Action` | worker, per applied rule |
//! | `Retried` | Count | | worker, message handed back to the queue |
//! | `DeadLettered` | Count | | worker, message moved to the DLQ |
//! | `HandlerLatency` | Milliseconds | `Function` | ingress request / worker message |
//! | `ConnectorLatency` | Milliseconds | `Connection` | worker, per outbound call |
//! | `ConcurrencyCut` | Count | `Connection`, `Reason` (`refused`, `queueing`) | connector, each cut of the adaptive limit |
//! | `DeleteCapReached` | Count | `Connection` | worker, a delete refused by the connection's `deletes_per_minute` |
//! | `ReconcileScanned`, `ReconcileDrift`, `ReconcileEnqueued` | Count | `Endpoint` | reconciler, per sweep |
//! | `ReconcileFailed` | Count | `Endpoint` | reconciler, a sweep that stopped before the end |
//!
//! Plus `Parked`, `Duplicate` (worker) and `OAuthConsentRequired` (connector):
//! [`METRICS`] is the one list of names, units and dimensions — the EMF lines
//! are checked against it, and `relay serve`'s `GET /metrics` (Prometheus)
//! registers exactly it ([`prometheus_name`]: `Applied` [`Connection`,
//! `Action`] → `relay_applied_total{stage,connection,action}`, latencies as
//! `relay_…_latency_seconds` histograms). [`GAUGES`] are what only `relay
//! serve` reports (its queue); on AWS, SQS's own metrics say the same.
//!
//! The process installs a sink once ([`install`]); until then (tests) nothing
//! is emitted. Lambda hosts install [`Sink::Stdout`] with the namespace from
//! `RELAY_METRICS_NAMESPACE` and the stage from `RELAY_STAGE`; `relay serve`
//! installs a Prometheus registry.

use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, OnceLock};

/// Where EMF lines go.
#[derive(Clone)]
pub enum Sink {
    /// One line per metric event on stdout (Lambda → CloudWatch Logs → metrics).
    Stdout,
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<String>>>),
    /// Counted by a registry (`relay serve`'s Prometheus `GET /metrics`).
    Recorder(Arc<dyn Recorder>),
}

/// Something that counts the metrics itself (instead of EMF lines).
pub trait Recorder: Send + Sync {
    /// One value of a metric of [`METRICS`]: a count, or a latency in ms.
    fn record(&self, stage: &str, name: &str, dims: &[(&str, &str)], value: f64);
}

/// One metric: its EMF name, unit and extra dimensions (beside `Stage`).
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: Unit,
    pub dims: &'static [&'static str],
    pub help: &'static str,
}

const fn def(
    name: &'static str,
    unit: Unit,
    dims: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        unit,
        dims,
        help,
    }
}

/// Every metric the relay emits (EMF on Lambda, Prometheus in `relay serve`).
pub const METRICS: &[MetricDef] = &[
    def("Received", Unit::Count, &[], "Webhook POSTs received."),
    def(
        "Rejected",
        Unit::Count,
        &["Reason"],
        "Webhooks refused, by reason.",
    ),
    def(
        "AuthRejected",
        Unit::Count,
        &[],
        "Webhooks refused for credentials or an unknown endpoint (401/404).",
    ),
    def(
        "Enqueued",
        Unit::Count,
        &[],
        "Webhooks accepted into the queue (202).",
    ),
    def(
        "Filtered",
        Unit::Count,
        &[],
        "Events the whitelist or a condition filtered out.",
    ),
    def("NoRule", Unit::Count, &[], "Events no rule matched."),
    def(
        "Skipped",
        Unit::Count,
        &[],
        "Events whose every matching rule was skipped.",
    ),
    def(
        "Applied",
        Unit::Count,
        &["Connection", "Action"],
        "Rules applied, by connection and action.",
    ),
    def(
        "Retried",
        Unit::Count,
        &[],
        "Messages handed back to the queue for a retry.",
    ),
    def(
        "DeadLettered",
        Unit::Count,
        &[],
        "Messages moved to the dead-letter queue.",
    ),
    def(
        "Parked",
        Unit::Count,
        &[],
        "Events parked until their record exists.",
    ),
    def(
        "Duplicate",
        Unit::Count,
        &[],
        "Changes handled already (a late retry).",
    ),
    def(
        "HandlerLatency",
        Unit::Milliseconds,
        &["Function"],
        "Time to handle one webhook (ingress) or message (worker).",
    ),
    def(
        "ConnectorLatency",
        Unit::Milliseconds,
        &["Connection"],
        "Time of one outbound call, by connection.",
    ),
    def(
        "ReconcileScanned",
        Unit::Count,
        &["Endpoint"],
        "Issues compared by reconciliation sweeps.",
    ),
    def(
        "ReconcileDrift",
        Unit::Count,
        &["Endpoint"],
        "Differences found by reconciliation sweeps.",
    ),
    def(
        "ReconcileEnqueued",
        Unit::Count,
        &["Endpoint"],
        "Events queued by reconciliation sweeps.",
    ),
    def(
        "ReconcileFailed",
        Unit::Count,
        &["Endpoint"],
        "Reconciliation sweeps that stopped before the end.",
    ),
    def(
        "OAuthConsentRequired",
        Unit::Count,
        &[],
        "Calls refused because an OAuth consent must be given again.",
    ),
    def(
        "ConcurrencyCut",
        Unit::Count,
        &["Connection", "Reason"],
        "A connection's adaptive concurrency limit cut: the target refused (429/503/timeout) or its latency rose (calls queue).",
    ),
    def(
        "DeleteCapReached",
        Unit::Count,
        &["Connection"],
        "A delete not sent: the connection's deletes_per_minute was used up this minute (the event is dead-lettered with reason delete_cap_reached).",
    ),
    def(
        "JournalDropped",
        Unit::Count,
        &[],
        "Delivery journal rows dropped (journal behind or unwritable; `relay serve`).",
    ),
];

/// What only `relay serve` reports, read from its queue at each scrape.
pub const GAUGES: &[MetricDef] = &[
    def(
        "QueueDepth",
        Unit::Count,
        &[],
        "Messages waiting in the queue (visible and delayed).",
    ),
    def(
        "QueueInFlight",
        Unit::Count,
        &[],
        "Messages being handled now.",
    ),
    def(
        "QueueOldestAge",
        Unit::Seconds,
        &[],
        "Age of the oldest queued message.",
    ),
    def(
        "DeadLetters",
        Unit::Count,
        &[],
        "Messages in the dead-letter table.",
    ),
];

/// The Prometheus name of a metric: `relay_` + snake case, `_seconds` for
/// latencies and ages (the registry adds `_total` to counters).
pub fn prometheus_name(d: &MetricDef) -> String {
    let mut out = String::from("relay_");
    let mut prev_lower = false;
    for ch in d.name.chars() {
        if ch.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = ch.is_ascii_lowercase();
        out.push(ch.to_ascii_lowercase());
    }
    match d.unit {
        Unit::Milliseconds | Unit::Seconds => out + "_seconds",
        Unit::Count => out,
    }
}

/// The definition of `name` (from [`METRICS`] or [`GAUGES`]).
pub fn find(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().chain(GAUGES).find(|d| d.name == name)
}

struct Emitter {
    namespace: String,
    stage: String,
    sink: Sink,
}

static EMITTER: OnceLock<Emitter> = OnceLock::new();

/// Installs the process-wide sink; later calls are ignored (returns false).
pub fn install(namespace: &str, stage: &str, sink: Sink) -> bool {
    EMITTER
        .set(Emitter {
            namespace: namespace.to_owned(),
            stage: stage.to_owned(),
            sink,
        })
        .is_ok()
}

/// Installs stdout EMF from `RELAY_METRICS_NAMESPACE` (default `JiraRelay`)
/// and `RELAY_STAGE` (default `unknown`).
pub fn install_from_env() {
    let ns = std::env::var("RELAY_METRICS_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "JiraRelay".to_owned());
    let stage = std::env::var("RELAY_STAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    install(&ns, &stage, Sink::Stdout);
}

/// Metric units EMF knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One EMF document: `metrics` with values, the `[Stage]` dimension set and,
/// when `dims` is not empty, `[Stage, dims…]` too.
pub fn emf_line(
    namespace: &str,
    stage: &str,
    timestamp_ms: i64,
    dims: &[(&str, &str)],
    metrics: &[(&str, Unit, f64)],
) -> String {
    let mut sets = vec![json!(["Stage"])];
    if !dims.is_empty() {
        let mut set = vec!["Stage"];
        set.extend(dims.iter().map(|(k, _)| *k));
        sets.push(json!(set));
    }
    let defs: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": sets, "Metrics": defs}],
        }),
    );
    doc.insert("Stage".into(), Value::String(stage.to_owned()));
    for (k, v) in dims {
        doc.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    for (name, _, value) in metrics {
        doc.insert((*name).to_owned(), json!(value));
    }
    Value::Object(doc).to_string()
}

fn emit(dims: &[(&str, &str)], metrics: &[(&str, Unit, f64)]) {
    for (name, unit, _) in metrics {
        debug_assert!(
            find(name).is_some_and(|d| d.unit == *unit
                && d.dims.len() == dims.len()
                && d.dims.iter().zip(dims).all(|(a, (b, _))| a == b)),
            "metric {name} {dims:?} is not in METRICS as emitted"
        );
    }
    let Some(e) = EMITTER.get() else { return };
    if let Sink::Recorder(r) = &e.sink {
        for (name, _, value) in metrics {
            r.record(&e.stage, name, dims, *value);
        }
        return;
    }
    let line = emf_line(
        &e.namespace,
        &e.stage,
        jiff::Timestamp::now().as_millisecond(),
        dims,
        metrics,
    );
    match &e.sink {
        Sink::Stdout => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
        }
        Sink::Memory(m) => m.lock().unwrap_or_else(|p| p.into_inner()).push(line),
        Sink::Recorder(_) => {}
    }
}

/// Adds 1 to a count metric.
pub fn count(name: &str, dims: &[(&str, &str)]) {
    emit(dims, &[(name, Unit::Count, 1.0)]);
}

/// Adds `n` to a count metric.
pub fn count_n(name: &str, dims: &[(&str, &str)], n: u64) {
    emit(dims, &[(name, Unit::Count, n as f64)]);
}

/// Records a latency in milliseconds.
pub fn latency(name: &str, dims: &[(&str, &str)], ms: f64) {
    emit(dims, &[(name, Unit::Milliseconds, ms)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_shape() {
        let line = emf_line(
            "JiraRelay",
            "prod",
            1_763_900_000_000,
            &[("Connection", "servicenow"), ("Action", "create")],
            &[("Applied", Unit::Count, 1.0)],
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            json!({
                "_aws": {
                    "Timestamp": 1_763_900_000_000i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "JiraRelay",
                        "Dimensions": [["Stage"], ["Stage", "Connection", "Action"]],
                        "Metrics": [{"Name": "Applied", "Unit": "Count"}]
                    }]
                },
                "Stage": "prod",
                "Connection": "servicenow",
                "Action": "create",
                "Applied": 1.0
            })
        );
        // One line, no newline inside (CloudWatch Logs splits on newlines).
        assert!(!line.contains('\n'));
        let plain = emf_line(
            "N",
            "test",
            0,
            &[],
            &[("HandlerLatency", Unit::Milliseconds, 2.5)],
        );
        let v: Value = serde_json::from_str(&plain).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Stage"]])
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"],
            "Milliseconds"
        );
        assert_eq!(v["HandlerLatency"], 2.5);
    }

    #[test]
    fn prometheus_names() {
        let n = |name: &str| prometheus_name(find(name).unwrap());
        assert_eq!(n("Applied"), "relay_applied");
        assert_eq!(n("HandlerLatency"), "relay_handler_latency_seconds");
        assert_eq!(n("OAuthConsentRequired"), "relay_oauth_consent_required");
        assert_eq!(n("QueueOldestAge"), "relay_queue_oldest_age_seconds");
        let mut names: Vec<String> = METRICS.iter().chain(GAUGES).map(prometheus_name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "two metrics share a Prometheus name");
    }

    #[test]
    fn installed_sink_receives_lines() {
        let mem = Arc::new(Mutex::new(Vec::new()));
        // The only test in this binary that installs a sink.
        assert!(install("Test", "test", Sink::Memory(mem.clone())));
        count("Rejected", &[("Reason", "invalid_token")]);
        latency("ConnectorLatency", &[("Connection", "servicenow")], 12.0);
        let lines = mem.lock().unwrap().clone();
        assert!(lines
            .iter()
            .any(|l| l.contains("\"Rejected\":1.0") && l.contains("invalid_token")));
        assert!(lines
            .iter()
            .any(|l| l.contains("\"ConnectorLatency\":12.0")));
        assert!(!install("Other", "x", Sink::Stdout), "installed once");
    }
}
