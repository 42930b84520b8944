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
//! | `ReconcileScanned`, `ReconcileDrift`, `ReconcileEnqueued` | Count | `Endpoint` | reconciler, per sweep |
//! | `ReconcileFailed` | Count | `Endpoint` | reconciler, a sweep that stopped before the end |
//!
//! The process installs a sink once ([`install`]); until then (tests,
//! `relay serve`) nothing is emitted. Lambda hosts install [`Sink::Stdout`]
//! with the namespace from `RELAY_METRICS_NAMESPACE` and the stage from
//! `RELAY_STAGE`.

use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, OnceLock};

/// Where EMF lines go.
#[derive(Clone)]
pub enum Sink {
    /// One line per metric event on stdout (Lambda → CloudWatch Logs → metrics).
    Stdout,
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<String>>>),
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
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
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
    let Some(e) = EMITTER.get() else { return };
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
