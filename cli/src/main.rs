//! `relay`: the operator's command.
//!
//! `validate` loads a config exactly as the functions do and prints every
//! problem with file:line; `schema` prints the config's JSON Schema (the file
//! shipped in `schema/`); `dry-run` plans one webhook body through the
//! whitelist and rules and prints the plan — the decision and the exact
//! requests — without any network. `relay serve` (the one-machine host) is a
//! later issue.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use shared::config::{Config, ConfigError};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "relay", version, about = "jira-relay operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a config file; exit 0 if valid, else print every problem.
    Validate { config: PathBuf },
    /// Print the JSON Schema of the config file.
    Schema,
    /// Plan one webhook body (a JSON file) and print the plan as JSON.
    DryRun {
        #[arg(long)]
        config: PathBuf,
        /// Endpoint the event arrived on; defaults to the only endpoint, or the
        /// first one of the payload's kind.
        #[arg(long)]
        endpoint: Option<String>,
        event: PathBuf,
    },
}

fn load(path: &PathBuf) -> Result<Config, String> {
    Config::load(path).map_err(|e| match e {
        ConfigError::Invalid { .. } => e.to_string(),
        ConfigError::Io { .. } => e.to_string(),
    })
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Validate { config } => {
            let c = load(&config)?;
            emit(&format!(
                "{}: valid ({} endpoints, {} connections, {} rules)\n",
                config.display(),
                c.endpoints.len(),
                c.connections.len(),
                c.rules.len()
            ))
        }
        Command::Schema => emit(&shared::schema::config_schema_text()),
        Command::DryRun {
            config,
            endpoint,
            event,
        } => {
            let c = load(&config)?;
            let body = std::fs::read(&event)
                .map_err(|e| format!("cannot read {}: {e}", event.display()))?;
            let payload: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("{}: not JSON: {e}", event.display()))?;
            let endpoint = match endpoint {
                Some(e) => e,
                None => pick_endpoint(&c, &payload)?,
            };
            let plan = shared::rules::plan(&c, &endpoint, &payload).map_err(|e| e.to_string())?;
            let json = serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?;
            emit(&(json + "\n"))
        }
    }
}

/// Writes to stdout; a closed pipe (`relay schema | head`) is not an error.
fn emit(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
