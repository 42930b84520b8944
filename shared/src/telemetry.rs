//! Log set-up shared by every host.
//!
//! JSON lines with the event's fields at the top level, so CloudWatch Logs
//! Insights can filter on them directly. Stable field names used across the
//! relay: `endpoint`, `event`, `delivery_id`, `source_key`, `outcome`,
//! `reason`, `status`, `duration_ms`. Lines inside a span (the worker has one
//! per SQS message) carry it as `span.message_id` etc. No secret ever goes
//! into a field.

use tracing_subscriber::EnvFilter;

/// JSON logs to stdout; the level comes from `RUST_LOG` (default `info`).
/// Safe to call more than once (later calls do nothing).
pub fn init_json() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}
