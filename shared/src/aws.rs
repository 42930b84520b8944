//! Building AWS SDK configuration for the adapters (feature `aws`).
//!
//! The ingress has seconds, not minutes, to answer Jira: every AWS call gets a
//! short attempt and operation timeout so that an unreachable queue or secret
//! store turns into a prompt 503 (and Jira's retry) instead of a hung request.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use std::time::Duration;

/// Loads the standard AWS configuration (credential chain, region,
/// `AWS_ENDPOINT_URL`) with timeouts fit for a webhook handler. `endpoint`
/// overrides the endpoint (tests point it at a local emulator).
pub async fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
