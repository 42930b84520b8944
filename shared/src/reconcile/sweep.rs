//! Reconciliation: the sweep that finds what webhooks never delivered.
//!
//! Jira gives up on a webhook after a few retries, never retries a 4xx, and
//! promises no order; an update that never arrived is simply missing on the
//! other side. A sweep asks Jira for the issues of an endpoint updated since
//! the last finished sweep, compares each with its paired ServiceNow record,
//! and enqueues an envelope (`origin: reconcile`) for whatever is missing or
//! behind. The worker then applies those envelopes exactly like webhooks:
//! same whitelist, same rules, same idempotent writes.
//!
//! How an issue is compared, without any state of our own:
//!
//! 1. The issue (all fields, from Jira's search) is turned into the webhook
//!    payloads Jira would have sent: `jira:issue_created` (the user is the
//!    issue's creator, so the echo guard drops issues the integration user
//!    created, as it drops their webhooks), `jira:issue_updated` with a
//!    changelog that restates every field the endpoint's rules watch with
//!    `changed:` (`status`, `resolution`, …) at its current value,
//!    `comment_created` per comment and `attachment_created` per attachment.
//! 2. Each payload is planned by the rules engine, as the worker would.
//! 3. The plans are compared with the record found by the pairing rule's
//!    `correlate` (the first create rule of the endpoint into ServiceNow):
//!    no record → `missing` (the create, the update, every comment and
//!    attachment are enqueued, in that order, in the issue's FIFO group);
//!    a planned field whose value differs from the record's → `fields`
//!    (the update is enqueued); a planned journal entry the record does not
//!    have (same field, same text) → `comment`; a planned attachment whose
//!    name (and size) the record does not have → `attachment`.
//!    Fields mapped from who made a change (`actor.*`, `user.*`) are not
//!    compared: a sweep cannot know who made a change it never heard of.
//!
//! Identity: each synthesised payload carries the ids Jira's own would (the
//! issue id, the comment id, the attachment id; the restated changelog gets
//! the id `reconcile-<updated>-<digest of the fields>`), so its envelope's change id — and hence its
//! queue deduplication id — equals the webhook's for the same change
//! ([`crate::intake::envelope::Envelope::change_id`]). Past the dedup window the
//! writes themselves are idempotent (lookup-then-create, PATCH to the same
//! values, journal and attachment checks).
//!
//! Window and resumption: the JQL is the endpoint's filter plus
//! `updated >= "-<N>m"`, a relative date (Jira reads absolute JQL dates in
//! the searching user's time zone; a relative one has no zone), ordered by
//! `created, key` so that issues updated while the sweep pages do not move
//! between pages. After every page the sweep records how far it got
//! ([`Progress`]: the window's start and the creation time of the last
//! issue done); a sweep that stops (deadline, Jira or ServiceNow down, the
//! queue refusing) is resumed from there by the next run. Only a finished
//! sweep moves the watermark (to its own start time); the next sweep starts
//! `overlap` before it. Two sweeps of one endpoint never run at once: the
//! store's lease (and on AWS the function's reserved concurrency of 1).

use super::spec::ReconcileSpec;
use super::store::{Progress, StoreError, Watermark, WatermarkStore};
use crate::config::model::Endpoint;
use crate::config::Config;
use crate::outbound::connector::{Budget, Call, CallBody, CallError, Connector, Reply};
use crate::outbound::executor::Connectors;
use crate::queue::port::Queue;
use crate::rules::model::{Condition, Rule};
use crate::rules::plan::Method;
use crate::support::clock::Clock;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// A sweep does not start a page with less time than this left.
const MIN_PAGE_TIME: Duration = Duration::from_secs(20);
/// Journal entries and attachments per ServiceNow list request.
pub(super) const LIST_LIMIT: usize = 1000;

/// Called after every page with the report so far (`relay sync`'s progress).
#[derive(Clone)]
pub struct PageHook(pub Arc<dyn Fn(&SweepReport) + Send + Sync>);

impl std::fmt::Debug for PageHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageHook")
    }
}

/// What a sweep is asked to do.
#[derive(Clone, Debug, Default)]
pub struct SweepOptions {
    /// A first sync (`relay sync`): search this JQL instead of the
    /// endpoint's, with no `updated` window, so every issue it finds is
    /// connected (created, or paired with the record that already exists).
    pub jql: Option<String>,
    /// Where progress and the lease are kept (default: the endpoint's name).
    pub state_key: Option<String>,
    /// At most this many issues per second.
    pub rate: Option<f64>,
    pub on_page: Option<PageHook>,
    /// Scan from here instead of the watermark (a hand run).
    pub since: Option<jiff::Timestamp>,
    /// Compare and report, enqueue nothing, store nothing.
    pub dry_run: bool,
    /// Only this endpoint (default: every endpoint with `reconcile:`).
    pub endpoint: Option<String>,
    /// Who holds the lease (a request id, a host name + pid).
    pub owner: String,
}

/// One difference between Jira and the paired record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub key: String,
    pub issue_id: String,
    #[serde(flatten)]
    pub kind: DriftKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum DriftKind {
    /// No record is paired with the issue.
    Missing,
    /// The record's values differ from what the rules make of the issue.
    Fields { fields: Vec<FieldDiff> },
    /// A comment the record has no journal entry for.
    Comment { comment_id: String },
    /// An attachment the record does not have.
    Attachment {
        attachment_id: String,
        file_name: String,
    },
    /// The record exists, but the issue does not hold its key (the pairing
    /// was written one way only, or the record was made by hand): the
    /// create is queued, which finds the record and writes the pairing back.
    Unpaired { field: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    pub field: String,
    /// What the rules make of the issue.
    pub jira: String,
    /// What the record holds.
    pub target: String,
}

/// What one sweep of one endpoint did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SweepReport {
    /// Start of the scanned window (`updated >=`).
    pub from: Option<jiff::Timestamp>,
    pub started_at: Option<jiff::Timestamp>,
    /// Continued an unfinished sweep.
    pub resumed: bool,
    pub dry_run: bool,
    pub pages: u64,
    pub scanned: u64,
    /// Issues the echo guard or the rules leave alone (e.g. created by the
    /// integration user).
    pub not_synced: u64,
    /// A resumed sweep: issues found again that the stopped one had done.
    pub skipped: u64,
    pub drift: Vec<Drift>,
    pub enqueued: u64,
    /// Envelopes the queue already held (same change within the dedup window).
    pub already_queued: u64,
    /// Payloads over `limits.max_body_bytes`, reported and not queued.
    pub too_large: u64,
    /// The whole window was scanned (the watermark moved).
    pub complete: bool,
    /// Why the sweep stopped before the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub jira_requests: u64,
    pub target_requests: u64,
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Why a sweep did not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("another sweep of `{0}` holds the lease")]
    Busy(String),
    #[error("endpoint `{0}` has no `reconcile:` section")]
    NotConfigured(String),
    #[error("connection `{0}` is not configured")]
    NoConnector(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A user sweep stopped: a system could not be read or the queue refused.
    #[error("stopped: {0}")]
    Stopped(String),
}

/// The result for one endpoint.
#[derive(Debug)]
pub struct SweepResult {
    pub endpoint: String,
    pub outcome: Result<SweepReport, SweepError>,
}

/// One read of a sweep (counted in `counter`); a call that got no answer is
/// an error naming the connection.
pub(super) async fn send(
    conn: &Arc<dyn Connector>,
    call: &Call,
    budget: &Budget,
    counter: &mut u64,
) -> Result<Reply, String> {
    *counter += 1;
    conn.call(call, budget).await.map_err(|e| match e {
        CallError::Retry { reason, .. } | CallError::Permanent { reason } => {
            format!("{} {}: {reason}", conn.name(), call.path)
        }
    })
}

/// The JSON of a 2xx answer; any other status is an error saying what the
/// system answered.
pub(super) fn answer(conn: &Arc<dyn Connector>, call: &Call, r: Reply) -> Result<Value, String> {
    if r.is_success() {
        return Ok(r.json.unwrap_or(Value::Null));
    }
    Err(format!(
        "{} {} answered {}: {}",
        conn.name(),
        call.path,
        r.status,
        r.error.unwrap_or_default()
    ))
}

/// A ServiceNow table list read to the end, [`LIST_LIMIT`] rows per request.
pub(super) async fn list_all(
    conn: &Arc<dyn Connector>,
    path: &str,
    query: &str,
    fields: &str,
    budget: &Budget,
    counter: &mut u64,
) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    loop {
        let call = Call {
            method: Method::Get,
            once: false,
            path: path.to_owned(),
            query: vec![
                ("sysparm_query".into(), query.to_owned()),
                ("sysparm_fields".into(), fields.to_owned()),
                ("sysparm_exclude_reference_link".into(), "true".into()),
                ("sysparm_limit".into(), LIST_LIMIT.to_string()),
                ("sysparm_offset".into(), out.len().to_string()),
            ],
            headers: Vec::new(),
            body: CallBody::None,
        };
        let reply = send(conn, &call, budget, counter).await?;
        let v = answer(conn, &call, reply)?;
        let rows = v["result"].as_array().cloned().unwrap_or_default();
        let n = rows.len();
        out.extend(rows);
        if n < LIST_LIMIT {
            return Ok(out);
        }
    }
}

/// Runs sweeps; built once per process.
pub struct Reconciler {
    config: Arc<Config>,
    connectors: Connectors,
    queue: Arc<dyn Queue>,
    store: Arc<dyn WatermarkStore>,
    clock: Arc<dyn Clock>,
    /// How long a sweep's lease lasts (renewed after every page).
    pub lease: Duration,
}

impl Reconciler {
    pub fn new(
        config: Arc<Config>,
        connectors: Connectors,
        queue: Arc<dyn Queue>,
        store: Arc<dyn WatermarkStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config,
            connectors,
            queue,
            store,
            clock,
            lease: Duration::from_secs(15 * 60),
        }
    }

    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    pub(super) fn connector(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.connectors.get(name).cloned()
    }

    pub(super) fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    pub(super) fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Sweeps every endpoint with a `reconcile:` section, or only
    /// `opts.endpoint`, one after another.
    pub async fn sweep_all(&self, opts: &SweepOptions, budget: &Budget) -> Vec<SweepResult> {
        let names: Vec<String> = match &opts.endpoint {
            Some(e) => vec![e.clone()],
            None => self.config.reconcile.keys().cloned().collect(),
        };
        let mut out = Vec::new();
        for name in names {
            let outcome = self.sweep(&name, opts, budget).await;
            let dims = [("Endpoint", name.as_str())];
            match &outcome {
                Ok(r) => {
                    tracing::info!(
                        endpoint = %name,
                        scanned = r.scanned,
                        drift = r.drift.len(),
                        enqueued = r.enqueued,
                        already_queued = r.already_queued,
                        complete = r.complete,
                        resumed = r.resumed,
                        dry_run = r.dry_run,
                        stopped = r.stopped.as_deref().unwrap_or(""),
                        jira_requests = r.jira_requests,
                        target_requests = r.target_requests,
                        duration_ms = r.duration.as_millis() as u64,
                        outcome = if r.complete { "swept" } else { "stopped" },
                        "reconcile sweep"
                    );
                    if !r.dry_run {
                        crate::support::metrics::count_n("ReconcileScanned", &dims, r.scanned);
                        crate::support::metrics::count_n(
                            "ReconcileDrift",
                            &dims,
                            r.drift.len() as u64,
                        );
                        crate::support::metrics::count_n("ReconcileEnqueued", &dims, r.enqueued);
                    }
                    if !r.complete {
                        crate::support::metrics::count("ReconcileFailed", &dims);
                    }
                }
                Err(e) => {
                    tracing::warn!(endpoint = %name, outcome = "not_run", reason = %e, "reconcile sweep");
                    if !matches!(e, SweepError::Busy(_)) {
                        crate::support::metrics::count("ReconcileFailed", &dims);
                    }
                }
            }
            out.push(SweepResult {
                endpoint: name,
                outcome,
            });
        }
        out
    }

    /// One sweep of one endpoint.
    pub async fn sweep(
        &self,
        endpoint: &str,
        opts: &SweepOptions,
        budget: &Budget,
    ) -> Result<SweepReport, SweepError> {
        let spec = self
            .config
            .reconcile
            .get(endpoint)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let ep = self
            .config
            .endpoint(endpoint)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let pair = self
            .config
            .rules
            .iter()
            .find(|r| r.name == spec.pair_rule)
            .ok_or_else(|| SweepError::NotConfigured(endpoint.to_owned()))?;
        let connector = |name: &str| {
            self.connectors
                .get(name)
                .cloned()
                .ok_or_else(|| SweepError::NoConnector(name.to_owned()))
        };
        let sweep = Sweep {
            config: &self.config,
            ep,
            spec,
            pair,
            jira: connector(&spec.connection)?,
            target: connector(&pair.to)?,
            table: pair
                .table
                .clone()
                .or_else(|| self.config.connection(&pair.to).map(|c| c.table.clone()))
                .unwrap_or_else(|| "incident".into()),
            corr_field: pair
                .correlate
                .as_ref()
                .map_or_else(|| "correlation_id".to_owned(), |c| c.field.clone()),
            // Where the pairing rule writes the record's key back into the
            // issue (a field id: a display name cannot be read off a search
            // result).
            pair_back: pair
                .pair_back
                .as_ref()
                .filter(|p| p.connection == spec.connection)
                .map(|p| p.field.clone())
                .filter(|f| !crate::rules::calls::jira::is_field_name(f)),
            jql_override: opts.jql.clone(),
            watched: watched_fields(&self.config, endpoint),
            budget,
            queue: self.queue.as_ref(),
            clock: self.clock.as_ref(),
            dry_run: opts.dry_run,
        };
        let key = opts.state_key.as_deref().unwrap_or(endpoint);
        if !opts.dry_run && !self.store.try_lock(key, &opts.owner, self.lease).await? {
            return Err(SweepError::Busy(key.to_owned()));
        }
        let result = self.run(&sweep, key, opts).await;
        if !opts.dry_run {
            if let Err(e) = self.store.unlock(key, &opts.owner).await {
                tracing::warn!(endpoint, reason = %e, "reconcile lease not released; it expires by itself");
            }
        }
        result
    }

    async fn run(
        &self,
        sweep: &Sweep<'_>,
        endpoint: &str,
        opts: &SweepOptions,
    ) -> Result<SweepReport, SweepError> {
        let started = std::time::Instant::now();
        let now = self.clock.now();
        let mut wm = self.store.load(endpoint).await?;
        let mut report = SweepReport {
            dry_run: opts.dry_run,
            ..SweepReport::default()
        };
        let mut progress = match (opts.since, wm.progress.take()) {
            (None, Some(p)) => {
                report.resumed = true;
                p
            }
            (since, _) => {
                let from = since
                    .or_else(|| wm.since.map(|w| sub(w, sweep.spec.overlap)))
                    .unwrap_or_else(|| sub(now, sweep.spec.lookback));
                Progress {
                    started_at: now,
                    from,
                    jql: String::new(),
                    created_from: None,
                    scanned: 0,
                    last_key: None,
                }
            }
        };
        report.from = Some(progress.from);
        report.started_at = Some(progress.started_at);
        let mut page_token: Option<String> = None;
        // Resumed: the issues done before the stop that the search returns
        // again (same creation minute) are skipped up to the last one done.
        let mut skip_to = if report.resumed {
            progress.last_key.clone().zip(progress.created_from)
        } else {
            None
        };
        loop {
            if sweep.budget.remaining() < MIN_PAGE_TIME {
                report.stopped = Some("deadline: not enough time left for another page".into());
                break;
            }
            progress.jql = sweep.jql(self.clock.now(), &progress);
            let page = match sweep
                .search(&progress.jql, page_token.as_deref(), &mut report)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    report.stopped = Some(format!("jira search: {e}"));
                    break;
                }
            };
            report.pages += 1;
            let fetched = page.issues.len();
            let mut page = page;
            if let Some((key, until)) = &skip_to {
                let before = page.issues.len();
                let at = page.issues.iter().position(|i| {
                    i["key"].as_str() == Some(key.as_str())
                        || created_of(i).is_some_and(|c| c > *until)
                });
                match at {
                    Some(p) if page.issues[p]["key"].as_str() == Some(key.as_str()) => {
                        page.issues.drain(..=p);
                        skip_to = None;
                    }
                    Some(p) => {
                        page.issues.drain(..p);
                        skip_to = None;
                    }
                    None => page.issues.clear(),
                }
                report.skipped += (before - page.issues.len()) as u64;
            }
            let n = page.issues.len() as u64;
            if let Err(e) = sweep.page(&page.issues, &mut report).await {
                report.stopped = Some(e);
                break;
            }
            report.scanned += n;
            progress.scanned += n;
            if let Some(hook) = &opts.on_page {
                (hook.0)(&report);
            }
            if let Some(rate) = opts.rate.filter(|r| *r > 0.0) {
                // Paced: this run's issues at no more than `rate` a second.
                let due = Duration::from_secs_f64(report.scanned as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            // Resume point: the creation time of the last issue done. Issues
            // of that same minute are scanned again on resumption (harmless).
            if let Some(last) = page.issues.last() {
                if let Some(c) = created_of(last) {
                    progress.created_from = Some(c);
                }
                progress.last_key = last["key"].as_str().map(str::to_owned);
            }
            match page.next {
                Some(t) if fetched > 0 => page_token = Some(t),
                _ => {
                    report.complete = true;
                    break;
                }
            }
            if !opts.dry_run {
                self.store
                    .save(
                        endpoint,
                        &Watermark {
                            since: wm.since,
                            progress: Some(progress.clone()),
                        },
                    )
                    .await?;
                // Renew the lease for the next page.
                self.store
                    .try_lock(endpoint, &opts.owner, self.lease)
                    .await?;
            }
        }
        if !opts.dry_run {
            let next = if report.complete {
                // A hand run from a later `since` must not skip what lies
                // between the old watermark and it.
                let covers = wm.since.is_none_or(|w| progress.from <= w);
                Watermark {
                    since: if covers {
                        Some(progress.started_at)
                    } else {
                        wm.since
                    },
                    progress: None,
                }
            } else {
                Watermark {
                    since: wm.since,
                    progress: Some(progress),
                }
            };
            self.store.save(endpoint, &next).await?;
        }
        report.duration = started.elapsed();
        Ok(report)
    }
}

fn sub(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    let span = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::ZERO);
    t.checked_sub(span).unwrap_or(jiff::Timestamp::MIN)
}

fn created_of(issue: &Value) -> Option<jiff::Timestamp> {
    crate::support::timefmt::parse_value(issue.pointer("/fields/created")?).ok()
}

/// Minutes back from `now` to `t`, rounded up, plus one for Jira's
/// minute-granular comparison.
fn minutes_back(now: jiff::Timestamp, t: jiff::Timestamp) -> i64 {
    let secs = now.duration_since(t).as_secs().max(0);
    (secs + 59) / 60 + 1
}

/// The fields rules of this endpoint watch with `changed:`, lowercased.
fn watched_fields(config: &Config, endpoint: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in config.rules.iter().filter(|r| r.from == endpoint) {
        for c in &r.conditions {
            if let Condition::Changed { field, .. } = c {
                out.insert(field.to_ascii_lowercase());
            }
        }
    }
    out.into_iter().collect()
}

/// One page of search results.
pub(super) struct Page {
    pub(super) issues: Vec<Value>,
    pub(super) next: Option<String>,
}

/// One sweep's fixed parts.
pub(super) struct Sweep<'a> {
    pub(super) config: &'a Config,
    pub(super) ep: &'a Endpoint,
    pub(super) spec: &'a ReconcileSpec,
    pub(super) pair: &'a Rule,
    pub(super) jira: Arc<dyn Connector>,
    pub(super) target: Arc<dyn Connector>,
    pub(super) table: String,
    pub(super) corr_field: String,
    /// The issue field the pairing rule writes the record's key into.
    pub(super) pair_back: Option<String>,
    /// `relay sync`'s JQL (no `updated` window).
    pub(super) jql_override: Option<String>,
    pub(super) watched: Vec<String>,
    pub(super) budget: &'a Budget,
    pub(super) queue: &'a dyn Queue,
    pub(super) clock: &'a dyn Clock,
    pub(super) dry_run: bool,
}

impl Sweep<'_> {
    pub(super) fn api(&self) -> &'static str {
        match self.config.connection(&self.spec.connection) {
            Some(c) if c.api == crate::outbound::connections::JiraApi::V2 => "2",
            _ => "3",
        }
    }

    pub(super) fn jql(&self, now: jiff::Timestamp, p: &Progress) -> String {
        let mut q = match &self.jql_override {
            Some(j) => format!("({j})"),
            None => format!(
                "({}) AND updated >= \"-{}m\"",
                self.spec.jql,
                minutes_back(now, p.from)
            ),
        };
        if let Some(c) = p.created_from {
            q.push_str(&format!(" AND created >= \"-{}m\"", minutes_back(now, c)));
        }
        q.push_str(" ORDER BY created ASC, key ASC");
        q
    }

    pub(super) async fn call(
        &self,
        conn: &Arc<dyn Connector>,
        call: Call,
        counter: &mut u64,
    ) -> Result<Value, String> {
        let reply = send(conn, &call, self.budget, counter).await?;
        answer(conn, &call, reply)
    }

    /// One page of Jira's search (enhanced `search/jql` on v3, classic
    /// `search` with `startAt` on v2 / Server).
    pub(super) async fn search(
        &self,
        jql: &str,
        token: Option<&str>,
        report: &mut SweepReport,
    ) -> Result<Page, String> {
        let v3 = self.api() == "3";
        let call = if v3 {
            let mut body = json!({
                "jql": jql,
                "fields": ["*all"],
                "maxResults": self.spec.page_size,
            });
            if let Some(t) = token {
                body["nextPageToken"] = Value::String(t.to_owned());
            }
            Call {
                method: Method::Post,
                once: false,
                path: "/rest/api/3/search/jql".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: CallBody::Json(body),
            }
        } else {
            Call {
                method: Method::Post,
                once: false,
                path: "/rest/api/2/search".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body: CallBody::Json(json!({
                    "jql": jql,
                    "fields": ["*all"],
                    "maxResults": self.spec.page_size,
                    "startAt": token.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0),
                })),
            }
        };
        let v = self
            .call(&self.jira, call, &mut report.jira_requests)
            .await?;
        let issues = v["issues"].as_array().cloned().unwrap_or_default();
        let next = if v3 {
            v["nextPageToken"].as_str().map(str::to_owned)
        } else {
            let start = v["startAt"].as_u64().unwrap_or(0);
            let total = v["total"].as_u64().unwrap_or(0);
            let end = start + issues.len() as u64;
            (end < total).then(|| end.to_string())
        };
        Ok(Page { issues, next })
    }

    /// Every comment of an issue: those the search returned, and the rest
    /// page by page when the search cut them short.
    pub(super) async fn comments(
        &self,
        issue: &Value,
        report: &mut SweepReport,
    ) -> Result<Vec<Value>, String> {
        let field = &issue["fields"]["comment"];
        let mut out = field["comments"].as_array().cloned().unwrap_or_default();
        let total = field["total"].as_u64().unwrap_or(out.len() as u64) as usize;
        let id = issue["id"].as_str().unwrap_or_default();
        while out.len() < total {
            let call = Call {
                method: Method::Get,
                once: false,
                path: format!(
                    "/rest/api/{}/issue/{}/comment",
                    self.api(),
                    crate::support::url::encode_segment(id)
                ),
                query: vec![
                    ("startAt".into(), out.len().to_string()),
                    ("maxResults".into(), "100".into()),
                ],
                headers: Vec::new(),
                body: CallBody::None,
            };
            let v = self
                .call(&self.jira, call, &mut report.jira_requests)
                .await?;
            let more = v["comments"].as_array().cloned().unwrap_or_default();
            if more.is_empty() {
                break;
            }
            out.extend(more);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_up_with_a_spare() {
        let now: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let t: jiff::Timestamp = "2026-11-23T11:45:00Z".parse().unwrap();
        assert_eq!(minutes_back(now, t), 16);
        let t: jiff::Timestamp = "2026-11-23T11:44:59Z".parse().unwrap();
        assert_eq!(minutes_back(now, t), 17);
        assert_eq!(minutes_back(now, now), 1);
    }
}
