//! Ingress Lambda: authenticates a webhook, enqueues it on the FIFO queue,
//! answers 202. Settings: see the `lambda_host` crate (`RELAY_CONFIG`,
//! `RELAY_QUEUE_URL`).
#![forbid(unsafe_code)]

use lambda_host::Host;
use shared::intake::router::{app, IngressState};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let host = Host::start("ingress").await?;
    let state = IngressState {
        queue: Arc::new(host.queue()?),
        config: host.config,
        secrets: host.secrets,
        clock: host.clock,
    };
    lambda_http::run(app(state)).await
}
