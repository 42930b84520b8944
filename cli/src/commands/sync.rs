//! `relay sync`: the first sync of existing issues. Every issue the JQL
//! finds is compared with its twin as a reconciliation sweep compares it
//! (docs/reconcile.md); what is missing is queued for `relay serve`'s
//! workers, through the same rules: an issue without a record is created,
//! one whose record exists but does not know it is paired (the pairing
//! written back), one already paired is left alone. Progress is kept in the
//! data directory after every page, so a stopped or killed sync resumes
//! where it was; `--restart` starts over.

use super::{emit, load, runtime};
use crate::reconcile;
use crate::serve::{open_cached_secrets, open_data_queue};
use shared::outbound::Budget;
use shared::reconcile::{
    DriftKind, PageHook, SqliteStore, SweepOptions, SweepReport, Watermark, WatermarkStore,
};
use shared::secrets::SecretStore;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
    /// The issues to connect, e.g. `project = SUP AND statusCategory != Done`
    /// (no ORDER BY: the sync pages by creation time).
    #[arg(long)]
    jql: String,
    /// The Jira endpoint whose rules apply (default: the only one with a
    /// `reconcile:` section, which names the Jira connection and the
    /// pairing rule).
    #[arg(long)]
    endpoint: Option<String>,
    /// Print what would be connected; queue nothing, keep no progress.
    #[arg(long)]
    dry_run: bool,
    /// At most this many issues a second (Jira's and ServiceNow's rate
    /// limits; their 429 answers are honoured as well).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Forget the progress of an earlier run of this JQL and start over.
    #[arg(long)]
    restart: bool,
    /// The queue and progress database (the same as `relay serve`'s).
    #[arg(long, default_value = ".relay")]
    data_dir: PathBuf,
    /// Local secrets file (chmod 600); `RELAY_SECRET_<ID>` variables override it.
    #[arg(long)]
    secrets: Option<PathBuf>,
}

/// FNV-1a of the JQL: each query keeps its own progress.
fn state_key(endpoint: &str, jql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in jql.trim().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("sync:{endpoint}:{h:016x}")
}

fn line(r: &SweepReport) -> String {
    let count = |f: fn(&DriftKind) -> bool| r.drift.iter().filter(|d| f(&d.kind)).count();
    format!(
        "sync: {} issues scanned ({} pages), {} to create, {} to pair, {} behind, {} left alone; {} queued",
        r.scanned,
        r.pages,
        count(|k| matches!(k, DriftKind::Missing)),
        count(|k| matches!(k, DriftKind::Unpaired { .. })),
        count(|k| !matches!(k, DriftKind::Missing | DriftKind::Unpaired { .. })),
        r.not_synced,
        r.enqueued
    )
}

pub fn run(a: Args) -> Result<(), String> {
    let c = Arc::new(load(&a.config)?);
    let endpoint = match a.endpoint.clone() {
        Some(e) if c.reconcile.contains_key(&e) => e,
        Some(e) => {
            return Err(format!(
                "endpoint `{e}` has no `reconcile:` section: it names the Jira connection and the pairing rule a sync uses (docs/reconcile.md)"
            ))
        }
        None => match c.reconcile.keys().collect::<Vec<_>>().as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(format!(
                    "{}: no endpoint has a `reconcile:` section, which a sync needs (docs/reconcile.md)",
                    a.config.display()
                ))
            }
            many => {
                return Err(format!(
                    "several endpoints can sync ({}); name one with --endpoint",
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ))
            }
        },
    };
    if a.jql.to_ascii_lowercase().contains("order by") {
        return Err("--jql: leave out ORDER BY; the sync pages by creation time".into());
    }
    if !a.rate.is_finite() || a.rate <= 0.0 {
        return Err("--rate must be more than 0 issues a second".into());
    }
    let key = state_key(&endpoint, &a.jql);
    crate::logs::init_stderr();
    runtime()?.block_on(async {
        let secrets: Arc<dyn SecretStore> = Arc::new(open_cached_secrets(a.secrets.as_deref())?);
        let store = SqliteStore::open(&a.data_dir).map_err(|e| e.to_string())?;
        // A run that was killed holds its lease until it expires; if its
        // process is gone from this machine, its lease is given back now.
        if let Some(owner) = store.lease_owner(&key).map_err(|e| e.to_string())? {
            if let Some(pid) = owner
                .strip_prefix("relay sync (pid ")
                .and_then(|r| r.strip_suffix(')'))
            {
                let proc = Path::new("/proc");
                if proc.is_dir() && !proc.join(pid).exists() {
                    eprintln!("sync: the run that held this sync (pid {pid}) is gone; taking over");
                    store
                        .unlock(&key, &owner)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        if a.restart && !a.dry_run {
            store
                .save(&key, &Watermark::default())
                .await
                .map_err(|e| e.to_string())?;
        }
        let queue = open_data_queue(&a.data_dir, shared::queue::EmbeddedSettings::default())?;
        let mut r = reconcile::reconciler(
            c,
            secrets,
            Arc::new(queue),
            &a.data_dir,
            Duration::from_secs(30),
        )?;
        // Renewed after every page: long enough for a paced page, short
        // enough that a run killed where `/proc` cannot tell is not waited
        // for long.
        r.lease = Duration::from_secs_f64((3.0 * 100.0 / a.rate).max(60.0));
        let tty = std::io::stderr().is_terminal();
        let hook = PageHook(Arc::new(move |rep: &SweepReport| {
            if tty {
                eprint!("\r{}\x1b[K", line(rep));
            } else {
                eprintln!("{}", line(rep));
            }
        }));
        let opts = SweepOptions {
            jql: Some(a.jql.clone()),
            state_key: Some(key),
            rate: Some(a.rate),
            on_page: Some(hook),
            dry_run: a.dry_run,
            endpoint: Some(endpoint.clone()),
            owner: format!("relay sync (pid {})", std::process::id()),
            ..SweepOptions::default()
        };
        // A sync of many issues takes its time; each page is bounded by the
        // connections' own timeouts.
        let budget = Budget::from_now(Duration::from_secs(7 * 24 * 3600));
        let results = r.sweep_all(&opts, &budget).await;
        if tty {
            eprintln!();
        }
        let mut failed = false;
        for res in &results {
            match &res.outcome {
                Ok(rep) => {
                    if a.dry_run {
                        emit(&reconcile::render(std::slice::from_ref(res)))?;
                    }
                    let how = match (rep.complete, rep.resumed) {
                        (true, true) => "done (resumed an earlier run)",
                        (true, false) => "done",
                        (false, _) => "stopped",
                    };
                    emit(&format!("{}: {how}\n", line(rep)))?;
                    if let Some(why) = &rep.stopped {
                        emit(&format!("stopped: {why}\n"))?;
                    }
                    failed |= !rep.complete;
                }
                Err(e) => {
                    emit(&format!("{}: not synced: {e}\n", res.endpoint))?;
                    failed = true;
                }
            }
        }
        if failed {
            Err("the sync did not finish; run the same command again to resume".into())
        } else {
            if !a.dry_run {
                emit("the queued events are applied by `relay serve` (same --data-dir)\n")?;
            }
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_query_keeps_its_own_progress() {
        assert_eq!(
            state_key("jira", "project = SUP"),
            state_key("jira", " project = SUP ")
        );
        assert_ne!(
            state_key("jira", "project = SUP"),
            state_key("jira", "project = OPS")
        );
        assert!(state_key("jira", "x").starts_with("sync:jira:"));
    }
}
