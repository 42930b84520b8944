//! Where the commands' logs go: stderr, for people or for collectors.

/// Human-readable lines on an interactive terminal, JSON lines otherwise
/// (journald, files, CloudWatch-like collectors). `RUST_LOG` sets the level.
/// Logs on stderr whatever stderr is, so stdout carries only the report
/// (`relay reconcile --json | jq`).
pub fn init_stderr() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        init();
    } else {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_target(false)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init();
    }
}

/// The compact human format on a terminal (one line per delivery plus
/// warnings), the shared JSON logs otherwise.
pub fn init() {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        // One line per delivery (the worker's outcome line) plus warnings.
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,relay::delivery=info"));
        let _ = tracing_subscriber::fmt()
            .compact()
            .with_target(false)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init();
    } else {
        shared::support::telemetry::init_json();
    }
}
