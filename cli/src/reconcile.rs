//! `relay reconcile` (one sweep by hand) and the sweep loop of `relay serve`.
//!
//! Both use the same `shared::reconcile::Reconciler` as the Lambda: the
//! watermark and lease live in `<data-dir>/reconcile.sqlite`, envelopes go to
//! the embedded queue in `<data-dir>/queue.db`, where `relay serve`'s
//! workers apply them.

use shared::config::Config;
use shared::outbound::executor::Connectors;
use shared::outbound::rest::http_client;
use shared::outbound::{Budget, ConnectorSettings};
use shared::queue::Queue;
use shared::reconcile::{
    parse_duration, DriftKind, Reconciler, SqliteStore, SweepError, SweepOptions, SweepReport,
    SweepResult, UserSweepReport,
};
use shared::secrets::SecretStore;
use shared::support::clock::SystemClock;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The longest a hand-run sweep may take.
const HAND_RUN_BUDGET: Duration = Duration::from_secs(3600);

pub fn reconciler(
    config: Arc<Config>,
    secrets: Arc<dyn SecretStore>,
    queue: Arc<dyn Queue>,
    data_dir: &Path,
    call_timeout: Duration,
) -> Result<Reconciler, String> {
    let store = SqliteStore::open(data_dir).map_err(|e| e.to_string())?;
    let connectors = Connectors::from_config(
        &config,
        http_client(),
        secrets,
        ConnectorSettings {
            call_timeout,
            ..ConnectorSettings::default()
        },
    );
    Ok(Reconciler::new(
        config,
        connectors,
        queue,
        Arc::new(store),
        Arc::new(SystemClock),
    ))
}

/// `--since`: an RFC 3339 time, or a span back from now (`90m`, `2h`, `7d`).
pub fn parse_since(s: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let d = parse_duration(s).map_err(|e| {
        format!("--since `{s}`: not an RFC 3339 time (2026-11-23T08:00:00Z) nor a span ({e})")
    })?;
    let span = jiff::SignedDuration::try_from(d).map_err(|e| e.to_string())?;
    jiff::Timestamp::now()
        .checked_sub(span)
        .map_err(|e| format!("--since `{s}`: {e}"))
}

/// What one sweep found, for people.
pub fn render(results: &[SweepResult]) -> String {
    let mut out = String::new();
    for r in results {
        match &r.outcome {
            Ok(rep) => out.push_str(&render_report(&r.endpoint, rep)),
            Err(e) => out.push_str(&format!("{}: not swept: {e}\n", r.endpoint)),
        }
    }
    out
}

fn render_report(endpoint: &str, r: &SweepReport) -> String {
    let mut out = String::new();
    for d in &r.drift {
        let what = match &d.kind {
            DriftKind::Missing => "missing: no paired record".to_owned(),
            DriftKind::Fields { fields } => {
                let f: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{} {:?} → {:?}", f.field, f.target, f.jira))
                    .collect();
                format!("behind: {}", f.join(", "))
            }
            DriftKind::Comment { comment_id } => format!("comment {comment_id} missing"),
            DriftKind::Attachment {
                attachment_id,
                file_name,
            } => format!("attachment {attachment_id} ({file_name}) missing"),
            DriftKind::Unpaired { field } => {
                format!("unpaired: the record exists, the issue's {field} is empty")
            }
        };
        out.push_str(&format!("{endpoint}  {:<12} {what}\n", d.key));
    }
    let window = r
        .from
        .map(|f| format!("updated since {f}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "{endpoint}: {} issue(s) scanned ({window}{}), {} drift, {} enqueued{}, {} Jira + {} target request(s), {} ms{}{}\n",
        r.scanned,
        if r.resumed { ", resumed" } else { "" },
        r.drift.len(),
        r.enqueued,
        if r.already_queued > 0 {
            format!(" ({} already queued)", r.already_queued)
        } else {
            String::new()
        },
        r.jira_requests,
        r.target_requests,
        r.duration.as_millis(),
        if r.dry_run {
            ", dry run: nothing enqueued".to_owned()
        } else if r.too_large > 0 {
            format!(", {} too large to queue (limits.max_body_bytes)", r.too_large)
        } else {
            String::new()
        },
        match &r.stopped {
            Some(why) => format!("; STOPPED: {why} (the next sweep resumes)"),
            None => String::new(),
        },
    ));
    out
}

/// One sweep by hand.
pub async fn run_once(
    reconciler: &Reconciler,
    endpoint: Option<String>,
    since: Option<jiff::Timestamp>,
    dry_run: bool,
) -> Vec<SweepResult> {
    let opts = SweepOptions {
        since,
        dry_run,
        endpoint,
        owner: format!("relay reconcile (pid {})", std::process::id()),
        ..SweepOptions::default()
    };
    reconciler
        .sweep_all(&opts, &Budget::from_now(HAND_RUN_BUDGET))
        .await
}

/// One user sweep's outcome, by endpoint.
pub type UserSweep = (String, Result<UserSweepReport, SweepError>);

/// The user sweeps of every endpoint with `reconcile_users:` (or only
/// `endpoint`), within `budget`.
pub async fn run_users(
    reconciler: &Reconciler,
    endpoint: Option<&str>,
    dry_run: bool,
    budget: Duration,
) -> Vec<UserSweep> {
    reconciler
        .sweep_users_all(endpoint, dry_run, &Budget::from_now(budget))
        .await
}

/// What the user sweeps found, for people.
pub fn render_users(results: &[UserSweep]) -> String {
    results
        .iter()
        .map(|(endpoint, r)| render_user_sweep(endpoint, r))
        .collect()
}

/// What one endpoint's user sweep found.
fn render_user_sweep(endpoint: &str, r: &Result<UserSweepReport, SweepError>) -> String {
    let mut out = String::new();
    let r = match r {
        Ok(r) => r,
        Err(e) => return format!("{endpoint}: user sweep not done: {e}\n"),
    };
    for g in &r.groups {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!(
            "{endpoint}  {} (from {}): {} in ServiceNow, {} in Jira; to add: {}; to remove: {}{}\n",
            g.jira_group,
            g.servicenow_groups.join(", "),
            g.expected,
            g.members,
            list(&g.missing),
            list(&g.extra),
            if g.unmanaged > 0 {
                format!(
                    "; {} Jira member(s) ServiceNow does not know, left alone",
                    g.unmanaged
                )
            } else {
                String::new()
            }
        ));
        if let Some(why) = &g.removals_held {
            out.push_str(&format!("{endpoint}  {}: {why}\n", g.jira_group));
        }
    }
    for g in &r.unknown_servicenow_groups {
        out.push_str(&format!(
            "{endpoint}  ServiceNow has no group `{g}` (named in the rule's table)\n"
        ));
    }
    for g in &r.unknown_jira_groups {
        out.push_str(&format!(
            "{endpoint}  Jira has no group `{g}` (named in the rule's table): not compared\n"
        ));
    }
    out.push_str(&format!(
        "{endpoint}: user sweep: {} group(s), {} difference(s), {} enqueued{}{}, {} ServiceNow + {} Jira request(s), {} ms{}\n",
        r.groups.len(),
        r.drift(),
        r.enqueued,
        if r.already_queued > 0 {
            format!(" ({} already queued)", r.already_queued)
        } else {
            String::new()
        },
        if r.without_email > 0 {
            format!(", {} active member(s) without an e-mail address", r.without_email)
        } else {
            String::new()
        },
        r.servicenow_requests,
        r.jira_requests,
        r.duration.as_millis(),
        if r.dry_run {
            ", report only: nothing enqueued (`apply: true` in reconcile_users, or no --dry-run)"
        } else {
            ""
        }
    ));
    out
}

/// `relay serve`'s sweeps: each endpoint on its own `every`, the first one
/// shortly after start (catching up on what arrived while the relay was
/// down), until `stop`.
/// The last sweep of each endpoint (the console's queue page).
#[derive(Clone, Default)]
pub struct SweepBoard(Arc<std::sync::Mutex<std::collections::BTreeMap<String, SweepStatus>>>);

#[derive(Clone, Debug, Default)]
pub struct SweepStatus {
    pub endpoint: String,
    pub at_ms: i64,
    pub scanned: u64,
    pub drift: u64,
    pub enqueued: u64,
    /// Why it stopped early or did not run; empty when it swept the window.
    pub problem: String,
}

impl SweepBoard {
    pub fn list(&self) -> Vec<SweepStatus> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn note_users(&self, endpoint: &str, r: &Result<UserSweepReport, SweepError>) {
        let key = format!("{endpoint} (users)");
        let mut st = SweepStatus {
            endpoint: key.clone(),
            at_ms: jiff::Timestamp::now().as_millisecond(),
            ..SweepStatus::default()
        };
        match r {
            Ok(rep) => {
                st.scanned = rep.groups.iter().map(|g| g.expected as u64).sum();
                st.drift = rep.drift() as u64;
                st.enqueued = rep.enqueued;
                if rep.dry_run && rep.drift() > 0 {
                    st.problem = "report only (apply: false): nothing queued".into();
                }
            }
            Err(e) => st.problem = e.to_string(),
        }
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, st);
    }

    fn note(&self, r: &shared::reconcile::sweep::SweepResult) {
        let mut st = SweepStatus {
            endpoint: r.endpoint.clone(),
            at_ms: jiff::Timestamp::now().as_millisecond(),
            ..SweepStatus::default()
        };
        match &r.outcome {
            Ok(rep) => {
                st.scanned = rep.scanned;
                st.drift = rep.drift.len() as u64;
                st.enqueued = rep.enqueued;
                st.problem = rep.stopped.clone().unwrap_or_default();
            }
            Err(e) => st.problem = e.to_string(),
        }
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(r.endpoint.clone(), st);
    }
}

pub async fn serve_loop(
    reconciler: Arc<Reconciler>,
    config: Arc<Config>,
    owner: String,
    board: SweepBoard,
    mut stop: watch::Receiver<bool>,
) {
    let first = Duration::from_secs(5);
    // (endpoint, every, when next, a user sweep)
    let start = |every: Duration| tokio::time::Instant::now() + first.min(every);
    let mut next: Vec<(String, Duration, tokio::time::Instant, bool)> = config
        .reconcile
        .iter()
        .map(|(name, spec)| (name.clone(), spec.every, start(spec.every), false))
        .chain(
            config
                .reconcile_users
                .iter()
                .map(|(name, spec)| (name.clone(), spec.every, start(spec.every), true)),
        )
        .collect();
    loop {
        let Some(due) = next.iter().map(|n| n.2).min() else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let now = tokio::time::Instant::now();
        for (name, every, at, users) in next.iter_mut() {
            if *at > now {
                continue;
            }
            if *users {
                let budget = (*every).max(Duration::from_secs(60));
                let results = run_users(&reconciler, Some(name), false, budget).await;
                for (endpoint, r) in &results {
                    board.note_users(endpoint, r);
                    if r.as_ref().map_or(true, |r| r.drift() > 0) {
                        tracing::warn!(target: "relay::delivery", endpoint = %endpoint, "reconcile: {}", render_user_sweep(endpoint, r).trim_end());
                    }
                }
                *at = tokio::time::Instant::now() + *every;
                continue;
            }
            let opts = SweepOptions {
                endpoint: Some(name.clone()),
                owner: owner.clone(),
                ..SweepOptions::default()
            };
            // A sweep may take most of its interval, never more.
            let budget = Budget::from_now((*every).max(Duration::from_secs(60)));
            let results = reconciler.sweep_all(&opts, &budget).await;
            for r in &results {
                board.note(r);
                if let Ok(rep) = &r.outcome {
                    if !rep.drift.is_empty() || rep.stopped.is_some() {
                        tracing::warn!(target: "relay::delivery", endpoint = %r.endpoint, drift = rep.drift.len(), enqueued = rep.enqueued, "reconcile: {}", render_report(&r.endpoint, rep).trim_end());
                    }
                }
            }
            *at = tokio::time::Instant::now() + *every;
        }
    }
}
