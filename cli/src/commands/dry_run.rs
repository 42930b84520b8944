//! `relay dry-run`: plan one webhook body through the whitelist and rules and
//! print the plan — the decision and the exact requests — without any network.

use super::{emit, load};
use shared::config::Config;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
    /// Endpoint the event arrived on; defaults to the only endpoint, or the
    /// first one of the payload's kind.
    #[arg(long)]
    endpoint: Option<String>,
    event: PathBuf,
}

pub fn run(a: Args) -> Result<(), String> {
    let c = load(&a.config)?;
    let body =
        std::fs::read(&a.event).map_err(|e| format!("cannot read {}: {e}", a.event.display()))?;
    let payload: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("{}: not JSON: {e}", a.event.display()))?;
    emit(&plan_text(&c, a.endpoint, &payload)?)
}

/// The plan as `relay dry-run` prints it (pretty JSON and a newline); the
/// console's dry-run box shows the same text.
pub fn plan_text(
    c: &Config,
    endpoint: Option<String>,
    payload: &serde_json::Value,
) -> Result<String, String> {
    let endpoint = match endpoint.filter(|e| !e.is_empty()) {
        Some(e) => e,
        None => pick_endpoint(c, payload)?,
    };
    let plan = shared::rules::plan(c, &endpoint, payload).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?;
    Ok(json + "\n")
}

/// The only endpoint, or the only one of the payload's apparent kind
/// (`webhookEvent` means Jira).
fn pick_endpoint(c: &Config, payload: &serde_json::Value) -> Result<String, String> {
    if let [only] = c.endpoints.as_slice() {
        return Ok(only.name.clone());
    }
    let kind = if payload.get("webhookEvent").is_some() {
        shared::config::SourceKind::Jira
    } else {
        shared::config::SourceKind::Servicenow
    };
    let of_kind: Vec<&str> = c
        .endpoints
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.name.as_str())
        .collect();
    match of_kind.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(format!(
            "several endpoints could take this event; pass --endpoint (one of: {})",
            c.endpoints
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
