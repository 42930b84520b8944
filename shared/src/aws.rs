//! Building AWS SDK configuration for the adapters (feature `aws`).
//!
//! The ingress has seconds, not minutes, to answer Jira: every AWS call gets a
//! short attempt and operation timeout so that an unreachable queue or secret
//! store turns into a prompt 503 (and Jira's retry) instead of a hung request.
//!
//! The SDK crates are built without `default-https-client` (rustls on aws-lc):
//! [`defaults`] gives them an HTTPS client on rustls with *ring*, the provider the
//! connectors' reqwest client already links, so a binary carries one TLS stack.
//! Every SDK configuration of the project starts from [`defaults`]; one loaded
//! from `aws_config::defaults` alone has no HTTP client and fails its first call.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use std::time::Duration;

/// `aws_config::defaults` (latest behaviour version) with the project's HTTPS
/// client: rustls with ring, the platform's trust roots (loaded on the first
/// connection, not here). Plain `http://` endpoints (a local emulator) work too.
pub fn defaults() -> ConfigLoader {
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(client)
}

/// Loads the standard AWS configuration (credential chain, region,
/// `AWS_ENDPOINT_URL`) with timeouts fit for a webhook handler. `endpoint`
/// overrides the endpoint (tests point it at a local emulator).
pub async fn sdk_config(endpoint: Option<&str>) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    let mut loader = defaults().timeout_config(timeouts);
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
