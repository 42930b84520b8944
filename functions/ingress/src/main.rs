//! Ingress Lambda: the composition root. Tracing, config, clients built once,
//! then `lambda_http::run` on the shared ingress router.
//!
//! Environment: `RELAY_CONFIG` (default `/opt/relay.yaml`, the config layer),
//! `RELAY_QUEUE_URL` (the SQS FIFO queue), plus whatever `${NAME}` the config
//! interpolates (e.g. `RELAY_WEBHOOK_SECRET_ARN`).
#![forbid(unsafe_code)]

use shared::config::Config;
use shared::intake::router::{app, IngressState};
use shared::queue::SqsQueue;
use shared::secrets::{AwsSecretStore, CachedSecretStore};
use shared::support::clock::SystemClock;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::support::telemetry::init_json();
    shared::support::metrics::install_from_env();
    let config_path = std::env::var("RELAY_CONFIG").unwrap_or_else(|_| "/opt/relay.yaml".into());
    let config = Config::load(&config_path).inspect_err(|e| {
        tracing::error!(error = %e, "configuration is invalid; the ingress cannot start");
    })?;
    let queue_url = std::env::var("RELAY_QUEUE_URL").map_err(|_| {
        tracing::error!("RELAY_QUEUE_URL is not set; the ingress cannot start");
        "RELAY_QUEUE_URL is not set"
    })?;
    let sdk = shared::support::aws::sdk_config(None).await;
    let state = IngressState {
        config: Arc::new(config),
        secrets: Arc::new(CachedSecretStore::new(AwsSecretStore::from_conf(&sdk))),
        queue: Arc::new(SqsQueue::from_conf(&sdk, queue_url)),
        clock: Arc::new(SystemClock),
    };
    lambda_http::run(app(state)).await
}
