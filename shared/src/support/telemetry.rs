//! Log set-up shared by every host.
//!
//! JSON lines with the event's fields at the top level, so CloudWatch Logs
//! Insights can filter on them directly. Stable field names used across the
//! relay: `endpoint`, `event`, `delivery_id`, `source_key`, `outcome`,
//! `reason`, `status`, `duration_ms`. Lines inside a span (the worker has one
//! per SQS message) carry it as `span.message_id` etc. No secret ever goes
//! into a field.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How a host logs: the one set-up of every binary (the Lambdas, `relay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Logs {
    /// JSON lines (collectors, CloudWatch) or the compact human format.
    pub json: bool,
    /// Standard error instead of standard output (a CLI whose stdout is a report).
    pub stderr: bool,
    /// The filter when `RUST_LOG` is unset, in the same syntax.
    pub default: &'static str,
}

impl Logs {
    /// The Lambdas: JSON lines on stdout at `info`.
    pub const LAMBDA: Logs = Logs {
        json: true,
        stderr: false,
        default: "info",
    };
}

/// JSON logs to stdout; the level comes from `RUST_LOG` (default `info`).
/// Safe to call more than once (later calls do nothing).
pub fn init_json() {
    init(Logs::LAMBDA);
}

/// Sets up logging once per process (later calls do nothing).
///
/// `RUST_LOG` takes a level and per-module levels (`info`, `debug`,
/// `info,shared::outbound=debug`): `tracing_subscriber`'s `Targets` syntax, the
/// target part of `EnvFilter`'s without span and field filters, whose regex
/// engine the Lambda binaries do not carry. A value it cannot read is reported
/// in the log and the default is used.
pub fn init(logs: Logs) {
    let (filter, refused) = log_filter(std::env::var("RUST_LOG").ok().as_deref(), logs.default);
    let writer = move || -> Box<dyn std::io::Write> {
        if logs.stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if logs.json {
        let fmt = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_target(false)
            .with_ansi(false)
            .with_writer(writer);
        registry.with(fmt).try_init().is_ok()
    } else {
        let fmt = tracing_subscriber::fmt::layer()
            .compact()
            .with_target(false)
            .with_writer(writer);
        registry.with(fmt).try_init().is_ok()
    };
    if installed {
        if let Some(value) = refused {
            tracing::warn!(rust_log = %value, "RUST_LOG not understood; logging at the default");
        }
    }
}

/// The filter for a `RUST_LOG` value, and the value if it was refused.
fn log_filter(value: Option<&str>, default: &str) -> (Targets, Option<String>) {
    let fallback = || {
        default
            .parse::<Targets>()
            .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO))
    };
    match value.map(str::trim) {
        None | Some("") => (fallback(), None),
        Some(v) => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(_) => (fallback(), Some(v.chars().take(200).collect())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_values() {
        let on = |v: Option<&str>, target: &str, level| {
            log_filter(v, "info").0.would_enable(target, &level)
        };
        assert!(on(None, "shared", Level::INFO) && !on(None, "shared", Level::DEBUG));
        assert!(on(Some("debug"), "shared", Level::DEBUG));
        let v = Some("warn,shared::connector=debug");
        assert!(on(v, "shared::connector::rest", Level::DEBUG));
        assert!(!on(v, "shared::envelope", Level::INFO) && on(v, "shared::envelope", Level::WARN));
        // EnvFilter's span filters are not understood: reported, and info used.
        let (t, refused) = log_filter(Some("[span{a=1}]=debug"), "info");
        assert_eq!(refused.as_deref(), Some("[span{a=1}]=debug"));
        assert!(t.would_enable("shared", &Level::INFO) && !t.would_enable("shared", &Level::DEBUG));
        // A host's own default (relay serve on a terminal).
        let (t, _) = log_filter(None, "warn,relay::delivery=info");
        assert!(t.would_enable("relay::delivery", &Level::INFO));
        assert!(!t.would_enable("shared::worker", &Level::INFO));
    }
}
