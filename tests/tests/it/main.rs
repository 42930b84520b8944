//! Integration tests: one binary, a module per flow. Inside a test,
//! `// given`, `// when` and `// then` comments mark its phases (`// and`
//! continues the one before); a test may go through several when/then
//! rounds.
//! - `bad_input`: the bad-input matrix (`tests/data/bad-input.yaml`, rendered
//!   to `docs/bad-input.md`) over the intake and the worker.
//! - `router`: the ingress router in-process (oneshot) over every real fixture
//!   and the status contract.
//! - `sqs`: the router over a real socket, enqueuing into moto's SQS FIFO with
//!   secrets from moto's Secrets Manager, read back with the real SDK.
//! - `worker_flow`: fixtures through ingress → moto SQS → the worker Lambda's
//!   handler → the Jira and ServiceNow contract servers, faults included.
//! - `moto_checks`: what the emulator really does (FIFO dedup, AWSPREVIOUS,
//!   SSM overwrite).
//! - `reconcile_lambda`: the reconciler Lambda's handler over moto and the
//!   contract servers (a lost webhook healed by the scheduled sweep).
//! - `reconcile_ssm`: the reconciler's watermark store on moto's SSM.
//! - `links_dynamo`: the link store on moto's DynamoDB (contract, conditional
//!   write, lazy TTL, the typed API with a moving clock, an unreachable store).
//! - `oauth3lo`: Jira OAuth 2.0 (3LO) with rotating refresh tokens, written back.
//! - `soak_sqs`: the fault-injection soak through moto SQS and the worker handler.
//! - `secret_hygiene`: canary secrets through the main scenarios; none may
//!   reach a log line, an error body, `Debug`, a dead letter or a panic.
//! - `servicenow_script`: `infra/servicenow/`'s payloads (built by Node) through the relay.

mod bad_input;
mod configs;
mod deletes;
mod identity;
mod jsm;
mod languages;
mod links_dynamo;
mod logcap;
mod moto_checks;
mod names;
mod oauth3lo;
mod reconcile;
mod reconcile_lambda;
mod reconcile_ssm;
mod router;
mod secret_hygiene;
mod servicenow_script;
mod soak_sqs;
mod sqs;
mod tables;
mod two_way;
mod users;
mod worker_flow;

use axum::body::Body;
use http::{Request, StatusCode};
use shared::config::Config;
use tower::ServiceExt;

pub const TOKEN: &str = "tok-current-7f3a";
pub const TOKEN_OLD: &str = "tok-previous-19c2";
pub const HMAC_KEY: &str = "hmac-current-5b1e";

/// `tests/configs/intake.yaml`: a Jira endpoint (token or HMAC), a strict
/// one (both) and a ServiceNow endpoint (Basic), all reading secret
/// `webhook_secret` (`relay/webhook`, or a unique id in the emulator).
pub fn config(webhook_secret: &str, limit: usize) -> Config {
    relay_tests::test_config(
        "intake.yaml",
        &[
            ("WEBHOOK_SECRET", webhook_secret),
            ("MAX_BODY_BYTES", &limit.to_string()),
        ],
    )
}

/// Sends one request through the router, returning status, headers and JSON
/// body (Null when the body is not JSON).
pub async fn call(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, http::HeaderMap, serde_json::Value) {
    let res = app.clone().oneshot(req).await.expect("router never errors");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}
