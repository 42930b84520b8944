//! `relay check --live CONFIG`: the config loaded as `relay validate` loads
//! it, then every project, issue type, field, transition, permission,
//! table, column and choice value it names asked of the live systems with
//! the connections' credentials. Each problem with its config line and a
//! fix; exit code 1 when there is any (for CI).

use super::{emit, load, runtime};
use crate::live;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The relay's config file.
    config: PathBuf,
    /// Ask the live Jira and ServiceNow the config's connections point at.
    #[arg(long)]
    live: bool,
    /// Local secrets file (chmod 600) with the connections' credentials;
    /// `RELAY_SECRET_<ID>` variables override it.
    #[arg(long)]
    secrets: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<(), String> {
    if !a.live {
        load(&a.config)?;
        return Err(format!(
            "{}: valid; pass --live to check it against the systems it connects (`relay validate` checks the file alone)",
            a.config.display()
        ));
    }
    live(&a.config, a.secrets.as_deref())
}

/// The live check of the config at `path`; problems as the error.
pub fn live(path: &Path, secrets: Option<&Path>) -> Result<(), String> {
    let config = load(&path.to_path_buf())?;
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {file}: {e}"))?;
    let secrets: Arc<dyn shared::secrets::SecretStore> =
        Arc::new(crate::serve::open_secrets(secrets)?);
    let report = runtime()?.block_on(live::check(&config, &text, secrets));
    let mut out: String = report
        .systems
        .iter()
        .map(|s| format!("read {s}\n"))
        .collect();
    let tail = format!(
        "{} name(s) and value(s) checked; {} mapped value(s) come from the events and are not checked here",
        report.checked, report.from_events
    );
    if report.problems.is_empty() {
        out.push_str(&format!("{file}: live check passed: {tail}\n"));
        return emit(&out);
    }
    emit(&out)?;
    Err(format!(
        "{}\n{file}: live check found {} problem(s); {tail}",
        shared::config::render_problems(path, &report.problems),
        report.problems.len()
    ))
}
