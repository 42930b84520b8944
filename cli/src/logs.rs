//! Where the commands' logs go: stderr, for people or for collectors. The
//! set-up itself is the core's ([`shared::support::telemetry::init`]).

use shared::support::telemetry::{init as init_logs, Logs};
use std::io::IsTerminal;

/// One line per delivery (the worker's outcome line) plus warnings.
const HUMAN: Logs = Logs {
    json: false,
    stderr: true,
    default: "warn,relay::delivery=info",
};

/// Human-readable lines on an interactive terminal, JSON lines otherwise
/// (journald, files, CloudWatch-like collectors). `RUST_LOG` sets the level.
/// Logs on stderr whatever stderr is, so stdout carries only the report
/// (`relay reconcile --json | jq`).
pub fn init_stderr() {
    init_logs(if std::io::stderr().is_terminal() {
        HUMAN
    } else {
        Logs {
            json: true,
            stderr: true,
            default: "warn",
        }
    });
}

/// The compact human format on a terminal, the Lambdas' JSON lines on stdout
/// otherwise.
pub fn init() {
    init_logs(if std::io::stderr().is_terminal() {
        HUMAN
    } else {
        Logs::LAMBDA
    });
}
