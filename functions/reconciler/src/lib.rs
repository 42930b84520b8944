//! The reconciler Lambda's handler: an EventBridge scheduled event (or a
//! hand-run `aws lambda invoke` payload) in, one sweep of every endpoint
//! with a `reconcile:` section out, as a JSON summary. A library so that
//! integration tests drive the very function the Lambda runs.
//!
//! Input: the scheduled event (`"source": "aws.events"`) sweeps every
//! endpoint from its watermark. A hand run may send
//! `{"since": "<RFC 3339>", "dry_run": true, "endpoint": "<name>"}` (each
//! key optional; an unknown key is refused, so a typo such as `"dryrun"`
//! never turns a dry run into a real one).
//!
//! The invocation fails (a function error, counted by Lambda's `Errors`
//! metric) only when every endpoint swept failed. A sweep that stopped
//! part-way, or one endpoint out of several failing, still answers with the
//! summary: the next scheduled run resumes it, and a Lambda retry of the
//! whole invocation would only repeat the endpoints that went well. An
//! endpoint whose lease another sweep holds is reported, not failed.
#![forbid(unsafe_code)]

use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::config::Config;
use shared::outbound::executor::Connectors;
use shared::outbound::Budget;
use shared::queue::Queue;
use shared::reconcile::{
    Reconciler, SweepError, SweepOptions, SweepReport, SweepResult, UserSweepReport, WatermarkStore,
};
use shared::support::clock::Clock;
use std::sync::Arc;
use std::time::Duration;

/// Time kept free at the end of an invocation: give the lease back, answer.
pub const RESERVE: Duration = Duration::from_secs(10);
/// A sweep's lease outlives its invocation by this much, so that a sweep
/// killed by the timeout blocks the next scheduled run only if that run
/// starts within this margin of the deadline.
pub const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// Drift entries listed per endpoint in the answer (all are counted; the
/// log line and `relay reconcile --dry-run` give the rest).
pub const MAX_DRIFT_LISTED: usize = 50;

/// What the handler is built from, once per execution environment.
#[derive(Clone)]
pub struct Deps {
    pub config: Arc<Config>,
    pub connectors: Connectors,
    pub queue: Arc<dyn Queue>,
    pub store: Arc<dyn WatermarkStore>,
    pub clock: Arc<dyn Clock>,
}

/// A hand run's overrides.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Scan from here instead of the watermark.
    #[serde(default)]
    pub since: Option<jiff::Timestamp>,
    /// Report the drift, enqueue and store nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Only this endpoint.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// Reads the payload: a scheduled event or nothing is a plain sweep.
pub fn input(payload: &Value) -> Result<Input, String> {
    let scheduled = payload.get("source").and_then(Value::as_str) == Some("aws.events")
        || payload.get("detail-type").is_some();
    if payload.is_null() || scheduled {
        return Ok(Input::default());
    }
    serde_json::from_value(payload.clone()).map_err(|e| {
        format!(
            "invalid input ({e}); send a scheduled event or \
             {{\"since\": \"2026-05-01T08:00:00Z\", \"dry_run\": true, \"endpoint\": \"jira\"}} \
             (every key optional)"
        )
    })
}

/// One endpoint in the answer.
#[derive(Debug, Serialize)]
pub struct EndpointSummary {
    pub endpoint: String,
    /// `swept`, `stopped` (the next run resumes), `busy` (another sweep
    /// holds the lease) or `failed`.
    pub outcome: &'static str,
    /// Drift found in all (the report lists at most [`MAX_DRIFT_LISTED`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift_total: Option<usize>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub report: Option<SweepReport>,
    /// A user sweep's report (`reconcile_users:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<UserSweepReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of one invocation.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub request_id: String,
    pub dry_run: bool,
    pub endpoints: Vec<EndpointSummary>,
}

impl Summary {
    /// Every endpoint swept failed (and there was at least one).
    pub fn all_failed(&self) -> bool {
        !self.endpoints.is_empty() && self.endpoints.iter().all(|e| e.outcome == "failed")
    }
}

fn endpoint_summary(r: SweepResult) -> EndpointSummary {
    match r.outcome {
        Ok(mut report) => {
            let total = report.drift.len();
            report.drift.truncate(MAX_DRIFT_LISTED);
            EndpointSummary {
                endpoint: r.endpoint,
                outcome: if report.complete { "swept" } else { "stopped" },
                drift_total: Some(total),
                report: Some(report),
                users: None,
                error: None,
            }
        }
        Err(e) => EndpointSummary {
            endpoint: r.endpoint,
            outcome: if matches!(e, SweepError::Busy(_)) {
                "busy"
            } else {
                "failed"
            },
            drift_total: None,
            report: None,
            users: None,
            error: Some(e.to_string()),
        },
    }
}

/// A user sweep's outcome as an endpoint of the summary.
fn users_summary(endpoint: String, r: Result<UserSweepReport, SweepError>) -> EndpointSummary {
    match r {
        Ok(report) => EndpointSummary {
            endpoint,
            outcome: "swept",
            drift_total: Some(report.drift()),
            report: None,
            users: Some(report),
            error: None,
        },
        Err(e) => EndpointSummary {
            endpoint,
            outcome: "failed",
            drift_total: None,
            report: None,
            users: None,
            error: Some(e.to_string()),
        },
    }
}

/// One invocation: sweeps, then the summary (or a function error when every
/// endpoint failed, with their reasons).
pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let request_id = event.context.request_id.clone();
    let input = input(&event.payload).inspect_err(|e| {
        tracing::error!(request_id = %request_id, error = %e, "reconcile run refused");
    })?;
    let budget = Budget::until_unix_ms(event.context.deadline, deps.clock.now(), RESERVE);
    let mut reconciler = Reconciler::new(
        deps.config.clone(),
        deps.connectors.clone(),
        deps.queue.clone(),
        deps.store.clone(),
        deps.clock.clone(),
    );
    reconciler.lease = budget.remaining() + RESERVE + LEASE_MARGIN;
    let opts = SweepOptions {
        since: input.since,
        dry_run: input.dry_run,
        endpoint: input.endpoint,
        owner: request_id.clone(),
        ..SweepOptions::default()
    };
    // Issue sweeps (every endpoint with `reconcile:`, or the one asked
    // for), then user sweeps (`reconcile_users:`) on the same schedule.
    let results = if reconciler.sweeps_issues(opts.endpoint.as_deref()) {
        reconciler.sweep_all(&opts, &budget).await
    } else {
        Vec::new()
    };
    let mut endpoints: Vec<EndpointSummary> = results.into_iter().map(endpoint_summary).collect();
    for (name, r) in reconciler
        .sweep_users_all(opts.endpoint.as_deref(), opts.dry_run, &budget)
        .await
    {
        endpoints.push(users_summary(name, r));
    }
    let summary = Summary {
        request_id,
        dry_run: opts.dry_run,
        endpoints,
    };
    let failed = summary
        .endpoints
        .iter()
        .filter(|e| e.outcome == "failed")
        .count();
    tracing::info!(
        request_id = %summary.request_id,
        endpoints = summary.endpoints.len(),
        failed,
        dry_run = summary.dry_run,
        "reconcile run"
    );
    if summary.endpoints.is_empty() {
        tracing::warn!(
            "no endpoint has a `reconcile:` or `reconcile_users:` section; nothing to sweep"
        );
    }
    if summary.all_failed() {
        let reasons: Vec<String> = summary
            .endpoints
            .iter()
            .map(|e| format!("{}: {}", e.endpoint, e.error.as_deref().unwrap_or("")))
            .collect();
        return Err(format!("every sweep failed: {}", reasons.join("; ")).into());
    }
    Ok(serde_json::to_value(&summary)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scheduled_events_and_hand_runs() {
        let scheduled = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-05-01T10:15:00Z", "region": "eu-west-1",
            "resources": ["arn:aws:events:eu-west-1:123456789012:rule/jira-relay-prod-reconcile"],
            "detail": {}
        });
        assert_eq!(input(&scheduled).unwrap(), Input::default());
        assert_eq!(input(&Value::Null).unwrap(), Input::default());
        assert_eq!(input(&json!({})).unwrap(), Input::default());
        assert_eq!(
            input(&json!({"dry_run": true})).unwrap(),
            Input {
                dry_run: true,
                ..Input::default()
            }
        );
        assert_eq!(
            input(&json!({"since": "2026-05-01T08:00:00Z", "endpoint": "jira"})).unwrap(),
            Input {
                since: Some("2026-05-01T08:00:00Z".parse().unwrap()),
                dry_run: false,
                endpoint: Some("jira".into()),
            }
        );
        let typo = input(&json!({"dryrun": true})).unwrap_err();
        assert!(typo.contains("unknown field `dryrun`"), "{typo}");
        let bad_time = input(&json!({"since": "yesterday"})).unwrap_err();
        assert!(bad_time.starts_with("invalid input"), "{bad_time}");
        assert!(input(&json!("sweep")).is_err());
    }

    fn result(endpoint: &str, outcome: Result<SweepReport, SweepError>) -> EndpointSummary {
        endpoint_summary(SweepResult {
            endpoint: endpoint.into(),
            outcome,
        })
    }

    #[test]
    fn outcomes_and_the_function_error() {
        let swept = result(
            "jira",
            Ok(SweepReport {
                complete: true,
                scanned: 3,
                ..SweepReport::default()
            }),
        );
        let stopped = result("a", Ok(SweepReport::default()));
        let busy = result("b", Err(SweepError::Busy("b".into())));
        let failed = result("c", Err(SweepError::NotConfigured("c".into())));
        assert_eq!(
            [swept.outcome, stopped.outcome, busy.outcome, failed.outcome],
            ["swept", "stopped", "busy", "failed"]
        );
        let json = serde_json::to_value(&swept).unwrap();
        assert_eq!(json["endpoint"], "jira");
        assert_eq!(json["scanned"], 3);
        assert_eq!(json["drift_total"], 0);
        assert!(json.get("error").is_none());
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["error"], "endpoint `c` has no `reconcile:` section");
        assert!(json.get("scanned").is_none());

        let summary = |endpoints| Summary {
            request_id: "r".into(),
            dry_run: false,
            endpoints,
        };
        assert!(!summary(vec![]).all_failed());
        assert!(summary(vec![result("c", Err(SweepError::NoConnector("x".into())))]).all_failed());
        assert!(!summary(vec![
            busy,
            result("c", Err(SweepError::NoConnector("x".into())))
        ])
        .all_failed());
        assert!(!summary(vec![stopped, failed]).all_failed());
    }
}
