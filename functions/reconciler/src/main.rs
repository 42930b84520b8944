//! Reconciler Lambda: on the template's `ReconcileRate`, sweeps Jira for
//! changes whose webhooks never arrived and enqueues them
//! (`ReservedConcurrentExecutions: 1` keeps two sweeps apart). Settings: see
//! the `lambda_host` crate (`RELAY_QUEUE_URL`, `RELAY_WATERMARK_PREFIX`).
#![forbid(unsafe_code)]

use lambda_host::Host;
use reconciler::Deps;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let host = Host::start("reconciler").await?;
    let deps = Deps {
        connectors: host.connectors(),
        queue: Arc::new(host.queue()?),
        store: Arc::new(host.watermarks()?),
        config: host.config.clone(),
        clock: host.clock.clone(),
    };
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        reconciler::handle(deps, event).await
    }))
    .await
}
