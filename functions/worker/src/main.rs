//! Worker Lambda: applies queued webhook events (SQS FIFO batches,
//! ReportBatchItemFailures) to the paired systems. Settings: see the
//! `lambda_host` crate (queue, dead-letter queue, link store table, timeouts).
#![forbid(unsafe_code)]

use lambda_host::Host;
use shared::worker::Worker;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let host = Host::start("worker").await?;
    let inbox = host.inbox()?;
    let core = Worker::new(
        host.config.clone(),
        host.connectors(),
        host.settings.batch.clone(),
    )
    .with_links(host.links());
    let (core, inbox) = (&core, &inbox);
    lambda_runtime::run(lambda_runtime::service_fn(move |event| async move {
        Ok::<_, lambda_runtime::Error>(worker::handle(core, inbox, event).await)
    }))
    .await
}
