//! What every layer uses and that knows nothing of webhooks: the clock port,
//! time formats, URL helpers, metrics, log set-up and the AWS SDK defaults.

#[cfg(feature = "aws")]
pub mod aws;
pub mod clock;
pub mod error;
pub mod metrics;
#[cfg(feature = "prometheus")]
pub mod prometheus;
pub mod random;
pub mod telemetry;
pub mod timefmt;
pub mod url;
