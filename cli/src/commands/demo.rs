//! `relay demo`: sandbox ServiceNow + Jira, example webhooks, the result.

use super::runtime;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Where the operator console listens (its demo credential is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    console: std::net::SocketAddr,
    /// Keep the demo's files here instead of a temporary folder.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Exit after printing the result instead of staying up.
    #[arg(long)]
    no_wait: bool,
}

pub fn run(a: Args) -> Result<(), String> {
    crate::logs::init();
    let report = runtime()?.block_on(crate::demo::run(
        a.listen, a.console, a.data_dir, !a.no_wait,
    ))?;
    if report.incident.is_none() {
        return Err("the demo did not produce its incident".into());
    }
    Ok(())
}
