//! SANDBOXES, not products: contract-true stand-ins for ServiceNow and Jira
//! Cloud that keep their records in memory, answer like the real APIs (the
//! Jira one checks every request against the Jira Cloud OpenAPI spec when the
//! team fixtures are present) and inject faults on demand. The integration
//! tests write to them, and `relay demo` shows the relay working against
//! them on a machine with no Jira and no ServiceNow. No production code path
//! knows them.
#![forbid(unsafe_code)]

pub mod canary;
pub mod faults;
pub mod jira_server;
pub mod openapi;
pub mod servicenow_server;
pub mod soak;

use std::path::PathBuf;

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (loudly) or, under `CI=true`, fails when a prerequisite is missing.
pub fn missing(what: &str, how: &str) {
    if under_ci() {
        panic!("{what} is missing under CI=true: {how}");
    }
    eprintln!("\n*** SKIPPED: {what} is missing ({how}) ***\n");
}

/// The team fixtures folder: `$RELAY_FIXTURES_DIR`, else `../shared/fixtures`
/// beside the repository root. `None` (after a loud skip message) when absent
/// outside CI; panics under CI.
pub fn fixtures_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("RELAY_FIXTURES_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    };
    if dir.join("jira-webhooks").is_dir() {
        Some(dir)
    } else {
        missing(
            &format!("fixtures folder {}", dir.display()),
            "set RELAY_FIXTURES_DIR or check out the team folder beside the repo",
        );
        None
    }
}
