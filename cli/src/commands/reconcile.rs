//! `relay reconcile`: one sweep by hand; what it finds goes to the queue of
//! `relay serve` (or is only printed: `--dry-run`).

use super::{emit, load, runtime};
use crate::reconcile;
use crate::serve::{open_cached_secrets, open_data_queue};
use shared::secrets::SecretStore;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
    /// Only this endpoint (default: every endpoint with `reconcile:`).
    #[arg(long)]
    endpoint: Option<String>,
    /// Scan issues updated since then: an RFC 3339 time or a span back from now
    /// (`90m`, `2h`, `7d`); default: the last finished sweep, minus the overlap.
    #[arg(long)]
    since: Option<String>,
    /// Print the drift; enqueue nothing, move no watermark.
    #[arg(long)]
    dry_run: bool,
    /// The queue and watermark database (the same as `relay serve`'s).
    #[arg(long, default_value = ".relay")]
    data_dir: PathBuf,
    /// Local secrets file (chmod 600); `RELAY_SECRET_<ID>` variables override it.
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), String> {
    let c = Arc::new(load(&a.config)?);
    if c.reconcile.is_empty() && c.reconcile_users.is_empty() {
        return Err(format!(
            "{}: no endpoint has a `reconcile:` or `reconcile_users:` section (see docs/reconcile.md, docs/identity.md)",
            a.config.display()
        ));
    }
    if let Some(e) = &a.endpoint {
        if !c.reconcile.contains_key(e) && !c.reconcile_users.contains_key(e) {
            return Err(format!(
                "endpoint `{e}` has no `reconcile:` or `reconcile_users:` section"
            ));
        }
    }
    let since = a.since.as_deref().map(reconcile::parse_since).transpose()?;
    crate::logs::init_stderr();
    runtime()?.block_on(async {
        let secrets: Arc<dyn SecretStore> = Arc::new(open_cached_secrets(a.secrets.as_deref())?);
        let queue = open_data_queue(&a.data_dir, shared::queue::EmbeddedSettings::default())?;
        let r = reconcile::reconciler(
            c,
            secrets,
            Arc::new(queue),
            &a.data_dir,
            std::time::Duration::from_secs(10),
        )?;
        let results = if r.sweeps_issues(a.endpoint.as_deref()) {
            reconcile::run_once(&r, a.endpoint.clone(), since, a.dry_run).await
        } else {
            Vec::new()
        };
        let users = reconcile::run_users(
            &r,
            a.endpoint.as_deref(),
            a.dry_run,
            std::time::Duration::from_secs(3600),
        )
        .await;
        if a.json {
            let v: Vec<serde_json::Value> = results
                .iter()
                .map(|r| match &r.outcome {
                    Ok(rep) => serde_json::json!({"endpoint": r.endpoint, "report": rep}),
                    Err(e) => serde_json::json!({"endpoint": r.endpoint, "error": e.to_string()}),
                })
                .chain(users.iter().map(|(endpoint, r)| match r {
                    Ok(rep) => serde_json::json!({"endpoint": endpoint, "users": rep}),
                    Err(e) => serde_json::json!({"endpoint": endpoint, "error": e.to_string()}),
                }))
                .collect();
            emit(&format!("{}\n", serde_json::Value::Array(v)))?;
        } else {
            emit(&reconcile::render(&results))?;
            emit(&reconcile::render_users(&users))?;
        }
        let failed = results.iter().any(|r| match &r.outcome {
            Ok(rep) => !rep.complete,
            Err(_) => true,
        }) || users.iter().any(|(_, r)| r.is_err());
        if failed {
            Err("the sweep did not finish (see above); run it again to resume".into())
        } else {
            Ok(())
        }
    })
}
