//! Worker Lambda: the composition root. Tracing, config, clients built once
//! (so the HTTP connection pool and the cached secrets and OAuth tokens live
//! across invocations), then `lambda_runtime::run` on the SQS batch handler.
//!
//! Environment:
//! - `RELAY_CONFIG` (default `/opt/relay.yaml`, the config layer)
//! - `RELAY_QUEUE_URL` (the source FIFO queue; for redelivery delays)
//! - `RELAY_DLQ_URL` (the dead-letter FIFO queue the worker writes to)
//! - `RELAY_MAX_RECEIVE_COUNT` (the queue's redrive `maxReceiveCount`; on that
//!   receive a retryable failure is dead-lettered with its reason)
//! - `RELAY_CALL_TIMEOUT_MS` (default 10000), `RELAY_MAX_ATTACHMENT_BYTES`
//!   (default 20 MiB), `RELAY_PARALLEL_GROUPS` (default 4)
//! - `RELAY_LINKS_TABLE`: the link store's DynamoDB table (the template's
//!   `LinksTable`; required when deployed). **Unset, the worker logs a loud
//!   warning and keeps its links in memory**: record pairs, deliveries seen
//!   and parked events then last only as long as one Lambda instance, and
//!   concurrent instances do not share them (a local run can do without).
//! - `RELAY_SEEN_TTL_SECONDS` (default 7200): how long a delivery is
//!   recognised as seen (Jira retries for about 75 minutes);
//!   `RELAY_PARK_SECONDS` (default 86400): how long an event waits for its
//!   record before it is dead-lettered
//! - plus whatever `${NAME}` the config interpolates.
#![forbid(unsafe_code)]

use shared::config::Config;
use shared::links::dynamo::DynamoBackend;
use shared::links::{LinkSettings, Links, MemoryBackend};
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::rest::ConnectorSettings;
use shared::queue::SqsInbox;
use shared::secrets::{AwsSecretStore, CachedSecretStore};
use shared::worker::{BatchSettings, Worker};

use std::sync::Arc;
use std::time::Duration;

fn env_num(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}=`{v}` is not a whole number")),
        _ => Ok(None),
    }
}

/// A duration in whole seconds, at least one.
fn env_secs(name: &str) -> Result<Option<Duration>, String> {
    match env_num(name)? {
        Some(0) => Err(format!("{name}=0: give at least 1 second")),
        n => Ok(n.map(Duration::from_secs)),
    }
}

fn required(name: &str) -> Result<String, String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::support::telemetry::init_json();
    shared::support::metrics::install_from_env();
    let fail = |e: String| {
        tracing::error!(error = %e, "the worker cannot start");
        e
    };
    let config_path = std::env::var("RELAY_CONFIG").unwrap_or_else(|_| "/opt/relay.yaml".into());
    let config = Config::load(&config_path).map_err(|e| fail(e.to_string()))?;
    let queue_url = required("RELAY_QUEUE_URL").map_err(fail)?;
    let dlq_url = required("RELAY_DLQ_URL").map_err(fail)?;
    let mut connector = ConnectorSettings::default();
    if let Some(ms) = env_num("RELAY_CALL_TIMEOUT_MS").map_err(fail)? {
        connector.call_timeout = Duration::from_millis(ms);
    }
    let mut batch = BatchSettings {
        max_receive_count: env_num("RELAY_MAX_RECEIVE_COUNT")
            .map_err(fail)?
            .map(|n| n as u32),
        ..BatchSettings::default()
    };
    if let Some(n) = env_num("RELAY_MAX_ATTACHMENT_BYTES").map_err(fail)? {
        connector.max_attachment_bytes = n;
        batch.max_attachment_bytes = n;
    }
    if let Some(n) = env_num("RELAY_PARALLEL_GROUPS").map_err(fail)? {
        batch.parallel_groups = n.max(1) as usize;
    }
    let mut link_settings = LinkSettings::default();
    if let Some(d) = env_secs("RELAY_SEEN_TTL_SECONDS").map_err(fail)? {
        link_settings.seen_for = d;
    }
    if let Some(d) = env_secs("RELAY_PARK_SECONDS").map_err(fail)? {
        link_settings.park_for = d;
    }
    let sdk = shared::support::aws::sdk_config(None).await;
    let links = match std::env::var("RELAY_LINKS_TABLE") {
        Ok(table) if !table.is_empty() => {
            tracing::info!(table = %table, "link store: DynamoDB");
            Links::new(
                Arc::new(DynamoBackend::from_conf(&sdk, table)),
                link_settings,
            )
        }
        _ => {
            tracing::warn!(
                "RELAY_LINKS_TABLE is not set: the link store is IN MEMORY. Pairs, deliveries \
                 seen and parked events are lost with this instance and not shared with the \
                 others. Deployed, the template sets it to the LinksTable."
            );
            Links::new(Arc::new(MemoryBackend::default()), link_settings)
        }
    };
    let secrets = Arc::new(CachedSecretStore::new(AwsSecretStore::from_conf(&sdk)));
    let connectors = Connectors::from_config(&config, http_client(), secrets, connector);
    let core = Worker::new(Arc::new(config), connectors, batch).with_links(links);
    let inbox = SqsInbox::from_conf(&sdk, queue_url, dlq_url);
    let (core, inbox) = (&core, &inbox);
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        Ok::<_, lambda_runtime::Error>(worker::handle(core, inbox, event).await)
    }))
    .await
}
