//! Reconciler Lambda: the composition root. Tracing, metrics, config and
//! clients built once (the HTTP pool and the cached secrets and OAuth tokens
//! live across invocations), then `lambda_runtime::run` on the handler of
//! the library. EventBridge invokes it on the template's `ReconcileRate`;
//! `ReservedConcurrentExecutions: 1` keeps two sweeps from overlapping.
//!
//! Environment:
//! - `RELAY_CONFIG` (default `/opt/relay.yaml`, the config layer)
//! - `RELAY_QUEUE_URL` (the FIFO queue the worker consumes; drift goes there)
//! - `RELAY_WATERMARK_PREFIX` (SSM parameter path of the watermarks, e.g.
//!   `/jira-relay/prod/reconcile`)
//! - `RELAY_CALL_TIMEOUT_MS` (default 10000, per Jira / ServiceNow call)
//! - plus whatever `${NAME}` the config interpolates.
#![forbid(unsafe_code)]

use reconciler::Deps;
use shared::config::Config;
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::rest::ConnectorSettings;
use shared::queue::SqsQueue;
use shared::reconcile::SsmStore;
use shared::secrets::{AwsSecretStore, CachedSecretStore};
use shared::support::clock::SystemClock;
use std::sync::Arc;
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::support::telemetry::init_json();
    shared::support::metrics::install_from_env();
    let fail = |e: String| {
        tracing::error!(error = %e, "the reconciler cannot start");
        e
    };
    let config_path = env("RELAY_CONFIG").unwrap_or_else(|| "/opt/relay.yaml".into());
    let config = Config::load(&config_path).map_err(|e| fail(e.to_string()))?;
    let queue_url =
        env("RELAY_QUEUE_URL").ok_or_else(|| fail("RELAY_QUEUE_URL is not set".into()))?;
    let prefix = env("RELAY_WATERMARK_PREFIX")
        .ok_or_else(|| fail("RELAY_WATERMARK_PREFIX is not set".into()))?;
    let mut settings = ConnectorSettings::default();
    if let Some(v) = env("RELAY_CALL_TIMEOUT_MS") {
        let ms: u64 = v
            .parse()
            .map_err(|_| fail(format!("RELAY_CALL_TIMEOUT_MS=`{v}` is not a whole number")))?;
        settings.call_timeout = Duration::from_millis(ms);
    }
    let sdk = shared::support::aws::sdk_config(None).await;
    let clock = Arc::new(SystemClock);
    let store =
        SsmStore::from_conf(&sdk, prefix, clock.clone()).map_err(|e| fail(e.to_string()))?;
    let secrets = Arc::new(CachedSecretStore::new(AwsSecretStore::from_conf(&sdk)));
    let deps = Deps {
        connectors: Connectors::from_config(&config, http_client(), secrets, settings),
        config: Arc::new(config),
        queue: Arc::new(SqsQueue::from_conf(&sdk, queue_url)),
        store: Arc::new(store),
        clock,
    };
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        reconciler::handle(deps, event).await
    }))
    .await
}
